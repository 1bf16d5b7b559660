"""OpenTelemetry spans: a run span (``adpipe.run`` / ``adpipe.fit``) with one child span per stage.

Only ``opentelemetry-api`` is needed: without an SDK every span is a no-op (and :func:`stage_span`
skips even that). Turn tracing on with the standard variables, read by :func:`configure` (the CLI calls
it)::

    OTEL_TRACES_EXPORTER=otlp OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 adpipe run config=...
    OTEL_TRACES_EXPORTER=console adpipe run config=...     # spans as JSON lines on stderr

A program that sets its own tracer provider (or runs under ``opentelemetry-instrument``) gets adpipe's
spans in its traces without calling :func:`configure`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from adpipe.core.errors import ConfigError

tracer = trace.get_tracer("adpipe")
log = logging.getLogger("adpipe.engine")
EXPORTERS = ("console", "otlp", "none")
INSTALL = "pip install 'adpipe[otel]'"


NO_SPAN: Span = trace.INVALID_SPAN  # what callers get when tracing is off (set_attribute etc. do nothing)
if "OTEL_PYTHON_TRACER_PROVIDER" in os.environ:
    trace.get_tracer_provider()  # a provider named by the environment is loaded now, so enabled() sees it


def enabled() -> bool:
    """True once a tracer provider (an SDK) is set; False means every span would be a no-op."""
    provider = getattr(trace, "_TRACER_PROVIDER", False)  # the API's global: a fast check per stage
    if provider is False:  # not there in some future API version: the public (slower) check
        return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    return provider is not None


@contextmanager
def stage_span(stage: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Span]:
    """A child span ``adpipe.<stage>`` of the current span; attribute keys get the ``adpipe.`` prefix."""
    attrs = {"adpipe.stage": stage, **{f"adpipe.{k}": v for k, v in (attributes or {}).items() if v is not None}}
    with tracer.start_as_current_span(f"adpipe.{stage}", attributes=attrs) as span:
        yield span


@contextmanager
def run_span(name: str, pipeline: str, **attributes: Any) -> Iterator[Span]:
    """The span of a whole run (``adpipe.run``) or fit (``adpipe.fit``); an exception sets status error."""
    attrs = {"adpipe.pipeline": pipeline, **{f"adpipe.{k}": v for k, v in attributes.items() if v is not None}}
    with tracer.start_as_current_span(name, attributes=attrs, record_exception=True,
                                      set_status_on_exception=True) as span:
        yield span


def finish(span: Span, summary: Any) -> None:
    """Copy a run summary's outcome onto its run span."""
    if not span.is_recording():
        return
    span.set_attributes({
        "adpipe.run_id": summary.run_id, "adpipe.model_version": summary.model_version,
        "adpipe.status": summary.status, "adpipe.rows_in": summary.rows_in,
        "adpipe.rows_scored": summary.rows_scored, "adpipe.rows_rejected": summary.rows_rejected,
        "adpipe.anomalies": summary.anomalies, "adpipe.anomaly_rate": summary.anomaly_rate,
        "adpipe.batches": summary.batches,
    })
    span.set_status(Status(StatusCode.OK))


def configure(env: Mapping[str, str] | None = None) -> bool:
    """Set up the SDK from the standard OTel variables; returns whether spans are now exported.

    ``OTEL_TRACES_EXPORTER``: ``console`` (JSON lines on stderr), ``otlp`` (``OTEL_EXPORTER_OTLP_ENDPOINT``,
    ``OTEL_EXPORTER_OTLP_PROTOCOL`` http/protobuf or grpc), several comma-separated, or ``none`` (default).
    ``OTEL_SERVICE_NAME`` names the service (default ``adpipe``). An existing tracer provider is kept.
    """
    env = os.environ if env is None else env
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    names = [n for n in names if n != "none"]
    if not names or env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise ConfigError(f"OTEL_TRACES_EXPORTER names an unknown exporter '{unknown[0]}'.",
                          hint=f"use one or more of {', '.join(EXPORTERS)} (comma-separated)")
    if enabled():  # the host program set up tracing already: use its provider
        return True
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
    except ImportError as exc:
        raise ConfigError(f"OTEL_TRACES_EXPORTER={env['OTEL_TRACES_EXPORTER']} needs the OpenTelemetry SDK, "
                          "which is not installed.", hint=f"{INSTALL}, or unset OTEL_TRACES_EXPORTER") from exc
    resource = Resource.create({} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: "adpipe"})
    provider = TracerProvider(resource=resource)
    for name in names:
        if name == "console":
            exporter = ConsoleSpanExporter(out=sys.stderr, formatter=lambda s: s.to_json(indent=None) + "\n")
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(env)))
    trace.set_tracer_provider(provider)
    return True


def _otlp_exporter(env: Mapping[str, str]):
    protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf").lower()
    if protocol not in ("http/protobuf", "grpc"):
        raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported.",
                          hint="use http/protobuf (port 4318, the default) or grpc (port 4317)")
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        extra = "pip install opentelemetry-exporter-otlp-proto-grpc" if protocol == "grpc" else INSTALL
        raise ConfigError(f"OTEL_TRACES_EXPORTER=otlp ({protocol}) needs the OTLP exporter, which is not installed.",
                          hint=f"{extra}, or unset OTEL_TRACES_EXPORTER") from exc
    return OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_ENDPOINT, _HEADERS, _TIMEOUT itself


@contextmanager
def observe(kind: str, pipeline: str, **attributes: Any) -> Iterator[Span]:
    """A run or fit: its span ``adpipe.<kind>``, its log fields (:func:`adpipe.core.logs.bind`), and a
    log line when it starts, and one when it fails (with the error type and the seconds it ran)."""
    from adpipe.core import logs

    started = time.perf_counter()
    with logs.bind(pipeline=pipeline), run_span(f"adpipe.{kind}", pipeline, **attributes) as span:
        log.info("%s of %s started", kind, pipeline)
        try:
            yield span
        except BaseException as exc:
            seconds = time.perf_counter() - started
            log.error("%s of %s failed after %.2f s: %s: %s", kind, pipeline, seconds, type(exc).__name__,
                      getattr(exc, "message", exc), extra={"status": "failed", "error_type": type(exc).__name__,
                                                           "seconds": round(seconds, 4)})
            raise
