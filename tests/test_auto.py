"""The `auto` detector: the rules of docs/ensembles.md on constructed data, the recorded choice, pipelines,
the round trip and a sanity floor on small ADBench datasets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, blob_frame
from sklearn.metrics import roc_auc_score

import adpipe
from adpipe.core.engine import Pipeline
from adpipe.core.model import load
from adpipe.plugins.algorithms.auto import HIGH_DIM, K_NEIGHBORS, Auto, choose, profile
from adpipe.testing import check_plugin


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def facts(rows: int, features: int, discrete: int = 0) -> dict:
    return {"rows": rows, "features": features, "discrete_features": discrete, "binary_features": 0,
            "constant_features": 0, "discrete_share": discrete / features}


def types(members: list[dict]) -> list[str]:
    return [m["type"] for m in members]


# -- the rules ------------------------------------------------------------------------------------------


def test_low_dimensional_continuous_data_gets_knn():
    members, reasons = choose(facts(1000, 8), max_fit_rows=20_000)
    assert types(members) == ["iforest", "hbos", "knn"]
    assert members[2]["n_neighbors"] == K_NEIGHBORS == 20
    assert "algorithm" in members[2]  # 8 features: brute-force search
    assert "knn (k=20)" in reasons[2]


def test_high_dimensional_data_gets_copod_not_knn():
    members, reasons = choose(facts(1000, HIGH_DIM), max_fit_rows=20_000)
    assert types(members) == ["iforest", "hbos", "copod"]
    assert "50 features" in reasons[2] and "concentrate" in reasons[2]
    assert types(choose(facts(1000, HIGH_DIM - 1), 20_000)[0])[2] == "knn"


def test_mostly_discrete_data_gets_copod_not_knn():
    members, reasons = choose(facts(1000, 10, discrete=5), max_fit_rows=20_000)
    assert types(members)[2] == "copod" and "5 of 10 features" in reasons[2]
    assert types(choose(facts(1000, 10, discrete=4), 20_000)[0])[2] == "knn"


def test_tiny_data_gets_a_smaller_k():
    members, reasons = choose(facts(40, 3), max_fit_rows=20_000)
    assert members[2] == {"type": "knn", "n_neighbors": 8}  # 40 // 5; few features: tree search
    assert "tiny data (40 rows)" in reasons[2]
    assert choose(facts(3, 2), 20_000)[0][2]["n_neighbors"] == 1


def test_large_data_fits_members_on_a_sample():
    _, reasons = choose(facts(500_000, 10), max_fit_rows=20_000)
    assert "random sample of 20000 of 500000 rows" in reasons[-1]
    _, small = choose(facts(19_000, 10), max_fit_rows=20_000)
    assert not any("sample" in r for r in small)


def test_profile_counts_feature_types():
    n = 400
    X = np.column_stack([
        rng().normal(size=n),                 # continuous
        rng(1).normal(size=n),                # continuous
        rng(2).integers(0, 2, n),             # binary
        rng(3).integers(0, 2, n),             # binary
        np.full(n, 7.0),                      # constant
        rng(4).integers(0, 5, n),             # discrete, 5 values
    ]).astype(float)
    f = profile(X)
    assert f == {"rows": 400, "features": 6, "discrete_features": 4, "binary_features": 3,
                 "constant_features": 1, "discrete_share": round(4 / 6, 4)}


@pytest.mark.parametrize("X, expected", [
    (rng().normal(size=(300, 5)), ["iforest", "hbos", "knn"]),
    (rng().normal(size=(300, 60)), ["iforest", "hbos", "copod"]),
    (rng().integers(0, 2, size=(300, 12)).astype(float), ["iforest", "hbos", "copod"]),
    (rng().normal(size=(30, 4)), ["iforest", "hbos", "knn"]),
], ids=["low-dim", "high-dim", "binary", "tiny"])
def test_fit_records_the_choice(X, expected):
    det = Auto().fit(X)
    assert det.chosen_["members"] == expected
    assert det.chosen_["method"] == "median"
    assert det.chosen_["profile"]["rows"] == len(X) and det.chosen_["profile"]["features"] == X.shape[1]
    assert len(det.chosen_["reasons"]) == 4
    info = det.describe()
    assert info["members"] == expected and info["ensemble"]["method"] == "median"
    assert [m["type"] for m in info["ensemble"]["members"]] == expected
    assert det.training_scores_.shape == (len(X),)


def test_large_data_is_fitted_on_a_sample():
    X = np.vstack([rng().normal(size=(2990, 4)), rng(1).uniform(6, 9, size=(10, 4))])
    det = Auto(max_fit_rows=500).fit(X)
    assert det.ensemble_.fit_rows_ == 500
    assert det.training_scores_.shape == (3000,)
    assert "500 of 3000 rows" in det.chosen_["reasons"][-1]
    assert det.training_scores_[-10:].min() > np.quantile(det.training_scores_[:-10], 0.99)


def test_scores_do_not_depend_on_feature_units():
    X = rng().normal(size=(300, 4))
    a = Auto().fit(X).training_scores_
    b = Auto().fit(X * [1, 1000, 0.001, 50] + 7).training_scores_
    assert np.corrcoef(a, b)[0, 1] > 0.999


def test_contributions_and_errors():
    X = rng().normal(size=(200, 3))
    with pytest.raises(adpipe.ModelError, match="not fitted"):
        Auto().score(X)
    det = Auto().fit(X)
    out = det.contributions(pd.DataFrame(X[:5], index=list("abcde")))
    assert list(out.index) == list("abcde")
    np.testing.assert_allclose(out["combined"], det.score(X[:5]))
    with pytest.raises(adpipe.ModelError, match="3 feature columns but got 2"):
        det.score(X[:, :2])
    with pytest.raises(adpipe.DataError, match="at least 2 training rows"):
        Auto().fit(X[:1])
    assert det.score(X[:0]).shape == (0,)


def test_conformance_kit():
    check_plugin(Auto)
    check_plugin(Auto, {"max_fit_rows": 100, "random_state": 3})


def test_docs_state_the_rules():
    text = (REPO / "docs" / "ensembles.md").read_text()
    for phrase in (f"{HIGH_DIM} features", f"k = {K_NEIGHBORS}", "median", "max_fit_rows", "held out"):
        assert phrase in text


# -- through the pipeline -------------------------------------------------------------------------------


def test_pipeline_fit_score_and_round_trip(tmp_path):
    frame = blob_frame(n=300, d=3)
    model = Pipeline.from_dict({"detector": "auto", "threshold": {"type": "contamination",
                                                                  "contamination": 0.05}}).fit(frame)
    assert model.detector.chosen_["members"] == ["iforest", "hbos", "knn"]
    scored = model.score(frame)
    assert set(range(290, 300)) <= set(scored.index[scored["is_anomaly"] == 1])
    loaded = load(model.save(tmp_path / "auto.adpipe"))
    new = blob_frame(n=40, d=3, seed=9)
    pd.testing.assert_frame_equal(loaded.score(new).drop(columns="run_id"), model.score(new).drop(columns="run_id"))
    assert loaded.detector.describe() == model.detector.describe()


@pytest.mark.parametrize("name, floor", [("14_glass", 0.75), ("21_Lymphography", 0.95), ("45_wine", 0.8)])
def test_adbench_sanity_floor(adbench_dir, name, floor):
    data = np.load(adbench_dir / f"{name}.npz")
    X, y = data["X"].astype(float), data["y"].astype(int)
    det = Auto().fit(X)
    assert roc_auc_score(y, det.training_scores_) >= floor


def test_the_choice_is_kept_in_the_model_and_shown_by_models_show(capsys):
    from adpipe.core.cli import main

    model = Pipeline.from_dict({"name": "shape", "detector": {"type": "auto"}}).fit(blob_frame(n=400))
    chosen = model.training["detector"]
    assert chosen["members"] == model.detector.chosen_["members"] and chosen["method"] == "median"
    adpipe.ModelStore().add(model)
    with pytest.raises(SystemExit) as done:
        main(["models", "show", "shape@1"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and f"detector: {' + '.join(chosen['members'])} combined by median" in out
