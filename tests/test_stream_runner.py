"""The stream runner against the real Redis server: Redis Streams end to end, online learning with
checkpoints, metrics, the read buffer's overflow policies, and ``score_one``."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Iterator

import numpy as np
import pandas as pd
import pytest

import adpipe
from adpipe.core.config import StreamSpec, load_config
from adpipe.core.schema import REJECT_REASON
from adpipe.core.stream import Feed
from adpipe.core.stream_model import Checkpoints, Window
from conftest import blob_frame

redis = pytest.importorskip("redis")
URL = "redis://127.0.0.1:6379/0"
FEATURES = ["f0", "f1", "f2"]


@pytest.fixture
def r():
    client = redis.Redis.from_url(URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.skip("no Redis server at 127.0.0.1:6379")
    made: list[str] = []
    client.made = made  # type: ignore[attr-defined]
    yield client
    for key in made:
        client.delete(key)
    for key in client.scan_iter("adpipe:*test-*"):
        client.delete(key)


def key(r, prefix: str) -> str:
    name = f"test-{prefix}-{uuid.uuid4().hex[:8]}"
    r.made.append(name)
    return name


def add_records(r, stream: str, frame: pd.DataFrame) -> None:
    pipe = r.pipeline()
    for rec in frame.to_dict("records"):
        pipe.xadd(stream, {"data": json.dumps(rec)})
    pipe.execute()


def read_results(r, stream: str) -> list[dict]:
    return [json.loads(fields[b"data"]) for _, fields in r.xrange(stream)]


def redis_config(src: str, out: str, dlq: str, **stream) -> dict:
    return {
        "name": f"test-{uuid.uuid4().hex[:8]}",
        "source": {"type": "redis_stream", "url": URL, "stream": src, "start_id": "0", "dead_letter": dlq,
                   "max_batch_rows": 400, "max_batch_ms": 100},
        "detector": {"type": "ewm_gaussian", "half_life": None},
        "threshold": {"type": "contamination", "contamination": 0.02},
        "columns": {"id": ["id"], "features": FEATURES},
        "sinks": [{"type": "redis_stream", "url": URL, "stream": out}],
        "stream": {"warmup_rows": 500, "idle_stop_seconds": 1.5, "checkpoint_every_seconds": 0.5, **stream},
    }


# --------------------------------------------------------------------------- Redis end to end
def test_redis_stream_pipeline_warms_up_learns_and_checkpoints(r, tmp_path):
    src, out, dlq = key(r, "in"), key(r, "out"), key(r, "dlq")
    data = blob_frame(2000, 3, n_outliers=20, with_id=True)
    add_records(r, src, data)
    r.xadd(src, {"data": b"{broken"})
    cfg = redis_config(src, out, dlq, state_dir=str(tmp_path / "state"))
    summary = adpipe.Pipeline.from_dict(cfg).run(write_summary=False)

    results = read_results(r, out)
    assert sorted(x["id"] for x in results) == list(range(1, 2001))
    flagged = {x["id"] for x in results if x["is_anomaly"]}
    assert len(flagged & set(range(1981, 2001))) >= 18  # the planted outliers
    assert summary.rows_in == summary.rows_scored == 2000 and summary.undecodable == 1
    assert r.xlen(dlq) == 1
    assert r.xpending(src, "adpipe")["pending"] == 0  # everything acknowledged

    model, window, meta = Checkpoints(load_config(data=cfg)).load()
    assert model.model_version == summary.model_version
    assert model.detector.model_.weight == pytest.approx(2000)  # fitted on 500, learned all 2,000 scored rows


def test_a_restarted_stream_resumes_from_its_checkpoint(r, tmp_path):
    src, out, dlq = key(r, "in"), key(r, "out"), key(r, "dlq")
    cfg = redis_config(src, out, dlq, state_dir=str(tmp_path / "state"))
    add_records(r, src, blob_frame(1000, 3, n_outliers=0, with_id=True))
    first = adpipe.Pipeline.from_dict(cfg).run(write_summary=False)
    add_records(r, src, blob_frame(300, 3, n_outliers=0, seed=1, with_id=True).assign(id=lambda f: f.id + 5000))
    second = adpipe.Pipeline.from_dict(cfg).run(write_summary=False)
    assert second.model_version == first.model_version  # resumed, not warmed up again
    assert second.rows_scored == 300  # no warm-up wait: 300 < warmup_rows
    model, _, _ = Checkpoints(load_config(data=cfg)).load()
    assert model.detector.model_.weight == pytest.approx(1300)


def test_checkpoints_can_live_in_redis(r, tmp_path):
    src, out, dlq = key(r, "in"), key(r, "out"), key(r, "dlq")
    cfg = redis_config(src, out, dlq, checkpoint=URL)
    add_records(r, src, blob_frame(800, 3, with_id=True))
    summary = adpipe.Pipeline.from_dict(cfg).run(write_summary=False)
    r.made.append(f"adpipe:state:{cfg['name']}")
    assert r.exists(f"adpipe:state:{cfg['name']}")
    model, _, meta = Checkpoints(load_config(data=cfg)).load()
    assert meta["model_version"] == model.model_version == summary.model_version


def test_metrics_file_shows_counts_and_buffer(r, tmp_path):
    src, out, dlq = key(r, "in"), key(r, "out"), key(r, "dlq")
    prom = tmp_path / "metrics.prom"
    cfg = redis_config(src, out, dlq, state_dir=str(tmp_path / "s"), metrics_file=str(prom), buffer_rows=5000)
    add_records(r, src, blob_frame(900, 3, with_id=True))
    adpipe.Pipeline.from_dict(cfg).run(write_summary=False)
    text = prom.read_text()
    assert f'adpipe_records_total{{outcome="scored",pipeline="{cfg["name"]}"}} 900.0' in text
    assert f'adpipe_buffer_capacity_rows{{pipeline="{cfg["name"]}"}} 5000.0' in text
    assert "adpipe_buffer_fill_ratio" in text and "adpipe_model_info" in text


# --------------------------------------------------------------------------- the read buffer
class EndlessSource(adpipe.Source):
    """Yields the given batches, then idles until stopped; records dead letters and acks."""

    name = "endless_test"
    finite = False

    def __init__(self, batches: list[pd.DataFrame], dead_letter: bool = True):
        super().__init__()
        self.frames, self.has_dlq = batches, dead_letter
        self.stopped = threading.Event()
        self.dead: list[pd.DataFrame] = []
        self.acked: list[int] = []

    def batches(self, batch_rows: int) -> Iterator[adpipe.Batch]:
        for i, frame in enumerate(self.frames):
            yield adpipe.Batch(frame, {"n": i})
        while not self.stopped.wait(0.05):
            yield adpipe.Batch(pd.DataFrame())

    def dead_letter(self, batch, rejected) -> bool:
        if self.has_dlq:
            self.dead.append(rejected)
        return self.has_dlq

    def ack(self, batch) -> None:
        self.acked.append(batch.meta["n"])

    def stop(self) -> None:
        self.stopped.set()


def frames(k: int, rows: int = 100) -> list[pd.DataFrame]:
    return [pd.DataFrame({"x": np.arange(i * rows, (i + 1) * rows)}) for i in range(k)]


def drain(feed: Feed, want: int, seconds: float = 10) -> list[adpipe.Batch]:
    got, deadline = [], time.monotonic() + seconds
    for batch in feed:
        if len(batch.data) or batch.meta:
            got.append(batch)
        if len(got) >= want or time.monotonic() > deadline:
            feed.stop()
    return got


def test_block_policy_holds_the_reader_back_and_loses_nothing():
    source = EndlessSource(frames(10))
    fills: list[int] = []
    feed = Feed(source, 100, StreamSpec(buffer_rows=250), on_buffer=lambda rows, cap: fills.append(rows))
    it = iter(feed)
    time.sleep(0.5)  # the reader fills the buffer, then waits
    assert max(fills) <= 250
    first = next(it)
    got = [first]
    for batch in it:
        if len(batch.data):
            got.append(batch)
        if len(got) == 10:
            feed.stop()
    assert [b.meta["n"] for b in got] == list(range(10)) and not source.dead


@pytest.mark.parametrize("policy, shed", [("drop_newest", [2, 3]), ("drop_oldest", [0, 1])])
def test_drop_policies_send_whole_batches_to_the_dead_letter_destination(policy, shed):
    source = EndlessSource(frames(4))
    feed = Feed(source, 100, StreamSpec(buffer_rows=200, overflow=policy))
    it = iter(feed)
    time.sleep(0.5)  # four batches arrive while nothing is scored: two must go
    got = drain_iter(it, feed, 4)
    kept = [b.meta["n"] for b in got if len(b.data)]
    markers = [b.meta["n"] for b in got if not len(b.data)]
    assert sorted(markers) == shed and sorted(kept) == sorted(set(range(4)) - set(shed))
    assert [b.meta["n"] for b in got] == [0, 1, 2, 3]  # markers keep their place: acknowledged in order
    assert feed.shed == 200 and len(source.dead) == 2
    assert all(d[REJECT_REASON].str.startswith("buffer overflow").all() for d in source.dead)


def drain_iter(it, feed: Feed, want: int) -> list[adpipe.Batch]:
    got = []
    for batch in it:
        if len(batch.data) or batch.meta:
            got.append(batch)
        if len(got) >= want:
            feed.stop()
    return got


def test_without_a_dead_letter_destination_a_full_buffer_waits():
    source = EndlessSource(frames(4), dead_letter=False)
    feed = Feed(source, 100, StreamSpec(buffer_rows=200, overflow="drop_newest"))
    it = iter(feed)
    time.sleep(0.4)
    got = drain_iter(it, feed, 4)
    assert [b.meta["n"] for b in got] == [0, 1, 2, 3] and all(len(b.data) == 100 for b in got)


def test_a_source_error_reaches_the_scoring_thread():
    class Broken(EndlessSource):
        def batches(self, batch_rows):
            yield adpipe.Batch(pd.DataFrame({"x": [1]}), {"n": 0})
            raise adpipe.SourceError("the broker went away")

    feed = Feed(Broken([]), 100, StreamSpec())
    with pytest.raises(adpipe.SourceError, match="went away"):
        for _ in feed:
            pass


def test_window_keeps_the_most_recent_rows():
    w = Window(250)
    for f in frames(5):
        w.add(f)
    assert w.rows <= 350 and len(w.frame()) == 250
    assert w.frame()["x"].tolist() == list(range(250, 500))


# --------------------------------------------------------------------------- score_one
@pytest.fixture(scope="module")
def fitted():
    data = blob_frame(500, 3, with_id=True)
    model = adpipe.Pipeline.from_dict({"detector": {"type": "iforest", "random_state": 0},
                                       "columns": {"id": ["id"]}}).fit(data)
    return model, data


def test_score_one_equals_scoring_the_row_in_a_frame(fitted):
    model, data = fitted
    for i in (0, 17, 499):
        record = {"id": int(data.id[i]), **{f: float(data[f][i]) for f in FEATURES}}
        one = model.score_one(record)
        row = model.score(data.iloc[[i]]).iloc[0]
        assert one["id"] == record["id"]
        for col in ("anomaly_score", "anomaly_probability", "is_anomaly", "severity", "model_version"):
            assert one[col] == row[col]


def test_score_one_rejects_bad_records_with_typed_errors(fitted):
    model, data = fitted
    good = {"id": 1, "f0": 0.1, "f1": 0.2, "f2": 0.3}
    with pytest.raises(adpipe.SchemaMismatchError, match="'f2'"):
        model.score_one({"id": 1, "f0": 0.1, "f1": 0.2})
    with pytest.raises(adpipe.DataError, match="missing or infinite"):
        model.score_one({**good, "f1": float("inf")})
    with pytest.raises(adpipe.DataError, match="not a number"):
        model.score_one({**good, "f1": "abc"})
    with pytest.raises(adpipe.DataError, match="mapping"):
        model.score_one([0.1, 0.2, 0.3])
    assert model.score_one(good)["severity"] in ("none", "low", "medium", "high", "critical")
