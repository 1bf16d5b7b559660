"""Jinja2 templates for alert titles and bodies (sandboxed: templates come from configs).

Variables: ``n`` (the :class:`Notification`), ``alerts`` (the listed alerts, highest probability first),
``total``, ``truncated``, ``group_labels``, ``status``, ``pipeline``, ``run_id``, ``model_version``,
``results`` (where the full results are). Each alert has ``labels``, ``annotations``, ``record`` (the
anomalous row: key columns, ``anomaly_score``, ``anomaly_probability``, ``severity``, ...),
``severity``, ``score``, ``fingerprint`` and ``starts_at``.
"""

from __future__ import annotations

import functools

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from adpipe.core.alerting.model import Notification
from adpipe.core.errors import ConfigError


@functools.lru_cache(maxsize=1)
def environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["num"] = lambda v, digits=4: f"{float(v):.{digits}g}"
    return env


@functools.lru_cache(maxsize=256)
def compile_template(source: str, what: str = "template"):
    try:
        return environment().from_string(source)
    except TemplateError as exc:
        raise ConfigError(f"The alert {what} is not a valid Jinja2 template: {exc}",
                          hint="see the alert template variables in the README") from None


def render(source: str, n: Notification, what: str = "template", autoescape: bool = False) -> str:
    """Render ``source`` for notification ``n``; HTML templates get their values escaped."""
    if autoescape:
        source = "{% autoescape true %}" + source + "{% endautoescape %}"
    ctx = n.context
    try:
        return compile_template(source, what).render(
            n=n, alerts=n.alerts, total=n.total, truncated=n.truncated, group_labels=n.group_labels,
            status=n.status, pipeline=ctx.get("pipeline", ""), run_id=ctx.get("run_id", ""),
            model_version=ctx.get("model_version", ""), results=ctx.get("results", ""))
    except TemplateError as exc:
        raise ConfigError(f"The alert {what} failed to render: {exc}",
                          hint="check the variable names against the README's list") from None
