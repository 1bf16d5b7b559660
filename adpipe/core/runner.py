"""Scoring a source batch by batch into the sinks, with at-least-once acknowledgement.

Per batch: score (validate, preprocess, detect, calibrate, threshold) -> write every sink -> alert ->
lifecycle hooks -> acknowledge to the source. A failure closes every sink with ``success=False`` (no
half-written output) and re-raises.
"""

from __future__ import annotations

import contextlib
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import pandas as pd

from adpipe.core import evaluate, logs
from adpipe.core.config import PipelineConfig
from adpipe.core.context import RunContext
from adpipe.core.errors import AdpipeError, ConfigError, DataError, ModelError, SinkError
from adpipe.core.plugin import Batch
from adpipe.core.registry import Registry
from adpipe.core.run_state import RunState
from adpipe.core.run_state import hook as _hook
from adpipe.core.run_state import quiet as _quiet
from adpipe.core.stream import Feed, stop_on_signals
from adpipe.core.stream_model import ModelKeeper
from adpipe.core.summary import RunSummary, StageTimer

if TYPE_CHECKING:
    from adpipe.core.engine import FittedPipeline

#: stages every run summary reports (seconds), in pipeline order
STAGE_NAMES = ("read_training", "fit_detector", "read", "validate", "preprocess", "detect", "calibrate",
               "threshold", "write")


class Runner:
    """Scores a source batch by batch into the sinks, with at-least-once acknowledgement.

    A finite source (files) is read to its end. An endless one (Kafka, Redis Streams) is read through a
    bounded buffer until SIGTERM/SIGINT, ``stream.idle_stop_seconds`` or ``stream.max_records``; its
    model may be fitted on the first records (warm-up), refitted, reloaded and checkpointed
    (:mod:`adpipe.core.stream_model`).
    """

    def __init__(self, model: FittedPipeline | None, config: PipelineConfig, registry: Registry,
                 timer: StageTimer | None = None, started: float | None = None, *, model_ref: str | None = None,
                 store=None, trusted: bool = False):
        self.model, self.config, self.registry = model, config, registry
        self.timer = timer or StageTimer()
        self.started = started or time.perf_counter()
        self.model_ref, self.store, self.trusted = model_ref, store, trusted
        self.feed: Feed | None = None

    def stop(self) -> None:
        """End an endless run after the current batch (what SIGTERM does)."""
        if self.feed is not None:
            self.feed.stop()

    def run(self, *, progress: bool = False, write_summary: bool = True,
            batches: Iterator[Batch] | None = None, sinks: list | None = None,
            known_scores: pd.Series | None = None) -> RunSummary:
        cfg, timer = self.config, self.timer
        source = cfg.source.build() if batches is None else None
        endless = source is not None and not source.finite
        sinks = sinks if sinks is not None else [s.build() for s in cfg.sinks]
        reject = cfg.reject_sink.build() if cfg.reject_sink else None
        if endless:
            _require_durable([*sinks, *([reject] if reject else [])], cfg.source.type)
        keeper = self._keeper() if endless else None
        if keeper is None and self.model is None:
            raise ModelError("There is no model to score with.", hint="fit the pipeline first")
        model = self.model
        ctx = RunContext(pipeline=cfg.name, model_version=model.model_version if model else "",
                         base_dir=cfg.base_dir, config_path=cfg.path,
                         id_columns=model.id_columns if model else list(cfg.columns.id or []))
        logs.annotate(run_id=ctx.run_id, model_version=ctx.model_version or None)  # log lines of this run carry them
        summary = RunSummary(pipeline=cfg.name, run_id=ctx.run_id, model_version=ctx.model_version,
                             detector=cfg.detector.type if cfg.detector else "", started_at=ctx.started_at.isoformat(),
                             training=model.training if model else {}, config_path=str(cfg.path) if cfg.path else None)
        channels = [a.build() for a in cfg.alerts]
        state = RunState(self, ctx, summary, sinks, reject, channels, source, keeper, known_scores)
        opened: list = []
        bar = _progress(progress)
        try:
            for sink in [*sinks, *([reject] if reject else [])]:
                sink.open(ctx)
                opened.append(sink)
            for ch in channels:
                ch.open(ctx)
            _hook(self.registry, "adpipe_before_run", context=ctx)
            if endless:
                self.feed = Feed(source, cfg.engine.batch_rows, cfg.stream, on_buffer=state.metrics.buffer)
                stream: Iterator[Batch] = iter(self.feed)
            else:
                stream = batches if batches is not None else source.batches(cfg.engine.batch_rows)
            with stop_on_signals(self.stop) if endless else contextlib.nullcontext():
                for batch in _timed(stream, timer, "read"):
                    if endless:
                        state.tick(batch)
                        if not len(batch.data):
                            state.empty(batch)
                            continue
                        warmup = keeper.warming  # held batches were fitted on: scored, not learned again
                        ready = keeper.hold(batch) if warmup else [batch]
                    else:
                        warmup, ready = False, [batch]
                    for b in ready:
                        state.process(b, learn=not warmup)
                        if bar:
                            bar.advance(len(b.data))
            if endless:
                state.stopping()
            if summary.rows_in == 0 and not endless:
                raise DataError("The source yielded no rows to score.",
                                hint="check the source path and that the file has data rows below its header")
            with timer("write"):  # publish; a sink that cannot publish fails the run, the rest roll back
                published: list[str] = []
                while opened:
                    _publish(opened[0], published)
                    opened.pop(0)
        except BaseException as exc:
            for sink in opened:
                _quiet(sink.close, False)
            for ch in channels:  # a failed run is an alert too, through the same rules
                _quiet(ch.event, "pipeline_failed", "critical", f"{type(exc).__name__}: {exc}", ctx)
                _quiet(ch.close)
            _quiet(self.registry.hook.adpipe_on_error, context=ctx, error=exc)
            raise
        finally:
            if bar:
                bar.stop()
            if self.feed is not None:  # the reader thread ends before the source closes
                self.feed.stop()
                self.feed.join()
            if source is not None:
                _quiet(source.close)
        summary.outputs = [o for s in sinks for o in s.outputs()]  # in config order, without the rejects
        ctx.extra["outputs"] = summary.outputs  # alert messages link to the results
        for ch in channels:
            _quiet(ch.close)
            for key, value in ch.stats().items():
                summary.alerts[key] = summary.alerts.get(key, 0) + value
        summary.rejects_output = reject.outputs() if reject else []
        summary.stage_seconds = {**dict.fromkeys(STAGE_NAMES, 0.0), **timer.seconds}
        summary.metrics = _metrics(state.labels_seen, state.scores_seen, state.flags_seen)
        summary.finished_at = datetime.now(timezone.utc).isoformat()
        summary.seconds = time.perf_counter() - self.started
        if write_summary:
            summary.write_json(self._summary_path(summary))
        state.write_metrics()
        _hook(self.registry, "adpipe_after_run", context=ctx, summary=summary)
        return summary

    def _keeper(self) -> ModelKeeper:
        cfg = self.config
        keeper = ModelKeeper(cfg, self.model, self.model_ref, self.store, self.trusted,
                             refit_on_drift=bool(cfg.drift_detectors) and cfg.drift.action == "refit")
        keeper.resume()
        return keeper

    def _summary_path(self, summary: RunSummary) -> Path:
        cfg = self.config
        if cfg.summary.path is not None:
            return Path(cfg.summary.path)
        for out in summary.outputs:
            p = Path(out)
            if "://" not in out and p.is_file():
                return p.with_name(_strip_suffixes(p.name) + ".summary.json")
        return cfg.base_dir / "runs" / f"{cfg.name}-{summary.run_id}.summary.json"


OUTPUT_SUFFIXES = {".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".ndjson", ".json", ".gz", ".bz2", ".xz", ".zst",
                   ".zip", ".db", ".sqlite"}


def _strip_suffixes(name: str) -> str:
    """``daily.2024-01-01.csv.gz`` -> ``daily.2024-01-01``: only known output suffixes go."""
    stem, dot, suffix = name.rpartition(".")
    while dot and stem and f".{suffix.lower()}" in OUTPUT_SUFFIXES:
        name = stem
        stem, dot, suffix = name.rpartition(".")
    return name


def alert_failure(config: PipelineConfig, exc: BaseException) -> None:
    """Tell the config's alert channels that the run failed (a ``pipeline_failed`` alert, by their rules)."""
    if not config.alerts:
        return
    ctx = RunContext(pipeline=config.name, base_dir=config.base_dir, config_path=config.path)
    for spec in config.alerts:
        try:
            channel = spec.build()
            channel.open(ctx)
        except Exception:
            continue
        _quiet(channel.event, "pipeline_failed", "critical", f"{type(exc).__name__}: {exc}", ctx)
        _quiet(channel.close)


def _require_durable(sinks: list, source: str) -> None:
    weak = [s.name for s in sinks if not s.durable]
    if weak:
        raise ConfigError(
            f"The {source} source never ends, and the {', '.join(weak)} sink(s) publish only at the end of a run: "
            "records would be acknowledged before they are stored.",
            hint="in a stream write to kafka, redis_stream or sql sinks (or console for a look)")


def _publish(sink, published: list[str]) -> None:
    try:
        sink.close(True)
    except AdpipeError:
        raise
    except Exception as exc:
        raise SinkError(f"The {sink.name} sink could not finish its output: {type(exc).__name__}: {exc}",
                        hint="check free disk space and permissions of the output location" +
                        (f"; already published: {', '.join(published)}" if published else "")) from exc
    published.extend(sink.outputs())


def _timed(stream: Iterator[Batch], timer: StageTimer, stage: str) -> Iterator[Batch]:
    it = iter(stream)
    while True:
        with timer(stage):
            batch = next(it, None)
        if batch is None:
            return
        yield batch


def _metrics(labels: list, scores: list, flags: list) -> dict[str, float]:
    if not labels:
        return {}
    return evaluate.metrics(np.concatenate(labels), np.concatenate(scores), np.concatenate(flags))


class _Bar:
    def __init__(self):
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        columns = (SpinnerColumn(), TextColumn("scoring"), TextColumn("{task.completed:,.0f} rows"),
                   TextColumn("{task.fields[rate]}"), TimeElapsedColumn())
        self.progress = Progress(*columns, console=Console(stderr=True), transient=True)
        self.task = self.progress.add_task("score", total=None, rate="")
        self.start = time.perf_counter()
        self.rows = 0
        self.progress.start()

    def advance(self, n: int) -> None:
        self.rows += n
        rate = self.rows / max(time.perf_counter() - self.start, 1e-9)
        self.progress.update(self.task, advance=n, rate=f"{rate:,.0f} rows/s")

    def stop(self) -> None:
        self.progress.stop()


def _progress(enabled: bool) -> _Bar | None:
    return _Bar() if enabled and sys.stderr.isatty() else None


def fitting_status(enabled: bool):
    """A spinner on stderr while the training data is read and the pipeline fitted (terminals only)."""
    if not (enabled and sys.stderr.isatty()):
        return contextlib.nullcontext()
    from rich.console import Console

    return Console(stderr=True).status("reading the training data and fitting the pipeline")
