"""The HTML page and the terminal rows of a data profile (``adpipe profile``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from adpipe.core.jsonable import jsonable
from adpipe.core.profile import DRIFT_P, DRIFT_PSI, MAX_HISTOGRAMS, NUMERIC, Profile, column_type, floats, to_yaml


def column_rows(p: Profile) -> list[dict[str, Any]]:
    """One table row per column with the key numbers."""
    rows = []
    for c in p.columns:
        q = c.get("quantiles", {})
        rows.append({"column": c["name"], "type": c["type"], "missing %": 100 * c["missing_share"],
                     "distinct": c["distinct"], "min": c.get("min"), "median": q.get("50%"), "mean": c.get("mean"),
                     "max": c.get("max"), "std": c.get("std"), "skew": c.get("skew"),
                     "zeros %": 100 * c["zeros_share"] if "zeros_share" in c else None,
                     "inf": c.get("nonfinite"), "outliers %": 100 * c["outlier_share"] if "outlier_share" in c
                     else None, "flags": ", ".join(c["flags"])})
    return rows


def html_report(p: Profile):
    from adpipe.core.report import Report

    page = Report("Data profile", subtitle=p.source or "data frame")
    page.heading("Overview")
    ref = f"; compared with {p.reference_source or 'a reference frame'}" if p.drift else ""
    page.text(f"{p.rows:,} rows, {len(p.columns)} columns{ref}.")
    if p.sample["sampled"]:
        page.text(f"Correlations, plots and drift tests use a seeded sample of {p.sample['rows']:,} of the "
                  f"{p.rows:,} rows (seed {p.sample['seed']}); counts, missing values, statistics and outliers "
                  "cover all rows.", note=True)
    page.table(column_rows(p), digits=3)
    text_cols = [c for c in p.columns if c.get("top_values")]
    if text_cols:
        page.heading("Text columns")
        page.table([{"column": c["name"], "top values": ", ".join(f"{v['value']} ({v['share']:.1%})"
                                                                  for v in c["top_values"])} for c in text_cols])
    page.heading("Findings")
    page.table([{"finding": f["kind"], "detail": f["message"]} for f in p.findings] or [{"finding": "none"}])
    page.heading("Suggestions")
    for s in p.suggestions:
        page.text(s["message"])
        page.code(s["yaml"])
    if p.config:
        page.text("All together:")
        page.code(to_yaml(p.config))
    elif not p.suggestions:
        page.text("No preprocessing suggested.")
    page.heading("Missing values")
    _missing_plot(page, p)
    page.heading("Distributions")
    _histograms(page, p)
    page.heading("Correlations")
    _heatmap(page, p)
    page.heading("Outliers (IQR rule)")
    page.text(f"{p.outliers['rows_share'] if p.outliers['columns'] else 0:.2%} of rows have at least one outlying "
              "value.")
    if p.outliers["columns"]:
        page.table([{"column": c, "low fence": o["low"], "high fence": o["high"], "outliers": o["count"],
                     "share %": 100 * o["share"]} for c, o in p.outliers["columns"].items()], digits=3)
    if p.drift:
        page.heading("Drift against the reference")
        page.text(f"Drifted when p < {DRIFT_P:g} and PSI > {DRIFT_PSI:g} (PSI: < 0.1 stable, 0.1-0.25 moderate, "
                  "> 0.25 major shift).")
        page.table([{"column": r["column"], "test": r["test"] or "-", "statistic": jsonable(r.get("statistic")),
                     "p-value": jsonable(r.get("p_value")), "PSI": jsonable(r.get("psi")),
                     "drifted": "yes" if r["drifted"] else "no", "note": r.get("note", "")}
                    for r in p.drift["columns"]], digits=4)
        for key, label in (("only_in_data", "Only in the data"), ("only_in_reference", "Only in the reference")):
            if p.drift[key]:
                page.text(f"{label}: {', '.join(p.drift[key])}.")
    return page


def _missing_plot(page, p: Profile) -> None:
    from adpipe.core.report import new_figure

    names = [c["name"] for c in p.columns]
    fig, ax = new_figure(7, max(2.0, 0.25 * len(names) + 1))
    shares = [100 * c["missing_share"] for c in p.columns][::-1]
    bars = ax.barh(names[::-1], shares, color="#c0504d")
    ax.bar_label(bars, labels=[f"{c['missing']:,}" if c["missing"] else "" for c in p.columns][::-1], padding=2)
    ax.set_xlabel("missing values (% of rows; labels: count)")
    ax.set_xlim(0, min(100, max(1, 1.2 * max(shares))))
    page.figure(fig, "missing values per column")


def _histograms(page, p: Profile) -> None:
    from adpipe.core.report import new_figure

    numeric = [c for c in p.columns if c["type"] in NUMERIC and c["count"]][:MAX_HISTOGRAMS]
    if len([c for c in p.columns if c["type"] in NUMERIC]) > MAX_HISTOGRAMS:
        page.text(f"The first {MAX_HISTOGRAMS} numeric columns are plotted.")
    ref = p.reference_sample
    for c in numeric:
        x = floats(p.data_sample[c["name"]]).to_numpy()
        x = x[np.isfinite(x)]
        r = None
        if ref is not None and c["name"] in ref.columns and column_type(ref[c["name"]]) in NUMERIC:
            r = floats(ref[c["name"]]).to_numpy()
            r = r[np.isfinite(r)]
        both = np.concatenate([x, r]) if r is not None else x
        if not both.size:
            continue
        lo, hi = np.quantile(both, [0.005, 0.995])
        span, title = (both.min(), both.max()), c["name"]
        if hi > lo and both.max() - both.min() > 5 * (hi - lo):  # long tails would squash the plot
            span, title = (lo, hi), f"{c['name']} (0.5-99.5 % range; tails left out)"
        edges = np.histogram_bin_edges(both, bins=min(50, max(5, int(np.sqrt(both.size)))), range=span)
        fig, ax = new_figure(6, 2.6)
        ax.hist(x, bins=edges, alpha=0.6, density=r is not None, label="data")
        if r is not None and r.size:
            ax.hist(r, bins=edges, alpha=0.5, density=True, label="reference", color="#ff7f0e")
            ax.legend()
        ax.set_title(title)
        page.figure(fig, f"histogram of {c['name']}")


def _heatmap(page, p: Profile) -> None:
    from adpipe.core.report import new_figure

    corr = p.correlations
    names = corr["columns"]
    if len(names) < 2:
        page.text("Fewer than two numeric columns: no correlations.")
        return
    size = min(12, 2 + 0.45 * len(names))
    fig, ax = new_figure(size + 1, size)
    image = ax.imshow(np.array(corr["pearson"], dtype=float), vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(names)), names, rotation=90)
    ax.set_yticks(range(len(names)), names)
    fig.colorbar(image, ax=ax, label="Pearson r")
    page.figure(fig, "correlation heatmap")
    if corr["pairs"]:
        page.table([{"pair": f"{q['a']} / {q['b']}", "Pearson": q["pearson"], "Spearman": q["spearman"]}
                    for q in corr["pairs"]], digits=3)
