"""The output schema every result frame follows (see DESIGN.md)."""

from __future__ import annotations

SCORE = "anomaly_score"
PROBABILITY = "anomaly_probability"
LABEL = "is_anomaly"
SEVERITY = "severity"
MODEL_VERSION = "model_version"
RUN_ID = "run_id"
REJECT_REASON = "reject_reason"

RESULT_COLUMNS = [SCORE, PROBABILITY, LABEL, SEVERITY, MODEL_VERSION, RUN_ID]
EXPLANATION = "explanation"  # optional (explain.column): one sentence for flagged rows, empty for the rest
SEVERITIES = ["none", "low", "medium", "high", "critical"]
