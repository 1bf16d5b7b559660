"""Alerts and notifications, in Prometheus Alertmanager's vocabulary.

An :class:`Alert` is one anomalous record (or one event such as a failed run): labels identify it, its
fingerprint is a hash of the labels, annotations describe it. A :class:`Notification` is one message
to one channel: the alerts of one group (same values of the channel's ``group_by`` labels), the top
ones listed and the rest counted.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

SEVERITY_RANK = {"none": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


def fingerprint(labels: dict[str, str]) -> str:
    """A stable hash of the labels (order-independent), 16 hex digits as in Alertmanager."""
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Alert:
    labels: dict[str, str]  # alertname, pipeline, severity, group_by columns, record key
    annotations: dict[str, str]  # summary, score, probability, ...
    starts_at: str  # ISO 8601, UTC
    ends_at: str | None = None
    record: dict[str, Any] = field(default_factory=dict)  # the anomaly row: keys, score, probability, severity, ...
    fingerprint: str = ""

    def __post_init__(self) -> None:
        self.fingerprint = self.fingerprint or fingerprint(self.labels)

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "none")

    @property
    def score(self) -> float:
        value = self.record.get("anomaly_probability", self.record.get("anomaly_score"))
        return float(value) if value is not None else 0.0

    def to_dict(self) -> dict[str, Any]:  # not dataclasses.asdict: no deep copy (10,000 alerts in a storm)
        return {"labels": self.labels, "annotations": self.annotations, "starts_at": self.starts_at,
                "ends_at": self.ends_at, "record": self.record, "fingerprint": self.fingerprint}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Alert":
        return cls(**data)


@dataclass
class Notification:
    """One message for one channel: a group of alerts, already rendered to title and body text."""

    channel: str  # the channel's instance name
    receiver: str  # the channel's type (webhook, slack, ...)
    group_key: str
    group_labels: dict[str, str]
    alerts: list[Alert]  # the top ``max_alerts`` by probability, highest first
    total: int  # alerts in the group (>= len(alerts))
    idempotency_key: str  # the same on every retry: receivers can drop duplicates
    title: str = ""
    body: str = ""  # plain text
    body_html: str = ""  # for email; empty when the channel has no HTML template
    status: str = "firing"
    context: dict[str, Any] = field(default_factory=dict)  # pipeline, run_id, model_version, results
    created_at: str = field(default_factory=lambda: utcnow().isoformat())

    @property
    def truncated(self) -> int:
        return self.total - len(self.alerts)

    @property
    def common_labels(self) -> dict[str, str]:
        if not self.alerts:
            return dict(self.group_labels)
        first = self.alerts[0].labels
        return {k: v for k, v in first.items() if all(a.labels.get(k) == v for a in self.alerts[1:])}

    @property
    def common_annotations(self) -> dict[str, str]:
        if not self.alerts:
            return {}
        first = self.alerts[0].annotations
        return {k: v for k, v in first.items() if all(a.annotations.get(k) == v for a in self.alerts[1:])}

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.__dict__.items() if k != "alerts"}, "alerts": [a.to_dict() for a in self.alerts]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Notification":
        return cls(**{**data, "alerts": [Alert.from_dict(a) for a in data["alerts"]]})


class DeliveryError(Exception):
    """A channel could not deliver. ``retryable``: worth another try (timeout, connection, 5xx, 429);
    ``retry_after``: seconds the receiver asked us to wait (HTTP 429/503 Retry-After)."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
