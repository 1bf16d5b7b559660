"""Upper fences from training raw-score statistics: z-score, MAD and IQR.

Higher scores are more anomalous, so only the upper fence is used; records
strictly above it are flagged (a fence equal to every training score flags
none of them).
"""

from __future__ import annotations

import numpy as np

import adpipe
from adpipe.plugins.thresholds._common import CutoffThreshold

#: scales the MAD to the standard deviation of a normal distribution
MAD_TO_STD = 1.4826


class ZScore(CutoffThreshold):
    """Flag raw scores above mean + k standard deviations of the training scores.

    The standard deviation is the population one (``ddof=0``).

    >>> th = ZScore(k=2).fit(np.array([1.0, 2.0, 3.0, 4.0]), None)
    >>> round(th.threshold_, 4)
    4.7361
    """

    name = "zscore"
    on = "score"
    strict = True

    class Params(adpipe.Params):
        k: float = adpipe.Field(
            3.0, ge=0.0, allow_inf_nan=False, description="standard deviations above the mean, >= 0"
        )

    def learn(self, values: np.ndarray) -> float:
        return float(values.mean() + self.params.k * values.std())


class MAD(CutoffThreshold):
    """Flag raw scores above median + k · 1.4826 · MAD of the training scores (robust to outliers in training).

    >>> th = MAD(k=3).fit(np.array([1.0, 2.0, 3.0, 4.0, 100.0]), None)
    >>> round(th.threshold_, 4)
    7.4478
    """

    name = "mad"
    on = "score"
    strict = True

    class Params(adpipe.Params):
        k: float = adpipe.Field(
            3.0, ge=0.0, allow_inf_nan=False, description="scaled median absolute deviations above the median, >= 0"
        )

    def learn(self, values: np.ndarray) -> float:
        median = np.median(values)
        return float(median + self.params.k * MAD_TO_STD * np.median(np.abs(values - median)))


class IQR(CutoffThreshold):
    """Flag raw scores above Q3 + k · IQR of the training scores (Tukey's fence; quartiles interpolated linearly).

    >>> th = IQR().fit(np.arange(1.0, 10.0), None)
    >>> th.threshold_
    13.0
    """

    name = "iqr"
    on = "score"
    strict = True

    class Params(adpipe.Params):
        k: float = adpipe.Field(1.5, ge=0.0, allow_inf_nan=False, description="interquartile ranges above Q3, >= 0")

    def learn(self, values: np.ndarray) -> float:
        q1, q3 = np.quantile(values, [0.25, 0.75])
        return float(q3 + self.params.k * (q3 - q1))
