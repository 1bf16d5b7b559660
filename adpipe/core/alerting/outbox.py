"""The durable alert outbox: a SQLite file that keeps every alert and notification until delivered.

Alerts are written as soon as the engine hands them over (``pending``), before any delivery is tried;
a group of them becomes one notification (alerts ``grouped``), which stays ``pending`` until the
channel accepts it (``delivered``) or the retries run out (``failed``, with the error). A process
killed at any point leaves rows that the next run, or ``adpipe alerts retry``, picks up: nothing is
lost, and a notification resent after a crash carries the same idempotency key.

Path: the channel's ``outbox`` parameter, else ``ADPIPE_ALERTS_DB``, else ``$ADPIPE_HOME/alerts.db``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from adpipe.core.alerting.model import Alert, Notification

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY, channel TEXT NOT NULL, fingerprint TEXT NOT NULL, group_key TEXT NOT NULL,
    group_labels TEXT NOT NULL, score REAL NOT NULL, body TEXT NOT NULL, context TEXT NOT NULL,
    created REAL NOT NULL, status TEXT NOT NULL, notification INTEGER);
CREATE INDEX IF NOT EXISTS alerts_group ON alerts (channel, status, group_key, score);
CREATE INDEX IF NOT EXISTS alerts_notification ON alerts (notification);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY, channel TEXT NOT NULL, idempotency_key TEXT NOT NULL UNIQUE,
    group_key TEXT NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT, created REAL NOT NULL, updated REAL NOT NULL, delivered REAL);
CREATE INDEX IF NOT EXISTS notifications_status ON notifications (channel, status);
CREATE TABLE IF NOT EXISTS sent (
    channel TEXT NOT NULL, fingerprint TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (channel, fingerprint));
CREATE TABLE IF NOT EXISTS groups (
    channel TEXT NOT NULL, group_key TEXT NOT NULL, last REAL NOT NULL, PRIMARY KEY (channel, group_key));
CREATE TABLE IF NOT EXISTS silences (
    id INTEGER PRIMARY KEY, matchers TEXT NOT NULL, starts REAL NOT NULL, ends REAL NOT NULL,
    comment TEXT NOT NULL, created_by TEXT, created REAL NOT NULL);
"""


def default_path() -> Path:
    from adpipe.core.modelfile import adpipe_home

    return Path(os.environ.get("ADPIPE_ALERTS_DB") or adpipe_home() / "alerts.db").expanduser()


class Outbox:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()  # one connection per thread (sqlite3 connections are not shared)
        db = sqlite3.connect(self.path, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        finally:
            db.close()

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, one transaction per operation (safe across threads and processes)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA synchronous=NORMAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ alerts
    def recently_sent(self, channel: str, fingerprints: list[str], since: float) -> set[str]:
        with self._db() as db:
            rows = db.execute("SELECT fingerprint FROM sent WHERE channel = ? AND at >= ?", (channel, since))
            sent = {r[0] for r in rows}
        return sent.intersection(fingerprints)

    def add_alerts(self, channel: str, items: list[tuple[Alert, str, dict, str]], context: dict) -> None:
        """``items``: (alert, group_key, group_labels, status) with status pending, silenced or deduplicated."""
        now = time.time()
        ctx = json.dumps(context, default=str)
        rows = [(channel, a.fingerprint, key, json.dumps(labels), a.score, json.dumps(a.to_dict(), default=str), ctx,
                 now, status) for a, key, labels, status in items]  # serialised before the write lock
        with self._db() as db:
            db.executemany("INSERT INTO alerts (channel, fingerprint, group_key, group_labels, score, body, context, "
                           "created, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def pending_groups(self, channel: str) -> list[dict[str, Any]]:
        """Groups with pending alerts: key, labels, first alert time, last notification time."""
        with self._db() as db:
            rows = db.execute(
                "SELECT a.group_key, MIN(a.group_labels), MIN(a.created), COUNT(*), g.last FROM alerts a "
                "LEFT JOIN groups g ON g.channel = a.channel AND g.group_key = a.group_key "
                "WHERE a.channel = ? AND a.status = 'pending' GROUP BY a.group_key", (channel,)).fetchall()
        return [{"key": k, "labels": json.loads(lbl), "first": first, "count": n, "last": last}
                for k, lbl, first, n, last in rows]

    def take_group(self, channel: str, group_key: str, top: int, build) -> Notification | None:
        """Turn a group's pending alerts into one pending notification, atomically.

        ``build(top_alerts, total, context) -> Notification`` makes the message from the ``top`` alerts by
        score and the group's size; only those ``top`` bodies are read.
        """
        now = time.time()
        where = "channel = ? AND status = 'pending' AND group_key = ?"
        with self._db() as db:
            total, last = db.execute(f"SELECT COUNT(*), MAX(id) FROM alerts WHERE {where}",
                                            (channel, group_key)).fetchone()
            if not total:
                return None
            rows = db.execute(f"SELECT body, context FROM alerts WHERE {where} ORDER BY score DESC, id LIMIT ?",
                              (channel, group_key, top)).fetchall()
            alerts = [Alert.from_dict(json.loads(body)) for body, _ in rows]
            n = build(alerts, total, json.loads(rows[0][1]))
            cur = db.execute("INSERT INTO notifications (channel, idempotency_key, group_key, body, status, created, "
                             "updated) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                             (channel, n.idempotency_key, group_key, json.dumps(n.to_dict(), default=str), now, now))
            db.execute(f"UPDATE alerts SET status = 'grouped', notification = ? WHERE {where} AND id <= ?",
                       (cur.lastrowid, channel, group_key, last))
            db.execute("INSERT INTO groups (channel, group_key, last) VALUES (?, ?, ?) ON CONFLICT (channel, group_key) "
                       "DO UPDATE SET last = excluded.last", (channel, group_key, now))
        return n

    # ------------------------------------------------------------------ notifications
    def pending_notifications(self, channel: str) -> list[tuple[int, Notification]]:
        with self._db() as db:
            rows = db.execute("SELECT id, body FROM notifications WHERE channel = ? AND status = 'pending' ORDER BY id",
                              (channel,)).fetchall()
        return [(i, Notification.from_dict(json.loads(body))) for i, body in rows]

    def mark(self, nid: int, status: str, *, attempts: int, error: str | None = None) -> None:
        now = time.time()
        with self._db() as db:
            db.execute("UPDATE notifications SET status = ?, attempts = attempts + ?, error = ?, updated = ?, "
                       "delivered = CASE WHEN ? = 'delivered' THEN ? ELSE delivered END WHERE id = ?",
                       (status, attempts, error, now, status, now, nid))
            if status == "delivered":
                db.execute("INSERT INTO sent (channel, fingerprint, at) SELECT channel, fingerprint, ? FROM alerts "
                           "WHERE notification = ? ON CONFLICT (channel, fingerprint) DO UPDATE SET at = excluded.at",
                           (now, nid))

    def retry_failed(self, channel: str | None = None) -> int:
        """Failed notifications go back to pending (``adpipe alerts retry``); returns how many."""
        with self._db() as db:
            cur = db.execute("UPDATE notifications SET status = 'pending', error = NULL WHERE status = 'failed'"
                             + (" AND channel = ?" if channel else ""), (channel,) if channel else ())
            return cur.rowcount

    def log(self, limit: int = 50, status: str | None = None) -> list[dict[str, Any]]:
        query = ("SELECT id, channel, idempotency_key, group_key, status, attempts, error, created, delivered, "
                 "json_extract(body, '$.total'), json_extract(body, '$.title') FROM notifications")
        args: tuple = ()
        if status:
            query, args = query + " WHERE status = ?", (status,)
        with self._db() as db:
            rows = db.execute(query + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        keys = ("id", "channel", "idempotency_key", "group", "status", "attempts", "error", "created", "delivered",
                "alerts", "title")
        return [dict(zip(keys, r)) for r in rows]

    def counts(self, channel: str | None = None) -> dict[str, dict[str, int]]:
        """Alert and notification counts by status."""
        where, args = (" WHERE channel = ?", (channel,)) if channel else ("", ())
        with self._db() as db:
            alerts = dict(db.execute(f"SELECT status, COUNT(*) FROM alerts{where} GROUP BY status", args).fetchall())
            notes = dict(db.execute(f"SELECT status, COUNT(*) FROM notifications{where} GROUP BY status",
                                    args).fetchall())
        return {"alerts": alerts, "notifications": notes}

    def prune(self, keep_days: float = 30.0) -> None:
        """Forget delivered notifications, their alerts and old dedup records after ``keep_days``."""
        cutoff = time.time() - keep_days * 86400
        with self._db() as db:
            db.execute("DELETE FROM alerts WHERE notification IN (SELECT id FROM notifications WHERE "
                       "status = 'delivered' AND delivered < ?)", (cutoff,))
            db.execute("DELETE FROM alerts WHERE status IN ('silenced', 'deduplicated') AND created < ?", (cutoff,))
            db.execute("DELETE FROM notifications WHERE status = 'delivered' AND delivered < ?", (cutoff,))
            db.execute("DELETE FROM sent WHERE at < ?", (cutoff,))

    # ------------------------------------------------------------------ silences
    def add_silence(self, matchers: dict[str, str], starts: float, ends: float, comment: str,
                    created_by: str | None) -> int:
        with self._db() as db:
            cur = db.execute("INSERT INTO silences (matchers, starts, ends, comment, created_by, created) VALUES "
                             "(?, ?, ?, ?, ?, ?)", (json.dumps(matchers), starts, ends, comment, created_by,
                                                    time.time()))
            return cur.lastrowid

    def silences(self, active_only: bool = True) -> list[dict[str, Any]]:
        now = time.time()
        with self._db() as db:
            rows = db.execute("SELECT id, matchers, starts, ends, comment, created_by FROM silences"
                              + (" WHERE starts <= ? AND ends > ?" if active_only else ""),
                              (now, now) if active_only else ()).fetchall()
        return [{"id": i, "matchers": json.loads(m), "starts": s, "ends": e, "comment": c, "created_by": by}
                for i, m, s, e, c, by in rows]

    def expire_silence(self, sid: int) -> bool:
        with self._db() as db:
            return db.execute("UPDATE silences SET ends = ? WHERE id = ?", (time.time(), sid)).rowcount > 0
