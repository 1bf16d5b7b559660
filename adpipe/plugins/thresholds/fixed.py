"""Fixed cut-offs on the anomaly probability or on the raw score."""

from __future__ import annotations

import numpy as np

import adpipe
from adpipe.plugins.thresholds._common import CutoffThreshold


class Probability(CutoffThreshold):
    """Flag records whose anomaly probability is at least a fixed cut-off.

    >>> th = Probability(cutoff=0.8).fit(np.array([1.0, 2.0]), np.array([0.5, 1.0]))
    >>> th.predict(None, np.array([0.79, 0.8, 0.95])).tolist()
    [False, True, True]
    """

    name = "probability"
    on = "probability"

    class Params(adpipe.Params):
        cutoff: float = adpipe.Field(0.9, ge=0.0, le=1.0, description="flag when anomaly_probability >= cutoff")

    def learn(self, values: np.ndarray) -> float:
        return self.params.cutoff


class Score(CutoffThreshold):
    """Flag records whose raw detector score is at least a fixed cut-off.

    Raw scores are on each detector's own scale: the cut-off only makes sense
    for the detector it was chosen for.

    >>> th = Score(cutoff=2.5).fit(np.array([1.0, 2.0]), np.array([0.5, 1.0]))
    >>> th.predict(np.array([2.0, 2.5, 9.0]), None).tolist()
    [False, True, True]
    """

    name = "score"
    on = "score"

    class Params(adpipe.Params):
        cutoff: float = adpipe.Field(
            ..., allow_inf_nan=False, description="flag when anomaly_score >= cutoff (required; detector's scale)"
        )

    def learn(self, values: np.ndarray) -> float:
        return self.params.cutoff
