"""Data profile: per-column statistics, findings, drift against a reference, preprocessing suggestions.

    from adpipe.core.profile import profile
    p = profile("data/transactions.csv", reference="data/last_month.csv")
    p.to_dict()                      # everything, JSON-ready (NaN as None)
    p.write_html("profile.html")     # tables and plots in one self-contained page

Counts, missing values, statistics and outliers are over all rows; correlations, plots and drift
tests use a seeded sample of ``sample_rows`` rows when the data is larger.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from adpipe.core.errors import DataError, SinkError, SourceError
from adpipe.core.jsonable import jsonable

# cut-offs of the findings (docs/profile.md explains each)
NEAR_CONSTANT = 0.995  # top value share of the present values
HIGH_MISSING = 0.20  # missing share of all rows
HEAVY_SKEW = 2.0  # |skewness| above this
CORRELATED = 0.95  # |Pearson| or |Spearman| at or above this
DRIFT_P = 0.01  # drifted: p-value below this ...
DRIFT_PSI = 0.1  # ... and PSI above this
MANY_OUTLIERS = 0.05  # IQR-rule outlier share that calls for a robust scaler
SCALE_RATIO = 10.0  # largest / smallest standard deviation that calls for a scaler
ONEHOT_MAX = 20  # text columns with more categories get onehot's max_categories
HIGH_CARDINALITY = 100  # text columns with more categories are left out rather than encoded
QUANTILES = (0.01, 0.25, 0.5, 0.75, 0.99)
TOP_VALUES = 5
PSI_BINS = 10
PSI_EPSILON = 1e-4
MAX_CATEGORIES = 50  # categories compared by the text drift tests (the rest pooled as "(other)")
SAMPLE_ROWS = 100_000
MAX_HISTOGRAMS = 60

NUMERIC = ("numeric", "integer-like", "boolean")
EXCLUDE_FLAGS = ("empty", "constant", "id-like", "high-cardinality")
FILE_TYPES = {".parquet": "parquet", ".pq": "parquet", ".parq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl",
              ".csv": "csv", ".tsv": "csv", ".txt": "csv"}
COMPRESSED = {".gz", ".bz2", ".zip", ".xz", ".zst"}


# --------------------------------------------------------------------------- reading
def read_data(path: str | Path) -> pd.DataFrame:
    """Read a CSV, TSV, Parquet (file or folder) or JSON Lines file with adpipe's own sources."""
    from adpipe.core.registry import get_registry

    path = Path(path)
    if not path.exists():
        raise SourceError(f"Input file not found: '{path}' (resolved to '{path.resolve()}').",
                          hint="check the path; relative paths resolve against the current directory")
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if suffixes and suffixes[-1] in COMPRESSED:
        suffixes = suffixes[:-1]
    kind = "parquet" if path.is_dir() else FILE_TYPES.get(suffixes[-1] if suffixes else "")
    if kind is None:
        raise SourceError(f"Cannot profile '{path}': unsupported file type '{''.join(path.suffixes) or '(none)'}'.",
                          hint="give a .csv/.tsv, .parquet (or a folder of them) or .jsonl file (optionally .gz)")
    params: dict[str, Any] = {"path": path}
    if suffixes and suffixes[-1] == ".tsv":
        params["sep"] = "\t"
    source = get_registry().get("source", kind)(params)
    try:
        frames = [batch.data for batch in source.batches(100_000)]
    finally:
        source.close()
    if not frames:
        raise DataError(f"Input '{path}' is empty: there are no records to profile.",
                        hint="give a file with a header row and data rows")
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)


def _frame(data: Any, what: str) -> tuple[pd.DataFrame, str | None]:
    from adpipe.core.frames import to_frame

    if isinstance(data, (str, Path)):
        frame, name = read_data(data), str(data)
    else:
        frame, name = to_frame(data), None
    if frame.shape[1] == 0 or len(frame) == 0:
        raise DataError(f"The {what} {name or 'frame'} has no {'columns' if frame.shape[1] == 0 else 'rows'}.",
                        hint="give a table with a header row and at least one data row")
    names = [str(c) for c in frame.columns]
    twice = sorted({c for c in names if names.count(c) > 1})
    if twice:
        raise DataError(f"The {what} has more than one column named {', '.join(map(repr, twice))}.",
                        hint="give every column its own name")
    return frame.set_axis(names, axis=1), name


# --------------------------------------------------------------------------- column types
def floats(series: pd.Series) -> pd.Series:
    """A numeric or boolean column as float64 (missing values as NaN)."""
    return pd.Series(series.to_numpy(dtype=float, na_value=np.nan), index=series.index, name=series.name)


def _dates(series: pd.Series) -> pd.Series:
    if ptypes.is_datetime64_any_dtype(series):
        return series
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pd.to_datetime(series, errors="coerce", format="ISO8601")


def column_type(series: pd.Series) -> str:
    """numeric, integer-like, boolean, text or datetime."""
    if ptypes.is_bool_dtype(series):
        return "boolean"
    if ptypes.is_datetime64_any_dtype(series):
        return "datetime"
    present = series.dropna()
    if ptypes.is_numeric_dtype(series):
        x = floats(present)
        x = x[np.isfinite(x)]
        if len(x) and x.nunique() == 2 and x.isin([0, 1]).all():
            return "boolean"
        if ptypes.is_integer_dtype(series) or (len(x) and (x == np.round(x)).all()):
            return "integer-like"
        return "numeric"
    if len(present) and present.map(lambda v: isinstance(v, (bool, np.bool_))).all():
        return "boolean"
    head = present.head(1000)
    if len(head) and head.map(lambda v: isinstance(v, str)).all() and _dates(head).notna().mean() >= 0.99:
        return "datetime"
    return "text"


# --------------------------------------------------------------------------- statistics
def _column_stats(series: pd.Series, rows: int) -> dict[str, Any]:
    kind = column_type(series)
    missing = int(series.isna().sum())
    present = series.dropna()
    try:
        counts = present.value_counts()
    except TypeError:  # unhashable values (lists, dicts from JSON): count their text
        present = present.astype(str)
        counts = present.value_counts()
    stats: dict[str, Any] = {
        "name": str(series.name), "type": kind, "count": len(present), "missing": missing,
        "missing_share": missing / rows, "distinct": int(len(counts)),
        "top_share": float(counts.iloc[0] / len(present)) if len(present) else math.nan,
    }
    if kind in NUMERIC:
        x = floats(present)
        finite = x[np.isfinite(x)]
        qs = finite.quantile(list(QUANTILES)) if len(finite) else pd.Series(math.nan, index=QUANTILES)
        stats.update(
            min=finite.min(), max=finite.max(), mean=finite.mean(), std=finite.std(),
            quantiles={f"{q:.0%}": float(v) for q, v in zip(QUANTILES, qs, strict=True)},
            skew=finite.skew(), zeros_share=int((x == 0).sum()) / rows,
            nonfinite=int(len(x) - len(finite)), nonfinite_share=(len(x) - len(finite)) / rows,
        )
    elif kind == "datetime":
        d = _dates(present).dropna()
        stats.update(min=d.min().isoformat() if len(d) else None, max=d.max().isoformat() if len(d) else None)
    else:
        stats["top_values"] = [{"value": str(v), "count": int(c), "share": c / len(present)}
                               for v, c in counts.head(TOP_VALUES).items()]
    stats["flags"] = _flags(stats)
    return stats


def _flags(s: dict[str, Any]) -> list[str]:
    flags = []
    if s["distinct"] == 0:
        flags.append("empty")
    elif s["distinct"] == 1:
        flags.append("constant")
    elif s["top_share"] >= NEAR_CONSTANT:
        flags.append("near-constant")
    if s["type"] in ("integer-like", "text") and s["count"] >= 2 and s["distinct"] == s["count"]:
        flags.append("id-like")
    if s["missing_share"] >= HIGH_MISSING:
        flags.append("high-missing")
    if s["type"] in ("numeric", "integer-like") and abs(s.get("skew", 0) or 0) > HEAVY_SKEW:
        flags.append("heavy-skew")
    if s.get("nonfinite"):
        flags.append("non-finite")
    if s["type"] == "text" and not {"empty", "constant", "id-like"} & set(flags):
        flags.append("high-cardinality" if s["distinct"] > HIGH_CARDINALITY else "needs-encoding")
    return flags


def _excluded(s: dict[str, Any]) -> bool:
    """Columns a detector should not see as they are: IDs, constants, empty, datetime, high-cardinality text."""
    return s["type"] == "datetime" or bool(set(EXCLUDE_FLAGS) & set(s["flags"]))


def outliers(frame: pd.DataFrame, columns: list[str]) -> dict[str, Any]:
    """IQR rule per column (finite values outside [Q1 - 1.5 IQR, Q3 + 1.5 IQR]) and the share of rows with any."""
    rows, any_row = len(frame), np.zeros(len(frame), dtype=bool)
    per = {}
    for col in columns:
        x = floats(frame[col])
        q1, q3 = x[np.isfinite(x)].quantile([0.25, 0.75])
        lo, hi = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
        mask = (np.isfinite(x) & ((x < lo) | (x > hi))).to_numpy()
        any_row |= mask
        per[str(col)] = {"low": lo, "high": hi, "count": int(mask.sum()), "share": mask.sum() / rows}
    return {"columns": per, "rows": int(any_row.sum()), "rows_share": any_row.sum() / rows if rows else math.nan}


def correlations(sample: pd.DataFrame, columns: list[str]) -> dict[str, Any]:
    """Pearson and Spearman matrices (inf as missing) and the pairs with |r| >= CORRELATED, each once."""
    block = sample[columns].apply(floats).replace([np.inf, -np.inf], np.nan)
    pearson, spearman = block.corr(), block.corr(method="spearman")
    pairs = []
    for i, a in enumerate(columns):
        for b in columns[i + 1:]:
            p, s = pearson.loc[a, b], spearman.loc[a, b]
            if max(abs(p) if p == p else 0, abs(s) if s == s else 0) >= CORRELATED:
                pairs.append({"a": str(a), "b": str(b), "pearson": p, "spearman": s})
    pairs.sort(key=lambda r: -max(abs(np.nan_to_num(r["pearson"])), abs(np.nan_to_num(r["spearman"]))))
    names = [str(c) for c in columns]
    return {"columns": names, "pearson": pearson.to_numpy().tolist(), "spearman": spearman.to_numpy().tolist(),
            "pairs": pairs}


# --------------------------------------------------------------------------- drift
def psi(actual: np.ndarray, expected: np.ndarray, bins: int = PSI_BINS) -> float:
    """PSI of ``actual`` against ``expected`` over right-closed bins between ``expected``'s quantiles."""
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
    n = edges.size + 1
    a = np.bincount(np.searchsorted(edges, actual, side="left"), minlength=n) / actual.size
    e = np.bincount(np.searchsorted(edges, expected, side="left"), minlength=n) / expected.size
    return _psi_shares(a, e)


def _psi_shares(a: np.ndarray, e: np.ndarray) -> float:
    a, e = np.maximum(a, PSI_EPSILON), np.maximum(e, PSI_EPSILON)
    return float(((a - e) * np.log(a / e)).sum())


def _drift_numeric(a: pd.Series, b: pd.Series) -> dict[str, Any]:
    from scipy import stats

    a, b = floats(a).to_numpy(), floats(b).to_numpy()
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size < 2 or b.size < 2:
        return {"test": None, "note": "fewer than 2 finite values on one side"}
    ks = stats.ks_2samp(a, b)
    return {"test": "ks", "statistic": float(ks.statistic), "p_value": float(ks.pvalue), "psi": psi(a, b)}


def _drift_text(a: pd.Series, b: pd.Series) -> dict[str, Any]:
    from scipy import stats

    ca, cb = a.dropna().astype(str).value_counts(), b.dropna().astype(str).value_counts()
    if not len(ca) or not len(cb):
        return {"test": None, "note": "no values on one side"}
    table = pd.concat([ca, cb], axis=1).fillna(0)
    table = table.loc[table.sum(axis=1).sort_values(ascending=False).index]
    if len(table) > MAX_CATEGORIES:
        table = pd.concat([table.iloc[:MAX_CATEGORIES], table.iloc[MAX_CATEGORIES:].sum().to_frame("(other)").T])
    counts = table.to_numpy().T
    if counts.shape[1] < 2:
        stat, p = 0.0, 1.0
    else:
        stat, p = stats.chi2_contingency(counts)[:2]
    shares = counts / counts.sum(axis=1, keepdims=True)
    return {"test": "chi2", "statistic": float(stat), "p_value": float(p), "psi": _psi_shares(shares[0], shares[1])}


def drift(data: pd.DataFrame, reference: pd.DataFrame, types: dict[str, str], ref_types: dict[str, str],
          skip: dict[str, str] | None = None) -> dict[str, Any]:
    """Per shared column: KS + PSI (numeric) or chi-square + PSI (text); drifted when p < 0.01 and PSI > 0.1.

    ``skip`` maps columns to a reason they are not tested (e.g. ID-like columns).
    """
    skip = skip or {}
    shared = [c for c in data.columns if c in set(reference.columns)]
    if not shared:
        raise DataError(
            "The data and the reference have no column in common, so there is nothing to compare.",
            hint=f"data columns: {', '.join(map(str, data.columns))}; reference columns: "
                 f"{', '.join(map(str, reference.columns))}",
        )
    rows = []
    for col in shared:
        t, rt = types[col], ref_types[col]
        if (t in NUMERIC) != (rt in NUMERIC) or (t == "datetime") != (rt == "datetime"):
            row = {"test": None, "note": f"type changed: {rt} in the reference, {t} in the data", "drifted": True}
        elif t == "datetime" or col in skip:
            row = {"test": None, "note": f"not tested ({skip.get(col, 'datetime')})"}
        elif t in NUMERIC:
            row = _drift_numeric(data[col], reference[col])
        else:
            row = _drift_text(data[col], reference[col])
        if "drifted" not in row:
            row["drifted"] = bool(row["test"] and row["p_value"] < DRIFT_P and row["psi"] > DRIFT_PSI)
        rows.append({"column": str(col), "type": t, "missing_share": float(data[col].isna().mean()),
                     "reference_missing_share": float(reference[col].isna().mean()), **row})
    return {"columns": rows,
            "only_in_data": [str(c) for c in data.columns if c not in set(reference.columns)],
            "only_in_reference": [str(c) for c in reference.columns if c not in set(data.columns)],
            "drifted": [r["column"] for r in rows if r["drifted"]]}


# --------------------------------------------------------------------------- suggestions
def to_yaml(config: dict[str, Any]) -> str:
    """A config snippet in the README's style: one flow-style mapping per list item."""
    import yaml

    def flow(value: Any) -> str:
        return yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip().removesuffix(
            "\n...").strip()

    lines = []
    for key, value in config.items():
        if isinstance(value, list):
            lines += [f"{key}:"] + [f"  - {flow(v)}" for v in value]
        elif isinstance(value, dict):
            lines += [f"{key}:"] + [f"  {k}: {flow(v)}" for k, v in value.items()]
        else:
            lines.append(f"{key}: {flow(value)}")
    return "\n".join(lines)


def suggestions(cols: list[dict[str, Any]], corr: dict[str, Any], outl: dict[str, Any],
                drift_result: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Preprocessing suggestions as adpipe config snippets, using only installed plugins."""
    from adpipe.core.registry import get_registry

    registry = get_registry()
    have = set(registry.names("preprocessor"))
    out: list[dict[str, Any]] = []

    def add(kind: str, message: str, columns: list[str], config: dict[str, Any]) -> None:
        for stage in config.get("preprocess", []):
            if stage["type"] not in have:
                return
        out.append({"kind": kind, "message": message, "columns": columns, "config": config, "yaml": to_yaml(config)})

    excluded = [c["name"] for c in cols if _excluded(c)]
    if excluded:
        reasons = [", ".join(f for f in c["flags"] if f in EXCLUDE_FLAGS) or c["type"]
                   for c in cols if _excluded(c)]
        why = "; ".join(f"{n} ({r})" for n, r in zip(excluded, reasons, strict=True))
        add("exclude", f"Leave out columns that carry no signal for a detector or are not numbers: {why}.",
            excluded, {"columns": {"exclude": excluded}})
    kept = [c for c in cols if not _excluded(c)]
    dropped: list[str] = []
    for pair in corr["pairs"]:
        if pair["a"] in excluded or pair["b"] in excluded or {pair["a"], pair["b"]} & set(dropped):
            continue
        dropped.append(pair["b"])
    if dropped:
        add("drop", "Drop one column of each highly correlated pair (it adds weight, not information): "
            + ", ".join(dropped) + ".", dropped, {"preprocess": [{"type": "drop", "columns": dropped}]})
    numeric = [c for c in kept if c["type"] in NUMERIC and c["name"] not in dropped]
    gaps = [c["name"] for c in numeric if c["missing"] or c.get("nonfinite")]
    if gaps:
        add("impute", "Fill missing and infinite values (the median, learned on the training rows): "
            + ", ".join(gaps) + ".", gaps, {"preprocess": [{"type": "impute", "strategy": "median", "columns": gaps}]})
    text = [c for c in kept if "needs-encoding" in c["flags"]]
    for few in (True, False):
        group = [c["name"] for c in text if (c["distinct"] <= ONEHOT_MAX) == few]
        if not group:
            continue
        stage: dict[str, Any] = {"type": "onehot", "columns": group}
        message = "Encode the text column(s) " + ", ".join(group) + " as 0/1 columns"
        if not few:
            stage["max_categories"] = ONEHOT_MAX
            message += f", the rarest categories pooled so each keeps at most {ONEHOT_MAX}"
        add("encode", message + ".", group, {"preprocess": [stage]})
    scaled = [c for c in numeric if c["type"] != "boolean" and "constant" not in c["flags"]]
    skewed = [c["name"] for c in scaled if "heavy-skew" in c["flags"]
              or outl["columns"].get(c["name"], {}).get("share", 0) >= MANY_OUTLIERS]
    stds = [c["std"] for c in scaled if c["std"] == c["std"] and c["std"] > 0]
    names = [c["name"] for c in scaled]
    if skewed:
        add("scale", "Scale with the median and quantile range (robust to the heavy tails and outliers of "
            + ", ".join(skewed) + "); a log transform before adpipe may help the skewed ones further.",
            names, {"preprocess": [{"type": "robust_scaler", "columns": names}]})
    elif len(stds) > 1 and max(stds) / min(stds) >= SCALE_RATIO:
        add("scale", f"Standardise: the standard deviations differ by a factor of {max(stds) / min(stds):,.0f}, "
            "so distance-based detectors would mostly see the widest columns.",
            names, {"preprocess": [{"type": "standard_scaler", "columns": names}]})
    if drift_result and drift_result["drifted"]:
        tests = [t for t in ("ks", "psi") if t in registry.names("drift_detector")]
        config = {"drift": {"detectors": [{"type": t} for t in tests], "features": drift_result["drifted"]}}
        if tests:
            out.append({"kind": "drift", "message": "The data has moved away from the reference in "
                        + ", ".join(drift_result["drifted"]) + ": refit on recent data, and watch these columns.",
                        "columns": drift_result["drifted"], "config": config, "yaml": to_yaml(config)})
    return out


def merged_config(items: list[dict[str, Any]]) -> dict[str, Any]:
    """All suggestions in one config: exclude lists joined, preprocess stages in order."""
    config: dict[str, Any] = {}
    for item in items:
        for key, value in item["config"].items():
            if key == "preprocess":
                config.setdefault(key, []).extend(value)
            elif key == "columns":
                config.setdefault(key, {}).setdefault("exclude", []).extend(value["exclude"])
            else:
                config[key] = value
    return config


def _findings(cols: list[dict[str, Any]], corr: dict[str, Any], outl: dict[str, Any],
              drift_result: dict[str, Any] | None) -> list[dict[str, Any]]:
    text = {
        "empty": "has no values at all",
        "constant": "has a single value",
        "near-constant": f"is near-constant (one value in ≥ {NEAR_CONSTANT:.1%} of rows; its rare values may be "
                         "exactly the anomalies, so keep it if they mean something)",
        "id-like": "looks like an ID (every value distinct)",
        "high-missing": f"is missing in ≥ {HIGH_MISSING:.0%} of rows",
        "heavy-skew": "is heavily skewed",
        "non-finite": "holds infinite values",
        "needs-encoding": "is text: a detector needs it encoded as numbers",
        "high-cardinality": "has too many categories to one-hot encode",
    }
    out = []
    for c in cols:
        for f in (f for f in c["flags"] if f in text):  # correlated, drifted: reported below
            detail = {"high-missing": f" ({c['missing_share']:.1%})", "non-finite": f" ({c.get('nonfinite', 0):,})",
                      "heavy-skew": f" (skew {c.get('skew', 0):.2f}, cut-off |skew| > {HEAVY_SKEW:g})",
                      "high-cardinality": f" ({c['distinct']:,} distinct values, more than {HIGH_CARDINALITY})",
                      }.get(f, "")
            out.append({"kind": f, "columns": [c["name"]], "message": f"{c['name']} {text[f]}{detail}."})
        if c["type"] == "datetime":
            out.append({"kind": "datetime", "columns": [c["name"]],
                        "message": f"{c['name']} is a date/time: leave it out or derive numeric features upstream."})
    for p in corr["pairs"]:
        out.append({"kind": "correlated", "columns": [p["a"], p["b"]], "message": f"{p['a']} and {p['b']} are "
                    f"highly correlated (Pearson {p['pearson']:.3f}, Spearman {p['spearman']:.3f})."})
    if outl["columns"]:
        out.append({"kind": "outliers", "columns": [], "message": f"{outl['rows_share']:.1%} of rows have at least "
                    "one value outside the IQR fences (Q1 - 1.5 IQR, Q3 + 1.5 IQR)."})
    if drift_result:
        for r in drift_result["columns"]:
            if r["drifted"]:
                how = r.get("note") or (f"{r['test']} p={r['p_value']:.2g}, PSI={r['psi']:.3f}")
                out.append({"kind": "drift", "columns": [r["column"]], "message": f"{r['column']} drifted ({how})."})
        for key, where in (("only_in_data", "the data"), ("only_in_reference", "the reference")):
            if drift_result[key]:
                out.append({"kind": key, "columns": drift_result[key],
                            "message": f"only in {where}: {', '.join(drift_result[key])}."})
    return out


# --------------------------------------------------------------------------- the profile
@dataclass
class Profile:
    """What :func:`profile` found; ``to_dict()`` for JSON, ``write_html(path)`` for the report."""

    rows: int
    columns: list[dict[str, Any]]
    sample: dict[str, Any]
    correlations: dict[str, Any]
    outliers: dict[str, Any]
    drift: dict[str, Any] | None
    findings: list[dict[str, Any]]
    suggestions: list[dict[str, Any]]
    config: dict[str, Any]
    source: str | None = None
    reference_source: str | None = None
    data_sample: pd.DataFrame | None = field(default=None, repr=False)
    reference_sample: pd.DataFrame | None = field(default=None, repr=False)

    def column(self, name: str) -> dict[str, Any]:
        return next(c for c in self.columns if c["name"] == name)

    def to_dict(self) -> dict[str, Any]:
        keys = ("source", "reference_source", "rows", "sample", "columns", "correlations", "outliers", "drift",
                "findings", "suggestions", "config")
        out = {k: getattr(self, k) for k in keys}
        out["cutoffs"] = {"near_constant": NEAR_CONSTANT, "high_missing": HIGH_MISSING, "heavy_skew": HEAVY_SKEW,
                          "correlated": CORRELATED, "drift_p": DRIFT_P, "drift_psi": DRIFT_PSI,
                          "many_outliers": MANY_OUTLIERS, "scale_ratio": SCALE_RATIO}
        out["config_yaml"] = to_yaml(self.config)
        return jsonable(out)

    def write_html(self, path: str | Path) -> Path:
        from adpipe.core.profile_report import html_report

        page = html_report(self)
        try:
            return page.write(path)
        except OSError as exc:
            raise SinkError(f"Cannot write the report to '{path}': {exc.strerror or exc}.",
                            hint="pick a path in a folder you can write to") from None


def _sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    return frame.sample(n=rows, random_state=seed) if len(frame) > rows else frame


def profile(data: Any, reference: Any = None, *, columns: list[str] | None = None,
            sample_rows: int = SAMPLE_ROWS, seed: int = 0) -> Profile:
    """Profile ``data`` (a path or anything ``adpipe.core.frames.to_frame`` takes), optionally against a reference.

    ``columns`` limits the profile (and the drift comparison) to those columns.
    """
    frame, name = _frame(data, "data")
    if columns:
        columns = [str(c) for c in columns]
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(f"The data has no column(s) {', '.join(map(repr, missing))}.",
                            hint=f"available: {', '.join(map(str, frame.columns))}")
        frame = frame[list(dict.fromkeys(columns))]
    rows = len(frame)
    cols = [_column_stats(frame[c], rows) for c in frame.columns]
    types = {c: s["type"] for c, s in zip(frame.columns, cols, strict=True)}
    sample = _sample(frame, sample_rows, seed)
    usable = [c for c, s in zip(frame.columns, cols, strict=True) if s["type"] in NUMERIC and not _excluded(s)]
    corr = correlations(sample, usable)
    outl = outliers(frame, [c for c in usable if types[c] != "boolean"])
    for s in cols:
        if any(s["name"] in (p["a"], p["b"]) for p in corr["pairs"]):
            s["flags"].append("correlated")
        if s["name"] in outl["columns"]:
            s["outlier_share"] = outl["columns"][s["name"]]["share"]
    drift_result, ref_name, ref_sample = None, None, None
    if reference is not None:
        ref, ref_name = _frame(reference, "reference")
        if columns:
            ref = ref[[c for c in frame.columns if c in set(ref.columns)]]
        ref_types = {c: column_type(ref[c]) for c in ref.columns}
        ref_sample = _sample(ref, sample_rows, seed)
        skip = {c: "id-like" for c, s in zip(frame.columns, cols, strict=True) if "id-like" in s["flags"]}
        drift_result = drift(sample, ref_sample, types, ref_types, skip)
        for s in cols:
            if s["name"] in drift_result["drifted"]:
                s["flags"].append("drifted")
    items = suggestions(cols, corr, outl, drift_result)
    info = {"rows": len(sample), "of": rows, "seed": seed, "sampled": len(sample) < rows,
            "used_for": ["correlations", "plots", "drift tests"]}
    return Profile(rows=rows, columns=cols, sample=info, correlations=corr, outliers=outl, drift=drift_result,
                   findings=_findings(cols, corr, outl, drift_result), suggestions=items,
                   config=merged_config(items), source=name, reference_source=ref_name,
                   data_sample=sample, reference_sample=ref_sample)


# --------------------------------------------------------------------------- HTML
