"""Raw detector scores -> ``anomaly_probability`` in [0, 1], fitted on training scores.

``ecdf`` (default): the empirical CDF of the training scores, linearly
interpolated between knots: a probability of 0.97 means the record scores
higher than 97 % of the training rows. Levels are counted over n + 1 rows,
so only scores above the training maximum reach 1.0. It is monotone in the raw score and
makes every detector's output comparable, whatever its scale.

``gaussian``: Kriegel et al. (2011), "Interpreting and Unifying Outlier
Scores": ``max(0, erf((s - mean) / (std * sqrt(2))))`` of the training scores.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from adpipe.core.errors import DataError

MAX_KNOTS = 2001


class Calibrator:
    def __init__(self, method: str = "ecdf"):
        if method not in ("ecdf", "gaussian"):
            raise ValueError(f"unknown calibration method {method!r}")
        self.method = method

    def fit(self, scores: np.ndarray) -> "Calibrator":
        scores = np.asarray(scores, dtype=np.float64)
        scores = scores[np.isfinite(scores)]
        if scores.size == 0:
            raise DataError("Cannot calibrate: the detector gave no finite training scores.",
                            hint="check the training data (is it empty?) and the detector's parameters")
        if self.method == "gaussian":
            self.mean_, self.std_ = float(scores.mean()), float(scores.std()) or 1.0
            return self
        values, counts = np.unique(scores, return_counts=True)
        # share of training scores <= value, over n + 1: the training maximum stays below 1.0, so a record
        # scoring above everything seen in training is more anomalous than any training row
        levels = np.cumsum(counts) / (scores.size + 1)
        if values.size > MAX_KNOTS:
            idx = np.unique(np.linspace(0, values.size - 1, MAX_KNOTS).round().astype(int))
            values, levels = values[idx], levels[idx]
        self.knots_, self.levels_ = values, levels
        return self

    def transform(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        if self.method == "gaussian":
            return np.clip(erf((scores - self.mean_) / (self.std_ * np.sqrt(2))), 0.0, 1.0)
        return np.interp(scores, self.knots_, self.levels_, left=0.0, right=1.0)
