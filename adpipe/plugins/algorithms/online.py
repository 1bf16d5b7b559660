"""Online detectors: they learn as they score (``online = True``).

``fit(X)`` learns the training rows in order, ``score(X)`` scores without
learning, ``learn(X)`` updates the model with rows just scored (the stream
engine calls score, then learn, on every batch). Learned state is plain numpy,
so a checkpointed (pickled) model resumes bit for bit and does not depend on
the River version. See ``docs/online.md``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

import adpipe
from adpipe.plugins.algorithms._common import as_matrix, check_fitted, check_width

_BLOCK = 4096  # rows per vectorised step of the trees (bounds memory)
_SEED = "Seed of the random number generator (an int makes runs reproducible; null = fresh randomness)."


class _OnlineDetector(adpipe.Detector):
    """Shared input checks and the fit / score / learn template."""

    online = True
    model_: Any = None
    n_features_in_: int | None = None
    _key: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def key_params(cls) -> tuple[str, ...]:
        return cls._key

    def _rows(self, X, stage: str) -> np.ndarray:
        X = as_matrix(X, self.name)
        if stage != "fit":
            check_fitted(self, self.name)
            check_width(self.n_features_in_, X, self.name)
        bad = ~np.isfinite(X)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise adpipe.DataError(
                f"detector '{self.name}' cannot {stage} rows with NaN or infinite values "
                f"({int(bad.any(axis=1).sum())} rows; first at row {row}, column {col}).",
                hint="impute or drop them in `preprocess`, or set validation.on_invalid",
            )
        return X

    def fit(self, X) -> _OnlineDetector:
        X = self._rows(X, "fit")
        if X.shape[0] < 2:
            raise adpipe.DataError(f"detector '{self.name}' needs at least 2 training rows, got {X.shape[0]}.")
        model = self._start(X)
        model.learn(X)
        self.model_, self.n_features_in_ = model, X.shape[1]  # replaced only once the new model is complete
        self.training_scores_ = self.score(X)
        return self

    def score(self, X) -> np.ndarray:
        X = self._rows(X, "score")
        if X.shape[0] == 0:
            return np.empty(0, dtype=float)
        return self.model_.score(X)

    def learn(self, X) -> None:
        X = self._rows(X, "learn")
        if X.shape[0]:
            self.model_.learn(X)

    def _start(self, X: np.ndarray):
        """A fresh model (with ``learn(X)`` and ``score(X)``) for training rows ``X``."""
        raise NotImplementedError


# ---------------------------------------------------------------------------- Half-Space Trees


class _Forest:
    """River's Half-Space Trees as flat arrays (nodes in heap order: children of k are 2k+1, 2k+2).

    Rows are first scaled into [0, 1] (``prepare``); then ``learn`` and ``score`` give exactly what
    ``river.anomaly.HalfSpaceTrees``'s ``learn_one`` and ``score_one`` give row by row
    (tests/test_online.py checks it), vectorised over rows and trees.
    """

    def __init__(self, feature: np.ndarray, threshold: np.ndarray, height: int, window_size: int,
                 scale: np.ndarray, offset: np.ndarray):
        n_trees = feature.shape[0]
        self.feature, self.threshold, self.height, self.window_size = feature, threshold, height, window_size
        self.scale, self.offset = scale, offset
        self.l_mass = np.zeros((n_trees, 2 ** (height + 1) - 1), dtype=np.int64)
        self.r_mass = np.zeros_like(self.l_mass)
        self.counter = 0  # rows learned in the current window
        self.first_window = True  # no reference window yet: every score is 0

    def prepare(self, X: np.ndarray) -> np.ndarray:
        return np.clip(X * self.scale + self.offset, 0.0, 1.0)

    def _paths(self, X: np.ndarray) -> np.ndarray:
        """Node index at each depth: shape (height + 1, n_rows, n_trees)."""
        n, trees = X.shape[0], np.arange(self.feature.shape[0])
        node = np.zeros((n, trees.size), dtype=np.int64)
        rows = np.arange(n)[:, None]
        out = np.empty((self.height + 1, n, trees.size), dtype=np.int64)
        for depth in range(self.height):
            out[depth] = node
            right = X[rows, self.feature[trees, node]] >= self.threshold[trees, node]
            node = 2 * node + 1 + right
        out[self.height] = node
        return out

    def learn(self, X: np.ndarray) -> None:
        X = self.prepare(X)
        offsets = np.arange(self.l_mass.shape[0]) * self.l_mass.shape[1]
        start = 0
        while start < len(X):  # split the rows where a window ends (and into blocks, to bound memory)
            stop = min(len(X), start + self.window_size - self.counter, start + _BLOCK)
            paths = (self._paths(X[start:stop]) + offsets).ravel()
            if paths.size * 8 < self.l_mass.size:  # few rows: cheaper than counting every node
                np.add.at(self.l_mass.reshape(-1), paths, 1)
            else:
                self.l_mass += np.bincount(paths, minlength=self.l_mass.size).reshape(self.l_mass.shape)
            self.counter += stop - start
            if self.counter == self.window_size:  # the window becomes the reference
                self.r_mass, self.l_mass = self.l_mass, np.zeros_like(self.l_mass)
                self.counter, self.first_window = 0, False
            start = stop

    def score(self, X: np.ndarray) -> np.ndarray:
        if self.first_window or not len(X):
            return np.zeros(len(X))
        return np.concatenate([self._score(self.prepare(X[i : i + _BLOCK])) for i in range(0, len(X), _BLOCK)])

    def _score(self, X: np.ndarray) -> np.ndarray:
        paths = self._paths(X)
        trees = np.arange(self.r_mass.shape[0])
        total = np.zeros(paths.shape[1:], dtype=np.int64)
        alive = np.ones(paths.shape[1:], dtype=bool)
        for depth in range(self.height + 1):  # stop below a node lighter than 10 % of the window
            mass = self.r_mass[trees, paths[depth]]
            total += np.where(alive, mass << depth, 0)
            alive &= mass >= 0.1 * self.window_size
        best = self.r_mass.shape[0] * self.window_size * (2 ** (self.height + 1) - 1)
        return 1.0 - total.sum(axis=1) / best


def _river_trees(n_features: int, n_trees: int, height: int, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Let River grow its random trees (features scaled to [0, 1]); return (feature, threshold) per node."""
    from river.anomaly import HalfSpaceTrees

    hst = HalfSpaceTrees(n_trees=n_trees, height=height, window_size=1, seed=seed)
    hst.learn_one({j: 0.5 for j in range(n_features)})  # River grows the trees on its first row
    n_inner = 2 ** height - 1
    feature = np.zeros((n_trees, n_inner), dtype=np.int64)
    threshold = np.zeros((n_trees, n_inner))
    for t, root in enumerate(hst.trees):
        todo = [(root, 0)]
        while todo:
            node, k = todo.pop()
            if k < n_inner:
                feature[t, k], threshold[t, k] = node.feature, node.threshold
                todo += [(node.children[0], 2 * k + 1), (node.children[1], 2 * k + 2)]
    return feature, threshold


class HalfSpaceTrees(_OnlineDetector):
    """Half-Space Trees (River): an online isolation forest over a sliding reference window.

    Wraps River's ``anomaly.HalfSpaceTrees`` (random trees grown by River; masses counted in
    vectorised numpy with River's exact learn/score rules). The trees count the rows of each window
    of ``window_size`` learned rows; a full window becomes the reference that rows are scored
    against, so the model always reflects the latest complete window. Score in [0, 1]: 1 - the
    depth-weighted reference mass along the row's path, normalised. Features are min-max scaled
    with the training rows' range, widened by ``margin`` on each side, and clipped to [0, 1].
    Reference: Tan, Ting & Liu, IJCAI 2011.
    """

    name = "half_space_trees"
    requires = ("river",)
    install_hint = "pip install 'adpipe[stream]'"
    _key = ("n_trees", "height", "window_size")

    class Params(adpipe.Params):
        n_trees: int = adpipe.Field(25, ge=1, le=1000, description="Number of trees.")
        height: int = adpipe.Field(
            10, ge=1, le=16,
            description="Depth of each tree (2^(height+1) - 1 nodes; memory and time double per level, and River "
            "grows the trees slowly above 12).",
        )
        window_size: int = adpipe.Field(
            1000, ge=10,
            description="Rows per window: each full window becomes the reference the trees score against "
            "(capped at the number of training rows).",
        )
        margin: float = adpipe.Field(
            0.1, ge=0, lt=0.5,
            description="Share of [0, 1] left free beyond the training range on each side, so values "
            "outside it fall into their own cells before clipping.",
        )
        seed: int | None = adpipe.Field(0, description=_SEED)

    def _start(self, X: np.ndarray) -> _Forest:
        p = self.params
        lo, hi = X.min(axis=0), X.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        lo = np.where(hi > lo, lo, lo - 0.5)  # a constant feature sits in the middle
        scale = (1 - 2 * p.margin) / span  # value v maps to margin + (1 - 2 margin) (v - lo) / span
        feature, threshold = _river_trees(X.shape[1], p.n_trees, p.height, p.seed)
        return _Forest(feature, threshold, p.height, min(p.window_size, X.shape[0]), scale, p.margin - lo * scale)


# ---------------------------------------------------------------------------- EWM Gaussian


class _Gaussian:
    """Exponentially weighted mean and covariance; each learned row's weight decays by ``decay`` per row."""

    def __init__(self, d: int, decay: float, shrinkage: float):
        self.decay, self.shrinkage = decay, shrinkage
        self.weight = 0.0
        self.mean = np.zeros(d)
        self.scatter = np.zeros((d, d))  # weighted sum of outer products of deviations
        self.whiten: np.ndarray | None = None  # inverse Cholesky factor of the covariance (cached)

    def learn(self, X: np.ndarray) -> None:
        n = X.shape[0]
        w = self.decay ** np.arange(n - 1, -1, -1, dtype=float)  # the newest row weighs 1
        wb = w.sum()
        mb = w @ X / wb
        dev = X - mb
        old = self.weight * self.decay**n
        total = old + wb
        delta = mb - self.mean
        # Chan et al.'s merge of weighted moments: equal to learning the rows one at a time
        self.scatter = (self.scatter * self.decay**n + (dev * w[:, None]).T @ dev
                        + np.outer(delta, delta) * (old * wb / total))
        self.mean = self.mean + delta * (wb / total)
        self.weight = total
        self.whiten = None  # recomputed by the next score

    def _whitener(self) -> np.ndarray:
        cov = self.scatter / self.weight
        var = np.diag(cov).copy()
        cov = (1 - self.shrinkage) * cov + self.shrinkage * np.diag(var)
        cov[np.diag_indices_from(cov)] += 1e-9 * max(float(var.mean()), 1e-12)  # constant features stay invertible
        try:
            return np.linalg.inv(np.linalg.cholesky(cov))
        except np.linalg.LinAlgError:  # not positive definite after rounding: clip the eigenvalues
            vals, vecs = np.linalg.eigh(cov)
            vals = np.maximum(vals, 1e-9 * max(float(vals.max()), 1e-12))
            return (vecs / np.sqrt(vals)).T

    def score(self, X: np.ndarray) -> np.ndarray:
        if self.whiten is None:
            self.whiten = self._whitener()
        z = (X - self.mean) @ self.whiten.T
        return np.einsum("ij,ij->i", z, z)


class EwmGaussian(_OnlineDetector):
    """Exponentially weighted Gaussian: Mahalanobis distance to a mean and covariance that forget.

    Keeps an exponentially weighted mean and covariance of the learned rows (a row's weight halves
    every ``half_life`` rows learned after it) and scores the squared Mahalanobis distance to them
    (chi-square with n_features degrees of freedom for Gaussian data). Learning is vectorised per
    batch and gives the same model whatever the batch sizes. Pure numpy, no extra dependency; for
    roughly elliptical data and gradual drift.
    """

    name = "ewm_gaussian"
    _key = ("half_life",)

    class Params(adpipe.Params):
        half_life: float | None = adpipe.Field(
            10_000, gt=0,
            description="Rows after which a learned row's weight halves (smaller adapts faster); "
            "null = never forget (plain running mean and covariance).",
        )
        shrinkage: float = adpipe.Field(
            0.01, ge=0, le=1,
            description="Shrink the covariance toward its diagonal (0 = full covariance, 1 = features "
            "treated as independent); steadies it with few rows or collinear features.",
        )

    def _start(self, X: np.ndarray) -> _Gaussian:
        hl = self.params.half_life
        return _Gaussian(X.shape[1], 1.0 if hl is None else 0.5 ** (1.0 / hl), self.params.shrinkage)


ONLINE_DETECTORS: dict[str, type[adpipe.Detector]] = {cls.name: cls for cls in (HalfSpaceTrees, EwmGaussian)}
