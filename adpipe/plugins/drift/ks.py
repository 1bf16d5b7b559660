"""Two-sample Kolmogorov–Smirnov test of each window against the reference."""

from __future__ import annotations

import numpy as np
from scipy import stats

import adpipe
from adpipe.plugins.drift._window import WindowedDetector, WindowParams, median_move


class KS(WindowedDetector):
    """Two-sample Kolmogorov–Smirnov test of each window of values against the reference.

    Same statistic and p-value as ``scipy.stats.ks_2samp(window, reference, method="asymp")``,
    computed against the reference sorted once, so a window costs two ``searchsorted`` calls.
    A window fires when its p-value is below ``alpha`` (D above the critical value).

    >>> rng = np.random.default_rng(0)
    >>> ks = KS(window=500).start(rng.normal(size=5000))
    >>> ks.update(rng.normal(size=2000))
    []
    >>> [f.position for f in ks.update(rng.normal(1.0, 1.0, size=500))]
    [499]
    """

    name = "ks"

    class Params(WindowParams):
        alpha: float = adpipe.Field(0.01, gt=0, lt=1, description="significance level of each window's test "
                                    "(many features are tested: consider alpha / number of features)")

    def _fit_reference(self, ref: np.ndarray) -> None:
        n, m = ref.size, self.params.window
        self._en = float(np.round(n * m / (n + m)))
        self._threshold = float(stats.kstwo.isf(self.params.alpha, self._en))
        self._ties = bool(np.any(ref[1:] == ref[:-1]))

    def _test(self, sorted_block: np.ndarray) -> np.ndarray:
        k, m = sorted_block.shape
        ref = self.reference_
        new = np.ones((k, m), dtype=bool)
        new[:, 1:] = sorted_block[:, 1:] != sorted_block[:, :-1]  # first of a run of ties
        last = np.ones((k, m), dtype=bool)
        last[:, :-1] = new[:, 1:]  # last of a run of ties
        idx = np.arange(m, dtype=float)
        # ECDF difference just at and just before each window value (the sup is reached at one of them)
        right = np.searchsorted(ref, sorted_block, side="right")
        if self._ties:
            left = np.searchsorted(ref, sorted_block, side="left")
        else:  # distinct reference values: one lookup does for both sides
            left = right - (ref[np.maximum(right - 1, 0)] == sorted_block) * (right > 0)
        at = np.abs(right / ref.size - (idx + 1) / m)
        before = np.abs(left / ref.size - idx / m)
        return np.maximum(np.where(last, at, 0).max(axis=1), np.where(new, before, 0).max(axis=1))

    def _finding(self, statistic: float, window: np.ndarray, position: int) -> adpipe.DriftFinding:
        p = float(np.clip(stats.kstwo.sf(statistic, self._en), 0, 1))
        n, m = self.reference_.size, window.size
        detail = (f"KS D={statistic:.3g} (p={p:.2g}) between the last {m:,} values and the {n:,} of the "
                  f"reference; {median_move(self.reference_, window)}")
        return adpipe.DriftFinding(statistic=statistic, threshold=self._threshold, p_value=p, position=position,
                                   window=m, reference=n, detail=detail)
