"""River's streaming change detectors (ADWIN, Page-Hinkley): one value at a time, no reference needed.

Values are standardised first, with the reference's mean and standard deviation (or those of the
first ``warmup`` values when there is none, which then only serve that), so one ``threshold`` fits
features of any scale. River resets a detector after it fires: it relearns the new level and fires
again only on a further change.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

import adpipe
from adpipe.plugins.drift._window import fmt_num


class StreamParams(adpipe.Params):
    standardize: bool = adpipe.Field(True, description="scale values by the reference's mean and standard "
                                     "deviation (so thresholds are in standard deviations)")
    warmup: int = adpipe.Field(100, ge=2, description="without a reference: values used only to estimate the "
                               "scale before watching starts")


class StreamingDetector(adpipe.DriftDetector):
    """Base: standardise, feed River's detector value by value, report where it fired."""

    requires = ("river",)
    install_hint = "pip install 'adpipe[stream]'"
    #: standardised values kept to explain a detection (0: none)
    keep_recent = 0

    def start(self, reference: np.ndarray | None) -> "StreamingDetector":
        self.detector_ = self._make()
        self._center, self._scale, self._warm = 0.0, 1.0, []
        self._ready = not self.params.standardize
        self.seen_ = 0
        self._recent = np.empty(0)
        if reference is not None and self.params.standardize:
            ref = np.asarray(reference, dtype=float)
            ref = ref[np.isfinite(ref)]
            if ref.size >= 2:
                self._set_scale(ref)
        return self

    def _set_scale(self, ref: np.ndarray) -> None:
        std = float(ref.std())
        self._center, self._scale, self._ready = float(ref.mean()), (std if std > 0 else 1.0), True

    def update(self, values: np.ndarray) -> list[adpipe.DriftFinding]:
        if not hasattr(self, "detector_"):
            self.start(None)
        values = np.asarray(values, dtype=float).ravel()
        offset = 0
        if not self._ready:  # warm-up: estimate the scale, don't watch yet
            offset = min(self.params.warmup - len(self._warm), values.size)
            self._warm.extend(values[:offset].tolist())
            if len(self._warm) >= self.params.warmup:
                self._set_scale(np.asarray(self._warm))
                self._warm = []
        out = []
        zs = (values[offset:] - self._center) / self._scale
        det = self.detector_
        for i, x in enumerate(zs.tolist()):
            before = self._before(det)
            det.update(x)
            self.seen_ += 1
            if det.drift_detected:
                out.append(self._finding(det, before, zs[:i + 1], offset + i))
        if self.keep_recent:
            self._recent = np.concatenate([self._recent, zs])[-self.keep_recent:]
        return out

    def _orig(self, z: float) -> float:
        return z * self._scale + self._center

    def _make(self):
        raise NotImplementedError

    def _before(self, det):
        return None

    def _finding(self, det, before, z: np.ndarray, position: int) -> adpipe.DriftFinding:
        """``z``: this update's standardised values up to the one that triggered the detection."""
        raise NotImplementedError


class ADWIN(StreamingDetector):
    """ADWIN (River): adaptive window that splits where the means of its two parts differ significantly.

    When it fires, the split of its window with the most significant difference of means is reported
    (recomputed over the last 32,768 values): the statistic is that difference in the values' units
    and the threshold ADWIN's bound for it (the paper's formula; River's buckets make it approximate).
    """

    name = "adwin"
    keep_recent = 32_768

    class Params(StreamParams):
        delta: float = adpipe.Field(0.002, gt=0, lt=1, description="confidence of ADWIN's test: smaller means "
                                    "fewer false alarms and later detection")
        clock: int = adpipe.Field(32, ge=1, description="check for a change every this many values")
        min_window_length: int = adpipe.Field(5, ge=1, description="smallest part of the window considered")
        grace_period: int = adpipe.Field(10, ge=1, description="values before the first check")

    def _make(self):
        from river import drift

        p = self.params
        return drift.ADWIN(delta=p.delta, clock=p.clock, min_window_length=p.min_window_length,
                           grace_period=p.grace_period)

    def _before(self, det):
        return int(det.width)

    def _finding(self, det, before, z: np.ndarray, position: int) -> adpipe.DriftFinding:
        w = np.concatenate([self._recent, z])[-(before + 1):]  # ADWIN's window when it fired
        n, k = w.size, self.params.min_window_length
        n0 = np.arange(k, n - k + 1)
        if n0.size == 0:
            n0 = np.array([max(n - 1, 1)])
        csum = np.cumsum(w)
        m0, m1 = csum[n0 - 1] / n0, (csum[-1] - csum[n0 - 1]) / (n - n0)
        m = 1 / (1 / n0 + 1 / (n - n0))
        dp = math.log(2 * math.log(max(n, 3)) / self.params.delta)
        eps = np.sqrt(2 / m * w.var() * dp) + 2 / (3 * m) * dp
        best = int(np.argmax(np.abs(m1 - m0) - eps))
        a, b = self._orig(float(m0[best])), self._orig(float(m1[best]))
        before_n, after_n = int(n0[best]), int(n - n0[best])
        detail = (f"ADWIN: mean moved from {fmt_num(a)} over {before_n:,} values to {fmt_num(b)} over the last "
                  f"{after_n:,} (delta={self.params.delta:g})")
        return adpipe.DriftFinding(statistic=float(abs(b - a)), threshold=float(eps[best]) * self._scale,
                                   position=position, window=after_n, reference=before_n, detail=detail)


class PageHinkley(StreamingDetector):
    """Page-Hinkley (River): cumulative deviation from the running mean crossing a threshold.

    With ``standardize`` (default) ``delta`` and ``threshold`` are in standard deviations: the
    defaults detect a 1-sd mean shift in about 50 values, a 0.25-sd one in a few hundred, and
    raised no false alarm in 900,000 stationary values. ``alpha`` defaults to 1 (no forgetting): with
    River's 0.9999 the cumulative sum settles at -delta / (1 - alpha) and wanders enough around it
    to cross the threshold every ten thousand values or so.
    """

    name = "page_hinkley"

    class Params(StreamParams):
        threshold: float = adpipe.Field(50.0, gt=0, description="cumulative deviation that signals a change "
                                        "(lambda)")
        delta: float = adpipe.Field(0.1, ge=0, description="deviation tolerated per value (magnitude of "
                                    "changes ignored)")
        alpha: float = adpipe.Field(1.0, gt=0, le=1, description="forgetting factor of the cumulative sum; "
                                    "below 1 (River's 0.9999) the sum drifts and false alarms follow on long streams")
        min_instances: int = adpipe.Field(30, ge=1, description="values before the first check")
        mode: Literal["both", "up", "down"] = adpipe.Field("both", description="watch increases, decreases "
                                                           "or both")

    def _make(self):
        from river import drift

        p = self.params
        return drift.PageHinkley(min_instances=p.min_instances, delta=p.delta, threshold=p.threshold,
                                 alpha=p.alpha, mode=p.mode)

    def _finding(self, det, before, z: np.ndarray, position: int) -> adpipe.DriftFinding:
        try:  # River's internals: the two one-sided statistics and the running mean
            up, down = det._sum_increase - det._min_increase, det._max_decrease - det._sum_decrease
            n, mean = int(det._x_mean.n), self._orig(det._x_mean.get())
        except AttributeError:
            up, down, n, mean = self.params.threshold, 0.0, 0, math.nan
        rose = self.params.mode == "up" or (self.params.mode == "both" and up >= down)
        stat = float(up if rose else down)
        unit = " sd" if self.params.standardize else ""
        detail = (f"Page-Hinkley: the values {'rose' if rose else 'fell'} (cumulative deviation {stat:.3g} > "
                  f"{self.params.threshold:g}{unit}) after {n:,} values averaging {fmt_num(mean)}")
        return adpipe.DriftFinding(statistic=stat, threshold=self.params.threshold, position=position, window=n,
                                   reference=0, detail=detail)
