"""``adpipe compare``: several detectors on one config's pipeline, with and without labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FailingScore, blob_frame, local_registry, write_yaml
from scipy import stats
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score

from adpipe.core.cli import main
from adpipe.core.compare import compare, parse_algorithms, split_params, weighted_auc_ap
from adpipe.core.engine import Pipeline
from adpipe.core.errors import ConfigError, DataError, ModelError, PluginError
from adpipe.core.evaluate import ScoreGroups


def labelled_frame(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """Blobs with 30 planted outliers, some of them mild (so detectors differ), and a 0/1 label."""
    frame = blob_frame(n=n, d=4, n_outliers=30, seed=seed, with_id=True, with_label=True)
    frame.loc[frame.index[-15:], ["f0", "f1", "f2", "f3"]] /= 3  # mild ones
    return frame


def config(tmp_path: Path, frame: pd.DataFrame, label: str | None = "label", **extra) -> Path:
    frame.to_csv(tmp_path / "data.csv", index=False)
    cfg = {"source": {"type": "csv", "path": "data.csv"},
           "columns": {"id": ["id"], **({"label": label} if label else {"exclude": ["label"]})},
           "detector": {"type": "iforest", "n_estimators": 50, "random_state": 0},
           "threshold": {"type": "contamination", "contamination": 0.05}, **extra}
    return write_yaml(tmp_path / "pipe.yaml", cfg)


def cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


def test_parse_algorithms_and_per_algorithm_params():
    assert parse_algorithms("[iforest, lof,ecod]") == ["iforest", "lof", "ecod"]
    assert parse_algorithms("iforest,lof,iforest") == ["iforest", "lof"]
    assert parse_algorithms(["knn", "ecod"]) == ["knn", "ecod"]
    params, rest = split_params(["iforest", "knn"], ["knn.n_neighbors=10", "+iforest.n_estimators=30",
                                                     "threshold.contamination=0.02", "detector=lof"])
    assert params == {"knn": {"n_neighbors": 10}, "iforest": {"n_estimators": 30}}
    assert rest == ["threshold.contamination=0.02", "detector=lof"]


def test_compare_with_labels_measures_every_detector_on_the_same_held_out_rows(tmp_path: Path):
    frame = labelled_frame()
    path = config(tmp_path, frame)
    result = compare(path, ["iforest", "ecod", "knn"], params={"knn": {"n_neighbors": 10}})
    assert result.labelled and result.features == 4  # id and label are not features
    split = result.split
    assert split["fit_rows"] + split["eval_rows"] == 600 and split["eval_rows"] == 120
    assert split["eval_anomalies"] == 6  # stratified: 5 % of the held-out rows, as in the data
    first = result.evaluations[0]
    for e in result.evaluations:
        assert e.ok and e.index.equals(first.index)  # the same held-out rows for every algorithm
        y = frame.loc[e.index, "label"].to_numpy()
        assert np.array_equal(e.labels, y)
        assert e.metrics["roc_auc"] == pytest.approx(roc_auc_score(y, e.scores))
        assert e.metrics["pr_auc"] == pytest.approx(average_precision_score(y, e.scores))
        assert e.metrics["precision"] == pytest.approx(precision_score(y, e.flags))
        assert e.metrics["recall"] == pytest.approx(recall_score(y, e.flags))
        assert e.metrics["f1"] == pytest.approx(f1_score(y, e.flags))
        assert e.fit_seconds > 0 and e.score_seconds >= 0 and e.rows_fit == 480
    # the config's own detector keeps its parameters; the others take defaults or the ones given
    params = {e.algorithm: e.params for e in result.evaluations}
    assert params["iforest"]["n_estimators"] == 50 and params["knn"]["n_neighbors"] == 10
    # unsupervised: the same scores as the config's pipeline fitted (without labels) on the other rows
    model = Pipeline.from_config(path, ["+fit.holdout=0"]).fit(frame.drop(index=first.index))
    assert np.allclose(model.score(frame.loc[first.index])["anomaly_score"], first.scores)
    # ranked by PR-AUC; bootstrap intervals hold the point estimates; a recommendation with its reason
    ranked = result.ranked()
    assert [e.metrics["pr_auc"] for e in ranked] == sorted((e.metrics["pr_auc"] for e in ranked), reverse=True)
    for e in ranked:
        lo, hi = result.noise["ci"][e.algorithm]["pr_auc"]
        assert lo <= e.metrics["pr_auc"] <= hi
    assert result.noise["best"] == ranked[0].algorithm and set(result.noise["vs_best"]) == {"ecod", "knn",
                                                                                            "iforest"} - {
        ranked[0].algorithm}
    rec = result.recommendation
    assert rec["algorithm"] in {"iforest", "ecod", "knn"} and rec["reason"].startswith(rec["algorithm"] + ":")
    assert "PR-AUC" in rec["reason"] and "480 training rows x 4 features" in rec["reason"]
    data = json.loads(json.dumps(result.to_dict()))
    assert data["ranking"] == [e.algorithm for e in ranked] and data["split"]["eval_rows"] == 120


def test_compare_without_labels_reports_agreement(tmp_path: Path):
    frame = labelled_frame()
    path = config(tmp_path, frame, label=None)
    result = compare(path, "iforest,ecod,copod", top=0.05)
    assert not result.labelled and result.noise == {}
    a = result.agreement
    assert a["rows"] == 600 and a["top_rows"] == 30
    s = {e.algorithm: e.scores for e in result.evaluations}
    assert a["spearman"]["iforest"]["ecod"] == pytest.approx(stats.spearmanr(s["iforest"], s["ecod"]).statistic,
                                                             abs=1e-4)
    assert a["spearman"]["ecod"]["ecod"] == 1.0
    top = {n: set(np.argsort(-v)[:30]) for n, v in s.items()}
    expected = len(top["ecod"] & top["copod"]) / len(top["ecod"] | top["copod"])
    assert a["jaccard_top"]["ecod"]["copod"] == pytest.approx(expected, abs=1e-4)
    flags = {e.algorithm: set(np.flatnonzero(e.flags)) for e in result.evaluations}
    expected = len(flags["iforest"] & flags["ecod"]) / len(flags["iforest"] | flags["ecod"])
    assert a["jaccard_flagged"]["iforest"]["ecod"] == pytest.approx(expected, abs=1e-4)
    assert [e.algorithm for e in result.ranked()] == sorted(s, key=lambda n: next(
        e.seconds for e in result.evaluations if e.algorithm == n))  # no labels: fastest first
    assert "without labels" in result.recommendation["reason"]


def test_weighted_auc_and_ap_equal_scikit_learn():
    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.1).astype(float)
    scores = np.round(rng.normal(size=400) + 2 * y, 1)  # rounded: many ties
    weights = rng.integers(0, 4, size=400).astype(float)
    auc, ap = weighted_auc_ap(y, ScoreGroups(scores), weights)
    assert auc == pytest.approx(roc_auc_score(y, scores, sample_weight=weights))
    assert ap == pytest.approx(average_precision_score(y, scores, sample_weight=weights))


def test_html_report_holds_the_curves_histograms_and_heatmaps(tmp_path: Path):
    path = config(tmp_path, labelled_frame())
    result = compare(path, ["iforest", "ecod"], bootstrap=50)
    html = result.report(tmp_path / "out" / "compare.html").read_text()
    for alt in ("ROC curves", "Precision-recall curves", "score histograms", "agreement heatmaps"):
        assert f'alt="{alt}" src="data:image/png;base64,' in html
    assert "Recommendation: " + result.recommendation["reason"].split(" (")[0] in html


class FailingToo(FailingScore):
    """Another detector that cannot score."""

    name = "failing_too"


def test_a_failing_algorithm_is_recorded_and_the_others_still_run(tmp_path: Path):
    path = config(tmp_path, labelled_frame())
    reg = local_registry(FailingScore, FailingToo)
    result = compare(path, ["failing_score", "ecod"], registry=reg)
    failed = next(e for e in result.evaluations if e.algorithm == "failing_score")
    assert not failed.ok and "boom: scoring failed on purpose" in failed.error
    assert result.ranked()[-1] is failed and result.recommendation["algorithm"] == "ecod"
    with pytest.raises(ModelError, match="Every algorithm failed"):
        compare(path, ["failing_score", "failing_too"], registry=reg)


def test_bad_input_gets_typed_errors(tmp_path: Path):
    frame = labelled_frame()
    path = config(tmp_path, frame)
    with pytest.raises(ConfigError, match="did you mean 'iforest'"):
        compare(path, ["iforestt", "ecod"])
    with pytest.raises(ConfigError, match="at least 2 algorithms"):
        compare(path, ["ecod"])
    with pytest.raises(PluginError, match="needs torch") as exc:
        compare(path, ["ecod", "auto_encoder"])
    assert "pip install" in exc.value.hint
    with pytest.raises(ConfigError, match="detector.n_neighbors"):
        compare(path, ["ecod", "knn"], params={"knn": {"n_neighbors": 0}})
    with pytest.raises(DataError, match="label column 'target'"):
        compare(path, ["ecod", "knn"], ["columns.label=target"])
    frame["label"] = 0
    one = config(tmp_path, frame)
    with pytest.raises(DataError, match="only the value 0") as exc:
        compare(one, ["ecod", "knn"])
    assert exc.value.hint


def test_cli_output_and_exit_codes(tmp_path: Path, capsys):
    path = str(config(tmp_path, labelled_frame()))
    code, out, err = cli(["compare", f"config={path}", "algorithms=[iforest,knn]", "knn.n_neighbors=3",
                          "--json", "--bootstrap", "20"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert set(data["ranking"]) == {"iforest", "knn"} and data["noise"]["resamples"] == 20
    assert next(r for r in data["results"] if r["algorithm"] == "knn")["params"]["n_neighbors"] == 3
    code, out, _ = cli(["compare", f"config={path}", "algorithms=iforest,ecod", "-q", "--report",
                        str(tmp_path / "r.html")], capsys)
    assert code == 0 and out.strip().startswith(("iforest:", "ecod:")) and (tmp_path / "r.html").exists()
    code, out, _ = cli(["compare", f"config={path}", "algorithms=[iforest,ecod]", "threshold.contamination=0.1"],
                       capsys)
    assert code == 0 and "ranked by PR-AUC" in out and "recommendation" in out and "agreement" in out
    code, _, err = cli(["compare", f"config={path}", "algorithms=[iforestt,ecod]"], capsys)
    assert code == 2 and "did you mean 'iforest'" in err
    code, _, err = cli(["compare", f"config={path}"], capsys)
    assert code == 2 and "algorithms=" in err
    code, _, err = cli(["compare", f"config={path}", "algorithms=[ecod,knn]", "columns.label=nope"], capsys)
    assert code == 3 and "label column 'nope'" in err
    bare = tmp_path / "bare.yaml"  # a config without a detector: the compared algorithms supply it
    write_yaml(bare, {"source": {"type": "csv", "path": "data.csv"}, "columns": {"id": ["id"], "label": "label"}})
    code, out, err = cli(["compare", f"config={bare}", "algorithms=[ecod,copod]", "-q"], capsys)
    assert code == 0 and out.startswith(("ecod:", "copod:")), err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "data.csv").write_text("id,f0,f1,label\n")
    write_yaml(empty / "pipe.yaml", {"source": {"type": "csv", "path": "data.csv"}, "detector": "iforest"})
    code, _, err = cli(["compare", f"config={empty / 'pipe.yaml'}", "algorithms=[ecod,knn]"], capsys)
    assert code == 3 and "empty" in err.lower()
    code, _, err = cli(["compare", f"config={path}", "algorithms=[ecod,auto_encoder]"], capsys)
    assert code == 4 and "torch" in err
