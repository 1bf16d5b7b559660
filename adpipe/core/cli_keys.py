"""``adpipe keys create | list | revoke``: the API keys of ``adpipe serve`` (stored hashed)."""

from __future__ import annotations

import json

import click
from rich.markup import escape
from rich.table import Table

from adpipe.core.cli import CONTEXT, _console, cli

ROLE_CHOICES = ("read", "score", "admin")  # as adpipe.service.keys.ROLES; each includes the ones before it

keys_file_option = click.option("--keys-file", required=True, type=click.Path(dir_okay=False),
                                envvar="ADPIPE_SERVE_KEYS_FILE",
                                help="The keys file (YAML, mode 0600) [env ADPIPE_SERVE_KEYS_FILE].")


@cli.group(context_settings=CONTEXT)
def keys() -> None:
    """API keys of `adpipe serve`: create (shown once), list, revoke. Only their SHA-256 is stored."""


@keys.command("create")
@click.argument("name")
@click.option("--role", required=True, type=click.Choice(ROLE_CHOICES),
              help="read: list and inspect; score: also score; admin: also promote and fit.")
@keys_file_option
def keys_create(name: str, role: str, keys_file: str) -> None:
    """Create a key NAME and print it (only now: the file keeps its hash). A running server accepts it at once."""
    from adpipe.service.keys import create_key

    key, entry = create_key(keys_file, name, role)
    click.echo(key)
    click.echo(f"created key {entry.name!r} (role {role}) in {keys_file}; it is shown only this once: "
               "store it in a secret manager", err=True)


@keys.command("list")
@keys_file_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (name, roles, created_at, prefix).")
def keys_list(keys_file: str, as_json: bool) -> None:
    """The keys by name, roles, creation time and first characters (never the key or its hash)."""
    from adpipe.service.keys import read_keys

    entries = read_keys(keys_file)
    if as_json:
        click.echo(json.dumps([e.public() for e in entries], indent=2))
        return
    console = _console()
    if not entries:
        console.print(f"no keys in {escape(keys_file)}")
        return
    table = Table(title=f"API keys in {escape(keys_file)}", title_justify="left")
    for col in ("name", "roles", "created (UTC)", "starts with"):
        table.add_column(col)
    for e in entries:
        table.add_row(escape(e.name), ", ".join(e.roles), e.created_at, escape(e.prefix + "..."))
    console.print(table)


@keys.command("revoke")
@click.argument("name")
@keys_file_option
def keys_revoke(name: str, keys_file: str) -> None:
    """Remove the key NAME. A running server refuses it from its next request on (no restart)."""
    from adpipe.service.keys import revoke_key

    revoke_key(keys_file, name)
    click.echo(f"revoked key {name!r} in {keys_file}")
