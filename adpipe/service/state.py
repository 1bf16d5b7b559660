"""What the service remembers: runs, fit jobs and recent anomalies (SQLite), and recent probabilities.

The SQLite file (``settings.state_file``, default ``<store>/.service.sqlite``) keeps jobs and runs across
restarts and the latest anomalies; the score histogram is kept in memory only (a ring of the latest
probabilities per model). Writes from the scoring path are queued and written by one background thread,
so a request never waits for the disk.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ANOMALIES_KEPT = 500  # in memory and in the file
PROBABILITIES_KEPT = 10_000  # per model, for the histogram
RUNS_KEPT = 5_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, model TEXT, status TEXT NOT NULL, started_at TEXT,
    finished_at TEXT, rows_in INTEGER, anomalies INTEGER, seconds REAL, error TEXT);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, status TEXT NOT NULL, config TEXT NOT NULL, overrides TEXT NOT NULL, model TEXT,
    error TEXT, created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT, seconds REAL);
CREATE TABLE IF NOT EXISTS anomalies (
    id INTEGER PRIMARY KEY, at TEXT NOT NULL, model TEXT NOT NULL, version INTEGER, anomaly_score REAL,
    anomaly_probability REAL, severity TEXT, record TEXT NOT NULL);
"""
RUN_FIELDS = ("id", "kind", "model", "status", "started_at", "finished_at", "rows_in", "anomalies", "seconds",
              "error")
JOB_FIELDS = ("id", "status", "config", "overrides", "model", "error", "created_at", "started_at", "finished_at",
              "seconds")
ANOMALY_FIELDS = ("at", "model", "version", "anomaly_score", "anomaly_probability", "severity", "record")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Ring:
    """The latest ``size`` float values (a numpy ring buffer)."""

    def __init__(self, size: int):
        self.values = np.empty(size, dtype=np.float64)
        self.n = 0  # values ever added

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()[-len(self.values):]
        size = len(self.values)
        start = self.n % size
        end = start + len(values)
        if end <= size:
            self.values[start:end] = values
        else:
            cut = size - start
            self.values[start:] = values[:cut]
            self.values[:end - size] = values[cut:]
        self.n += len(values)

    def latest(self) -> np.ndarray:
        return self.values[:min(self.n, len(self.values))].copy()


class State:
    """Runs, jobs and anomalies in SQLite plus in-memory rings (thread-safe)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self.anomalies: deque[dict[str, Any]] = deque(maxlen=ANOMALIES_KEPT)
        for row in reversed(self._query(f"SELECT {', '.join(ANOMALY_FIELDS)} FROM anomalies ORDER BY id DESC "
                                        f"LIMIT {ANOMALIES_KEPT}")):
            self.anomalies.append({**dict(zip(ANOMALY_FIELDS, row, strict=True)), "record": json.loads(row[-1])})
        self.probabilities: dict[str, Ring] = {}  # "name@version" -> ring
        self.last_scored: str | None = None  # "name@version" scored most recently
        self._ring_lock = threading.Lock()
        self._run_adds = 0
        self._writes: queue.Queue = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name="adpipe-state-writer", daemon=True)
        self._writer.start()

    # ------------------------------------------------------------------ low level
    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _execute(self, sql: str, args: tuple | list = (), many: bool = False) -> None:
        with self._lock:
            if many:
                self._db.executemany(sql, args)
            else:
                self._db.execute(sql, args)

    def _write_loop(self) -> None:
        while True:
            item = self._writes.get()
            if item is None:
                self._writes.task_done()
                return
            try:
                self._execute(*item)
            except sqlite3.Error:  # the record of the past must never stop scoring
                pass
            finally:
                self._writes.task_done()

    def flush(self) -> None:
        """Wait until queued writes are in the file."""
        self._writes.join()

    def close(self) -> None:
        self._writes.put(None)
        self._writer.join(10)
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ runs
    def add_run(self, run: dict[str, Any], wait: bool = False) -> None:
        """Insert or replace a run (queued write unless ``wait``)."""
        sql = (f"INSERT OR REPLACE INTO runs ({', '.join(RUN_FIELDS)}) VALUES ({', '.join('?' * len(RUN_FIELDS))})")
        args = tuple(run.get(k) for k in RUN_FIELDS)
        if wait:
            self._execute(sql, args)
        else:
            self._writes.put((sql, args))
        self._run_adds += 1
        if self._run_adds % 100 == 0:  # keep the newest RUNS_KEPT scored batches
            self._writes.put((f"DELETE FROM runs WHERE kind = 'score_batch' AND id NOT IN (SELECT id FROM runs "
                              f"WHERE kind = 'score_batch' ORDER BY started_at DESC LIMIT {RUNS_KEPT})",))

    def runs(self, limit: int = 50, kind: str | None = None) -> list[dict[str, Any]]:
        self.flush()
        where, args = ("WHERE kind = ?", (kind,)) if kind else ("", ())
        rows = self._query(f"SELECT {', '.join(RUN_FIELDS)} FROM runs {where} ORDER BY started_at DESC LIMIT ?",
                           (*args, int(limit)))
        return [dict(zip(RUN_FIELDS, r, strict=True)) for r in rows]

    # ------------------------------------------------------------------ jobs
    def save_job(self, job: dict[str, Any]) -> None:
        row = {**job, "overrides": json.dumps(job.get("overrides") or [])}
        self._execute(f"INSERT OR REPLACE INTO jobs ({', '.join(JOB_FIELDS)}) VALUES "
                      f"({', '.join('?' * len(JOB_FIELDS))})", tuple(row.get(k) for k in JOB_FIELDS))
        self.add_run({"id": job["id"], "kind": "fit", "model": job.get("model"), "status": job["status"],
                      "started_at": job.get("started_at") or job["created_at"], "finished_at": job.get("finished_at"),
                      "seconds": job.get("seconds"), "error": job.get("error")}, wait=True)

    def job(self, job_id: str) -> dict[str, Any] | None:
        rows = self._query(f"SELECT {', '.join(JOB_FIELDS)} FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def jobs(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._query(f"SELECT {', '.join(JOB_FIELDS)} FROM jobs ORDER BY created_at DESC LIMIT ?", (int(limit),))
        return [_job(r) for r in rows]

    def job_counts(self) -> dict[str, int]:
        return dict(self._query("SELECT status, COUNT(*) FROM jobs GROUP BY status"))

    def fail_unfinished(self, reason: str) -> list[str]:
        """Mark queued and running jobs failed (the server stopped before they finished)."""
        ids = [r[0] for r in self._query("SELECT id FROM jobs WHERE status IN ('queued', 'running')")]
        for job_id in ids:
            job = self.job(job_id)
            if job is not None:
                self.save_job({**job, "status": "failed", "error": reason, "finished_at": now()})
        return ids

    # ------------------------------------------------------------------ anomalies and scores
    def record_scores(self, key: str, probabilities: np.ndarray) -> None:
        with self._ring_lock:
            ring = self.probabilities.get(key)
            if ring is None:
                ring = self.probabilities[key] = Ring(PROBABILITIES_KEPT)
            ring.add(probabilities)
            self.last_scored = key

    def latest_probabilities(self, key: str) -> np.ndarray:
        with self._ring_lock:
            ring = self.probabilities.get(key)
            return ring.latest() if ring is not None else np.empty(0)

    def add_anomalies(self, rows: list[dict[str, Any]]) -> None:
        """Remember flagged records (``ANOMALY_FIELDS``; ``record`` a dict)."""
        if not rows:
            return
        self.anomalies.extend(rows)
        args = [tuple(json.dumps(r[k], default=str) if k == "record" else r[k] for k in ANOMALY_FIELDS)
                for r in rows[-ANOMALIES_KEPT:]]
        self._writes.put((f"INSERT INTO anomalies ({', '.join(ANOMALY_FIELDS)}) VALUES "
                          f"({', '.join('?' * len(ANOMALY_FIELDS))})", args, True))
        self._writes.put((f"DELETE FROM anomalies WHERE id <= (SELECT MAX(id) FROM anomalies) - {ANOMALIES_KEPT}",))

    def latest_anomalies(self, limit: int = 100, model: str | None = None) -> list[dict[str, Any]]:
        out = []
        for row in reversed(self.anomalies):
            if model is None or row["model"] == model:
                out.append(row)
                if len(out) >= limit:
                    break
        return out


def _job(row: tuple) -> dict[str, Any]:
    job = dict(zip(JOB_FIELDS, row, strict=True))
    job["overrides"] = json.loads(job["overrides"] or "[]")
    return job
