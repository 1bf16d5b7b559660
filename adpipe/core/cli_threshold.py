"""``adpipe threshold``: the impact of probability cut-offs on a data set, and the best one for an objective.

    adpipe threshold model=fraud@production data=labelled.csv                  # max F1
    adpipe threshold model=fraud data=labelled.csv --min-precision 0.9         # best recall at precision >= 0.9
    adpipe threshold model=fraud data=labelled.csv --cost-fp 5 --cost-fn 200   # least cost
    adpipe threshold model=fraud data=new.csv --method karch                   # no labels: pythresh
    adpipe threshold model=fraud data=labelled.csv --write                     # a new version with that cut-off
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from adpipe.core.cli import CONTEXT, _console, _options, cli, split_args, store_option, trust_options
from adpipe.core.errors import ConfigError
from adpipe.core.progress import progress_bar
from adpipe.core.thresholding import DEFAULT_METHOD, OBJECTIVES, Analysis, value_name


def parse_at(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--at must be comma-separated probabilities, got '{text}'.",
                          hint="e.g. --at 0.97,0.99,0.999") from None
    if not values:
        raise ConfigError("--at is empty.", hint="e.g. --at 0.97,0.99,0.999")
    return values


@cli.command("threshold", context_settings={**CONTEXT, "ignore_unknown_options": True})
@click.argument("args", nargs=-1, metavar="model=REF data=PATH [label=COLUMN]")
@click.option("--objective", type=click.Choice(OBJECTIVES), help="What the cut-off optimises (with labels) "
              "[default: precision with --min-precision, cost with costs, else f1].")
@click.option("--min-precision", type=float,
              help="Precision target: the cut-off with the best recall among those reaching it.")
@click.option("--cost-fp", type=float, help="Cost of one false alarm.")
@click.option("--cost-fn", type=float, help="Cost of one missed anomaly.")
@click.option("--method", help=f"Choose without labels with this pythresh method [default without labels: "
              f"{DEFAULT_METHOD}].")
@click.option("--at", "at_text", metavar="P1,P2,...", help="Candidate cut-offs for the table [default: 0.9, 0.95, "
              "0.98, 0.99, 0.995, 0.999]; the current and chosen ones are always added.")
@click.option("--bootstrap", default=1000, show_default=True, type=click.IntRange(min=0),
              help="Resamples for the confidence interval (0: none).")
@click.option("--confidence", default=0.95, show_default=True, type=float, help="Confidence level of the interval.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the resampling.")
@click.option("--write", is_flag=True, help="Save the model with the chosen cut-off: a new version in the store "
              "(not promoted), or a file with --out.")
@click.option("--out", type=click.Path(dir_okay=False), help="With --write: write the model to this file.")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@click.option("--html", type=click.Path(dir_okay=False), help="Write an HTML report with curves and histograms.")
@store_option
@_options(trust_options)
def threshold(args: tuple[str, ...], objective: str | None, min_precision: float | None, cost_fp: float | None,
              cost_fn: float | None, method: str | None, at_text: str | None, bootstrap: int, confidence: float,
              seed: int, write: bool, out: str | None, as_json: bool, html: str | None, store: str | None,
              trust: bool, strict_versions: bool) -> None:
    """Choose the probability cut-off of a model on (labelled) data, and show its impact.

    Scores PATH (CSV/Parquet with the model's features) with REF (a model file, NAME, NAME@VERSION or
    NAME@STAGE). With a 0/1 label column (label=COLUMN, default the model's columns.label) the cut-off
    maximises F1, meets --min-precision with the best recall, or minimises --cost-fp * FP + --cost-fn * FN,
    searched over every distinct probability, with a bootstrap interval. Without labels (or with
    --method) a pythresh method picks it from the score distribution.
    """
    from adpipe.core import thresholding
    from adpipe.core.model import is_path_ref, load_model

    found, _ = split_args(args, ("model", "data"), optional=("label",), overrides=False)
    ref, data = found["model"], found["data"]
    at = parse_at(at_text)
    target = _write_target(ref, write, out)
    thresholding.check_costs(cost_fp, cost_fn)
    if method is not None:
        thresholding.check_method(method)
    model = load_model(ref, store=store, trusted=trust, strict_versions=strict_versions)
    with progress_bar(bootstrap, not as_json, "bootstrap") as bar:
        result = thresholding.analyse(model, data, found.get("label"), objective=objective,
                                      min_precision=min_precision, cost_fp=cost_fp, cost_fn=cost_fn, method=method,
                                      at=at, bootstrap=bootstrap, confidence=confidence, seed=seed,
                                      progress=bar.advance)
    written = None
    if target is not None:
        provenance = _provenance(result, data)
        new = thresholding.with_cutoff(model, result.choice.threshold, provenance)
        written = _save(new, ref, target, store, is_path_ref(ref))
    if html:
        _report(result, ref, data).write(html)
    if as_json:
        out_dict = {"model": ref, "data": str(data), **result.to_dict(), "written": written,
                    "html": str(html) if html else None}
        click.echo(json.dumps(out_dict, indent=2, default=str))
        return
    _render(_console(), result, ref, data, written, html)


# --------------------------------------------------------------------------- helpers
def _write_target(ref: str, write: bool, out: str | None) -> str | None:
    """"store", a file path, or None (nothing written); checked before any work is done."""
    from adpipe.core.model import is_path_ref

    if out and not write:
        raise ConfigError("--out is only used with --write.", hint="add --write to save the model with the new cut-off")
    if not write:
        return None
    if out:
        if Path(ref).is_file() and Path(out).exists() and Path(out).samefile(ref):
            raise ConfigError(f"--out {out} is the input model file; it is never overwritten.",
                              hint="write to another file, e.g. --out " + str(Path(out).with_stem(Path(out).stem
                                                                                                + "-tuned")))
        return out
    if is_path_ref(ref) or ":/" in ref:
        raise ConfigError(f"The model {ref} is a file (or an MLflow model), not a store version: say where to "
                          "write the new one.", hint="pass --out PATH (the input file is never overwritten)")
    return "store"


def _provenance(result: Analysis, data: str) -> dict[str, Any]:
    choice = result.choice
    return {"method": choice.objective if choice.objective in OBJECTIVES else f"pythresh:{choice.objective}",
            "objective": choice.objective if choice.objective in OBJECTIVES else None,
            "value": choice.value, "value_name": value_name(choice.objective), **choice.detail,
            "precision": choice.precision, "recall": choice.recall, "f1": choice.f1, "cost": choice.cost,
            "interval": result.interval.to_dict() if result.interval else None,
            "data": str(Path(data).resolve()) if isinstance(data, (str, Path)) else None, "rows": result.rows,
            "label": result.label, "chosen_at": datetime.now(timezone.utc).isoformat()}


def _save(model, ref: str, target: str, store: str | None, from_file: bool) -> dict[str, Any]:
    if target != "store":
        path = model.save(target)
        return {"ref": str(path), "path": str(path), "promoted": False}
    from adpipe.core.store import ModelStore, parse_ref

    name = parse_ref(ref)[0]
    stored = ModelStore(store).add(model, name=name)
    return {"ref": stored.ref, "path": str(stored.path), "version": stored.version, "promoted": False,
            "promote": f"adpipe models promote {name} {stored.version} --stage production"}


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _num(x: float | None) -> str:
    """A metric to 4 decimals, a cost as a whole number when it is one."""
    if x is None or x != x:
        return "-"
    return f"{x:,.0f}" if float(x).is_integer() and abs(x) >= 1 else f"{x:,.4f}" if abs(x) < 1000 else f"{x:,.1f}"


def _cut_text(row: dict[str, Any], result: Analysis) -> str:
    if row["threshold"] is None:
        return f"({result.current['type']})"
    if "current" in row["marks"] and result.current["on"] == "score":
        return f"≈{row['threshold']:.4f} (score ≥ {result.current['cutoff']:.4g})"
    return f"{row['threshold']:.6g}"


def _render(console, result: Analysis, ref: str, data: str, written: dict | None, html: str | None) -> None:
    labelled = result.labels is not None
    console.print(f"[bold]{escape(ref)}[/bold] on {escape(str(data))}: {result.rows:,} rows scored"
                  + (f", {result.rejected:,} rejected" if result.rejected else "")
                  + (f"; label '{escape(result.label)}': {int(result.labels.sum()):,} anomalies" if labelled
                     else "; no labels"))
    cur = result.current
    console.print(f"current threshold: {escape(cur['type'])}"
                  + (f" ({cur['on']} ≥ {cur['cutoff']:.6g})" if cur["cutoff"] is not None else ""))
    table = Table(title="impact of cut-offs on anomaly_probability", title_justify="left")
    cols = ["threshold", "flagged", "share"] + (["precision", "recall", "F1"] if labelled else []) \
        + (["cost"] if result.costs and labelled else []) + [""]
    for col in cols:
        table.add_column(col, justify="left" if col in ("threshold", "") else "right", no_wrap=True)
    for row in result.table:
        cells = [_cut_text(row, result), _fmt(row["flagged"]), f"{row['share']:.2%}"]
        if labelled:
            cells += [_fmt(row["precision"], 3), _fmt(row["recall"], 3), _fmt(row["f1"], 3)]
        if result.costs and labelled:
            cells.append(_num(row["cost"]))
        cells.append(" + ".join(f"◀ {m}" for m in row["marks"]))
        table.add_row(*cells, style="bold" if "chosen" in row["marks"] else None)
    console.print(table)
    choice = result.choice
    if choice.objective in OBJECTIVES:
        d = choice.detail
        why = ("maximises F1" if choice.objective == "f1" else
               f"has the best recall at precision ≥ {d['min_precision']}" if choice.objective == "precision" else
               f"minimises {d['cost_fp']:g}·FP + {d['cost_fn']:g}·FN")
        console.print(f"chosen: [bold]{choice.threshold:.6g}[/bold] {why}: {value_name(choice.objective)} "
                      f"{_num(choice.value)}, flags {choice.flagged:,} rows")
    else:
        console.print(f"chosen: [bold]{choice.threshold:.6g}[/bold] by pythresh '{choice.objective}'"
                      + (" (the default; pick another with --method)" if choice.detail.get("default") else "")
                      + f" on the raw scores (score ≥ {choice.detail['score_cutoff']:.6g}), flags "
                      f"{choice.flagged:,} rows" + ("" if labelled else "; without labels nothing is measured"))
    iv = result.interval
    if iv is not None:
        level = f"{iv.confidence:.0%}"
        cut = "-" if iv.threshold is None else f"[{iv.threshold[0]:.6g}, {iv.threshold[1]:.6g}]"
        console.print(f"{level} bootstrap interval ({iv.resamples:,} resamples, seed {iv.seed}"
                      + (f", {iv.skipped} skipped" if iv.skipped else "") + f"): threshold {cut}, "
                      f"{iv.value_name} at the chosen threshold [{iv.value[0]:.4g}, {iv.value[1]:.4g}]")
    for note in result.notes:
        console.print(f"[yellow]note[/yellow]: {escape(note)}")
    if written:
        console.print(f"wrote [bold]{escape(written['ref'])}[/bold] with threshold probability ≥ "
                      f"{choice.threshold:.6g}" + (f" ({escape(written['path'])})" if "version" in written else ""))
        if "promote" in written:
            console.print(f"not promoted; to use it: {escape(written['promote'])}")
    if html:
        console.print(f"report: {escape(str(html))}")


def _report(result: Analysis, ref: str, data: str):
    import numpy as np

    from adpipe.core.report import Report, new_figure
    from adpipe.core.thresholding import sweep

    page = Report(f"Threshold for {ref}", f"{data} · {result.rows:,} rows")
    choice = result.choice
    page.text(f"Chosen cut-off {choice.threshold:.6g} ({choice.objective}); {choice.flagged:,} rows flagged. "
              f"Current threshold: {result.current['type']}.", note=True)
    marks = [("chosen", choice.threshold, "-", "black")]
    if result.current["probability"] is not None:
        marks.append(("current", result.current["probability"], "--", "grey"))
    if result.labels is not None:
        page.heading("Precision, recall and F1 over the cut-off")
        curve = sweep(result.probs, result.labels)
        fig, ax = new_figure()
        for name, values in (("precision", curve.precision), ("recall", curve.recall), ("F1", curve.f1)):
            ax.plot(curve.thresholds, values, label=name, drawstyle="steps-post")
        ax.set_xlabel("anomaly_probability cut-off (flag ≥)")
        ax.set_ylim(0, 1.02)
        for name, x, style, color in marks:
            ax.axvline(x, linestyle=style, color=color, label=name)
        handles = ax.get_legend_handles_labels()
        if result.costs:
            ax2 = ax.twinx()
            ax2.plot(curve.thresholds, curve.cost(*result.costs), color="tab:red", label="cost", alpha=0.7)
            ax2.set_ylabel("cost", color="tab:red")
            more = ax2.get_legend_handles_labels()
            handles = (handles[0] + more[0], handles[1] + more[1])
        ax.legend(*handles, loc="lower left")
        page.figure(fig, "precision, recall and F1 over the threshold")
    page.heading("Score histogram")
    fig, ax = new_figure()
    bins = np.linspace(0, 1, 51)
    if result.labels is not None:
        y = result.labels.astype(bool)
        ax.hist(result.probs[~y], bins=bins, alpha=0.6, label="normal (0)")
        ax.hist(result.probs[y], bins=bins, alpha=0.6, label="anomaly (1)")
    else:
        ax.hist(result.probs, bins=bins, alpha=0.7, label="all rows")
    ax.set_yscale("log")
    ax.set_xlabel("anomaly_probability")
    ax.set_ylabel("rows (log scale)")
    for name, x, style, color in marks:
        ax.axvline(x, linestyle=style, color=color, label=name)
    ax.legend()
    page.figure(fig, "histogram of anomaly probabilities by label with the chosen threshold")
    page.heading("Impact table")
    rows = [{**{k: v for k, v in row.items() if k != "marks"}, "marks": ", ".join(row["marks"])}
            for row in result.table]
    page.table(rows)
    if result.interval is not None:
        iv = result.interval
        page.text(f"{iv.confidence:.0%} bootstrap interval over {iv.resamples} resamples (seed {iv.seed}): "
                  f"threshold {iv.threshold}, {iv.value_name} at the chosen threshold {iv.value}.")
    return page
