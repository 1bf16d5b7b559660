"""The FastAPI app behind ``adpipe serve``: ``create_app(settings)``.

    from adpipe.service.app import create_app
    from adpipe.service.settings import ServeSettings
    app = create_app(ServeSettings(no_auth=True, store="models", models=["fraud@production"]))
    # uvicorn.run(app)  -- or: adpipe serve --no-auth --store models --model fraud@production

Endpoints live in ``routes_*.py``; state (runs, jobs, anomalies) in :mod:`adpipe.service.state`, served
models in :mod:`adpipe.service.models`, metrics in :mod:`adpipe.service.metrics`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from adpipe.core.store import ModelStore, parse_ref
from adpipe.service import security
from adpipe.service.errors import JSONBody, install_handlers
from adpipe.service.jobs import JobRunner
from adpipe.service.metrics import MetricsMiddleware, ServiceMetrics
from adpipe.service.models import ModelCache
from adpipe.service.settings import ServeSettings
from adpipe.service.state import State

log = logging.getLogger("adpipe.service")
API_VERSION = "1"


class Service:
    """Everything the endpoints share: settings, store, served models, state, metrics, fit jobs."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.store = ModelStore(settings.store)
        self.store.root.mkdir(parents=True, exist_ok=True)
        self.cache = ModelCache(self.store, trusted=settings.trusted)
        self.state = State(settings.state_file or self.store.root / ".service.sqlite")
        self.metrics = ServiceMetrics()
        failed = self.state.fail_unfinished("the server stopped before the job finished; submit it again")
        if failed:
            log.warning("marked %d unfinished fit job(s) failed", len(failed))
        self.jobs = JobRunner(self.state, self.store.root, settings.configs_dir, self.jobs_changed)
        self.jobs_changed()
        #: each configured model reference -> {"loaded": bool, "model": "name@N" | None, "error": str | None}
        self.models: dict[str, dict[str, Any]] = {ref: {"loaded": False, "model": None, "error": "not loaded yet"}
                                                  for ref in settings.models}
        self._load_lock = threading.Lock()

    def jobs_changed(self) -> None:
        counts = self.state.job_counts()
        for status in ("queued", "running", "succeeded", "failed"):
            self.metrics.jobs.labels(status).set(counts.get(status, 0))

    def load_configured(self, only_failed: bool = False) -> None:
        """Load every configured model reference (blocking); readiness reports the outcome per reference."""
        if not self._load_lock.acquire(blocking=not only_failed):
            return  # a load is under way already
        try:
            for ref, status in self.models.items():
                if only_failed and status["loaded"]:
                    continue
                try:
                    name, which = parse_ref(ref)
                    served = self.cache.get(name, self.cache.resolve(name, which))
                except Exception as exc:  # reported by readiness, never fatal
                    status.update(loaded=False, model=None, error=f"{type(exc).__name__}: "
                                  f"{getattr(exc, 'message', exc)}")
                    continue
                status.update(loaded=True, model=served.ref, error=None)
                self.model_loaded(served)
        finally:
            self._load_lock.release()

    def served(self, name: str, version: int):
        """The loaded version (loading it on first use: blocking)."""
        served = self.cache.cached(name, version)
        if served is None:
            served = self.cache.get(name, version)
            self.model_loaded(served)
        return served

    def model_loaded(self, served) -> None:
        self.metrics.model_info.labels(served.name, str(served.version), served.model.model_version).set(1)
        try:
            self.metrics.default_version.labels(served.name).set(self.cache.resolve(served.name))
        except Exception:  # deleted meanwhile
            pass

    def close(self) -> None:
        self.jobs.stop()
        self.state.close()


def create_app(settings: ServeSettings) -> FastAPI:
    """The adpipe API for ``settings``: every endpoint, security, metrics, the dashboard."""
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        task = asyncio.create_task(asyncio.to_thread(service.load_configured))
        try:
            yield
        finally:
            await asyncio.wait({task}, timeout=30)
            service.close()

    app = FastAPI(title="adpipe", version=API_VERSION, lifespan=lifespan, default_response_class=JSONBody,
                  description="Score records with stored anomaly-detection models, manage model versions, run "
                              "fit jobs, and watch runs, anomalies and drift. Authenticate with "
                              "`Authorization: Bearer <key>` or `X-API-Key: <key>`.")
    app.state.service = service
    install_handlers(app)

    from adpipe.service import routes_data, routes_health, routes_jobs, routes_models, routes_score

    for module in (routes_health, routes_models, routes_score, routes_jobs, routes_data):
        app.include_router(module.router)
    app.include_router(routes_health.metrics_router(settings))
    try:
        from adpipe.service.dashboard import router as dashboard_router
    except ImportError:  # the dashboard is optional
        dashboard_router = None
    if dashboard_router is not None:
        app.include_router(dashboard_router)
    security.install(app, settings)
    app.add_middleware(MetricsMiddleware, metrics=service.metrics, router_app=app.router)
    return app

