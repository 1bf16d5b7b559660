"""The search space of ``adpipe tune``: ``tune.space`` parsed into parameters, checked against the config.

>>> [p.grid() for p in parse_space({"detector.n_neighbors": [5, 10], "threshold.contamination": {"low": 0.1,
...                                 "high": 0.3, "step": 0.1}}, "grid")]
[[5, 10], [0.1, 0.2, 0.3]]
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from typing import Any

from adpipe.core.compose import STAGE_LISTS, STAGES
from adpipe.core.config import SECTIONS, PipelineConfig, validate
from adpipe.core.errors import ConfigError
from adpipe.core.registry import Registry, get_registry, suggest

RANGE_KEYS = ("low", "high", "log", "step")
MAX_GRID = 100_000
RANGE_HINT = "a list of values [5, 10, 20], or a range {low: 1, high: 50} with optional log: true or step: 5"


@dataclass
class Param:
    """One searched config key: a list of values, or an int/float range."""

    key: str
    choices: list[Any] | None = None  # categorical
    low: float = 0
    high: float = 0
    log: bool = False
    step: float | None = None
    integer: bool = False

    def grid(self) -> list[Any]:
        """The values a grid search tries."""
        if self.choices is not None:
            return list(self.choices)
        if self.integer:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        n = int(math.floor((self.high - self.low) / self.step + 1e-9))
        return [round(self.low + i * self.step, 12) for i in range(n + 1)]

    def ends(self) -> list[Any]:
        """Values checked against the config's validation before any trial runs."""
        if self.choices is not None:
            return list(self.choices)
        return [self.low, self.high]

    def to_dict(self) -> Any:
        if self.choices is not None:
            return list(self.choices)
        out = {"low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.step is not None:
            out["step"] = self.step
        return out


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_range(key: str, spec: Any) -> Param:
    """``tune.space[key]`` -> :class:`Param`; a malformed spec raises :class:`ConfigError`."""
    where = f"tune.space.{key}"
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ConfigError(f"{where}: the list of values is empty.", hint=RANGE_HINT)
        seen = [json.dumps(v, sort_keys=True, default=str) for v in spec]
        if len(set(seen)) < len(seen):
            dup = next(v for v in spec if seen.count(json.dumps(v, sort_keys=True, default=str)) > 1)
            raise ConfigError(f"{where}: the value {dup!r} is listed twice.", hint="list each value once")
        return Param(key, choices=list(spec))
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} = {spec!r}: not a list of values or a range.", hint=RANGE_HINT)
    unknown = [k for k in spec if k not in RANGE_KEYS]
    if unknown:
        raise ConfigError(f"{where}: unknown range key '{unknown[0]}'.", hint=suggest(str(unknown[0]), RANGE_KEYS))
    for name in ("low", "high"):
        if name not in spec:
            raise ConfigError(f"{where}: the range has no `{name}`.", hint=RANGE_HINT)
        if not _number(spec[name]):
            raise ConfigError(f"{where}: {name} = {spec[name]!r} is not a number.", hint=RANGE_HINT)
    low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log = {log!r} must be true or false.", hint="log: true samples on a log scale")
    if not low < high:
        raise ConfigError(f"{where}: low = {low!r} must be below high = {high!r}.",
                          hint="for a single value, leave the key out of tune.space and set it in the config")
    if step is not None and (not _number(step) or step <= 0):
        raise ConfigError(f"{where}: step = {step!r} must be a positive number.", hint="e.g. step: 5")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0 (got {low!r}).", hint="raise low, or drop log: true")
    integer = isinstance(low, int) and isinstance(high, int) and (step is None or isinstance(step, int))
    if log and step is not None and not (integer and step == 1):
        raise ConfigError(f"{where}: log and step cannot be combined.", hint="drop one of them")
    if step is not None:  # the last value on the step grid
        high = round(low + math.floor((high - low) / step + 1e-9) * step, 12)
        high = int(high) if integer else high
        if high <= low:
            raise ConfigError(f"{where}: step = {step!r} is wider than the range {spec['low']!r}..{spec['high']!r}.",
                              hint="use a smaller step")
    return Param(key, low=low, high=high, log=log, step=step, integer=integer)


def flatten(space: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{detector: {n_neighbors: [5, 10]}}`` -> ``{"detector.n_neighbors": [5, 10]}`` (ranges stay whole)."""
    out: dict[str, Any] = {}
    for key, spec in space.items():
        full = f"{prefix}{key}"
        nested = isinstance(spec, dict) and spec and not any(k in RANGE_KEYS for k in spec)
        for k, v in (flatten(spec, full + ".") if nested else {full: spec}).items():
            if k in out:
                raise ConfigError(f"tune.space: '{k}' is given twice (once nested, once as a dotted key).",
                                  hint="keep one of them")
            out[k] = v
    return out


def parse_space(space: dict[str, Any], method: str = "bayes") -> list[Param]:
    """Every entry of ``tune.space`` (dotted or nested keys) parsed; a grid needs lists or stepped/int ranges."""
    params = [parse_range(key, spec) for key, spec in flatten(space).items()]
    if method == "grid":
        for p in params:
            if p.choices is None and not p.integer and p.step is None:
                raise ConfigError(f"tune.space.{p.key}: a grid search cannot enumerate the continuous range "
                                  f"{p.low}..{p.high}.",
                                  hint="add a step (e.g. step: 0.05), list the values, or use method: random/bayes")
        size = math.prod(len(p.grid()) for p in params)
        if size > MAX_GRID:
            raise ConfigError(f"tune.space: the grid has {size:,} combinations (at most {MAX_GRID:,}).",
                              hint="list fewer values or widen the steps, or use method: random or bayes")
    return params


# --------------------------------------------------------------------------- config keys
def _fields(model) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def config_keys(cfg: PipelineConfig, params: list[Param], registry: Registry) -> list[str]:
    """Every dotted key ``tune.space`` may search in this config."""
    types = {p.key.rsplit(".", 1)[0]: p.choices for p in params if p.key.endswith(".type") and p.choices}

    def stage_keys(prefix: str, kind: str, spec) -> list[str]:
        classes = [spec.cls] if spec is not None else []
        classes += [registry.get(kind, t) for t in types.get(prefix, []) if (kind, t) in registry]
        return [f"{prefix}.type"] + [f"{prefix}.{name}" for cls in classes for name in _fields(cls.Params)]

    keys: list[str] = []
    for key, kind in STAGES.items():
        spec = getattr(cfg, key, None)
        if spec is not None or key in types:
            keys += stage_keys(key, kind, spec)
    for key, kind in STAGE_LISTS.items():
        for i, spec in enumerate(getattr(cfg, key)):
            keys += stage_keys(f"{key}.{i}", kind, spec)
    for section, model in SECTIONS.items():
        if section == "tune":
            continue
        for name, f in model.model_fields.items():
            sub = f.annotation if isinstance(f.annotation, type) and hasattr(f.annotation, "model_fields") else None
            keys += [f"{section}.{name}.{s}" for s in _fields(sub)] if sub else [f"{section}.{f.alias or name}"]
    return list(dict.fromkeys(keys))


def apply(raw: dict, values: dict[str, Any]) -> dict:
    """A copy of the composed config ``raw`` with dotted keys set (a stage whose type is set starts afresh)."""
    out = copy.deepcopy(raw)
    out.pop("hydra", None)
    for key, value in sorted(values.items(), key=lambda kv: not kv[0].endswith(".type")):
        parts = key.split(".")
        if parts[0] in STAGE_LISTS and not isinstance(out.get(parts[0]), list):
            out[parts[0]] = [out[parts[0]]] if out.get(parts[0]) else []
        node: Any = out
        for depth, part in enumerate(parts[:-1]):
            holder, slot = node, (int(part) if isinstance(node, list) else part)
            child = holder[slot] if isinstance(holder, list) else holder.get(slot)
            if isinstance(child, str) and depth <= 1:  # a stage named by its type only
                child = {"type": child}
            if child is None:
                child = {}
            holder[slot] = child
            node = child
        if parts[-1] == "type" and node.get("type") != value:
            node.clear()
        node[parts[-1]] = value
    return out


def _validate(cfg: PipelineConfig, raw: dict, registry: Registry) -> PipelineConfig:
    return validate(raw, base_dir=cfg.base_dir, file=cfg.path, default_name=cfg.name, registry=registry)


def check_space(cfg: PipelineConfig, registry: Registry | None = None) -> list[Param]:
    """Parse ``cfg.tune.space`` and check every key and range end against the config's own validation."""
    registry = registry or get_registry()
    spec = cfg.tune
    if not spec.space:
        raise ConfigError("tune.space is empty: there is nothing to search.",
                          hint="add ranges, e.g. tune: {space: {detector.n_estimators: [50, 100, 200]}}")
    if cfg.raw is None:
        raise ConfigError("Tuning needs a config as composed from its file or dict (config.raw is missing).",
                          hint="load it with load_config(path) or load_config(data=...)")
    params = parse_space(spec.space, spec.method)
    keys = config_keys(cfg, params, registry)
    for p in params:
        if p.key not in keys:
            raise ConfigError(f"tune.space: '{p.key}' is not a key of this config.",
                              hint=f"{suggest(p.key, keys)} (dotted paths such as detector.n_estimators; "
                                   "`adpipe plugins show TYPE` lists a stage's parameters)")
    types = {p.key: p.choices for p in params if p.key.endswith(".type") and p.choices}
    for p in params:
        stage_type = f"{p.key.rsplit('.', 1)[0]}.type"
        # a parameter of a stage whose type is searched too must suit one of those types
        contexts = [{stage_type: t} for t in types[stage_type]] if stage_type in types and p.key != stage_type \
            else [{}]
        for value in p.ends():
            errors = []
            for context in contexts:
                try:
                    _validate(cfg, apply(cfg.raw, {**context, p.key: value}), registry)
                    break
                except ConfigError as exc:
                    errors.append(exc)
            if len(errors) == len(contexts):
                raise ConfigError(f"tune.space.{p.key}: the value {value!r} is not allowed:\n{errors[0].message}",
                                  hint="keep the list or range within what the parameter allows (`adpipe plugins "
                                       f"show {_stage_type(cfg, p.key)}` lists the ranges)")
    return params


def _stage_type(cfg: PipelineConfig, key: str) -> str:
    """The plugin type of the stage a dotted key points into (TYPE when it is not a stage)."""
    parts = key.split(".")
    spec = getattr(cfg, parts[0], None) if parts[0] in STAGES else None
    if parts[0] in STAGE_LISTS and len(parts) > 2 and parts[1].isdigit():
        specs = getattr(cfg, parts[0])
        spec = specs[int(parts[1])] if int(parts[1]) < len(specs) else None
    return spec.type if spec is not None else "TYPE"
