"""Kafka pipelines end to end, against librdkafka's mock cluster (a real Kafka-protocol broker in-process).

The `adpipe` processes started here connect to the mock broker of this test process over loopback.
Every test uses its own topics and consumer groups. Loops are bounded by deadlines.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("confluent_kafka")
import confluent_kafka as ck  # noqa: E402

import adpipe  # noqa: E402
from adpipe.core.config import load_config  # noqa: E402
from adpipe.core.drift import DriftHistory  # noqa: E402
from conftest import write_yaml  # noqa: E402

FEATURES = [f"f{i}" for i in range(4)]


@pytest.fixture(scope="module")
def kafka():
    """host:port of a mock Kafka cluster living as long as this module's tests."""
    holder = ck.Producer({"test.mock.num.brokers": 1, "log_level": 3})
    md = holder.list_topics(timeout=10)
    broker = next(iter(md.brokers.values()))
    yield f"{broker.host}:{broker.port}"
    holder.flush(1)


def names(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def records(n: int, start: int = 0, seed: int = 0, outliers: tuple[int, ...] = ()) -> list[dict]:
    rng = np.random.default_rng(seed)
    values = rng.normal(0, 1, size=(n, len(FEATURES)))
    out = []
    for i in range(n):
        rec = {"id": start + i, **{f: float(v) for f, v in zip(FEATURES, values[i])}}
        if start + i in outliers:
            rec.update({f: 12.0 for f in FEATURES})
        out.append(rec)
    return out


def produce(bs: str, topic: str, rows: list, raw: bool = False) -> None:
    p = ck.Producer({"bootstrap.servers": bs, "linger.ms": 5})
    for r in rows:
        value = r if raw else json.dumps(r).encode()
        key = None if raw else str(r["id"]).encode()
        while True:
            try:
                p.produce(topic, value=value, key=key)
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(30) == 0


def consume(bs: str, topic: str, until: int | None = None, seconds: float = 30) -> list[dict]:
    """Every message of ``topic`` from the beginning (assigned partitions, no group join), until
    ``until`` arrived, or the topic was quiet for 2 s, or ``seconds`` passed."""
    c = ck.Consumer({"bootstrap.servers": bs, "group.id": names("check"), "enable.auto.commit": False})
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in parts])
    out: list[dict] = []
    deadline = time.monotonic() + seconds
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            got = [m for m in c.consume(5000, 0.2) if m.error() is None]
            out += [json.loads(m.value()) for m in got]
            if until is not None and len(out) >= until:
                break
            if got:
                last = time.monotonic()
            elif until is None and time.monotonic() - last > 2:
                break
    finally:
        c.close()
    return out


def committed(bs: str, group: str, topic: str) -> int:
    c = ck.Consumer({"bootstrap.servers": bs, "group.id": group})
    try:
        parts = [ck.TopicPartition(topic, p) for p in c.list_topics(topic, timeout=10).topics[topic].partitions]
        return sum(max(tp.offset, 0) for tp in c.committed(parts, timeout=10))
    finally:
        c.close()


def stream_config(bs: str, topic_in: str, topic_out: str, group: str, **extra) -> dict:
    cfg = {
        "name": extra.pop("name", "payments"),
        "source": {"type": "kafka", "bootstrap_servers": bs, "topics": [topic_in], "group": group,
                   "max_batch_rows": 500, "max_batch_ms": 200},
        "detector": {"type": "iforest", "n_estimators": 50, "random_state": 0},
        "threshold": {"type": "contamination", "contamination": 0.01},
        "columns": {"id": ["id"], "features": FEATURES},
        "sinks": [{"type": "kafka", "bootstrap_servers": bs, "topic": topic_out}],
        "stream": {"warmup_rows": 1000, "idle_stop_seconds": 6, "status_every_seconds": 1},
    }
    for key, value in extra.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return cfg


def start_cli(args: list[str], cwd: Path, home: Path) -> subprocess.Popen:
    env = {**os.environ, "ADPIPE_HOME": str(home), "ADPIPE_STORE": str(home / "models"), "NO_COLOR": "1"}
    return subprocess.Popen([sys.executable, "-m", "adpipe", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


# --------------------------------------------------------------------------- end to end
def test_stream_warms_up_scores_every_record_and_dead_letters_bad_ones(kafka):
    topic_in, topic_out, group = names("in"), names("out"), names("g")
    good = records(3000, outliers=(2100, 2500))
    bad = [b"not json", json.dumps([1, 2]).encode(), json.dumps({"id": 9001, "f0": {"x": 1}}).encode()]
    invalid = [{"id": 9002, "f0": "abc", "f1": 1, "f2": 1, "f3": 1}, {"id": 9003, "f0": 1.0}]  # text, missing
    produce(kafka, topic_in, good[:1500])
    produce(kafka, topic_in, bad, raw=True)
    produce(kafka, topic_in, invalid + good[1500:])

    summary = adpipe.Pipeline.from_dict(stream_config(kafka, topic_in, topic_out, group)).run(write_summary=False)

    out = consume(kafka, topic_out, until=3000)
    ids = {r["id"] for r in out}
    assert ids == set(range(3000))  # every good record, none of the rejected ones
    flagged = {r["id"] for r in out if r["is_anomaly"] == 1}
    assert {2100, 2500} <= flagged
    assert set(out[0]) >= {"id", "anomaly_score", "anomaly_probability", "is_anomaly", "severity", "model_version",
                           "run_id"}
    assert summary.rows_in == summary.rows_scored + summary.rows_rejected == 3002
    assert (summary.rows_rejected, summary.dead_lettered, summary.undecodable) == (2, 2, 3)
    assert summary.stopped_by == "idle"
    dead = consume(kafka, f"{topic_in}.dlq", until=5)
    assert sorted(d["stage"] for d in dead) == ["decode", "decode", "decode", "validate", "validate"]
    by_payload = {d["payload"]: d for d in dead}
    assert by_payload["not json"]["error"].startswith("not valid JSON")
    assert "nested" in by_payload[json.dumps({"id": 9001, "f0": {"x": 1}})]["error"]
    assert all(d["pipeline"] == "payments" and "offset" in d["origin"] for d in dead)
    assert committed(kafka, group, topic_in) == 3005  # everything, bad messages included, is committed


def test_scoring_with_a_saved_model_and_no_detector_in_the_config(kafka, tmp_path):
    topic_in, topic_out, group = names("in"), names("out"), names("g")
    train = pd.DataFrame(records(2000, seed=1))
    model = adpipe.Pipeline.from_dict(stream_config(kafka, topic_in, topic_out, group)).fit(train)
    produce(kafka, topic_in, records(800, seed=2))
    cfg = stream_config(kafka, topic_in, topic_out, group)
    del cfg["detector"]
    pipe = adpipe.Pipeline(load_config(data=cfg, need_detector=False))
    summary = pipe.run(model=model, write_summary=False)
    out = consume(kafka, topic_out, until=800)
    assert len({r["id"] for r in out}) == 800 and summary.rows_scored == 800
    frame = pd.DataFrame(records(800, seed=2))
    expected = model.score(frame).set_index("id")["anomaly_score"]
    got = pd.Series({r["id"]: r["anomaly_score"] for r in out})
    np.testing.assert_allclose(got.sort_index().to_numpy(), expected.sort_index().to_numpy(), rtol=0, atol=1e-12)


def test_file_sinks_are_refused_for_a_stream(kafka, tmp_path):
    cfg = stream_config(kafka, names("in"), names("out"), names("g"))
    cfg["sinks"] = [{"type": "parquet", "path": str(tmp_path / "x.parquet")}]
    with pytest.raises(adpipe.ConfigError, match="publish only at the end"):
        adpipe.Pipeline.from_dict(cfg).run(write_summary=False)


# --------------------------------------------------------------------------- process life cycle
def test_sigterm_finishes_the_batch_commits_and_exits_0(kafka, tmp_path, adpipe_home):
    topic_in, topic_out, group = names("in"), names("out"), names("g")
    produce(kafka, topic_in, records(3000))
    cfg = stream_config(kafka, topic_in, topic_out, group, stream={"idle_stop_seconds": None})
    write_yaml(tmp_path / "stream.yaml", cfg)
    proc = start_cli(["run", "config=stream.yaml", "-q"], tmp_path, adpipe_home)
    try:
        wait_for(lambda: len(consume(kafka, topic_out, until=3000, seconds=2)) >= 3000, 60, "the first results")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "SIGTERM received" in err
    assert committed(kafka, group, topic_in) == 3000  # what was written was committed before exit


def test_a_killed_process_loses_nothing_after_restart(kafka, tmp_path, adpipe_home):
    topic_in, topic_out, group = names("in"), names("out"), names("g")
    train = pd.DataFrame(records(2000, seed=3))
    model = adpipe.Pipeline.from_dict(stream_config(kafka, topic_in, topic_out, group)).fit(train)
    model.save(tmp_path / "model.adpipe")
    n = 20_000
    cfg = stream_config(kafka, topic_in, topic_out, group, stream={"idle_stop_seconds": 8})
    del cfg["detector"]
    write_yaml(tmp_path / "stream.yaml", cfg)
    rows = records(n, seed=4)
    produce(kafka, topic_in, rows[:2000])
    proc = start_cli(["score", "model=model.adpipe", "config=stream.yaml", "-q"], tmp_path, adpipe_home)
    try:
        wait_for(lambda: len(consume(kafka, topic_out, until=1, seconds=1)) > 0, 90, "the first results")
        for i in range(2000, 12_000, 1000):  # records keep arriving while the process works
            produce(kafka, topic_in, rows[i:i + 1000])
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    produce(kafka, topic_in, rows[12_000:])
    first = {r["id"] for r in consume(kafka, topic_out)}
    assert 0 < len(first) < n  # killed mid-stream
    again = start_cli(["score", "model=model.adpipe", "config=stream.yaml", "-q"], tmp_path, adpipe_home)
    _, err = again.communicate(timeout=180)
    assert again.returncode == 0, err
    out = consume(kafka, topic_out)
    assert {r["id"] for r in out} == set(range(n))  # every input id is in the output
    assert committed(kafka, group, topic_in) == n


def test_two_processes_in_one_group_share_the_partitions(kafka, tmp_path, adpipe_home):
    topic_in, topic_out, group = names("in"), names("out"), names("g")
    n = 8000
    cfg = stream_config(kafka, topic_in, topic_out, group, fit={"source": {"type": "csv", "path": "train.csv"}},
                        stream={"idle_stop_seconds": 10})
    pd.DataFrame(records(2000, seed=5)).to_csv(tmp_path / "train.csv", index=False)
    write_yaml(tmp_path / "stream.yaml", cfg)
    rows = records(n, seed=6)
    produce(kafka, topic_in, rows[:100])  # the topic exists
    procs = [start_cli(["run", "config=stream.yaml", "--json"], tmp_path, adpipe_home) for _ in range(2)]
    time.sleep(5)  # both join the group before most records arrive
    produce(kafka, topic_in, rows[100:])
    summaries = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        summaries.append(json.loads(out))
    scored = [s["rows_scored"] for s in summaries]
    assert all(s > 0 for s in scored), scored  # both did part of the work
    assert sum(scored) >= n
    assert {r["id"] for r in consume(kafka, topic_out)} == set(range(n))


def test_a_broker_that_disappears_gives_a_clear_error(tmp_path, adpipe_home):
    """The broker lives in another process, which is killed while adpipe consumes from it."""
    script = ("import confluent_kafka as ck, sys, time\n"
              "p = ck.Producer({'test.mock.num.brokers': 1, 'log_level': 0})\n"
              "b = next(iter(p.list_topics(timeout=10).brokers.values()))\n"
              "print(f'{b.host}:{b.port}', flush=True)\n"
              "time.sleep(600)\n")
    broker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        bs = broker.stdout.readline().strip()
        topic_in, topic_out = names("in"), names("out")
        produce(bs, topic_in, records(1500))
        cfg = stream_config(bs, topic_in, topic_out, names("g"), stream={"idle_stop_seconds": None})
        cfg["source"]["broker_timeout_seconds"] = 3
        write_yaml(tmp_path / "stream.yaml", cfg)
        proc = start_cli(["run", "config=stream.yaml", "-q"], tmp_path, adpipe_home)
        wait_for(lambda: len(consume(bs, topic_out, seconds=1)) >= 1500, 60, "results before the broker goes")
        broker.kill()
        _, err = proc.communicate(timeout=60)
    finally:
        broker.kill()
    assert proc.returncode == 6, err  # SourceError
    assert "No Kafka broker" in err and "answered" in err


# --------------------------------------------------------------------------- models and drift
def test_hot_reload_when_the_production_stage_moves(kafka, tmp_path):
    import threading

    topic_in, topic_out, group = names("in"), names("out"), names("g")
    store = adpipe.ModelStore(tmp_path / "store")
    base = stream_config(kafka, topic_in, topic_out, group, name="fraud")
    v1 = store.add(adpipe.Pipeline.from_dict(base).fit(pd.DataFrame(records(1500, seed=7))), "fraud")
    store.promote("fraud", v1.version, "production")
    cfg = dict(base, stream={**base["stream"], "model_check_seconds": 0.3, "idle_stop_seconds": 10})
    del cfg["detector"]
    pipe = adpipe.Pipeline(load_config(data=cfg, need_detector=False))
    model = adpipe.load_model("fraud@production", store=store)

    def feed():
        produce(kafka, topic_in, records(1000, seed=8))
        wait_for(lambda: len(consume(kafka, topic_out, until=1000, seconds=2)) >= 1000, 60, "the first results")
        v2 = store.add(adpipe.Pipeline.from_dict(base).fit(pd.DataFrame(records(1500, seed=9))), "fraud")
        store.promote("fraud", v2.version, "production")
        time.sleep(3)  # the store is checked every 0.3 s
        produce(kafka, topic_in, records(1000, start=1000, seed=10))

    thread = threading.Thread(target=feed)
    thread.start()
    summary = pipe.run(model=model, model_ref="fraud@production", store=store, write_summary=False)
    thread.join()
    out = consume(kafka, topic_out, until=2000)
    versions = {r["id"]: r["model_version"] for r in out}
    assert {versions[i] for i in range(1000)} == {"fraud@1"}
    assert {versions[i] for i in range(1000, 2000)} == {"fraud@2"}
    assert summary.model_version == "fraud@2"


def test_refit_on_the_window_changes_the_model_mid_stream(kafka):
    topic_in, topic_out, group = names("in"), names("out"), names("g")
    cfg = stream_config(kafka, topic_in, topic_out, group,
                        stream={"refit_every_rows": 1500, "window_rows": 1000, "idle_stop_seconds": 10})
    import threading

    rows = records(5000, seed=11)
    produce(kafka, topic_in, rows[:3000])

    def later():  # the refit (in the background) is swapped in while the stream is quiet
        time.sleep(4)
        produce(kafka, topic_in, rows[3000:])

    thread = threading.Thread(target=later)
    thread.start()
    summary = adpipe.Pipeline.from_dict(cfg).run(write_summary=False)
    thread.join()
    out = consume(kafka, topic_out, until=5000)
    versions = {r["model_version"] for r in out}
    assert {r["model_version"] for r in out if r["id"] >= 3000} != {out[0]["model_version"]}
    assert len(versions) >= 2  # the warm-up model and at least one refit
    assert summary.rows_scored == 5000


def test_drift_in_a_stream_is_detected_recorded_and_alerted(kafka, tmp_path):
    topic_in, topic_out, group = names("in"), names("out"), names("g")
    shift_at = 4000
    rows = records(8000, seed=12)
    for r in rows[shift_at:]:
        r["f1"] += 3.0  # the feature drifts
    alerts = tmp_path / "alerts.jsonl"
    cfg = stream_config(kafka, topic_in, topic_out, group, name=names("drifty"),
                        drift={"detectors": [{"type": "ks", "window": 500}], "features": ["f1", "f2"],
                               "score": False, "history": str(tmp_path / "drift.db")},
                        alerts=[{"type": "file", "path": str(alerts), "group_wait": 0, "min_severity": "low",
                                 "outbox": str(tmp_path / "outbox.db")}])
    pd.DataFrame(records(2000, seed=13)).to_csv(tmp_path / "train.csv", index=False)
    cfg["fit"] = {"source": {"type": "csv", "path": str(tmp_path / "train.csv")}}
    produce(kafka, topic_in, rows)
    summary = adpipe.Pipeline.from_dict(cfg).run(write_summary=False)
    events = DriftHistory(tmp_path / "drift.db").query(pipeline=cfg["name"])
    assert summary.drift_events == len(events) >= 1
    assert {e.feature for e in events} == {"f1"}  # the feature that drifted, not the stable one
    first = min(events, key=lambda e: e.window["end_row"])
    assert first.test == "ks" and first.statistic > first.threshold
    assert first.window["end_row"] - shift_at <= 1000  # detected within two windows of the shift
    sent = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert any("drift" in json.dumps(a) and "f1" in json.dumps(a) for a in sent)


def test_the_example_stream_config_runs_against_a_broker(kafka, tmp_path, monkeypatch):
    repo = Path(__file__).resolve().parents[1]
    topic_in, topic_out = names("payments"), names("scores")
    monkeypatch.setenv("KAFKA_BOOTSTRAP", kafka)
    data = pd.read_csv(repo / "configs/data/transactions.csv").head(3000)
    produce(kafka, topic_in, [{**r, "id": i} for i, r in enumerate(data.to_dict("records"))])
    cfg = load_config(repo / "configs/payments_stream.yaml", [
        f"source.topics=[{topic_in}]", f"source.group={names('g')}", f"sinks.0.topic={topic_out}",
        f"alerts.0.path={tmp_path / 'alerts.jsonl'}", f"+alerts.0.outbox={tmp_path / 'outbox.db'}",
        f"+drift.history={tmp_path / 'drift.db'}", "+stream.idle_stop_seconds=4"])
    summary = adpipe.Pipeline(cfg).run(write_summary=False)
    bad = set(data.transaction_id[data.distance_from_home_km.isna()])  # NaN: not even valid JSON
    out = consume(kafka, topic_out, until=3000 - len(bad))
    assert {r["transaction_id"] for r in out} == set(data.transaction_id) - bad
    dead = consume(kafka, f"{topic_in}.dlq", until=len(bad))
    assert {json.loads(d["payload"])["transaction_id"] for d in dead} == bad and bad
    assert summary.rows_scored == 3000 - len(bad) and summary.undecodable == len(bad)
    from sklearn.metrics import roc_auc_score

    scores = pd.DataFrame(out).drop_duplicates("transaction_id").merge(data[["transaction_id", "is_fraud"]])
    assert roc_auc_score(scores.is_fraud, scores.anomaly_score) > 0.9  # it ranks fraud first as it streams


def test_fitting_on_an_endless_source_is_refused_with_a_hint(kafka):
    cfg = stream_config(kafka, names("in"), names("out"), names("g"))
    with pytest.raises(adpipe.ConfigError, match="never ends") as info:
        adpipe.Pipeline.from_dict(cfg).fit()
    assert "fit.source" in info.value.hint
