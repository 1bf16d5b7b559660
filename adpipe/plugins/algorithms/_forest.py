"""Isolation-forest scores for a few rows, all trees walked at once.

scikit-learn's ``IsolationForest.score_samples`` walks its trees one by one through joblib, about
35 µs a tree whatever the row count: one row through 100 trees costs ~3.5 ms, which is most of a
service's single-record latency. Here the trees are packed into padded arrays and walked together,
one numpy step per tree level (~0.1 ms for one row). The comparisons are scikit-learn's (float32
inputs against float64 thresholds, ``x <= threshold`` goes left) and the path lengths are summed tree
by tree in the same order, so the scores are identical, not merely close. Large batches keep
scikit-learn's own path, which is faster there.
"""

from __future__ import annotations

import weakref

import numpy as np

SMALL_ROWS = 64  # at most this many rows take the packed path
_packed: "weakref.WeakKeyDictionary[object, PackedForest]" = weakref.WeakKeyDictionary()


class PackedForest:
    """A fitted ``sklearn.ensemble.IsolationForest`` as flat node arrays (leaves point to themselves)."""

    def __init__(self, forest) -> None:
        from sklearn.ensemble._iforest import _average_path_length

        trees = forest.estimators_
        width = max(est.tree_.node_count for est in trees)
        size = len(trees) * width
        self.feature = np.zeros(size, dtype=np.intp)
        self.threshold = np.zeros(size)
        self.left = np.arange(size, dtype=np.intp)
        self.right = np.arange(size, dtype=np.intp)
        self.path = np.zeros(size)
        self.n_features = forest.n_features_in_
        subsample = forest._max_features != forest.n_features_in_
        for t, (est, features) in enumerate(zip(trees, forest.estimators_features_, strict=True)):
            tree, base = est.tree_, t * width
            n = tree.node_count
            inner = tree.children_left[:n] != -1
            nodes = base + np.flatnonzero(inner)
            feat = tree.feature[:n][inner]
            self.feature[nodes] = np.asarray(features)[feat] if subsample else feat
            self.threshold[nodes] = tree.threshold[:n][inner]
            self.left[nodes] = base + tree.children_left[:n][inner]
            self.right[nodes] = base + tree.children_right[:n][inner]
            self.path[base:base + n] = (forest._decision_path_lengths[t] + forest._average_path_length_per_tree[t]
                                        - 1.0)
        self.roots = np.arange(len(trees), dtype=np.intp) * width
        self.depth = max(est.tree_.max_depth for est in trees)
        self.denominator = len(trees) * _average_path_length([forest._max_samples])

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """``IsolationForest.score_samples(X)`` (higher = more normal) for a float matrix."""
        X = np.asarray(X, dtype=np.float32).astype(np.float64)
        rows = np.arange(X.shape[0])[None, :]
        nodes = np.repeat(self.roots[:, None], X.shape[0], axis=1)  # (trees, rows)
        for _ in range(self.depth):
            go_left = X[rows, self.feature[nodes]] <= self.threshold[nodes]
            nodes = np.where(go_left, self.left[nodes], self.right[nodes])
        depths = np.zeros(X.shape[0])
        for lengths in self.path[nodes]:  # tree by tree, as scikit-learn adds them
            depths += lengths
        ratio = np.divide(depths, self.denominator, out=np.ones_like(depths), where=self.denominator != 0)
        return -(2 ** -ratio)


def score_samples(forest, X: np.ndarray) -> np.ndarray:
    """``forest.score_samples(X)``, by the packed trees when ``X`` has at most SMALL_ROWS rows."""
    if X.shape[0] > SMALL_ROWS or not np.isfinite(X).all():
        return forest.score_samples(X)
    packed = _packed.get(forest)
    if packed is None:
        packed = _packed[forest] = PackedForest(forest)
    return packed.score_samples(X)


def pyod_decision_function(model, X: np.ndarray) -> np.ndarray:
    """PyOD ``IForest.decision_function(X)`` (``invert_order`` of scikit-learn's), by the packed trees for a
    few rows: the catalog entry of ``iforest`` names it as its ``small_batch`` scorer."""
    if X.shape[0] > SMALL_ROWS:
        return model.decision_function(X)
    forest = model.detector_
    return (score_samples(forest, X) - forest.offset_) * -1
