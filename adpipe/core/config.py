"""Validate a composed pipeline config: every stage by its plugin's Params.

    cfg = load_config("configs/fraud.yaml", ["detector=lof", "threshold.contamination=0.02"])

Composition (Hydra, overrides, config groups) lives in :mod:`adpipe.core.compose`.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from adpipe.core.compose import COMMAND_LINE, OVERRIDES_VAR, STAGE_LISTS, STAGES, compose, sources
from adpipe.core.errors import ConfigError
from adpipe.core.plugin import Params, Plugin
from adpipe.core.registry import Registry, get_registry, suggest


# --------------------------------------------------------------------------- stages
@dataclass
class StageSpec:
    """A validated stage: plugin class plus its parameters (build with ``.build()``)."""

    kind: str
    type: str
    cls: type[Plugin]
    params: Params
    where: str  # YAML path, e.g. "sinks[0]"

    def build(self) -> Plugin:
        return self.cls(self.params)

    def to_dict(self) -> dict[str, Any]:
        dumped = self.params.model_dump(mode="json", fallback=lambda v: f"<{type(v).__name__}>")
        return {"type": self.type, **dumped}


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ColumnsSpec(_Spec):
    id: list[str] | None = Field(None, description="key columns carried into the output (default: every input column)")
    features: list[str] | None = Field(None, description="columns the detector sees (default: all but id/label/exclude)")
    label: str | None = Field(None, description="ground-truth column (0/1) used only to report metrics")
    exclude: list[str] = Field(default_factory=list, description="columns left out of the features")


class CriteriaSpec(_Spec):
    min_roc_auc: float | None = Field(None, ge=0, le=1, description="held-out ROC-AUC a promotable model reaches")
    min_pr_auc: float | None = Field(None, ge=0, le=1, description="... PR-AUC (average precision)")
    min_precision: float | None = Field(None, ge=0, le=1, description="... precision at the threshold")
    min_recall: float | None = Field(None, ge=0, le=1, description="... recall at the threshold")
    min_f1: float | None = Field(None, ge=0, le=1, description="... F1 at the threshold")


class FitSpec(_Spec):
    source: Any = Field(None, description="separate training source (default: the pipeline's source)")
    sample_rows: int | None = Field(None, ge=1, description="fit on a random sample of this many rows")
    seed: int = Field(0, description="seed of the training sample and of the held-out split")
    holdout: float = Field(0.2, ge=0, lt=1, description="with a label column: share of labelled rows held out "
                           "of fitting to measure the model (stratified); 0 fits on every row")
    criteria: CriteriaSpec = Field(default_factory=CriteriaSpec, description="pass criteria on the held-out "
                                   "metrics; a model that misses one is marked not fit for promotion")


class CalibrationSpec(_Spec):
    method: Literal["ecdf", "gaussian"] = Field("ecdf", description="raw score -> probability mapping")
    max_rows: int = Field(200_000, ge=100, description="training scores kept to fit the calibration")


class SeveritySpec(_Spec):
    medium: float = Field(0.95, ge=0, le=1, description="probability from which a flagged row is medium")
    high: float = Field(0.99, ge=0, le=1, description="... high")
    critical: float = Field(0.999, ge=0, le=1, description="... critical")

    @model_validator(mode="after")
    def _ordered(self):
        if not self.medium <= self.high <= self.critical:
            raise ValueError("severity cut-offs must satisfy medium <= high <= critical")
        return self


class ValidationSpec(_Spec):
    on_invalid: Literal["raise", "drop", "impute"] = Field(
        "raise", description="rows with missing, non-numeric or infinite values: fail, reject them, or impute"
    )


class EngineSpec(_Spec):
    batch_rows: int = Field(100_000, ge=1, description="rows per scoring batch (bounds memory)")
    spill: bool = Field(True, description="with fit.sample_rows, keep the parsed batches of the sampling pass in a "
                        "temporary file so scoring does not parse the source again (needs disk space)")


class StreamSpec(_Spec):
    """How an endless source (Kafka, Redis Streams) is run; ignored for files."""

    warmup_rows: int = Field(10_000, ge=10, description="with no saved model and no fit.source: fit on the "
                             "first N records of the stream, then score them and go on")
    window_rows: int = Field(50_000, ge=10, description="recent valid records kept (bounded, oldest dropped) "
                             "for refits; saved with each checkpoint")
    refit_every_rows: int | None = Field(None, ge=1, description="refit on the window every N scored records")
    refit_every_seconds: float | None = Field(None, gt=0, description="refit on the window every N seconds")
    reload_model: bool = Field(True, description="with model=NAME@STAGE (or NAME): load the store's new version "
                               "when it changes")
    model_check_seconds: float = Field(30, gt=0, description="how often the store is asked for a new version")
    buffer_rows: int = Field(100_000, ge=1, description="bound of the buffer between reading and scoring")
    overflow: Literal["block", "drop_oldest", "drop_newest"] = Field(
        "block", description="a full buffer: stop reading (backpressure, the broker keeps the records), or shed "
        "the oldest/newest batch to the dead-letter destination")
    state_dir: Path | None = Field(None, description="checkpoints (model with online state, refit window); "
                                   "default $ADPIPE_HOME/state/<name>")
    checkpoint: str | None = Field(None, description="where checkpoints go instead of state_dir: "
                                   "redis://host:port/db (key adpipe:state:<name>)")
    checkpoint_every_seconds: float = Field(30, gt=0, description="how often learned state is checkpointed")
    status_every_seconds: float = Field(10, gt=0, description="how often the status line, summary and metrics "
                                        "file are refreshed")
    metrics_port: int | None = Field(None, ge=0, le=65535, description="serve Prometheus metrics on this port")
    metrics_file: Path | None = Field(None, description="write Prometheus metrics to this textfile")
    idle_stop_seconds: float | None = Field(None, gt=0, description="stop (exit 0) after this long without a "
                                            "record (at least 60 s before the first one): backfills and tests")
    max_records: int | None = Field(None, ge=1, description="stop after this many records")


class DriftSpec(_Spec):
    """Drift detection on features and on the anomaly score (batch and stream runs)."""

    detectors: list[Any] = Field(default_factory=list, description="drift detector plugins, e.g. "
                                 "[{type: ks}, {type: psi}, {type: adwin}]; empty turns drift detection off")
    features: list[str] | None = Field(None, description="features watched (default: every numeric feature)")
    score: bool = Field(True, description="watch the anomaly score too")
    action: Literal["log", "alert", "refit"] = Field("alert", description="on drift: record it; also raise a "
                                                     "`drift` alert; or also refit on the recent window")
    severity: Literal["low", "medium", "high", "critical"] = Field("high", description="severity of drift alerts")
    cooldown_rows: int = Field(10_000, ge=0, description="after an event on a feature and test, further ones "
                               "are ignored for this many records")
    history: Path | None = Field(None, description="drift history database (default $ADPIPE_HOME/drift.db)")


class SummarySpec(_Spec):
    path: Path | None = Field(None, description="where the run summary JSON goes (default: beside the first output)")


class TuneSpec(_Spec):
    """Hyper-parameter search over ranges (``adpipe tune``); see docs/tuning.md."""

    space: dict[str, Any] = Field(default_factory=dict, description="dotted config key -> values to try: a list "
                                  "[50, 100, 200], or a range {low: 0.01, high: 0.2, log: true} / {low: 10, "
                                  "high: 200, step: 10} (int when low and high are ints)")
    method: Literal["grid", "random", "bayes"] = Field("bayes", description="grid (every combination), random, "
                                                       "or bayes (Optuna's TPE)")
    trials: int | None = Field(None, ge=1, description="settings tried (default: every combination for grid, "
                               "30 for random and bayes)")
    objective: Literal["roc_auc", "pr_auc", "f1"] = Field("roc_auc", description="measured on the labelled "
                                                          "validation rows (f1: of the threshold's flags)")
    validation: float = Field(0.3, gt=0, lt=1, description="share of labelled rows held out (stratified) to "
                              "measure each trial")
    timeout_seconds: float | None = Field(None, gt=0, description="stop starting trials after this long")
    seed: int = Field(0, description="seed of the sampler and of the validation split")

    @model_validator(mode="after")
    def _ranges(self):
        from adpipe.core.tuning_space import parse_space  # range syntax; keys are checked against a config by tune()

        parse_space(self.space, self.method)
        return self


class ExplainSpec(_Spec):
    """Per-record explanations of flagged rows (``adpipe explain``, the `explanation` column); see
    docs/explanations.md."""

    column: bool = Field(False, description="add an `explanation` column to the results: one sentence naming "
                         "the features that raised the score for flagged rows, empty for normal rows")
    top_features: int = Field(3, ge=1, le=100, description="at most this many features named per explanation "
                              "(features adding less than a fifth of the top one's contribution are left out)")


class MetricsSpec(_Spec):
    """Metrics a batch run (``adpipe run``, ``adpipe score``) pushes when it ends, failed or not; a push that
    fails is logged as a warning and never fails the run. See docs/observability.md."""

    pushgateway: str | None = Field(None, description="Prometheus Pushgateway URL, e.g. http://pushgateway:9091 "
                                    "(null: no push)")
    job: str = Field("adpipe", min_length=1, description="the `job` label of the push (grouping key)")
    grouping: dict[str, str] = Field(default_factory=dict, description="more grouping-key labels, e.g. {env: "
                                     "prod}; `pipeline` is always added")
    textfile: Path | None = Field(None, description="also write the metrics to this .prom file, for "
                                  "node-exporter's textfile collector (null: no file)")
    timeout_seconds: float = Field(5, gt=0, le=300, description="give up on the push after this long")

    @field_validator("pushgateway")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        from urllib.parse import urlsplit

        if value is None:
            return value
        url = urlsplit(value)
        if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
            raise ValueError("must be an http(s) URL like http://pushgateway:9091")
        url.port  # noqa: B018  (raises ValueError on a port that is not a number or out of range)
        return value

    @field_validator("grouping")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        import re

        for key in value:
            if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", key) or key.startswith("__"):
                raise ValueError(f"{key!r} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)")
            if key in ("job", "pipeline"):
                raise ValueError(f"{key!r} is set by adpipe (metrics.job; the config's name)")
        return value

    @field_validator("textfile")
    @classmethod
    def _prom(cls, value: Path | None) -> Path | None:
        if value is not None and value.suffix != ".prom":
            raise ValueError("must end in .prom (node-exporter's textfile collector reads only *.prom files)")
        return value


SECTIONS: dict[str, type[_Spec]] = {
    "columns": ColumnsSpec,
    "fit": FitSpec,
    "calibration": CalibrationSpec,
    "severity": SeveritySpec,
    "validation": ValidationSpec,
    "engine": EngineSpec,
    "summary": SummarySpec,
    "stream": StreamSpec,
    "drift": DriftSpec,
    "tune": TuneSpec,
    "explain": ExplainSpec,
    "metrics": MetricsSpec,
}
TOP_KEYS = ["name", *SECTIONS, *STAGES, *STAGE_LISTS]
DEFAULTS = {"threshold": {"type": "contamination"}, "sinks": [], "preprocess": [], "alerts": []}


@dataclass
class PipelineConfig:
    """A composed and validated pipeline config."""

    name: str
    source: StageSpec | None
    preprocess: list[StageSpec]
    detector: StageSpec | None  # None only in a scoring config (the model brings its own)
    threshold: StageSpec
    sinks: list[StageSpec]
    reject_sink: StageSpec | None
    alerts: list[StageSpec]
    columns: ColumnsSpec
    fit: FitSpec
    fit_source: StageSpec | None
    calibration: CalibrationSpec
    severity: SeveritySpec
    validation: ValidationSpec
    engine: EngineSpec
    summary: SummarySpec
    base_dir: Path
    stream: StreamSpec = dataclass_field(default_factory=StreamSpec)
    drift: DriftSpec = dataclass_field(default_factory=DriftSpec)
    tune: TuneSpec = dataclass_field(default_factory=TuneSpec)
    explain: ExplainSpec = dataclass_field(default_factory=ExplainSpec)
    metrics: MetricsSpec = dataclass_field(default_factory=MetricsSpec)
    drift_detectors: list[StageSpec] = dataclass_field(default_factory=list)
    path: Path | None = None
    raw: dict | None = None  # the composed config, before validation

    def to_dict(self) -> dict[str, Any]:
        """The composed, validated config with every default filled in."""
        out: dict[str, Any] = {"name": self.name}
        for key in ("columns", "fit", "calibration", "severity", "validation", "engine", "summary", "stream",
                    "drift", "tune", "explain", "metrics"):
            out[key] = getattr(self, key).model_dump(mode="json")
        out["drift"]["detectors"] = [s.to_dict() for s in self.drift_detectors]
        out["fit"]["source"] = self.fit_source.to_dict() if self.fit_source else None
        for key in ("source", "detector", "threshold", "reject_sink"):
            spec = getattr(self, key)
            out[key] = spec.to_dict() if spec else None
        for key in ("preprocess", "sinks", "alerts"):
            out[key] = [s.to_dict() for s in getattr(self, key)]
        return out


# --------------------------------------------------------------------------- loading
def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    data: dict | None = None,
    base_dir: Path | None = None,
    registry: Registry | None = None,
    need_detector: bool = True,
) -> PipelineConfig:
    """Compose (from ``path``) or take (``data``) a config and validate it.

    ``need_detector=False`` accepts a config without a detector: one that only supplies the source and
    sinks for scoring with a saved model.
    """
    if data is None:
        if path is None:
            raise ConfigError("No config given.", hint="pass config=PATH")
        raw = compose(path, overrides)
        file = Path(path).expanduser().resolve()
        base = file.parent
        default_name = file.stem
    else:
        raw, file, base, default_name = dict(data), None, (base_dir or Path.cwd()), "pipeline"
    try:
        return validate(raw, base_dir=base, file=file, default_name=default_name, registry=registry,
                        need_detector=need_detector)
    except ConfigError as exc:
        if file is None:
            raise
        raise _blame(exc, file, overrides) from None


def _blame(exc: ConfigError, file: Path, overrides) -> ConfigError:
    """Name the env file, ADPIPE_OVERRIDES or the command line in a validation error when they set the value."""
    import re

    try:
        origin = sources(file, overrides)
    except ConfigError:
        return exc
    if set(origin.values()) <= {str(file)}:
        return exc
    lines = []
    for line in exc.message.splitlines():
        rest = line.removeprefix(f"{file}: ")
        found = re.match(r"unknown top-level key '([^']+)'|unknown key (\S+)|`([^`]+)`|([\w.\[\]]+)", rest)
        path = next((g for g in found.groups() if g), "") if found and rest != line else ""
        parts = [p for p in re.split(r"[.\[\]]+", path) if p]
        label = next((origin[k] for k in (".".join(parts[:i]) for i in range(len(parts), 0, -1)) if k in origin),
                     str(file))
        if label == COMMAND_LINE or label == OVERRIDES_VAR:
            line += f" (set by {'a command-line override' if label == COMMAND_LINE else OVERRIDES_VAR})"
        elif label != str(file):
            line = f"{label}: {rest} (env file merged over {file})"
        lines.append(line)
    return ConfigError("\n".join(lines), hint=exc.hint)


def value_sources(path: str | Path, overrides: list[str] | tuple[str, ...], cfg: PipelineConfig) -> dict[str, str]:
    """Where each value of ``cfg`` came from: a file, ADPIPE_OVERRIDES, the command line or ``default``
    (a section left out entirely shows as one ``default`` line)."""
    from adpipe.core.compose import flatten

    origin = sources(path, overrides)
    given = {k.split(".")[0] for k in origin}
    out = {}
    for key, value in cfg.to_dict().items():
        if key not in given:
            out[key] = "default"
            continue
        for sub in (flatten({key: value}) if isinstance(value, dict) else {key: value}):
            out[sub] = origin.get(sub, "default")
    return out


def validate(raw: dict, *, base_dir: Path, file: Path | None, default_name: str,
             registry: Registry | None = None, need_detector: bool = True) -> PipelineConfig:
    registry = registry or get_registry()
    where = str(file) if file else "config"
    unknown = [k for k in raw if k not in TOP_KEYS and k != "hydra"]
    if unknown:
        key = unknown[0]
        raise ConfigError(f"{where}: unknown top-level key '{key}'.", hint=suggest(key, TOP_KEYS))
    v = _Validator(registry, base_dir, where)
    raw = {**DEFAULTS, **{k: x for k, x in raw.items() if x is not None}}
    if "detector" not in raw and need_detector:
        raise ConfigError(f"{where}: no detector configured.", hint="add `detector: {type: iforest}` or detector=iforest")
    sections = {k: v.section(k, cls, raw.get(k) or {}) for k, cls in SECTIONS.items()}
    fit: FitSpec = sections["fit"]  # type: ignore[assignment]
    drift: DriftSpec = sections["drift"]  # type: ignore[assignment]
    name = raw.get("name") or default_name
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: name must be a non-empty string, got {name!r}.")
    return PipelineConfig(
        name=name,
        source=v.stage("source", "source", raw["source"]) if raw.get("source") else None,
        preprocess=v.stage_list("preprocess", "preprocessor", raw["preprocess"]),
        detector=v.stage("detector", "detector", raw["detector"]) if "detector" in raw else None,
        threshold=v.stage("threshold", "threshold", raw["threshold"]),
        sinks=v.stage_list("sinks", "sink", raw["sinks"]),
        reject_sink=v.stage("reject_sink", "sink", raw["reject_sink"]) if raw.get("reject_sink") else None,
        alerts=v.stage_list("alerts", "alert_channel", raw["alerts"]),
        fit_source=v.stage("fit.source", "source", fit.source) if fit.source else None,
        drift_detectors=v.stage_list("drift.detectors", "drift_detector", drift.detectors),
        base_dir=base_dir,
        path=file,
        raw=raw,
        **sections,  # type: ignore[arg-type]
    )


class _Validator:
    def __init__(self, registry: Registry, base_dir: Path, where: str):
        self.registry, self.base_dir, self.where = registry, base_dir, where

    def section(self, key: str, cls: type[_Spec], value: Any):
        if not isinstance(value, dict):
            raise ConfigError(f"{self.where}: `{key}` must be a mapping, got {value!r}.")
        try:
            spec = cls(**resolve_paths(cls, value, self.base_dir))
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, self.where, key, cls)) from None
        return spec

    def stage(self, path: str, kind: str, value: Any) -> StageSpec:
        if isinstance(value, str):
            value = {"type": value}
        if not isinstance(value, dict):
            raise ConfigError(f"{self.where}: `{path}` must be a mapping with a `type:` key, got {value!r}.",
                              hint=f"for example {path}: {{type: {(self.registry.names(kind) or ['name'])[0]}}}")
        value = dict(value)
        type_ = value.pop("type", None)
        if not type_:
            raise ConfigError(f"{self.where}: `{path}` has no `type:`.", hint=suggest("", self.registry.names(kind)))
        if (kind, type_) not in self.registry:
            raise ConfigError(
                f"{self.where}: {path}.type = '{type_}' is not an installed {kind.replace('_', ' ')} plugin.",
                hint=suggest(str(type_), self.registry.names(kind)) + "  (`adpipe plugins list` shows all)",
            )
        cls = self.registry.get(kind, type_)
        try:
            params = cls.Params(**resolve_paths(cls.Params, value, self.base_dir))
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, self.where, path, cls.Params, plugin=type_),
                              hint=f"`adpipe plugins show {type_}` lists every parameter with its range") from None
        return StageSpec(kind, type_, cls, params, path)

    def stage_list(self, path: str, kind: str, value: Any) -> list[StageSpec]:
        if isinstance(value, (dict, str)):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{self.where}: `{path}` must be a list of stages, got {value!r}.")
        return [self.stage(f"{path}[{i}]", kind, item) for i, item in enumerate(value)]


# --------------------------------------------------------------------------- helpers
def _is_path_type(annotation: Any) -> bool:
    if annotation is Path:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_path_type(a) for a in typing.get_args(annotation))
    return False


def resolve_paths(model: type[BaseModel], values: dict, base_dir: Path) -> dict:
    """Relative values of ``Path`` fields resolve against the config's folder."""
    out = dict(values)
    for key, field in model.model_fields.items():
        val = out.get(key)
        if isinstance(val, (str, Path)) and _is_path_type(field.annotation) and "://" not in str(val):
            p = Path(val).expanduser()
            out[key] = p if p.is_absolute() else (base_dir / p)
    return out


def describe_field(field) -> str:
    """A short 'what is allowed' text from a pydantic field: type, range, description."""
    text = " ".join([_type_name(field.annotation), *_bounds(field.metadata)])
    return f"{text} ({field.description})" if field.description else text


def _bounds(metadata) -> list[str]:
    out = []
    for meta in metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                out.append(f"{sym} {getattr(meta, attr)}")
        out += _bounds(getattr(meta, "metadata", None) or [])  # FieldInfo inside Annotated
    return out


def _type_name(annotation: Any) -> str:
    if annotation is None or annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *meta = typing.get_args(annotation)
        return " ".join([_type_name(base), *_bounds(meta)])
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def format_validation_error(exc: ValidationError, where: str, path: str, model: type[BaseModel],
                            plugin: str | None = None) -> str:
    """One readable paragraph per problem: file, YAML path, bad value, what is allowed."""
    lines = []
    fields = {(f.alias or name): f for name, f in model.model_fields.items()}
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        key = str(err["loc"][0]) if err["loc"] else ""
        full = f"{path}.{loc}" if loc else path
        if err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key {full}"
                         + (f" for {plugin}" if plugin else "") + f"; {suggest(key, list(fields))}")
            continue
        allowed = describe_field(fields[key]) if key in fields else ""
        value = err.get("input")
        shown = "missing" if err["type"] == "missing" else f"= {value!r}"
        lines.append(f"{where}: {full} {shown}: {err['msg']}" + (f"; allowed: {allowed}" if allowed else ""))
    return "\n".join(lines)
