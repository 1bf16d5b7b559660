"""API keys, roles, rate limits, body-size limits, the audit log and security headers.

- ``require(role)``: a FastAPI dependency, ``Depends(require("score"))``. It reads the key from
  ``Authorization: Bearer <key>`` or ``X-API-Key``, answers 401 (no or unknown key), 403 (the key lacks the
  role; read < score < admin) or 429 (over the key's rate limit, with ``Retry-After``), and returns the
  caller's :class:`Principal` (also left on ``request.state.principal`` for the audit log).
- ``install(app, settings)``: one pure ASGI middleware for the body-size limit (413), the security headers,
  the ``X-Request-ID`` and the audit log (one JSON line per request), plus the :class:`ApiError` handler
  that renders the errors above as ``{"error", "message", "hint"}``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from fastapi import Request
from fastapi.security import HTTPBearer

from adpipe.core.errors import ConfigError
from adpipe.service.errors import ApiError, api_error
from adpipe.service.keys import ROLES, KeysFileError, KeyStore
from adpipe.service.settings import ServeSettings
from adpipe.service.state import now

log = logging.getLogger("adpipe.service.security")
ALL_ROLES = frozenset(ROLES)
_SCOPE_KEY = "adpipe.guard"  # where the middleware leaves the Guard for require()
_COUNTED = "adpipe.counted"  # set once the request counted against a rate limit


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name and its roles (``anonymous`` with every role under --no-auth)."""

    name: str
    roles: frozenset[str] = field(default_factory=frozenset)


def _parse_limits(text: str) -> list:
    from limits import parse_many

    try:
        items = parse_many(text)
    except ValueError:
        items = []
    if not items:
        raise ConfigError(f"bad rate_limit {text!r}", hint="use the limits syntax: '50/second', '1000/minute', or "
                          "several joined by ';' ('1000/minute;50/second')")
    return sorted(items, key=lambda item: item.get_expiry())  # shortest window first: a refusal spends less


class Guard:
    """The per-app state of ``require``: the key store, the rate limits and their in-memory counters."""

    def __init__(self, settings: ServeSettings):
        self.no_auth = settings.no_auth
        if self.no_auth:
            self.keys = None
        elif settings.keys_file is None:
            raise KeysFileError("no keys_file given", hint="create one with `adpipe keys create NAME --role score "
                                "--keys-file F`, or serve with --no-auth on a loopback host")
        else:
            self.keys = KeyStore(settings.keys_file)
        self.limits = _parse_limits(settings.rate_limit)
        self._limiter: tuple[Any, Any] | None = None  # (event loop, limiter)
        self._principals: dict[tuple[str, frozenset[str]], Principal] = {}

    def principal(self, name: str, roles: frozenset[str]) -> Principal:
        p = self._principals.get((name, roles))
        if p is None:
            p = self._principals[(name, roles)] = Principal(name, roles)
        return p

    def limiter(self):
        """The moving-window limiter of the running event loop. The asyncio flavour of limits' memory storage
        expires old entries in a task of the loop; the threaded flavour would start a timer thread every
        10 ms from the request path, which shows in the latency tail. A new loop (the app served again,
        as tests do) gets fresh counters."""
        loop = asyncio.get_running_loop()
        if self._limiter is None or self._limiter[0] is not loop:
            from limits.aio.storage import MemoryStorage
            from limits.aio.strategies import MovingWindowRateLimiter

            self._limiter = (loop, MovingWindowRateLimiter(MemoryStorage()))
        return self._limiter[1]

    async def throttle(self, request: Request, bucket: str, who: str) -> None:
        """Count the request against ``bucket`` (once, however many guards the route has); 429 when any
        limit is spent."""
        if request.scope.get(_COUNTED):
            return
        request.scope[_COUNTED] = True
        limiter = self.limiter()
        for item in self.limits:
            if not await limiter.hit(item, bucket):
                reset = (await limiter.get_window_stats(item, bucket)).reset_time
                retry = max(1, math.ceil(reset - time.time()))
                raise ApiError(429, "too_many_requests", f"rate limit of {item} exceeded for {who}",
                               f"retry after {retry} s, or spread requests out (batch records with /score/batch)",
                               headers={"Retry-After": str(retry)})

    async def authenticate(self, request: Request, key: str | None, role: str) -> Principal:
        """The caller of ``request`` if its key has ``role`` and budget left; else an ApiError."""
        client = request.client.host if request.client else "unknown"
        if self.no_auth:
            principal = request.state.principal = self.principal("anonymous", ALL_ROLES)
            await self.throttle(request, "ip:" + client, f"client {client}")
            return principal
        found = self.keys.lookup(key) if key else None
        if found is None:
            # failed attempts are throttled per client address, apart from any key's budget
            await self.throttle(request, "fail:" + client, f"client {client}")
            if key:
                raise ApiError(401, "unauthorized", "unknown API key (revoked, mistyped or from another keys file)",
                               "check the key, or ask an admin for a new one (adpipe keys create)",
                               headers={"WWW-Authenticate": 'Bearer realm="adpipe", error="invalid_token"'})
            raise ApiError(401, "unauthorized", "no API key given",
                           "send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                           headers={"WWW-Authenticate": 'Bearer realm="adpipe"'})
        name, roles = found
        principal = request.state.principal = self.principal(name, roles)  # the audit log names it, even on 403
        if role not in roles:
            raise ApiError(403, "forbidden", f"key {name!r} lacks the role {role!r}",
                           f"this needs a key with role {role} or higher (read < score < admin)")
        await self.throttle(request, "key:" + name, f"key {name!r}")
        return principal


class _Require(HTTPBearer):
    """The dependency ``require(role)`` returns. Being an ``HTTPBearer`` makes /docs list it as a security
    scheme (with an "Authorize" button) while costing one dependency call, not three."""

    def __init__(self, role: str):
        super().__init__(scheme_name="APIKey", auto_error=False,
                         description="an API key, as `Authorization: Bearer adp_...` or `X-API-Key: adp_...`")
        self.role = role

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        guard: Guard | None = request.scope.get(_SCOPE_KEY)
        if guard is None:
            raise RuntimeError("require() needs adpipe.service.security.install(app, settings) on the app")
        return await guard.authenticate(request, _key_of(request.scope["headers"]), self.role)


def require(role: str) -> _Require:
    """A FastAPI dependency: ``Depends(require("score"))`` returns the caller's Principal, or answers
    401 (no or unknown key), 403 (key lacks the role) or 429 (over the key's rate limit)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    return _Require(role)


def _key_of(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key from ``Authorization: Bearer <key>``, else from ``X-API-Key`` (raw ASGI headers: lower-case)."""
    api_key = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip().decode("latin-1")
        elif name == b"x-api-key" and value:
            api_key = value.strip().decode("latin-1") or None
    return api_key


# ---------------------------------------------------------------------------------------------- middleware

STRICT_CSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
# /docs and /redoc load Swagger UI / ReDoc from jsDelivr and start them with an inline script.
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
            "font-src 'self' https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
            "https://cdn.redoc.ly; worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'self'")
HSTS = "max-age=31536000"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _headers(csp: str, api: bool, tls: bool) -> list[tuple[bytes, bytes]]:
    out = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer",
           "content-security-policy": csp}
    if api:
        out["cache-control"] = "no-store"
    if tls:
        out["strict-transport-security"] = HSTS
    return [(k.encode(), v.encode()) for k, v in out.items()]


class AuditLog:
    """Appends one JSON line per request. Each line is one ``write`` on an ``O_APPEND`` descriptor, so lines
    never interleave, even between worker processes; a small append costs microseconds."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._lock = threading.Lock()
        weakref.finalize(self, os.close, self.fd)

    def write(self, record: dict[str, Any]) -> None:
        line = orjson.dumps(record) + b"\n"
        try:
            with self._lock:
                os.write(self.fd, line)
        except OSError as exc:  # a full disk must not take the API down
            log.error("cannot write the audit log %s: %s", self.path, exc)


def _payload_too_large(limit: int) -> tuple[dict, bytes]:
    body = orjson.dumps({"error": "payload_too_large", "message": f"the request body is larger than {limit} bytes",
                         "hint": "send fewer records per request, or raise max_body_bytes"})
    start = {"type": "http.response.start", "status": 413,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                         (b"connection", b"close")]}
    return start, body


class SecurityMiddleware:
    """Pure ASGI: body-size limit, security headers, ``X-Request-ID``, audit log (see the module docstring)."""

    def __init__(self, app, settings: ServeSettings, guard: Guard, docs_paths: tuple[str, ...] = ()):
        self.app = app
        self.guard = guard
        self.max_body = settings.max_body_bytes
        self.audit = AuditLog(settings.audit_log) if settings.audit_log else None
        self.docs_paths = frozenset(docs_paths)
        tls = settings.tls_certfile is not None
        self._sets = {(kind, t): _headers(DOCS_CSP if kind == "docs" else STRICT_CSP, kind == "api", tls or t)
                      for kind in ("api", "docs", "other") for t in (False, True)}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = time.perf_counter()
        scope[_SCOPE_KEY] = self.guard
        state = scope.setdefault("state", {})
        request_id = length = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
            elif name == b"content-length":
                length = value
        if request_id is None or not _REQUEST_ID.match(request_id):
            request_id = uuid.uuid4().hex
        state["request_id"] = request_id
        path = scope["path"]
        kind = "api" if path.startswith("/v1/") else "docs" if path in self.docs_paths else "other"
        extra = [*self._sets[(kind, scope.get("scheme") == "https")], (b"x-request-id", request_id.encode())]
        status = 0
        rejected = False

        async def send_with_headers(message) -> None:
            nonlocal status
            if rejected:  # a 413 already went out: drop what the app still says
                return
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                have = {k.lower() for k, _ in headers}
                headers.extend(h for h in extra if h[0] not in have)  # the app's own value wins
                message["headers"] = headers
            await send(message)

        async def reject() -> None:
            nonlocal rejected
            start, body = _payload_too_large(self.max_body)
            await send_with_headers(start)
            await send_with_headers({"type": "http.response.body", "body": body})
            rejected = True

        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    if not status and not rejected:
                        await reject()
                    return {"type": "http.disconnect"}  # the app stops reading; its answer is dropped
            return message

        try:
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                await reject()  # before reading a byte of the body
                return
            # with a Content-Length the server delivers exactly that many bytes: only unsized bodies are counted
            await self.app(scope, receive if length is not None else counted_receive, send_with_headers)
        except Exception:
            if rejected:
                return
            if not status:
                status = 500
            raise
        finally:
            if self.audit is not None:
                self._audit(scope, state, request_id, status, started_at)

    def _audit(self, scope, state, request_id: str, status: int, started_at: float) -> None:
        principal = state.get("principal")
        route = scope.get("route")
        client = scope.get("client")
        self.audit.write({
            "time": now(),
            "request_id": request_id,
            "who": principal.name if principal is not None else None,
            "method": scope["method"],
            "path": scope["path"],
            "route": getattr(route, "path", None),
            "model": (scope.get("path_params") or {}).get("name"),
            "status": status,
            "duration_ms": round((time.perf_counter() - started_at) * 1000, 3),
            "client_ip": client[0] if client else None,
        })


def install(app, settings: ServeSettings) -> None:
    """Add the middleware: body-size limit (413), security headers, audit log."""
    guard = Guard(settings)
    docs = tuple(p for p in (getattr(app, "docs_url", None), getattr(app, "redoc_url", None),
                             getattr(app, "swagger_ui_oauth2_redirect_url", None)) if p)
    app.add_middleware(SecurityMiddleware, settings=settings, guard=guard, docs_paths=docs)
    app.add_exception_handler(ApiError, api_error)
    app.state.security = guard
