"""The model of a stream run: warm-up, sliding window, refits, hot reload, checkpoints.

- No model and no fit.source: the first ``stream.warmup_rows`` records are held (not acknowledged),
  the pipeline is fitted on them, then they are scored like every other record.
- ``refit_every_rows`` / ``refit_every_seconds`` (or a drift event with ``drift.action: refit``): a
  new pipeline is fitted on the window of recent valid records in a background thread and swapped in
  between two batches.
- With ``model=NAME@STAGE``: the store is asked every ``model_check_seconds`` and a new version is
  loaded when the stage moves (``reload_model``).
- Checkpoints: a model that learns online or is refitted is saved, with the window, every
  ``checkpoint_every_seconds`` and at stop, so a restart resumes instead of learning again.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import json
import logging
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from adpipe.core.config import PipelineConfig, ValidationSpec
from adpipe.core.errors import AdpipeError, ConfigError
from adpipe.core.modelfile import adpipe_home
from adpipe.core.plugin import Batch
from adpipe.core.stream import Clock

if TYPE_CHECKING:
    from adpipe.core.engine import FittedPipeline

log = logging.getLogger("adpipe.stream")


class Window:
    """The most recent ``limit`` rows, as a bounded deque of frames (oldest rows dropped first)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.frames: collections.deque[pd.DataFrame] = collections.deque()
        self.rows = 0

    def add(self, frame: pd.DataFrame) -> None:
        if not len(frame):
            return
        self.frames.append(frame.tail(self.limit))
        self.rows += min(len(frame), self.limit)
        while self.rows - len(self.frames[0]) >= self.limit:
            self.rows -= len(self.frames.popleft())

    def frame(self) -> pd.DataFrame:
        if not self.frames:
            return pd.DataFrame()
        return pd.concat(list(self.frames), ignore_index=True).tail(self.limit).reset_index(drop=True)


class Checkpoints:
    """Where a stream's learned state goes: ``state_dir`` files, or a Redis key (``stream.checkpoint``)."""

    def __init__(self, config: PipelineConfig):
        spec = config.stream
        self.url = spec.checkpoint
        if self.url is not None and not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"stream.checkpoint = {self.url!r} is not a Redis URL.",
                              hint="use redis://host:6379/0, or leave it out to keep checkpoints in stream.state_dir")
        self.dir = Path(spec.state_dir) if spec.state_dir else adpipe_home() / "state" / config.name
        self.key = f"adpipe:state:{config.name}"

    def where(self) -> str:
        return f"{self.url.split('@')[-1]}#{self.key}" if self.url else str(self.dir)

    def save(self, model: "FittedPipeline", window: pd.DataFrame, meta: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = model.save(Path(tmp) / "model.adpipe")
            blobs = {"model": path.read_bytes(), "window": _parquet(window), "meta": json.dumps(meta).encode()}
        if self.url:
            client = self._redis()
            client.hset(self.key, mapping=blobs)
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        for name, blob in blobs.items():  # each file atomically; meta last: it marks a complete checkpoint
            tmp_path = self.dir / f".{name}.tmp"
            tmp_path.write_bytes(blob)
            tmp_path.replace(self.dir / name)

    def load(self) -> tuple["FittedPipeline", pd.DataFrame, dict[str, Any]] | None:
        from adpipe.core.model import load

        if self.url:
            blobs = {k.decode(): v for k, v in self._redis().hgetall(self.key).items()}
        else:
            blobs = {n: (self.dir / n).read_bytes() for n in ("model", "window", "meta") if (self.dir / n).exists()}
        if set(blobs) != {"model", "window", "meta"}:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.adpipe"
            path.write_bytes(blobs["model"])
            model = load(path)  # signed with this machine's key when it was saved
        window = pd.read_parquet(io.BytesIO(blobs["window"])) if blobs["window"] else pd.DataFrame()
        return model, window, json.loads(blobs["meta"])

    def _redis(self):
        try:
            import redis
        except ImportError as exc:
            raise ConfigError("Checkpoints in Redis need the redis client.",
                              hint="pip install 'adpipe[stream]'") from exc
        return redis.Redis.from_url(self.url)


def _parquet(frame: pd.DataFrame) -> bytes:
    if not len(frame):
        return b""
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def fingerprint(config: PipelineConfig) -> str:
    """What must match for a checkpoint to be resumed: columns and the fitted stages."""
    d = config.to_dict()
    parts = {k: d.get(k) for k in ("columns", "preprocess", "detector", "threshold", "calibration")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ModelKeeper:
    """Holds the model of a stream run and changes it between batches."""

    def __init__(self, config: PipelineConfig, model: "FittedPipeline | None" = None, model_ref: str | None = None,
                 store: Any = None, trusted: bool = False, on_change=None, refit_on_drift: bool = False):
        self.config, self.spec = config, config.stream
        self.model, self.ref, self.store, self.trusted = model, model_ref, store, trusted
        self.on_change = on_change or (lambda model, reason: None)
        self.fit_config = config if config.validation.on_invalid != "raise" else \
            dataclasses.replace(config, validation=ValidationSpec(on_invalid="drop"))
        self.refits = self.spec.refit_every_rows is not None or self.spec.refit_every_seconds is not None \
            or refit_on_drift
        self.window = Window(self.spec.window_rows)
        self.held: list[Batch] = []
        self.held_rows = 0
        self.checkpoints = Checkpoints(config)
        self.reload_clock = Clock(self.spec.model_check_seconds if model_ref and self.spec.reload_model else None)
        self.refit_clock = Clock(self.spec.refit_every_seconds)
        self.checkpoint_clock = Clock(self.spec.checkpoint_every_seconds)
        self.rows_since_fit = 0
        self.changed = False  # learned or refitted since the last checkpoint
        self.base_version = model.model_version if model is not None else None
        self._job: threading.Thread | None = None
        self._fitted: "FittedPipeline | None" = None
        self._fit_error: BaseException | None = None
        self._refit_wanted = False

    # ------------------------------------------------------------------ start
    def resume(self) -> bool:
        """Take the last checkpoint when it fits this config (and, with a stored model, its version)."""
        try:
            found = self.checkpoints.load()
        except AdpipeError as exc:
            log.warning("checkpoint at %s not used: %s", self.checkpoints.where(), exc)
            return False
        if found is None:
            return False
        model, window, meta = found
        if meta.get("fingerprint") != fingerprint(self.config) or meta.get("base_version") != self.base_version:
            log.warning("checkpoint at %s was made by another config or model; starting afresh",
                        self.checkpoints.where())
            return False
        self.model = model
        self.window.add(window)
        log.info("resumed %s from the checkpoint at %s (saved %s)", model.model_version, self.checkpoints.where(),
                 meta.get("saved_at"))
        return True

    @property
    def warming(self) -> bool:
        return self.model is None

    def hold(self, batch: Batch) -> list[Batch]:
        """Warm-up: keep ``batch``; once enough rows are held, fit and return the held batches to score."""
        self.held.append(batch)
        self.held_rows += len(batch.data)
        if self.held_rows < self.spec.warmup_rows:
            return []
        frame = pd.concat([b.data for b in self.held], ignore_index=True)
        log.info("warm-up: fitting on the first %s records", f"{len(frame):,}")
        self.model = self._fit(frame)
        self.base_version = None
        self.changed = True
        self.on_change(self.model, "warmup")
        held, self.held, self.held_rows = self.held, [], 0
        return held

    # ------------------------------------------------------------------ while running
    def observe(self, frame: pd.DataFrame, learned: bool) -> None:
        """Rows just scored (valid input rows): kept in the window for refits."""
        if self.refits:
            self.window.add(frame)
        self.rows_since_fit += len(frame)
        self.changed = self.changed or learned

    def request_refit(self) -> None:
        self._refit_wanted = True

    def tick(self) -> None:
        """Between batches: swap in a finished refit, look for a new stored version, start refits, checkpoint."""
        if self._job is not None and not self._job.is_alive():
            self._job = None
            if self._fit_error is not None:
                log.error("refit failed, keeping %s: %s", self.model.model_version, self._fit_error)
                self._fit_error = None
            else:
                self.model, self._fitted = self._fitted, None
                self.changed = True
                self.on_change(self.model, "refit")
        if self.reload_clock.due():
            self._reload()
        if self._refit_due() and self._job is None and self.window.rows >= 10:
            self._refit_wanted = False
            self.rows_since_fit = 0
            frame = self.window.frame()
            self._job = threading.Thread(target=self._refit, args=(frame,), name="adpipe-refit", daemon=True)
            self._job.start()
        if self.checkpoint_clock.due():
            self.checkpoint()

    def _refit_due(self) -> bool:
        every = self.spec.refit_every_rows
        return self._refit_wanted or (every is not None and self.rows_since_fit >= every) or self.refit_clock.due()

    def _refit(self, frame: pd.DataFrame) -> None:
        try:
            self._fitted = self._fit(frame)
        except BaseException as exc:  # reported on the scoring thread
            self._fit_error = exc

    def _fit(self, frame: pd.DataFrame) -> "FittedPipeline":
        from adpipe.core.engine import FittedPipeline

        started = time.perf_counter()
        model = FittedPipeline.fit(self.fit_config, frame)
        model.config = self.config
        model.fit_scores_ = None
        log.info("fitted %s on %s records in %.2f s", model.model_version, f"{len(frame):,}",
                 time.perf_counter() - started)
        return model

    def _reload(self) -> None:
        from adpipe.core.model import load_model
        from adpipe.core.store import ModelStore

        try:
            store = self.store if isinstance(self.store, ModelStore) else ModelStore(self.store)
            found = store.resolve(self.ref)
            version = f"{found.name}@{found.version}"
            if version == self.base_version:
                return
            model = load_model(self.ref, store=store, trusted=self.trusted)
        except AdpipeError as exc:  # the store being away must not stop scoring
            log.warning("could not check the store for a new version of %s: %s", self.ref, exc)
            return
        log.info("model %s -> %s (the store's %s moved)", self.base_version, model.model_version, self.ref)
        self.model, self.base_version = model, model.model_version
        self.changed = False
        self.on_change(model, "reload")

    def checkpoint(self) -> None:
        if not self.changed or self.model is None:
            return
        meta = {"fingerprint": fingerprint(self.config), "base_version": self.base_version,
                "model_version": self.model.model_version, "saved_at": datetime.now(timezone.utc).isoformat()}
        try:
            self.checkpoints.save(self.model, self.window.frame() if self.refits else pd.DataFrame(), meta)
            self.changed = False
        except Exception as exc:  # a failed checkpoint costs relearning after a restart, never records
            log.warning("checkpoint to %s failed: %s", self.checkpoints.where(), exc)

    def close(self) -> None:
        if self._job is not None:
            self._job.join(timeout=60)
        self.checkpoint()
