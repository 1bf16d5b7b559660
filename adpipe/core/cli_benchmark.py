"""``adpipe benchmark``: detectors over a folder of labelled datasets, with the statistics to read it."""

from __future__ import annotations

import json
import shlex

import click
from rich import box
from rich.markup import escape
from rich.table import Table

from adpipe.core.cli import CONTEXT, _console, cli


def render(result, console) -> None:
    """The per-algorithm table and the tests in words."""
    from adpipe.core.benchmark import algorithm_rows, test_lines

    header, rows = algorithm_rows(result)
    table = Table(title=f"{len(result.summary['datasets_ranked'])} datasets ranked, seeds "
                        f"{result.settings['seeds']}", title_justify="left", box=box.SIMPLE_HEAD)
    for col in header:
        table.add_column(col, justify="left" if col == "algorithm" else "right")
    for row in rows:
        table.add_row(*(("-" if v is None else f"{v:.3f}" if isinstance(v, float) else escape(str(v))) for v in row))
    console.print(table)
    if result.summary["datasets_excluded"]:
        console.print("left out of the ranking (an algorithm failed there): "
                      + escape(", ".join(result.summary["datasets_excluded"])))
    for line in test_lines(result):
        console.print(escape(line))


@cli.command(context_settings=CONTEXT)
@click.option("--datasets", "datasets", required=True, type=click.Path(file_okay=False),
              help="Folder of ADBench .npz files (arrays X, y) and/or CSV files with a label column.")
@click.option("--algorithms", required=True, help="Detector names, comma-separated: iforest,ecod,lof.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Runs per dataset and algorithm, seeds 0..N-1 (random_state and the --max-rows sample).")
@click.option("--max-rows", type=click.IntRange(min=10), default=None,
              help="Cap each dataset at N rows: a stratified sample drawn with the seed (same rows for every "
                   "algorithm).")
@click.option("--label-column", default="y", show_default=True, help="Label column of CSV datasets (0/1).")
@click.option("--metric", type=click.Choice(["roc_auc", "pr_auc"]), default="roc_auc", show_default=True,
              help="Metric that is ranked and tested.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
              show_default=True, help="Significance level of the tests.")
@click.option("--preprocess", multiple=True, help="A preprocessing stage before every detector "
              "(repeatable), e.g. --preprocess minmax_scaler. Default: none (raw features, as ADBench).")
@click.option("--out", type=click.Path(file_okay=False), default="benchmark_results", show_default=True,
              help="Folder for results.json, results.md, report.html and cells.jsonl.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Cells run in parallel (forked processes); times are less comparable above 1.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds per cell; a cell that takes longer is stopped and recorded as a timeout.")
@click.option("--resume", is_flag=True, help="Keep the successful cells already in OUT/cells.jsonl (same data "
              "hash, algorithm, seed, --max-rows, --preprocess) and run only the rest.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary and tests as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no tables.")
def benchmark(datasets: str, algorithms: str, seeds: int, max_rows: int | None, label_column: str, metric: str,
              alpha: float, preprocess: tuple[str, ...], out: str, jobs: int, timeout: float | None, resume: bool,
              as_json: bool, quiet: bool) -> None:
    """Benchmark detectors on every dataset of a folder (ADBench protocol) and test the differences.

    Each algorithm is fitted on every row of each dataset (labels unused) and scores the same rows;
    ROC-AUC and PR-AUC against the labels, averaged over seeds. Per algorithm: mean ROC-AUC, mean PR-AUC
    and average rank; Friedman test, Nemenyi critical difference, pairwise Wilcoxon tests with Holm's
    correction. A failing cell is recorded and the run goes on.
    """
    from adpipe.core.benchmark import benchmark as run_benchmark

    command = ["adpipe", "benchmark", "--datasets", datasets, "--algorithms", algorithms, "--seeds", str(seeds)]
    for flag, value in (("--max-rows", max_rows), ("--label-column", label_column), ("--metric", metric),
                        ("--alpha", alpha), ("--out", out), ("--jobs", jobs), ("--timeout", timeout)):
        command += [flag, str(value)] if value is not None else []
    for stage in preprocess:
        command += ["--preprocess", stage]
    command = shlex.join(command + (["--resume"] if resume else []))  # every setting, defaults included
    result = run_benchmark(datasets, algorithms, seeds=seeds, max_rows=max_rows, label_column=label_column,
                           out=out, jobs=jobs, timeout=timeout, resume=resume, metric=metric, alpha=alpha,
                           preprocess=preprocess, progress=not quiet and not as_json, command=command)
    if as_json:
        click.echo(json.dumps({"out": out, "summary": result.summary["per_algorithm"], "tests": result.tests},
                              indent=2, default=str))
    elif not quiet:
        console = _console()
        render(result, console)
        console.print(f"wrote {escape(out)}/results.json, results.md, report.html")
