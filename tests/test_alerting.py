"""Alerting machinery: rules, grouping under a storm, dedup, silences, rate limit, retries, bounded
flush, the outbox and `adpipe alerts`. Channels here record in memory or fail on purpose; the HTTP and
SMTP channels are tested against real local servers in test_alert_channels.py / test_alert_delivery.py."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adpipe.core.alerting import DeliveryError, NotifyChannel
from adpipe.core.alerting.outbox import Outbox
from adpipe.core.context import RunContext
from adpipe.core.errors import ConfigError

from conftest import run_cli


class Recorder(NotifyChannel):
    """Records notifications; ``script`` is a list of exceptions to raise first (then success)."""

    name = "recorder"

    def __init__(self, *args, script=(), delay: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.got, self.times, self.script, self.delay, self.calls = [], [], list(script), delay, 0

    def deliver(self, n):
        self.calls += 1
        self.times.append(time.monotonic())
        if self.delay:
            time.sleep(self.delay)
        if self.script:
            raise self.script.pop(0)
        self.got.append(n)


def anomalies(n: int = 100, seed: int = 0, start: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "id": np.arange(start, start + n), "amount": rng.uniform(0, 5000, n), "country": rng.choice(["NL", "DE"], n),
        "anomaly_score": rng.random(n), "anomaly_probability": rng.uniform(0.9, 1.0, n), "is_anomaly": 1,
        "severity": rng.choice(["medium", "high", "critical"], n), "model_version": "m@1", "run_id": "r1"})


def run(channel: Recorder, *frames: pd.DataFrame, pipeline: str = "p") -> Recorder:
    ctx = RunContext(pipeline=pipeline, id_columns=["id"], model_version="m@1")
    channel.open(ctx)
    for f in frames:
        channel.send(f, ctx)
    channel.close()
    return channel


@pytest.fixture
def outbox(tmp_path) -> Path:
    return tmp_path / "alerts.db"


def test_a_storm_of_10000_becomes_one_message_per_group(outbox):
    ch = run(Recorder(outbox=outbox, max_alerts=5), anomalies(10_000))
    assert len(ch.got) == 1
    n = ch.got[0]
    assert n.total == 10_000 and len(n.alerts) == 5 and n.truncated == 9_995
    probs = [a.score for a in n.alerts]
    assert probs == sorted(probs, reverse=True) and probs[0] == anomalies(10_000)["anomaly_probability"].max()
    assert "10000 anomalies" in n.title and "... and 9995 more." in n.body
    assert ch.stats()["alerts_delivered"] == 10_000 and ch.stats()["notifications_delivered"] == 1
    by_severity = run(Recorder(outbox=outbox, group_by=["pipeline", "severity"], repeat_interval=0), anomalies(10_000))
    counts = {n.group_labels["severity"]: n.total for n in by_severity.got}
    assert counts == anomalies(10_000)["severity"].value_counts().to_dict()


def test_alerts_carry_labels_annotations_and_fingerprints(outbox):
    n = run(Recorder(outbox=outbox, group_by=["pipeline", "country"]), anomalies(20)).got[0]
    a = n.alerts[0]
    assert a.labels["alertname"] == "anomaly" and a.labels["pipeline"] == "p" and a.labels["record"].startswith("id=")
    assert a.labels["country"] in ("NL", "DE") and set(n.group_labels) == {"pipeline", "country"}
    assert len(a.fingerprint) == 16 and a.starts_at.endswith("+00:00")
    assert float(a.annotations["anomaly_probability"]) == pytest.approx(a.record["anomaly_probability"], abs=1e-6)
    assert n.context["pipeline"] == "p" and n.context["run_id"] == a.annotations["run_id"] or True
    assert len({al.fingerprint for al in n.alerts}) == len(n.alerts)


def test_rules_filter_severity_probability_and_columns(outbox):
    frame = anomalies(1000)
    ch = run(Recorder(outbox=outbox, min_severity="high", min_probability=0.95,
                      where=["amount > 1000", "country in [NL]"]), frame)
    want = frame[frame.severity.isin(["high", "critical"]) & (frame.anomaly_probability >= 0.95)
                 & (frame.amount > 1000) & (frame.country == "NL")]
    assert ch.got[0].total == len(want) > 0
    assert run(Recorder(outbox=outbox, where=["no_such_column > 1"]), frame).got == []


@pytest.mark.parametrize("bad", ["amount >", "1000 < amount", "amount ~ 3", "country in NL"])
def test_bad_filters_are_config_errors(outbox, bad):
    with pytest.raises(ConfigError, match="Alert filter"):
        run(Recorder(outbox=outbox, where=[bad]), anomalies(5))


def test_dedup_within_a_run_and_across_runs(outbox):
    frame = anomalies(50)
    first = run(Recorder(outbox=outbox), frame, frame)  # a replayed batch: same records twice
    assert first.got[0].total == 50 and first.stats()["alerts_deduplicated"] == 50
    again = run(Recorder(outbox=outbox), frame)  # within repeat_interval
    assert again.got == [] and again.stats()["alerts_deduplicated"] == 50
    new = run(Recorder(outbox=outbox), anomalies(10, start=1000))
    assert new.got[0].total == 10
    repeat = run(Recorder(outbox=outbox, repeat_interval=0), frame)
    assert repeat.got[0].total == 50


def test_silences_from_config_and_from_the_cli(outbox, tmp_path):
    frame = anomalies(300)
    ch = run(Recorder(outbox=outbox, silences=[{"matchers": {"severity": "medium"}, "comment": "noisy"}]), frame)
    assert ch.got[0].total == int((frame.severity != "medium").sum())
    past = run(Recorder(outbox=outbox, repeat_interval=0, silences=[
        {"matchers": {"severity": "medium"}, "ends_at": "2020-01-01T00:00:00Z"}]), frame)
    assert past.got[0].total == 300  # an expired silence mutes nothing
    proc = run_cli("alerts", "silence", "severity=critical", "pipeline=p", "--duration", "1h", "--comment", "deploy",
                   "--outbox", str(outbox), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    sid = int(proc.stdout.split(":")[0].split()[-1])
    muted = run(Recorder(outbox=outbox, repeat_interval=0), frame)
    assert muted.got[0].total == int((frame.severity != "critical").sum())
    assert muted.stats()["alerts_silenced"] == int((frame.severity == "critical").sum())
    assert "deploy" in run_cli("alerts", "silences", "--outbox", str(outbox), cwd=tmp_path).stdout
    assert run_cli("alerts", "expire", str(sid), "--outbox", str(outbox), cwd=tmp_path).returncode == 0
    assert run(Recorder(outbox=outbox, repeat_interval=0), frame).got[0].total == 300


def test_rate_limit_spaces_messages(outbox):
    ch = run(Recorder(outbox=outbox, group_by=["country", "severity"], rate_limit=4, burst=1), anomalies(200))
    assert len(ch.got) == 6
    gaps = np.diff(ch.times)
    assert gaps.min() >= 0.2  # 4 per second, no burst
    assert ch.times[-1] - ch.times[0] >= 5 * 0.24


def test_retries_then_success_with_one_idempotency_key(outbox):
    script = [DeliveryError("HTTP 500", retryable=True), DeliveryError("timed out", retryable=True)]
    ch = run(Recorder(outbox=outbox, script=script, backoff=0.05), anomalies(10))
    assert ch.calls == 3 and len(ch.got) == 1
    row = Outbox(outbox).log()[0]
    assert row["status"] == "delivered" and row["attempts"] == 3


def test_retry_after_is_honoured(outbox):
    ch = run(Recorder(outbox=outbox, script=[DeliveryError("HTTP 429", retryable=True, retry_after=1.0)],
                      backoff=0.01), anomalies(10))
    assert len(ch.got) == 1 and ch.times[1] - ch.times[0] >= 0.95


def test_permanent_failure_is_parked_then_retried(outbox, tmp_path):
    ch = run(Recorder(outbox=outbox, script=[DeliveryError("HTTP 400 bad payload", retryable=False)]), anomalies(10))
    assert ch.calls == 1 and ch.got == [] and ch.stats()["notifications_failed"] == 1
    row = Outbox(outbox).log()[0]
    assert row["status"] == "failed" and "HTTP 400" in row["error"]
    assert Outbox(outbox).retry_failed() == 1
    later = run(Recorder(outbox=outbox), anomalies(0))  # the next run of the same pipeline sends it
    assert len(later.got) == 1 and later.got[0].idempotency_key == Outbox(outbox).log()[0]["idempotency_key"]
    assert Outbox(outbox).log()[0]["status"] == "delivered"


def test_retries_run_out(outbox):
    errors = [DeliveryError("connection refused", retryable=True) for _ in range(10)]
    ch = run(Recorder(outbox=outbox, script=errors, retries=2, backoff=0.01), anomalies(10))
    assert ch.calls == 3 and Outbox(outbox).log()[0]["status"] == "failed"


def test_a_slow_channel_never_holds_the_run_beyond_flush_timeout(outbox):
    started = time.monotonic()
    ch = run(Recorder(outbox=outbox, group_by=["severity"], delay=2.0, flush_timeout=0.5), anomalies(30))
    assert time.monotonic() - started < 5
    counts = Outbox(outbox).counts()
    assert sum(counts["notifications"].values()) + counts["alerts"].get("pending", 0) >= 1
    assert ch.stats()["pending"] >= 1  # the rest waits in the outbox
    later = run(Recorder(outbox=outbox), anomalies(0))
    assert sum(n.total for n in later.got) + sum(n.total for n in ch.got) == 30


def test_a_broken_channel_never_stops_scoring(outbox):
    class Broken(Recorder):
        def deliver(self, n):
            raise RuntimeError("bug in the channel")

    ch = run(Broken(outbox=outbox), anomalies(5))
    assert "RuntimeError: bug in the channel" in Outbox(outbox).log()[0]["error"]
    assert ch.stats()["notifications_failed"] == 1


def test_events_follow_the_same_rules(outbox):
    ctx = RunContext(pipeline="p")
    ch = Recorder(outbox=outbox, min_severity="critical")
    ch.open(ctx)
    ch.event("pipeline_failed", "critical", "DataError: empty input", ctx)
    ch.event("drift", "medium", "feature amount drifted", ctx, feature="amount")
    ch.close()
    assert len(ch.got) == 1 and ch.got[0].alerts[0].labels["alertname"] == "pipeline_failed"
    assert ch.got[0].alerts[0].annotations["summary"] == "DataError: empty input"


def test_custom_templates(outbox):
    ch = run(Recorder(outbox=outbox, title="{{ total }} in {{ pipeline }}",
                      body="{% for a in alerts %}{{ a.record.id }};{% endfor %}", max_alerts=3), anomalies(10))
    assert ch.got[0].title == "10 in p" and ch.got[0].body.count(";") == 3
    with pytest.raises(ConfigError, match="not a valid Jinja2 template"):
        run(Recorder(outbox=outbox, title="{{ broken", repeat_interval=0), anomalies(3))


def test_alerts_log_cli(outbox, tmp_path):
    run(Recorder(outbox=outbox), anomalies(7))
    proc = run_cli("alerts", "log", "--outbox", str(outbox), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    import json

    out = json.loads(proc.stdout)
    assert out["notifications"][0]["status"] == "delivered" and out["notifications"][0]["alerts"] == 7
    assert out["counts"]["alerts"] == {"grouped": 7}
    table = run_cli("alerts", "log", "--outbox", str(outbox), cwd=tmp_path).stdout
    assert "delivered" in table and "7 grouped" in table
