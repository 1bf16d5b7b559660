"""The per-channel dispatcher: anomalies -> alerts in the outbox -> grouped notifications -> delivery.

The engine's thread only filters the batch and writes alerts to the outbox; a background thread does
grouping (group_wait / group_interval), rendering, the token-bucket rate limit and the retries
(tenacity: exponential backoff with jitter, at least the receiver's Retry-After).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import Counter
from typing import Any

import pandas as pd
import tenacity

from adpipe.core import schema
from adpipe.core.alerting import rules
from adpipe.core.alerting.model import SEVERITY_RANK, Alert, DeliveryError, Notification, utcnow
from adpipe.core.alerting.outbox import Outbox

log = logging.getLogger("adpipe.alerts")
RESULT_FIELDS = (schema.SCORE, schema.PROBABILITY, schema.SEVERITY, schema.MODEL_VERSION, schema.RUN_ID)


class OutOfTime(Exception):
    """The flush deadline would pass before the next attempt: leave the notification pending."""


class TokenBucket:
    """``rate`` messages per second on average, up to ``burst`` at once."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.capacity = rate, float(burst)
        self.tokens, self.stamp = float(burst), time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def delay(self) -> float:
        """Seconds until a token is available."""
        self._refill()
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        self._refill()
        self.tokens -= 1

    def pause(self, seconds: float) -> None:
        """The receiver asked for quiet (HTTP 429 Retry-After): no token for ``seconds``."""
        self._refill()
        self.tokens = min(self.tokens, 0.0) - seconds * self.rate


class Dispatcher:
    def __init__(self, channel, context):
        p = channel.params
        self.channel, self.params, self.ctx = channel, p, context
        self.name = f"{context.pipeline}:{channel.channel_name}"
        self.outbox = Outbox(p.outbox)
        self.outbox.prune(max(30.0, p.repeat_interval / 86400))  # delivered history older than that goes
        self.where = [rules.parse_where(w) for w in p.where]
        self.bucket = TokenBucket(p.rate_limit or channel.default_rate, p.burst)
        self.deadline = float("inf")  # set by stop(): the flush deadline
        self.stats: Counter = Counter()
        self._pending_fps: set[str] = set()
        self._wake, self._stopping = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"adpipe-alerts-{self.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Flush: deliver what is due, waiting at most ``timeout`` seconds; the rest stays in the outbox."""
        self.deadline = time.time() + timeout
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout + 5)
        counts = self.outbox.counts(self.name)
        self.stats["pending"] = counts["notifications"].get("pending", 0) + counts["alerts"].get("pending", 0)
        if self.stats["pending"]:
            log.warning("alert channel %s: %d undelivered item(s) stay in the outbox %s for the next run or "
                        "`adpipe alerts retry`", self.name, self.stats["pending"], self.outbox.path)

    # ------------------------------------------------------------------ intake (the engine's thread)
    def add_anomalies(self, anomalies: pd.DataFrame) -> None:
        p = self.params
        chosen = rules.select(anomalies, p.min_severity, p.min_probability, self.where)
        if len(chosen):
            self._record([self._alert(rec) for rec in chosen.to_dict("records")])

    def add_event(self, kind: str, severity: str, summary: str, labels: dict[str, str]) -> None:
        if SEVERITY_RANK.get(severity, 0) < SEVERITY_RANK[self.params.min_severity]:
            return
        alert = Alert(labels={"alertname": kind, "pipeline": self.ctx.pipeline, "severity": severity, **labels},
                      annotations={"summary": summary}, starts_at=utcnow().isoformat(),
                      record={schema.PROBABILITY: 1.0, schema.SEVERITY: severity, "event": kind, "summary": summary})
        self._record([alert])

    def _alert(self, rec: dict[str, Any]) -> Alert:
        ctx = self.ctx
        severity = str(rec.get(schema.SEVERITY, "none"))
        labels = {"alertname": "anomaly", "pipeline": ctx.pipeline, "severity": severity}
        for col in self.params.group_by:
            if col not in labels and col in rec:
                labels[col] = str(rec[col])
        keys = [c for c in ctx.id_columns if c in rec] or [c for c in rec if c not in RESULT_FIELDS]
        labels["record"] = ", ".join(f"{c}={rec[c]}" for c in keys)[:300]
        prob = float(rec.get(schema.PROBABILITY, 0.0))
        score = float(rec.get(schema.SCORE, 0.0))
        annotations = {"summary": f"{severity} anomaly, probability {prob:.4f}, score {score:.4g}",
                       "anomaly_score": f"{score:.6g}", "anomaly_probability": f"{prob:.6f}",
                       "model_version": str(rec.get(schema.MODEL_VERSION, ctx.model_version)),
                       "run_id": str(rec.get(schema.RUN_ID, ctx.run_id))}
        return Alert(labels=labels, annotations=annotations, starts_at=utcnow().isoformat(),
                     record={k: _plain(v) for k, v in rec.items()})

    def _record(self, alerts: list[Alert]) -> None:
        now = time.time()
        matchers = rules.active([s.model_dump() for s in self.params.silences] + self.outbox.silences(), now)
        fps = [a.fingerprint for a in alerts]
        recent = self.outbox.recently_sent(self.name, fps, now - self.params.repeat_interval)
        items = []
        for a in alerts:
            group_labels = {k: a.labels.get(k, "") for k in self.params.group_by}
            if rules.silenced(a.labels, matchers):
                status = "silenced"
            elif a.fingerprint in recent or a.fingerprint in self._pending_fps:
                status = "deduplicated"
            else:
                status = "pending"
                self._pending_fps.add(a.fingerprint)
            self.stats[f"alerts_{status}"] += 1
            items.append((a, json.dumps(group_labels, sort_keys=True), group_labels, status))
        self.outbox.add_alerts(self.name, items, {"pipeline": self.ctx.pipeline, "run_id": self.ctx.run_id,
                                                  "model_version": self.ctx.model_version})
        self._wake.set()

    # ------------------------------------------------------------------ the background thread
    def _loop(self) -> None:
        while True:
            stopping = self._stopping.is_set()  # read before the pass, so the last pass is a flush
            try:
                busy = self._dispatch(flushing=stopping)
            except Exception as exc:  # never let the thread die silently; the outbox keeps everything
                log.error("alert channel %s: dispatch failed: %s", self.name, exc)
                busy = False
            if stopping and (not busy or time.time() >= self.deadline):
                return
            self._wake.wait(0.05 if self._stopping.is_set() else 0.5)
            self._wake.clear()

    def _dispatch(self, flushing: bool) -> bool:
        """One pass: group what is due (everything when flushing), deliver what is pending.
        Returns whether work is left."""
        now, p = time.time(), self.params
        for g in self.outbox.pending_groups(self.name):
            due = flushing or (now >= g["last"] + p.group_interval if g["last"] else now >= g["first"] + p.group_wait)
            if due:
                self.outbox.take_group(self.name, g["key"], self.params.max_alerts, self._build)
        pending = self.outbox.pending_notifications(self.name)
        for nid, n in pending:
            if time.time() >= self.deadline:
                return True
            if not self._deliver(nid, n):
                return True
        return False

    def _build(self, top: list[Alert], total: int, context: dict[str, Any]) -> Notification:
        p = self.params
        ranked = sorted(top, key=lambda a: a.score, reverse=True)
        group_labels = {k: ranked[0].labels.get(k, "") for k in p.group_by}
        key = uuid.uuid4().hex  # stored with the notification: every retry, in any process, reuses it
        outputs = self.ctx.extra.get("outputs") or []
        context = {**context, "results": p.results_url or (outputs[0] if outputs else "")}
        n = Notification(channel=self.name, receiver=self.channel.name, group_key=json.dumps(group_labels,
                         sort_keys=True), group_labels=group_labels, alerts=ranked, total=total,
                         idempotency_key=key, context=context)
        return self.channel.render(n)

    def _deliver(self, nid: int, n: Notification) -> bool:
        """Deliver one notification with retries. False when the flush deadline stopped it (left pending)."""
        p = self.params
        attempts = 0

        def attempt() -> None:
            nonlocal attempts
            self._sleep(self.bucket.delay())
            self.bucket.take()
            attempts += 1
            try:
                self.channel.deliver(n)
            except DeliveryError as exc:
                if exc.retry_after:
                    self.bucket.pause(exc.retry_after)
                raise

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, DeliveryError) and e.retryable),
            stop=tenacity.stop_after_attempt(p.retries + 1),
            wait=tenacity.wait_random_exponential(multiplier=p.backoff, max=p.max_backoff),
            sleep=self._sleep, reraise=True)
        try:
            retrying(attempt)
        except OutOfTime:
            self.outbox.mark(nid, "pending", attempts=attempts, error="not delivered before the run ended")
            return False
        except DeliveryError as exc:
            self.outbox.mark(nid, "failed", attempts=attempts, error=str(exc))
            self.stats["notifications_failed"] += 1
            log.warning("alert channel %s: notification %s failed after %d attempt(s): %s", self.name,
                        n.idempotency_key, attempts, exc)
            return True
        except Exception as exc:  # a bug in a channel: park it with the error, never stop scoring
            self.outbox.mark(nid, "failed", attempts=attempts, error=f"{type(exc).__name__}: {exc}")
            self.stats["notifications_failed"] += 1
            log.error("alert channel %s: %s: %s", self.name, type(exc).__name__, exc)
            return True
        self.outbox.mark(nid, "delivered", attempts=attempts)
        self.stats["notifications_delivered"] += 1
        self.stats["alerts_delivered"] += n.total
        return True

    def _sleep(self, seconds: float) -> None:
        """Wait (the bucket's delay or a retry's backoff), but never past the flush deadline."""
        if seconds <= 0:
            return
        end = time.time() + seconds
        while (left := end - time.time()) > 0:
            if end > self.deadline:  # stop() may move the deadline while we wait
                raise OutOfTime
            time.sleep(min(left, 0.1))


def _plain(value: Any) -> Any:
    """JSON-friendly scalars (numpy, pandas timestamps, NaN)."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
