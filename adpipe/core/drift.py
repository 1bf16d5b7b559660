"""Drift monitoring: feed features and the anomaly score to drift detector plugins, keep a history.

    monitor = DriftMonitor(config, features, reference={"amount": train_amounts, "anomaly_score": train_scores},
                           context=ctx)
    for event in monitor.update(batch_frame, scores, row_start):
        ...  # the engine calls hooks / alert channels with event.summary()

The monitor never calls hooks or channels itself: it returns :class:`DriftEvent` s (after the
``cooldown_rows`` filter) and records them in the :class:`DriftHistory` (SQLite, ``adpipe drift history``).
"""

from __future__ import annotations

import bisect
import logging
import math
import os
import re
import sqlite3
from collections import Counter
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from adpipe.core.errors import ConfigError

log = logging.getLogger(__name__)
SCORE = "anomaly_score"


# --------------------------------------------------------------------------- events
@dataclass
class DriftEvent:
    """One detection: which feature, which test, how strong, over which rows."""

    pipeline: str
    run_id: str
    model_version: str
    feature: str  # a feature name, or "anomaly_score"
    test: str  # the drift detector plugin's name
    statistic: float
    threshold: float
    p_value: float | None
    window: dict[str, int]  # start_row, end_row, size, reference_size
    detail: str
    detected_at: str  # ISO 8601, UTC
    severity: str = "high"

    def summary(self) -> str:
        w = self.window
        return (f"drift in {self.feature} of {self.pipeline} ({self.test}, rows {w['start_row']:,}-"
                f"{w['end_row']:,}): {self.detail}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DriftEvent":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# --------------------------------------------------------------------------- row bookkeeping
class _RowMap:
    """Maps the index of a finite value of a column (0, 1, ... over the run) to its absolute row."""

    MAX_SEGMENTS = 4096

    def __init__(self) -> None:
        self.starts: list[int] = []  # first finite index of each segment
        self.segs: list[tuple[int, int, np.ndarray | None]] = []  # (row_start, count, rows or None if contiguous)
        self.fed = 0

    def append(self, row_start: int, rows: np.ndarray | None, count: int) -> int:
        """Record a batch (``rows``: offsets of its finite values, None when all are); returns its first index."""
        first = self.fed
        if rows is None and self.segs and self.segs[-1][2] is None and sum(self.segs[-1][:2]) == row_start:
            r0, n, _ = self.segs[-1]
            self.segs[-1] = (r0, n + count, None)
        elif count:
            self.starts.append(first)
            self.segs.append((row_start, count, None if rows is None else row_start + rows))
            if len(self.segs) > self.MAX_SEGMENTS:
                del self.starts[0], self.segs[0]
        self.fed += count
        return first

    def row(self, index: int) -> int | None:
        k = bisect.bisect_right(self.starts, index) - 1
        if k < 0:
            return None
        r0, n, rows = self.segs[k]
        off = index - self.starts[k]
        return r0 + off if rows is None else int(rows[min(off, rows.size - 1)])


# --------------------------------------------------------------------------- monitor
class DriftMonitor:
    """One drift detector per (watched column, configured detector); ``update`` per scored batch.

    ``reference`` maps column names (features, "anomaly_score") to training values; detectors of a
    column without one take its first window as reference. Watched columns are ``drift.features``
    (default: every name in ``features``) plus "anomaly_score" when ``drift.score``.
    """

    def __init__(self, config, features: list[str], reference: Mapping[str, np.ndarray] | None = None,
                 context: Any = None, *, history: "DriftHistory | None" = None, record: bool = True):
        spec = config.drift
        self.config, self.context, self.spec = config, context, spec
        features = list(features)
        if spec.features is not None:
            unknown = [f for f in spec.features if f not in features]
            if unknown:
                where = config.path or "config"
                raise ConfigError(f"{where}: drift.features names {', '.join(map(repr, unknown))}, which "
                                  f"{'is not a feature' if len(unknown) == 1 else 'are not features'} of the "
                                  f"pipeline.", hint=f"available features: {', '.join(features) or '(none)'}")
            features = list(dict.fromkeys(spec.features))
        self.columns = features + ([SCORE] if spec.score and SCORE not in features else [])
        stages = config.drift_detectors
        types = Counter(s.type for s in stages)
        self.tests = [s.type if types[s.type] == 1 else f"{s.type}[{i}]" for i, s in enumerate(stages)]
        self._stages = stages
        self.restart(reference)
        self._history, self._record = history, record
        self._last: dict[tuple[str, str], int] = {}
        self.skipped: dict[str, str] = {}  # column -> why it is not watched
        self.counts: Counter = Counter()  # (feature, test) -> events kept
        self.suppressed = 0  # events dropped by cooldown_rows

    @property
    def enabled(self) -> bool:
        return bool(self._stages) and bool(self.columns)

    def restart(self, reference: Mapping[str, np.ndarray] | None = None) -> None:
        """Start every detector afresh (e.g. after a refit, with the new training values as reference)."""
        reference = reference or {}
        self.detectors: dict[str, list[tuple[str, Any]]] = {
            col: [(test, stage.build().start(_values(reference.get(col)))) for test, stage in
                  zip(self.tests, self._stages)] for col in self.columns}
        self._rows = {col: _RowMap() for col in self.columns}

    def update(self, data: pd.DataFrame | Mapping[str, np.ndarray] | None, scores: np.ndarray | None = None,
               row_start: int = 0) -> list[DriftEvent]:
        """Feed a batch (rows ``row_start``...); returns the drift events to act on (cooldown applied)."""
        if not self._stages:
            return []
        events = []
        for col in self.columns:
            values = self._column(data, scores, col)
            if values is None or values.size == 0:
                continue
            finite = np.isfinite(values)
            whole = bool(finite.all())
            kept = values if whole else values[finite]
            rows = self._rows[col]
            first = rows.append(row_start, None if whole else np.flatnonzero(finite), kept.size)
            if kept.size == 0:
                continue
            for test, det in self.detectors[col]:
                for f in det.update(kept):
                    event = self._event(col, test, f, first)
                    if event is not None:
                        events.append(event)
        if events and self._record:
            self._save(events)
        return events

    def _column(self, data, scores, col: str) -> np.ndarray | None:
        if col in self.skipped:
            return None
        if col == SCORE and (data is None or col not in data):
            return None if scores is None else np.asarray(scores, dtype=float).ravel()
        if data is None or col not in data:
            return None
        try:
            if isinstance(data, pd.DataFrame):
                return data[col].to_numpy(dtype=float, na_value=np.nan)
            return np.asarray(data[col], dtype=float).ravel()
        except (TypeError, ValueError):
            self.skipped[col] = "not numeric"
            log.warning("drift: column %r is not numeric; it is not watched", col)
            return None

    def _event(self, col: str, test: str, f, first: int) -> DriftEvent | None:
        rows = self._rows[col]
        end = rows.row(first + max(f.position, 0))
        end = -1 if end is None else end
        size = int(f.window)
        start = rows.row(max(first + f.position - size + 1, 0)) if size else end
        start = max(end - size + 1, 0) if start is None else start
        last = self._last.get((col, test))
        if last is not None and 0 <= end - last < self.spec.cooldown_rows:
            self.suppressed += 1
            return None
        self._last[(col, test)] = end
        self.counts[(col, test)] += 1
        ctx = self.context
        return DriftEvent(
            pipeline=getattr(ctx, "pipeline", None) or self.config.name, run_id=getattr(ctx, "run_id", "") or "",
            model_version=getattr(ctx, "model_version", "") or "", feature=col, test=test,
            statistic=float(f.statistic), threshold=float(f.threshold),
            p_value=None if f.p_value is None else float(f.p_value),
            window={"start_row": int(start), "end_row": int(end), "size": size, "reference_size": int(f.reference)},
            detail=f.detail, detected_at=_now(), severity=self.spec.severity)

    def _save(self, events: list[DriftEvent]) -> None:
        try:
            if self._history is None:
                self._history = DriftHistory(self.spec.history)
            self._history.add(events)
        except (OSError, sqlite3.Error) as exc:  # the history must never stop scoring
            log.warning("drift: could not record %d event(s) in the drift history: %s", len(events), exc)

    def stats(self) -> dict[str, Any]:
        """For the run summary: watched columns, tests, events kept and suppressed."""
        by_feature: Counter = Counter()
        for (col, _), n in self.counts.items():
            by_feature[col] += n
        return {"watched": self.columns, "tests": self.tests, "events": sum(self.counts.values()),
                "suppressed": self.suppressed, "by_feature": dict(by_feature), "skipped": dict(self.skipped)}


def _values(x) -> np.ndarray | None:
    if x is None:
        return None
    arr = np.asarray(x, dtype=float).ravel()
    return arr[np.isfinite(arr)]


# --------------------------------------------------------------------------- history
SCHEMA = """
CREATE TABLE IF NOT EXISTS drift_events (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, detected_at TEXT NOT NULL, pipeline TEXT NOT NULL,
    run_id TEXT NOT NULL, model_version TEXT NOT NULL, feature TEXT NOT NULL, test TEXT NOT NULL,
    statistic REAL, threshold REAL, p_value REAL, start_row INTEGER, end_row INTEGER, size INTEGER,
    reference_size INTEGER, detail TEXT NOT NULL, severity TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS drift_pipeline_at ON drift_events (pipeline, at);
CREATE INDEX IF NOT EXISTS drift_feature_at ON drift_events (feature, at);
"""
COLUMNS = ("detected_at", "pipeline", "run_id", "model_version", "feature", "test", "statistic", "threshold",
           "p_value", "start_row", "end_row", "size", "reference_size", "detail", "severity")
WINDOW = ("start_row", "end_row", "size", "reference_size")


def default_path() -> Path:
    """``ADPIPE_DRIFT_DB``, else ``$ADPIPE_HOME/drift.db``."""
    from adpipe.core.modelfile import adpipe_home

    return Path(os.environ.get("ADPIPE_DRIFT_DB") or adpipe_home() / "drift.db").expanduser()


class DriftHistory:
    """Drift events in a SQLite file (WAL: the CLI reads while a run writes)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path).expanduser() if path else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def add(self, events: list[DriftEvent]) -> None:
        rows = []
        for e in events:
            d = {**e.to_dict(), **{k: e.window.get(k) for k in WINDOW}}
            at = datetime.fromisoformat(e.detected_at).timestamp()
            rows.append((at, *(_sql(d[k]) for k in COLUMNS)))
        with closing(self._connect()) as db, db:
            db.executemany(f"INSERT INTO drift_events (at, {', '.join(COLUMNS)}) VALUES "
                           f"({', '.join('?' * (len(COLUMNS) + 1))})", rows)

    def query(self, pipeline: str | None = None, feature: str | None = None,
              since: float | datetime | str | None = None, limit: int = 100) -> list[DriftEvent]:
        """Newest first; ``since``: epoch seconds, a datetime, an ISO time or a duration back ("7d", "12h")."""
        where, args = [], []
        for col, val in (("pipeline", pipeline), ("feature", feature)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        if since is not None:
            where.append("at >= ?")
            args.append(parse_since(since))
        sql = (f"SELECT {', '.join(COLUMNS)} FROM drift_events" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY at DESC, id DESC LIMIT ?")
        with closing(self._connect()) as db:
            rows = db.execute(sql, (*args, int(limit))).fetchall()
        out = []
        for r in rows:
            d = dict(zip(COLUMNS, r))
            d["window"] = {k: d.pop(k) for k in WINDOW}
            d["statistic"] = math.nan if d["statistic"] is None else d["statistic"]
            d["threshold"] = math.nan if d["threshold"] is None else d["threshold"]
            out.append(DriftEvent.from_dict(d))
        return out


def _sql(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(since: float | datetime | str) -> float:
    """Epoch seconds from a number, a datetime, an ISO time (naive means UTC) or a duration back ("7d")."""
    if isinstance(since, (int, float)):
        return float(since)
    if isinstance(since, datetime):
        return (since if since.tzinfo else since.replace(tzinfo=timezone.utc)).timestamp()
    text = str(since).strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", text)
    if m:
        return (datetime.now(timezone.utc) - timedelta(seconds=float(m[1]) * UNITS[m[2]])).timestamp()
    try:
        return parse_since(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise ValueError(f"{since!r} is neither an ISO time (2024-05-01, 2024-05-01T12:00) nor a duration "
                         f"like 30m, 12h, 7d") from None
