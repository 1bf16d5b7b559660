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
import pandas as pd
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from adpipe.core import schema
from adpipe.core.engine import result_rows
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


ARROW = "application/vnd.apache.arrow.stream"
SHAPE_HINT = 'send {"records": [{"column": value, ...}, ...]} or {"columns": {"column": [values], ...}}'


def _invalid(loc: str, msg: str, kind: str, hint: str = SHAPE_HINT) -> ApiError:
    return ApiError(422, "validation_error", f"The request is not valid: {loc}: {msg}.", hint,
                    [{"loc": loc, "msg": msg, "type": kind}])


def _too_many(rows: int, max_rows: int) -> ApiError:
    return ApiError(413, "too_many_records", f"The batch has {rows:,} records; this server takes at most "
                    f"{max_rows:,} per request.", "split the batch into smaller requests")


def parse_batch(body: bytes, content_type: str, max_rows: int) -> tuple[pd.DataFrame, str]:
    """The records of a batch body as a frame, and the body's shape: records, columns or arrow."""
    if content_type.split(";")[0].strip().lower() == ARROW:
        return _arrow_frame(body, max_rows), "arrow"
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            data = json.loads(body)  # accepts NaN and Infinity, which orjson refuses; those rows are rejected
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "malformed_json", f"The request body is not valid JSON: {exc}.", SHAPE_HINT) from None
    if not isinstance(data, dict) or ("records" in data) == ("columns" in data):
        raise _invalid("records", "give exactly one of records and columns", "missing")
    extra = [k for k in data if k not in ("records", "columns")]
    if extra:
        raise ApiError(422, "validation_error", f"The request is not valid: {extra[0]}: Extra inputs are not "
                       "permitted.", SHAPE_HINT, [{"loc": str(k), "msg": "Extra inputs are not permitted",
                                                   "type": "extra_forbidden"} for k in extra[:20]])
    if "columns" in data:
        return _columns_frame(data["columns"], max_rows), "columns"
    records = data["records"]
    if not isinstance(records, list):
        raise _invalid("records", "Input should be a valid list", "list_type")
    if len(records) > max_rows:
        raise _too_many(len(records), max_rows)
    bad = [i for i, r in enumerate(records) if type(r) is not dict]
    if bad:
        raise ApiError(422, "validation_error", f"The request is not valid: records.{bad[0]}: Input should be a "
                       "valid dictionary (an object of column -> value).", "every record is a JSON object",
                       [{"loc": f"records.{i}", "msg": "Input should be a valid dictionary", "type": "dict_type"}
                        for i in bad[:20]])
    from adpipe.core.engine import records_frame

    return records_frame(records), "records"


def _columns_frame(columns: Any, max_rows: int) -> pd.DataFrame:
    if not isinstance(columns, dict) or not columns:
        raise _invalid("columns", "Input should be a non-empty object of column -> list of values", "dict_type")
    lengths = {}
    for name, values in columns.items():
        if not isinstance(values, list):
            raise _invalid(f"columns.{name}", "Input should be a valid list", "list_type")
        lengths[name] = len(values)
    if len(set(lengths.values())) > 1:
        raise _invalid("columns", "every column needs the same number of values, got "
                       + ", ".join(f"{k}: {n}" for k, n in list(lengths.items())[:10]), "value_error")
    rows = next(iter(lengths.values()))
    if rows > max_rows:
        raise _too_many(rows, max_rows)
    return pd.DataFrame({name: _column(values) for name, values in columns.items()})


def _column(values: list[Any]) -> np.ndarray | list[Any]:
    """A numeric JSON list as a numpy array (faster than pandas' own inference); anything else as it is."""
    array = np.asarray(values) if values and type(values[0]) in (int, float) else None
    return array if array is not None and array.dtype.kind in "fiu" else values


def _arrow_frame(body: bytes, max_rows: int) -> pd.DataFrame:
    import pyarrow as pa

    try:
        table = pa.ipc.open_stream(body).read_all()
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise ApiError(400, "malformed_arrow", f"The request body is not an Arrow IPC stream: {exc}.",
                       "send pyarrow.ipc.new_stream(...) output with Content-Type " + ARROW) from None
    if table.num_rows > max_rows:
        raise _too_many(table.num_rows, max_rows)
    return table.to_pandas()


def _arrow_body(result: pd.DataFrame, batch: BatchResult) -> Response:
    """The result frame as an Arrow IPC stream; counts in headers, rejected rows in the schema metadata."""
    import pyarrow as pa

    table = pa.Table.from_pandas(result, preserve_index=False)
    rejected = orjson.dumps([r.__dict__ for r in batch.rejected])
    table = table.replace_schema_metadata({b"adpipe.rejected": rejected})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    headers = {"X-Adpipe-Model-Version": batch.model_version, "X-Adpipe-Run-Id": batch.run_id,
               **{f"X-Adpipe-{k.replace('_', '-').title()}": str(getattr(batch, k))
                  for k in ("rows_in", "rows_scored", "rows_rejected", "anomalies")}}
    return Response(sink.getvalue().to_pybytes(), media_type=ARROW, headers=headers)


@router.post("/v1/models/{name}/score/batch", summary="Score a batch of records", response_model=BatchResult,
             responses={**ERRORS, 413: {"model": ErrorBody, "description": "more than max_batch_rows records"}},
             openapi_extra={"requestBody": {"required": True,
                                            "content": {"application/json": {"schema": BATCH_SCHEMA},
                                                        ARROW: {"schema": {"type": "string", "format": "binary"}}}}},
             dependencies=[Depends(require("score"))])
async def score_batch(name: str, request: Request, version: str | None = VERSION) -> Response:
    service = request.app.state.service
    body = await request.body()
    frame, shape = await run_in_threadpool(parse_batch, body, request.headers.get("content-type", ""),
                                           service.settings.max_batch_rows)
    number = service.cache.resolve(name, version)  # 404 before any work
    started, started_at = time.perf_counter(), now()
    run_id = uuid.uuid4().hex

    def run() -> Response:
        served = service.served(name, number)
        try:
            try:
                result, batch = served.model.score_table(frame, run_id=run_id)
            except AdpipeError:
                raise
            except (TypeError, ValueError, KeyError) as exc:
                raise _unreadable(exc) from None
            if batch.rows_in and not batch.rows_scored:
                first = batch.rejected[0]
                raise DataError(f"None of the {batch.rows_in:,} records can be scored; record {first.index}: "
                                f"{first.reason}.", hint="send finite numbers for every feature column")
        except DataError as exc:
            service.state.add_run({"id": run_id, "kind": "score_batch", "model": served.ref, "status": "failed",
                                   "started_at": started_at, "finished_at": now(), "rows_in": len(frame),
                                   "anomalies": 0, "seconds": round(time.perf_counter() - started, 4),
                                   "error": exc.message})
            raise
        _record_batch(service, served, frame, result, batch)
        service.state.add_run({"id": run_id, "kind": "score_batch", "model": served.ref, "status": "succeeded",
                               "started_at": started_at, "finished_at": now(), "rows_in": batch.rows_in,
                               "anomalies": batch.anomalies, "seconds": round(time.perf_counter() - started, 4),
                               "error": None})
        if shape == "arrow":
            return _arrow_body(result, batch)
        if shape == "columns":
            batch.columns = {c: (v.tolist() if v.dtype == object else v) for c, v in
                             ((c, result[c].to_numpy()) for c in result.columns)}
        else:
            batch.results = result_rows(result)
        return JSONBody(batch.jsonable())

    return await run_in_threadpool(run)


def _record_batch(service, served: Served, frame: pd.DataFrame, result: pd.DataFrame, batch: BatchResult) -> None:
    """Metrics, histogram, anomalies and drift of a scored batch (``result`` is indexed like ``frame``)."""
    metrics, name = service.metrics, served.name
    metrics.rows.labels(name).inc(batch.rows_scored)
    if batch.rows_rejected:
        metrics.rejected.labels(name).inc(batch.rows_rejected)
    if batch.anomalies:
        metrics.anomalies.labels(name).inc(batch.anomalies)
    if not len(result):
        return
    service.state.record_scores(served.ref, result[schema.PROBABILITY].to_numpy(dtype=float))
    if batch.anomalies:
        flagged = result[result[schema.LABEL] == 1]
        records = frame.loc[flagged.index].to_dict(orient="records")
        service.state.add_anomalies([_anomaly(served, out, record) for out, record in
                                     zip(flagged.to_dict(orient="records"), records, strict=True)])
    if served.monitor is not None:
        with served.lock:
            try:
                events = served.monitor.update(frame.loc[result.index], result[schema.SCORE].to_numpy(dtype=float),
                                               served.rows_seen)
            except Exception:  # drift watching must never fail a request
                events = []
            served.rows_seen += len(result)
        for event in events:
            metrics.drift_events.labels(name, event.feature, event.test).inc()
            metrics.drift_flag.labels(name, event.feature).set(1)
