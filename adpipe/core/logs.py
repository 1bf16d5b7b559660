"""Log output of every adpipe command: the default text lines, or JSON lines for log aggregators.

    adpipe --log-format json --log-file run.log run config=configs/fraud.yaml
    ADPIPE_LOG_FORMAT=json adpipe score model=fraud@production config=configs/fraud.yaml

A JSON line carries ``timestamp`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, the ``extra=``
fields of the call, and, inside a run, the run's ``pipeline`` and ``run_id`` (see :func:`bind`), plus
``trace_id``/``span_id`` when tracing is on. ``adpipe serve --log-format json`` uses the same root handler
(uvicorn's loggers propagate to it).
"""

from __future__ import annotations

import contextvars
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from adpipe.core.errors import ConfigError

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_FIELDS = "%(levelname)s %(name)s %(message)s"
_RENAME = {"levelname": "level", "name": "logger"}

#: fields of the run in progress (pipeline, run_id, ...), added to every log record by RunFields
_run: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("adpipe_run_fields", default=None)


class JsonFormatter(_JsonFormatter):
    """python-json-logger's formatter with adpipe's field names; ``timestamp`` (UTC) comes first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("rename_fields", _RENAME)
        kwargs.setdefault("timestamp", True)
        super().__init__(*args or (_FIELDS,), **kwargs)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        if "timestamp" in log_data:
            rest = {k: log_data.pop(k) for k in list(log_data) if k != "timestamp"}
            log_data.update(rest)


class RunFields(logging.Filter):
    """Adds the bound run fields (and the current trace/span ids) to records that don't carry them."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _run.get()
        if fields:
            for key, value in fields.items():
                if not hasattr(record, key):
                    setattr(record, key, value)
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid and not hasattr(record, "trace_id"):
            record.trace_id = format(ctx.trace_id, "032x")
            record.span_id = format(ctx.span_id, "016x")
        return True


class SkipReportedFailures(logging.Filter):
    """Text logs on stderr: drop the engine's "run failed" record, the CLI prints that error there itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "adpipe.engine" and getattr(record, "status", None) == "failed")


@contextmanager
def bind(**fields: Any) -> Iterator[dict[str, Any]]:
    """Within the block every log record gets these fields (JSON format); :func:`annotate` adds more."""
    token = _run.set({k: v for k, v in fields.items() if v is not None})
    try:
        yield _run.get()  # type: ignore[misc]
    finally:
        _run.reset(token)


def annotate(**fields: Any) -> None:
    """Add fields to the run bound by :func:`bind` (e.g. the run_id once it is known); no-op outside one."""
    current = _run.get()
    if current is not None:
        current.update({k: v for k, v in fields.items() if v is not None})


def check_format(fmt: str) -> str:
    fmt = (fmt or "text").strip().lower()
    if fmt not in FORMATS:
        raise ConfigError(f"Unknown log format '{fmt}'.", hint=f"use one of {', '.join(FORMATS)} "
                          "(--log-format or ADPIPE_LOG_FORMAT)")
    return fmt


def configure(fmt: str = "text", file: str | Path | None = None,
              level: int = logging.WARNING) -> logging.Handler | None:
    """Set up the root logger: ``text`` (the default lines) or ``json``, on stderr or appended to ``file``.

    The handler installed by an earlier call is replaced; handlers others installed are left alone (and,
    like :func:`logging.basicConfig`, text on stderr adds none when the root logger has handlers). With
    JSON the ``adpipe`` loggers log at INFO (run start and end, stream status), so a log aggregator sees
    every run; text keeps the quiet default (warnings, plus stream status lines).
    """
    fmt = check_format(fmt)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_adpipe", False)]:
        root.removeHandler(old)
        old.close()
    adpipe_level = logging.INFO if fmt == "json" and level > logging.INFO else logging.NOTSET
    logging.getLogger("adpipe").setLevel(adpipe_level)
    if level > logging.INFO:  # a stream's status lines, warm-up, refits and reloads
        logging.getLogger("adpipe.stream").setLevel(logging.INFO)
    if fmt == "text" and file is None and root.handlers:
        return None  # like logging.basicConfig: the host program (or pytest) set up logging already
    if file is not None:
        path = Path(file).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler: logging.Handler = logging.FileHandler(path, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"Cannot open the log file {path}: {exc.strerror or exc}.",
                              hint="pass --log-file a writable path (or leave it out to log to stderr)") from exc
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT, datefmt="%H:%M:%S"))
    handler.addFilter(RunFields())
    if fmt == "text" and file is None:  # on the terminal the CLI's own error message says it
        handler.addFilter(SkipReportedFailures())
    handler._adpipe = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    return handler
