"""Explanations: per-record contributions and sentences, global importance, the explanation column, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import local_registry, write_yaml

import adpipe
from adpipe.core.cli import main
from adpipe.core.engine import Pipeline
from adpipe.core.errors import ConfigError, DataError, ModelError, SchemaMismatchError
from adpipe.core.explain import (
    explain,
    feature_importance,
    fmt_number,
    fmt_share,
    fmt_sigma,
)

PUSHED = list(range(10))  # rows whose f2 is pushed by 8σ


def gaussian(n: int = 1500, push: float = 8.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(0, 1, (n, 4)), columns=["f0", "f1", "f2", "f3"])
    frame.loc[PUSHED, "f2"] += push
    return frame


def fit(frame: pd.DataFrame, detector: dict, contamination: float = 0.01, **extra) -> object:
    cfg = {"detector": detector, "threshold": {"type": "contamination", "contamination": contamination}, **extra}
    return Pipeline.from_dict(cfg).fit(frame)


@pytest.fixture(scope="module")
def iforest_model():
    return fit(gaussian(), {"type": "iforest", "n_estimators": 100, "random_state": 0}, contamination=0.02)


def test_perturbed_feature_is_named_first_and_above(iforest_model):
    table = explain(iforest_model, gaussian(), top=3)
    pushed = [i for i in PUSHED if i in table.index]
    assert len(pushed) >= 8  # the pushed rows are flagged (and only flagged rows are explained)
    for i in pushed:
        first = table.loc[i, "contributions"][0]
        assert first["feature"] == "f2" and first["direction"] == "above" and first["deviation"] > 5
        assert first["contribution"] > 0 and 0 <= first["probability_drop"] <= 1
        assert first["typical"] == pytest.approx(0, abs=0.15) and first["spread"] == pytest.approx(1, abs=0.15)
        assert table.loc[i, "explanation"].startswith("f2 ") and "σ above the typical" in table.loc[i, "explanation"]
    assert {"anomaly_score", "anomaly_probability", "is_anomaly", "severity", "f0"} <= set(table.columns)
    assert (table["is_anomaly"] == 1).all()


def test_negative_push_reads_below():
    frame = gaussian(push=-8.0, seed=1)
    model = fit(frame, {"type": "knn"})
    table = model.explain(frame, top=2, rows="all")  # kNN: the pushed rows are neighbours, not all flagged
    for i in PUSHED:
        first = table.loc[i, "contributions"][0]
        assert first["feature"] == "f2" and first["direction"] == "below" and first["deviation"] < -5
        assert "f2" in table.loc[i, "explanation"] and "σ below the typical" in table.loc[i, "explanation"]
        assert len(table.loc[i, "contributions"]) <= 2


def test_rows_all_explains_every_row_and_top_limits(iforest_model):
    frame = gaussian().iloc[:50]
    table = explain(iforest_model, frame, top=1, rows="all")
    assert len(table) == 50 and list(table.index) == list(frame.index)
    assert all(len(c) == 1 for c in table["contributions"])
    assert table["explanation"].str.len().gt(0).all()


def test_scaler_and_onehot_text_column_rare_category():
    rng = np.random.default_rng(2)
    n = 2000
    frame = pd.DataFrame({"amount": rng.normal(100, 10, n), "hour": rng.normal(14, 3, n),
                          "merchant": rng.choice(["grocery", "fuel", "online"], n, p=[0.6, 0.3, 0.1])})
    frame.loc[:2, "merchant"] = "crypto"  # 3 of 2,000 training rows
    model = fit(frame, {"type": "knn", "n_neighbors": 5},
                preprocess=[{"type": "onehot", "columns": ["merchant"]}, {"type": "standard_scaler"}])
    new = pd.DataFrame({"amount": [101.0, 100.0, 400.0], "hour": [13.0, 14.0, 14.0],
                        "merchant": ["crypto", "bitcoin", "grocery"]})
    table = explain(model, new, rows="all")
    crypto, unseen, amount = (table.loc[i, "contributions"][0] for i in range(3))
    assert crypto["feature"] == "merchant" and crypto["kind"] == "text" and crypto["share"] == pytest.approx(0.0015)
    assert table.loc[0, "explanation"].startswith("merchant 'crypto' is rare (0.15 % of training rows)")
    assert unseen["direction"] == "unseen" and "'bitcoin' was never seen in training" in table.loc[1, "explanation"]
    assert amount["feature"] == "amount" and table.loc[2, "explanation"].startswith("amount 400 is ")
    assert table.attrs["method"] == "occlusion"
    assert (table["is_anomaly"] == 1).all()


def test_ecod_tail_scores_agree_with_occlusion():
    frame = gaussian()
    frame.loc[3:, "f2"] = frame.loc[3:, "f2"].clip(-3, 3)  # a clear case: three rows far out in f2
    model = fit(frame, {"type": "ecod"})
    # ECOD's tail scores saturate: a lone extreme feature is not always flagged, so explain every row
    fast = explain(model, frame.iloc[:3], rows="all")
    slow = explain(model, frame.iloc[:3], method="occlusion", rows="all")
    assert fast.attrs["method"] == "tail_scores" and slow.attrs["method"] == "occlusion"
    for i in range(3):
        fast_first, slow_first = fast.loc[i, "contributions"][0], slow.loc[i, "contributions"][0]
        assert fast_first["contribution"] == pytest.approx(slow_first["contribution"], rel=0.2)
        assert fast.loc[i, "contributions"][0]["feature"] == slow.loc[i, "contributions"][0]["feature"] == "f2"
    # a scaler keeps the feature space: still the fast path; a detector without tails: occlusion
    scaled = fit(frame, {"type": "copod"}, preprocess=[{"type": "standard_scaler"}])
    assert explain(scaled, frame.iloc[:20], rows="all").attrs["method"] == "tail_scores"
    with pytest.raises(ConfigError, match="tail_scores path does not apply"):
        explain(fit(frame, {"type": "hbos"}), frame, method="tail_scores")


class SquaredDistance(adpipe.Detector):
    """Squared distance to the training mean, explained per feature (tests the duck-typed path)."""

    name = "squared_distance"

    def fit(self, X):
        self.mean_ = np.asarray(X, dtype=float).mean(axis=0)
        return self

    def explain(self, X):
        return (np.asarray(X, dtype=float) - self.mean_) ** 2

    def score(self, X):
        return self.explain(X).sum(axis=1)


def test_detector_explain_method_is_used():
    frame = gaussian()
    pipe = Pipeline.from_dict({"detector": {"type": "squared_distance"}, "preprocess": [{"type": "standard_scaler"}]},
                              registry=local_registry(SquaredDistance))
    pipe.fit(frame)
    table = explain(pipe, frame)  # a fitted Pipeline works too
    assert table.attrs["method"] == "detector" and set(PUSHED) <= set(table.index)
    occlusion = explain(pipe, frame, method="occlusion")
    for i in PUSHED:  # squared distance is additive: both paths give the same numbers
        fast, slow = table.loc[i, "contributions"][0], occlusion.loc[i, "contributions"][0]
        assert fast["feature"] == slow["feature"] == "f2"
        assert fast["contribution"] == pytest.approx(slow["contribution"], rel=1e-6)


def test_global_importance_ranks_the_perturbed_feature_first(iforest_model):
    table = feature_importance(iforest_model, gaussian())
    assert list(table.columns) == ["feature", "importance", "share", "mean_contribution", "rows"]
    assert table["feature"].iloc[0] == "f2" and table["importance"].is_monotonic_decreasing
    assert table["share"].sum() == pytest.approx(1.0) and table.attrs["rows_used"] == "flagged"
    reference = feature_importance(iforest_model)  # the model's training reference sample
    assert reference["feature"].iloc[0] == "f2" and len(reference) == 4


def test_numbers_for_people():
    assert [fmt_number(x) for x in (9400.0, 9412.37, 3.0, 0.02134, 12.3456, 1234567.8)] == \
        ["9,400", "9,412", "3", "0.0213", "12.3", "1,234,568"]
    assert fmt_number(-0.00196, 1.0) == "0" and fmt_number(80.3, 50) == "80" and fmt_number(None) == "missing"
    assert (fmt_sigma(12.3), fmt_sigma(-2.14), fmt_sigma(9.96)) == ("12σ", "2.1σ", "10σ")
    assert (fmt_share(0.002), fmt_share(0.35), fmt_share(0.0123)) == ("0.2 %", "35 %", "1.2 %")


def test_bad_input_errors(iforest_model):
    frame = gaussian().iloc[:20]
    with pytest.raises(SchemaMismatchError, match="f3") as exc:
        explain(iforest_model, frame.drop(columns=["f3"]))
    assert exc.value.hint
    with pytest.raises(DataError, match="empty") as exc:
        explain(iforest_model, frame.iloc[:0])
    assert exc.value.hint
    nan = frame.copy()
    nan.loc[3, "f1"] = np.nan
    with pytest.raises(DataError, match="missing values") as exc:
        explain(iforest_model, nan)
    assert exc.value.hint
    with pytest.raises(ModelError, match="not fitted") as exc:
        explain(Pipeline.from_dict({"detector": {"type": "iforest"}}), frame)
    assert exc.value.hint
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="top must be") as exc:
            explain(iforest_model, frame, top=bad)
        assert exc.value.hint
    with pytest.raises(ConfigError, match="rows must be"):
        explain(iforest_model, frame, rows="some")
    with pytest.raises(ConfigError, match="top_features"):
        Pipeline.from_dict({"detector": {"type": "iforest"}, "explain": {"top_features": 0}})


# --------------------------------------------------------------------------- pipelines and CLI
def project(tmp_path, explain_section=None):
    frame = gaussian(n=600)
    frame.insert(0, "id", np.arange(600))
    frame.to_csv(tmp_path / "data.csv", index=False)
    cfg = {"name": "demo", "source": {"type": "csv", "path": "data.csv"}, "columns": {"id": ["id"]},
           "detector": {"type": "iforest", "n_estimators": 50, "random_state": 0},
           "threshold": {"type": "contamination", "contamination": 0.02},
           "sinks": [{"type": "parquet", "path": "out/scores.parquet"}]}
    if explain_section is not None:
        cfg["explain"] = explain_section
    return write_yaml(tmp_path / "pipe.yaml", cfg)


def cli(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("NO_COLOR", "1")
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_run_adds_explanation_column_for_flagged_rows_only(tmp_path, capsys, monkeypatch):
    config = project(tmp_path, {"column": True, "top_features": 2})
    code, _, err = cli(capsys, monkeypatch, "run", f"config={config}", "-q")
    assert code == 0, err
    scores = pd.read_parquet(tmp_path / "out/scores.parquet")
    flagged = scores[scores["is_anomaly"] == 1]
    assert len(flagged) and flagged["explanation"].str.len().gt(0).all()
    assert (scores.loc[scores["is_anomaly"] == 0, "explanation"] == "").all()
    pushed = scores.set_index("id").loc[PUSHED].query("is_anomaly == 1")["explanation"]
    assert len(pushed) >= 5 and pushed.str.startswith("f2 ").all() and pushed.str.contains("above").all()
    assert pushed.str.count(";").le(1).all()  # top_features: 2


def test_explanation_column_absent_by_default_and_from_a_scoring_config(tmp_path, capsys, monkeypatch):
    config = project(tmp_path)
    code, _, err = cli(capsys, monkeypatch, "fit", f"config={config}", "-q")
    assert code == 0, err
    Pipeline.from_config(config).run(write_summary=False)
    assert "explanation" not in pd.read_parquet(tmp_path / "out/scores.parquet").columns
    code, _, err = cli(capsys, monkeypatch, "score", "model=demo", f"config={config}", "+explain.column=true", "-q")
    assert code == 0, err
    scores = pd.read_parquet(tmp_path / "out/scores.parquet")
    assert scores.loc[scores["is_anomaly"] == 1, "explanation"].str.len().gt(0).all()


def test_explain_cli_outputs(tmp_path, capsys, monkeypatch):
    config = project(tmp_path)
    assert cli(capsys, monkeypatch, "fit", f"config={config}", "-q")[0] == 0
    data = tmp_path / "data.csv"
    code, out, err = cli(capsys, monkeypatch, "explain", "model=demo", f"data={data}", "--importance",
                         "--limit", "3", "--out", str(tmp_path / "x/expl.jsonl"), "--html", str(tmp_path / "r.html"))
    assert code == 0, err
    assert "rows flagged" in out and "f2" in out and "feature importance" in out and "more (--limit" in out
    lines = [json.loads(line) for line in (tmp_path / "x/expl.jsonl").read_text().splitlines()]
    pushed = [rec for rec in lines if rec["id"] in PUSHED]
    assert len(pushed) >= 5 and all(rec["contributions"][0]["feature"] == "f2" for rec in pushed)
    page = (tmp_path / "r.html").read_text()
    assert "Feature importance" in page and "data:image/png;base64" in page and "σ above the typical" in page

    code, out, _ = cli(capsys, monkeypatch, "explain", "model=demo", f"data={data}", "--json", "--importance",
                       "--top", "1", "--out", str(tmp_path / "expl.csv"))
    doc = json.loads(out)
    assert doc["method"] == "occlusion" and doc["explained"] == len(doc["records"]) > 0
    assert doc["importance"][0]["feature"] == "f2"
    assert all(len(rec["contributions"]) == 1 for rec in doc["records"])
    csv = pd.read_csv(tmp_path / "expl.csv")
    assert len(csv) == doc["explained"] and json.loads(csv["contributions"][0])[0]["feature"]

    code, out, _ = cli(capsys, monkeypatch, "explain", "model=demo", f"data={data}", "--all-rows", "--out",
                       str(tmp_path / "all.parquet"))
    assert code == 0 and len(pd.read_parquet(tmp_path / "all.parquet")) == 600


def test_explain_cli_errors(tmp_path, capsys, monkeypatch):
    config = project(tmp_path)
    assert cli(capsys, monkeypatch, "fit", f"config={config}", "-q")[0] == 0
    data = tmp_path / "data.csv"
    pd.read_csv(data).drop(columns=["f1"]).to_csv(tmp_path / "short.csv", index=False)
    (tmp_path / "empty.csv").write_text("")
    cases = [
        (("model=demo",), 2, "No data given"),
        ((f"data={data}",), 2, "No model given"),
        (("model=demo", f"data={tmp_path / 'short.csv'}"), 3, "missing column 'f1'"),
        (("model=demo", f"data={tmp_path / 'empty.csv'}"), 3, "is empty"),
        (("model=demo", f"data={tmp_path / 'nope.csv'}"), 6, "not found"),
        (("model=nosuch", f"data={data}"), 5, "nosuch"),
        (("model=demo", f"data={data}", "--out", str(tmp_path / "x.txt")), 2, "unknown file type"),
        (("model=demo", f"data={data}", "--top", "0"), 2, "--top"),
        (("model=demo", f"data={data}", "extra=1"), 2, "Unexpected argument"),
    ]
    for args, want, text in cases:
        code, _, err = cli(capsys, monkeypatch, "explain", *args)
        assert code == want and text in err, (args, code, err)
    assert not (tmp_path / "x.txt").exists()


def test_adbench_cardio_ecod_fast_path(adbench_dir):
    data = np.load(adbench_dir / "6_cardio.npz")
    frame = pd.DataFrame(data["X"], columns=[f"x{i}" for i in range(data["X"].shape[1])])
    model = fit(frame, {"type": "ecod"}, contamination=0.1)
    table = explain(model, frame)
    assert table.attrs["method"] == "tail_scores" and len(table) > 50
    # the named feature is the one contributing most, and it is an unusual value
    firsts = [row[0] for row in table["contributions"]]
    assert all(abs(f["deviation"]) > 1 for f in firsts if f["deviation"] is not None)
    labels = data["y"][table.index]
    assert labels.mean() > 3 * data["y"].mean()  # flagged rows are mostly real anomalies
