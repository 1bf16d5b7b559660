"""``adpipe profile data=PATH [reference=PATH]``: statistics, findings, drift and preprocessing suggestions."""

from __future__ import annotations

import json
import math

import click
from rich import box
from rich.markup import escape
from rich.table import Table

from adpipe.core.cli import CONTEXT, _console, cli, split_args


def _num(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.3g}" if isinstance(x, float) else f"{x:,}"


def _pct(x) -> str:
    if x is None:
        return "-"
    return "<0.1" if 0 < x < 0.05 else f"{x:.1f}"


@cli.command(context_settings={**CONTEXT, "ignore_unknown_options": True})
@click.argument("args", nargs=-1, metavar="data=PATH [reference=PATH]")
@click.option("--columns", help="Profile only these columns (comma-separated).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), help="Also write an HTML report with plots.")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON (NaN as null).")
@click.option("--sample-rows", default=100_000, show_default=True, type=click.IntRange(min=100),
              help="Rows sampled (seeded) for correlations, plots and drift tests; counts use all rows.")
@click.option("--seed", default=0, show_default=True, help="Seed of the sample.")
def profile(args: tuple[str, ...], columns: str | None, html_path: str | None, as_json: bool, sample_rows: int,
            seed: int) -> None:
    """Profile a CSV/Parquet/JSON Lines file: per-column statistics, findings (constant, ID-like,
    correlated, missing, skewed, text columns), IQR outliers, drift against a reference file, and
    preprocessing suggestions as adpipe config snippets."""
    from adpipe.core.profile import profile as make_profile

    found, _ = split_args(args, ("data",), optional=("reference",), overrides=False)
    data, reference = found["data"], found.get("reference")
    names = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    result = make_profile(data, reference, columns=names, sample_rows=sample_rows, seed=seed)
    if html_path:
        path = result.write_html(html_path)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, allow_nan=False))
        if html_path:
            _console(stderr=True).print(f"report written to {escape(str(path))}")
        return
    console = _console()
    render(console, result)
    if html_path:
        console.print(f"\nreport written to {escape(str(path))}")


def render(console, p) -> None:
    """The terminal summary: one row per column, then findings and suggestions."""
    from adpipe.core.profile import DRIFT_P, DRIFT_PSI, to_yaml
    from adpipe.core.profile_report import column_rows

    source = p.source or "data frame"
    ref = f", compared with {p.reference_source}" if p.drift else ""
    console.print(f"[bold]{escape(source)}[/bold]: {p.rows:,} rows, {len(p.columns)} columns{escape(ref)}")
    if p.sample["sampled"]:
        console.print(f"[dim]correlations, plots and drift tests use a seeded sample of {p.sample['rows']:,} rows; "
                      "counts, missing values, statistics and outliers cover all rows[/dim]")
    table = Table(title="columns", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    heads = ["column", "type", "miss %", "distinct", "mean", "std", "skew", "outl %", "flags"]
    for h in heads:
        table.add_column(h, overflow="fold", justify="left" if h in ("column", "type", "flags") else "right",
                         no_wrap=h not in ("column", "flags"), min_width=12 if h in ("column", "flags") else None)
    for row in column_rows(p):
        cells = [escape(row["column"]), row["type"], _pct(row["missing %"]), _num(row["distinct"])]
        cells += [_num(row[k]) for k in ("mean", "std", "skew")]
        cells += [_pct(row["outliers %"]), escape(row["flags"])]
        table.add_row(*cells)
    console.print(table)
    text = [c for c in p.columns if c.get("top_values") and "id-like" not in c["flags"]]
    for c in text:
        tops = ", ".join(f"{v['value']} {v['share']:.1%}" for v in c["top_values"])
        console.print(f"[bold]{escape(c['name'])}[/bold] top values: {escape(tops)}")
    if p.drift:
        table = Table(title=f"drift against {escape(p.reference_source or 'the reference')}", title_justify="left")
        for h in ("column", "test", "statistic", "p-value", "PSI", "drifted"):
            table.add_column(h, justify="left" if h in ("column", "test") else "right")
        for r in p.drift["columns"]:
            table.add_row(escape(r["column"]), r["test"] or escape(r.get("note", "")), _num(r.get("statistic")),
                          _num(r.get("p_value")), _num(r.get("psi")), "[red]yes[/red]" if r["drifted"] else "no")
        console.print(table)
        console.print(f"[dim]drifted: p < {DRIFT_P:g} (KS for numbers, chi-square for text) and PSI > {DRIFT_PSI:g} "
                      "(PSI < 0.1 stable, 0.1-0.25 moderate, > 0.25 major shift)[/dim]")
        for key, where in (("only_in_data", "only in the data"), ("only_in_reference", "only in the reference")):
            if p.drift[key]:
                console.print(f"{where}: {escape(', '.join(p.drift[key]))}")
    console.print("\n[bold]findings[/bold]")
    for f in p.findings or [{"message": "nothing to report"}]:
        console.print(f"  - {escape(f['message'])}")
    console.print("\n[bold]suggestions[/bold]")
    if not p.suggestions:
        console.print("  no preprocessing suggested")
    for s in p.suggestions:
        console.print(f"  - {escape(s['message'])}")
    if p.config:
        console.print("\n[bold]suggested config[/bold] (paste into your pipeline's YAML)")
        console.print(escape(to_yaml(p.config)))
