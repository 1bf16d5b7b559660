"""Evaluate one algorithm on one dataset: fit, score, time, peak memory and metrics.

Shared by ``adpipe compare`` (a config's pipeline, measured on held-out labelled rows) and
``adpipe benchmark`` (the ADBench protocol: fit on every row, score the same rows). The detector is
built through the pipeline config (``detector: {type: NAME}``) and the plugin registry, so any
registered detector name works.

Peak memory is the process's peak resident set size (RSS) during fit + score minus its RSS when the
evaluation started, read from Linux's ``/proc/self/status`` (``VmHWM``, the high-water mark that
``/proc/self/clear_refs`` resets before each evaluation; no overhead), less the file-backed pages
(``RssFile``: library code) mapped in meanwhile. It counts every allocation, numpy's and C libraries'
alike. Free heap memory is first handed back to the system (glibc's ``malloc_trim``), so that memory
freed by an earlier evaluation is not silently reused uncounted.
:mod:`tracemalloc` was not used: it slowed some detectors (HBOS, ECOD) down 10-100 times. Elsewhere
than Linux ``peak_mb`` is None.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from adpipe.core import evaluate, schema
from adpipe.core.config import PipelineConfig, validate
from adpipe.core.errors import AdpipeError, ConfigError, PluginError
from adpipe.core.registry import Registry, get_registry, suggest


@dataclass
class Evaluation:
    """One algorithm on one dataset: what it cost and, with labels, how well it ranked the anomalies."""

    algorithm: str
    params: dict[str, Any] = field(default_factory=dict)
    rows_fit: int = 0
    rows_scored: int = 0
    fit_seconds: float | None = None
    score_seconds: float | None = None
    peak_mb: float | None = None
    flagged: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    # the scored rows (not written to JSON): index labels, raw scores, threshold flags, labels (NaN unknown)
    index: pd.Index | None = None
    scores: np.ndarray | None = None
    flags: np.ndarray | None = None
    labels: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def seconds(self) -> float | None:
        return None if self.fit_seconds is None else self.fit_seconds + (self.score_seconds or 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm, "params": self.params, "ok": self.ok, "error": self.error,
                "rows_fit": self.rows_fit, "rows_scored": self.rows_scored, "fit_seconds": self.fit_seconds,
                "score_seconds": self.score_seconds, "peak_mb": self.peak_mb, "flagged": self.flagged,
                "metrics": self.metrics}


def parse_algorithms(value: str | Iterable[str]) -> list[str]:
    """``"[iforest, lof]"``, ``"iforest,lof"`` or a list -> ``["iforest", "lof"]`` (duplicates dropped)."""
    items = value.strip().strip("[]").split(",") if isinstance(value, str) else list(value)
    names = [str(n).strip().strip("'\"") for n in items]
    return list(dict.fromkeys(n for n in names if n))


def check_algorithm(name: str, registry: Registry | None = None) -> None:
    """A typed error for a name that is not an installed detector, or one whose extra is missing."""
    registry = registry or get_registry()
    if ("detector", name) not in registry:
        raise ConfigError(f"'{name}' is not an installed detector.",
                          hint=suggest(name, registry.names("detector")) + "  (`adpipe plugins list --kind "
                               "detector` shows all)")
    cls = registry.get("detector", name)
    missing = cls.missing_requirements()
    if missing:
        raise PluginError(f"Detector '{name}' needs {', '.join(missing)}, which is not installed.",
                          hint=cls.install_hint or f"pip install {' '.join(missing)}")


def with_detector(config: PipelineConfig, algorithm: str, params: dict[str, Any] | None = None,
                  holdout: float | None = 0.0, registry: Registry | None = None) -> PipelineConfig:
    """``config`` with only its detector replaced, validated like any config (errors name ``detector.KEY``).

    ``holdout=0`` (the default) makes the engine fit on every row it is given: the caller holds rows out.
    """
    check_algorithm(algorithm, registry)
    raw = dict(config.raw or config.to_dict())
    raw["detector"] = {"type": algorithm, **(params or {})}
    if holdout is not None:
        raw["fit"] = {**(raw.get("fit") or {}), "holdout": holdout}
    return validate(raw, base_dir=config.base_dir, file=config.path, default_name=config.name, registry=registry)


def evaluate_algorithm(config: PipelineConfig, fit_frame: pd.DataFrame, eval_frame: pd.DataFrame | None = None,
                       warm: bool = True) -> Evaluation:
    """Fit ``config``'s pipeline on ``fit_frame`` and score ``eval_frame``; never raises for a failing detector.

    ``eval_frame=None`` scores the training rows themselves with the detector's own training scores where
    it keeps them (PyOD's ``decision_scores_``: kNN and LOF leave each row out of its own neighbourhood),
    as ``adpipe run`` does for its training rows and ADBench's unsupervised protocol does. ``warm``: fit
    and score a few rows first, untimed, once per algorithm and process (imports and numba compilation
    would otherwise add seconds to the first run: HBOS 10 s, ECOD 2 s). With a label
    column (``columns.label``) in the scored rows the result carries ROC-AUC, PR-AUC (average precision)
    and precision/recall/F1 of the threshold's flags. A failure is recorded in ``error``.
    """
    from adpipe.core.engine import FittedPipeline

    if warm:
        warm_up(config, fit_frame)
    detector = config.detector
    out = Evaluation(detector.type, detector.params.model_dump(mode="json", fallback=repr),
                     rows_fit=int(len(fit_frame)))
    memory = PeakMemory()
    try:
        t0 = time.perf_counter()
        model = FittedPipeline.fit(config, fit_frame)
        t1 = time.perf_counter()
        frame = fit_frame if eval_frame is None else eval_frame
        known, model.fit_scores_ = (model.fit_scores_ if eval_frame is None else None), None
        result, _ = model.score_batch(frame, known_scores=known)
        t2 = time.perf_counter()
        out.peak_mb = memory.peak_mb()
    except Exception as exc:  # one algorithm failing is a result, not the end of the run
        out.error = f"{type(exc).__name__}: {exc.message if isinstance(exc, AdpipeError) else exc}"
        return out
    out.fit_seconds, out.score_seconds = round(t1 - t0, 4), round(t2 - t1, 4)
    out.index = result.index
    out.scores = result[schema.SCORE].to_numpy(dtype=np.float64)
    out.flags = result[schema.LABEL].to_numpy().astype(bool)
    out.rows_scored, out.flagged = int(len(result)), int(out.flags.sum())
    out.labels = model.labels(frame.loc[result.index])
    if out.labels is not None:
        out.metrics = evaluate.metrics(out.labels, out.scores, out.flags)
    return out


WARM_ROWS = 256
_warmed: set[str] = set()


def warm_up(config: PipelineConfig, frame: pd.DataFrame) -> None:
    """Fit and score the first rows once per detector type in this process, untimed; errors are ignored."""
    from adpipe.core.engine import FittedPipeline

    if config.detector.type in _warmed:
        return
    _warmed.add(config.detector.type)
    head = frame.iloc[:WARM_ROWS]
    try:
        FittedPipeline.fit(config, head).score_batch(head)
    except Exception:  # the timed run reports the error
        pass


def _trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class PeakMemory:
    """Peak RSS since construction above the RSS then, less file-backed pages mapped in meanwhile
    (library code a fresh process touches for the first time); Linux only, None elsewhere."""

    STATUS = Path("/proc/self/status")

    def __init__(self) -> None:
        _trim()
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.base = self._read()
        except OSError:
            self.base = None

    def _read(self) -> dict[str, int]:
        text = self.STATUS.read_text()
        found = {k: re.search(rf"^{k}:\s+(\d+) kB", text, re.M) for k in ("VmRSS", "VmHWM", "RssFile")}
        if not all(found.values()):
            raise OSError(f"no VmRSS/VmHWM/RssFile in {self.STATUS}")
        return {k: int(m.group(1)) for k, m in found.items()}

    def peak_mb(self) -> float | None:
        if self.base is None:
            return None
        try:
            now = self._read()
        except OSError:
            return None
        grown = now["VmHWM"] - self.base["VmRSS"] - max(now["RssFile"] - self.base["RssFile"], 0)
        return round(max(grown, 0) / 1024, 2)
