"""One run's moving parts: score a batch, write it, alert, watch drift, acknowledge it.

:class:`RunState` is what the runner's loop calls for every batch. For an endless source it also
rejects bad rows instead of stopping, hands them to the dead-letter destination, learns online,
keeps the model up to date between batches, and reports status and metrics.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from adpipe.core import schema
from adpipe.core.errors import AdpipeError, DataError, PluginError
from adpipe.core.metrics import RunMetrics
from adpipe.core.plugin import Batch
from adpipe.core.stream import Clock

if TYPE_CHECKING:
    from adpipe.core.runner import Runner

log = logging.getLogger("adpipe.stream")
IDLE_BEFORE_FIRST = 60.0  # idle_stop_seconds waits at least this long for the first record


class RunState:
    def __init__(self, runner: "Runner", ctx, summary, sinks, reject, channels, source, keeper, known_scores):
        self.runner, self.ctx, self.summary = runner, ctx, summary
        self.cfg, self.registry, self.timer = runner.config, runner.registry, runner.timer
        self.sinks, self.reject, self.channels, self.source = sinks, reject, channels, source
        self.keeper, self.known_scores = keeper, known_scores
        self.endless = keeper is not None
        self.labels_seen: list = []
        self.scores_seen: list = []
        self.flags_seen: list = []
        self.metrics = RunMetrics(self.cfg.name)
        self.monitor = None
        spec = self.cfg.stream
        self.status_clock = Clock(spec.status_every_seconds if self.endless else None)
        self.last_record = time.monotonic()
        self.first_record: float | None = None
        self.rate_mark = (time.monotonic(), 0)
        if self.endless:
            keeper.on_change = self.model_changed
            if spec.metrics_port is not None:
                self.metrics.serve(spec.metrics_port)
            if getattr(source, "pipeline", None) == "":
                source.pipeline = self.cfg.name  # named in dead-letter records
        if runner.model is not None or (keeper is not None and keeper.model is not None):
            self.model_changed(keeper.model if keeper is not None else runner.model, "start")

    # ------------------------------------------------------------------ model
    def model_changed(self, model, reason: str) -> None:
        self.runner.model = model
        self.ctx.model_version = self.summary.model_version = model.model_version
        self.ctx.id_columns = model.id_columns
        self.metrics.model_version(model.model_version)
        if reason != "start":
            self.metrics.refits.labels(self.cfg.name, reason).inc()
        if self.cfg.drift_detectors:
            reference = getattr(model, "reference", None) or None
            if self.monitor is None:
                from adpipe.core.drift import DriftMonitor

                self.monitor = DriftMonitor(self.cfg, model.numeric_columns, reference, self.ctx)
            elif reason in ("refit", "reload", "warmup"):
                self.monitor.restart(reference)

    # ------------------------------------------------------------------ one batch
    def process(self, batch: Batch, learn: bool = True) -> None:
        cfg, summary, model, timer = self.cfg, self.summary, self.runner.model, self.timer
        started = time.perf_counter()
        frame = batch.data
        online = learn and self.endless and bool(getattr(model.detector, "online", False))
        if self.endless:
            frame = _align(frame, model, cfg.columns.label)
        try:
            result, rejected = model.score_batch(
                frame, row_start=summary.rows_in, run_id=self.ctx.run_id, timer=timer,
                known_scores=self.known_scores, learn=online,
                policy="drop" if self.endless and model.config.validation.on_invalid == "raise" else None)
        except DataError as exc:
            if not self.endless:
                raise
            result = frame.iloc[:0]  # a batch the model cannot read at all: every row is rejected
            rejected = frame.assign(**{schema.REJECT_REASON: f"{type(exc).__name__}: {exc}"})
        n = len(frame)
        summary.rows_in += n
        summary.rows_scored += len(result)
        summary.rows_rejected += len(rejected)
        summary.anomalies += int(result[schema.LABEL].sum()) if len(result) else 0
        summary.batches += 1
        summary.undecodable += int(batch.meta.get("dead_lettered", 0))
        with timer("write"):
            if len(result):
                for sink in self.sinks:
                    sink.write(result)
            if len(rejected):
                self._reject(batch, rejected)
        anomalies = result[result[schema.LABEL] == 1] if len(result) else result
        if len(anomalies):
            self._alert(anomalies)
            hook(self.registry, "adpipe_on_anomalies", context=self.ctx, anomalies=anomalies)
        label = cfg.columns.label
        if label and label in frame.columns and len(result):
            self.labels_seen.append(model.labels(frame.loc[result.index], label))
            self.scores_seen.append(result[schema.SCORE].to_numpy())
            self.flags_seen.append(result[schema.LABEL].to_numpy())
        if self.monitor is not None and len(result):
            self._drift(frame.loc[result.index], result[schema.SCORE].to_numpy(), summary.rows_in - n)
        hook(self.registry, "adpipe_after_batch", context=self.ctx, result=result, rejected=rejected)
        if self.keeper is not None:
            self.keeper.observe(frame.loc[result.index] if len(result) else frame.iloc[:0], online)
        if self.source is not None:
            self.source.ack(batch)
        self._count(n, len(result), len(rejected), len(anomalies), time.perf_counter() - started)

    def _reject(self, batch: Batch, rejected: pd.DataFrame) -> None:
        if self.reject is not None:
            self.reject.write(rejected)
        elif self.endless and self.source.dead_letter(batch, rejected):
            self.summary.dead_lettered += len(rejected)
        elif self.endless:
            log.warning("%d row(s) rejected and dropped (no reject_sink, no dead-letter destination): %s",
                        len(rejected), rejected[schema.REJECT_REASON].iloc[0])

    def _alert(self, anomalies: pd.DataFrame) -> None:
        for ch in self.channels:
            try:
                ch.send(anomalies, self.ctx)
                self.summary.alerts["sent"] += 1
            except Exception as exc:  # a channel never stops scoring
                self.summary.alerts["failed"] += 1
                self.ctx.log.warning("alert channel %s failed: %s", ch.name, exc)

    def _drift(self, frame: pd.DataFrame, scores: np.ndarray, row_start: int) -> None:
        events = self.monitor.update(frame, scores, row_start)
        action = self.cfg.drift.action
        for event in events:
            self.summary.drift_events += 1
            self.metrics.drift.labels(self.cfg.name, event.feature, event.test).inc()
            log.warning("drift: %s", event.summary())
            hook(self.registry, "adpipe_on_drift", context=self.ctx, event=event)
            if action in ("alert", "refit"):
                for ch in self.channels:
                    quiet(ch.event, "drift", event.severity, event.summary(), self.ctx, feature=event.feature,
                          test=event.test)
            if action == "refit" and self.keeper is not None:
                self.keeper.request_refit()

    def _count(self, n: int, scored: int, rejected: int, anomalies: int, seconds: float) -> None:
        m, name = self.metrics, self.cfg.name
        m.count("scored", scored)
        m.count("rejected", rejected)
        m.anomalies.labels(name).inc(anomalies)
        m.batches.labels(name).inc()
        m.batch_seconds.labels(name).observe(seconds)
        if n:
            self.last_record = time.monotonic()

    # ------------------------------------------------------------------ stream clock
    def tick(self, batch: Batch) -> None:
        """Between batches of an endless run: model upkeep, status, stop conditions."""
        self.keeper.tick()
        spec = self.cfg.stream
        if len(batch.data):
            self.last_record = time.monotonic()
            self.first_record = self.first_record or self.last_record
        if self.status_clock.due():
            self.status()
        idle = spec.idle_stop_seconds
        if idle is not None and self.first_record is None:
            idle = max(idle, IDLE_BEFORE_FIRST)  # joining a consumer group can take a while
        if idle is not None and time.monotonic() - self.last_record > idle:
            self.summary.stopped_by = "idle"
            self.runner.stop()
        if spec.max_records is not None and self.summary.rows_in + len(batch.data) >= spec.max_records:
            self.summary.stopped_by = self.summary.stopped_by or "max_records"
            self.runner.stop()  # this batch is still scored; the rest stays unread or unacknowledged

    def empty(self, batch: Batch) -> None:
        """A batch without rows: an idle tick, or a shed batch whose records went to the dead-letter topic."""
        shed = int(batch.meta.get("shed", 0))
        self.summary.undecodable += int(batch.meta.get("dead_lettered", 0))
        if shed:
            self.summary.rows_in += shed
            self.summary.rows_rejected += shed
            self.summary.dead_lettered += shed
            self.metrics.count("shed", shed)
        if batch.meta and self.source is not None:
            self.source.ack(batch)

    def stopping(self) -> None:
        self.summary.stopped_by = self.summary.stopped_by or ("signal" if self.runner.feed.stopping.is_set()
                                                              else "end")
        if self.keeper is not None:
            if self.keeper.warming and self.keeper.held:
                log.warning("stopped during warm-up: %d held records are not acknowledged and will be read again",
                            self.keeper.held_rows)
            self.keeper.close()
        self.status()

    def status(self) -> None:
        s = self.summary
        now = time.monotonic()
        t0, rows0 = self.rate_mark
        rate = (s.rows_in - rows0) / max(now - t0, 1e-9)
        self.rate_mark = (now, s.rows_in)
        feed = self.runner.feed
        log.info("%s: %s records (%s/s), %s anomalies, %s rejected, buffer %s/%s, model %s", self.cfg.name,
                 f"{s.rows_in:,}", f"{rate:,.0f}", f"{s.anomalies:,}", f"{s.rows_rejected:,}",
                 f"{feed.rows if feed else 0:,}", f"{feed.capacity if feed else 0:,}", s.model_version,
                 extra={"rows_in": s.rows_in, "rows_scored": s.rows_scored, "rows_rejected": s.rows_rejected,
                        "anomalies": s.anomalies, "rows_per_second": round(rate, 1),
                        "buffer_rows": feed.rows if feed else 0})
        self.write_metrics()

    def write_metrics(self) -> None:
        path = self.cfg.stream.metrics_file
        if path is not None:
            quiet(self.metrics.write, path)


def _align(frame: pd.DataFrame, model, label: str | None) -> pd.DataFrame:
    """Stream records may lack fields or carry extra ones: give the batch exactly the model's columns
    (missing ones as NaN, so those rows are rejected rather than the batch)."""
    wanted = list(dict.fromkeys([*model.id_columns, *model.feature_columns, *([label] if label else [])]))
    if list(frame.columns) == wanted:
        return frame
    present = [c for c in wanted if c in frame.columns or c != label]
    return frame.reindex(columns=present)


def hook(registry, name: str, **kwargs: Any) -> None:
    try:
        getattr(registry.hook, name)(**kwargs)
    except AdpipeError:
        raise
    except Exception as exc:
        raise PluginError(f"A plugin's {name} hook failed: {type(exc).__name__}: {exc}") from exc


def quiet(fn, *args, **kwargs) -> None:
    try:
        fn(*args, **kwargs)
    except Exception:  # cleanup must not hide the original error
        pass
