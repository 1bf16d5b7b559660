"""``adpipe profile``: statistics against pandas/scipy, findings, drift, suggestions, JSON, HTML and the CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import run_cli
from scipy import stats

from adpipe.core.cli import main
from adpipe.core.errors import DataError, SourceError
from adpipe.core.profile import profile, psi, read_data
from adpipe.core.registry import get_registry

N = 400


def constructed(n: int = N, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(10, 2, n)
    miss = rng.normal(0, 1, n)
    miss[rng.choice(n, int(0.3 * n), replace=False)] = np.nan
    with_inf = rng.normal(5, 1, n)
    with_inf[[3, 50]] = np.inf
    with_inf[7] = -np.inf
    near = np.zeros(n)
    near[11] = 4.0
    cat = rng.choice(["red", "green", "blue"], n, p=[0.6, 0.3, 0.1]).astype(object)
    cat[[0, 1]] = None
    return pd.DataFrame({
        "id": np.arange(1, n + 1), "const": 7, "near": near, "x": x, "x2": 3 * x + rng.normal(0, 0.05, n),
        "skewed": rng.lognormal(0, 1.5, n), "miss": miss, "cat": cat, "with_inf": with_inf,
        "flag": rng.integers(0, 2, n),
    })


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return constructed()


@pytest.fixture(scope="module")
def prof(frame):
    return profile(frame)


def test_column_statistics_match_pandas(frame, prof):
    assert prof.rows == N
    types = {c["name"]: c["type"] for c in prof.columns}
    assert types == {"id": "integer-like", "const": "integer-like", "near": "integer-like", "x": "numeric",
                     "x2": "numeric", "skewed": "numeric", "miss": "numeric", "cat": "text", "with_inf": "numeric",
                     "flag": "boolean"}
    for name in ["x", "skewed", "miss", "with_inf", "near", "flag"]:
        col, s = prof.column(name), frame[name].astype(float)
        finite = s[np.isfinite(s)]
        assert col["count"] == s.notna().sum() and col["missing"] == s.isna().sum()
        assert col["missing_share"] == pytest.approx(s.isna().mean())
        assert col["distinct"] == s.nunique()
        described = finite.describe()
        for key in ("min", "max", "mean", "std"):
            assert col[key] == pytest.approx(described[key])
        for q, label in zip((0.01, 0.25, 0.5, 0.75, 0.99), ("1%", "25%", "50%", "75%", "99%"), strict=True):
            assert col["quantiles"][label] == pytest.approx(finite.quantile(q))
        assert col["skew"] == pytest.approx(finite.skew())
        assert col["skew"] == pytest.approx(stats.skew(finite, bias=False))
        assert col["zeros_share"] == pytest.approx((s == 0).mean())
        assert col["nonfinite_share"] == pytest.approx(np.isinf(s).mean())
    assert prof.column("with_inf")["nonfinite"] == 3
    cat = prof.column("cat")
    counts = frame["cat"].value_counts()
    assert cat["missing"] == 2 and cat["distinct"] == 3
    assert [v["value"] for v in cat["top_values"]] == list(counts.index)
    assert [v["share"] for v in cat["top_values"]] == pytest.approx(list(counts / counts.sum()))


def test_flags_and_correlated_pair(frame, prof):
    flags = {c["name"]: set(c["flags"]) for c in prof.columns}
    assert "id-like" in flags["id"] and "constant" in flags["const"] and "near-constant" in flags["near"]
    assert "high-missing" in flags["miss"] and "heavy-skew" in flags["skewed"] and "non-finite" in flags["with_inf"]
    assert "needs-encoding" in flags["cat"]
    assert abs(frame["skewed"].skew()) > 2
    for clean in ("x2", "flag"):
        assert not flags[clean] - {"correlated"}
    pairs = prof.correlations["pairs"]
    assert [(p["a"], p["b"]) for p in pairs] == [("x", "x2")]  # listed once, the constant and the ID left out
    finite = frame[["x", "x2"]]
    assert pairs[0]["pearson"] == pytest.approx(finite["x"].corr(finite["x2"]))
    assert pairs[0]["spearman"] == pytest.approx(stats.spearmanr(finite["x"], finite["x2"]).statistic)
    assert "id" not in prof.correlations["columns"] and "const" not in prof.correlations["columns"]
    kinds = {(f["kind"], tuple(f["columns"])) for f in prof.findings}
    assert ("correlated", ("x", "x2")) in kinds and ("id-like", ("id",)) in kinds


def test_outlier_shares_by_hand():
    a = np.arange(1, 11) + 0.5
    a[9] = 100.5  # Q1 3.75, Q3 8.25, IQR 4.5: fences -3, 15 -> one outlier
    b = np.arange(1, 11) + 0.25
    b[0] = -50.0  # another row
    c = np.linspace(0, 1, 10)
    c[9] = 30.0  # the same row as a's outlier
    result = profile(pd.DataFrame({"a": a, "b": b, "c": c}))
    q1, q3 = np.percentile(a, [25, 75])
    assert (q1, q3) == (3.75, 8.25)
    out = result.outliers["columns"]
    assert out["a"]["low"] == pytest.approx(q1 - 1.5 * (q3 - q1)) and out["a"]["high"] == pytest.approx(15.0)
    assert [out[k]["count"] for k in "abc"] == [1, 1, 1]
    assert out["a"]["share"] == pytest.approx(0.1)
    assert result.outliers["rows"] == 2 and result.outliers["rows_share"] == pytest.approx(0.2)


def drift_frames(seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n = 2000
    ref = pd.DataFrame({"shifted": rng.normal(0, 1, n), "same": rng.normal(0, 1, n),
                        "kind": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]),
                        "kind_same": rng.choice(["u", "v"], n), "old_only": rng.normal(size=n)})
    data = pd.DataFrame({"shifted": rng.normal(0.8, 1, n), "same": rng.normal(0, 1, n),
                         "kind": rng.choice(["a", "b", "c"], n, p=[0.2, 0.3, 0.5]),
                         "kind_same": rng.choice(["u", "v"], n), "new_only": rng.normal(size=n)})
    return data, ref


def test_drift_detected_on_shifted_columns_only():
    data, ref = drift_frames()
    result = profile(data, reference=ref)
    rows = {r["column"]: r for r in result.drift["columns"]}
    assert result.drift["drifted"] == ["shifted", "kind"]
    assert result.drift["only_in_data"] == ["new_only"] and result.drift["only_in_reference"] == ["old_only"]
    for name in ("shifted", "same"):
        ks = stats.ks_2samp(data[name], ref[name])
        assert rows[name]["test"] == "ks"
        assert rows[name]["statistic"] == pytest.approx(ks.statistic)
        assert rows[name]["p_value"] == pytest.approx(ks.pvalue)
    # PSI by hand: 10 bins between the reference's deciles, right-closed, empty bins as 1e-4
    edges = np.quantile(ref["shifted"], np.linspace(0.1, 0.9, 9))
    bins = np.concatenate([[-np.inf], edges, [np.inf]])
    actual = np.histogram(data["shifted"], bins)[0] / len(data)
    expected = np.histogram(ref["shifted"], bins)[0] / len(ref)
    by_hand = float(np.sum((actual - expected) * np.log(actual / expected)))
    assert rows["shifted"]["psi"] == pytest.approx(by_hand, rel=1e-3) and by_hand > 0.25
    assert rows["same"]["psi"] < 0.1 and rows["same"]["p_value"] > 0.01
    table = pd.crosstab(pd.concat([data["kind"], ref["kind"]]), np.r_[np.zeros(len(data)), np.ones(len(ref))])
    chi2 = stats.chi2_contingency(table.to_numpy())
    assert rows["kind"]["test"] == "chi2" and rows["kind"]["statistic"] == pytest.approx(chi2.statistic)
    assert rows["kind"]["p_value"] == pytest.approx(chi2.pvalue)
    assert not rows["kind_same"]["drifted"] and not rows["same"]["drifted"]
    assert "drifted" in result.column("shifted")["flags"]
    assert psi(np.arange(100.0), np.arange(100.0)) == pytest.approx(0.0)
    drift_items = [s for s in result.suggestions if s["kind"] == "drift"]
    assert drift_items[0]["config"]["drift"]["features"] == ["shifted", "kind"]


def test_suggestions_are_config_snippets_of_existing_plugins(prof):
    by_kind = {s["kind"]: s for s in prof.suggestions}
    assert set(by_kind["exclude"]["config"]["columns"]["exclude"]) == {"id", "const"}
    assert "columns:\n  exclude: [id, const]" in by_kind["exclude"]["yaml"]
    assert by_kind["impute"]["config"] == {"preprocess": [{"type": "impute", "strategy": "median",
                                                           "columns": ["miss", "with_inf"]}]}
    assert "- {type: onehot, columns: [cat]}" in by_kind["encode"]["yaml"]
    assert by_kind["drop"]["config"] == {"preprocess": [{"type": "drop", "columns": ["x2"]}]}
    assert by_kind["scale"]["config"]["preprocess"][0]["type"] == "robust_scaler"  # heavy skew
    installed = set(get_registry().names("preprocessor"))
    for item in prof.suggestions:
        assert yaml.safe_load(item["yaml"]) == item["config"]
        for stage in item["config"].get("preprocess", []):
            assert stage["type"] in installed
    merged = yaml.safe_load(prof.to_dict()["config_yaml"])
    assert [s["type"] for s in merged["preprocess"]] == ["drop", "impute", "onehot", "robust_scaler"]


def test_standard_scaler_for_very_different_scales():
    rng = np.random.default_rng(3)
    result = profile(pd.DataFrame({"small": rng.normal(0, 0.01, 300), "large": rng.normal(0, 50, 300)}))
    assert [s["kind"] for s in result.suggestions] == ["scale"]
    assert result.suggestions[0]["config"] == {"preprocess": [{"type": "standard_scaler",
                                                               "columns": ["small", "large"]}]}


def test_sample_for_heavy_parts_counts_over_all_rows(frame):
    result = profile(frame, sample_rows=150, seed=5)
    assert result.sample == {"rows": 150, "of": N, "seed": 5, "sampled": True,
                             "used_for": ["correlations", "plots", "drift tests"]}
    assert result.column("miss")["missing"] == frame["miss"].isna().sum()
    assert result.column("x")["mean"] == pytest.approx(frame["x"].mean())
    assert len(result.data_sample) == 150


def test_columns_option_and_unknown_column(frame):
    result = profile(frame, columns=["x", "cat"])
    assert [c["name"] for c in result.columns] == ["x", "cat"]
    with pytest.raises(DataError, match="'nope'") as info:
        profile(frame, columns=["x", "nope"])
    assert "available: id, const" in info.value.hint


def test_reading_csv_parquet_jsonl_alike(tmp_path, frame):
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet")
    frame.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    means = {}
    for name in ("d.csv", "d.parquet", "d.jsonl"):
        result = profile(tmp_path / name)
        assert result.rows == N and result.source.endswith(name)
        means[name] = result.column("x")["mean"]
    assert means["d.parquet"] == pytest.approx(means["d.csv"]) == pytest.approx(means["d.jsonl"])
    with pytest.raises(SourceError, match="Input file not found"):
        read_data(tmp_path / "d.xlsx")
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(SourceError, match="unsupported file type") as info:
        read_data(tmp_path / "d.xlsx")
    assert ".csv" in info.value.hint
    (tmp_path / "bad.parquet").write_text("a,b\n1,2\n")
    with pytest.raises(SourceError, match="Parquet"):
        read_data(tmp_path / "bad.parquet")


def cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["profile", *args])
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


@pytest.fixture
def files(tmp_path, frame):
    data, ref = drift_frames()
    data.to_csv(tmp_path / "new.csv", index=False)
    ref.to_csv(tmp_path / "ref.csv", index=False)
    frame.assign(empty=np.nan).to_csv(tmp_path / "frame.csv", index=False)
    return tmp_path


def test_cli_json_is_complete_and_has_no_nan(files, capsys):
    code, out, _ = cli(capsys, f"data={files / 'frame.csv'}", "--json")
    assert code == 0

    def no_nan(value):
        raise AssertionError(f"{value} in the JSON")

    doc = json.loads(out, parse_constant=no_nan)
    assert doc["rows"] == N and len(doc["columns"]) == 11
    empty = next(c for c in doc["columns"] if c["name"] == "empty")
    assert empty["mean"] is None and empty["flags"][:1] == ["empty"]
    assert {"findings", "suggestions", "correlations", "outliers", "cutoffs", "config_yaml"} <= set(doc)
    assert doc["drift"] is None


def test_cli_terminal_summary_and_html(files, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    html_path = files / "out" / "profile.html"
    code, out, _ = cli(capsys, f"data={files / 'new.csv'}", f"reference={files / 'ref.csv'}", "--html",
                       str(html_path), "--sample-rows", "1000")
    assert code == 0
    assert "2,000 rows, 5 columns" in out and "seeded sample of 1,000 rows" in out
    drift_rows = {line.split()[1]: line.split() for line in out.splitlines() if line.startswith("│ ")}
    assert drift_rows["shifted"][3] == "ks" and drift_rows["shifted"][-2] == "yes"
    assert drift_rows["same"][3] == "ks" and drift_rows["same"][-2] == "no"
    assert "only in the data: new_only" in out and "suggested config" in out and "features: [shifted, kind]" in out
    text = html_path.read_text()
    for section in ("Overview", "Findings", "Suggestions", "Missing values", "Distributions", "Correlations",
                    "Outliers (IQR rule)", "Drift against the reference"):
        assert f"<h2>{section}</h2>" in text
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', text)
    assert images == ["missing values per column", "histogram of shifted", "histogram of same",
                      "histogram of new_only", "correlation heatmap"]
    assert "seeded sample of 1,000 of the 2,000 rows" in text and "<pre>" in text


@pytest.mark.parametrize("case, code, message", [
    ("missing", 6, "Input file not found"),
    ("empty", 3, "is empty"),
    ("header_only", 3, "is empty"),
    ("no_shared", 3, "no column in common"),
    ("bad_columns", 3, "no column(s) 'nope'"),
    ("no_data", 2, "No data given"),
    ("unsupported", 6, "unsupported file type"),
    ("bad_html", 7, "Cannot write the report"),
])
def test_cli_bad_input(files, capsys, case, code, message):
    (files / "empty.csv").write_text("")
    (files / "header.csv").write_text("a,b\n")
    (files / "empty.xlsx").write_bytes(b"PK\x03\x04")
    pd.DataFrame({"other": [1, 2, 3]}).to_csv(files / "other.csv", index=False)
    args = {
        "missing": [f"data={files / 'nope.csv'}"],
        "empty": [f"data={files / 'empty.csv'}"],
        "header_only": [f"data={files / 'header.csv'}"],
        "no_shared": [f"data={files / 'new.csv'}", f"reference={files / 'other.csv'}"],
        "bad_columns": [f"data={files / 'new.csv'}", "--columns", "shifted,nope"],
        "no_data": [],
        "unsupported": [f"data={files / 'empty.xlsx'}"],
        "bad_html": [f"data={files / 'new.csv'}", "--html", str(files / "new.csv" / "report.html")],
    }[case]
    got, out, err = cli(capsys, *args)
    assert got == code and message in err and "hint" in err and out == ""


def test_console_script_runs(files):
    result = run_cli("profile", "data=new.csv", "reference=ref.csv", "--json", cwd=files)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["drift"]["drifted"] == ["shifted", "kind"]
