"""Population Stability Index over quantile bins of the reference."""

from __future__ import annotations

import numpy as np

import adpipe
from adpipe.plugins.drift._window import WindowedDetector, WindowParams, fmt_num


class PSI(WindowedDetector):
    """Population Stability Index of each window of values over quantile bins of the reference.

    PSI = sum over bins of (window share - reference share) * ln(window share / reference share); a
    share of 0 counts as ``epsilon``. Rules of thumb: < 0.1 stable, 0.1-0.25 moderate shift,
    > 0.25 major shift. Bins are right-closed, between the reference's quantiles (tied quantiles
    merge, so a feature with few distinct values gets fewer bins).

    >>> psi = PSI(window=100, bins=4).start(np.arange(100.0))
    >>> round(psi.update(np.r_[np.zeros(40), np.full(30, 30.0), np.full(20, 60.0), np.full(10, 90.0)])[0].statistic, 4)
    0.2282
    """

    name = "psi"

    class Params(WindowParams):
        bins: int = adpipe.Field(10, ge=2, le=1000, description="quantile bins of the reference")
        threshold: float = adpipe.Field(0.2, gt=0, description="PSI above which a window fires "
                                        "(0.1 moderate, 0.25 major shift)")
        epsilon: float = adpipe.Field(1e-4, gt=0, lt=0.1, description="share used for an empty bin")

    def _fit_reference(self, ref: np.ndarray) -> None:
        qs = np.quantile(ref, np.linspace(0, 1, self.params.bins + 1)[1:-1])
        self.edges_ = np.unique(qs)
        self._threshold = self.params.threshold
        self.expected_ = self._shares(np.searchsorted(self.edges_, ref, side="left")[None, :])[0]

    def _shares(self, idx: np.ndarray) -> np.ndarray:
        k, m = idx.shape
        nb = self.edges_.size + 1
        counts = np.bincount((idx + nb * np.arange(k)[:, None]).ravel(), minlength=k * nb).reshape(k, nb)
        return np.maximum(counts / m, self.params.epsilon)

    def _test(self, sorted_block: np.ndarray) -> np.ndarray:
        actual = self._shares(np.searchsorted(self.edges_, sorted_block, side="left"))
        e = self.expected_
        return ((actual - e) * np.log(actual / e)).sum(axis=1)

    def _finding(self, statistic: float, window: np.ndarray, position: int) -> adpipe.DriftFinding:
        actual = self._shares(np.searchsorted(self.edges_, window, side="left")[None, :])[0]
        b = int(np.argmax(np.abs(actual - self.expected_)))
        lo = fmt_num(self.edges_[b - 1]) if b > 0 else "-inf"
        hi = fmt_num(self.edges_[b]) if b < self.edges_.size else "inf"
        n, m = self.reference_.size, window.size
        detail = (f"PSI={statistic:.3g} over {self.edges_.size + 1} bins between the last {m:,} values and the "
                  f"{n:,} of the reference; bin ({lo}, {hi}] holds {actual[b]:.0%} of them vs "
                  f"{self.expected_[b]:.0%} in the reference")
        return adpipe.DriftFinding(statistic=statistic, threshold=self._threshold, position=position, window=m,
                                   reference=n, detail=detail)
