"""redis_stream source and sink against a real Redis server (127.0.0.1:6379, skipped when absent).

Every test uses its own stream and group names and deletes its keys at the end; loops are bounded.
"""

from __future__ import annotations

import json
import queue
import shutil
import socket
import subprocess
import threading
import time
import uuid
from typing import Iterator

import numpy as np
import pandas as pd
import pytest
from conftest import blob_frame

import adpipe
from adpipe.plugins.sinks.redis_stream import RedisStreamSink
from adpipe.plugins.sources.redis_stream import RedisStreamSource

redis = pytest.importorskip("redis")
URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def r():
    client = redis.Redis.from_url(URL, socket_timeout=5)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("no Redis server on 127.0.0.1:6379")
    yield client
    client.close()


@pytest.fixture
def keys(r):
    """Unique names (stream, dead-letter stream, output stream, group); every key is deleted at the end."""
    tag = uuid.uuid4().hex[:12]
    names = {"stream": f"test:{tag}:in", "dead": f"test:{tag}:dead", "out": f"test:{tag}:out",
             "group": f"g-{tag}"}
    yield names
    r.delete(names["stream"], names["dead"], names["out"])
    for key in r.scan_iter(f"adpipe:dedupe:{names['out']}:*"):
        r.delete(key)


def source(keys, **params) -> RedisStreamSource:
    base = {"url": URL, "stream": keys["stream"], "group": keys["group"], "start_id": "0", "consumer": "c1",
            "max_batch_ms": 200, "block_ms": 50}
    return RedisStreamSource(**{**base, **params})


def collect(gen: Iterator[adpipe.Batch], rows: int, timeout: float = 5.0) -> list[adpipe.Batch]:
    """Non-empty batches from ``gen`` until they hold ``rows`` rows (acks included) or ``timeout``."""
    out, seen, end = [], 0, time.monotonic() + timeout
    while seen < rows and time.monotonic() < end:
        batch = next(gen)
        if batch.meta["acks"]:
            out.append(batch)
            seen += len(batch.meta["acks"])
    assert seen >= rows, f"got {seen} of {rows} entries within {timeout} s"
    return out


def add_json(r, stream: str, rows: list[dict]) -> list[str]:
    return [r.xadd(stream, {"data": json.dumps(row)}).decode() for row in rows]


def pending(r, keys) -> int:
    return r.xpending(keys["stream"], keys["group"])["pending"]


def dead_letters(r, stream: str) -> list[dict]:
    return [json.loads(fields[b"data"]) for _, fields in r.xrange(stream)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen(["redis-server", "--port", str(port), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    client.close()
    return proc


@pytest.fixture
def own_server(tmp_path):
    """A throwaway redis-server on a free port: (url, port, process list; kill and restart as you like)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    procs = [start_server(port, "--save", "", "--appendonly", "no")]
    yield f"redis://127.0.0.1:{port}/0", port, procs
    for proc in procs:
        proc.kill()
        proc.wait(10)


# ------------------------------------------------------------------ decoding
def test_json_entries_become_a_frame_with_entry_ids(r, keys):
    ids = add_json(r, keys["stream"], [{"id": 1, "x": 0.5}, {"id": 2, "x": 1.5}, {"id": 3, "x": None}])
    src = source(keys, entry_id_column="entry_id")
    try:
        [batch] = collect(src.batches(100), 3)
    finally:
        src.close()
    assert batch.data["id"].tolist() == [1, 2, 3]
    assert batch.data["x"].tolist()[:2] == [0.5, 1.5] and np.isnan(batch.data["x"].iloc[2])
    assert batch.data["entry_id"].tolist() == ids == batch.meta["ids"] == batch.meta["acks"]
    assert batch.meta["stream"] == keys["stream"] and batch.meta["consumer"] == "c1"


def test_csv_entries(r, keys):
    for line in ("1,0.5,a", "2,1.5,b"):
        r.xadd(keys["stream"], {"line": line})
    src = source(keys, field="line", format="csv", columns=["id", "x", "tag"])
    try:
        [batch] = collect(src.batches(100), 2)
    finally:
        src.close()
    assert batch.data.to_dict("list") == {"id": [1, 2], "x": [0.5, 1.5], "tag": ["a", "b"]}


def test_entry_fields_as_columns(r, keys):
    r.xadd(keys["stream"], {"id": "1", "x": "0.5", "tag": "a"})
    r.xadd(keys["stream"], {"id": "2", "x": "oops", "tag": "b"})
    src = source(keys, field=None)
    try:
        [batch] = collect(src.batches(100), 2)
    finally:
        src.close()
    assert batch.data["id"].tolist() == [1, 2]  # a column that parses whole is numeric
    assert batch.data["x"].tolist() == ["0.5", "oops"]  # else text: validation coerces and rejects
    assert json.loads(batch.meta["payloads"][0]) == {"id": "1", "x": "0.5", "tag": "a"}


def test_params_are_checked_and_url_hidden():
    with pytest.raises(ValueError, match="columns"):
        RedisStreamSource(stream="s", format="csv")
    with pytest.raises(ValueError, match="dead_letter"):
        RedisStreamSource(stream="s", dead_letter="s")
    src = RedisStreamSource(url="redis://:hunter2@127.0.0.1:6379/0", stream="s")
    assert "hunter2" not in repr(src) and "hunter2" not in str(src.params)
    assert src.consumer == socket.gethostname()


# ------------------------------------------------------------------ micro-batching
def test_batches_by_rows_then_by_time(r, keys):
    add_json(r, keys["stream"], [{"i": i} for i in range(25)])
    src = source(keys, max_batch_rows=10, max_batch_ms=400)
    try:
        gen = src.batches(1_000)
        t0 = time.monotonic()
        sizes = [len(b.data) for b in collect(gen, 25)]
        took = time.monotonic() - t0
    finally:
        src.close()
    assert sizes == [10, 10, 5]
    assert 0.3 < took < 2.0  # the last 5 waited for max_batch_ms


def test_engine_batch_rows_caps_the_batch(r, keys):
    add_json(r, keys["stream"], [{"i": i} for i in range(7)])
    src = source(keys)
    try:
        assert [len(b.data) for b in collect(src.batches(3), 7)] == [3, 3, 1]
    finally:
        src.close()


def test_idle_source_yields_empty_batches_on_time(r, keys):
    src = source(keys, start_id="$", max_batch_ms=150, block_ms=1_000)
    try:
        gen = src.batches(100)
        next(gen)
        stamps = []
        for _ in range(4):
            batch = next(gen)
            stamps.append(time.monotonic())
            assert len(batch.data) == 0 and batch.meta["acks"] == []
        add_json(r, keys["stream"], [{"x": 1}])
        t0 = time.monotonic()
        [batch] = collect(gen, 1, timeout=2)
        waited = time.monotonic() - t0
    finally:
        src.close()
    gaps = np.diff(stamps)
    assert (gaps > 0.1).all() and (gaps < 0.4).all(), gaps  # never blocks past max_batch_ms
    assert batch.data["x"].tolist() == [1] and waited < 0.6


# ------------------------------------------------------------------ acks and recovery
def test_ack_clears_pending_and_unacked_entries_return_to_the_same_consumer(r, keys):
    ids = add_json(r, keys["stream"], [{"i": i} for i in range(5)])
    first = source(keys)
    try:
        [batch] = collect(first.batches(100), 5)
    finally:
        first.close()  # "crash": read but never acknowledged
    assert pending(r, keys) == 5
    add_json(r, keys["stream"], [{"i": 5}])
    again = source(keys)
    try:
        gen = again.batches(100)
        batches = collect(gen, 6)
        assert batches[0].meta["ids"][:5] == ids  # its own pending entries come first
        for b in batches:
            again.ack(b)
    finally:
        again.close()
    assert pending(r, keys) == 0


def test_ack_from_another_thread(r, keys):
    add_json(r, keys["stream"], [{"i": i} for i in range(30)])
    src = source(keys, max_batch_rows=5)
    done: queue.Queue = queue.Queue()
    acker = threading.Thread(target=lambda: [src.ack(b) for b in iter(done.get, None)])
    acker.start()
    try:
        for batch in collect(src.batches(100), 30):
            done.put(batch)
    finally:
        done.put(None)
        acker.join(10)
        src.close()
    assert pending(r, keys) == 0


def test_autoclaim_recovers_entries_of_a_dead_consumer(r, keys):
    ids = add_json(r, keys["stream"], [{"i": i} for i in range(4)])
    r.xgroup_create(keys["stream"], keys["group"], id="0")
    r.xreadgroup(keys["group"], "dead", {keys["stream"]: ">"}, count=10)  # then it dies
    src = source(keys, consumer="alive", claim_idle_ms=300, claim_every_ms=50)
    try:
        gen = src.batches(100)
        assert len(next(gen).meta["acks"]) == 0  # not idle long enough yet
        t0 = time.monotonic()
        [batch] = collect(gen, 4, timeout=3)
        assert time.monotonic() - t0 > 0.1
        assert batch.meta["ids"] == ids
        owners = {p["consumer"] for p in r.xpending_range(keys["stream"], keys["group"], "-", "+", 10)}
        assert owners == {b"alive"}
        src.ack(batch)
    finally:
        src.close()
    assert pending(r, keys) == 0


def test_two_consumers_split_the_entries(r, keys):
    ids = add_json(r, keys["stream"], [{"i": i} for i in range(100)])
    a, b = source(keys, consumer="a", max_batch_rows=10), source(keys, consumer="b", max_batch_rows=10)
    got = {"a": [], "b": []}
    try:
        gens = {"a": a.batches(100), "b": b.batches(100)}
        end = time.monotonic() + 10
        while len(got["a"]) + len(got["b"]) < 100 and time.monotonic() < end:
            for name, gen in gens.items():
                got[name] += next(gen).meta["ids"]
    finally:
        a.close()
        b.close()
    assert got["a"] and got["b"]
    assert not set(got["a"]) & set(got["b"])
    assert sorted(got["a"] + got["b"]) == sorted(ids)


def test_stop_ends_iteration_promptly_and_hands_over_what_was_read(r, keys):
    src = source(keys, max_batch_ms=10_000, block_ms=100)
    gen = src.batches(100)
    add_json(r, keys["stream"], [{"x": 1}])
    threading.Timer(0.5, src.stop).start()
    t0 = time.monotonic()
    try:
        batches = list(gen)  # ends only because of stop()
    finally:
        src.close()
    took = time.monotonic() - t0
    assert 0.4 < took < 1.5
    assert [len(b.data) for b in batches] == [1]


# ------------------------------------------------------------------ dead letters
def test_malformed_entries_go_to_the_dead_letter_stream(r, keys):
    good = add_json(r, keys["stream"], [{"x": 1}])
    bad = [r.xadd(keys["stream"], {"data": b"{not json"}).decode(),
           r.xadd(keys["stream"], {"data": b"[1, 2]"}).decode(),
           r.xadd(keys["stream"], {"other": b"7"}).decode()]
    src = source(keys, dead_letter=keys["dead"])
    try:
        gen = src.batches(100)
        [batch] = collect(gen, 4)
        assert batch.data["x"].tolist() == [1] and batch.meta["ids"] == good
        assert batch.meta["dead_lettered"] == 3 and len(batch.meta["acks"]) == 4
        src.ack(batch)
        add_json(r, keys["stream"], [{"x": 2}])  # reading goes on
        assert collect(gen, 1)[0].data["x"].tolist() == [2]
    finally:
        src.close()
    letters = dead_letters(r, keys["dead"])
    assert [d["origin"]["id"] for d in letters] == bad
    assert {d["stage"] for d in letters} == {"decode"} and letters[0]["origin"]["stream"] == keys["stream"]
    assert letters[0]["payload"] == "{not json" and "not valid JSON" in letters[0]["error"]
    assert "JSON object" in letters[1]["error"]
    assert "no field 'data'" in letters[2]["error"] and json.loads(letters[2]["payload"]) == {"other": "7"}
    assert pending(r, keys) == 1  # only the last good entry, not acknowledged


def test_bad_entry_without_dead_letter_stops_and_stays_pending(r, keys):
    eid = r.xadd(keys["stream"], {"data": b"nope"}).decode()
    src = source(keys)
    try:
        with pytest.raises(adpipe.SourceError) as err:
            collect(src.batches(100), 1)
    finally:
        src.close()
    assert eid in err.value.message and "not valid JSON" in err.value.message
    assert "dead_letter" in err.value.hint and f"XACK {keys['stream']} {keys['group']} {eid}" in err.value.hint
    assert pending(r, keys) == 1


def test_poison_entry_goes_to_dead_letter_after_max_deliveries(r, keys):
    [eid] = add_json(r, keys["stream"], [{"x": 1}])
    r.xgroup_create(keys["stream"], keys["group"], id="0")
    r.xreadgroup(keys["group"], "c1", {keys["stream"]: ">"})  # delivery 1
    r.xreadgroup(keys["group"], "c1", {keys["stream"]: "0"})  # delivery 2 (a crash-looping consumer)
    src = source(keys, max_deliveries=2, dead_letter=keys["dead"])
    try:
        [batch] = collect(src.batches(100), 1)  # delivery 3: poison
        assert len(batch.data) == 0 and batch.meta["acks"] == [eid]
        src.ack(batch)
    finally:
        src.close()
    [letter] = dead_letters(r, keys["dead"])
    assert letter["stage"] == "poison" and "delivered 3 times" in letter["error"]
    assert json.loads(letter["payload"]) == {"x": 1} and letter["origin"]["id"] == eid
    assert pending(r, keys) == 0


def test_dead_letter_of_rejected_rows(r, keys):
    ids = add_json(r, keys["stream"], [{"x": 1}, {"x": "abc"}, {"x": 3}])
    src = source(keys, dead_letter=keys["dead"])
    plain = source(keys, consumer="c2")
    try:
        [batch] = collect(src.batches(100), 3)
        rejected = batch.data.iloc[[1]].assign(reject_reason="column 'x' is not numeric ('abc')")
        assert plain.dead_letter(batch, rejected) is False
        assert src.dead_letter(batch, rejected) is True
        assert src.dead_letter(batch, rejected.iloc[:0]) is True
    finally:
        src.close()
        plain.close()
    [letter] = dead_letters(r, keys["dead"])
    assert letter["stage"] == "validate" and letter["error"] == "column 'x' is not numeric ('abc')"
    assert letter["origin"]["id"] == ids[1] and json.loads(letter["payload"]) == {"x": "abc"}


# ------------------------------------------------------------------ connection failures
def test_deleted_stream_is_a_clear_error(r, keys):
    src = source(keys)
    try:
        gen = src.batches(100)
        next(gen)
        r.delete(keys["stream"])
        with pytest.raises(adpipe.SourceError, match="NOGROUP") as err:
            next(gen)
    finally:
        src.close()
    assert "start_id" in err.value.hint


def test_connection_refused_at_start(keys):
    src = source(keys, url=f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    t0 = time.monotonic()
    with pytest.raises(adpipe.SourceError) as err:
        next(src.batches(100))
    assert time.monotonic() - t0 < 5
    assert "Cannot connect to Redis" in err.value.message and "127.0.0.1:" in err.value.message
    assert "hunter2" not in str(err.value)


def test_dead_server_becomes_a_source_error(own_server, keys):
    url, _, [proc] = own_server
    redis.Redis.from_url(url).xadd(keys["stream"], {"data": b'{"x": 1}'})
    src = source(keys, url=url, reconnect_seconds=1.0, max_batch_ms=100)
    gen = src.batches(100)
    try:
        collect(gen, 1)
        proc.kill()
        proc.wait(10)
        t0, empty = time.monotonic(), 0
        with pytest.raises(adpipe.SourceError) as err:
            while time.monotonic() - t0 < 10:
                empty += len(next(gen).data) == 0  # the runner keeps control while reconnecting
    finally:
        src.close()
    assert 0.9 < time.monotonic() - t0 < 4
    assert empty >= 3
    port = url.rsplit(":", 1)[1].split("/")[0]
    assert f"127.0.0.1:{port}" in err.value.message and "unreachable" in err.value.message
    assert "reconnect_seconds" in err.value.hint


def test_dropped_connection_is_reestablished(own_server, keys):
    url, _, _ = own_server
    admin = redis.Redis.from_url(url)
    src = source(keys, url=url, reconnect_seconds=5)
    try:
        gen = src.batches(100)
        next(gen)
        admin.client_kill_filter(_type="normal", skipme=True)
        admin.xadd(keys["stream"], {"data": b'{"x": 1}'})
        [batch] = collect(gen, 1)
        src.ack(batch)
    finally:
        src.close()
    assert admin.xpending(keys["stream"], keys["group"])["pending"] == 0
    admin.close()


def test_server_restart_within_reconnect_seconds_loses_nothing(own_server, keys, tmp_path):
    url, port, procs = own_server
    procs[0].kill()
    procs[0].wait(10)
    aof = ["--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", str(tmp_path)]
    procs.append(start_server(port, *aof))
    admin = redis.Redis.from_url(url)
    [first] = add_json(admin, keys["stream"], [{"x": 1}])
    src = source(keys, url=url, reconnect_seconds=10, max_batch_ms=100)
    try:
        gen = src.batches(100)
        [unacked] = collect(gen, 1)
        procs[-1].kill()  # crash before the batch is acknowledged
        procs[-1].wait(10)
        assert len(next(gen).data) == 0  # reconnecting, the runner keeps control
        procs.append(start_server(port, *aof))
        [second] = add_json(admin, keys["stream"], [{"x": 2}])
        [batch] = collect(gen, 1)
        assert batch.meta["ids"] == [second]
        src.ack(batch)
        pend = admin.xpending_range(keys["stream"], keys["group"], "-", "+", 10)
        assert [p["message_id"].decode() for p in pend] == [first] == unacked.meta["ids"]
        src.ack(unacked)
    finally:
        src.close()
    assert admin.xpending(keys["stream"], keys["group"])["pending"] == 0
    admin.close()


# ------------------------------------------------------------------ sink
RESULT = pd.DataFrame({"id": [1, 2, 3], "anomaly_score": [0.1, 0.5, np.nan], "is_anomaly": [0, 0, 1],
                       "severity": ["none", "none", "high"]})


def open_sink(keys, **params) -> RedisStreamSink:
    sink = RedisStreamSink(url=URL, stream=keys["out"], **params)
    sink.open(adpipe.RunContext(pipeline="t", id_columns=["id"]))
    return sink


def rows_in(r, stream: str) -> list[dict]:
    return [json.loads(fields[b"data"]) for _, fields in r.xrange(stream)]


def test_sink_writes_json_rows(r, keys):
    sink = open_sink(keys, chunk_rows=2)
    sink.write(RESULT)
    sink.write(RESULT)  # at-least-once without dedupe: written twice
    sink.close(True)
    rows = rows_in(r, keys["out"])
    assert len(rows) == 6
    assert rows[2] == {"id": 3, "anomaly_score": None, "is_anomaly": 1, "severity": "high"}


def test_sink_dedupe_skips_a_replayed_batch(r, keys):
    sink = open_sink(keys, dedupe_seconds=60)
    sink.write(RESULT)
    sink.write(RESULT.astype({"id": float}))  # the replay; 1.0 is the same key as 1
    sink.write(pd.DataFrame({"id": [4], "anomaly_score": [0.2], "is_anomaly": [0], "severity": ["none"]}))
    assert (sink.written, sink.skipped) == (4, 3)
    sink.close(True)
    assert [row["id"] for row in rows_in(r, keys["out"])] == [1, 2, 3, 4]
    ttl = r.pttl(f"adpipe:dedupe:{keys['out']}:1")
    assert 0 < ttl <= 60_000


def test_sink_maxlen_trims(r, keys):
    sink = open_sink(keys, maxlen=10)
    for _ in range(100):
        sink.write(RESULT)
    sink.close(True)
    assert r.xlen(keys["out"]) < 300


def test_sink_errors_and_outputs(r, keys):
    sink = RedisStreamSink(url=f"redis://:hunter2@127.0.0.1:{free_port()}/2", stream="s")
    assert sink.outputs() == [f"{sink.outputs()[0].split('#')[0]}#s"] and "hunter2" not in sink.outputs()[0]
    assert sink.outputs()[0].startswith("redis://127.0.0.1:") and sink.outputs()[0].endswith("/2#s")
    with pytest.raises(adpipe.SinkError, match="Cannot connect"):
        sink.open(adpipe.RunContext(pipeline="t", id_columns=["id"]))
    with pytest.raises(adpipe.SinkError, match="key columns"):
        RedisStreamSink(url=URL, stream="s", dedupe_seconds=5).open(adpipe.RunContext(pipeline="t"))
    r.set(keys["out"], "not a stream")
    sink = open_sink(keys)
    with pytest.raises(adpipe.SinkError, match="WRONGTYPE"):
        sink.write(RESULT)
    sink.close(False)


def test_conformance_kit(r, keys):
    from adpipe.testing import check_sink, check_source

    add_json(r, keys["stream"], [{"x": i} for i in range(10)])
    check_source(RedisStreamSource, {"url": URL, "stream": keys["stream"], "group": keys["group"],
                                     "start_id": "0", "max_batch_ms": 20})
    check_sink(RedisStreamSink, {"url": URL, "stream": keys["out"], "dedupe_seconds": 60})
    assert r.xlen(keys["out"]) == 3


# ------------------------------------------------------------------ end to end
def test_end_to_end_score_write_dead_letter_ack(r, keys):
    train = blob_frame(n=300, with_id=True)
    model = adpipe.Pipeline.from_dict({"detector": {"type": "iforest", "random_state": 0},
                                       "columns": {"id": ["id"]}, "validation": {"on_invalid": "drop"}}).fit(train)
    live = blob_frame(n=50, n_outliers=5, seed=1, with_id=True)
    rows = live.to_dict("records")
    rows[3]["f1"] = "n/a"  # rejected by validation
    add_json(r, keys["stream"], rows[:25])
    r.xadd(keys["stream"], {"data": b"garbage"})  # dead-lettered at decode
    add_json(r, keys["stream"], rows[25:])
    src = source(keys, dead_letter=keys["dead"], max_batch_rows=20)
    sink = open_sink(keys, dedupe_seconds=60)
    scored = rejected_total = 0
    try:
        gen = src.batches(1_000)
        for batch in collect(gen, 51):
            result, rejected = model.score_batch(batch.data)
            sink.write(result)
            assert src.dead_letter(batch, rejected)
            src.ack(batch)
            scored, rejected_total = scored + len(result), rejected_total + len(rejected)
    finally:
        src.close()
        sink.close(True)
    assert (scored, rejected_total) == (49, 1)
    out = pd.DataFrame(rows_in(r, keys["out"]))
    assert len(out) == 49 and set(out["id"]) == set(range(1, 51)) - {4}
    assert set(range(46, 51)) <= set(out.loc[out["is_anomaly"] == 1, "id"])  # the planted outliers
    assert {d["stage"] for d in dead_letters(r, keys["dead"])} == {"decode", "validate"}
    assert pending(r, keys) == 0
