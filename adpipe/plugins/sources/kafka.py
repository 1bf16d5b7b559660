"""Kafka source: a consumer group reading JSON or CSV records, committed only after the sinks wrote them.

    source: {type: kafka, bootstrap_servers: "broker:9092", topics: [payments], group: fraud-scoring}

At-least-once: offsets are committed in :meth:`KafkaSource.ack`, which the engine calls once every
sink has written the batch; a crash replays what was not committed. Messages that are not records
go to the dead-letter topic with the error and the original payload; the loop goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterator, Literal

import pandas as pd

import adpipe
from adpipe.core.schema import REJECT_REASON
from adpipe.plugins.sources import _kafka, _records

log = logging.getLogger("adpipe.kafka")


class KafkaSource(adpipe.Source):
    """Consume Kafka topics in a consumer group; commit offsets after the sinks wrote each batch."""

    name = "kafka"
    finite = False
    pipeline = ""  # named in dead-letter records (set by the runner)
    requires = ("confluent_kafka",)
    install_hint = _kafka.INSTALL_HINT

    class Params(_kafka.ClientParams):
        topics: list[str] = adpipe.Field(min_length=1, description="topics to consume")
        group: str = adpipe.Field("adpipe", min_length=1, description="consumer group id: processes with the "
                                  "same group share the partitions")
        start: Literal["earliest", "latest"] = adpipe.Field(
            "earliest", description="where a group without committed offsets starts"
        )
        format: Literal["json", "csv"] = adpipe.Field("json", description="message value: one JSON object, or one "
                                                      "CSV line with `columns`")
        columns: list[str] | None = adpipe.Field(None, description="field names of CSV messages, in order")
        key_column: str | None = adpipe.Field(None, description="add the message key (text) as this column")
        max_batch_rows: int = adpipe.Field(10_000, ge=1, description="a batch is scored when it has this many "
                                           "records ...")
        max_batch_ms: int = adpipe.Field(100, ge=1, description="... or when its first record is this old "
                                         "(latency vs. per-batch overhead)")
        dead_letter_topic: str | None = adpipe.Field(
            "{topic}.dlq", description="where bad records go ({topic} is the record's topic); null stops the "
            "run on a bad record instead"
        )
        session_timeout_ms: int = adpipe.Field(10_000, ge=1000, description="a crashed member's partitions move "
                                               "to the others after this long")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        p = self.params
        if p.format == "csv" and not p.columns:
            raise adpipe.ConfigError("The kafka source reads CSV messages only with `columns` (their field names).",
                                     hint="add columns: [id, amount, ...] or use format: json")
        self._stop = threading.Event()
        self._consumer = self._producer = None
        self._watch = _kafka.BrokerWatch(p.bootstrap_servers, p.broker_timeout_seconds)
        self._dlq_errors: list[str] = []
        self._pending: dict[tuple[str, int], int] = {}  # acknowledged offsets not yet committed
        self._pending_lock = threading.Lock()
        self._missing: set[str] = set()

    # ------------------------------------------------------------------ reading
    def batches(self, batch_rows: int) -> Iterator[adpipe.Batch]:
        consumer = self._open()
        p = self.params
        while not self._stop.is_set():
            started = time.monotonic()
            msgs: list = []
            while len(msgs) < p.max_batch_rows and not self._stop.is_set():
                left = p.max_batch_ms / 1000 - (time.monotonic() - started)
                if left <= 0:
                    break
                self._commit(asynchronous=True)
                got = consumer.consume(p.max_batch_rows - len(msgs), timeout=min(left, 0.2))
                if got:
                    self._watch.alive()
                    msgs.extend(m for m in got if self._usable(m))
                elif not msgs:
                    self._watch.check("source")
            yield self._batch(msgs)

    def _open(self):
        from confluent_kafka import Consumer

        p = self.params
        conf = _kafka.settings(p, **{"group.id": p.group, "enable.auto.commit": False,
                                     "auto.offset.reset": p.start, "session.timeout.ms": p.session_timeout_ms,
                                     "fetch.wait.max.ms": 10, "topic.metadata.refresh.interval.ms": 10_000,
                                     "error_cb": self._watch.error_cb})
        try:
            self._consumer = Consumer(conf)
            self._consumer.subscribe(list(p.topics))
        except Exception as exc:
            raise adpipe.SourceError(f"Cannot start a Kafka consumer for {p.topics} at {p.bootstrap_servers}: {exc}",
                                     hint=f"check the client settings {_kafka.masked(p.client_config)}") from exc
        return self._consumer

    def _usable(self, msg) -> bool:
        err = msg.error()
        if err is None:
            return True
        from confluent_kafka import KafkaError

        if err.code() == KafkaError._PARTITION_EOF:
            return False
        if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:  # not created yet: it is picked up once it is
            if msg.topic() not in self._missing:
                self._missing.add(msg.topic())
                log.warning("topic %s does not exist (yet); waiting for it", msg.topic())
            return False
        if err.fatal() or err.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED):
            raise adpipe.SourceError(f"Kafka refused to serve {msg.topic()}: {err.str()}",
                                     hint="check the topic name and the consumer's permissions")
        return False  # transient: librdkafka retries by itself

    def _batch(self, msgs: list) -> adpipe.Batch:
        if not msgs:
            return adpipe.Batch(pd.DataFrame(), {})  # an idle tick
        values = [m.value() for m in msgs]
        frame, bad = _records.decode(values, self.params.format, self.params.columns)
        if self.params.key_column and len(frame):
            keys = [msgs[i].key() for i in frame.attrs[_records.POSITIONS]]
            frame[self.params.key_column] = [k.decode("utf-8", "replace") if k is not None else None for k in keys]
        offsets: dict[tuple[str, int], int] = {}
        for m in msgs:
            offsets[(m.topic(), m.partition())] = m.offset() + 1
        batch = adpipe.Batch(frame.reset_index(drop=True) if len(frame) else frame,
                             {"messages": msgs, "offsets": offsets, "dead_lettered": len(bad)})
        if bad:
            self._send_dead([(msgs[pos], err, "decode") for pos, err in bad])
        return batch

    # ------------------------------------------------------------------ delivery
    def dead_letter(self, batch: adpipe.Batch, rejected: pd.DataFrame) -> bool:
        if self.params.dead_letter_topic is None or not len(rejected):
            return self.params.dead_letter_topic is not None
        positions = batch.data.attrs.get(_records.POSITIONS)
        rows = batch.data.index.get_indexer(rejected.index)
        msgs = batch.meta["messages"]
        reasons = rejected[REJECT_REASON].astype(str).tolist()
        self._send_dead([(msgs[positions[r] if positions is not None else r], why, "validate")
                         for r, why in zip(rows, reasons)])
        return True

    def _send_dead(self, items: list[tuple[Any, str, str]]) -> None:
        topic = self.params.dead_letter_topic
        if topic is None:
            msg, err, _ = items[0]
            raise adpipe.SourceError(
                f"Message at {msg.topic()}[{msg.partition()}] offset {msg.offset()} is not a record: {err}.",
                hint="set the source's dead_letter_topic to park bad records and go on",
            )
        producer = self._dead_producer()
        for msg, err, stage in items:
            origin = {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()}
            record = _records.dead_letter_record(msg.value(), err, stage, origin, self.pipeline)
            producer.produce(topic.format(topic=msg.topic()), value=record, key=msg.key(),
                             on_delivery=self._dead_delivered)
            producer.poll(0)

    def _dead_producer(self):
        if self._producer is None:
            from confluent_kafka import Producer

            self._producer = Producer(_kafka.settings(self.params, **{"enable.idempotence": True,
                                                                        "linger.ms": 5}))
        return self._producer

    def _dead_delivered(self, err, msg) -> None:
        if err is not None:
            self._dlq_errors.append(err.str())

    def ack(self, batch: adpipe.Batch) -> None:
        if self._producer is not None:  # dead letters are stored before their offsets are committed
            left = self._producer.flush(self.params.broker_timeout_seconds)
            if left or self._dlq_errors:
                raise adpipe.SourceError(
                    f"{left or len(self._dlq_errors)} dead-letter record(s) could not be written"
                    + (f": {self._dlq_errors[0]}" if self._dlq_errors else ""),
                    hint="the batch is not committed and will be read again after a restart")
        offsets = batch.meta.get("offsets")
        if offsets:
            with self._pending_lock:  # committed by the consumer's own thread (see _commit)
                for tp, offset in offsets.items():
                    self._pending[tp] = max(offset, self._pending.get(tp, 0))

    def _commit(self, asynchronous: bool) -> None:
        """Commit acknowledged offsets; only ever on the thread that consumes (librdkafka's consumer
        blocks a synchronous commit from another thread while it is inside consume())."""
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        if not pending or self._consumer is None:
            return
        from confluent_kafka import KafkaException, TopicPartition

        parts = [TopicPartition(t, p, o) for (t, p), o in pending.items()]
        try:
            self._consumer.commit(offsets=parts, asynchronous=asynchronous)
        except KafkaException as exc:  # partitions moved to another member: it reads them again
            log.warning("offset commit failed (%s); the records will be read again", exc)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Commit what was acknowledged and leave the group (call once batches() has returned)."""
        self._stop.set()
        if self._producer is not None:
            self._producer.flush(10)
        if self._consumer is not None:
            self._commit(asynchronous=False)
            try:
                self._consumer.close()  # leave the group: the others take over at once
            except Exception:
                pass
            self._consumer = None
