"""Which anomalies become alerts: severity and probability floors, column filters, silences."""

from __future__ import annotations

import operator
import re
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import yaml

from adpipe.core import schema
from adpipe.core.alerting.model import SEVERITY_RANK
from adpipe.core.errors import ConfigError

OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt,
       "<": operator.lt}
WHERE_RE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|==|!=|>|<|\bnot in\b|\bin\b)\s*(.+?)\s*$")


def parse_where(expr: str) -> tuple[str, str, Any]:
    """``"amount > 1000"`` -> ("amount", ">", 1000). Values are YAML: numbers, 'text', [lists]."""
    match = WHERE_RE.match(expr)
    if not match:
        raise ConfigError(f"Alert filter {expr!r} is not `column operator value`.",
                          hint="e.g. 'amount > 1000', 'country == \"NL\"', 'channel in [web, app]'")
    column, op, raw = match.groups()
    value = yaml.safe_load(raw)
    if op in ("in", "not in") and not isinstance(value, list):
        raise ConfigError(f"Alert filter {expr!r}: `{op}` needs a list, e.g. [a, b].")
    return column, op, value


def select(anomalies: pd.DataFrame, min_severity: str, min_probability: float,
           where: list[tuple[str, str, Any]]) -> pd.DataFrame:
    """The anomalies that pass the channel's rules (a missing filter column selects nothing)."""
    rank = anomalies[schema.SEVERITY].map(SEVERITY_RANK).fillna(0).to_numpy()
    keep = (rank >= SEVERITY_RANK[min_severity]) & (anomalies[schema.PROBABILITY].to_numpy() >= min_probability)
    for column, op, value in where:
        if column not in anomalies.columns:
            return anomalies.iloc[:0]
        col = anomalies[column]
        if op == "in":
            keep &= col.isin(value).to_numpy()
        elif op == "not in":
            keep &= ~col.isin(value).to_numpy()
        else:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                col = pd.to_numeric(col, errors="coerce")
            with np.errstate(invalid="ignore"):
                keep &= OPS[op](col, value).fillna(False).to_numpy(dtype=bool)
    return anomalies[keep]


def _time(value: str | float | None, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def active(silences: list[dict[str, Any]], now: float) -> list[dict[str, str]]:
    """Matchers of the silences active at ``now`` (config silences carry ISO times, stored ones epochs)."""
    out = []
    for s in silences:
        starts = _time(s.get("starts_at", s.get("starts")), float("-inf"))
        ends = _time(s.get("ends_at", s.get("ends")), float("inf"))
        if starts <= now < ends:
            out.append({k: str(v) for k, v in s["matchers"].items()})
    return out


def silenced(labels: dict[str, str], matchers: list[dict[str, str]]) -> bool:
    return any(all(labels.get(k) == v for k, v in m.items()) for m in matchers)
