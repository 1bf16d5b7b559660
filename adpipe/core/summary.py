"""The run summary: counts that always reconcile, time per stage, outputs."""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from adpipe.core import tracing


class StageTimer:
    """Accumulates wall-clock seconds per stage name; each call is also an OpenTelemetry span
    ``adpipe.<stage>`` (a no-op without an SDK). ``timer("validate", rows=n)`` adds span attributes."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str, **attributes: Any) -> Iterator[Any]:
        start = time.perf_counter()
        try:
            if tracing.enabled():
                with tracing.stage_span(stage, attributes) as span:
                    yield span
            else:  # no SDK: no span at all
                yield tracing.NO_SPAN
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


@dataclass
class RunSummary:
    pipeline: str
    run_id: str
    model_version: str
    detector: str
    status: str = "succeeded"
    started_at: str = ""
    finished_at: str = ""
    seconds: float = 0.0
    rows_in: int = 0
    rows_scored: int = 0
    rows_rejected: int = 0
    anomalies: int = 0
    batches: int = 0
    #: stream runs: messages that were not records (sent to the dead-letter destination, not in rows_in)
    undecodable: int = 0
    #: rejected rows handed to the source's dead-letter destination (part of rows_rejected)
    dead_lettered: int = 0
    drift_events: int = 0
    stopped_by: str | None = None  # stream runs: signal, idle, max_records, end
    stage_seconds: dict[str, float] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=lambda: {"sent": 0, "failed": 0})
    outputs: list[str] = field(default_factory=list)
    rejects_output: list[str] = field(default_factory=list)
    config_path: str | None = None
    summary_path: str | None = None

    @property
    def anomaly_rate(self) -> float:
        return self.anomalies / self.rows_scored if self.rows_scored else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["anomaly_rate"] = round(self.anomaly_rate, 6)
        d["stage_seconds"] = {k: round(v, 4) for k, v in self.stage_seconds.items()}
        d["seconds"] = round(self.seconds, 4)
        return d

    def write_json(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        os.replace(tmp, path)
        self.summary_path = str(path)
        return path

    def render(self, console=None) -> None:
        """Print the summary as a table (rich)."""
        from rich.console import Console
        from rich.table import Table

        console = console or Console(stderr=False)
        table = Table(title=f"adpipe run · {self.pipeline} · {self.run_id}", show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        pct = f"{100 * self.anomaly_rate:.2f} %"
        rows = [
            ("status", self.status),
            ("detector", self.detector),
            ("model version", self.model_version),
            ("rows in", f"{self.rows_in:,}"),
            ("rows scored", f"{self.rows_scored:,}"),
            ("rows rejected", f"{self.rows_rejected:,}"),
            ("anomalies", f"{self.anomalies:,} ({pct})"),
            *([("dead-lettered", f"{self.dead_lettered:,} rows, {self.undecodable:,} undecodable messages")]
              if self.dead_lettered or self.undecodable else []),
            *([("drift events", f"{self.drift_events:,}")] if self.drift_events else []),
            ("time", f"{self.seconds:.2f} s"),
        ]
        rows += [(f"  {k}", f"{v:.2f} s") for k, v in self.stage_seconds.items()]
        rows += [(k, f"{v:.4f}") for k, v in self.metrics.items()]
        if any(self.alerts.values()):
            a = self.alerts
            rows.append(("alerts", ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in a.items() if v)))
        rows += [("output", o) for o in self.outputs]
        rows += [("rejects", o) for o in self.rejects_output]
        if self.summary_path:
            rows.append(("summary", self.summary_path))
        for k, v in rows:
            table.add_row(k, v)
        console.print(table)
