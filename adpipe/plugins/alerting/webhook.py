"""The ``webhook`` alert channel: one JSON POST per notification, in adpipe's or Alertmanager's format."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import SecretStr

import adpipe
from adpipe.core.alerting.model import Notification
from adpipe.plugins.alerting.http import HttpChannel

#: Alertmanager's endsAt for an alert without an end (Go's zero time)
ZERO_TIME = "0001-01-01T00:00:00Z"


def _utc(value: str | None) -> dt.datetime | None:
    """An ISO 8601 time as an aware UTC datetime (naive times are taken as UTC); None if absent or unreadable."""
    try:
        t = dt.datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    return None if t is None else (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)


def rfc3339(value: str | None) -> str:
    """An ISO 8601 time as RFC 3339 in UTC with a ``Z``; ZERO_TIME if None (unreadable text is passed on)."""
    if not value:
        return ZERO_TIME
    t = _utc(value)
    if t is None:
        return value
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if t.microsecond else "%Y-%m-%dT%H:%M:%SZ")


def _ended(value: str | None) -> bool:
    t = _utc(value)
    return t is not None and t <= dt.datetime.now(dt.timezone.utc)


def _strings(d: dict[str, Any]) -> dict[str, str]:
    return {str(k): "" if v is None else str(v) for k, v in d.items()}


def adpipe_payload(n: Notification) -> dict[str, Any]:
    """adpipe's own JSON: the rendered text, the run context and the listed alerts with their records."""
    ctx = n.context
    return {
        "title": n.title,
        "body": n.body,
        "status": n.status,
        "pipeline": ctx.get("pipeline", ""),
        "run_id": ctx.get("run_id", ""),
        "model_version": ctx.get("model_version", ""),
        "results": ctx.get("results", ""),
        "channel": n.channel,
        "group_key": n.group_key,
        "group_labels": n.group_labels,
        "total": n.total,
        "truncated": n.truncated,
        "idempotency_key": n.idempotency_key,
        "created_at": n.created_at,
        "alerts": [{"labels": a.labels, "annotations": a.annotations, "starts_at": a.starts_at,
                    "ends_at": a.ends_at, "fingerprint": a.fingerprint, "record": a.record} for a in n.alerts],
    }


def alertmanager_payload(n: Notification, external_url: str | None = None) -> dict[str, Any]:
    """The Prometheus Alertmanager webhook payload, version 4 (what its webhook_config receivers get)."""
    results = n.context.get("results") or ""
    generator = results if isinstance(results, str) else ""
    return {
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": n.truncated,
        "status": n.status,
        "receiver": n.receiver,
        "groupLabels": _strings(n.group_labels),
        "commonLabels": _strings(n.common_labels),
        "commonAnnotations": _strings(n.common_annotations),
        "externalURL": external_url or "",
        "alerts": [{
            "status": "resolved" if n.status == "resolved" or _ended(a.ends_at) else "firing",
            "labels": _strings(a.labels),
            "annotations": _strings(a.annotations),
            "startsAt": rfc3339(a.starts_at),
            "endsAt": rfc3339(a.ends_at),
            "generatorURL": a.annotations.get("generator_url") or generator,
            "fingerprint": a.fingerprint,
        } for a in n.alerts],
    }


class WebhookChannel(HttpChannel):
    """POSTs alerts as JSON to a URL (optionally as a Prometheus Alertmanager v4 webhook payload).

    Each request carries an ``Idempotency-Key`` header, the same on every retry, so the receiver can
    drop duplicates. Retried: timeouts, connection errors, HTTP 5xx and 429 (honouring Retry-After).
    """

    name = "webhook"
    default_rate = 10.0

    class Params(HttpChannel.Params):
        url: SecretStr = adpipe.Field(..., description="where to POST, e.g. \"${oc.env:ALERT_WEBHOOK_URL}\" "
                                      "(may hold a token: never printed)")
        headers: dict[str, SecretStr] = adpipe.Field(default_factory=dict, description="extra HTTP headers, e.g. "
                                                     "Authorization (values never printed)")
        format: Literal["adpipe", "alertmanager"] = adpipe.Field(
            "adpipe", description="adpipe: title, body, run context and records; alertmanager: the Alertmanager "
            "webhook payload (version 4)")
        external_url: str | None = adpipe.Field(None, description="alertmanager format: its externalURL, a link "
                                                "back to where the alerts are managed")

    def deliver(self, n: Notification) -> None:
        p = self.params
        payload = alertmanager_payload(n, p.external_url) if p.format == "alertmanager" else adpipe_payload(n)
        headers = {k: v.get_secret_value() for k, v in p.headers.items()}
        self.post(p.url.get_secret_value(), payload, n, headers)
