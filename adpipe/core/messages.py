"""Request and response messages shared by the engine and the HTTP service.

The engine returns these types (``FittedPipeline.score_records`` -> :class:`BatchResult`, ``adpipe models
list --json`` rows are :class:`ModelVersionInfo` s) and ``adpipe serve`` sends and receives them, so a
record scored in-process and one scored over HTTP look the same.

:class:`ScoredRecord` is a ``TypedDict``: a scored record is a plain dict (its id columns plus the result
columns), exactly what ``FittedPipeline.score_one`` returns.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import NotRequired, TypedDict

Severity = Literal["none", "low", "medium", "high", "critical"]
JobState = Literal["queued", "running", "succeeded", "failed"]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- scoring
class ScoreRequest(_Message):
    """One record to score: column -> value (the model's feature columns; id columns are echoed back)."""

    record: dict[str, Any] = Field(description="column -> value, e.g. {\"amount\": 12.5, \"hour\": 3}",
                                   examples=[{"f0": 0.1, "f1": -1.2, "f2": 0.4}])


class BatchRequest(_Message):
    """Records to score in one call (at most ``max_batch_rows``)."""

    records: list[dict[str, Any]] = Field(description="a list of records (column -> value)",
                                          examples=[[{"f0": 0.1, "f1": -1.2, "f2": 0.4}]])


@with_config(ConfigDict(extra="allow"))
class ScoredRecord(TypedDict):
    """A scored record: the model's id columns as sent, plus the result columns."""

    anomaly_score: float
    anomaly_probability: float
    is_anomaly: int
    severity: Severity
    model_version: str
    run_id: str
    explanation: NotRequired[str]


class RejectedRecord(_Message):
    """A record of a batch that could not be scored, and why (``index``: its position in the request)."""

    index: int
    reason: str


class BatchResult(_Message):
    """Results of a batch: one ScoredRecord per usable record (in request order) and the rejected ones."""

    model: str = Field(description="model name")
    model_version: str = Field(description="name@version that scored the batch")
    run_id: str = ""
    rows_in: int
    rows_scored: int
    rows_rejected: int
    anomalies: int
    seconds: float = 0.0
    results: list[ScoredRecord] = Field(default_factory=list, description="one per scored record (records requests)")
    columns: dict[str, list[Any]] | None = Field(None, description="column -> values of the scored records "
                                                 "(columns requests)")
    rejected: list[RejectedRecord] = Field(default_factory=list)

    def jsonable(self) -> dict[str, Any]:
        """A dict for a fast JSON encoder (orjson): the fields as they are, without re-validation."""
        return {**self.__dict__, "rejected": [r.__dict__ for r in self.rejected]}


# --------------------------------------------------------------------------- models
class ModelVersionInfo(_Message):
    """One stored version of a model (read from its metadata; nothing is unpickled)."""

    name: str
    version: int
    ref: str = Field(description="name@version")
    stages: list[str] = Field(default_factory=list)
    created_at: str | None = None
    model_version: str | None = None
    detector: str | None = None
    rows: int | None = Field(None, description="training rows")
    features: list[str] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict, description="held-out validation metrics")
    passed: bool | None = Field(None, description="validation verdict (None: not judged)")

    @classmethod
    def from_metadata(cls, name: str, version: int, stages: list[str], meta: dict[str, Any]) -> "ModelVersionInfo":
        cfg = meta.get("config") or {}
        training = meta.get("training") or {}
        validation = meta.get("validation") or {}
        features = (meta.get("features") or {}).get("features") or []
        metrics = {k: float(v) for k, v in (validation.get("metrics") or {}).items() if isinstance(v, (int, float))}
        return cls(name=name, version=version, ref=f"{name}@{version}", stages=list(stages),
                   created_at=meta.get("created_at"), model_version=meta.get("model_version"),
                   detector=(cfg.get("detector") or {}).get("type"), rows=training.get("rows"),
                   features=list(features), metrics=metrics, passed=validation.get("passed"))


class ModelInfo(_Message):
    """A named model: its versions (oldest first) and stage labels."""

    name: str
    latest: int
    stages: dict[str, int] = Field(default_factory=dict, description="stage -> version")
    default_version: int = Field(description="what scoring uses without ?version=: production, else the newest")
    loaded: list[int] = Field(default_factory=list, description="versions loaded in this server")
    versions: list[ModelVersionInfo]


class PromoteRequest(_Message):
    """Move a stage label to a version."""

    version: int = Field(ge=1)
    stage: str = Field("production", min_length=1, max_length=64)
    force: bool = Field(False, description="promote even a version whose validation did not pass")


# --------------------------------------------------------------------------- jobs and runs
class FitJobRequest(_Message):
    """A fit job: a config inside the server's configs_dir plus Hydra overrides."""

    config: str = Field(min_length=1, max_length=512, description="config file name relative to configs_dir",
                        examples=["fraud.yaml"])
    overrides: list[str] = Field(default_factory=list, max_length=100,
                                 description="Hydra overrides, e.g. detector=lof", examples=[["detector=lof"]])


class JobStatus(_Message):
    """A fit job and where it stands."""

    id: str
    kind: Literal["fit"] = "fit"
    status: JobState
    config: str
    overrides: list[str] = Field(default_factory=list)
    model: str | None = Field(None, description="the stored model reference (name@version) once succeeded")
    error: str | None = None
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    seconds: float | None = None


class RunInfo(_Message):
    """A fit job or a scored batch."""

    id: str
    kind: Literal["fit", "score_batch"]
    model: str | None = None
    status: JobState
    started_at: str | None = None
    finished_at: str | None = None
    rows_in: int | None = None
    anomalies: int | None = None
    seconds: float | None = None
    error: str | None = None


class AnomalyInfo(_Message):
    """A record the service flagged."""

    at: str
    model: str
    version: int | None = None
    anomaly_score: float
    anomaly_probability: float
    severity: str
    record: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(_Message):
    """Every error response: what kind, what went wrong, how to fix it."""

    error: str = Field(description="error type, e.g. model_not_found, data_error, malformed_json")
    message: str
    hint: str | None = None
    details: list[dict[str, Any]] | None = None
