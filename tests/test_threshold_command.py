"""``adpipe threshold`` and adpipe.core.thresholding: exact searches, bootstrap, pythresh, --write, bad input."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix, f1_score, precision_score, recall_score, roc_curve

from adpipe.core import thresholding as th
from adpipe.core.cli import main
from adpipe.core.errors import ConfigError, DataError, PluginError

# Ten scores worked by hand (flag p >= t). P = 4 anomalies, N = 6 normal rows.
P10 = np.array([0.05, 0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.90])
Y10 = np.array([0, 0, 0, 1, 0, 0, 1, 0, 1, 1])
#  t     TP FP FN  precision  F1     cost(fp=1, fn=3)  cost(fp=1, fn=2)
#  0.90   1  0  3  1.000     0.400   9                 6
#  0.80   2  0  2  1.000     0.667   6                 4
#  0.70   2  1  2  0.667     0.571   7                 5
#  0.60   3  1  1  0.750     0.750   4                 3   <- max F1; cost tie (fn=2) with 0.30
#  0.50   3  2  1  0.600     0.667   5                 4
#  0.40   3  3  1  0.500     0.600   6                 5
#  0.30   4  3  0  0.571     0.727   3  <- min (fn=3)  3
#  0.20   4  4  0  0.500     0.667   4                 4
#  0.10   4  5  0  0.444     0.615   5                 5
#  0.05   4  6  0  0.400     0.571   6                 6


def test_doctests():
    import doctest

    assert doctest.testmod(th).failed == 0


def test_cost_optimal_threshold_by_hand():
    best = th.optimal_threshold(P10, Y10, cost_fp=1, cost_fn=3)
    assert (best.objective, best.threshold, best.cost, best.value, best.flagged) == ("cost", 0.30, 9 - 6, 3.0, 7)
    assert best.recall == 1.0 and best.precision == pytest.approx(4 / 7)
    # a tie (cost 3 at 0.60 and at 0.30) goes to the higher cut-off: fewer flags
    tie = th.optimal_threshold(P10, Y10, cost_fp=1, cost_fn=2)
    assert (tie.threshold, tie.cost, tie.flagged) == (0.60, 3.0, 4)
    assert th.optimal_threshold(P10, Y10).threshold == 0.60  # max F1 = 0.75
    assert th.optimal_threshold(P10, Y10).value == pytest.approx(0.75)


def test_precision_target_is_lowest_cutoff_reaching_it():
    # precision is not monotone: 0.30 (0.571) reaches 0.55 although 0.40 (0.5) does not, so 0.55 -> 0.30.
    # 0.6: 0.50 is the lowest cut-off reaching it, but 0.60 finds the same 3 anomalies with one false alarm less
    for target, cut, recall in ((0.75, 0.60, 0.75), (0.6, 0.60, 0.75), (0.55, 0.30, 1.0), (1.0, 0.80, 0.5)):
        got = th.optimal_threshold(P10, Y10, min_precision=target)
        assert (got.objective, got.threshold, got.recall) == ("precision", cut, recall)
        assert got.precision >= target and got.value == recall
    with pytest.raises(DataError, match=r"No threshold reaches precision 0.5: the highest is 0.3333") as err:
        th.optimal_threshold([0.1, 0.2, 0.3], [1, 0, 0], min_precision=0.5)
    assert "lower --min-precision" in err.value.hint


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_objectives_equal_brute_force(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(300) < 0.15).astype(int)
    p = np.round(np.clip(rng.normal(0.45 + 0.25 * y, 0.2), 0, 1), 2)  # rounded: many ties
    best = th.optimal_threshold(p, y, objective="f1")
    scores = {t: f1_score(y, p >= t) for t in np.unique(p)}
    top = max(scores.values())
    assert best.value == pytest.approx(top)
    assert best.threshold == max(t for t, f in scores.items() if np.isclose(f, top))
    # the precision rule and the cost, by brute force too
    ok = [(recall_score(y, p >= t), t) for t in np.unique(p) if precision_score(y, p >= t) >= 0.5]
    top_recall = max(r for r, _ in ok)
    got = th.optimal_threshold(p, y, min_precision=0.5)
    assert (got.recall, got.threshold) == (top_recall, max(t for r, t in ok if r == top_recall))
    costs = {t: 3 * ((p >= t) & (y == 0)).sum() + 10 * ((p < t) & (y == 1)).sum() for t in np.unique(p)}
    got = th.optimal_threshold(p, y, cost_fp=3, cost_fn=10)
    assert got.cost == min(costs.values()) and got.threshold == max(t for t, c in costs.items() if c == got.cost)


def test_sweep_counts_match_sklearn_roc_curve():
    rng = np.random.default_rng(3)
    y = (rng.random(500) < 0.2).astype(int)
    p = np.round(rng.random(500), 2)
    curve = th.sweep(p, y)
    fpr, tpr, cuts = roc_curve(y, p, drop_intermediate=False)
    assert np.array_equal(curve.thresholds, cuts[1:])  # sklearn prepends inf
    assert np.allclose(curve.tp, tpr[1:] * y.sum()) and np.allclose(curve.fp, fpr[1:] * (1 - y).sum())


def test_impact_table_against_sklearn():
    rng = np.random.default_rng(4)
    y = (rng.random(400) < 0.1).astype(int)
    p = np.clip(rng.normal(0.8 + 0.15 * y, 0.1), 0, 0.998)
    rows = th.impact_table(p, y, [0.99, 0.9, 0.95], cost_fp=2, cost_fn=50)
    assert [r["threshold"] for r in rows] == [0.9, 0.95, 0.99]
    for row in rows:
        flags = p >= row["threshold"]
        tn, fp, fn, tp = confusion_matrix(y, flags).ravel()
        assert (row["flagged"], row["tp"], row["fp"], row["fn"]) == (flags.sum(), tp, fp, fn)
        assert row["share"] == pytest.approx(flags.mean())
        assert row["precision"] == pytest.approx(precision_score(y, flags))
        assert row["recall"] == pytest.approx(recall_score(y, flags))
        assert row["f1"] == pytest.approx(f1_score(y, flags))
        assert row["cost"] == 2 * fp + 50 * fn
    empty = th.impact_table(p, y, [0.999])[0]
    assert empty["flagged"] == 0 and np.isnan(empty["precision"]) and empty["recall"] == 0.0
    assert th.impact_table(p, thresholds=[0.9])[0].keys() == {"threshold", "flagged", "share"}


def test_bootstrap_interval_is_seeded_and_contains_the_estimate():
    rng = np.random.default_rng(5)
    y = (rng.random(600) < 0.1).astype(int)
    p = np.clip(rng.normal(0.5 + 0.3 * y, 0.15), 0, 1)
    best = th.optimal_threshold(p, y)
    calls = []
    a = th.bootstrap_interval(p, y, n_resamples=300, seed=7, progress=calls.append)
    b = th.bootstrap_interval(p, y, n_resamples=300, seed=7)
    c = th.bootstrap_interval(p, y, n_resamples=300, seed=8)
    assert a == b and a != c and len(calls) == 300
    assert a.threshold[0] <= best.threshold <= a.threshold[1]
    assert a.value[0] <= best.value <= a.value[1] and a.value_name == "F1" and a.skipped == 0
    cost = th.bootstrap_interval(p, y, cost_fp=1, cost_fn=20, n_resamples=200, seed=0)
    point = th.optimal_threshold(p, y, cost_fp=1, cost_fn=20)
    assert cost.value_name == "cost" and cost.value[0] <= point.cost <= cost.value[1]
    with pytest.raises(ConfigError, match="--confidence"):
        th.bootstrap_interval(p, y, confidence=1.5)


def test_pythresh_iqr_matches_its_formula_and_gives_a_probability(fitted, pima):
    rng = np.random.default_rng(0)
    s = rng.gamma(2.0, size=1000)
    q1, q3 = np.percentile(s, [25, 75], method="midpoint")  # pythresh's IQR: Q3 + 1.5 IQR (affine-invariant)
    found = th.data_driven(s, "iqr")
    assert found.cutoff == pytest.approx(q3 + 1.5 * (q3 - q1))
    assert found.flagged == int((s >= found.cutoff).sum())
    result = th.analyse(fitted, pima.drop(columns=["label"]), method="mad")
    assert 0.0 <= result.choice.threshold <= 1.0 and result.choice.objective == "mad" and result.labels is None
    assert result.choice.flagged == int((result.probs >= result.choice.threshold).sum())
    with pytest.raises(ConfigError, match="Unknown data-driven method 'kerch'") as err:
        th.data_driven(s, "kerch")
    assert "karch" in err.value.hint
    with pytest.raises(DataError, match="Every score is the same"):
        th.data_driven(np.ones(10), "iqr")


def test_missing_pythresh_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pythresh.thresholds.zscore", None)
    with pytest.raises(PluginError) as err:
        th.data_driven(np.arange(10.0), "zscore")
    assert "adpipe[thresholds]" in err.value.hint


def test_python_api_bad_input():
    with pytest.raises(DataError, match="NaN or infinite"):
        th.optimal_threshold([0.1, np.nan], [0, 1])
    with pytest.raises(DataError, match="no rows"):
        th.impact_table([], [])
    with pytest.raises(DataError, match="must hold 0 .* also has 2"):
        th.optimal_threshold([0.1, 0.2], [0, 2])
    with pytest.raises(DataError, match="only normal rows"):
        th.optimal_threshold([0.1, 0.2], [0, 0])
    with pytest.raises(ConfigError, match="--cost-fn must be a finite number >= 0"):
        th.optimal_threshold(P10, Y10, cost_fp=1, cost_fn=-3)
    with pytest.raises(ConfigError, match="needs a target"):
        th.optimal_threshold(P10, Y10, objective="precision")


def test_current_score_threshold_uses_the_models_own_flags(pima):
    from adpipe.core.engine import Pipeline

    model = Pipeline.from_dict({"name": "z", "columns": {"label": "label"}, "fit": {"holdout": 0},
                                "detector": {"type": "iforest", "n_estimators": 30, "random_state": 0},
                                "threshold": {"type": "zscore", "k": 1.0}}).fit(pima)
    result = th.analyse(model, pima, bootstrap=0)
    current = [r for r in result.table if "current" in r["marks"]]
    flags = model.score(pima)["is_anomaly"].to_numpy().astype(bool)
    assert result.current["on"] == "score" and len(current) == 1 and current[0]["flagged"] == flags.sum()
    assert current[0]["precision"] == pytest.approx(precision_score(pima["label"], flags))


# --------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def pima() -> pd.DataFrame:
    from conftest import ADBENCH

    path = ADBENCH / "29_Pima.npz"
    if not path.is_file():
        pytest.skip(f"shared benchmark data not found at {ADBENCH}")
    data = np.load(path)
    frame = pd.DataFrame(data["X"], columns=[f"f{i}" for i in range(data["X"].shape[1])])
    frame["label"] = data["y"].astype(int)
    return frame


@pytest.fixture(scope="module")
def fitted(pima):
    from adpipe.core.engine import Pipeline

    config = {"name": "pima", "columns": {"label": "label"},
              "detector": {"type": "iforest", "n_estimators": 50, "random_state": 0},
              "threshold": {"type": "contamination", "contamination": 0.1}}
    return Pipeline.from_dict(config).fit(pima)


@pytest.fixture
def stored(fitted, adpipe_home):
    from adpipe.core.store import ModelStore

    return ModelStore().add(fitted)  # pima@1 in this test's store


def adpipe(capsys, *args: str) -> tuple[int, str, str]:
    return cli_out(capsys, "threshold", *args)


def cli_out(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    return done.value.code, out, err


def test_table_and_f1_choice(capsys, stored, pima, tmp_path):
    data = tmp_path / "pima.csv"
    pima.to_csv(data, index=False)
    code, out, _ = adpipe(capsys, "model=pima@1", f"data={data}", "--bootstrap", "200", "--at", "0.5,0.8")
    assert code == 0, out
    assert "◀ current" in out and "◀ chosen" in out and "maximises F1" in out
    assert "95% bootstrap interval (200 resamples, seed 0)" in out
    code, out, _ = adpipe(capsys, "model=pima@1", f"data={data}", "--bootstrap", "200", "--json")
    report = json.loads(out)
    best = th.optimal_threshold(report_probs(stored, pima), pima["label"])
    assert report["choice"]["threshold"] == best.threshold and report["choice"]["objective"] == "f1"
    cuts = [r["threshold"] for r in report["table"]]
    assert set(th.DEFAULT_CUTOFFS) <= set(cuts) and best.threshold in cuts and cuts == sorted(cuts)
    assert [r["marks"] for r in report["table"] if r["threshold"] == best.threshold] == [["chosen"]]
    assert report["interval"]["threshold"][0] <= best.threshold <= report["interval"]["threshold"][1]


def report_probs(stored, frame):
    from adpipe.core.model import load_model

    return load_model(stored.ref).score(frame)["anomaly_probability"].to_numpy()


def test_write_saves_a_new_unpromoted_version_that_flags_at_the_cutoff(capsys, stored, pima, tmp_path):
    from adpipe.core.model import load_model
    from adpipe.core.store import ModelStore

    data = tmp_path / "pima.parquet"
    pima.to_parquet(data)
    ModelStore().promote("pima", 1, "production", force=True)
    html = tmp_path / "report.html"
    code, out, err = adpipe(capsys, "model=pima@production", f"data={data}", "--cost-fp", "1", "--cost-fn", "2",
                            "--bootstrap", "50", "--write", "--html", str(html))
    assert code == 0, err
    assert "wrote pima@2" in out and "adpipe models promote pima 2 --stage production" in out
    store = ModelStore()
    assert [(v.version, v.stages) for v in store.versions("pima")] == [(1, ["production"]), (2, [])]
    meta = store.get("pima", 2).metadata()
    chosen = meta["training"]["threshold"]
    assert meta["config"]["threshold"] == {"type": "probability", "cutoff": chosen["cutoff"]}
    assert (chosen["method"], chosen["cost_fp"], chosen["cost_fn"]) == ("cost", 1.0, 2.0)
    assert chosen["data"] == str(data) and chosen["interval"]["resamples"] == 50
    old, new = load_model("pima@1"), load_model("pima@2")
    before, after = old.score(pima), new.score(pima)
    assert np.array_equal(after["anomaly_probability"], before["anomaly_probability"])
    expected = before["anomaly_probability"] >= chosen["cutoff"]
    assert np.array_equal(after["is_anomaly"].to_numpy() == 1, expected.to_numpy())
    assert 0 < expected.sum() < len(pima) and after["model_version"].iloc[0] == "pima@2"
    page = html.read_text()
    assert page.count("<img") == 2 and "<table" in page and "Impact table" in page
    code, out, _ = cli_out(capsys, "models", "show", "pima@2")
    assert code == 0 and f"threshold: probability >= {chosen['cutoff']:.4g} chosen by cost on pima.parquet" in out


def test_write_for_a_file_model_needs_out_and_never_overwrites(capsys, fitted, pima, tmp_path):
    model = fitted.save(tmp_path / "m.adpipe")
    before = model.read_bytes()
    data = tmp_path / "pima.csv"
    pima.drop(columns=["label"]).to_csv(data, index=False)  # no labels: pythresh karch
    code, _, err = adpipe(capsys, f"model={model}", f"data={data}", "--write")
    assert code == 2 and "--out PATH" in err
    code, _, err = adpipe(capsys, f"model={model}", f"data={data}", "--write", "--out", str(model))
    assert code == 2 and "never overwritten" in err and model.read_bytes() == before
    out_path = tmp_path / "tuned.adpipe"
    code, out, err = adpipe(capsys, f"model={model}", f"data={data}", "--write", "--out", str(out_path), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["label"] is None and report["choice"]["objective"] == "karch" and report["interval"] is None
    assert report["written"]["path"] == str(out_path) and model.read_bytes() == before
    from adpipe.core.model import load_model

    scored = load_model(out_path).score(pima)
    cut = report["choice"]["threshold"]
    assert 0 <= cut <= 1 and scored["is_anomaly"].sum() == (scored["anomaly_probability"] >= cut).sum()
    assert scored["is_anomaly"].sum() == report["choice"]["flagged"]


def test_label_column_the_model_never_saw(capsys, pima, tmp_path):
    from adpipe.core.engine import Pipeline

    model = Pipeline.from_dict({"name": "nolabel", "detector": {"type": "iforest", "n_estimators": 30,
                                                                "random_state": 0}}).fit(pima.drop(columns="label"))
    path = model.save(tmp_path / "nolabel.adpipe")
    data = tmp_path / "d.csv"
    pima.rename(columns={"label": "truth"}).to_csv(data, index=False)
    code, out, err = adpipe(capsys, f"model={path}", f"data={data}", "label=truth", "--min-precision", "0.7",
                            "--bootstrap", "0")
    assert code == 0, err
    assert "best recall at precision ≥ 0.7" in out


@pytest.mark.parametrize("case, args, code, message", [
    ("empty", ["--bootstrap", "0"], 3, "The data is empty"),
    ("nan", ["--bootstrap", "0"], 3, "f1"),
    ("nolabelcol", ["label=truth"], 3, "no label column 'truth'"),
    ("labels", [], 3, "must hold 0 (normal) or 1 (anomaly)"),
    ("oneclass", [], 3, "holds only normal rows (0)"),
    ("features", [], 3, "missing column 'f3'"),
    ("lowlabels", ["--min-precision", "0.5", "--bootstrap", "0"], 3, "No threshold reaches precision 0.5"),
    ("ok", ["--cost-fp", "-5"], 2, "--cost-fp must be a finite number >= 0"),
    ("ok", ["--method", "otsu"], 2, "Unknown data-driven method 'otsu'"),
    ("ok", ["--method", "iqr", "--objective", "f1"], 2, "cannot be combined"),
    ("ok", ["--objective", "cost"], 2, "needs costs"),
    ("ok", ["--at", "0.9,1.5"], 2, "not a probability"),
    ("ok", ["--out", "x.adpipe"], 2, "only used with --write"),
    ("unlabelled", ["--cost-fn", "10"], 3, "needs labels"),
])
def test_bad_input_exit_codes(capsys, stored, fitted, pima, tmp_path, case, args, code, message):
    frame = pima.copy()
    if case == "empty":
        frame = frame.iloc[:0]
    elif case == "nan":
        frame.loc[3, "f1"] = np.nan
    elif case == "labels":
        frame["label"] = frame["label"].map({0: "no", 1: "yes"})
    elif case == "oneclass":
        frame["label"] = 0
    elif case == "features":
        frame = frame.drop(columns=["f3"])
    elif case == "unlabelled":
        frame = frame.drop(columns=["label"])
    elif case == "lowlabels":  # the two lowest-scoring rows are the only anomalies: precision stays low
        frame = frame.head(60)
        probs = fitted.score(frame)["anomaly_probability"].to_numpy()
        frame["label"] = 0
        frame.loc[frame.index[np.argsort(probs)[:2]], "label"] = 1
    elif case == "ok":
        frame = frame.head(60)
    data = tmp_path / "data.csv"
    frame.to_csv(data, index=False)
    got, out, err = adpipe(capsys, "model=pima@1", f"data={data}", *args)
    assert got == code, out + err
    assert message in err and "hint" in err
