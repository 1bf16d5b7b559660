"""Online detectors (half_space_trees, ewm_gaussian): plugin API, River equivalence, learning, pickling, engine."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pydantic
import pytest
from conftest import REPO, blob_frame
from sklearn.metrics import roc_auc_score

import adpipe
from adpipe.plugins.algorithms import DETECTORS
from adpipe.plugins.algorithms.online import (
    ONLINE_DETECTORS,
    EwmGaussian,
    HalfSpaceTrees,
)
from adpipe.testing import check_plugin

pytest.importorskip("river")

NAMES = sorted(ONLINE_DETECTORS)
#: small enough to be quick, window small enough to pivot several times in a test
SMALL = {"half_space_trees": {"n_trees": 10, "height": 8, "window_size": 200}, "ewm_gaussian": {"half_life": 300}}


def make(name: str, **params) -> adpipe.Detector:
    return ONLINE_DETECTORS[name](**{**SMALL[name], **params})


def outliers(n: int = 1000, d: int = 20, n_out: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Correlated Gaussian rows, the last ``n_out`` pushed far out along random directions."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) @ (np.eye(d) + 0.3 * rng.normal(size=(d, d)))
    direction = rng.normal(size=(n_out, d))
    X[n - n_out :] += 6 * direction / np.linalg.norm(direction, axis=1, keepdims=True) * np.sqrt(d)
    y = np.r_[np.zeros(n - n_out), np.ones(n_out)]
    return X, y


# -- registration and contract ---------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_registered_online_and_conformant(name):
    cls = ONLINE_DETECTORS[name]
    assert DETECTORS[name] is cls and cls.online
    check_plugin(cls, SMALL[name])
    assert adpipe.get_registry().get("detector", name) is cls


def test_half_space_trees_needs_river_from_the_stream_extra(monkeypatch):
    assert HalfSpaceTrees.requires == ("river",) and "adpipe[stream]" in HalfSpaceTrees.install_hint
    assert EwmGaussian.requires == ()  # pure numpy
    monkeypatch.setattr(HalfSpaceTrees, "requires", ("adpipe_no_such_module",))
    with pytest.raises(adpipe.PluginError, match=r"adpipe\[stream\]"):
        HalfSpaceTrees()


def test_importing_the_plugins_does_not_import_river():
    code = "import sys, adpipe.plugins.algorithms.online; print('river' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name, params", [
    ("half_space_trees", {"n_trees": 0}), ("half_space_trees", {"height": 0}), ("half_space_trees", {"height": 17}),
    ("half_space_trees", {"window_size": 5}), ("half_space_trees", {"margin": 0.5}),
    ("half_space_trees", {"margin": -0.1}), ("half_space_trees", {"seed": "x"}),
    ("ewm_gaussian", {"half_life": 0}), ("ewm_gaussian", {"shrinkage": 1.5}), ("ewm_gaussian", {"shrinkage": -1}),
    ("ewm_gaussian", {"alpha": 0.1}), ("half_space_trees", {"contamination": 0.1}),
])
def test_bad_params_rejected(name, params):
    with pytest.raises(pydantic.ValidationError):
        ONLINE_DETECTORS[name](**params)


def test_defaults():
    p = HalfSpaceTrees().params
    assert (p.n_trees, p.height, p.window_size, p.margin, p.seed) == (25, 10, 1000, 0.1, 0)
    assert EwmGaussian().params.half_life == 10_000 and EwmGaussian(half_life=None).params.half_life is None


# -- scoring ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_planted_outliers_score_higher(name):
    X, _ = outliers(seed=0)
    T, y = outliers(n=600, seed=1)
    det = make(name).fit(X[:-30])  # clean training rows
    assert roc_auc_score(y, det.score(T)) > 0.97
    assert det.training_scores_.shape == (len(X) - 30,)
    np.testing.assert_array_equal(det.training_scores_, det.score(X[:-30]))


@pytest.mark.parametrize("name", NAMES)
def test_default_params_find_outliers_in_training_data(name):
    X, y = outliers(n=3000)
    det = ONLINE_DETECTORS[name]().fit(X)
    assert roc_auc_score(y, det.training_scores_) > 0.95


@pytest.mark.parametrize("name", NAMES)
def test_scores_are_deterministic_without_learn(name):
    X, _ = outliers()
    det = make(name).fit(X)
    first = det.score(X)
    np.testing.assert_array_equal(det.score(X), first)
    chunked = np.concatenate([det.score(X[i : i + 7]) for i in range(0, len(X), 7)])
    np.testing.assert_allclose(chunked, first, rtol=1e-12)  # BLAS may round differently per batch shape
    np.testing.assert_array_equal(make(name).fit(X).score(X), first)  # same seed, same model
    assert det.score(X[:0]).shape == (0,)


def test_seed_changes_the_trees():
    X, _ = outliers()
    other = make("half_space_trees", seed=1).fit(X)
    assert not np.array_equal(other.score(X), make("half_space_trees").fit(X).score(X))


def test_half_space_trees_equals_river_row_by_row():
    from river.anomaly import HalfSpaceTrees as RiverHST

    X, _ = outliers(n=900, d=5)
    det = HalfSpaceTrees(n_trees=6, height=5, window_size=100, seed=7).fit(X[:250])
    river = RiverHST(n_trees=6, height=5, window_size=100, seed=7)
    P = det.model_.prepare(X)  # the plugin's scaling; River gets the scaled rows
    for row in P[:250]:
        river.learn_one(dict(enumerate(row)))
    for a, b in [(250, 251), (251, 333), (333, 640), (640, 900)]:  # uneven batches across window ends
        det.learn(X[a:b])
        for row in P[a:b]:
            river.learn_one(dict(enumerate(row)))
        expected = [river.score_one(dict(enumerate(row))) for row in P]
        np.testing.assert_allclose(det.score(X), expected, rtol=0, atol=1e-12)


def test_half_space_trees_scales_into_the_unit_interval():
    X, _ = outliers(n=300, d=3)
    X[:, 1] = 4.0  # a constant feature
    det = HalfSpaceTrees(window_size=100).fit(X)
    P = det.model_.prepare(np.vstack([X, X * 100]))
    assert P.min() >= 0 and P.max() <= 1
    inside = det.model_.prepare(X)
    assert inside.min() == pytest.approx(0.1) and inside.max() == pytest.approx(0.9)
    assert np.isfinite(det.score(X * 100)).all()


def test_half_space_trees_window_is_capped_at_the_training_rows():
    X, y = outliers(n=300, d=4, n_out=10)
    det = HalfSpaceTrees().fit(X)  # window_size 1000 > 300 rows
    assert det.model_.window_size == 300 and not det.model_.first_window
    assert roc_auc_score(y, det.training_scores_) > 0.9


def test_ewm_gaussian_matches_the_weighted_moments():
    X, _ = outliers(n=500, d=4, n_out=0)
    det = EwmGaussian(half_life=50, shrinkage=0).fit(X[:100])
    det.learn(X[100:])
    w = 0.5 ** (np.arange(499, -1, -1) / 50)
    mean = w @ X / w.sum()
    cov = ((X - mean) * w[:, None]).T @ (X - mean) / w.sum()
    np.testing.assert_allclose(det.model_.mean, mean, atol=1e-10)
    np.testing.assert_allclose(det.model_.scatter / det.model_.weight, cov, atol=1e-10)
    d = X[:5] - mean
    np.testing.assert_allclose(det.score(X[:5]), np.einsum("ij,ij->i", d @ np.linalg.inv(cov), d), rtol=1e-6)
    # no forgetting: the plain mean and covariance
    plain = EwmGaussian(half_life=None, shrinkage=0).fit(X)
    np.testing.assert_allclose(plain.model_.scatter / plain.model_.weight, np.cov(X.T, bias=True), atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_learning_does_not_depend_on_the_batch_sizes(name):
    X, _ = outliers(n=1200)
    a, b = make(name).fit(X[:400]), make(name).fit(X[:400])
    a.learn(X[400:])
    for i in range(400, 1200, 37):
        b.learn(X[i : i + 37])
    np.testing.assert_allclose(a.score(X), b.score(X), rtol=1e-9, atol=1e-12)


# -- learning --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_learn_adapts_to_a_shifted_distribution(name):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(1000, 20))
    shifted = rng.normal(loc=2.5, size=(1500, 20))
    probe = rng.normal(loc=2.5, size=(200, 20))
    det = make(name).fit(X)
    before = det.score(probe)
    inliers_before = det.score(X[:200])
    for i in range(0, len(shifted), 100):  # score, then learn, as the stream engine does
        det.score(shifted[i : i + 100])
        det.learn(shifted[i : i + 100])
    after = det.score(probe)
    assert np.median(after) < np.median(before)
    assert np.median(after) < np.quantile(before, 0.05)  # well below, not just a little
    assert np.median(det.score(X[:200])) > np.median(inliers_before)  # the old normal is now unusual


def test_without_forgetting_ewm_adapts_slowly():
    rng = np.random.default_rng(4)
    X, shifted = rng.normal(size=(5000, 5)), rng.normal(loc=2.0, size=(500, 5))
    fast, slow = EwmGaussian(half_life=200).fit(X), EwmGaussian(half_life=None).fit(X)
    fast.learn(shifted)
    slow.learn(shifted)
    assert np.median(fast.score(shifted)) < np.median(slow.score(shifted))


# -- checkpoints -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_pickled_detector_resumes_identically(name):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(600, 20))
    stream = rng.normal(loc=np.linspace(0, 2, 20), size=(1500, 20))
    det = make(name).fit(X)
    det.learn(stream[:150])
    resumed = pickle.loads(pickle.dumps(det))
    assert type(resumed.params) is type(det.params)
    for i in range(150, len(stream), 90):
        batch = stream[i : i + 90]
        np.testing.assert_array_equal(resumed.score(batch), det.score(batch))
        det.learn(batch)
        resumed.learn(batch)
    np.testing.assert_array_equal(resumed.score(stream), det.score(stream))


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_gives_typed_errors(name):
    X, _ = outliers(n=300, d=4)
    det = make(name)
    with pytest.raises(adpipe.ModelError, match="not fitted"):
        det.score(X)
    with pytest.raises(adpipe.ModelError, match="not fitted"):
        det.learn(X)
    with pytest.raises(adpipe.DataError, match="at least 2"):
        det.fit(X[:1])
    with pytest.raises(adpipe.DataError, match="numeric"):
        det.fit(np.array([["a", "b"], ["c", "d"]]))
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(adpipe.DataError, match="NaN.*row 3, column 2"):
        det.fit(bad)
    det.fit(X)
    before = det.score(X)
    with pytest.raises(adpipe.ModelError, match="4 feature columns"):
        det.score(np.zeros((2, 5)))
    with pytest.raises(adpipe.ModelError, match="4 feature columns"):
        det.learn(np.zeros((2, 3)))
    for value in (np.nan, np.inf):
        bad = X[:10].copy()
        bad[4, 1] = value
        with pytest.raises(adpipe.DataError, match="row 4, column 1"):
            det.score(bad)
        with pytest.raises(adpipe.DataError, match="row 4, column 1"):
            det.learn(bad)
    np.testing.assert_array_equal(det.score(X), before)  # rejected rows were not learned
    det.learn(X[:0])  # an empty batch is a no-op
    np.testing.assert_array_equal(det.score(X), before)


# -- through the engine ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_engine_fits_scores_and_checkpoints(tmp_path, name):
    frame = blob_frame(n=600, d=5, n_outliers=15, with_id=True)
    pipe = adpipe.Pipeline.from_dict({
        "source": {"type": "dataframe", "data": frame},
        "detector": {"type": name, **SMALL[name]},
        "columns": {"id": ["id"]},
        "threshold": {"type": "contamination", "contamination": 0.025},
    }, base_dir=tmp_path)
    model = pipe.fit(frame)
    assert model.detector.online and type(model.detector) is ONLINE_DETECTORS[name]
    out = model.score(frame)
    assert roc_auc_score(np.r_[np.zeros(585), np.ones(15)], out["anomaly_score"]) > 0.97
    assert out["is_anomaly"].iloc[-15:].mean() > 0.8 and out["is_anomaly"].iloc[:-15].mean() < 0.02
    new = pd.DataFrame({"id": [1, 2], **{f"f{i}": [0.0, 9.0] for i in range(5)}})
    assert out["anomaly_probability"].between(0, 1).all()
    assert model.score(new)["is_anomaly"].tolist() == [0, 1]

    # the stream engine's cycle (score_batch with learn=True); a checkpoint resumes identically
    stream = blob_frame(n=900, d=5, n_outliers=0, seed=9, with_id=True)
    stream[[f"f{i}" for i in range(5)]] += 1.5
    before = model.score(stream)["anomaly_score"].to_numpy()
    model.score_batch(stream.iloc[:300], learn=True)
    restored = pickle.loads(pickle.dumps(model))
    saved = adpipe.load_model(model.save(tmp_path / "model.adpipe"))
    for i in range(300, 900, 150):
        results = [m.score_batch(stream.iloc[i : i + 150], learn=True)[0] for m in (model, restored, saved)]
        for other in results[1:]:
            pd.testing.assert_frame_equal(other, results[0])
    after = model.score(stream)["anomaly_score"].to_numpy()
    assert np.median(after) < np.median(before)  # it learned the shifted rows
    for m in (restored, saved):
        np.testing.assert_array_equal(m.score(stream)["anomaly_score"].to_numpy(), after)


def test_engine_run_with_a_dataframe_source(tmp_path):
    from adpipe.plugins.sinks.memory import MemorySink

    frame = blob_frame(n=400, d=3, n_outliers=10, with_id=True)
    sink = MemorySink()
    summary = adpipe.Pipeline.from_dict({"source": {"type": "dataframe", "data": frame},
                                         "detector": {"type": "half_space_trees", "window_size": 100},
                                         "columns": {"id": ["id"]}}, base_dir=tmp_path).run(
        sinks=[sink], write_summary=False)
    assert summary.rows_in == 400 == summary.rows_scored
    result = sink.frame()
    assert result["anomaly_score"].iloc[-10:].min() > result["anomaly_score"].iloc[:-10].median()


def test_bad_detector_param_in_a_config_names_the_path(tmp_path):
    with pytest.raises(adpipe.ConfigError, match="detector.window_size"):
        adpipe.Pipeline.from_dict({"detector": {"type": "half_space_trees", "window_size": 1}}, base_dir=tmp_path)
