"""Compose a pipeline config with Hydra and validate every stage by its plugin's Params.

    cfg = load_config("configs/fraud.yaml", ["detector=lof", "threshold.contamination=0.02"])

Config groups (``detector=lof``) are looked up beside the config file first,
then in the groups shipped with adpipe (``adpipe/configs/<kind>/``).
"""

from __future__ import annotations

import difflib
import re
import tempfile
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from adpipe.core.errors import ConfigError
from adpipe.core.plugin import Params, Plugin
from adpipe.core.registry import Registry, get_registry, suggest

PACKAGE_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


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


class FitSpec(_Spec):
    source: Any = Field(None, description="separate training source (default: the pipeline's source)")
    sample_rows: int | None = Field(None, ge=1, description="fit on a random sample of this many rows")
    seed: int = Field(0, description="seed of the training sample")


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


class SummarySpec(_Spec):
    path: Path | None = Field(None, description="where the run summary JSON goes (default: beside the first output)")


SECTIONS: dict[str, type[_Spec]] = {
    "columns": ColumnsSpec,
    "fit": FitSpec,
    "calibration": CalibrationSpec,
    "severity": SeveritySpec,
    "validation": ValidationSpec,
    "engine": EngineSpec,
    "summary": SummarySpec,
}
STAGES = {"source": "source", "detector": "detector", "threshold": "threshold", "reject_sink": "sink"}
STAGE_LISTS = {"preprocess": "preprocessor", "sinks": "sink", "alerts": "alert_channel"}
TOP_KEYS = ["name", *SECTIONS, *STAGES, *STAGE_LISTS]
DEFAULTS = {"threshold": {"type": "contamination"}, "sinks": [], "preprocess": [], "alerts": []}


@dataclass
class PipelineConfig:
    """A composed and validated pipeline config."""

    name: str
    source: StageSpec | None
    preprocess: list[StageSpec]
    detector: StageSpec
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
    path: Path | None = None
    raw: dict | None = None  # the composed config, before validation

    def to_dict(self) -> dict[str, Any]:
        """The composed, validated config with every default filled in."""
        out: dict[str, Any] = {"name": self.name}
        for key in ("columns", "fit", "calibration", "severity", "validation", "engine", "summary"):
            out[key] = getattr(self, key).model_dump(mode="json")
        out["fit"]["source"] = self.fit_source.to_dict() if self.fit_source else None
        for key in ("source", "detector", "threshold", "reject_sink"):
            spec = getattr(self, key)
            out[key] = spec.to_dict() if spec else None
        for key in ("preprocess", "sinks", "alerts"):
            out[key] = [s.to_dict() for s in getattr(self, key)]
        return out


# --------------------------------------------------------------------------- loading
def compose(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Compose ``path`` with Hydra, apply ``overrides`` and resolve interpolations."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = Path(path).expanduser()
    if path.suffix not in (".yaml", ".yml"):
        path = path.with_suffix(".yaml") if not path.exists() else path
    if not path.is_file():
        raise ConfigError(f"Config file not found: {path} (looked in {path.resolve()}).",
                          hint="pass config=PATH to an existing .yaml file")
    path = path.resolve()
    replaced = _stage_swaps(overrides, mappings_only=True)
    if replaced:  # Hydra would merge the new mapping into the old stage's keys
        return _compose_with_swaps(path, overrides, replaced)
    dirs = [path.parent, PACKAGE_CONFIGS]
    try:
        with tempfile.TemporaryDirectory(prefix="adpipe-cfg-") as tmp:
            config_dir, name = path.parent, path.name
            if path.suffix == ".yml":  # Hydra reads .yaml only: point a .yaml link at the file
                config_dir, name = Path(tmp), path.stem + ".yaml"
                (config_dir / name).symlink_to(path)
            search = "hydra.searchpath=[" + ",".join(f"'file://{d}'" for d in dirs) + "]"
            with initialize_config_dir(config_dir=str(config_dir), version_base=None, job_name="adpipe"):
                cfg = hydra_compose(config_name=name, overrides=[*overrides, search])
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except (HydraException, OmegaConfBaseException) as exc:
        text = " ".join(str(exc).split())
        missing_option = re.search(r"Could not find '([^']+)/([^'/]+)' Available options in '[^']+': (.*?) Config", text)
        if missing_option:
            group, option, options = missing_option.groups()
            raise ConfigError(f"{path}: {group}={option}: there is no '{option}' config in the '{group}' group.",
                              hint=suggest(option, options.split())) from None
        bad_key = re.search(r"Could not override '([^']+)'", text)
        swaps = _stage_swaps(overrides)
        if bad_key and bad_key.group(1) in swaps:
            return _compose_with_swaps(path, overrides, swaps)
        if bad_key:
            raise ConfigError(f"{path}: cannot override '{bad_key.group(1)}': the config has no such key.",
                              hint=_key_hint(path, overrides, bad_key.group(1))) from None
        raise ConfigError(f"{path}: {text}", hint=_hydra_hint(exc, path)) from None
    except Exception as exc:  # YAML syntax errors surface as yaml.YAMLError
        raise ConfigError(f"{path}: cannot read the config: {exc}", hint="check the YAML syntax") from None


def _stage_swaps(overrides, mappings_only: bool = False) -> dict[str, str | dict]:
    """Overrides that replace a whole stage: ``detector=lof`` or ``threshold={type: top_k, k: 40}``."""
    import yaml

    out: dict[str, str | dict] = {}
    for o in overrides:
        key, eq, value = o.partition("=")
        if not eq or key not in STAGES:
            continue
        if re.fullmatch(r"[a-z][a-z0-9_]*", value) and not mappings_only:
            out[key] = value
        elif value.lstrip().startswith("{"):
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                continue
            if isinstance(parsed, dict) and "type" in parsed:
                out[key] = parsed
    return out


def _compose_with_swaps(path: Path, overrides, swaps: dict[str, str | dict]) -> dict:
    """Replace stages written inline in the config, as Hydra does for stages picked from the defaults list.

    The new stage is the group's option file (``detector/lof.yaml`` beside the config or shipped with
    adpipe) or just ``{type: lof}``; overrides of its keys (``detector.n_neighbors=35``) apply on top.
    """
    import yaml

    def stage_of(o: str) -> str:
        return o.lstrip("+~").partition("=")[0].split(".")[0]

    raw = compose(path, [o for o in overrides if stage_of(o) not in swaps])
    for key, name in swaps.items():
        if isinstance(name, dict):  # a whole new stage: nothing merges into it
            raw[key] = name
            continue
        option = next((d / key / f"{name}.yaml" for d in (path.parent, PACKAGE_CONFIGS)
                       if (d / key / f"{name}.yaml").is_file()), None)
        raw[key] = (yaml.safe_load(option.read_text()) or {}) if option else {"type": name}
    for o in overrides:
        dotted, _, value = o.lstrip("+~").partition("=")
        if stage_of(o) in swaps and "." in dotted:
            *parents, leaf = dotted.split(".")
            node = raw
            for part in parents:
                node = node.setdefault(part, {})
            if o.startswith("~"):
                node.pop(leaf, None)
            else:
                node[leaf] = yaml.safe_load(value)
    return raw


def _key_hint(path: Path, overrides, key: str) -> str:
    """Did-you-mean for an override of a key that does not exist (looks at the plugin's Params too)."""
    rest = [o for o in overrides if not o.lstrip("~+").startswith(key + "=")]
    parent, _, leaf = key.rpartition(".")
    add = f"to add it anyway: +{key}=..."
    try:
        node = compose(path, rest)
        for part in filter(None, parent.split(".")):
            node = node[int(part)] if isinstance(node, list) else node[part]
    except (ConfigError, KeyError, IndexError, ValueError, TypeError):
        return add
    keys = list(node) if isinstance(node, dict) else []
    if isinstance(node, dict) and isinstance(node.get("type"), str):
        kind = STAGES.get(parent) or STAGE_LISTS.get(parent.split(".")[0]) or ""
        if (kind, node["type"]) in get_registry():
            keys += [f.alias or n for n, f in get_registry().get(kind, node["type"]).Params.model_fields.items()]
    close = difflib.get_close_matches(leaf, sorted(set(keys)), n=3, cutoff=0.6)
    if close:
        return f"did you mean {' or '.join(repr(f'{parent}.{c}' if parent else c) for c in close)}? ({add})"
    return add


def _hydra_hint(exc: Exception, path: Path) -> str:
    text = str(exc)
    if "Could not find" in text or "In 'defaults'" in text:
        groups = [p.name for p in PACKAGE_CONFIGS.iterdir() if p.is_dir()] if PACKAGE_CONFIGS.is_dir() else []
        return f"config groups live in {path.parent}/<group>/ and adpipe's own groups: {', '.join(sorted(groups))}"
    if "oc.env" in text or "environment variable" in text.lower():
        return "export the environment variable, or give a default: ${oc.env:VAR,default}"
    if "Could not override" in text:
        return "to add a key that is not in the config, prefix it with '+': +key=value"
    return "see the Hydra override grammar: key=value, +key=value, ~key, group=option"


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    data: dict | None = None,
    base_dir: Path | None = None,
    registry: Registry | None = None,
) -> PipelineConfig:
    """Compose (from ``path``) or take (``data``) a config and validate it."""
    if data is None:
        if path is None:
            raise ConfigError("No config given.", hint="pass config=PATH")
        raw = compose(path, overrides)
        file = Path(path).expanduser().resolve()
        base = file.parent
        default_name = file.stem
    else:
        raw, file, base, default_name = dict(data), None, (base_dir or Path.cwd()), "pipeline"
    return validate(raw, base_dir=base, file=file, default_name=default_name, registry=registry)


def validate(raw: dict, *, base_dir: Path, file: Path | None, default_name: str,
             registry: Registry | None = None) -> PipelineConfig:
    registry = registry or get_registry()
    where = str(file) if file else "config"
    unknown = [k for k in raw if k not in TOP_KEYS and k != "hydra"]
    if unknown:
        key = unknown[0]
        raise ConfigError(f"{where}: unknown top-level key '{key}'.", hint=suggest(key, TOP_KEYS))
    v = _Validator(registry, base_dir, where)
    raw = {**DEFAULTS, **{k: x for k, x in raw.items() if x is not None}}
    if "detector" not in raw:
        raise ConfigError(f"{where}: no detector configured.", hint="add `detector: {type: iforest}` or detector=iforest")
    sections = {k: v.section(k, cls, raw.get(k) or {}) for k, cls in SECTIONS.items()}
    fit: FitSpec = sections["fit"]  # type: ignore[assignment]
    name = raw.get("name") or default_name
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: name must be a non-empty string, got {name!r}.")
    return PipelineConfig(
        name=name,
        source=v.stage("source", "source", raw["source"]) if raw.get("source") else None,
        preprocess=v.stage_list("preprocess", "preprocessor", raw["preprocess"]),
        detector=v.stage("detector", "detector", raw["detector"]),
        threshold=v.stage("threshold", "threshold", raw["threshold"]),
        sinks=v.stage_list("sinks", "sink", raw["sinks"]),
        reject_sink=v.stage("reject_sink", "sink", raw["reject_sink"]) if raw.get("reject_sink") else None,
        alerts=v.stage_list("alerts", "alert_channel", raw["alerts"]),
        fit_source=v.stage("fit.source", "source", fit.source) if fit.source else None,
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
            spec = cls(**_resolve_paths(cls, value, self.base_dir))
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
            params = cls.Params(**_resolve_paths(cls.Params, value, self.base_dir))
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


def _resolve_paths(model: type[BaseModel], values: dict, base_dir: Path) -> dict:
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
