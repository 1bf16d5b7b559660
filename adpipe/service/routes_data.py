"""Runs, recent anomalies and the dashboard's data."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool

from adpipe.core.messages import AnomalyInfo, RunInfo
from adpipe.core.store import parse_ref
from adpipe.service.security import require
from adpipe.service.state import now

router = APIRouter(tags=["activity"])
HISTOGRAM_BINS = 20
DASHBOARD_RUNS, DASHBOARD_ANOMALIES, DASHBOARD_DRIFT, DASHBOARD_VERSIONS = 50, 100, 50, 20


@router.get("/v1/runs", summary="Fit jobs and scored batches, newest first", dependencies=[Depends(require("read"))])
async def list_runs(request: Request, limit: int = Query(50, ge=1, le=1000),
                    kind: str | None = Query(None, pattern="^(fit|score_batch)$")) -> list[RunInfo]:
    rows = await run_in_threadpool(request.app.state.service.state.runs, limit, kind)
    return [RunInfo(**row) for row in rows]


@router.get("/v1/anomalies", summary="The latest flagged records, newest first",
            dependencies=[Depends(require("read"))])
async def list_anomalies(request: Request, limit: int = Query(100, ge=1, le=500),
                         model: str | None = Query(None, max_length=200)) -> list[AnomalyInfo]:
    return [AnomalyInfo(**row) for row in request.app.state.service.state.latest_anomalies(limit, model)]


@router.get("/v1/dashboard/data", summary="Everything the dashboard shows",
            dependencies=[Depends(require("read"))])
async def dashboard_data(request: Request, model: str | None = Query(
        None, max_length=200, description="histogram of this model (name or name@version); default: the model "
        "scored last")) -> dict[str, Any]:
    return await run_in_threadpool(collect, request.app.state.service, model)


def collect(service, model: str | None = None) -> dict[str, Any]:
    state = service.state
    return {"generated_at": now(),
            "models": _models(service), "runs": state.runs(DASHBOARD_RUNS),
            "anomalies": state.latest_anomalies(DASHBOARD_ANOMALIES),
            "histogram": histogram(service, model), "drift": _drift(service)}


def _models(service) -> list[dict[str, Any]]:
    loaded = {name for name, _ in service.cache.loaded()}
    out = []
    for name in service.store.names():
        try:
            versions = service.cache.labels(name).versions
            infos = [service.cache.version_info(sv) for sv in reversed(versions[-DASHBOARD_VERSIONS:])]
        except Exception:  # deleted meanwhile
            continue
        out.append({"name": name, "loaded": name in loaded,
                    "versions": [{"version": i.version, "stages": i.stages, "created_at": i.created_at,
                                  "detector": i.detector, "rows": i.rows, "metrics": i.metrics} for i in infos]})
    return out


def histogram(service, model: str | None = None) -> dict[str, Any] | None:
    """Histogram of the latest probabilities of one served model version, with its threshold."""
    state = service.state
    key = model
    if key is not None and "@" not in key:  # a name: its most recently scored version
        key = next((k for k in reversed(list(state.probabilities)) if parse_ref(k)[0] == key), None)
    key = key or state.last_scored
    if key is None:
        return None
    values = state.latest_probabilities(key)
    if values.size == 0:
        return None
    name, version = parse_ref(key)
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    served = service.cache.cached(name, int(version)) if version and version.isdigit() else None
    return {"model": name, "version": int(version) if version and version.isdigit() else None,
            "n": int(values.size), "edges": [round(float(e), 6) for e in edges], "counts": counts.tolist(),
            "threshold": None if served is None else served.threshold}


def _drift(service) -> list[dict[str, Any]]:
    from adpipe.core.drift import DriftHistory, default_path

    paths = {default_path()}
    for name, version in service.cache.loaded():
        served = service.cache.cached(name, version)
        history = getattr(getattr(served, "monitor", None), "_history", None)
        if history is not None:
            paths.add(history.path)
    names = set(service.store.names())
    events = []
    for path in paths:
        if not path.is_file():
            continue
        try:
            found = DriftHistory(path).query(limit=DASHBOARD_DRIFT)
        except Exception:  # an unreadable history file: show the rest
            continue
        events += [e.to_dict() for e in found if e.pipeline in names]
    events.sort(key=lambda e: e["detected_at"], reverse=True)
    return events[:DASHBOARD_DRIFT]
