"""API keys, roles, rate limits, body-size limits, the audit log and security headers.

PLACEHOLDER (being written): the interface below is fixed; the bodies allow everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adpipe.service.settings import ServeSettings


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name and its roles (``anonymous`` with every role under --no-auth)."""

    name: str
    roles: frozenset[str] = field(default_factory=frozenset)


def require(role: str):
    """A FastAPI dependency: ``Depends(require("score"))`` returns the caller's Principal, or answers
    401 (no or unknown key), 403 (key lacks the role) or 429 (over the key's rate limit)."""

    def dependency() -> Principal:
        return Principal("anonymous", frozenset({"read", "score", "admin"}))

    return dependency


def install(app, settings: ServeSettings) -> None:
    """Add the middleware: body-size limit (413), security headers, audit log."""
