"""The ``adpipe`` command line.

    adpipe run config=configs/fraud.yaml detector=lof threshold.contamination=0.02
    adpipe fit config=configs/fraud.yaml            # a new version of the model `fraud` in the store
    adpipe score model=fraud@production config=configs/fraud.yaml
    adpipe models list | show | compare | promote | rollback | delete
    adpipe validate config=configs/fraud.yaml
    adpipe config config=configs/fraud.yaml detector=ecod
    adpipe plugins list --kind detector
    adpipe plugins show iforest

Arguments after the command are ``config=PATH`` plus Hydra overrides
(``key=value``, ``+key=value``, ``~key``, ``group=option``) and ``env=NAME``
(merge ``<config's folder>/env/NAME.yaml``; see docs/configuration.md).
"""

from __future__ import annotations

import json
import logging
import sys
import traceback

import click

from adpipe.core.errors import EXIT_CODES, AdpipeError, ConfigError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


EXAMPLES = {"config": "configs/fraud.yaml", "model": "fraud@production", "data": "data.csv",
            "algorithms": "[iforest,lof,ecod]"}
PLACEHOLDERS = {"config": "PATH", "model": "REF", "data": "PATH", "reference": "PATH", "label": "COLUMN",
                "algorithms": "[A,B,...]"}


def split_args(args: tuple[str, ...], keys: tuple[str, ...] = ("config",), optional: tuple[str, ...] = (),
               overrides: bool = True) -> tuple[dict[str, str], list[str]]:
    """Separate ``config=PATH`` (and other ``keys``, e.g. ``model=REF``; ``optional`` ones may be left out)
    from the Hydra overrides. With ``overrides=False`` the command takes nothing else."""
    ctx = click.get_current_context(silent=True)
    command = ctx.info_name if ctx else "run"
    found: dict[str, str] = {}
    rest = []
    for arg in args:
        key, eq, value = arg.partition("=")
        if eq and key in (*keys, *optional):
            found[key] = value
        elif overrides:
            rest.append(arg)
        else:
            usage = " ".join([*(f"{k}={PLACEHOLDERS.get(k, 'VALUE')}" for k in keys),
                              *(f"[{k}={PLACEHOLDERS.get(k, 'VALUE')}]" for k in optional)])
            raise ConfigError(f"Unexpected argument '{arg}'.", hint=f"adpipe {command} {usage} [OPTIONS]")
    for key in (*keys, *(k for k in optional if k in found)):
        if not found.get(key):
            example = " ".join(f"{k}={EXAMPLES.get(k, PLACEHOLDERS.get(k, 'VALUE'))}" for k in keys)
            raise ConfigError(f"No {key} given.", hint=f"pass {key}={PLACEHOLDERS.get(key, key.upper())}, "
                                                       f"e.g. adpipe {command} {example}")
    return found, rest


def config_args(args: tuple[str, ...]) -> tuple[str, list[str]]:
    found, overrides = split_args(args)
    return found["config"], overrides


@click.group(context_settings=CONTEXT, epilog="Exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()))
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("--log-format", type=click.Choice(["text", "json"], case_sensitive=False), default="text",
              envvar="ADPIPE_LOG_FORMAT", show_default=True,
              help="Log lines as text or as JSON lines (timestamp, level, logger, message, run fields) "
                   "[env ADPIPE_LOG_FORMAT].")
@click.option("--log-file", type=click.Path(dir_okay=False), envvar="ADPIPE_LOG_FILE",
              help="Append log lines to this file instead of stderr [env ADPIPE_LOG_FILE].")
@click.version_option(package_name="adpipe")
@click.pass_context
def cli(ctx: click.Context, debug: bool, log_format: str, log_file: str | None) -> None:
    """adpipe: anomaly-detection pipelines from YAML configs.

    Tracing: set OTEL_TRACES_EXPORTER=console|otlp (and OTEL_EXPORTER_OTLP_ENDPOINT) for OpenTelemetry
    spans per run and stage; needs pip install 'adpipe[otel]'.
    """
    from adpipe.core import logs, tracing

    ctx.obj = {"debug": debug, "log_format": log_format, "log_file": log_file}
    logs.configure(log_format, log_file, level=logging.DEBUG if debug else logging.WARNING)
    tracing.configure()


run_args = click.argument("args", nargs=-1, metavar="config=PATH [OVERRIDES]...")


@cli.command(context_settings={**CONTEXT, "ignore_unknown_options": True})
@run_args
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary table.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
def run(args: tuple[str, ...], quiet: bool, as_json: bool) -> None:
    """Fit the pipeline and score its source into every sink."""
    from adpipe.core.engine import Pipeline

    config, overrides = config_args(args)
    pipeline = Pipeline.from_config(config, overrides)
    summary = pipeline.run(progress=not quiet and not as_json)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2, default=str))
    elif not quiet:
        summary.render(_console())


store_option = click.option("--store", type=click.Path(file_okay=False), envvar="ADPIPE_STORE",
                            help="Model store folder [env ADPIPE_STORE; default ~/.adpipe/models].")
trust_options = [
    click.option("--trust", is_flag=True, help="Load the model even if it is not signed with this machine's key "
                 "(loading runs code from the file: only for files you trust)."),
    click.option("--strict-versions", is_flag=True, help="Refuse a model made with another major.minor version "
                 "of numpy, pandas, scikit-learn, scipy or PyOD (default: warn)."),
]


def _options(options):
    def wrap(fn):
        for opt in reversed(options):
            fn = opt(fn)
        return fn
    return wrap


@cli.command(context_settings={**CONTEXT, "ignore_unknown_options": True})
@run_args
@store_option
@click.option("--out", type=click.Path(dir_okay=False), help="Write the model to this file instead of the store.")
@click.option("-q", "--quiet", is_flag=True, help="Only print the model reference.")
@click.option("--json", "as_json", is_flag=True, help="Print the model's metadata as JSON.")
def fit(args: tuple[str, ...], store: str | None, out: str | None, quiet: bool, as_json: bool) -> None:
    """Fit the pipeline and save the model: a new version in the store (or a file with --out)."""
    from adpipe.core.engine import Pipeline
    from adpipe.core.runner import fitting_status
    from adpipe.core.store import ModelStore

    config, overrides = config_args(args)
    pipeline = Pipeline.from_config(config, overrides)
    with fitting_status(not quiet and not as_json):
        model = pipeline.fit()
    if out:
        ref, path = out, model.save(out)
    else:
        stored = ModelStore(store).add(model)
        ref, path = stored.ref, stored.path
    if as_json:
        click.echo(json.dumps({"ref": ref, "path": str(path), **model.metadata}, indent=2, default=str))
    elif quiet:
        click.echo(ref)
    else:
        from adpipe.core.cli_models import render_fit

        render_fit(_console(), ref, path, model.metadata)


@cli.command(context_settings={**CONTEXT, "ignore_unknown_options": True})
@click.argument("args", nargs=-1, metavar="model=REF config=PATH [OVERRIDES]...")
@store_option
@_options(trust_options)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary table.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
def score(args: tuple[str, ...], store: str | None, trust: bool, strict_versions: bool, quiet: bool,
          as_json: bool) -> None:
    """Score the config's source into its sinks with a saved model (nothing is fitted).

    REF is a model file, NAME (newest version), NAME@VERSION, NAME@STAGE or an MLflow URI
    (models:/NAME/VERSION). The model brings columns, preprocessing, detector, calibration, threshold
    and severity; the config brings source, sinks, reject sink, alerts and engine settings.
    """
    from adpipe.core.config import load_config
    from adpipe.core.engine import Pipeline
    from adpipe.core.model import is_path_ref, load_model

    found, overrides = split_args(args, ("model", "config"))
    cfg = load_config(found["config"], overrides, need_detector=False)
    model = load_model(found["model"], store=store, trusted=trust, strict_versions=strict_versions)
    ref = None if is_path_ref(found["model"]) or "://" in found["model"] or ":/" in found["model"] else found["model"]
    summary = Pipeline(cfg).run(model=model, progress=not quiet and not as_json, model_ref=ref, store=store,
                                trusted=trust)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2, default=str))
    elif not quiet:
        summary.render(_console())


@cli.command(context_settings={**CONTEXT, "ignore_unknown_options": True})
@run_args
def validate(args: tuple[str, ...]) -> None:
    """Check a config (and every stage's parameters) without running it."""
    from adpipe.core.config import load_config

    config, overrides = config_args(args)
    cfg = load_config(config, overrides)
    stages = 2 + len(cfg.preprocess) + len(cfg.sinks) + len(cfg.alerts) + bool(cfg.source)
    click.echo(f"{cfg.path}: valid ({cfg.name}: {stages} stages, detector {cfg.detector.type})")


@cli.command("config", context_settings={**CONTEXT, "ignore_unknown_options": True})
@run_args
@click.option("--sources", is_flag=True, help="Print where each value came from (config file, env file, "
              "ADPIPE_OVERRIDES, command line, default) instead of the values.")
def show_config(args: tuple[str, ...], sources: bool) -> None:
    """Print the composed, validated config with every default filled in (env=NAME merges configs/env/NAME.yaml)."""
    import yaml

    from adpipe.core.config import load_config, value_sources
    from adpipe.core.secrets import mask

    config, overrides = config_args(args)
    cfg = load_config(config, overrides)
    if sources:
        origin = value_sources(config, overrides, cfg)
        width = max(map(len, origin), default=0)
        click.echo("".join(f"{key:<{width}}  {where}\n" for key, where in origin.items()), nl=False)
        return
    click.echo(yaml.safe_dump(mask(cfg.to_dict()), sort_keys=False), nl=False)


@cli.group(context_settings=CONTEXT)
def plugins() -> None:
    """List and inspect installed plugins."""


@plugins.command("list")
@click.option("--kind", type=click.Choice(["source", "preprocessor", "detector", "threshold", "sink",
                                           "alert_channel", "drift_detector", "integration"]), help="Only this kind.")
def plugins_list(kind: str | None) -> None:
    """Every installed plugin, of every kind, with its summary."""
    from rich.markup import escape
    from rich.table import Table

    from adpipe.core.registry import get_registry

    reg = get_registry()
    table = Table(show_lines=False)
    for col in ("kind", "name", "summary", "from"):
        table.add_column(col)
    for info in reg.infos(kind):
        missing = info.cls.missing_requirements()
        summary = escape(info.cls.summary()) + (f" [dim](needs {', '.join(missing)})[/dim]" if missing else "")
        table.add_row(info.kind, info.name, summary, escape(info.dist))
    console = _console()
    console.print(table)
    counts = {}
    for info in reg.infos(kind):
        counts[info.kind] = counts.get(info.kind, 0) + 1
    console.print(", ".join(f"{n} {k}s" for k, n in counts.items()))
    for f in reg.failures:
        console.print(f"[red]failed to load[/red] {escape(f'{f.entry_point} from {f.dist}: {f.error}')}")


@plugins.command("show")
@click.argument("name")
@click.option("--kind", default=None, help="Disambiguate when several kinds share the name.")
def plugins_show(name: str, kind: str | None) -> None:
    """A plugin's parameters: type, default, allowed range, description."""
    from rich.markup import escape
    from rich.table import Table

    from adpipe.core.config import describe_field
    from adpipe.core.registry import get_registry, suggest

    reg = get_registry()
    found = [i for i in reg.find(name) if kind is None or i.kind == kind]
    if not found:
        raise ConfigError(f"No plugin named '{name}'.", hint=suggest(name, sorted({i.name for i in reg.infos()})))
    console = _console()
    for info in found:
        cls = info.cls
        console.print(f"[bold]{info.name}[/bold] ({info.kind}) — {escape(cls.summary())}")
        console.print(escape(f"from distribution {info.dist} (entry point {info.entry_point}), class "
                             f"{cls.__module__}.{cls.__qualname__}"))
        doc = (cls.__doc__ or "").strip().splitlines()[1:]
        if any(line.strip() for line in doc):
            console.print(escape("\n".join(line.strip() for line in doc).strip()))
        missing = cls.missing_requirements()
        if missing:
            hint = cls.install_hint or "pip install " + " ".join(missing)
            console.print(f"[yellow]needs {', '.join(missing)}:[/yellow] {escape(hint)}")
        table = Table(title="parameters", title_justify="left")
        for col in ("name", "type / allowed", "default", "description"):
            table.add_column(col)
        for pname, field in cls.Params.model_fields.items():
            default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
            allowed = describe_field(field).split(" (")[0]
            table.add_row(field.alias or pname, escape(allowed), escape(default), escape(field.description or ""))
        console.print(table)


from adpipe.core import (  # noqa: E402,F401  (add the `alerts` and `models` groups)  # noqa: E402,F401  (add those commands)  # noqa: E402,F401
    cli_alerts,
    cli_benchmark,
    cli_compare,
    cli_docs,
    cli_drift,  # noqa: E402,F401  (add the `drift` group)
    cli_explain,
    cli_keys,
    cli_models,
    cli_profile,
    cli_serve,
    cli_threshold,
    cli_tune,
)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: maps errors to exit codes, no tracebacks unless --debug."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="adpipe", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        _console(stderr=True).print("interrupted")
        sys.exit(130)
    except AdpipeError as exc:
        if debug:
            traceback.print_exc()
        _print_error(type(exc).__name__, exc)
        sys.exit(exc.exit_code)
    except Exception as exc:  # a bug: say so
        if debug:
            traceback.print_exc()
        _print_error("internal error", exc, hint="this is a bug in adpipe or a plugin; rerun with --debug for "
                                                   "the traceback")
        sys.exit(1)
    sys.exit(0)


def _print_error(kind: str, exc: Exception, hint: str | None = None) -> None:
    from rich.markup import escape

    err = _console(stderr=True)
    message = getattr(exc, "message", str(exc))
    err.print(f"[bold red]error[/bold red] ({kind}): {escape(message)}")
    hint = hint or getattr(exc, "hint", None)
    if hint:
        err.print(f"[bold]hint[/bold]: {escape(hint)}")


if __name__ == "__main__":
    main()
