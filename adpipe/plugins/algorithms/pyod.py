"""PyOD detectors as adpipe plugins, generated from the catalog in :mod:`._catalog`.

Each catalog row becomes a :class:`PyODDetector` subclass (``KNN``, ``LOF``,
``IForest``, ...) with the registered name of the row. Nothing here imports
PyOD or scikit-learn at module import: ``Params`` is built on first access
from PyOD's source (see :mod:`._params`), the PyOD module is imported by
``fit``. So ``adpipe plugins list`` stays fast, and ``adpipe plugins show
auto_encoder`` works without torch.

Orientation: PyOD's ``decision_function`` and ``decision_scores_`` are
already "higher = more anomalous", so scores pass through unchanged.
``training_scores_`` is PyOD's ``decision_scores_`` (for neighbour-based
detectors these exclude each training row from its own neighbourhood, which
re-scoring the training rows would not).
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

import numpy as np

import adpipe
from adpipe.plugins.algorithms._catalog import CATALOG, FIXED_CONTAMINATION, Entry
from adpipe.plugins.algorithms._common import (
    as_matrix,
    check_fitted,
    check_width,
    model_errors,
    quiet,
    scores_1d,
)
from adpipe.plugins.algorithms._introspect import class_info
from adpipe.plugins.algorithms._params import BLOCK_PARAM, LazyParams


class PyODDetector(adpipe.Detector):
    """Base of the PyOD detector wrappers (one subclass per catalog row)."""

    #: the catalog row this class wraps
    entry: ClassVar[Entry | None] = None
    Params = LazyParams()  # type: ignore[assignment]

    model_: Any = None
    n_features_in_: int | None = None
    #: copy of the training rows, kept by detectors whose PyOD class scores a batch as a set
    X_train_: np.ndarray | None = None

    @classmethod
    def key_params(cls) -> tuple[str, ...]:
        """The parameters worth setting first (written as values into the config group file)."""
        return cls.entry.key if cls.entry else ()

    # -- building the PyOD object -------------------------------------------------------
    @classmethod
    def pyod_class(cls) -> type:
        """The PyOD class (imports its module)."""
        entry = cls.entry
        cls.check_requirements()
        try:
            module = importlib.import_module(f"pyod.models.{entry.module}")
        except ImportError as exc:
            raise adpipe.PluginError(
                f"detector '{cls.name}' cannot import pyod.models.{entry.module}: {exc}",
                hint=entry.install_hint or "pip install --upgrade pyod",
            ) from exc
        return getattr(module, entry.cls)

    def pyod_kwargs(self, X: np.ndarray | None = None) -> dict[str, Any]:
        """Keyword arguments for the PyOD constructor."""
        entry = self.entry
        kwargs = self.params.model_dump(exclude={BLOCK_PARAM})
        for name in entry.specs:
            value = kwargs.get(name)
            if value is not None:
                kwargs[name] = (
                    [_build_base(spec, X) for spec in value] if isinstance(value, list) else _build_base(value, X)
                )
        kwargs.update(entry.fixed)
        for name, fn in entry.from_data.items():
            if X is None:
                raise adpipe.ModelError(f"detector '{self.name}' derives '{name}' from the data: fit it first.")
            kwargs[name] = fn(X)
        if any(p.name == "contamination" for p in class_info(entry.module, entry.cls).params):
            kwargs["contamination"] = FIXED_CONTAMINATION
        return kwargs

    def make_model(self, X: np.ndarray | None = None):
        """A fresh, unfitted PyOD estimator with this detector's parameters."""
        pyod_cls = self.pyod_class()
        kwargs = self.pyod_kwargs(X)
        try:
            return pyod_cls(**kwargs)
        except (ValueError, TypeError) as exc:
            raise adpipe.ConfigError(
                f"detector '{self.name}' rejects this combination of parameters: {exc}",
                hint=self.entry.note or f"see `adpipe plugins show {self.name}`",
            ) from exc

    # -- the detector contract ------------------------------------------------------------
    def fit(self, X) -> "PyODDetector":
        X = as_matrix(X, self.name)
        self._check_data(X)
        model = self.make_model(X)
        with model_errors(self.name, "fit", X), quiet(self.entry.quiet):
            model.fit(X)
        self.model_ = model
        self.n_features_in_ = X.shape[1]
        self.training_scores_ = scores_1d(model.decision_scores_, X.shape[0], self.name)
        if self.entry.batch_scoring == "with_training":
            self.X_train_ = X.copy()
        return self

    def score(self, X) -> np.ndarray:
        check_fitted(self, self.name)
        X = as_matrix(X, self.name)
        check_width(self.n_features_in_, X, self.name)
        if X.shape[0] == 0:
            return np.empty(0, dtype=float)
        mode = self.entry.batch_scoring
        with model_errors(self.name, "score", X), quiet(self.entry.quiet):
            if mode is None:
                scores = self._decision_function(X)
            else:
                block = self.block_rows()
                parts = []
                for start in range(0, X.shape[0], block):
                    chunk = X[start : start + block]
                    if mode == "with_training":
                        part = self.model_.decision_function(np.vstack([self.X_train_, chunk]))[-len(chunk) :]
                    else:
                        part = self.model_.decision_function(chunk)
                    parts.append(np.asarray(part, dtype=float).reshape(-1))
                scores = np.concatenate(parts)
        return scores_1d(scores, X.shape[0], self.name)

    def _decision_function(self, X: np.ndarray) -> np.ndarray:
        """PyOD's ``decision_function``, or the entry's faster scorer of a few rows (same scores)."""
        fast = self.entry.small_batch
        return fast(self.model_, X) if fast is not None else self.model_.decision_function(X)

    def block_rows(self) -> int:
        """Rows scored per PyOD call by detectors that score a batch as a set."""
        block = getattr(self.params, BLOCK_PARAM, None)
        if block is None:
            n_train = len(self.training_scores_) if self.training_scores_ is not None else 0
            block = max(1, min(1000, n_train // 20))
        return block

    def _check_data(self, X: np.ndarray) -> None:
        entry = self.entry
        n_rows, n_cols = X.shape
        if entry.max_features is not None and n_cols > entry.max_features:
            raise adpipe.DataError(
                f"detector '{self.name}' is univariate: it needs exactly {entry.max_features} feature column, "
                f"got {n_cols}.",
                hint="select one feature with `columns.features`, or use a multivariate detector such as ecod",
            )
        if n_cols < entry.min_features:
            raise adpipe.DataError(
                f"detector '{self.name}' needs at least {entry.min_features} feature columns, got {n_cols}.",
                hint="use a univariate detector such as mad or hbos for a single column",
            )
        if n_rows < 2:
            raise adpipe.DataError(f"detector '{self.name}' needs at least 2 training rows, got {n_rows}.")


def _build_base(spec: dict[str, Any], X: np.ndarray | None):
    """A PyOD object from a validated detector spec ``{"type": "lof", ...}``."""
    params = {k: v for k, v in spec.items() if k != "type"}
    return PYOD_DETECTORS[spec["type"]](params).make_model(X)


def _doc(entry: Entry) -> str:
    lines = [
        entry.summary,
        "",
        f"Wraps PyOD's `pyod.models.{entry.module}.{entry.cls}`. Reference: {entry.reference}.",
        "",
    ]
    if entry.fixed:
        lines.append("Fixed: " + ", ".join(f"{k}={v!r}" for k, v in entry.fixed.items()) + ".")
    if entry.note:
        lines.append(entry.note)
    if entry.requires:
        lines.append(f"Needs {', '.join(entry.requires)}: {entry.install_hint}.")
    return "\n".join(lines).rstrip() + "\n"


def _make_class(entry: Entry) -> type[PyODDetector]:
    py_name = entry.py_name or entry.cls
    return type(
        py_name,
        (PyODDetector,),
        {
            "__doc__": _doc(entry),
            "__module__": __name__,
            "__qualname__": py_name,
            "name": entry.name,
            "entry": entry,
            "requires": entry.requires,
            "install_hint": entry.install_hint,
        },
    )


#: registered name -> wrapper class, in catalog order
PYOD_DETECTORS: dict[str, type[PyODDetector]] = {}
for _entry in CATALOG:
    _cls = _make_class(_entry)
    globals()[_cls.__name__] = _cls  # importable by name, so fitted models pickle
    PYOD_DETECTORS[_entry.name] = _cls
del _entry, _cls

#: detectors usable as base detectors of the ensembles (lscp, feature_bagging, suod)
BASE_DETECTOR_NAMES = frozenset(
    name for name in PYOD_DETECTORS if name not in ("lscp", "feature_bagging", "suod")
)
TORCH_DETECTORS = tuple(name for name, cls in PYOD_DETECTORS.items() if cls.entry.torch)

__all__ = ["PyODDetector", "PYOD_DETECTORS", "BASE_DETECTOR_NAMES", "TORCH_DETECTORS",
           *(cls.__name__ for cls in PYOD_DETECTORS.values())]
