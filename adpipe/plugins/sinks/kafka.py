"""Kafka sink: every result row as one JSON message, keyed by the record's id.

    sinks: [{type: kafka, bootstrap_servers: "broker:9092", topic: payments.scores}]

``write`` returns once the brokers acknowledged every message (acks=all, idempotent producer), so the
engine may then commit the source's offsets. A replayed batch is written again with the same keys:
readers of the topic (or a compacted topic) keep the latest message per key.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

import adpipe
from adpipe.core.errors import SinkError
from adpipe.core.schema import LABEL
from adpipe.plugins.sources import _kafka, _records


class KafkaSink(adpipe.Sink):
    """Write results to a Kafka topic as JSON, keyed by the id columns; returns once the brokers have them."""

    name = "kafka"
    requires = ("confluent_kafka",)
    install_hint = _kafka.INSTALL_HINT

    class Params(_kafka.ClientParams):
        topic: str = adpipe.Field(min_length=1, description="topic the results go to")
        key: list[str] | None = adpipe.Field(None, description="columns forming the message key (default: the "
                                             "pipeline's id columns); one column is sent as text, several as JSON")
        only_anomalies: bool = adpipe.Field(False, description="send only the rows flagged as anomalies")
        compression: str = adpipe.Field("lz4", description="compression.type: none, gzip, snappy, lz4, zstd")

    _producer = None
    key_columns: list[str] = []

    def open(self, context: Any = None) -> None:
        from confluent_kafka import Producer

        p = self.params
        self.key_columns = list(p.key or getattr(context, "id_columns", None) or [])
        self._errors: list[str] = []
        self._watch = _kafka.BrokerWatch(p.bootstrap_servers, p.broker_timeout_seconds)
        conf = _kafka.settings(p, **{"enable.idempotence": True, "acks": "all", "linger.ms": 5,
                                     "compression.type": p.compression, "error_cb": self._watch.error_cb,
                                     # one callback for the producer, reporting failures only: cheaper than
                                     # a callback per message
                                     "on_delivery": self._delivered, "delivery.report.only.error": True})
        try:
            self._producer = Producer(conf)
        except Exception as exc:
            raise SinkError(f"Cannot start a Kafka producer for topic '{p.topic}' at {p.bootstrap_servers}: {exc}",
                            hint=f"check the client settings {_kafka.masked(p.client_config)}") from exc

    def write(self, frame: pd.DataFrame) -> None:
        if self._producer is None:
            raise SinkError("The kafka sink was written to before open().", hint="call open(context) first")
        if self.params.only_anomalies and len(frame):
            frame = frame[frame[LABEL] == 1]
        if frame.empty:
            return
        missing = [k for k in self.key_columns if k not in frame.columns]
        if missing:
            raise SinkError(f"Result rows for topic '{self.params.topic}' lack key column(s) {missing}.",
                            hint="the sink's `key` must name columns of the output (the id columns)")
        values = _records.encode_rows(frame)
        keys = self._keys(frame)
        produce, poll, topic = self._producer.produce, self._producer.poll, self.params.topic
        for i, value in enumerate(values):
            while True:
                try:
                    produce(topic, value=value, key=keys[i] if keys else None)
                    break
                except BufferError:  # the local queue is full: let it drain
                    poll(0.05)
        self._flush(len(values))

    def _keys(self, frame: pd.DataFrame) -> list[bytes] | None:
        if not self.key_columns:
            return None
        if len(self.key_columns) == 1:
            return [str(v).encode() for v in frame[self.key_columns[0]].tolist()]
        return _records.encode_rows(frame[self.key_columns])

    def _delivered(self, err, msg) -> None:
        if err is not None:
            self._errors.append(err.str())

    def _flush(self, n: int) -> None:
        p = self.params
        left = self._producer.flush(p.broker_timeout_seconds)
        if left or self._errors:
            first = self._errors[0] if self._errors else f"no broker acknowledged them within " \
                f"{p.broker_timeout_seconds:.0f} s"
            self._errors.clear()
            raise SinkError(f"{left or n} result message(s) for topic '{p.topic}' at {p.bootstrap_servers} were not "
                            f"delivered: {first}",
                            hint="the batch is not committed at the source and is written again after a restart")

    def close(self, success: bool) -> None:
        if self._producer is not None:
            self._producer.flush(10 if success else 0)
            self._producer = None

    def outputs(self) -> list[str]:
        first = self.params.bootstrap_servers.split(",")[0]
        return [f"kafka://{first}/{self.params.topic}"]
