"""The ``slack`` alert channel: a Block Kit message to an incoming webhook, within Slack's limits."""

from __future__ import annotations

import re
from typing import Any

from pydantic import SecretStr

import adpipe
from adpipe.core import schema
from adpipe.core.alerting.model import Alert, Notification
from adpipe.plugins.alerting.http import HttpChannel

# Slack's limits (https://api.slack.com/reference/block-kit/blocks)
HEADER_MAX = 150  # header block text
SECTION_MAX = 3000  # section text
FIELD_MAX = 2000  # one section field
FIELDS_PER_SECTION = 10
BLOCKS_MAX = 50
CONTEXT_MAX = 10  # elements of a context block
LISTED_MAX = 20  # alerts shown as fields (the body lists them too); keeps messages readable
FALLBACK_MAX = 500  # the notification text: title and a short summary
#: record columns that are not the record's key
NOT_KEYS = {*schema.RESULT_COLUMNS, schema.EXPLANATION, schema.REJECT_REASON}


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, ending with … when cut, never inside an ``&amp;`` entity."""
    if len(text) <= limit:
        return text
    return re.sub(r"&[a-z]{0,3}$", "", text[: limit - 1]) + "…"


def _num(value: Any, fmt: str) -> str:
    try:
        return format(float(value), fmt)
    except (TypeError, ValueError):
        return "?"


def alert_field(a: Alert) -> str:
    """One alert as a short mrkdwn field: severity, probability and score, then the record key."""
    r = a.record
    head = f"*{escape(a.severity)}*"
    if schema.PROBABILITY in r:
        head += f"  p={_num(r[schema.PROBABILITY], '.3f')}"
    if schema.SCORE in r:
        head += f"  score={_num(r[schema.SCORE], '.4g')}"
    keys = a.labels.get("record") or ", ".join(f"{k}={v}" for k, v in r.items() if k not in NOT_KEYS)
    keys = keys or a.annotations.get("summary", "")
    why = r.get(schema.EXPLANATION) or ""
    text = "\n".join(escape(str(part)) for part in (keys, why) if part)
    return clip(f"{head}\n{text}" if text else head, min(FIELD_MAX, 300))


class SlackChannel(HttpChannel):
    """Posts alerts to a Slack incoming webhook (Block Kit with a text fallback).

    The message: a header with the title, the body, the top alerts as fields (severity, probability,
    key), and the run, model and results link. Slack accepts about one message per second per webhook.
    """

    name = "slack"
    default_rate = 1.0

    class Params(HttpChannel.Params):
        webhook_url: SecretStr = adpipe.Field(..., description="the incoming webhook URL, e.g. "
                                              "\"${oc.env:SLACK_WEBHOOK_URL}\" (a secret: never printed)")
        channel: str | None = adpipe.Field(None, description="override the webhook's channel (legacy webhooks only)")
        username: str | None = adpipe.Field(None, description="override the sender name (legacy webhooks only)")
        icon_emoji: str | None = adpipe.Field(None, description="override the sender icon: an emoji name between "
                                              "colons (legacy webhooks only)")

    def payload(self, n: Notification) -> dict[str, Any]:
        """The webhook's JSON: ``text`` (the fallback in notifications) and at most 50 ``blocks``."""
        title = " ".join(n.title.split()) or f"adpipe: {n.total} alerts"
        body = n.body.strip()
        summary = next((line.strip() for line in body.splitlines() if line.strip()), "")
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": clip(title, HEADER_MAX), "emoji": True}}]
        if body:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": clip(escape(body), SECTION_MAX)}})
        fields = [{"type": "mrkdwn", "text": alert_field(a)} for a in n.alerts[:LISTED_MAX]]
        for i in range(0, len(fields), FIELDS_PER_SECTION):
            blocks.append({"type": "section", "fields": fields[i:i + FIELDS_PER_SECTION]})
        context = self.context_elements(n, shown=len(fields))
        if context:
            blocks.append({"type": "context", "elements": context[:CONTEXT_MAX]})
        out: dict[str, Any] = {
            "text": clip(escape(f"{title}\n{summary}" if summary else title), FALLBACK_MAX),
            "blocks": blocks[:BLOCKS_MAX],
        }
        for key in ("channel", "username", "icon_emoji"):
            if getattr(self.params, key):
                out[key] = getattr(self.params, key)
        return out

    @staticmethod
    def context_elements(n: Notification, shown: int) -> list[dict[str, str]]:
        ctx = n.context
        parts = []
        if n.total > shown:
            parts.append(f"{shown} of {n.total} listed")
        for label, key in (("run", "run_id"), ("model", "model_version")):
            if ctx.get(key):
                parts.append(f"{label} `{escape(str(ctx[key]))}`")
        results = ctx.get("results")
        if isinstance(results, str) and re.match(r"https?://", results):
            parts.append(f"<{escape(results)}|full results>")
        elif results:
            parts.append(f"results: `{escape(str(results))}`")
        return [{"type": "mrkdwn", "text": clip(p, FIELD_MAX)} for p in parts]

    def deliver(self, n: Notification) -> None:
        self.post(self.params.webhook_url.get_secret_value(), self.payload(n), n)
