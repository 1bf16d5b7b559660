"""Served models: resolve ``?version=`` against the store, load each version once, keep the hot ones.

Stage labels and the version list are re-read only when a model's ``registry.json`` changes (one
``stat`` per lookup), so ``adpipe models promote`` from another process takes effect on the next request.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from adpipe.core.errors import ModelNotFoundError
from adpipe.core.messages import ModelInfo, ModelVersionInfo
from adpipe.core.store import NAME_RE, ModelStore, StoredVersion

log = logging.getLogger("adpipe.service")
CACHE_SIZE = 8  # loaded model versions kept in memory


@dataclass
class Served:
    """A loaded model version and what the service keeps beside it."""

    name: str
    version: int
    model: Any  # FittedPipeline
    threshold: float | None  # the anomaly cut on the probability scale (None: not expressible)
    monitor: Any = None  # DriftMonitor, when the model has drift detectors
    rows_seen: int = 0  # rows fed to the drift monitor
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass
class _Labels:
    key: tuple
    versions: list[StoredVersion]
    stages: dict[str, int]


class ModelCache:
    """Resolves versions and loads models from one store (thread-safe)."""

    def __init__(self, store: ModelStore, trusted: bool = False, size: int = CACHE_SIZE):
        self.store, self.trusted, self.size = store, trusted, size
        self._models: OrderedDict[tuple[str, int], Served] = OrderedDict()
        self._labels: dict[str, _Labels] = {}
        self._meta: dict[tuple[str, int, float], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, int], threading.Lock] = {}

    # ------------------------------------------------------------------ versions
    def labels(self, name: str) -> _Labels:
        """Versions and stage labels of ``name``, re-read when its registry.json changed."""
        if not NAME_RE.match(name or ""):
            raise ModelNotFoundError(f"'{name}' is not a valid model name, so no such model exists.",
                                     hint="model names use letters, digits, '.', '-' and '_'")
        try:
            st = os.stat(self.store.root / name / "registry.json")
        except OSError:
            self.store._folder(name, must_exist=True)  # raises ModelNotFoundError with a suggestion
            raise
        key = (st.st_mtime_ns, st.st_ino, st.st_size)
        cached = self._labels.get(name)
        if cached is not None and cached.key == key:
            return cached
        versions = self.store.versions(name)
        stages = {s: sv.version for sv in versions for s in sv.stages}
        labels = self._labels[name] = _Labels(key, versions, stages)
        return labels

    def resolve(self, name: str, which: str | int | None = None) -> int:
        """``which``: None (production if labelled, else the newest), "latest", a number or a stage label."""
        labels = self.labels(name)
        if not labels.versions:
            raise ModelNotFoundError(f"Model '{name}' has no versions.", hint="fit one with POST /v1/jobs/fit")
        which = None if which is None else str(which).strip()
        if not which:
            return labels.stages.get("production", labels.versions[-1].version)
        if which == "latest":
            return labels.versions[-1].version
        if which.isdigit():
            version = int(which)
            if any(sv.version == version for sv in labels.versions):
                return version
            have = ", ".join(str(sv.version) for sv in labels.versions)
            raise ModelNotFoundError(f"Model '{name}' has no version {version} (versions: {have}).",
                                     hint=f"GET /v1/models/{name} lists its versions and stage labels")
        if which in labels.stages:
            return labels.stages[which]
        used = ", ".join(sorted(labels.stages)) or "none"
        raise ModelNotFoundError(f"No version of '{name}' is labelled '{which}' (labels in use: {used}).",
                                 hint="pass ?version=N, ?version=latest or a stage label in use")

    # ------------------------------------------------------------------ loading
    def cached(self, name: str, version: int) -> Served | None:
        served = self._models.get((name, version))
        if served is not None:
            self._models.move_to_end((name, version))
        return served

    def get(self, name: str, version: int) -> Served:
        """The loaded version (loads it on first use; blocking: call from a worker thread)."""
        served = self.cached(name, version)
        if served is not None:
            return served
        with self._lock:
            gate = self._loading.setdefault((name, version), threading.Lock())
        with gate:
            served = self.cached(name, version)
            if served is None:
                served = self._load(name, version)
                with self._lock:
                    self._models[(name, version)] = served
                    while len(self._models) > self.size:
                        self._models.popitem(last=False)
        return served

    def _load(self, name: str, version: int) -> Served:
        from adpipe.core.model import load
        from adpipe.core.thresholding import current_threshold

        sv = self.store.get(name, version)
        model = load(sv.path, trusted=self.trusted)
        model.model_version = sv.ref
        served = Served(name, version, model, current_threshold(model)["probability"])
        if getattr(model.config, "drift_detectors", None):
            served.monitor = _drift_monitor(model, served)
        log.info("loaded %s (%s)", sv.ref, sv.path)
        return served

    def loaded(self) -> list[tuple[str, int]]:
        return list(self._models)

    # ------------------------------------------------------------------ metadata
    def version_info(self, sv: StoredVersion) -> ModelVersionInfo:
        key = (sv.name, sv.version, sv.path.stat().st_mtime)
        meta = self._meta.get(key)
        if meta is None:
            meta = self._meta[key] = sv.metadata()
        return ModelVersionInfo.from_metadata(sv.name, sv.version, sv.stages, meta)

    def info(self, name: str) -> ModelInfo:
        labels = self.labels(name)
        if not labels.versions:
            raise ModelNotFoundError(f"Model '{name}' has no versions.", hint="fit one with POST /v1/jobs/fit")
        return ModelInfo(name=name, latest=labels.versions[-1].version, stages=dict(labels.stages),
                         default_version=self.resolve(name),
                         loaded=sorted(v for n, v in self.loaded() if n == name),
                         versions=[self.version_info(sv) for sv in labels.versions])


def _drift_monitor(model, served: Served):
    from adpipe.core.drift import DriftHistory, DriftMonitor

    try:
        history = DriftHistory(model.config.drift.history)
        context = SimpleNamespace(pipeline=served.name, run_id="serve", model_version=served.ref)
        return DriftMonitor(model.config, model.numeric_columns, model.reference or None, context, history=history)
    except Exception as exc:  # drift watching must never stop serving
        log.warning("drift: not watching %s: %s", served.ref, exc)
        return None
