"""The one-line Python API for data scientists.

>>> import numpy as np, adpipe
>>> X = np.r_[np.random.default_rng(0).normal(size=(200, 3)), [[8, 8, 8]]]
>>> result = adpipe.detect(X, algorithm="iforest", contamination=0.01)
>>> int(result.labels[-1])
1
>>> bool(0.0 <= result.probabilities.min() <= result.probabilities.max() <= 1.0)
True
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adpipe.core import schema
from adpipe.core.frames import to_frame
from adpipe.core.registry import get_registry

LIBRARIES = ("adpipe", "numpy", "pandas", "scikit-learn", "pyod")


def library_versions() -> dict[str, str]:
    from adpipe.core.model import installed_version

    return {lib: installed_version(lib) or "not installed" for lib in LIBRARIES}


@dataclass
class DetectionResult:
    """What :func:`detect` returns: labels, probabilities, scores, summary, metadata."""

    frame: pd.DataFrame  # input columns + the DESIGN.md result columns
    summary: dict[str, Any]
    metadata: dict[str, Any]
    rejected: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def labels(self) -> np.ndarray:
        """1 for anomalies, 0 for normal rows."""
        return self.frame[schema.LABEL].to_numpy()

    @property
    def probabilities(self) -> np.ndarray:
        return self.frame[schema.PROBABILITY].to_numpy()

    @property
    def scores(self) -> np.ndarray:
        """Raw detector scores (higher = more anomalous)."""
        return self.frame[schema.SCORE].to_numpy()

    @property
    def severity(self) -> np.ndarray:
        return self.frame[schema.SEVERITY].to_numpy()

    @property
    def anomalies(self) -> pd.DataFrame:
        return self.frame[self.frame[schema.LABEL] == 1]

    def to_frame(self) -> pd.DataFrame:
        return self.frame.copy()

    def to_csv(self, path: str | Path) -> Path:
        path = Path(path)
        self.frame.to_csv(path, index=False)
        return path

    def to_json(self, path: str | Path | None = None) -> str:
        """Summary, metadata and records as JSON (written to ``path`` when given)."""
        text = json.dumps({"summary": self.summary, "metadata": self.metadata,
                           "records": json.loads(self.frame.to_json(orient="records"))}, default=str)
        if path is not None:
            Path(path).write_text(text)
        return text

    def __repr__(self) -> str:
        s = self.summary
        return (f"DetectionResult({s['anomalies']} anomalies in {s['rows']} rows "
                f"({s['anomaly_percent']:.2f} %), algorithm={self.metadata['algorithm']!r})")


def detect(data: Any, algorithm: str = "iforest", contamination: float = 0.1, *,
           preprocess: list | None = None, on_invalid: str = "raise", columns: dict | None = None,
           **params: Any) -> DetectionResult:
    """Fit ``algorithm`` on ``data`` and label its rows in one call.

    ``data``: DataFrame, ndarray, list of rows, SciPy sparse matrix or a CSV/Parquet path.
    ``params`` go to the detector (validated: ``adpipe plugins show ALGORITHM``).
    """
    from adpipe.core.engine import Pipeline

    frame = to_frame(data)
    pipe = Pipeline.from_dict({
        "name": "detect",
        "detector": {"type": algorithm, **params},
        "threshold": {"type": "contamination", "contamination": contamination},
        "preprocess": preprocess or [],
        "validation": {"on_invalid": on_invalid},
        "columns": columns or {},
    })
    t0 = time.perf_counter()
    model = pipe.fit(frame)
    t1 = time.perf_counter()
    # the rows the detector was fitted on: keep its own training scores (kNN/LOF leave each row out)
    known, model.fit_scores_ = model.fit_scores_, None
    result, rejected = model.score_batch(frame, known_scores=known)
    t2 = time.perf_counter()
    n_anom = int(result[schema.LABEL].sum())
    summary = {
        "rows": int(len(frame)),
        "scored": int(len(result)),
        "rejected": int(len(rejected)),
        "anomalies": n_anom,
        "anomaly_percent": 100.0 * n_anom / len(result) if len(result) else 0.0,
        "fit_seconds": round(t1 - t0, 4),
        "score_seconds": round(t2 - t1, 4),
    }
    metadata = {
        "algorithm": algorithm,
        "params": model.detector.params.model_dump(mode="json"),
        "contamination": contamination,
        "threshold": float(getattr(model.threshold, "threshold_", np.nan)),
        "calibration": model.config.calibration.method,
        "model_version": model.model_version,
        "features": model.feature_columns,
        "versions": library_versions(),
    }
    return DetectionResult(result, summary, metadata, rejected)


def algorithms() -> pd.DataFrame:
    """Every installed detector: name, summary, whether it can run here, what it needs."""
    rows = []
    for info in get_registry().infos("detector"):
        missing = info.cls.missing_requirements()
        rows.append({"name": info.name, "summary": info.cls.summary(), "available": not missing,
                     "needs": info.cls.install_hint if missing else "", "from": info.dist})
    return pd.DataFrame(rows, columns=["name", "summary", "available", "needs", "from"])
