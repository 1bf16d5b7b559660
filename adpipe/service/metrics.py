"""The service's Prometheus metrics, on the app's own registry, and the ASGI middleware counting requests.

Requests are labelled by route template (``/v1/models/{name}/score``), never by raw path, so label
cardinality stays bounded; unmatched paths are ``<unmatched>``.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.routing import Match

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "<unmatched>"


class ServiceMetrics:
    """Requests, latency, rows scored, anomalies, model versions, drift and jobs."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("adpipe_http_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("adpipe_http_request_duration_seconds", "Time to answer a request, by route",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.rows = Counter("adpipe_rows_scored", "Records scored", ["model"], registry=r)
        self.rejected = Counter("adpipe_rows_rejected", "Records of batches that could not be scored", ["model"],
                                registry=r)
        self.anomalies = Counter("adpipe_anomalies", "Records flagged as anomalies", ["model"], registry=r)
        self.model_info = Gauge("adpipe_model_info", "Model versions loaded in this server (value 1)",
                                ["model", "version", "model_version"], registry=r)
        self.default_version = Gauge("adpipe_model_default_version", "The version scoring uses by default",
                                     ["model"], registry=r)
        self.drift_events = Counter("adpipe_drift_events", "Drift events seen in scored batches",
                                    ["model", "feature", "test"], registry=r)
        self.drift_flag = Gauge("adpipe_drift_detected", "1 once drift was detected on a feature of a model",
                                ["model", "feature"], registry=r)
        self.jobs = Gauge("adpipe_jobs", "Fit jobs by status", ["status"], registry=r)
        for status in ("queued", "running", "succeeded", "failed"):
            self.jobs.labels(status).set(0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _route_of(app: Any, scope: dict) -> str:
    route = scope.get("route")
    if route is not None:
        return getattr(route, "path", UNMATCHED)
    for candidate in getattr(app, "routes", ()):  # answered before routing (e.g. 413 from a middleware)
        try:
            match, _ = candidate.matches(scope)
        except Exception:
            continue
        if match == Match.FULL:
            return getattr(candidate, "path", UNMATCHED)
    return UNMATCHED


class MetricsMiddleware:
    """Pure ASGI middleware: count every HTTP request and time it by route template."""

    def __init__(self, app: Any, metrics: ServiceMetrics, router_app: Any):
        self.app, self.metrics, self.router_app = app, metrics, router_app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = _route_of(self.router_app, scope)
            self.metrics.requests.labels(route, scope.get("method", ""), str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
