"""Plugin discovery and the registry of plugin classes.

Plugins are found through the ``adpipe.plugins`` entry-point group. Loading is
guarded: a plugin that fails to import is reported and skipped, the rest still
load. Environment switches:

- ``ADPIPE_DISABLE_PLUGIN_AUTOLOAD=1``: load only adpipe's own entry points
  (plus modules named in ``ADPIPE_PLUGINS``).
- ``ADPIPE_PLUGINS=pkg.mod,other.mod``: extra plugin modules to load by name.
- ``ADPIPE_BLOCK_PLUGINS=name,...``: entry-point or distribution names to skip.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Iterable

import pluggy

from adpipe.core import hookspecs
from adpipe.core.errors import ConfigError, PluginConflictError, PluginError
from adpipe.core.plugin import KINDS, NAME_RE, Params, Plugin

GROUP = "adpipe.plugins"
OWN_DIST = "adpipe"


@dataclass(frozen=True)
class PluginInfo:
    cls: type[Plugin]
    kind: str
    name: str
    dist: str
    entry_point: str


@dataclass(frozen=True)
class LoadFailure:
    entry_point: str
    dist: str
    error: str


class PluginLoadWarning(UserWarning):
    """A plugin could not be loaded and was skipped."""


def kind_of(cls: type) -> str:
    for kind, base in KINDS.items():
        if isinstance(cls, type) and issubclass(cls, base) and cls is not base:
            return kind
    bases = ", ".join(f"adpipe.{b.__name__}" for b in KINDS.values())
    raise PluginError(f"{cls!r} is not a plugin class: subclass one of {bases}.")


class Registry:
    """All plugin classes known to this process, by kind and name."""

    def __init__(self) -> None:
        self._plugins: dict[tuple[str, str], PluginInfo] = {}
        self.failures: list[LoadFailure] = []
        self._dist = "<local>"
        self._entry_point = "<local>"
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)

    @property
    def hook(self):
        """Lifecycle hooks of every loaded plugin: ``registry.hook.adpipe_after_run(...)``."""
        return self.pm.hook

    # -- registration -------------------------------------------------
    def add(self, cls: type[Plugin]) -> type[Plugin]:
        """Register a plugin class (called from ``adpipe_register``)."""
        kind = kind_of(cls)
        name = getattr(cls, "name", "")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise PluginError(f"{cls.__qualname__} needs a lower_snake_case `name`, got {name!r}.")
        if not cls.summary():
            raise PluginError(f"{kind} '{name}' ({cls.__qualname__}) needs a docstring: its first line is the summary.")
        params = inspect.getattr_static(cls, "Params")  # a lazily built Params (descriptor) is checked on use
        if isinstance(params, type) and not issubclass(params, Params):
            raise PluginError(f"{kind} '{name}': `Params` must subclass adpipe.Params.")
        old = self._plugins.get((kind, name))
        if old is not None and old.cls is not cls:
            raise PluginConflictError(
                f"Two plugins claim the {kind} name '{name}': {old.cls.__module__}.{old.cls.__qualname__} "
                f"from distribution '{old.dist}' and {cls.__module__}.{cls.__qualname__} from distribution "
                f"'{self._dist}'.",
                hint=f"uninstall one of them, or block one with ADPIPE_BLOCK_PLUGINS={self._entry_point}",
            )
        self._plugins[(kind, name)] = PluginInfo(cls, kind, name, self._dist, self._entry_point)
        return cls

    # -- lookup ---------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(n for k, n in self._plugins if k == kind)

    def infos(self, kind: str | None = None) -> list[PluginInfo]:
        return sorted(
            (i for i in self._plugins.values() if kind is None or i.kind == kind), key=lambda i: (i.kind, i.name)
        )

    def info(self, kind: str, name: str) -> PluginInfo:
        if kind not in KINDS:
            raise ConfigError(f"Unknown plugin kind '{kind}'.", hint=f"kinds are: {', '.join(KINDS)}")
        try:
            return self._plugins[(kind, name)]
        except KeyError:
            raise ConfigError(
                f"No {kind.replace('_', ' ')} plugin named '{name}'.", hint=suggest(name, self.names(kind))
            ) from None

    def get(self, kind: str, name: str) -> type[Plugin]:
        return self.info(kind, name).cls

    def find(self, name: str) -> list[PluginInfo]:
        """Every plugin called ``name``, of any kind."""
        return [i for (k, n), i in self._plugins.items() if n == name]

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._plugins

    def __len__(self) -> int:
        return len(self._plugins)

    # -- loading --------------------------------------------------------
    def register_module(self, obj: object, dist: str = "<local>", entry_point: str = "<local>") -> None:
        """Run ``adpipe_register`` of one plugin module or object."""
        fresh = not self.pm.is_registered(obj)
        if fresh:
            self.pm.register(obj)
        self._dist, self._entry_point = dist, entry_point
        try:
            for impl in self.pm.hook.adpipe_register.get_hookimpls():
                if impl.plugin is obj:
                    impl.function(registry=self)
        except Exception:
            if fresh:  # a plugin that failed to register takes no part in runs
                self.pm.unregister(obj)
            raise
        finally:
            self._dist = self._entry_point = "<local>"


def suggest(word: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    if close:
        return f"did you mean {' or '.join(repr(c) for c in close)}?"
    shown = ", ".join(choices[:25]) + (", ..." if len(choices) > 25 else "")
    return f"choose one of: {shown}" if choices else "none are installed"


def _env_list(var: str) -> list[str]:
    return [x.strip() for x in os.environ.get(var, "").split(",") if x.strip()]


def load_registry(autoload: bool | None = None, blocked: Iterable[str] = ()) -> Registry:
    """Discover plugins through entry points and return a fresh registry."""
    if autoload is None:
        autoload = os.environ.get("ADPIPE_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0", "false", "False")
    blocked = set(blocked) | set(_env_list("ADPIPE_BLOCK_PLUGINS"))
    registry = Registry()
    for ep in entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist else "<unknown>"
        if ep.name in blocked or dist in blocked or (not autoload and dist != OWN_DIST):
            continue
        try:
            registry.register_module(ep.load(), dist=dist, entry_point=ep.name)
        except PluginConflictError:
            raise
        except Exception as exc:  # a broken plugin must not take the host down
            _report(registry, f"{ep.name} = {ep.value}", dist, exc)
    for modname in _env_list("ADPIPE_PLUGINS"):
        try:
            registry.register_module(importlib.import_module(modname), dist="<ADPIPE_PLUGINS>", entry_point=modname)
        except PluginConflictError:
            raise
        except Exception as exc:
            _report(registry, modname, "<ADPIPE_PLUGINS>", exc)
    return registry


def _report(registry: Registry, entry_point: str, dist: str, exc: Exception) -> None:
    failure = LoadFailure(entry_point, dist, f"{type(exc).__name__}: {exc}")
    registry.failures.append(failure)
    warnings.warn(
        f"adpipe plugin '{entry_point}' from distribution '{dist}' failed to load and was skipped: {failure.error}",
        PluginLoadWarning,
        stacklevel=3,
    )


_registry: Registry | None = None


def get_registry(reload: bool = False) -> Registry:
    """The process-wide registry, loaded on first use."""
    global _registry
    if _registry is None or reload:
        _registry = load_registry()
    return _registry
