"""``adpipe compare``: several detectors on one config's pipeline, ranked, with a recommendation."""

from __future__ import annotations

import json

import click
from rich import box
from rich.markup import escape
from rich.table import Table

from adpipe.core.cli import CONTEXT, _console, cli, split_args


def _f(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def render(result, console) -> None:
    """The ranked table, the agreement matrix and the recommendation."""
    labelled = result.labelled
    if labelled:
        s = result.split
        title = (f"{result.name}: {s['eval_rows']:,} held-out rows ({s['eval_anomalies']} anomalies), fitted on "
                 f"{s['fit_rows']:,}; ranked by PR-AUC")
    else:
        title = f"{result.name}: {result.rows:,} rows, no labels; ordered by fit + score time"
    table = Table(title=escape(title), title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0))
    cols = ["#", "algorithm"] + (["ROC-AUC", "PR-AUC", "PR 95 %", "prec.", "recall", "F1"] if labelled
                                 else ["mean rho"]) + ["flagged", "fit s", "score s", "peak MB"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("algorithm", "PR 95 %") else "right", no_wrap=True,
                         min_width=max(len(e.algorithm) for e in result.evaluations) if col == "algorithm" else None)
    for row in result.table_rows():
        if row["error"]:
            table.add_row("-", escape(row["algorithm"]), f"[red]failed: {escape(row['error'])}[/red]")
            continue
        if labelled:
            quality = [_f(row["roc_auc"]), _f(row["pr_auc"]), row["pr_auc_ci"] or "-",
                       *(_f(row[k]) for k in ("precision", "recall", "f1"))]
        else:
            quality = [_f(row["mean_spearman"], 2)]
        table.add_row(str(row["rank"]), escape(row["algorithm"]), *quality, _f(row["flagged"]),
                      _f(row["fit_s"], 2), _f(row["score_s"], 2), _f(row["peak_mb"], 1))
    console.print(table)
    a = result.agreement
    if a:
        names = list(a["spearman"])
        grid = Table(box=box.SIMPLE_HEAD, title=f"agreement: Spearman rho of scores (lower left), Jaccard of the top "
                           f"{a['top_share']:.0%} rows (upper right)", title_justify="left")
        grid.add_column("")
        for n in names:
            grid.add_column(escape(n), justify="right")
        for i, r in enumerate(names):
            cells = [_f(a["spearman"][r][c], 2) if j < i else _f(a["jaccard_top"][r][c], 2) if j > i else ""
                     for j, c in enumerate(names)]
            grid.add_row(escape(r), *cells)
        console.print(grid)
    console.print(f"[bold]recommendation[/bold]: {escape(result.recommendation['reason'])}")


@cli.command(context_settings={**CONTEXT, "ignore_unknown_options": True})
@click.argument("args", nargs=-1, metavar="config=PATH algorithms=[A,B,...] [ALGO.param=value] [OVERRIDES]...")
@click.option("--holdout", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Share of labelled rows held out and measured [default: the config's fit.holdout, or 0.2].")
@click.option("--bootstrap", type=click.IntRange(min=0), default=200, show_default=True,
              help="Bootstrap resamples of the held-out rows for noise intervals (0: none).")
@click.option("--top", type=click.FloatRange(0, 1, min_open=True), default=0.05, show_default=True,
              help="Share of rows in the top-k agreement.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), help="Write an HTML report here.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no tables: only the recommendation.")
def compare(args: tuple[str, ...], holdout: float | None, bootstrap: int, top: float, report_path: str | None,
            as_json: bool, quiet: bool) -> None:
    """Run the config's pipeline once per algorithm, replacing only the detector, and rank them.

    With a label column (columns.label) each detector is fitted on the same rows (labels unused) and
    measured on the same stratified held-out rows: ROC-AUC, PR-AUC, precision/recall/F1 at the config's
    threshold. Without one: time, memory and agreement between the detectors. ALGO.param=value sets a
    parameter of one algorithm (e.g. knn.n_neighbors=10); other key=value arguments are Hydra overrides
    of the config.
    """
    from adpipe.core.compare import compare as run_compare
    from adpipe.core.compare import parse_algorithms, split_params

    found, rest = split_args(args, ("config", "algorithms"))
    names = parse_algorithms(found["algorithms"])
    params, overrides = split_params(names, rest)
    config = found["config"]
    result = run_compare(config, names, overrides, params=params, holdout=holdout, bootstrap=bootstrap, top=top,
                         progress=not quiet and not as_json)
    if report_path:
        result.report(report_path)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, default=str))
    elif quiet:
        click.echo(result.recommendation["reason"])
    else:
        console = _console()
        render(result, console)
        if report_path:
            console.print(f"report: {escape(str(report_path))}")
