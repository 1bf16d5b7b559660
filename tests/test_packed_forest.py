"""The packed isolation forest gives scikit-learn's scores exactly, for the few-row path."""

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from adpipe.plugins.algorithms import _forest
from adpipe.plugins.algorithms._forest import SMALL_ROWS, PackedForest


@pytest.mark.parametrize("params, n_features", [
    ({}, 20),
    ({"max_features": 0.5, "max_samples": 100}, 7),  # features subsampled: per-tree column maps
    ({"max_features": 3, "max_samples": 0.3, "bootstrap": True}, 5),
    ({}, 1),
    ({"n_estimators": 1, "max_samples": 2}, 3),
])
def test_scores_equal_sklearn_exactly(params, n_features):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, n_features)) * rng.uniform(0.1, 100, n_features)
    forest = IsolationForest(random_state=1, **{"n_estimators": 50, **params}).fit(X)
    Y = np.r_[rng.normal(size=(300, n_features)) * 80, X[:100], X[:5] + 1e-7]
    assert np.array_equal(PackedForest(forest).score_samples(Y), forest.score_samples(Y))


def test_small_batches_take_the_packed_path_and_large_ones_sklearns():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 4))
    forest = IsolationForest(n_estimators=30, random_state=0).fit(X)
    for n in (1, SMALL_ROWS, SMALL_ROWS + 1, 400):
        assert np.array_equal(_forest.score_samples(forest, X[:n]), forest.score_samples(X[:n]))
    assert forest in _forest._packed  # built once, on first use, and kept beside the forest


def test_non_finite_rows_are_left_to_sklearn():
    X = np.random.default_rng(2).normal(size=(300, 3))
    forest = IsolationForest(n_estimators=20, random_state=0).fit(X)
    row = np.array([[np.nan, 0.0, 1e40]])  # 1e40 is inf in float32, as scikit-learn reads it
    assert np.array_equal(_forest.score_samples(forest, row), forest.score_samples(row), equal_nan=True)


@pytest.mark.parametrize("detector", ["iforest", "isolation_forest"])
def test_pipeline_score_one_equals_batch_scores(detector):
    import pandas as pd

    import adpipe

    rng = np.random.default_rng(3)
    train = pd.DataFrame(rng.normal(size=(1000, 5)), columns=list("abcde"))
    model = adpipe.Pipeline.from_dict({"name": "p", "detector": {"type": detector, "n_estimators": 40}}).fit(train)
    test = pd.DataFrame(rng.normal(size=(100, 5)) * 3, columns=list("abcde"))
    batch = model.score_batch(test)[0]  # 100 rows: scikit-learn's path
    one = [model.score_one(r) for r in test.to_dict(orient="records")]
    assert np.array_equal(batch["anomaly_score"].to_numpy(), np.array([r["anomaly_score"] for r in one]))
    assert batch["is_anomaly"].tolist() == [r["is_anomaly"] for r in one]
