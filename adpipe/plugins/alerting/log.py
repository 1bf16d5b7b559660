"""The ``log`` alert channel: anomalies as warnings in the adpipe log."""

from __future__ import annotations

import logging

import pandas as pd

import adpipe
from adpipe.core import schema


class LogChannel(adpipe.AlertChannel):
    """Writes one log line per batch of anomalies (count and top scores)."""

    name = "log"

    class Params(adpipe.Params):
        level: str = adpipe.Field("WARNING", pattern="^(DEBUG|INFO|WARNING|ERROR)$", description="log level")
        top: int = adpipe.Field(3, ge=0, le=100, description="how many of the highest-scoring rows to show")

    def send(self, anomalies: pd.DataFrame, context) -> None:
        top = anomalies.nlargest(self.params.top, schema.SCORE) if self.params.top else anomalies.iloc[:0]
        shown = "; ".join(
            f"score={r[schema.SCORE]:.4g} p={r[schema.PROBABILITY]:.3f} {r[schema.SEVERITY]}" for _, r in top.iterrows()
        )
        logging.getLogger("adpipe.alerts").log(
            getattr(logging, self.params.level),
            "%s: %d anomalies (run %s, model %s). Top: %s",
            context.pipeline, len(anomalies), context.run_id, context.model_version, shown,
        )
