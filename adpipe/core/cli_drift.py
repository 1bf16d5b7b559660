"""``adpipe drift ...``: the history of drift events."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from adpipe.core.cli import CONTEXT, _console, cli

db_option = click.option("--db", type=click.Path(dir_okay=False), envvar="ADPIPE_DRIFT_DB",
                         help="Drift history (SQLite) [env ADPIPE_DRIFT_DB; default ~/.adpipe/drift.db, or the "
                         "config's drift.history].")


@cli.group(context_settings=CONTEXT)
def drift() -> None:
    """Drift detection: the events recorded on features and anomaly scores."""


def _num(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


@drift.command("history")
@click.option("--pipeline", help="Only this pipeline.")
@click.option("--feature", help="Only this feature (or anomaly_score).")
@click.option("--since", help="Only events since an ISO time (2024-05-01T12:00) or for a duration back (30m, 12h, "
              "7d).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1), help="Newest events shown.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per event (JSON lines).")
@db_option
def drift_history(pipeline: str | None, feature: str | None, since: str | None, limit: int, as_json: bool,
                  db: str | None) -> None:
    """Drift events, newest first: time, pipeline, feature, test, statistic, window rows, detail."""
    from adpipe.core.drift import DriftHistory, default_path, parse_since

    if since is not None:
        try:
            parse_since(since)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from None
    path = default_path() if db is None else click.format_filename(db)
    events = []
    if Path(path).expanduser().exists():
        events = DriftHistory(path).query(pipeline=pipeline, feature=feature, since=since, limit=limit)
    if as_json:
        for e in events:
            click.echo(json.dumps(e.to_dict(), default=str))
        return
    console = _console()
    if not events:
        console.print(f"no drift recorded in {escape(str(path))}")
        return
    table = Table(title=f"drift events in {escape(str(path))}", title_justify="left")
    for col in ("time (UTC)", "pipeline", "feature", "test", "statistic", "threshold", "p", "window rows",
                "detail"):
        table.add_column(col, overflow="fold")
    for e in events:
        w = e.window
        table.add_row(e.detected_at[:19].replace("T", " "), escape(e.pipeline), escape(e.feature), escape(e.test),
                      _num(e.statistic), _num(e.threshold), _num(e.p_value),
                      f"{w['start_row']:,}-{w['end_row']:,}", escape(e.detail))
    console.print(table)
