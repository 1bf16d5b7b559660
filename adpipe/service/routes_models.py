"""Stored models: list, inspect, promote."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from adpipe.core.messages import ErrorBody, ModelInfo, ModelVersionInfo, PromoteRequest
from adpipe.core.store import RESERVED, STAGE_RE
from adpipe.service.errors import ApiError
from adpipe.service.security import require

router = APIRouter(tags=["models"])
ERRORS = {404: {"model": ErrorBody, "description": "no such model or version"}}


@router.get("/v1/models", summary="Every stored model with its versions and stage labels",
            dependencies=[Depends(require("read"))])
async def list_models(request: Request) -> list[ModelInfo]:
    cache = request.app.state.service.cache

    def infos() -> list[ModelInfo]:
        out = []
        for name in cache.store.names():
            try:
                out.append(cache.info(name))
            except Exception:  # a model deleted meanwhile, or one without versions
                continue
        return out

    return await run_in_threadpool(infos)


@router.get("/v1/models/{name}", summary="One model: versions, stage labels, the default version",
            responses=ERRORS, dependencies=[Depends(require("read"))])
async def show_model(name: str, request: Request) -> ModelInfo:
    return await run_in_threadpool(request.app.state.service.cache.info, name)


@router.get("/v1/models/{name}/versions/{version}", summary="One version (a number, a stage label or latest)",
            responses=ERRORS, dependencies=[Depends(require("read"))])
async def show_version(name: str, version: str, request: Request) -> ModelVersionInfo:
    cache = request.app.state.service.cache

    def info() -> ModelVersionInfo:
        number = cache.resolve(name, version)
        sv = next(sv for sv in cache.labels(name).versions if sv.version == number)
        return cache.version_info(sv)

    return await run_in_threadpool(info)


@router.post("/v1/models/{name}/promote", summary="Move a stage label (default production) to a version",
             responses={**ERRORS, 409: {"model": ErrorBody, "description": "the version did not pass validation "
                                        "(send force: true to promote it anyway)"}},
             dependencies=[Depends(require("admin"))])
async def promote(name: str, body: PromoteRequest, request: Request) -> ModelVersionInfo:
    if not STAGE_RE.match(body.stage) or body.stage in RESERVED:
        raise ApiError(422, "bad_stage", f"'{body.stage}' cannot be a stage label.",
                       "use lower-case letters, digits, '-' and '_', e.g. production or staging")
    service = request.app.state.service

    def run() -> ModelVersionInfo:
        service.cache.labels(name)  # 404 for an unknown model
        sv = service.store.promote(name, body.version, body.stage, force=body.force)
        service.metrics.default_version.labels(name).set(service.cache.resolve(name))
        return service.cache.version_info(sv)

    return await run_in_threadpool(run)
