"""Shared machinery of the reference-vs-window tests (KS, PSI): tumbling windows across chunks.

Values are cut into consecutive, non-overlapping windows of ``window`` values, whatever the chunk
sizes they arrive in; each full window is compared with the reference. The windows of one update
are tested together (one 2-D array), so a chunk of 100,000 values costs a few vectorised calls.
"""

from __future__ import annotations

import numpy as np

import adpipe

#: a reference larger than this is subsampled (seeded): the tests' power is set by the window
MAX_REFERENCE = 10_000


class WindowParams(adpipe.Params):
    window: int = adpipe.Field(1000, ge=10, le=10_000_000, description="values per tumbling window compared "
                               "with the reference")
    rebase: bool = adpipe.Field(False, description="after a detection, the drifted window becomes the "
                                "reference (fire once per change instead of on every window while it lasts)")


class WindowedDetector(adpipe.DriftDetector):
    """Base of window-vs-reference tests; subclasses implement ``_fit_reference`` and ``_test``."""

    needs_reference = True
    Params = WindowParams

    def start(self, reference: np.ndarray | None) -> "WindowedDetector":
        w = self.params.window
        self._buf = np.empty(w)
        self._n = 0
        self.reference_ = None
        if reference is not None:
            ref = np.asarray(reference, dtype=float).ravel()
            ref = ref[np.isfinite(ref)]
            if ref.size > MAX_REFERENCE:
                ref = np.random.default_rng(0).choice(ref, MAX_REFERENCE, replace=False)
            if ref.size:
                self._set_reference(ref)
        return self

    def _set_reference(self, ref: np.ndarray) -> None:
        self.reference_ = np.sort(ref)
        self._fit_reference(self.reference_)

    def update(self, values: np.ndarray) -> list[adpipe.DriftFinding]:
        if not hasattr(self, "_buf"):
            self.start(None)
        values = np.asarray(values, dtype=float).ravel()
        w, findings = self.params.window, []
        i = 0
        while i < values.size:
            if self._n == 0 and values.size - i >= w:  # whole windows straight from the chunk
                k = (values.size - i) // w
                findings += self._windows(values[i:i + k * w].reshape(k, w), i)
                i += k * w
                continue
            take = min(w - self._n, values.size - i)
            self._buf[self._n:self._n + take] = values[i:i + take]
            self._n += take
            i += take
            if self._n == w:
                self._n = 0
                findings += self._windows(self._buf[None, :].copy(), i - w)
        return findings

    def _windows(self, block: np.ndarray, first: int) -> list[adpipe.DriftFinding]:
        """Test the rows of ``block`` (windows; the first value of row 0 is at ``first`` in this update)."""
        w, out, start = block.shape[1], [], 0
        while start < len(block):
            if self.reference_ is None:  # no reference given: the first window becomes it
                self._set_reference(block[start].copy())
                start += 1
                continue
            stats = self._test(np.sort(block[start:], axis=1))
            hits = start + np.flatnonzero(stats > self._threshold)
            if not self.params.rebase:
                out += [self._finding(float(stats[h - start]), block[h], int(first + (h + 1) * w - 1)) for h in hits]
                break
            if not hits.size:
                break
            h = hits[0]  # rebase: later windows are compared with this one
            out.append(self._finding(float(stats[h - start]), block[h], int(first + (h + 1) * w - 1)))
            self._set_reference(block[h].copy())
            start = h + 1
        return out

    # subclass API
    _threshold: float = np.inf

    def _fit_reference(self, ref: np.ndarray) -> None:
        raise NotImplementedError

    def _test(self, sorted_block: np.ndarray) -> np.ndarray:
        """One statistic per row (a window, sorted); a row fires when statistic > ``_threshold``."""
        raise NotImplementedError

    def _finding(self, statistic: float, window: np.ndarray, position: int) -> adpipe.DriftFinding:
        raise NotImplementedError


def median_move(ref: np.ndarray, win: np.ndarray) -> str:
    return f"median moved from {fmt_num(np.median(ref))} to {fmt_num(np.median(win))}"


def fmt_num(x: float) -> str:
    return f"{x:,.3g}" if abs(x) < 1e6 else f"{x:.3g}"
