"""``adpipe tune``: search ``tune.space`` for the best setting, then fit and save the model with it."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from adpipe.core.cli import CONTEXT, _console, cli, config_args, run_args, store_option

SHOWN = 20  # trials listed in the terminal table


@cli.command(context_settings={**CONTEXT, "ignore_unknown_options": True})
@run_args
@store_option
@click.option("--out", type=click.Path(dir_okay=False), help="Write the model to this file instead of the store.")
@click.option("--report", "report", type=click.Path(dir_okay=False), help="Write an HTML report of the trials here.")
@click.option("--best-config", "best_config", type=click.Path(dir_okay=False),
              help="Write the best config as YAML here (runnable with adpipe run).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar; only print the model reference.")
@click.option("--json", "as_json", is_flag=True, help="Print the trials, the best setting and the model as JSON.")
def tune(args: tuple[str, ...], store: str | None, out: str | None, report: str | None, best_config: str | None,
         quiet: bool, as_json: bool) -> None:
    """Search the config's tune.space, then fit and save the model with the best setting.

    Each trial fits on the same training rows and is measured (tune.objective) on the same labelled
    validation rows. Ctrl-C stops starting new trials and fits the best setting found so far; a second
    Ctrl-C aborts.
    """
    from adpipe.core.store import ModelStore
    from adpipe.core.tuning import tune as run_tune

    config, overrides = config_args(args)
    show = not quiet and not as_json
    result = run_tune(config, overrides, progress=show)
    model = result.model
    if out:
        ref, path = out, model.save(out)
    else:
        stored = ModelStore(store).add(model)
        ref, path = stored.ref, stored.path
    written = {}
    if best_config:
        written["best_config"] = str(result.write_best_config(best_config))
    if report:
        written["report"] = str(result.write_report(report))
    if as_json:
        click.echo(json.dumps({"ref": ref, "path": str(path), "tuning": result.to_dict(), **written,
                               "validation": model.metadata.get("validation")}, indent=2, default=str))
    elif quiet:
        click.echo(ref)
    else:
        from adpipe.core.cli_models import render_fit

        console = _console()
        render_trials(console, result)
        render_fit(console, ref, path, model.metadata)
        for what, where in written.items():
            console.print(f"{what.replace('_', ' ')}: {escape(where)}")


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value, default=str)


def short_keys(keys: list[str]) -> list[str]:
    """Column labels: a key's last part (n_neighbors) unless two keys share it."""
    leaves = [k.rsplit(".", 1)[-1] for k in keys]
    return [leaf if leaves.count(leaf) == 1 else key for key, leaf in zip(keys, leaves, strict=True)]


def render_trials(console, result) -> None:
    """The ranked trials table and the best setting."""
    counts = result.counts()
    stopped = {"finished": "", "timeout": " (stopped by tune.timeout_seconds)",
               "interrupted": " (stopped by Ctrl-C)"}[result.stopped]
    console.print(f"[bold]{escape(result.name)}[/bold]: {result.method} search, {len(result.trials)} trials "
                  f"({counts['complete']} completed, {counts['failed']} failed) in {result.seconds:.1f} s{stopped}; "
                  f"{result.objective} on {result.validation_rows:,} validation rows, fitted on "
                  f"{result.training_rows:,}")
    keys = list(result.space)
    labels = short_keys(keys)
    metrics = [result.objective] + [m for m in ("roc_auc", "pr_auc", "f1") if m != result.objective]
    errors = any(t.error for t in result.trials)
    table = Table(title="trials, best first", title_justify="left")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("trial", justify="right", no_wrap=True)
    for label in labels:
        table.add_column(escape(label), overflow="fold")
    for m in metrics:
        table.add_column(m, justify="right", no_wrap=True)
    table.add_column("s", justify="right", no_wrap=True)
    if errors:
        table.add_column("error", overflow="fold", ratio=1)
    ranked = result.ranked()
    for i, t in enumerate(ranked[:SHOWN]):
        rank = str(i + 1) if t.state == "complete" else t.state
        row = [rank, str(t.number), *(escape(_value(t.params.get(k))) for k in keys),
               *(f"{t.metrics[m]:.4f}" if m in t.metrics else "-" for m in metrics), f"{t.seconds:.2f}"]
        table.add_row(*row, *([escape(t.error or "")] if errors else []))
    console.print(table)
    if len(ranked) > SHOWN:
        console.print(f"… {len(ranked) - SHOWN} more (--json or --report lists every trial)")
    best = result.best
    console.print(f"best: trial {best.number}, {result.objective} [bold]{best.value:.4f}[/bold] with "
                  + escape(", ".join(f"{k}={_value(v)}" for k, v in best.params.items())))
