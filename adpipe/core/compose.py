"""Compose a config file with Hydra: overrides, config groups, interpolation, readable errors.

Config groups (``detector=lof``) are looked up beside the config file first,
then in the groups shipped with adpipe (``adpipe/configs/<kind>/``). A stage
written inline can be swapped the same way (``detector=lof``), and a mapping
override (``threshold={type: top_k, k: 40}``) replaces the whole stage
instead of merging into it.

Environment files and precedence (lowest first; docs/configuration.md)::

    plugin Params defaults < config file (and its defaults list) < env file
        < ADPIPE_OVERRIDES < command-line overrides

``env=prod`` among the overrides (or ``ADPIPE_ENV=prod``) merges
``<config's folder>/env/prod.yaml`` over the config: Hydra adds it to the
defaults list as ``+env@_global_=prod``, after the config's ``_self_``. It is a
partial config and may pick group options (``defaults: [override /detector: lof]``).
``ADPIPE_OVERRIDES`` holds more Hydra overrides, split like a shell would split them.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

from adpipe.core.errors import ConfigError
from adpipe.core.registry import get_registry, suggest

PACKAGE_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
#: stage keys that hold one stage / a list of stages, and their plugin kinds
STAGES = {"source": "source", "detector": "detector", "threshold": "threshold", "reject_sink": "sink"}
STAGE_LISTS = {"preprocess": "preprocessor", "sinks": "sink", "alerts": "alert_channel"}


ENV_VAR = "ADPIPE_ENV"
OVERRIDES_VAR = "ADPIPE_OVERRIDES"
COMMAND_LINE = "command line"


@dataclass(frozen=True)
class Layers:
    """The overrides of one composition by where they come from, lowest precedence first."""

    env_file: Path | None  # <config's folder>/env/<name>.yaml
    environ: tuple[str, ...]  # from ADPIPE_OVERRIDES
    cli: tuple[str, ...]  # the caller's overrides, without env=

    @property
    def env(self) -> list[str]:
        return [f"+env@_global_={self.env_file.stem}"] if self.env_file else []

    def overrides(self) -> list[str]:
        return [*self.env, *self.environ, *self.cli]


def config_file(path: str | Path) -> Path:
    """The config file ``path`` names (``.yaml`` may be left out), resolved; ConfigError if missing."""
    path = Path(path).expanduser()
    if path.suffix not in (".yaml", ".yml"):
        path = path.with_suffix(".yaml") if not path.exists() else path
    if not path.is_file():
        raise ConfigError(f"Config file not found: {path} (looked in {path.resolve()}).",
                          hint="pass config=PATH to an existing .yaml file")
    return path.resolve()


def layers(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Layers:
    """Split ``overrides`` into the env choice (``env=NAME``, else ``$ADPIPE_ENV``), ``$ADPIPE_OVERRIDES``
    and the rest. ``env=`` with no name turns a ``$ADPIPE_ENV`` off."""
    path = config_file(path)
    name, cli = None, []
    for o in overrides:
        key, eq, value = o.partition("=")
        if eq and key.strip() == "env":
            name = value.strip()
        else:
            cli.append(o)
    if name is None:
        name = os.environ.get(ENV_VAR, "").strip()
    try:
        environ = tuple(shlex.split(os.environ.get(OVERRIDES_VAR, "")))
    except ValueError as exc:
        raise ConfigError(f"{OVERRIDES_VAR} cannot be split into overrides: {exc}.",
                          hint=f"quote as in a shell: {OVERRIDES_VAR}=\"threshold.contamination=0.01 "
                               f"'sinks=[{{type: csv, path: out.csv}}]'\"") from None
    return Layers(env_file(path, name) if name else None, environ, tuple(cli))


def env_names(path: Path) -> list[str]:
    """The env files available to the config at ``path``."""
    folder = Path(path).parent / "env"
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def env_file(path: Path, name: str) -> Path:
    """``<config's folder>/env/<name>.yaml``, checked to be a readable YAML mapping."""
    import yaml

    folder = path.parent / "env"
    file = folder / f"{name}.yaml"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not file.is_file():
        available = env_names(path)
        raise ConfigError(f"{path}: unknown env '{name}': there is no {file}.",
                          hint=(f"available envs: {', '.join(available)}" if available
                                else f"create {folder}/{name}.yaml (a partial config merged over the config)"))
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: cannot read the env file: {' '.join(str(exc).split())}",
                          hint="check the YAML syntax") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{file}: an env file must be a mapping of config keys, got {type(data).__name__}.",
                          hint="e.g. threshold: {contamination: 0.01}")
    return file


def compose(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Compose ``path`` with Hydra, merge the env file, apply ``$ADPIPE_OVERRIDES`` then ``overrides``, and
    resolve interpolations."""
    path = config_file(path)
    return _compose(path, layers(path, overrides).overrides())


def sources(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """Which layer set each value of the composed config: dotted key -> the config file, the env file,
    ``ADPIPE_OVERRIDES`` or ``command line`` (lists count as one value: Hydra replaces them whole)."""
    path = config_file(path)
    lay = layers(path, overrides)
    steps = [(str(path), [])]
    if lay.env_file:
        steps.append((str(lay.env_file), lay.env))
    if lay.environ:
        steps.append((OVERRIDES_VAR, [*lay.env, *lay.environ]))
    if lay.cli:
        steps.append((COMMAND_LINE, lay.overrides()))
    out: dict[str, str] = {}
    before: dict = {}
    for label, step in steps:
        now = flatten(_compose(path, step))
        out.update({k: label for k, v in now.items() if k not in before or before[k] != v})
        before = now
    return {k: out[k] for k in before}


def flatten(data: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and empty mappings are values."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _compose(path: Path, overrides: list[str] | tuple[str, ...]) -> dict:
    """Compose the config file ``path`` with exactly these Hydra overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

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
        missing_option = re.search(r"Could not find '([^']+)/([^'/]+)' Available options in '[^']+': (.*?) Config",
                                   text)
        if missing_option:
            group, option, options = missing_option.groups()
            raise ConfigError(f"{path}: {group}={option}: there is no '{option}' config in the '{group}' group.",
                              hint=suggest(option, options.split())) from None
        unset = re.search(r"Environment variable '([^']+)' not found.*?full_key: (\S+)", text)
        if unset:
            envs = [o.rpartition("=")[2] for o in overrides if o.startswith("+env@_global_=")]
            where = f"{path}" + "".join(f" or {path.parent / 'env' / e}.yaml" for e in envs)
            raise ConfigError(f"{where}: {unset.group(2)} needs the environment variable {unset.group(1)}, "
                              "which is not set.", hint=f"export {unset.group(1)}=..., or give a default: "
                              f"${{oc.env:{unset.group(1)},default}}") from None
        in_env = re.search(r"In '(env/[^']+)': (.*)", text)
        if in_env:
            raise ConfigError(f"{path.parent / in_env.group(1)}.yaml: {in_env.group(2)}",
                              hint="`override /GROUP: OPTION` in an env file needs the config to pick GROUP in "
                                   "its defaults list (e.g. `- detector: iforest`)") from None
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

    raw = _compose(path, [o for o in overrides if stage_of(o) not in swaps])
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
        node = _compose(path, rest)
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
