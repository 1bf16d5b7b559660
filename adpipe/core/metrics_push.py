"""Metrics of a finished batch run, pushed to a Prometheus Pushgateway and/or written to a textfile.

Configured by the ``metrics:`` section (:class:`adpipe.core.config.MetricsSpec`). A successful run replaces
its group on the gateway (``push_to_gateway``); a failed run adds to it (``pushadd_to_gateway``) with
``status="failed"``, so the last successful run's ``adpipe_last_success_timestamp_seconds`` stays. A push
or write that fails is logged as a warning: it never fails the run or loses its outputs.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, pushadd_to_gateway, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger("adpipe.metrics")

LAST_SUCCESS = "adpipe_last_success_timestamp_seconds"
#: name -> help of the per-run gauges (labels pipeline, status)
RUN_GAUGES = {
    "adpipe_run_rows_in": "Rows the run read",
    "adpipe_run_rows_scored": "Rows the run scored",
    "adpipe_run_rows_rejected": "Rows the run rejected (rows_in = rows_scored + rows_rejected)",
    "adpipe_run_anomalies": "Rows the run flagged as anomalies",
    "adpipe_run_anomaly_rate": "anomalies / rows_scored",
}


def registry_for(pipeline: str, *, status: str, seconds: float, summary: Any = None,
                 last_success: float | None = None, finished: float | None = None) -> CollectorRegistry:
    """The gauges of one run: counts and timings from ``summary`` (none for a failed run)."""
    reg = CollectorRegistry()
    finished = time.time() if finished is None else finished
    labels = {"pipeline": pipeline, "status": status}

    def gauge(name: str, doc: str, value: float, extra: dict[str, str] | None = None) -> None:
        g = Gauge(name, doc, [*labels, *(extra or {})], registry=reg)
        g.labels(**labels, **(extra or {})).set(value)

    gauge("adpipe_run_seconds", "Wall-clock seconds of the run", seconds)
    gauge("adpipe_run_timestamp_seconds", "When the run ended (Unix time)", finished)
    gauge("adpipe_run_success", "1 if the run succeeded, 0 if it failed", 1.0 if status == "succeeded" else 0.0)
    if summary is not None:
        for name, doc in RUN_GAUGES.items():  # adpipe_run_rows_in <- summary.rows_in, ...
            gauge(name, doc, getattr(summary, name.removeprefix("adpipe_run_")))
        stages = Gauge("adpipe_run_stage_seconds", "Seconds the run spent per stage", [*labels, "stage"],
                       registry=reg)
        for stage, value in summary.stage_seconds.items():
            stages.labels(**labels, stage=stage).set(value)
        info = Gauge("adpipe_run_model_info", "The model the run scored with (value 1)",
                     ["pipeline", "model_version", "detector"], registry=reg)
        info.labels(pipeline, summary.model_version, summary.detector or "").set(1)
    if last_success is not None:
        Gauge(LAST_SUCCESS, "When the pipeline last ran successfully (Unix time)", ["pipeline"],
              registry=reg).labels(pipeline).set(last_success)
    return reg


def push(spec: Any, pipeline: str, *, status: str, seconds: float, summary: Any = None) -> None:
    """Push and/or write a run's metrics as ``spec`` (a MetricsSpec) says; never raises."""
    if spec is None or (spec.pushgateway is None and spec.textfile is None):
        return
    finished = time.time()
    ok = status == "succeeded"
    if spec.pushgateway is not None:
        reg = registry_for(pipeline, status=status, seconds=seconds, summary=summary,
                           last_success=finished if ok else None, finished=finished)
        grouping = {"pipeline": pipeline, **spec.grouping}
        send = push_to_gateway if ok else pushadd_to_gateway  # a failure keeps the last success on the gateway
        try:
            send(spec.pushgateway, job=spec.job, registry=reg, grouping_key=grouping, timeout=spec.timeout_seconds)
        except Exception as exc:  # network, HTTP status, DNS: the run itself is done and stays done
            log.warning("could not push the run's metrics to %s: %s: %s", spec.pushgateway, type(exc).__name__, exc,
                        extra={"pipeline": pipeline, "pushgateway": spec.pushgateway})
    if spec.textfile is not None:
        path = Path(spec.textfile)
        last = finished if ok else _read_last_success(path, pipeline)  # a failure keeps the last success
        reg = registry_for(pipeline, status=status, seconds=seconds, summary=summary, last_success=last,
                           finished=finished)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_to_textfile(str(path), reg)
        except Exception as exc:
            log.warning("could not write the run's metrics to %s: %s: %s", path, type(exc).__name__, exc,
                        extra={"pipeline": pipeline, "textfile": str(path)})


def _read_last_success(path: Path, pipeline: str) -> float | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS and sample.labels.get("pipeline") == pipeline:
                    return float(sample.value)
    except ValueError:  # not a metrics file we can read: start afresh
        return None
    return None
