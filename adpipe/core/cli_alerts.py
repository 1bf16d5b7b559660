"""``adpipe alerts ...``: the outbox's delivery log, retries and silences."""

from __future__ import annotations

import getpass
import json
import time
from datetime import datetime, timezone

import click
from rich.markup import escape
from rich.table import Table

from adpipe.core.cli import CONTEXT, _console, cli, config_args, run_args
from adpipe.core.errors import ConfigError

outbox_option = click.option("--outbox", type=click.Path(dir_okay=False), envvar="ADPIPE_ALERTS_DB",
                             help="Alert outbox (SQLite) [env ADPIPE_ALERTS_DB; default ~/.adpipe/alerts.db].")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _outbox(path: str | None):
    from adpipe.core.alerting.outbox import Outbox

    return Outbox(path)


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


@cli.group(context_settings=CONTEXT)
def alerts() -> None:
    """Alert delivery: the outbox log, retries of undelivered alerts, silences."""


@alerts.command("log")
@outbox_option
@click.option("--status", type=click.Choice(["pending", "delivered", "failed"]), help="Only this status.")
@click.option("--limit", default=50, show_default=True, help="Newest notifications shown.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def alerts_log(outbox: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """Each notification's delivery status, attempts and last error."""
    box = _outbox(outbox)
    rows = box.log(limit, status)
    if as_json:
        click.echo(json.dumps({"outbox": str(box.path), "counts": box.counts(), "notifications": rows}, indent=2))
        return
    console = _console()
    table = Table(title=f"notifications in {escape(str(box.path))}", title_justify="left")
    for col in ("id", "channel", "status", "alerts", "attempts", "created", "delivered", "title / error"):
        table.add_column(col)
    for r in rows:
        colour = {"delivered": "green", "failed": "red"}.get(r["status"], "yellow")
        table.add_row(str(r["id"]), escape(r["channel"]), f"[{colour}]{r['status']}[/{colour}]", str(r["alerts"]),
                      str(r["attempts"]), _when(r["created"]), _when(r["delivered"]),
                      escape(r["error"] or r["title"] or ""))
    console.print(table)
    counts = box.counts()
    console.print("alerts: " + (", ".join(f"{v:,} {k}" for k, v in counts["alerts"].items()) or "none"))


@alerts.command("retry", context_settings={**CONTEXT, "ignore_unknown_options": True})
@run_args
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to keep trying.")
def alerts_retry(args: tuple[str, ...], timeout: float) -> None:
    """Send again what a config's channels left undelivered (failed ones included)."""
    from adpipe.core.alerting import NotifyChannel
    from adpipe.core.config import load_config
    from adpipe.core.context import RunContext

    config, overrides = config_args(args)
    cfg = load_config(config, overrides, need_detector=False)
    if not cfg.alerts:
        raise ConfigError(f"{cfg.path} has no alert channels.", hint="add alerts: [{type: webhook, url: ...}]")
    ctx = RunContext(pipeline=cfg.name, base_dir=cfg.base_dir, config_path=cfg.path)
    for spec in cfg.alerts:
        channel = spec.build()
        if not isinstance(channel, NotifyChannel):
            continue  # a channel without an outbox (e.g. log) has nothing to retry
        channel.open(ctx)
        revived = channel._dispatcher.outbox.retry_failed(channel._dispatcher.name)
        channel.params.flush_timeout = timeout
        channel.close()
        stats = channel.stats()
        click.echo(f"{channel._dispatcher.name}: {revived} failed notification(s) retried; "
                   f"{stats.get('notifications_delivered', 0)} delivered, "
                   f"{stats.get('notifications_failed', 0)} failed, {stats.get('pending', 0)} still pending")


def _duration(text: str) -> float:
    try:
        return float(text[:-1]) * UNITS[text[-1]] if text[-1] in UNITS else float(text)
    except (ValueError, IndexError):
        raise click.BadParameter(f"{text!r} is not a duration like 30m, 2h or 1d") from None


@alerts.command("silence")
@click.argument("matchers", nargs=-1, required=True, metavar="LABEL=VALUE...")
@click.option("--duration", default="2h", show_default=True, help="How long: 30m, 2h, 1d.")
@click.option("--comment", default="", help="Why.")
@outbox_option
def alerts_silence(matchers: tuple[str, ...], duration: str, comment: str, outbox: str | None) -> None:
    """Mute alerts whose labels match every LABEL=VALUE (e.g. pipeline=fraud severity=medium)."""
    parsed = {}
    for m in matchers:
        key, eq, value = m.partition("=")
        if not eq or not key:
            raise click.BadParameter(f"{m!r} is not LABEL=VALUE")
        parsed[key] = value
    now = time.time()
    try:
        user = getpass.getuser()
    except Exception:
        user = None
    sid = _outbox(outbox).add_silence(parsed, now, now + _duration(duration), comment, user)
    click.echo(f"silence {sid}: {parsed} until {_when(now + _duration(duration))} UTC")


@alerts.command("silences")
@outbox_option
@click.option("--all", "show_all", is_flag=True, help="Include expired silences.")
def alerts_silences(outbox: str | None, show_all: bool) -> None:
    """Active silences (ids, matchers, end time)."""
    for s in _outbox(outbox).silences(active_only=not show_all):
        click.echo(f"{s['id']}: {s['matchers']} {_when(s['starts'])} -> {_when(s['ends'])} UTC "
                   f"{s['comment']} ({s['created_by'] or '?'})")


@alerts.command("expire")
@click.argument("silence_id", type=int)
@outbox_option
def alerts_expire(silence_id: int, outbox: str | None) -> None:
    """End a silence now."""
    if not _outbox(outbox).expire_silence(silence_id):
        raise ConfigError(f"No silence {silence_id}.", hint="`adpipe alerts silences --all` lists them")
    click.echo(f"silence {silence_id} expired")
