"""The `ensemble` detector: combination arithmetic, calibration, validation, round trip, pipeline runs."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pydantic
import pytest
from conftest import REPO, basic_config, blob_frame

import adpipe
from adpipe.core.calibration import Calibrator
from adpipe.core.engine import Pipeline
from adpipe.core.model import load
from adpipe.plugins.algorithms import DETECTORS
from adpipe.plugins.algorithms.ensemble import (
    TIE_BREAK,
    Ensemble,
    buckets,
    combine,
    contributions,
    default_buckets,
    member_labels,
    shares,
)
from adpipe.testing import check_plugin, outlier_data

# three members' calibrated probabilities for two rows, and four members' for the bucket methods
P3 = np.array([[0.1, 0.5, 0.9],
               [0.8, 0.2, 0.4]])
P4 = np.array([[0.1, 0.5, 0.9, 0.3],
               [0.8, 0.2, 0.4, 0.6]])
HAS_COMBO = importlib.util.find_spec("combo") is not None


@pytest.fixture(scope="module")
def data():
    return outlier_data(n=300, d=4, n_outliers=10, seed=0)


# -- combination arithmetic (hand-computed) ------------------------------------------------------


def test_average_max_median():
    np.testing.assert_allclose(combine(P3, "average"), [1.5 / 3, 1.4 / 3])
    np.testing.assert_allclose(combine(P3, "max"), [0.9, 0.8])
    np.testing.assert_allclose(combine(P3, "median"), [0.5, 0.4])
    np.testing.assert_allclose(combine(P4, "median"), [(0.3 + 0.5) / 2, (0.4 + 0.6) / 2])


def test_weighted_uses_normalised_weights():
    ens = Ensemble(members=["iforest", "hbos", "copod"], method="weighted", weights=[1, 1, 2])
    w = ens._weights()
    np.testing.assert_allclose(w, [0.25, 0.25, 0.5])
    # row 0: 0.25*0.1 + 0.25*0.5 + 0.5*0.9 = 0.6; row 1: 0.25*0.8 + 0.25*0.2 + 0.5*0.4 = 0.45
    np.testing.assert_allclose(combine(P3, "weighted", weights=w), [0.6, 0.45])


def test_vote_counts_members_at_the_cutoff_plus_a_tie_break():
    # cut-off 0.5: row 0 has 2 of 3 votes (0.5 and 0.9), row 1 has 1 (0.8)
    expected = [2 / 3 + TIE_BREAK * 0.5, 1 / 3 + TIE_BREAK * (1.4 / 3)]
    np.testing.assert_allclose(combine(P3, "vote", cutoff=0.5), expected)
    # the tie-break never lifts a row above one with more votes
    scores = combine(np.array([[0.99, 0.99, 0.1], [0.5, 0.6, 0.7]]), "vote", cutoff=0.9)
    assert scores[0] > scores[1]
    assert TIE_BREAK < 1 / 10  # below one vote of the largest ensemble


def test_aom_and_moa_by_hand():
    groups = [[0, 3], [1, 2]]
    # aom: mean over groups of the group max; moa: max over groups of the group mean
    np.testing.assert_allclose(combine(P4, "aom", groups=groups), [(0.3 + 0.9) / 2, (0.8 + 0.4) / 2])
    np.testing.assert_allclose(combine(P4, "moa", groups=groups), [max(0.2, 0.7), max(0.7, 0.3)])


def test_buckets_split_members_into_equal_groups():
    g = buckets(4, 2, random_state=0)
    assert sorted(i for grp in g for i in grp) == [0, 1, 2, 3]
    assert [len(grp) for grp in g] == [2, 2]
    assert g == buckets(4, 2, random_state=0)  # seeded: the same groups at fit and at score time
    assert default_buckets(4) == 2 and default_buckets(6) == 2 and default_buckets(9) == 3
    assert default_buckets(3) == 3 and default_buckets(5) == 5


@pytest.mark.skipif(not HAS_COMBO, reason="combo (adpipe[ensembles]) is not installed")
@pytest.mark.parametrize("method", ["aom", "moa"])
@pytest.mark.parametrize("n_members, n_buckets", [(4, 2), (6, 3), (6, 2)])
def test_aom_moa_match_pyod(method, n_members, n_buckets):
    from pyod.models import combination

    P = np.random.default_rng(n_members).uniform(size=(50, n_members))
    ours = combine(P, method, groups=buckets(n_members, n_buckets, random_state=3))
    theirs = getattr(combination, method)(P, n_buckets=n_buckets, method="static", random_state=3)
    np.testing.assert_allclose(ours, theirs)


@pytest.mark.parametrize("method", ["average", "max", "median", "weighted", "aom", "moa", "vote"])
def test_contributions_add_up_to_the_combined_score(method):
    P = np.random.default_rng(1).uniform(size=(40, 4))
    w = np.array([0.1, 0.2, 0.3, 0.4])
    groups = [[0, 2], [1, 3]]
    C = contributions(P, method, weights=w, groups=groups, cutoff=0.6)
    np.testing.assert_allclose(C.sum(axis=1), combine(P, method, weights=w, groups=groups, cutoff=0.6))
    assert (C >= 0).all()
    np.testing.assert_allclose(shares(C).sum(axis=1), 1.0)


def test_contributions_by_hand():
    # max: all of row 0 comes from member 2 (0.9), all of row 1 from member 0 (0.8)
    np.testing.assert_allclose(shares(contributions(P3, "max")), [[0, 0, 1], [1, 0, 0]])
    # median of three: the middle member
    np.testing.assert_allclose(shares(contributions(P3, "median")), [[0, 1, 0], [0, 0, 1]])
    # average: each member's probability over the row's sum
    np.testing.assert_allclose(shares(contributions(P3, "average"))[0], [0.1 / 1.5, 0.5 / 1.5, 0.9 / 1.5])
    # a row where every member says 0 is shared equally
    np.testing.assert_allclose(shares(contributions(np.zeros((1, 3)), "average")), [[1 / 3] * 3])


# -- fitted on calibrated member scores -------------------------------------------------------------


def test_training_scores_are_the_combined_calibrated_member_scores(data):
    X, _ = data
    ens = Ensemble(members=["iforest", {"type": "knn", "n_neighbors": 10}], method="average").fit(X)
    probs = []
    for name, params in (("iforest", {}), ("knn", {"n_neighbors": 10})):
        det = DETECTORS[name](params).fit(X)
        probs.append(Calibrator("ecdf").fit(det.training_scores_).transform(det.training_scores_))
    np.testing.assert_allclose(ens.training_scores_, np.mean(probs, axis=0))
    # new rows: each member's score through its own calibrator
    T = X[:20] + 0.1
    expected = []
    for name, params in (("iforest", {}), ("knn", {"n_neighbors": 10})):
        det = DETECTORS[name](params).fit(X)
        expected.append(Calibrator("ecdf").fit(det.training_scores_).transform(det.score(T)))
    np.testing.assert_allclose(ens.score(T), np.mean(expected, axis=0))


def test_max_fit_rows_fits_on_a_sample_and_scores_the_rest(data):
    X, y = data
    ens = Ensemble(members=["iforest", {"type": "knn", "n_neighbors": 5}], max_fit_rows=100).fit(X)
    assert ens.fit_rows_ == 100 and ens.describe()["fit_rows"] == 100
    assert ens.training_scores_.shape == (300,)
    sample = np.sort(np.random.default_rng(0).choice(300, 100, replace=False))
    rest = np.setdiff1d(np.arange(300), sample)
    np.testing.assert_allclose(ens.training_scores_[rest], ens.score(X[rest]))
    assert ens.training_scores_[y == 1].mean() > ens.training_scores_[y == 0].mean()


def test_contributions_and_describe(data):
    X, _ = data
    ens = Ensemble(members=["iforest", "hbos", {"type": "knn", "n_neighbors": 10}, "knn"], method="aom",
                   n_buckets=2).fit(X)
    frame = pd.DataFrame(X[:30], index=np.arange(100, 130))
    out = ens.contributions(frame)
    labels = ["iforest", "hbos", "knn_1", "knn_2"]
    assert list(out.columns) == labels + [f"{lab}_share" for lab in labels] + ["combined"]
    assert list(out.index) == list(range(100, 130))
    np.testing.assert_allclose(out["combined"], ens.score(X[:30]))
    np.testing.assert_allclose(out[[f"{lab}_share" for lab in labels]].sum(axis=1), 1.0)
    assert out[labels].to_numpy().min() >= 0 and out[labels].to_numpy().max() <= 1
    info = ens.describe()
    assert info["method"] == "aom" and info["weights"] is None
    assert [m["label"] for m in info["members"]] == labels
    assert info["members"][2]["params"] == {"n_neighbors": 10}
    assert sorted(sum(info["buckets"], [])) == sorted(labels) and len(info["buckets"]) == 2
    assert abs(sum(m["mean_share"] for m in info["members"]) - 1) < 1e-3
    for m in info["members"]:
        assert -1 <= m["correlation"] <= 1


def test_describe_before_fit_and_weights():
    info = Ensemble(members=["iforest", "ecod"], method="weighted", weights=[3, 1]).describe()
    assert info["weights"] == [0.75, 0.25]
    assert [m["weight"] for m in info["members"]] == [0.75, 0.25]
    assert "fit_rows" not in info and "correlation" not in info["members"][0]


def test_member_labels():
    assert member_labels([{"type": "knn"}, {"type": "lof"}, {"type": "knn"}]) == ["knn_1", "lof", "knn_2"]


def test_not_fitted_and_wrong_width(data):
    X, _ = data
    with pytest.raises(adpipe.ModelError, match="not fitted"):
        Ensemble().score(X)
    ens = Ensemble().fit(X)
    with pytest.raises(adpipe.ModelError, match="4 feature columns but got 3"):
        ens.score(X[:, :3])
    assert ens.score(X[:0]).shape == (0,)


def test_a_failing_member_is_named():
    X = np.random.default_rng(0).normal(size=(8, 2))
    with pytest.raises(adpipe.ModelError, match="knn"):
        Ensemble(members=["iforest", {"type": "knn", "n_neighbors": 50}]).fit(X)


def test_conformance_kit():
    check_plugin(Ensemble)
    check_plugin(Ensemble, {"members": ["iforest", "ecod", {"type": "knn", "n_neighbors": 10}, "hbos"],
                            "method": "moa"})
    check_plugin(Ensemble, {"members": ["iforest", "copod"], "method": "vote", "vote_cutoff": 0.8})


# -- validation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("params, where, what", [
    ({"members": ["iforest"]}, "members", "at least 2"),
    ({"members": ["iforest"] * 11}, "members", "at most 10"),
    ({"members": ["iforest", "no_such_detector"]}, "members.1.type", "not an installed detector"),
    ({"members": ["iforest", {"n_neighbors": 3}]}, "members.1.type", "needs `type:`"),
    ({"members": ["iforest", {"type": "knn", "n_neighbors": 0}]}, "members.1.n_neighbors", "knn: Input should be"),
    ({"members": ["iforest", {"type": "knn", "bogus": 1}]}, "members.1.bogus", "'knn' has no parameter 'bogus'"),
    ({"members": ["iforest", "ecod"], "method": "weighted", "weights": [1, 2, 3]}, "weights", "3 weights for 2"),
    ({"members": ["iforest", "ecod"], "method": "weighted"}, "weights", "needs `weights`"),
    ({"members": ["iforest", "ecod"], "method": "weighted", "weights": [1, 0]}, "weights", "positive"),
    ({"members": ["iforest", "ecod"], "weights": [1, 2]}, "weights", "only by method weighted"),
    ({"members": ["iforest", "ecod", "hbos"], "method": "aom", "n_buckets": 2}, "n_buckets", "allowed: 3"),
    ({"method": "mean"}, "method", "Input should be"),
])
def test_params_rejected(params, where, what):
    with pytest.raises(pydantic.ValidationError) as err:
        Ensemble(**params)
    errors = err.value.errors()
    assert ".".join(map(str, errors[0]["loc"])) == where
    assert what in errors[0]["msg"]


def test_nested_member_errors_keep_the_whole_path():
    bad = {"members": ["iforest", {"type": "ensemble", "members": ["ecod", {"type": "lof", "n_neighbors": -1}]}]}
    with pytest.raises(pydantic.ValidationError) as err:
        Ensemble(**bad)
    assert err.value.errors()[0]["loc"] == ("members", 1, "members", 1, "n_neighbors")


def test_members_are_normalised():
    p = Ensemble.Params(members=["iforest", {"type": "knn", "n_neighbors": 7}])
    assert p.members == [{"type": "iforest"}, {"type": "knn", "n_neighbors": 7}]
    assert Ensemble.Params(**p.model_dump()) == p


@pytest.mark.parametrize("detector, path", [
    ({"type": "ensemble", "members": ["iforest", {"type": "knn", "n_neighbors": 0}]}, "detector.members.1.n_neighbors"),
    ({"type": "ensemble", "members": ["iforest", "nope"]}, "detector.members.1.type"),
    ({"type": "ensemble", "members": ["iforest"]}, "detector.members"),
    ({"type": "ensemble", "members": ["iforest", "ecod"], "method": "weighted", "weights": [1]}, "detector.weights"),
])
def test_config_errors_name_the_yaml_path(detector, path):
    with pytest.raises(adpipe.ConfigError) as err:
        Pipeline.from_dict({"detector": detector})
    assert path in str(err.value)
    assert err.value.hint and "adpipe plugins show ensemble" in err.value.hint


def test_config_file_for_the_detector_group_is_valid():
    """scripts/gen_detector_configs.py can render a config group file for it, and its values validate."""
    import yaml

    spec = importlib.util.spec_from_file_location("gen_detector_configs", REPO / "scripts/gen_detector_configs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = yaml.safe_load(module.render(Ensemble))
    assert data["type"] == "ensemble" and len(data["members"]) == 3
    Ensemble.Params(**{k: v for k, v in data.items() if k != "type"})


# -- through the pipeline -------------------------------------------------------------------------------

ENSEMBLE = {"type": "ensemble", "method": "median",
            "members": [{"type": "iforest", "n_estimators": 50}, "ecod", {"type": "knn", "n_neighbors": 10}]}


def test_pipeline_run_end_to_end(tmp_path, make_csv):
    make_csv(blob_frame(n=300, d=3, with_id=True))
    cfg = basic_config(detector=ENSEMBLE, columns={"id": ["id"]})
    summary = Pipeline.from_dict(cfg, base_dir=tmp_path).run()
    out = pd.read_csv(tmp_path / "out/scores.csv")
    assert summary.rows_scored == 300 and len(out) == 300
    assert out["anomaly_probability"].between(0, 1).all()
    flagged = out.loc[out["is_anomaly"] == 1, "id"]
    assert set(range(291, 301)) <= set(flagged)  # the ten planted outliers


def test_save_load_round_trip_gives_identical_scores(tmp_path):
    frame = blob_frame(n=300, d=3)
    model = Pipeline.from_dict({"detector": ENSEMBLE}).fit(frame)
    path = model.save(tmp_path / "ens.adpipe")
    loaded = load(path)
    new = blob_frame(n=50, d=3, seed=5)
    pd.testing.assert_frame_equal(loaded.score(new).drop(columns="run_id"), model.score(new).drop(columns="run_id"))
    assert loaded.detector.describe() == model.detector.describe()
    pd.testing.assert_frame_equal(loaded.detector.contributions(new), model.detector.contributions(new))
