"""Scoring: one record (answered on the event loop: no thread hop, no frame) or a batch (in a worker thread).

``?version=`` picks the version: a number, a stage label or ``latest``; without it, the version
labelled ``production``, else the newest.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool

from adpipe.core import schema
from adpipe.core.errors import AdpipeError, DataError
from adpipe.core.messages import BatchRequest, BatchResult, ErrorBody, ScoredRecord, ScoreRequest
from adpipe.service.errors import ApiError, JSONBody
from adpipe.service.models import Served
from adpipe.service.security import require
from adpipe.service.state import now

router = APIRouter(tags=["scoring"])
VERSION = Query(None, description="a version number, a stage label (production, staging, ...) or latest; "
                "default: the production version, else the newest", max_length=64)
ERRORS = {404: {"model": ErrorBody, "description": "no such model or version"},
          422: {"model": ErrorBody, "description": "the record(s) do not fit the model: missing or unknown "
                "columns, values that are not finite numbers"}}
BATCH_SCHEMA = BatchRequest.model_json_schema()


async def _served(request: Request, name: str, version: str | None) -> Served:
    service = request.app.state.service
    number = service.cache.resolve(name, version)  # a stat of registry.json; the labels are cached
    served = service.cache.cached(name, number)
    if served is None:
        served = await run_in_threadpool(service.served, name, number)
    return served


def _unreadable(exc: Exception) -> DataError:
    return DataError(f"The record(s) hold values the model cannot read: {type(exc).__name__}: {exc}.",
                     hint="send flat JSON objects of column -> number (or text for text features)")


@router.post("/v1/models/{name}/score", summary="Score one record", responses=ERRORS,
             dependencies=[Depends(require("score"))])
async def score_one(name: str, body: ScoreRequest, request: Request, version: str | None = VERSION) -> ScoredRecord:
    served = await _served(request, name, version)
    try:
        out = served.model.score_one(body.record)
    except AdpipeError:
        raise
    except (TypeError, ValueError, KeyError) as exc:
        raise _unreadable(exc) from None
    service = request.app.state.service
    probability = float(out[schema.PROBABILITY])
    service.state.record_scores(served.ref, np.array([probability]))
    metrics = service.metrics
    metrics.rows.labels(served.name).inc()
    if out[schema.LABEL]:
        metrics.anomalies.labels(served.name).inc()
        service.state.add_anomalies([_anomaly(served, out, body.record)])
    return JSONBody(out)


def _anomaly(served: Served, out: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    return {"at": now(), "model": served.name, "version": served.version,
            "anomaly_score": float(out[schema.SCORE]), "anomaly_probability": float(out[schema.PROBABILITY]),
            "severity": str(out[schema.SEVERITY]), "record": record}


def parse_batch(body: bytes, max_rows: int) -> list[dict[str, Any]]:
    """The records of a batch body (orjson; the standard parser for NaN/Infinity tokens), checked."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            data = json.loads(body)  # accepts NaN and Infinity, which orjson refuses; those rows are rejected
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "malformed_json", f"The request body is not valid JSON: {exc}.",
                           'send {"records": [{"column": value, ...}, ...]}') from None
    if not isinstance(data, dict) or "records" not in data:
        raise ApiError(422, "validation_error", "The request is not valid: records: Field required.",
                       'send {"records": [{"column": value, ...}, ...]}',
                       [{"loc": "records", "msg": "Field required", "type": "missing"}])
    extra = [k for k in data if k != "records"]
    if extra:
        raise ApiError(422, "validation_error", f"The request is not valid: {extra[0]}: Extra inputs are not "
                       "permitted.", 'send only {"records": [...]}',
                       [{"loc": str(k), "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
                        for k in extra[:20]])
    records = data["records"]
    if not isinstance(records, list):
        raise ApiError(422, "validation_error", "The request is not valid: records: Input should be a valid list.",
                       'send {"records": [{"column": value, ...}, ...]}',
                       [{"loc": "records", "msg": "Input should be a valid list", "type": "list_type"}])
    if len(records) > max_rows:
        raise ApiError(413, "too_many_records", f"The batch has {len(records):,} records; this server takes at "
                       f"most {max_rows:,} per request.", "split the batch into smaller requests")
    bad = [i for i, r in enumerate(records) if type(r) is not dict]
    if bad:
        raise ApiError(422, "validation_error", f"The request is not valid: records.{bad[0]}: Input should be a "
                       "valid dictionary (an object of column -> value).", "every record is a JSON object",
                       [{"loc": f"records.{i}", "msg": "Input should be a valid dictionary", "type": "dict_type"}
                        for i in bad[:20]])
    return records


@router.post("/v1/models/{name}/score/batch", summary="Score a batch of records", response_model=BatchResult,
             responses={**ERRORS, 413: {"model": ErrorBody, "description": "more than max_batch_rows records"}},
             openapi_extra={"requestBody": {"required": True,
                                            "content": {"application/json": {"schema": BATCH_SCHEMA}}}},
             dependencies=[Depends(require("score"))])
async def score_batch(name: str, request: Request, version: str | None = VERSION) -> JSONBody:
    service = request.app.state.service
    records = parse_batch(await request.body(), service.settings.max_batch_rows)
    service.cache.resolve(name, version)  # 404 before any work
    started, started_at = time.perf_counter(), now()
    run_id = uuid.uuid4().hex

    def run() -> BatchResult:
        served = service.served(name, service.cache.resolve(name, version))
        try:
            try:
                result = served.model.score_records(records, run_id=run_id)
            except AdpipeError:
                raise
            except (TypeError, ValueError, KeyError) as exc:
                raise _unreadable(exc) from None
            if result.rows_in and not result.rows_scored:
                first = result.rejected[0]
                raise DataError(f"None of the {result.rows_in:,} records can be scored; record {first.index}: "
                                f"{first.reason}.", hint="send finite numbers for every feature column")
        except DataError as exc:
            service.state.add_run({"id": run_id, "kind": "score_batch", "model": served.ref, "status": "failed",
                                   "started_at": started_at, "finished_at": now(), "rows_in": len(records),
                                   "anomalies": 0, "seconds": round(time.perf_counter() - started, 4),
                                   "error": exc.message})
            raise
        _record_batch(service, served, records, result)
        service.state.add_run({"id": run_id, "kind": "score_batch", "model": served.ref, "status": "succeeded",
                               "started_at": started_at, "finished_at": now(), "rows_in": result.rows_in,
                               "anomalies": result.anomalies, "seconds": round(time.perf_counter() - started, 4),
                               "error": None})
        return result

    result = await run_in_threadpool(run)
    return JSONBody(result.jsonable())


def _record_batch(service, served: Served, records: list[dict[str, Any]], result: BatchResult) -> None:
    """Metrics, histogram, anomalies and drift of a scored batch."""
    metrics, name = service.metrics, served.name
    metrics.rows.labels(name).inc(result.rows_scored)
    if result.rows_rejected:
        metrics.rejected.labels(name).inc(result.rows_rejected)
    if result.anomalies:
        metrics.anomalies.labels(name).inc(result.anomalies)
    rows = result.results
    if not rows:
        return
    service.state.record_scores(served.ref, np.fromiter((r[schema.PROBABILITY] for r in rows), float, len(rows)))
    kept = None
    if result.anomalies or served.monitor is not None:
        dropped = {r.index for r in result.rejected}
        kept = [i for i in range(len(records)) if i not in dropped] if dropped else range(len(records))
    if result.anomalies:
        service.state.add_anomalies([_anomaly(served, out, records[i]) for out, i in zip(rows, kept, strict=True)
                                     if out[schema.LABEL]])
    if served.monitor is not None:
        from adpipe.core.engine import records_frame

        frame = records_frame([records[i] for i in kept])
        scores = np.fromiter((r[schema.SCORE] for r in rows), float, len(rows))
        with served.lock:
            try:
                events = served.monitor.update(frame, scores, served.rows_seen)
            except Exception:  # drift watching must never fail a request
                events = []
            served.rows_seen += len(rows)
        for event in events:
            metrics.drift_events.labels(name, event.feature, event.test).inc()
            metrics.drift_flag.labels(name, event.feature).set(1)
