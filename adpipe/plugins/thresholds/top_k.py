"""Flag the k highest-scoring records of each batch."""

from __future__ import annotations

import numpy as np

import adpipe
from adpipe.plugins.thresholds._common import as_values, not_fitted, training_values


class TopK(adpipe.Threshold):
    """Flag the k highest-scoring records of each batch (per batch in chunked or streaming runs).

    The k is counted within every array passed to ``predict``: a run that
    scores 10 batches flags up to 10·k records. Ties at the k-th score go to
    the earlier rows; NaN scores are never flagged. There is no fixed cut-off,
    so ``threshold_`` is None.

    >>> th = TopK(k=2).fit(np.array([1.0, 2.0]), None)
    >>> th.predict(np.array([0.1, 5.0, 3.0, 5.0, 3.0]), None).tolist()
    [False, True, False, True, False]
    >>> th.predict(np.array([1.0, 3.0, 3.0, 3.0]), None).tolist()
    [False, True, True, False]
    """

    name = "top_k"

    class Params(adpipe.Params):
        k: int = adpipe.Field(10, ge=1, description="records to flag in each batch, >= 1")

    def fit(self, scores: np.ndarray, probabilities: np.ndarray, labels: np.ndarray | None = None) -> "TopK":
        training_values(self.name, scores)
        self.threshold_ = None
        self.threshold_on_ = "score"
        return self

    def predict(self, scores: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        if not hasattr(self, "threshold_on_"):
            raise not_fitted(self.name)
        scores = as_values(scores)
        valid = ~np.isnan(scores)
        flags = np.zeros(scores.size, dtype=bool)
        k = min(self.params.k, int(valid.sum()))
        if k == 0:
            return flags
        filled = np.where(valid, scores, -np.inf)
        kth = np.partition(filled, filled.size - k)[filled.size - k]  # the k-th highest score
        flags[filled > kth] = True
        ties = np.flatnonzero((filled == kth) & valid)
        flags[ties[: k - int(flags.sum())]] = True
        return flags
