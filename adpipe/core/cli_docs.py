"""``adpipe docs``: write the reference documentation generated from the installed plugins' Params."""

from __future__ import annotations

import click

from adpipe.core.cli import CONTEXT, cli


@cli.command("docs", context_settings=CONTEXT)
@click.option("--out", default="docs/reference", show_default=True, type=click.Path(file_okay=False),
              help="Folder the pages are written to (created if missing).")
@click.option("--format", "fmt", type=click.Choice(["md"]), default="md", show_default=True,
              help="Output format.")
def docs(out: str, fmt: str) -> None:
    """Reference pages for every installed plugin (one per kind) and the config sections, from their Params.

    The output is deterministic (sorted, no dates), so it can be committed: regenerate it after adding or
    changing a plugin and review the diff.
    """
    from adpipe.core.reference import write

    written = write(out)
    click.echo(f"wrote {len(written)} pages to {out}: {', '.join(p.name for p in written)}")
