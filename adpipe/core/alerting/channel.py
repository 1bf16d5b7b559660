"""The base of every notifying alert channel: rules, grouping, dedup, silences, outbox, retries.

A channel plugin subclasses :class:`NotifyChannel`, adds its own parameters to ``Params`` (URL, SMTP
server, ...), may set default templates, and implements one method::

    def deliver(self, n: Notification) -> None:   # send one message; raise DeliveryError on failure

Everything else is here: ``send`` (called by the engine per batch) turns anomalies into alerts,
applies the rules, silences and dedup, and records them in the durable outbox; a background
dispatcher groups them, renders the templates, rate-limits, retries and marks each notification
delivered or failed. Scoring never waits on a channel: ``close`` waits at most ``flush_timeout``
seconds, and whatever is still undelivered stays in the outbox for the next run or
``adpipe alerts retry``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar, Literal

import pandas as pd

from adpipe.core.alerting.model import Notification
from adpipe.core.errors import ConfigError
from adpipe.core.plugin import AlertChannel, Field, Params

log = logging.getLogger("adpipe.alerts")

DEFAULT_TITLE = ("[{{ status | upper }}] {{ pipeline }}: {{ total }} anomal{{ 'y' if total == 1 else 'ies' }}"
                 "{% if group_labels.severity is defined %} ({{ group_labels.severity }}){% endif %}")
DEFAULT_BODY = """{{ total }} anomal{{ 'y' if total == 1 else 'ies' }} in {{ pipeline }} (run {{ run_id }}, model {{ model_version }}).
{% for a in alerts %}
- {{ a.annotations.summary }}{% if a.labels.record is defined %}: {{ a.labels.record }}{% endif %}

{% endfor %}
{% if truncated %}... and {{ truncated }} more.
{% endif %}
{% if results %}Full results: {{ results }}
{% endif %}"""


class Silence(Params):
    matchers: dict[str, str] = Field(..., description="label -> value; an alert matching all of them is silenced")
    starts_at: str | None = Field(None, description="ISO 8601 start (default: always)")
    ends_at: str | None = Field(None, description="ISO 8601 end (default: never)")
    comment: str = Field("", description="why")


class NotifyChannel(AlertChannel):
    """Base of notifying channels (webhook, slack, email, file)."""

    #: messages per second and burst of the token bucket (channels set their own defaults)
    default_rate: ClassVar[float] = 10.0
    title_template: ClassVar[str] = DEFAULT_TITLE
    body_template: ClassVar[str] = DEFAULT_BODY
    html_template: ClassVar[str] = ""

    class Params(Params):
        name: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$",
                                 description="this channel's name in the outbox and logs (default: its type)")
        min_severity: Literal["low", "medium", "high", "critical"] = Field(
            "low", description="alert on anomalies of at least this severity")
        min_probability: float = Field(0.0, ge=0, le=1, description="... and at least this anomaly_probability")
        where: list[str] = Field(default_factory=list, description="filters on record columns, all must hold, "
                                 "e.g. ['amount > 1000', 'country == \"NL\"']; operators > >= < <= == != in")
        group_by: list[str] = Field(default_factory=lambda: ["pipeline"], description="labels (or record "
                                    "columns) whose values form a group: one message per group")
        group_wait: float = Field(10.0, ge=0, description="seconds to wait for more alerts before a new group's "
                                  "first message (a run's end sends at once)")
        group_interval: float = Field(60.0, ge=0, description="seconds between messages about new alerts of a group")
        repeat_interval: float = Field(4 * 3600.0, ge=0, description="an alert (same fingerprint) already sent is "
                                       "not sent again for this many seconds")
        max_alerts: int = Field(10, ge=1, le=1000, description="alerts listed in one message (top by probability; "
                                "the rest are counted)")
        rate_limit: float | None = Field(None, gt=0, description="messages per second (default: the channel's)")
        burst: int = Field(1, ge=1, description="messages that may go out at once before the rate limit applies")
        timeout: float = Field(10.0, gt=0, description="seconds per delivery attempt")
        retries: int = Field(5, ge=0, le=50, description="retries after the first attempt (timeouts, connection "
                             "errors, 5xx, 429)")
        backoff: float = Field(0.5, gt=0, description="first retry delay in seconds; doubles each time, with jitter")
        max_backoff: float = Field(30.0, gt=0, description="longest retry delay")
        flush_timeout: float = Field(30.0, ge=0, description="longest a run waits at its end for this channel; "
                                     "the rest stays in the outbox")
        outbox: Path | None = Field(None, description="SQLite outbox (default: $ADPIPE_HOME/alerts.db)")
        silences: list[Silence] = Field(default_factory=list, description="time-boxed matchers that mute alerts")
        title: str | None = Field(None, description="Jinja2 template of the title (default: the channel's)")
        body: str | None = Field(None, description="Jinja2 template of the text body (default: the channel's)")
        body_html: str | None = Field(None, description="Jinja2 template of the HTML body (email)")
        results_url: str | None = Field(None, description="link to the full results in messages (default: the "
                                        "run's first output path)")

    # ------------------------------------------------------------------ what a channel implements
    def deliver(self, n: Notification) -> None:
        """Send one notification; raise :class:`DeliveryError` (retryable or not) when it fails."""
        raise NotImplementedError

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        from adpipe.core.alerting.templates import compile_template

        for what, source in (("title", self.params.title), ("body", self.params.body),
                             ("HTML body", self.params.body_html)):
            if source:
                compile_template(source, what)  # a syntax error is a config error, before the run

    # ------------------------------------------------------------------ identity and rendering
    @property
    def channel_name(self) -> str:
        return self.params.name or self.name

    def render(self, n: Notification) -> Notification:
        """Fill the notification's title, body and HTML body from the templates."""
        from adpipe.core.alerting.templates import render

        p = self.params
        try:
            n.title = render(p.title or self.title_template, n, "title").strip()
            n.body = render(p.body or self.body_template, n, "body")
            html = p.body_html or self.html_template
            n.body_html = render(html, n, "HTML body", autoescape=True) if html else ""
        except ConfigError as exc:  # a custom template that fails on this data: the defaults, never no alert
            log.error("alert channel %s: %s; using the default templates", self.channel_name, exc.message)
            n.title = render(type(self).title_template, n, "title").strip()
            n.body = render(type(self).body_template, n, "body") + f"\n(custom template failed: {exc.message})"
            n.body_html = render(self.html_template, n, "HTML body", autoescape=True) if self.html_template else ""
        return n

    # ------------------------------------------------------------------ engine interface
    def open(self, context: Any) -> None:
        from adpipe.core.alerting.dispatcher import Dispatcher

        self._dispatcher = Dispatcher(self, context)
        self._dispatcher.start()

    def send(self, anomalies: pd.DataFrame, context: Any) -> None:
        self._dispatcher.add_anomalies(anomalies)

    def event(self, kind: str, severity: str, summary: str, context: Any, **labels: str) -> None:
        dispatcher = getattr(self, "_dispatcher", None)
        if dispatcher is not None:
            dispatcher.add_event(kind, severity, summary, labels)

    def close(self) -> None:
        dispatcher = getattr(self, "_dispatcher", None)
        if dispatcher is not None:
            dispatcher.stop(self.params.flush_timeout)

    def stats(self) -> dict[str, int]:
        dispatcher = getattr(self, "_dispatcher", None)
        return dict(dispatcher.stats) if dispatcher is not None else {}
