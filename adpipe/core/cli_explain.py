"""``adpipe explain model=REF data=PATH``: why records were flagged, and which features matter most."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import click
import pandas as pd

from adpipe.core import schema
from adpipe.core.cli import CONTEXT, _console, _options, cli, split_args, store_option, trust_options
from adpipe.core.errors import ConfigError, SinkError
from adpipe.core.jsonable import jsonable

OUT_SUFFIXES = (".jsonl", ".ndjson", ".csv", ".parquet", ".pq")
HTML_ROWS = 200  # explained records listed in the HTML report


@cli.command(context_settings={**CONTEXT, "ignore_unknown_options": True})
@click.argument("args", nargs=-1, metavar="model=REF data=PATH")
@store_option
@_options(trust_options)
@click.option("--top", type=click.IntRange(min=1), help="Features named per record [default: the model's "
              "explain.top_features, 3].")
@click.option("--all-rows", is_flag=True, help="Explain every row, not only the flagged ones.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the explanations to FILE (.jsonl, .csv or "
              ".parquet; contributions as JSON text in .csv and .parquet).")
@click.option("--importance", is_flag=True, help="Also show global feature importance: the mean absolute "
              "contribution over the explained rows.")
@click.option("--html", type=click.Path(dir_okay=False), help="Write an HTML report (importance bar chart, "
              "explained records).")
@click.option("--json", "as_json", is_flag=True, help="Print the explanations (and importance) as JSON.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1),
              help="Records shown in the terminal (the highest scores first).")
@click.option("--method", default="auto", show_default=True,
              type=click.Choice(["auto", "occlusion", "tail_scores", "detector"]),
              help="How contributions are computed (auto: the fastest path the detector allows).")
def explain(args: tuple[str, ...], store: str | None, trust: bool, strict_versions: bool, top: int | None,
            all_rows: bool, out: str | None, importance: bool, html: str | None, as_json: bool, limit: int,
            method: str) -> None:
    """Explain the flagged records of DATA: the features that raised each score, in one sentence.

    REF is a model file, NAME, NAME@VERSION or NAME@STAGE. Each flagged record gets its most
    contributing features compared with their typical training values ("amount 9,400 is 12σ above the
    typical 80"); --importance ranks the features over all explained records.
    """
    from adpipe.core.explain import contributions, describe, importance_table
    from adpipe.core.frames import to_frame
    from adpipe.core.model import load_model

    found, _ = split_args(args, ("model", "data"), overrides=False)
    ref, data = found["model"], found["data"]
    if out and Path(out).suffix.lower() not in OUT_SUFFIXES:
        raise ConfigError(f"--out {out}: unknown file type {Path(out).suffix or '(none)'!r}.",
                          hint="name a .jsonl, .csv or .parquet file")
    model = load_model(ref, store=store, trusted=trust, strict_versions=strict_versions)
    frame = to_frame(Path(data))
    c = contributions(model, frame, rows="all" if all_rows else "flagged", method=method)
    table = describe(c, top or model.config.explain.top_features)
    ranking = importance_table(c) if importance or html else None
    if out:
        write_table(table, out)
    if html:
        write_html(html, model, ref, data, table, ranking, len(frame))
    if as_json:
        doc: dict[str, Any] = {"model": ref, "model_version": model.model_version, "data": data,
                               "method": c.method, "rows": len(frame), "explained": len(table),
                               "records": records(table)}
        if importance:
            doc["importance"] = records(ranking)
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    render(model, table, ranking if importance else None, len(frame), limit, all_rows)
    if out:
        _console().print(f"wrote {len(table):,} explanations to {out}")
    if html:
        _console().print(f"wrote the report to {html}")


# --------------------------------------------------------------------------- output
def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (numpy scalars unwrapped, NaN as null)."""
    return jsonable(table.to_dict(orient="records"))


def write_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write the explanations atomically: .jsonl keeps contributions as lists, .csv/.parquet as JSON text."""
    from adpipe.core.explain import CONTRIBUTIONS

    path = Path(path)
    suffix = path.suffix.lower()
    flat = table.copy()
    if suffix not in (".jsonl", ".ndjson"):
        flat[CONTRIBUTIONS] = [json.dumps(jsonable(v), ensure_ascii=False) for v in flat[CONTRIBUTIONS]]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        try:
            if suffix in (".jsonl", ".ndjson"):
                with open(tmp, "w", encoding="utf-8") as fh:
                    for row in records(flat):
                        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            elif suffix == ".csv":
                flat.to_csv(tmp, index=False)
            else:
                flat.to_parquet(tmp, index=False)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    except OSError as exc:
        raise SinkError(f"Cannot write {path}: {exc}", hint="check the folder exists and is writable") from None
    return path


def _keys(model, table: pd.DataFrame) -> list[str]:
    """Key columns worth showing: the configured ids (the default, every input column, is too wide)."""
    ids = model.config.columns.id
    return [c for c in (ids or []) if c in table.columns][:3]


def render(model, table: pd.DataFrame, ranking: pd.DataFrame | None, rows: int, limit: int, all_rows: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    from adpipe.core.explain import EXPLANATION

    console = _console()
    what = "explained" if all_rows else "flagged"
    console.print(f"{len(table):,} of {rows:,} rows {what} (model {escape(model.model_version)}, method "
                  f"{table.attrs.get('method', '?')})")
    if len(table):
        keys = _keys(model, table)
        shown = table.sort_values(schema.SCORE, ascending=False, kind="stable").head(limit)
        grid = Table(title_justify="left")
        for col in [*(keys or ["row"]), "probability", "severity", "explanation"]:
            grid.add_column(col, overflow="fold", justify="right" if col in ("row", "probability") else "left")
        for label, rec in shown.iterrows():
            grid.add_row(*(escape(str(rec[k])) for k in keys) if keys else [escape(str(label))],
                         f"{rec[schema.PROBABILITY]:.3f}", escape(str(rec[schema.SEVERITY])),
                         escape(rec[EXPLANATION]))
        console.print(grid)
        if len(table) > limit:
            console.print(f"… {len(table) - limit:,} more (--limit N shows more; --out FILE writes all)")
    if ranking is not None and len(table):
        console.print(importance_grid(ranking))
    elif ranking is not None:
        console.print("no rows to rank the features on (--all-rows ranks them over every row)")


def importance_grid(ranking: pd.DataFrame):
    from rich.markup import escape
    from rich.table import Table

    n = int(ranking["rows"].iloc[0]) if len(ranking) else 0
    grid = Table(title=f"feature importance (mean |contribution| over {n:,} rows)", title_justify="left")
    for col in ("feature", "importance", "share", ""):
        grid.add_column(col, justify="left" if col in ("feature", "") else "right")
    top = float(ranking["importance"].max()) if len(ranking) else 0.0
    for rec in ranking.itertuples():
        bar = "█" * int(round(20 * rec.importance / top)) if top > 0 else ""
        grid.add_row(escape(str(rec.feature)), f"{rec.importance:.4g}", f"{100 * rec.share:.1f} %", bar)
    return grid


def write_html(path: str | Path, model, ref: str, data: str, table: pd.DataFrame, ranking: pd.DataFrame,
               rows: int) -> Path:
    from adpipe.core.explain import EXPLANATION
    from adpipe.core.report import Report, new_figure

    page = Report(f"Explanations: {model.config.name}", subtitle=f"model {ref} ({model.model_version}) · {data}")
    page.text(f"{len(table):,} of {rows:,} rows explained; contributions by {table.attrs.get('method', '?')} "
              "(the drop in the raw anomaly score when a feature takes its typical training value).", note=True)
    page.heading("Feature importance")
    if not len(table):
        page.text("No rows to rank the features on (--all-rows ranks them over every row).")
    elif ranking["importance"].max() > 0:
        shown = ranking.head(30).iloc[::-1]
        fig, ax = new_figure(7, 0.8 + 0.3 * len(shown))
        ax.barh([str(f) for f in shown["feature"]], shown["importance"], color="#4477aa")
        ax.set_xlabel("mean |contribution| (raw score drop)")
        page.figure(fig, "feature importance bar chart")
    page.table(ranking.assign(share=ranking["share"] * 100).rename(columns={"share": "share %"})
               .to_dict(orient="records"))
    page.heading("Explained records")
    shown = table.sort_values(schema.SCORE, ascending=False, kind="stable").head(HTML_ROWS)
    keys = _keys(model, table)
    page.table([{**({k: rec[k] for k in keys} if keys else {"row": str(label)}),
                 "probability": float(rec[schema.PROBABILITY]),
                 "severity": rec[schema.SEVERITY], "explanation": rec[EXPLANATION]}
                for label, rec in shown.iterrows()], digits=3)
    if len(table) > HTML_ROWS:
        page.text(f"The {HTML_ROWS} highest-scoring of {len(table):,} records are listed.")
    try:
        return page.write(path)
    except OSError as exc:
        raise SinkError(f"Cannot write {path}: {exc}", hint="check the folder is writable") from None
