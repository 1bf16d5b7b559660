"""One error shape for every 4xx/5xx: ``{"error": type, "message": ..., "hint": ...}``, and the handlers
that map adpipe's typed errors, request validation and HTTP errors onto it."""

from __future__ import annotations

import logging
import re
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from adpipe.core.errors import (
    AdpipeError,
    ConfigError,
    DataError,
    ModelCompatibilityError,
    ModelError,
    ModelIntegrityError,
    ModelNotFoundError,
    ModelTrustError,
    SchemaMismatchError,
)

log = logging.getLogger("adpipe.service")
HTTP_ERRORS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "payload_too_large",
               415: "unsupported_media_type", 422: "validation_error", 429: "too_many_requests",
               503: "unavailable"}


class JSONBody(Response):
    """A JSON response rendered with orjson (numpy scalars and arrays allowed; NaN becomes null)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


class ApiError(Exception):
    """An error the API answers with ``status`` and the standard body."""

    def __init__(self, status: int, error: str, message: str, hint: str | None = None,
                 details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.error, self.message, self.hint = status, error, message, hint
        self.details, self.headers = details, headers


def error_response(status: int, error: str, message: str, hint: str | None = None,
                   details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None) -> JSONBody:
    body: dict[str, Any] = {"error": error, "message": message, "hint": hint}
    if details:
        body["details"] = details
    return JSONBody(body, status_code=status, headers=headers)


def snake(name: str) -> str:
    """``ModelNotFoundError`` -> ``model_not_found``."""
    words = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower().split("_")
    if words[-1] == "error" and len(words) > 2:  # DataError -> data_error, but ModelNotFoundError -> model_not_found
        words.pop()
    return "_".join(words)


def status_of(exc: AdpipeError) -> int:
    if isinstance(exc, ModelNotFoundError):
        return 404
    if isinstance(exc, DataError):  # SchemaMismatchError included
        return 422
    if isinstance(exc, (ModelTrustError, ModelIntegrityError, ModelCompatibilityError)):
        return 503  # the stored model cannot be served: not the caller's fault, not a crash either
    if isinstance(exc, ModelError):
        return 409
    if isinstance(exc, ConfigError):
        return 400
    return 500


def _loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if p != "body") or "body"


async def api_error(request: Request, exc: ApiError) -> JSONBody:
    """The handler of :class:`ApiError` (``security.install`` adds it too, for apps built without this module's
    other handlers)."""
    return error_response(exc.status, exc.error, exc.message, exc.hint, exc.details, exc.headers)


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, api_error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        bad_json = [e for e in errors if e.get("type") == "json_invalid"]
        if bad_json:
            ctx = bad_json[0].get("ctx") or {}
            return error_response(400, "malformed_json", f"The request body is not valid JSON: "
                                  f"{ctx.get('error', bad_json[0].get('msg'))}.",
                                  "send a JSON document, e.g. {\"record\": {\"amount\": 12.5}}")
        content_type = request.headers.get("content-type", "")
        if "json" not in content_type and any(tuple(e.get("loc", ())) == ("body",) and e.get("type") in
                                              ("model_attributes_type", "dict_type") for e in errors):
            return error_response(415, "unsupported_media_type", "The request body must be JSON, sent with "
                                  f"Content-Type: application/json (got {content_type or 'no Content-Type'}).",
                                  "add the header Content-Type: application/json")
        details = [{"loc": _loc(tuple(e.get("loc", ()))), "msg": str(e.get("msg")), "type": str(e.get("type"))}
                   for e in errors[:50]]
        message = "; ".join(f"{d['loc']}: {d['msg']}" for d in details[:5])
        return error_response(422, "validation_error", f"The request is not valid: {message}.",
                              "see the endpoint's schema in /docs", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        detail = exc.detail
        if isinstance(detail, dict) and "message" in detail:  # already in our shape
            return error_response(exc.status_code, str(detail.get("error") or HTTP_ERRORS.get(exc.status_code,
                                                                                              "http_error")),
                                  str(detail["message"]), detail.get("hint"), headers=exc.headers)
        hint = "GET /openapi.json lists the endpoints" if exc.status_code in (404, 405) else None
        return error_response(exc.status_code, HTTP_ERRORS.get(exc.status_code, "http_error"), str(detail), hint,
                              headers=exc.headers)

    @app.exception_handler(AdpipeError)
    async def adpipe_error(request: Request, exc: AdpipeError):
        status = status_of(exc)
        if status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc)
        details = None
        if isinstance(exc, SchemaMismatchError):
            details = [{"msg": d} for d in exc.differences]
        return error_response(status, snake(type(exc).__name__), exc.message, exc.hint, details)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, "internal_error", f"The server failed: {type(exc).__name__}.",
                              "this is a bug in adpipe or a plugin: the server log has the traceback")
