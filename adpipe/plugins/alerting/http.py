"""HTTP plumbing shared by the webhook and Slack channels: POST JSON, map the outcome to DeliveryError.

Retryable: timeouts, connection errors, HTTP 5xx and 429 (with the ``Retry-After`` header's delay).
Not retryable: any other non-2xx answer, a bad URL or header. Messages show the URL as scheme and host
only: webhook URLs carry their token in the path or query.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import threading
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from adpipe import __version__
from adpipe.core.alerting.channel import NotifyChannel
from adpipe.core.alerting.model import DeliveryError, Notification
from adpipe.core.jsonable import jsonable

USER_AGENT = f"adpipe/{__version__}"
EXCERPT = 200  # characters of a failed response's body quoted in the error


# --------------------------------------------------------------------------- JSON
def dumps(payload: Any) -> bytes:
    return json.dumps(jsonable(payload), ensure_ascii=False, allow_nan=False).encode()


# --------------------------------------------------------------------------- secrets in messages
def shown_url(url: str) -> str:
    """Scheme and host of ``url`` (the path and query may hold a token)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    if not parts.scheme or not host:
        return "<unparseable URL>"
    return f"{parts.scheme}://{host}{port}/…" if (parts.path not in ("", "/") or parts.query) else \
        f"{parts.scheme}://{host}{port}"


def secret_parts(url: str, headers: dict[str, str] | None = None) -> list[str]:
    """Strings that must never appear in a message: the URL, its path, query, password, header values."""
    out = [url]
    try:
        parts = urlsplit(url)
        out += [parts.path, parts.query, parts.password or ""]
        out += [seg for seg in parts.path.split("/") if len(seg) >= 6]
    except ValueError:
        pass
    for value in (headers or {}).values():
        out += [value, *[w for w in value.split() if len(w) >= 6]]
    return sorted({s for s in out if len(s) >= 4}, key=len, reverse=True)  # shorter ones would mangle text


def scrub(text: str, secrets: list[str]) -> str:
    for s in secrets:
        text = text.replace(s, "***")
    return text


def excerpt(text: str, secrets: list[str]) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = scrub(text, secrets)
    return text[:EXCERPT] + ("…" if len(text) > EXCERPT else "")


# --------------------------------------------------------------------------- Retry-After
def retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
        return max(0.0, seconds) if math.isfinite(seconds) else None
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    now = now or dt.datetime.now(dt.timezone.utc)
    return max(0.0, (when - now).total_seconds())


# --------------------------------------------------------------------------- POST
def new_client() -> httpx.Client:
    """A client for one channel: no redirects followed (a POST must not turn into a GET), proxies from the env."""
    return httpx.Client(follow_redirects=False, headers={"User-Agent": USER_AGENT})


def post_json(url: str, payload: Any, *, headers: dict[str, str] | None = None, timeout: float,
              idempotency_key: str | None = None, client: httpx.Client | None = None,
              what: str = "webhook") -> httpx.Response:
    """POST ``payload`` as JSON to ``url``; raise :class:`DeliveryError` unless the answer is 2xx.

    ``timeout`` bounds each phase (connect, send, each read) of this one attempt. ``headers`` values
    may be secrets: they, and the URL's path and query, are kept out of error messages.
    """
    secrets = secret_parts(url, headers)
    where = f"{what} {shown_url(url)}"
    sent = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
    if idempotency_key:
        sent["Idempotency-Key"] = idempotency_key
    own = client is None
    client = client or new_client()
    try:
        response = client.post(url, content=dumps(payload), headers=sent, timeout=timeout)
    except httpx.TimeoutException as exc:
        raise DeliveryError(f"{where} timed out after {timeout:g} s ({type(exc).__name__})",
                            retryable=True) from None
    except (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError) as exc:
        raise DeliveryError(f"{where}: cannot connect or the connection broke: "
                            f"{scrub(str(exc), secrets) or type(exc).__name__}", retryable=True) from None
    except RuntimeError as exc:  # the channel was closed while this attempt was under way
        raise DeliveryError(f"{where}: {exc}", retryable=True) from None
    except (httpx.HTTPError, httpx.InvalidURL, ValueError, TypeError) as exc:
        raise DeliveryError(f"{where}: cannot send the request ({type(exc).__name__}: "
                            f"{scrub(str(exc), secrets)}); check the URL and headers", retryable=False) from None
    finally:
        if own:
            client.close()
    status = response.status_code
    if 200 <= status < 300:
        return response
    body = excerpt(response.text, secrets) if response.content else ""
    said = f": {body}" if body else ""
    if status == 429 or status >= 500:
        wait = retry_after(response.headers.get("Retry-After"))
        asked = f" (Retry-After {wait:g} s)" if wait is not None else ""
        raise DeliveryError(f"{where} answered HTTP {status}{asked}{said}", retryable=True, retry_after=wait)
    if 300 <= status < 400:
        said = f" to {shown_url(response.headers.get('Location', ''))}" if response.headers.get("Location") else ""
        raise DeliveryError(f"{where} answered HTTP {status} (redirect{said}): set the URL to the final address",
                            retryable=False)
    raise DeliveryError(f"{where} answered HTTP {status}{said}", retryable=False)


# --------------------------------------------------------------------------- base of HTTP channels
class HttpChannel(NotifyChannel):
    """Base of channels that POST JSON: one httpx client per channel, opened on first use, closed by close()."""

    _client: httpx.Client | None = None
    _client_lock = threading.Lock()

    def client(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None or self._client.is_closed:
                self._client = new_client()
            return self._client

    def post(self, url: str, payload: Any, n: Notification, headers: dict[str, str] | None = None) -> None:
        post_json(url, payload, headers=headers, timeout=self.params.timeout, idempotency_key=n.idempotency_key,
                  client=self.client(), what=self.name)

    def close(self) -> None:
        try:
            super().close()  # the dispatcher flushes first, through the client
        finally:
            with self._client_lock:
                client, self._client = self._client, None
            if client is not None:
                client.close()
