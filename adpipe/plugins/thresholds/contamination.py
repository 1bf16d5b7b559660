"""Flag the expected share of anomalies: a quantile of the training probabilities."""

from __future__ import annotations

import numpy as np

import adpipe
from adpipe.plugins.thresholds._common import CutoffThreshold


class Contamination(CutoffThreshold):
    """Flag about a share c of records: cut-off at the (1 - c) quantile of the training probabilities.

    The cut-off is the training probability ``t`` for which the share of
    training rows with ``probability >= t`` is closest to ``c`` (a tie goes to
    the higher cut-off, fewer flags). Without ties that is the (1 - c)
    quantile; with ties (many equal scores) it still flags close to ``c`` of
    the training rows instead of every row of a tied block: with constant
    training scores it flags none of them, and only records that score above
    everything seen in training are flagged. ``flagged_share_`` is the share
    of training rows flagged.

    >>> p = np.linspace(0.01, 1.0, 100)
    >>> th = Contamination(contamination=0.05).fit(p * 10, p)
    >>> int(th.predict(p * 10, p).sum()), th.threshold_on_
    (5, 'probability')
    """

    name = "contamination"
    on = "probability"

    class Params(adpipe.Params):
        contamination: float = adpipe.Field(
            0.1, gt=0.0, lt=0.5, description="expected share of anomalies in the training data, 0 < c < 0.5"
        )

    def learn(self, values: np.ndarray) -> float:
        values = np.sort(values)
        n = values.size
        cuts, first = np.unique(values, return_index=True)
        flagged = n - first  # rows with value >= cuts[j], decreasing in j
        # one more candidate: just above the training maximum (flags no training row, only new records that
        # score above everything seen), so a block of tied scores is not flagged whole
        cuts = np.append(cuts, np.nextafter(cuts[-1], np.inf))
        flagged = np.append(flagged, 0)
        gap = np.abs(flagged - self.params.contamination * n)
        best = np.flatnonzero(gap <= gap.min() + 1e-9)
        j = int(best[-2] if len(best) > 1 and best[-1] == len(cuts) - 1 else best[-1])  # "none" only if strictly best
        self.flagged_share_ = float(flagged[j] / n)
        return float(cuts[j])
