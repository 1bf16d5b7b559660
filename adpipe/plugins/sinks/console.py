"""Console sink: a short table of the highest-scoring anomalies, printed when the run ends."""

from __future__ import annotations

import logging
import sys
from collections import Counter
from typing import Any, Literal

import pandas as pd
from rich.console import Console
from rich.table import Table

import adpipe
from adpipe.core import schema as S


class ConsoleSink(adpipe.Sink):
    """Print the top anomalies by score, with counts, when the run ends."""

    name = "console"

    class Params(adpipe.Params):
        top: int = adpipe.Field(10, ge=1, le=1000, description="how many of the highest-scoring anomalies to show")
        stream: Literal["stderr", "stdout"] = adpipe.Field(
            "stderr", description="where the table goes (stderr keeps stdout free for `adpipe run --json`)")

    def __init__(self, params=None, **kwargs: Any):
        super().__init__(params, **kwargs)
        self.open()

    def open(self, context: Any = None) -> None:
        self.context = context
        self.rows = 0
        self.severities: Counter[str] = Counter()
        self.best: pd.DataFrame | None = None  # at most `top` flagged rows: memory stays bounded

    def write(self, frame: pd.DataFrame) -> None:
        self.rows += len(frame)
        flagged = frame[frame[S.LABEL] == 1] if S.LABEL in frame.columns else frame
        if S.SEVERITY in flagged.columns:
            self.severities.update(flagged[S.SEVERITY].astype(str))
        else:
            self.severities.update({"flagged": len(flagged)})
        if S.SCORE in flagged.columns and len(flagged):
            pool = flagged if self.best is None else pd.concat([self.best, flagged])
            self.best = pool.nlargest(self.params.top, S.SCORE)

    def close(self, success: bool) -> None:
        if not success:
            return
        console = Console(file=sys.stdout if self.params.stream == "stdout" else sys.stderr)
        anomalies = sum(self.severities.values())
        title = getattr(self.context, "pipeline", None) or "adpipe"
        try:
            console.print(f"[bold]{title}[/bold]: {anomalies} anomalies in {self.rows} rows"
                          + (f" ({self._by_severity()})" if anomalies else ""))  # fmt: skip
            if self.best is not None and len(self.best):
                console.print(self._table())
        except OSError as exc:  # a closed or full terminal must not fail a run whose data is written
            logging.getLogger(__name__).warning("console sink could not print: %s", exc)

    def _by_severity(self) -> str:
        order = {s: i for i, s in enumerate(reversed(S.SEVERITIES))}
        return ", ".join(f"{n} {s}" for s, n in sorted(self.severities.items(), key=lambda kv: order.get(kv[0], -1)))

    def _table(self) -> Table:
        ids = list(getattr(self.context, "id_columns", None) or [])
        ids = [c for c in ids if c in self.best.columns] or [c for c in self.best.columns
                                                             if c not in (*S.RESULT_COLUMNS, S.EXPLANATION)]
        shown = ids[:4] + [c for c in (S.SCORE, S.PROBABILITY, S.SEVERITY) if c in self.best.columns]
        table = Table(title=f"top {len(self.best)} anomalies by {S.SCORE}")
        for column in shown:
            numeric = pd.api.types.is_numeric_dtype(self.best[column])
            table.add_column(str(column), justify="right" if numeric else "left")
        for _, row in self.best[shown].iterrows():
            table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
        return table
