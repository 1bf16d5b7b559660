"""Scoring-time schema checks and validation on fit (held-out metrics, pass criteria, sanity checks)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import adpipe
from adpipe.core.engine import Pipeline

from conftest import blob_frame


def fit(frame, **config):
    return Pipeline.from_dict({"name": "m", "detector": "iforest", **config}).fit(frame)


# --------------------------------------------------------------------------- feature schema
def test_each_schema_difference_is_listed():
    frame = blob_frame(with_id=True)
    frame["shop"] = np.where(frame.index % 2, "fuel", "food")
    model = fit(frame, columns={"id": ["id"]}, preprocess=[{"type": "onehot", "columns": ["shop"]}])
    bad = frame.drop(columns=["f1"]).assign(extra=1, f2=lambda d: d["f2"].map(lambda v: f"x{v:.1f}"), shop=3)
    with pytest.raises(adpipe.SchemaMismatchError) as err:
        model.score(bad)
    diffs = err.value.differences
    assert len(diffs) == 4, diffs
    text = str(err.value)
    assert "missing column 'f1' (float64 in training)" in text
    assert "extra column 'extra'" in text
    assert "column 'f2' was numeric (float64) in training, is now text" in text
    assert "column 'shop' was text" in text and "now numeric" in text
    assert isinstance(err.value, adpipe.DataError)  # exit code 3 on the CLI


def test_compatible_differences_pass():
    frame = blob_frame(with_id=True, with_label=True)
    model = fit(frame, columns={"id": ["id"], "label": "label"})
    later = frame.drop(columns=["label"])  # no label when scoring
    later["id"] = later["id"].astype("float64")  # int -> float
    later["f0"] = later["f0"].astype(object)  # numbers held as objects are still numbers
    assert len(model.score(later)) == len(frame)
    reordered = later[["f2", "f1", "f0", "id"]]
    np.testing.assert_allclose(model.score(reordered)["anomaly_score"], model.score(later)["anomaly_score"])


def test_extra_columns_are_allowed_when_features_are_listed():
    frame = blob_frame(with_id=True)
    model = fit(frame, columns={"id": ["id"], "features": ["f0", "f1", "f2"]})
    assert len(model.score(frame.assign(note="anything"))) == len(frame)


def test_a_bad_cell_is_a_row_problem_not_a_retyped_column():
    frame = blob_frame(with_id=True)
    model = fit(frame, columns={"id": ["id"]}, validation={"on_invalid": "drop"})
    later = frame.astype({"f0": object})
    later.loc[3, "f0"] = "n/a"
    result = model.score(later)
    assert len(result) == len(frame) - 1 and 4 not in result["id"].tolist()


# --------------------------------------------------------------------------- validation on fit
def test_holdout_metrics_with_labels():
    frame = blob_frame(n=500, n_outliers=25, with_label=True)
    model = fit(frame, columns={"label": "label"})
    v = model.validation
    assert v["split"] == "holdout" and v["holdout_rows"] == 100 and model.training["rows"] == 400
    assert set(v["metrics"]) == {"roc_auc", "pr_auc", "precision", "recall", "f1"}
    assert v["metrics"]["roc_auc"] > 0.95 and v["passed"] is True and v["reasons"] == []
    assert model.training["held_out"] == 100


def test_holdout_is_stratified_and_reproducible():
    frame = blob_frame(n=500, n_outliers=25, with_label=True)
    a = fit(frame, columns={"label": "label"})
    b = fit(frame, columns={"label": "label"})
    assert a.validation["metrics"] == b.validation["metrics"]
    np.testing.assert_array_equal(a.score(frame)["anomaly_score"], b.score(frame)["anomaly_score"])
    held = frame.index.difference(a.fit_scores_.index)
    assert frame.loc[held, "label"].sum() == 5  # 20 % of the 25 outliers


def test_holdout_zero_fits_every_row():
    frame = blob_frame(with_label=True)
    model = fit(frame, columns={"label": "label"}, fit={"holdout": 0})
    assert model.training["rows"] == len(frame) and model.validation["split"] is None


def test_criteria_mark_a_model_not_fit_for_promotion():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(400, 3)), columns=["a", "b", "c"])
    frame["label"] = rng.integers(0, 2, 400)  # labels unrelated to the data: ROC-AUC near 0.5
    model = fit(frame, columns={"label": "label"}, fit={"criteria": {"min_roc_auc": 0.8, "min_recall": 0.1}})
    v = model.validation
    assert v["passed"] is False
    assert any(r.startswith("roc_auc") and "< min_roc_auc 0.8" in r for r in v["reasons"])


def test_criteria_without_labels_cannot_pass():
    model = fit(blob_frame(), fit={"criteria": {"min_roc_auc": 0.5}})
    assert model.validation["passed"] is False
    assert "could not be measured" in model.validation["reasons"][0]


def test_constant_scores_fail_the_sanity_checks():
    frame = pd.DataFrame({"a": np.ones(50), "b": np.full(50, 2.0)})
    model = fit(frame)
    checks = {c["check"]: c for c in model.validation["checks"]}
    assert checks["distinct_scores"]["status"] == "fail"
    assert model.validation["passed"] is False and "learned nothing" in model.validation["reasons"][0]


def test_sanity_checks_without_labels_pass_on_normal_data():
    model = fit(blob_frame())
    assert model.validation["split"] is None and model.validation["passed"] is True
    assert [c["status"] for c in model.validation["checks"]] == ["ok", "ok", "ok"]


def test_run_with_holdout_scores_every_row_and_reports_metrics(make_csv, tmp_path):
    csv = make_csv(blob_frame(n=400, n_outliers=20, with_id=True, with_label=True))
    out = tmp_path / "out.csv"
    cfg = {"detector": "knn", "columns": {"id": ["id"], "label": "label"}, "source": {"type": "csv", "path": str(csv)},
           "sinks": [{"type": "csv", "path": str(out)}]}
    pipe = Pipeline.from_dict(cfg)
    summary = pipe.run()
    assert summary.rows_scored == 400 and summary.training["held_out"] == 80
    assert summary.metrics["roc_auc"] > 0.95
    result = pd.read_csv(out)
    # training rows keep kNN's leave-one-out training scores; the 80 held-out rows are scored as new rows
    fresh = pipe.model_.score(pd.read_csv(csv))
    same = np.isclose(result["anomaly_score"], fresh["anomaly_score"], rtol=0, atol=1e-12)
    assert 80 <= same.sum() < 400
