"""Alert delivery end to end against a real local HTTP receiver: a pipeline run, a dead receiver then
`adpipe alerts retry`, and a process killed with alerts undelivered then restarted (none lost, each
delivered once per idempotency key)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from adpipe.core.alerting.outbox import Outbox
from adpipe.core.engine import Pipeline

from conftest import blob_frame, run_cli, write_yaml


class Receiver(ThreadingHTTPServer):
    """Records every POST (idempotency key, JSON body); answers from ``statuses`` then 200."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.posts, self.statuses, self.delay = [], [], 0.0
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def keys(self) -> set[str]:
        return {k for k, _ in self.posts}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        time.sleep(self.server.delay)
        with self.server.lock:
            status = self.server.statuses.pop(0) if self.server.statuses else 200
            if status == 200:
                self.server.posts.append((self.headers["Idempotency-Key"], body))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def config(csv, url, outbox, **channel) -> dict:
    return {"name": "blobs", "detector": "iforest", "columns": {"id": ["id"]}, "source": {"type": "csv", "path": str(csv)},
            "sinks": [{"type": "csv", "path": str(csv.parent / "out" / "scores.csv")}],
            "alerts": [{"type": "webhook", "url": url, "outbox": str(outbox), **channel}]}


def test_a_run_delivers_an_alertmanager_message(make_csv, receiver, tmp_path):
    csv = make_csv(blob_frame(n=2000, n_outliers=50, with_id=True))
    receiver.statuses = [500]  # the first attempt fails, the retry succeeds
    summary = Pipeline.from_dict(config(csv, receiver.url, tmp_path / "a.db", format="alertmanager", backoff=0.05,
                                        group_by=["pipeline", "severity"])).run()
    payloads = [body for _, body in receiver.posts]
    assert sum(len(p["alerts"]) + p["truncatedAlerts"] for p in payloads) == summary.anomalies == 200
    p = payloads[0]
    assert p["version"] == "4" and p["status"] == "firing" and p["groupLabels"]["pipeline"] == "blobs"
    assert {"labels", "annotations", "startsAt", "endsAt", "fingerprint", "status"} <= set(p["alerts"][0])
    assert summary.alerts["notifications_delivered"] == len(payloads) and summary.alerts["alerts_delivered"] == 200
    assert p["alerts"][0]["generatorURL"].endswith("scores.csv")  # links to the run's results


def test_a_dead_receiver_never_fails_the_run_and_alerts_retry_delivers(make_csv, receiver, tmp_path):
    csv = make_csv(blob_frame(with_id=True))
    dead = "http://127.0.0.1:9/hook"  # discard port: nothing listens
    cfg = config(csv, dead, tmp_path / "a.db", retries=2, backoff=0.05, flush_timeout=5)
    write_yaml(tmp_path / "pipe.yaml", cfg)
    proc = run_cli("run", "config=pipe.yaml", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["anomalies"] == 30 and summary["alerts"]["notifications_failed"] == 1
    row = Outbox(tmp_path / "a.db").log()[0]
    assert row["status"] == "failed" and row["attempts"] == 3 and "127.0.0.1" in row["error"]
    key = row["idempotency_key"]
    proc = run_cli("alerts", "retry", "config=pipe.yaml", f"alerts.0.url={receiver.url}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "1 delivered" in proc.stdout
    assert receiver.keys() == {key} and receiver.posts[0][1]["total"] == 30
    assert Outbox(tmp_path / "a.db").log()[0]["status"] == "delivered"


KILLED = """
import os, signal, sys, threading, time
import numpy as np, pandas as pd
from adpipe.core.context import RunContext
from adpipe.plugins.alerting.webhook import WebhookChannel
url, outbox = sys.argv[1], sys.argv[2]
ch = WebhookChannel(url=url, outbox=outbox, group_by=["record"], group_wait=0, rate_limit=20, burst=1)
ctx = RunContext(pipeline="killed", id_columns=["id"])
n = 40
frame = pd.DataFrame({"id": np.arange(n), "anomaly_score": np.linspace(1, 2, n), "anomaly_probability": 0.99,
                      "is_anomaly": 1, "severity": "high", "model_version": "m", "run_id": "r"})
ch.open(ctx)
ch.send(frame, ctx)
print("sent", flush=True)
time.sleep(float(sys.argv[3]))
os.kill(os.getpid(), signal.SIGKILL)  # no close(), no flush: a crash
"""


@pytest.mark.parametrize("wait", [0.0, 0.8])
def test_killed_with_alerts_undelivered_then_restarted(receiver, tmp_path, wait):
    receiver.delay = 0.05
    outbox = tmp_path / "a.db"
    proc = subprocess.run([sys.executable, "-c", KILLED, receiver.url, str(outbox), str(wait)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL and "sent" in proc.stdout, proc.stderr
    before = len(receiver.keys())
    assert before < 40  # the crash left work undone
    restart = """
import sys
from adpipe.core.context import RunContext
from adpipe.plugins.alerting.webhook import WebhookChannel
ch = WebhookChannel(url=sys.argv[1], outbox=sys.argv[2], group_by=["record"], rate_limit=1000, burst=50)
ch.open(RunContext(pipeline="killed", id_columns=["id"]))
ch.close()
print(ch.stats())
"""
    proc = subprocess.run([sys.executable, "-c", restart, receiver.url, str(outbox)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    ids = sorted(int(a["record"]["id"]) for _, body in receiver.posts for a in body["alerts"])
    unique = {}
    for key, body in receiver.posts:  # a receiver dropping duplicates by idempotency key
        unique.setdefault(key, body)
    got = sorted(int(a["record"]["id"]) for body in unique.values() for a in body["alerts"])
    assert got == list(range(40))  # every alert delivered exactly once after dedup, none lost
    assert len(ids) - len(got) <= 1  # at most the one in flight at the kill was delivered twice
    counts = Outbox(outbox).counts()
    assert counts["notifications"] == {"delivered": 40} and counts["alerts"] == {"grouped": 40}


def test_a_failed_run_raises_a_pipeline_failed_alert(make_csv, receiver, tmp_path):
    csv = make_csv(blob_frame(with_id=True))
    cfg = config(csv, receiver.url, tmp_path / "a.db", min_severity="critical")
    cfg["columns"]["features"] = ["f0", "no_such_column"]
    write_yaml(tmp_path / "bad.yaml", cfg)
    proc = run_cli("run", "config=bad.yaml", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr  # the run's own error is unchanged
    assert len(receiver.posts) == 1
    alert = receiver.posts[0][1]["alerts"][0]
    assert alert["labels"]["alertname"] == "pipeline_failed" and alert["labels"]["severity"] == "critical"
    assert "no_such_column" in alert["annotations"]["summary"]
