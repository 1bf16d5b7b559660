"""Helpers shared by the built-in thresholds (not plugins themselves)."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np

import adpipe


def as_values(values: np.ndarray) -> np.ndarray:
    """Scores or probabilities as a 1-d float64 array."""
    return np.asarray(values, dtype=np.float64).ravel()


def training_values(stage: str, values: np.ndarray, scale: str = "score") -> np.ndarray:
    """The finite training values; DataError when there are none."""
    values = as_values(values)
    if values.size == 0:
        raise adpipe.DataError(f"threshold '{stage}' got no training scores.", hint="fit on a non-empty data set")
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise adpipe.DataError(f"threshold '{stage}': every training {scale} is NaN or infinite.")
    return finite


def not_fitted(stage: str) -> adpipe.ModelError:
    return adpipe.ModelError(f"threshold '{stage}' is used before it was fitted.", hint="call fit() first")


class CutoffThreshold(adpipe.Threshold):
    """Base of the thresholds with one learned cut-off ``threshold_`` on one scale.

    Subclasses set ``on`` ("score" or "probability") and implement
    ``learn(values)``, which gets the finite training values of that scale
    (never empty) and returns the cut-off. ``predict`` flags
    ``value >= threshold_``, or ``value > threshold_`` when ``strict``; NaN is
    never flagged.
    """

    on: ClassVar[Literal["score", "probability"]] = "score"
    strict: ClassVar[bool] = False

    def learn(self, values: np.ndarray) -> float:
        raise NotImplementedError

    def fit(self, scores: np.ndarray, probabilities: np.ndarray, labels: np.ndarray | None = None) -> "CutoffThreshold":
        values = training_values(self.name, scores if self.on == "score" else probabilities, self.on)
        self.threshold_ = float(self.learn(values))
        self.threshold_on_ = self.on
        return self

    def predict(self, scores: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        if not hasattr(self, "threshold_"):
            raise not_fitted(self.name)
        values = as_values(scores if self.on == "score" else probabilities)
        with np.errstate(invalid="ignore"):
            return values > self.threshold_ if self.strict else values >= self.threshold_
