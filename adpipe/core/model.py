"""Saving and loading fitted pipelines: metadata, version checks, trust, and model references.

    model = Pipeline.from_config("configs/fraud.yaml").fit()
    model.save("fraud.adpipe")                      # a file (see adpipe.core.modelfile for the format)
    ModelStore().add(model)                         # or a new version in the store -> fraud@1
    model = adpipe.load_model("fraud@production")   # a path, name[@version|@stage] or models:/name/N
    model.score(df)

Version policy on load: a model made by a newer adpipe, or with another *major* version of numpy,
pandas, scikit-learn, scipy or PyOD, is refused (:class:`ModelCompatibilityError`); other version
differences give a :class:`ModelCompatibilityWarning` (``strict_versions=True`` refuses them too).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import pickle
import platform
import warnings
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adpipe.core import modelfile
from adpipe.core.config import FitSpec
from adpipe.core.errors import ModelCompatibilityError, ModelCompatibilityWarning, ModelError, ModelIntegrityError
from adpipe.core.secrets import mask

if TYPE_CHECKING:
    from adpipe.core.engine import FittedPipeline
    from adpipe.core.store import ModelStore

LIBRARIES = ("numpy", "pandas", "scikit-learn", "scipy", "pyod")
MODEL_STAGES = ("preprocess", "detector", "threshold")


@functools.lru_cache(maxsize=None)  # installed versions do not change while the process runs
def installed_version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def model_config(config):
    """The part of a pipeline config that a model keeps: no source, sinks, alerts or local paths."""
    return dataclasses.replace(config, source=None, sinks=[], reject_sink=None, alerts=[], fit_source=None,
                               raw=None, path=None, base_dir=Path("."),
                               fit=FitSpec(**{**config.fit.model_dump(), "source": None}))


def _plugins(config) -> list[dict[str, Any]]:
    dists = packages_distributions()
    out = []
    for stage in [*config.preprocess, config.detector, config.threshold]:
        top = stage.cls.__module__.split(".")[0]
        dist = (dists.get(top) or [top])[0]
        out.append({"stage": stage.where, "kind": stage.kind, "type": stage.type,
                    "class": f"{stage.cls.__module__}.{stage.cls.__qualname__}",
                    "distribution": dist, "version": installed_version(dist)})
    return out


def dumps(model: "FittedPipeline") -> tuple[dict[str, Any], bytes]:
    """(metadata, payload) of a fitted pipeline."""
    payload = pickle.dumps(model, protocol=5)
    cfg = model.config
    metadata = {
        "name": cfg.name,
        "model_version": model.model_version,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "adpipe_version": installed_version("adpipe"),
        "python": platform.python_version(),
        "libraries": {lib: installed_version(lib) for lib in LIBRARIES},
        "plugins": _plugins(cfg),
        "config": mask(cfg.to_dict()),  # as composed, sources and sinks included (secrets masked)
        "features": model.schema.to_dict() if model.schema else None,
        "training": model.training,
        "validation": model.validation,
        "payload": {"sha256": hashlib.sha256(payload).hexdigest(), "bytes": len(payload), "encoding": "pickle-5"},
    }
    return metadata, payload


def save(model: "FittedPipeline", path: str | Path, *, sign: bool = True) -> Path:
    metadata, payload = dumps(model)
    path = modelfile.write(path, metadata, payload, sign=sign)
    model.metadata = metadata
    return path


def load(path: str | Path, *, trusted: bool = False, strict_versions: bool = False,
         expect_sha256: str | None = None) -> "FittedPipeline":
    """Load a model file: integrity, trust, versions and plugins are checked before anything is unpickled.

    ``expect_sha256``: the payload must have this SHA-256 (a file another process already checked and
    trusted, e.g. the Spark driver for its executors).
    """
    from adpipe.core.engine import FittedPipeline

    mf = modelfile.read(path, trusted=trusted)
    if expect_sha256 is not None and hashlib.sha256(mf.payload).hexdigest() != expect_sha256:
        raise ModelIntegrityError(f"{mf.path} is not the model file that was checked: its content changed.",
                                  hint="do not replace a model file while a job uses it")
    meta = mf.metadata
    check_versions(meta, mf.path, strict=strict_versions)
    _check_plugins(meta, mf.path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's own version warnings: check_versions covered them
        try:
            model = _Unpickler(io.BytesIO(mf.payload)).load()
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"{mf.path} could not be loaded: {type(exc).__name__}: {exc}",
                             hint="the libraries installed here may not match those it was made with (`adpipe "
                                  "models show` lists them)") from None
    if not isinstance(model, FittedPipeline):
        raise ModelError(f"{mf.path} does not hold an adpipe pipeline (it holds {type(model).__name__}).")
    model.metadata = meta
    return model


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError) as exc:
            raise ModelError(f"The model needs {module}.{name}, which this installation does not have ({exc}).",
                             hint="install the plugin package and library versions it was made with") from None


def _newer(a: str, b: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(a) > Version(b)
    except InvalidVersion:
        return False


def version_differences(meta: dict[str, Any], strict: bool = False) -> tuple[list[str], list[str]]:
    """(refused, tolerated) differences between the versions a model was made with and those installed.

    Refused: a newer adpipe, a missing library, another major version (``strict``: another major.minor).
    """
    refused, tolerated = [], []
    made, here = meta.get("adpipe_version"), installed_version("adpipe")
    if made and here and _newer(made, here):
        refused.append(f"adpipe {made} made it, this is adpipe {here}")
    depth = 2 if strict else 1
    for lib, then in (meta.get("libraries") or {}).items():
        now = installed_version(lib)
        if then is None or then == now:
            continue
        text = f"{lib} {then} when saved, {now or 'not installed'} here"
        same = now is not None and then.split(".")[:depth] == now.split(".")[:depth]
        (tolerated if same else refused).append(text)
    return refused, tolerated


def check_versions(meta: dict[str, Any], where: Path | str, strict: bool = False) -> None:
    refused, tolerated = version_differences(meta, strict)
    if refused:
        made = meta.get("adpipe_version")
        upgrade = f"upgrade adpipe to {made} or later, or " if refused[0].startswith("adpipe ") else ""
        raise ModelCompatibilityError(f"{where} cannot be loaded with the versions installed here: "
                                      + "; ".join(refused) + ".",
                                      hint=upgrade + "install the versions it was made with (`adpipe models "
                                                     "show` lists them), or fit the model again here")
    if tolerated:
        warnings.warn(f"{where} was made with other library versions ({'; '.join(tolerated)}); it loads, but "
                      "scores may differ slightly. Fit it again here to be sure.", ModelCompatibilityWarning,
                      stacklevel=3)


def _check_plugins(meta: dict[str, Any], where: Path) -> None:
    from adpipe.core.registry import get_registry

    reg = get_registry()
    missing = [p for p in meta.get("plugins", []) if (p["kind"], p["type"]) not in reg]
    if missing:
        names = ", ".join(f"{p['kind']} '{p['type']}' (from {p['distribution']})" for p in missing)
        raise ModelError(f"{where} needs plugins that are not installed: {names}.",
                         hint="install the packages that provide them (`adpipe plugins list` shows what is here)")


# --------------------------------------------------------------------------- references
def is_path_ref(ref: str) -> bool:
    return ref.endswith(modelfile.SUFFIX) or "/" in ref or "\\" in ref or Path(ref).exists()


def load_model(ref: str | Path, *, store: "ModelStore | str | Path | None" = None, trusted: bool = False,
               strict_versions: bool = False) -> "FittedPipeline":
    """Load a model by reference: a file path, ``name``, ``name@3``, ``name@production``, ``name@latest``,
    or an MLflow registry URI ``models:/name/3``."""
    ref = str(ref)
    if ref.startswith("models:/") or ref.startswith("runs:/"):
        from adpipe.integrations.mlflow import load_model as load_mlflow

        return load_mlflow(ref, trusted=trusted, strict_versions=strict_versions)
    if is_path_ref(ref):
        return load(ref, trusted=trusted, strict_versions=strict_versions)
    from adpipe.core.store import ModelStore

    store = store if isinstance(store, ModelStore) else ModelStore(store)
    found = store.resolve(ref)
    model = load(found.path, trusted=trusted, strict_versions=strict_versions)
    model.model_version = f"{found.name}@{found.version}"
    return model
