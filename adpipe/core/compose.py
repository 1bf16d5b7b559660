"""Compose a config file with Hydra: overrides, config groups, interpolation, readable errors.

Config groups (``detector=lof``) are looked up beside the config file first,
then in the groups shipped with adpipe (``adpipe/configs/<kind>/``). A stage
written inline can be swapped the same way (``detector=lof``), and a mapping
override (``threshold={type: top_k, k: 40}``) replaces the whole stage
instead of merging into it.
"""

from __future__ import annotations

import difflib
import re
import tempfile
from pathlib import Path

from adpipe.core.errors import ConfigError
from adpipe.core.registry import get_registry, suggest

PACKAGE_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
#: stage keys that hold one stage / a list of stages, and their plugin kinds
STAGES = {"source": "source", "detector": "detector", "threshold": "threshold", "reject_sink": "sink"}
STAGE_LISTS = {"preprocess": "preprocessor", "sinks": "sink", "alerts": "alert_channel"}


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
    return "see the Hydra override grammar: key=value, +key=value, ~key, group=option"
