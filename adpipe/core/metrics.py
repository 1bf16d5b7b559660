"""Prometheus metrics of a running pipeline (one registry per run, served or written to a textfile)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server, write_to_textfile


class RunMetrics:
    """Counters and gauges a stream run keeps up to date."""

    def __init__(self, pipeline: str):
        self.registry = CollectorRegistry()
        labels = {"labelnames": ["pipeline"], "registry": self.registry}
        self.records = Counter("adpipe_records", "Records by outcome", ["pipeline", "outcome"],
                               registry=self.registry)
        self.anomalies = Counter("adpipe_anomalies", "Records flagged as anomalies", **labels)
        self.batches = Counter("adpipe_batches", "Batches scored, written and acknowledged", **labels)
        self.batch_seconds = Histogram("adpipe_batch_seconds", "Seconds to score and write one batch", **labels,
                                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.buffer_rows = Gauge("adpipe_buffer_rows", "Records read but not yet scored", **labels)
        self.buffer_capacity = Gauge("adpipe_buffer_capacity_rows", "Bound of the read buffer", **labels)
        self.buffer_fill = Gauge("adpipe_buffer_fill_ratio", "buffer_rows / buffer_capacity_rows", **labels)
        self.drift = Counter("adpipe_drift_events", "Drift events", ["pipeline", "feature", "test"],
                             registry=self.registry)
        self.model = Gauge("adpipe_model_info", "The model scoring now (value 1)", ["pipeline", "model_version"],
                           registry=self.registry)
        self.refits = Counter("adpipe_model_refits", "Models refitted or reloaded while running",
                              ["pipeline", "reason"], registry=self.registry)
        self.pipeline = pipeline
        self._version = None

    def count(self, outcome: str, n: int) -> None:
        if n:
            self.records.labels(self.pipeline, outcome).inc(n)

    def buffer(self, rows: int, capacity: int) -> None:
        self.buffer_rows.labels(self.pipeline).set(rows)
        self.buffer_capacity.labels(self.pipeline).set(capacity)
        self.buffer_fill.labels(self.pipeline).set(rows / capacity if capacity else 0.0)

    def model_version(self, version: str) -> None:
        if version != self._version:
            if self._version is not None:
                self.model.remove(self.pipeline, self._version)
            self.model.labels(self.pipeline, version).set(1)
            self._version = version

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), self.registry)
