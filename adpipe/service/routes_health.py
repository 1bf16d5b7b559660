"""Liveness, readiness and the Prometheus metrics."""

from __future__ import annotations

import os

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from adpipe.service.errors import JSONBody
from adpipe.service.security import require
from adpipe.service.settings import ServeSettings

router = APIRouter(tags=["health"])


@router.get("/v1/health/live", summary="Liveness: the process answers")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/v1/health/ready", summary="Readiness: every configured model loaded and the store reachable",
            responses={503: {"description": "not ready: see `models` and `store`"}})
async def ready(request: Request) -> JSONBody:
    service = request.app.state.service
    if any(not s["loaded"] for s in service.models.values()):  # a model fitted or fixed since: try again
        await run_in_threadpool(service.load_configured, True)
    root = service.store.root
    reachable = root.is_dir() and os.access(root, os.R_OK | os.X_OK)
    ok = reachable and all(s["loaded"] for s in service.models.values())
    body = {"status": "ready" if ok else "not_ready",
            "store": {"path": str(root), "reachable": reachable},
            "models": {ref: dict(s) for ref, s in service.models.items()}}
    return JSONBody(body, status_code=200 if ok else 503)


def metrics_router(settings: ServeSettings) -> APIRouter:
    """``GET /metrics``: open to Prometheus scrapes unless ``public_metrics`` is off (then the read role)."""
    deps = [] if settings.public_metrics else [Depends(require("read"))]
    metrics = APIRouter(tags=["health"], dependencies=deps)

    @metrics.get("/metrics", summary="Prometheus metrics (text exposition format)",
                 response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def prometheus(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(request.app.state.service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return metrics
