"""``adpipe benchmark``: datasets, the ADBench protocol, seeds, statistics, outputs and CLI errors."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ADBENCH, MeanDistance, local_registry
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

import adpipe
from adpipe.core import benchmark as bm
from adpipe.core import benchmark_stats as bstats
from adpipe.core.cli import main
from adpipe.core.errors import ConfigError, DataError

SMALL = ("14_glass", "21_Lymphography", "45_wine")

# Demšar (JMLR 7, 2006), Table 6: AUC of C4.5 with and without curtailing (m) and confidence (cf) tuning
DEMSAR = pd.DataFrame(
    [[0.763, 0.768, 0.771, 0.798], [0.599, 0.591, 0.590, 0.569], [0.954, 0.971, 0.968, 0.967],
     [0.628, 0.661, 0.654, 0.657], [0.882, 0.888, 0.886, 0.898], [0.936, 0.931, 0.916, 0.931],
     [0.661, 0.668, 0.609, 0.685], [0.583, 0.583, 0.563, 0.625], [0.775, 0.838, 0.866, 0.875],
     [1.000, 1.000, 1.000, 1.000], [0.940, 0.962, 0.965, 0.962], [0.619, 0.666, 0.614, 0.669],
     [0.972, 0.981, 0.975, 0.975], [0.957, 0.978, 0.946, 0.970]],
    columns=["C4.5", "C4.5+m", "C4.5+cf", "C4.5+m+cf"])


@pytest.fixture
def datasets(tmp_path: Path) -> Path:
    if not ADBENCH.is_dir():
        pytest.skip(f"shared benchmark data not found at {ADBENCH}")
    folder = tmp_path / "datasets"
    folder.mkdir()
    for name in SMALL:
        shutil.copy(ADBENCH / f"{name}.npz", folder)
    return folder


def add_csv(folder: Path, name: str = "blobs.csv", label: str = "y", n: int = 300, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(size=(n - 15, 4)), rng.normal(4, 1, size=(15, 4))])
    frame = pd.DataFrame(X, columns=list("abcd"))
    frame[label] = np.r_[np.zeros(n - 15, int), np.ones(15, int)]
    frame.to_csv(folder / name, index=False)
    return folder / name


def cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


# --------------------------------------------------------------------------- statistics, known answers
def test_average_ranks_and_friedman_by_hand():
    r = bstats.ranks(DEMSAR.to_numpy())
    assert r[9].tolist() == [2.5, 2.5, 2.5, 2.5]  # mushroom: a four-way tie shares the average rank
    assert r[0].tolist() == [4, 3, 2, 1]
    out = bstats.statistics(DEMSAR)
    n, k = DEMSAR.shape
    # rank sums 44, 28, 41, 27: C4.5 3.143 and C4.5+m 2.000 as in Demšar's Table 6 (our transcription of the
    # cf / m+cf columns gives 41 and 27 where the paper's ranks imply 40.5 and 27.5)
    assert [out["average_ranks"][c] for c in DEMSAR] == pytest.approx([44 / 14, 28 / 14, 41 / 14, 27 / 14])
    assert round(out["average_ranks"]["C4.5"], 3) == 3.143 and out["average_ranks"]["C4.5+m"] == 2.0
    avg = np.array([44, 28, 41, 27]) / 14
    chi2_untied = 12 * n / (k * (k + 1)) * (np.sum(avg**2) - k * (k + 1) ** 2 / 4)
    # tie correction: a 4-way tie (mushroom) and four 2-way ties: sum(t^3 - t) = 60 + 4 * 6 = 84
    chi2 = chi2_untied / (1 - 84 / (n * (k**3 - k)))
    assert out["friedman"]["statistic"] == pytest.approx(chi2)
    assert out["friedman"]["p_value"] == pytest.approx(stats.chi2.sf(chi2, k - 1))
    assert out["friedman"]["iman_davenport_f"] == pytest.approx((n - 1) * chi2 / (n * (k - 1) - chi2))
    assert out["friedman"]["iman_davenport_p"] == pytest.approx(stats.f.sf(out["friedman"]["iman_davenport_f"],
                                                                            k - 1, (k - 1) * (n - 1)))


def test_wilcoxon_reproduces_demsar():
    # Demšar's Table 2: C4.5 vs C4.5+m, zero differences split: T = min(R+, R-) = 12, z = -2.54, p < 0.05
    pair = next(p for p in bstats.statistics(DEMSAR)["wilcoxon_holm"] if (p["a"], p["b"]) == ("C4.5", "C4.5+m"))
    assert pair["statistic"] == 12
    z = (12 - 14 * 15 / 4) / np.sqrt(14 * 15 * 29 / 24)
    assert pair["p_value"] == pytest.approx(2 * stats.norm.sf(abs(z)), abs=2e-4)  # scipy also corrects for ties


def test_nemenyi_critical_difference_matches_demsar():
    # Demšar's Table 5 (two-tailed Nemenyi, alpha 0.05 and 0.10) for k = 2..10
    q05 = [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164]
    q10 = [1.645, 2.052, 2.291, 2.459, 2.589, 2.693, 2.780, 2.855, 2.920]
    for k, (a, b) in enumerate(zip(q05, q10, strict=True), start=2):
        assert bstats.nemenyi_cd(k, 10, 0.05)[0] == pytest.approx(a, abs=0.0015)
        assert bstats.nemenyi_cd(k, 10, 0.10)[0] == pytest.approx(b, abs=0.0015)
    q, cd = bstats.nemenyi_cd(4, 14)
    assert round(cd, 2) == 1.25  # Demšar: CD = 2.569 sqrt(4 * 5 / (6 * 14)) = 1.25
    assert cd == pytest.approx(q * np.sqrt(4 * 5 / (6 * 14)))
    out = bstats.statistics(DEMSAR)
    assert out["nemenyi"]["cd"] == pytest.approx(cd)
    # C4.5 (3.143) differs from C4.5+m+cf (1.964) by 1.18 < 1.25: one group holds all four, as in the paper
    assert out["nemenyi"]["groups"] == [["C4.5+m+cf", "C4.5+m", "C4.5+cf", "C4.5"]]


def test_holm_adjustment_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone: 0.04 becomes 0.06
    assert bstats.holm(p).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert bstats.holm([0.5, 0.6]).tolist() == [1.0, 1.0]


def test_wilcoxon_pairs_use_scipy_and_holm():
    out = bstats.statistics(DEMSAR)
    pairs = out["wilcoxon_holm"]
    assert len(pairs) == 6
    raw = []
    for pair in pairs:
        ref = stats.wilcoxon(DEMSAR[pair["a"]], DEMSAR[pair["b"]], zero_method="zsplit")
        assert pair["p_value"] == pytest.approx(ref.pvalue)
        assert pair["statistic"] == pytest.approx(ref.statistic)
        raw.append(ref.pvalue)
    assert [p["p_holm"] for p in pairs] == pytest.approx(bstats.holm(raw).tolist())
    first = next(p for p in pairs if (p["a"], p["b"]) == ("C4.5", "C4.5+m"))
    assert first["p_holm"] == pytest.approx(min(1, 6 * first["p_value"]))  # the smallest p is multiplied by 6


def test_cd_groups_and_ties():
    assert bstats.cd_groups({"a": 1.0, "b": 1.5, "c": 3.0, "d": 3.2}, cd=1.0) == [["a", "b"], ["c", "d"]]
    assert bstats.cd_groups({"a": 1.0, "b": 2.5, "c": 4.0}, cd=1.0) == []
    assert bstats.ranks(np.array([[0.9, 0.8, 0.9]])).tolist() == [[1.5, 3.0, 1.5]]


def test_statistics_need_two_algorithms_and_two_datasets():
    with pytest.raises(DataError, match="at least 2 algorithms and 2 datasets") as exc:
        bstats.statistics(DEMSAR.iloc[:1])
    assert exc.value.hint
    with pytest.raises(DataError):
        bstats.statistics(DEMSAR[["C4.5"]])
    two = bstats.statistics(DEMSAR[["C4.5", "C4.5+m"]])  # two algorithms: no Friedman, Wilcoxon still runs
    assert "note" in two["friedman"] and len(two["wilcoxon_holm"]) == 1


# --------------------------------------------------------------------------- runs
def test_benchmark_protocol_seeds_subsample_and_outputs(datasets: Path, tmp_path: Path):
    add_csv(datasets, "blobs.csv")
    out = tmp_path / "out"
    result = bm.benchmark(datasets, "iforest,ecod,knn", seeds=2, max_rows=250, out=out, command="adpipe benchmark x")
    assert len(result.results) == 4 * 3 * 2 and all(r["ok"] for r in result.results)
    # metrics equal scikit-learn's on the scores adpipe gives the same rows (fit on all rows, score them)
    glass = np.load(datasets / "14_glass.npz")
    scores = adpipe.detect(glass["X"], algorithm="ecod").scores
    cell = next(r for r in result.results if (r["dataset"], r["algorithm"]) == ("14_glass", "ecod"))
    assert cell["roc_auc"] == pytest.approx(roc_auc_score(glass["y"], scores), abs=1e-6)
    assert cell["pr_auc"] == pytest.approx(average_precision_score(glass["y"], scores), abs=1e-6)
    # seeds: iforest's random_state; the 300-row CSV is cut to 250 stratified rows, the same for every algorithm
    forest = [r for r in result.results if r["algorithm"] == "iforest"]
    assert all(r["random_state"] == r["seed"] for r in forest)
    assert all(r["random_state"] is None for r in result.results if r["algorithm"] == "ecod")
    blobs = [r for r in result.results if r["dataset"] == "blobs"]
    assert all(r["rows"] == 250 and r["rows_total"] == 300 for r in blobs)
    by_seed = {s: {r["sample"]["rows_sha256"] for r in blobs if r["seed"] == s} for s in (0, 1)}
    assert len(by_seed[0]) == 1 and len(by_seed[1]) == 1 and by_seed[0] != by_seed[1]
    rows = bm.sample_rows(np.r_[np.zeros(285), np.ones(15)], 200, seed=0)
    assert len(rows) == 200 and (rows >= 285).sum() == 10  # stratified: 5 % anomalies kept
    assert all(r["sample"] is None for r in result.results if r["dataset"] == "14_glass")
    # per (dataset, algorithm): mean and sample std over seeds
    cell = next(c for c in result.summary["per_dataset"] if (c["dataset"], c["algorithm"]) == ("blobs", "iforest"))
    values = [r["roc_auc"] for r in blobs if r["algorithm"] == "iforest"]
    assert cell["roc_auc"] == pytest.approx(np.mean(values)) and cell["roc_auc_std"] == pytest.approx(
        np.std(values, ddof=1))
    # average ranks: scipy's rankdata per dataset on the mean ROC-AUC table
    table = result.table("roc_auc")
    expected = np.mean([stats.rankdata(-row) for row in table.to_numpy()], axis=0)
    ranks = {r["algorithm"]: r["average_rank"] for r in result.summary["per_algorithm"]}
    assert [ranks[a] for a in table.columns] == pytest.approx(expected.tolist())
    assert result.tests["friedman"]["statistic"] == pytest.approx(
        stats.friedmanchisquare(*table.to_numpy().T).statistic)
    # outputs: everything needed to reproduce the run
    data = json.loads((out / "results.json").read_text())
    assert data["command"] == "adpipe benchmark x"
    assert {"adpipe", "numpy", "scipy", "scikit-learn", "pyod"} <= set(data["versions"])
    assert data["platform"]["python"] and data["settings"]["seeds"] == [0, 1]
    assert {d["name"]: d["sha256"] for d in data["datasets"]}["45_wine"] == hashlib.sha256(
        (datasets / "45_wine.npz").read_bytes()).hexdigest()
    assert len(data["results"]) == 24 and len((out / "cells.jsonl").read_text().splitlines()) == 24
    md = (out / "results.md").read_text()
    assert "| algorithm | mean ROC-AUC | mean PR-AUC |" in md and "Friedman test over 4 datasets" in md
    html = (out / "report.html").read_text()
    assert 'alt="critical difference diagram" src="data:image/png;base64,' in html


def test_rerun_with_the_same_seeds_gives_identical_numbers_and_resume_skips(datasets: Path, tmp_path: Path):
    first = bm.benchmark(datasets, ["iforest", "copod"], seeds=2, max_rows=120, out=tmp_path / "a")
    second = bm.benchmark(datasets, ["iforest", "copod"], seeds=2, max_rows=120, out=tmp_path / "b", jobs=2)
    key = ("dataset", "algorithm", "seed", "roc_auc", "pr_auc", "rows", "sample")
    assert [[r[k] for k in key] for r in first.results] == [[r[k] for k in key] for r in second.results]
    assert len({r["roc_auc"] for r in first.results if r["algorithm"] == "iforest"}) > 3  # seeds do matter
    resumed = bm.benchmark(datasets, ["iforest", "copod"], seeds=2, max_rows=120, out=tmp_path / "a", resume=True)
    assert [r["fit_seconds"] for r in resumed.results] == [r["fit_seconds"] for r in first.results]  # not re-run


class Picky(MeanDistance):
    """Fails on data with more than 10 features (a detector that breaks on one dataset)."""

    name = "picky"

    def fit(self, X):
        if X.shape[1] > 10:
            raise ValueError("too many features for picky")
        return super().fit(X)


class Slow(MeanDistance):
    """Sleeps 30 s in fit (for the per-cell time limit)."""

    name = "slow"

    def fit(self, X):
        time.sleep(30)
        return super().fit(X)


def test_a_failing_cell_is_recorded_and_the_run_goes_on(datasets: Path):
    reg = local_registry(Picky)
    result = bm.benchmark(datasets, ["picky", "ecod"], seeds=1, registry=reg)
    failed = [r for r in result.results if not r["ok"]]
    assert [(r["dataset"], r["algorithm"]) for r in failed] == [("21_Lymphography", "picky"),
                                                               ("45_wine", "picky")]
    assert "too many features for picky" in failed[0]["error"]
    assert result.summary["datasets_excluded"] == ["21_Lymphography", "45_wine"]
    assert "skipped" in result.tests  # one dataset left: too few for the tests, said so, nothing raised
    assert all(r["ok"] for r in result.results if r["algorithm"] == "ecod")


def test_cell_time_limit(datasets: Path):
    reg = local_registry(Slow)
    for f in list(datasets.iterdir())[1:]:
        f.unlink()
    add_csv(datasets)
    result = bm.benchmark(datasets, ["slow", "ecod"], seeds=1, timeout=1.5, registry=reg)
    slow = [r for r in result.results if r["algorithm"] == "slow"]
    assert all(not r["ok"] and r["error"].startswith("timeout") for r in slow)
    assert all(r["ok"] for r in result.results if r["algorithm"] == "ecod")


# --------------------------------------------------------------------------- bad input
def test_bad_input_gets_typed_errors(tmp_path: Path, datasets: Path):
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "notes.txt").write_text("no data")
    with pytest.raises(DataError, match="no .npz or .csv") as exc:
        bm.benchmark(empty, "iforest,ecod")
    assert exc.value.hint
    with pytest.raises(ConfigError, match="did you mean 'iforest'"):
        bm.benchmark(datasets, "iforestt,ecod")
    csv = add_csv(tmp_path, "no_label.csv", label="target")
    with pytest.raises(DataError, match="no label column 'y'") as exc:
        bm.load_dataset(csv)
    assert "--label-column" in exc.value.hint
    assert bm.load_dataset(csv, "target").X.shape == (300, 4)
    one = tmp_path / "one_class.csv"
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "y": [0, 0, 0]}).to_csv(one, index=False)
    with pytest.raises(DataError, match="both classes"):
        bm.load_dataset(one)
    blank = tmp_path / "blank.csv"
    blank.write_text("a,b,y\n")
    with pytest.raises(DataError, match="empty"):
        bm.load_dataset(blank)


def test_cli_exit_codes_and_output(tmp_path: Path, datasets: Path, capsys):
    code, _, err = cli(["benchmark", "--datasets", str(datasets), "--algorithms", "iforestt,ecod"], capsys)
    assert code == 2 and "did you mean 'iforest'" in err
    code, _, err = cli(["benchmark", "--datasets", str(datasets), "--algorithms", "ecod"], capsys)
    assert code == 2 and "at least 2" in err
    code, _, err = cli(["benchmark", "--datasets", str(datasets), "--algorithms", "ecod,auto_encoder"], capsys)
    assert code == 4 and "torch" in err  # a detector whose optional dependency is missing
    folder = tmp_path / "csvs"
    folder.mkdir()
    add_csv(folder, "a.csv", label="target")
    add_csv(folder, "b.csv", label="target")
    code, _, err = cli(["benchmark", "--datasets", str(folder), "--algorithms", "ecod,hbos"], capsys)
    assert code == 3 and "no label column 'y'" in err and "--label-column" in err
    code, out, _ = cli(["benchmark", "--datasets", str(folder), "--algorithms", "ecod,hbos", "--label-column",
                        "target", "--seeds", "1", "--out", str(tmp_path / "o"), "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert [r["algorithm"] for r in data["summary"]] and data["tests"]["datasets"] == 2
    assert json.loads((tmp_path / "o" / "results.json").read_text())["command"].startswith("adpipe benchmark")
