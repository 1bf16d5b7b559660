"""``adpipe serve``: the REST API (FastAPI on uvicorn)."""

from __future__ import annotations

from pathlib import Path

import click

from adpipe.core.cli import CONTEXT, cli
from adpipe.core.errors import ConfigError

PRECEDENCE = ("Settings, lowest to highest precedence: built-in defaults < the --settings YAML file < ADPIPE_SERVE_* "
              "environment variables (e.g. ADPIPE_SERVE_PORT=9000, ADPIPE_SERVE_MODELS='[\"fraud@production\"]') < "
              "these options. The settings are validated before the server starts (exit 2 on an error).")


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


@cli.command(context_settings=CONTEXT, epilog=PRECEDENCE)
@click.option("--settings", "settings_file", type=click.Path(dir_okay=False),
              help="YAML settings file (keys as in configs/serve.yaml).")
@click.option("--host", help="Interface to bind [default 127.0.0.1; 0.0.0.0 in a container].")
@click.option("--port", type=int, help="TCP port [default 8000].")
@click.option("--store", type=click.Path(file_okay=False),
              help="Model store folder [default ADPIPE_STORE or ~/.adpipe/models].")
@click.option("--model", "models", multiple=True, metavar="REF",
              help="Model to load at start and wait for in readiness, e.g. fraud@production (repeatable).")
@click.option("--configs-dir", type=click.Path(file_okay=False), help="Folder of configs fit jobs may name "
              "(without it fit jobs are refused).")
@click.option("--keys-file", type=click.Path(dir_okay=False), help="API keys file (adpipe keys create writes it).")
@click.option("--no-auth", is_flag=True, default=None, help="Serve without API keys (loopback host only).")
@click.option("--audit-log", type=click.Path(dir_okay=False), help="Append one JSON line per request here.")
@click.option("--tls-certfile", type=click.Path(dir_okay=False), help="PEM certificate: serve HTTPS.")
@click.option("--tls-keyfile", type=click.Path(dir_okay=False), help="PEM private key of --tls-certfile.")
@click.option("--log-format", "serve_log_format", type=click.Choice(["text", "json"]),
              help="Server log lines as text or JSON [default text].")
@click.option("--trust", is_flag=True, default=None, help="Load models not signed with this machine's key.")
def serve(settings_file: str | None, host: str | None, port: int | None, store: str | None,
          models: tuple[str, ...], configs_dir: str | None, keys_file: str | None, no_auth: bool | None,
          audit_log: str | None, tls_certfile: str | None, tls_keyfile: str | None, serve_log_format: str | None,
          trust: bool | None) -> None:
    """Serve the REST API: score records, manage models, run fit jobs, expose metrics and the dashboard.

    \b
      adpipe serve --no-auth --store models --model fraud@production
      adpipe serve --settings configs/serve.yaml --port 9000
    Then: curl localhost:8000/v1/health/ready; API docs at http://HOST:PORT/docs.
    """
    settings = load_settings(settings_file, host=host, port=port, store=_path(store),
                             models=list(models) or None, configs_dir=_path(configs_dir),
                             keys_file=_path(keys_file), no_auth=no_auth, audit_log=_path(audit_log),
                             tls_certfile=_path(tls_certfile), tls_keyfile=_path(tls_keyfile),
                             log_format=serve_log_format, trusted=trust)
    check_models(settings)
    run(settings)


def load_settings(settings_file: str | None, **cli_values) -> "ServeSettings":  # noqa: F821
    """ServeSettings from the file, the environment and the options; errors become ConfigError (exit 2)."""
    from pydantic import ValidationError

    from adpipe.service.settings import ServeSettings

    try:
        return ServeSettings.load(settings_file, **cli_values)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc), hint="pass --settings an existing YAML file") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        where = f" in {settings_file}" if settings_file else ""
        raise ConfigError(f"Invalid serve settings{where}: {problems}.",
                          hint="`adpipe serve --help` lists the settings; see docs/service.md") from None
    except ValueError as exc:  # e.g. a YAML file that is not a mapping
        raise ConfigError(f"Invalid serve settings: {exc}", hint="see docs/service.md") from None


def check_models(settings) -> None:
    """Every --model must resolve in the store before the server starts."""
    from adpipe.core.errors import ModelNotFoundError
    from adpipe.core.store import ModelStore

    store = ModelStore(settings.store)
    for ref in settings.models:
        try:
            store.resolve(ref)
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(f"Cannot serve {ref}: {exc.message}", hint=exc.hint) from None


def run(settings) -> None:
    import uvicorn

    from adpipe.service.app import create_app

    if settings.log_format == "json":
        from adpipe.core import logs

        ctx = click.get_current_context(silent=True)
        logs.configure("json", (ctx.find_root().obj or {}).get("log_file") if ctx else None)
    app = create_app(settings)
    scheme = "https" if settings.tls_certfile else "http"
    shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = f"{scheme}://{shown}:{settings.port}"
    click.echo(f"adpipe serving {settings.store or 'the default store'} at {url} (API docs: {url}/docs, "
               f"dashboard: {url}/dashboard)", err=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", log_config=None,
                ssl_certfile=str(settings.tls_certfile) if settings.tls_certfile else None,
                ssl_keyfile=str(settings.tls_keyfile) if settings.tls_keyfile else None,
                proxy_headers=True, forwarded_allow_ips="127.0.0.1", server_header=False, access_log=False)
