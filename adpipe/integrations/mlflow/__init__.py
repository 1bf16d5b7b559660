"""MLflow model registry integration: adpipe models as MLflow pyfunc models.

    from adpipe.integrations.mlflow import log_model, load_model
    info = log_model(model, registered_model_name="fraud")       # inside the active run, or a new one
    mlflow.pyfunc.load_model("models:/fraud/1").predict(df)       # scores like model.score(df)
    model = load_model("models:/fraud/1")                         # the FittedPipeline back
    # or adpipe.load_model("models:/fraud@champion"), adpipe score model=models:/fraud/1 config=...

The logged artifact is the signed ``.adpipe`` file itself, so the trust policy of
:mod:`adpipe.core.modelfile` still applies when a registry model is loaded. MLflow is imported on first
use only (install it with ``pip install 'adpipe[mlflow]'``).
"""

from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adpipe.core import modelfile
from adpipe.core.errors import ModelError, ModelNotFoundError
from adpipe.core.secrets import mask

if TYPE_CHECKING:
    from adpipe.core.engine import FittedPipeline
    from adpipe.core.store import ModelStore

__all__ = ["load_model", "log_model", "log_model_ref", "signature"]

NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


def _mlflow():
    """Import mlflow, or raise PluginError with the install hint."""
    from adpipe.integrations.mlflow.plugin import MlflowRegistry

    MlflowRegistry.check_requirements()
    import mlflow

    return mlflow


@contextlib.contextmanager
def _tracking(uri: str | None):
    """Use ``uri`` as the tracking URI inside the block (no change when None)."""
    if not uri:
        yield
        return
    mlflow = _mlflow()
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


@contextlib.contextmanager
def _errors(uri: str, doing: str = "provide"):
    """Turn MLflow's exceptions into typed adpipe errors."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        import mlflow

        where = f"(now {mask(mlflow.get_tracking_uri())})"
        text = exc.message.lower()
        if getattr(exc, "error_code", None) in NOT_FOUND or "not found" in text or text.startswith("no versions"):
            raise ModelNotFoundError(f"MLflow has no model at {uri}: {exc.message}",
                                     hint=f"check the name, version or alias and MLFLOW_TRACKING_URI {where}") from None
        raise ModelError(f"MLflow could not {doing} {uri}: {exc.message}",
                         hint=f"check MLFLOW_TRACKING_URI {where} and the registry") from None
    except OSError as exc:
        raise ModelError(f"MLflow could not {doing} {uri}: {type(exc).__name__}: {exc}",
                         hint="check that the tracking server and artifact store are reachable") from None


# --------------------------------------------------------------------------- signature
def _type(dtype: str) -> str | None:
    """The MLflow column type for a pandas dtype name (None: MLflow has none)."""
    d = dtype.lower()
    if d.startswith(("int", "uint")):
        return "long"
    if d.startswith("float"):
        return "double"
    if d.startswith("bool"):
        return "boolean"
    if d.startswith("datetime64"):
        return "datetime"
    if d in ("object", "str", "string", "category") or d.startswith("string"):
        return "string"
    return None


def signature(metadata: dict[str, Any]):
    """An MLflow ``ModelSignature`` from a model's metadata: inputs are its id and feature columns (types
    from the training dtypes), outputs the result columns. None when a column has no MLflow type."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from adpipe.core import schema as out

    feats = metadata.get("features")
    if not feats:
        return None
    dtypes = {c["name"]: c["dtype"] for c in feats["columns"]}
    wanted = set(feats["features"]) | set(feats["id_columns"])
    inputs = [(name, _type(dtypes[name])) for name in dtypes if name in wanted]
    if len(inputs) != len(wanted) or any(t is None for _, t in inputs):
        return None  # without a signature MLflow passes the input through unchecked
    ids = [(name, t) for name, t in inputs if name in feats["id_columns"]]
    outputs = [*ids, (out.SCORE, "double"), (out.PROBABILITY, "double"), (out.LABEL, "integer"),
               (out.SEVERITY, "string"), (out.MODEL_VERSION, "string"), (out.RUN_ID, "string")]
    return ModelSignature(inputs=Schema([ColSpec(t, n) for n, t in inputs]),
                          outputs=Schema([ColSpec(t, n) for n, t in outputs]))


def _describe(meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float], dict[str, str]]:
    """(params, metrics, tags) worth logging for a model."""
    cfg = meta.get("config") or {}
    params = {
        "adpipe.name": meta.get("name"),
        "adpipe.model_version": meta.get("model_version"),
        "adpipe.detector": (cfg.get("detector") or {}).get("type"),
        "adpipe.threshold": (cfg.get("threshold") or {}).get("type"),
        "adpipe.preprocess": ",".join(p.get("type", "?") for p in cfg.get("preprocess") or []) or None,
        "adpipe.features": len((meta.get("features") or {}).get("features") or []) or None,
        "adpipe.training_rows": (meta.get("training") or {}).get("rows"),
        "adpipe.version": meta.get("adpipe_version"),
    }
    params = {k: v for k, v in params.items() if v is not None}
    metrics = {k: float(v) for k, v in ((meta.get("validation") or {}).get("metrics") or {}).items()
               if isinstance(v, (int, float)) and math.isfinite(v)}
    tags = {k: str(params[k]) for k in ("adpipe.name", "adpipe.model_version") if k in params}
    return params, metrics, tags


def _requirements(mlflow, meta: dict[str, Any]) -> list[str]:
    """Pinned pip requirements from the metadata (saves MLflow's slow requirement inference)."""
    pins = {"adpipe": meta.get("adpipe_version"), "mlflow": mlflow.__version__, **(meta.get("libraries") or {})}
    for plugin in meta.get("plugins") or []:
        pins.setdefault(plugin.get("distribution"), plugin.get("version"))
    return [f"{dist}=={ver}" for dist, ver in pins.items() if dist and ver and not dist.startswith("<")]


# --------------------------------------------------------------------------- logging
def log_model(model: "FittedPipeline | str | Path", name: str = "model", *, registered_model_name: str | None = None,
              input_example: Any = None):
    """Log an adpipe model (a fitted pipeline, or a ``.adpipe`` file, uploaded as it is) as an MLflow
    pyfunc model in the active run (a new run when none is active), optionally registering it.

    Also logs the model's name, version, detector and validation metrics. Returns MLflow's ``ModelInfo``.
    """
    mlflow = _mlflow()
    from adpipe.integrations.mlflow.pyfunc import ARTIFACT, AdpipePyfunc

    with tempfile.TemporaryDirectory(prefix="adpipe-mlflow-") as tmp:
        if isinstance(model, (str, Path)):
            name_in = modelfile.read(model, payload=False).metadata.get("name") or "model"  # checksum verified
            path = Path(tmp) / f"{name_in}{modelfile.SUFFIX}"
            shutil.copyfile(model, path)  # a copy under a readable name: same bytes, same signature
        else:
            path = model.save(Path(tmp) / f"{model.config.name}{modelfile.SUFFIX}")
        found = modelfile.read(path, payload=False)
        meta = found.metadata
        params, metrics, tags = _describe(meta)
        about = {"name": meta.get("name"), "model_version": meta.get("model_version"), "signer": found.signer}
        started = mlflow.active_run() is None
        with mlflow.start_run(run_name=meta.get("name")) if started else contextlib.nullcontext():
            with _errors(f"model '{registered_model_name or name}'", "log"):
                info = mlflow.pyfunc.log_model(
                    name=name, python_model=AdpipePyfunc(), artifacts={ARTIFACT: str(path)},
                    signature=signature(meta), input_example=input_example,
                    registered_model_name=registered_model_name, pip_requirements=_requirements(mlflow, meta),
                    params=params, tags=tags, metadata={"adpipe": about})
                if started:  # run params cannot change once set: only on a run of our own
                    mlflow.log_params(params)
                mlflow.set_tags(tags)
                if metrics:
                    mlflow.log_metrics(metrics, model_id=info.model_id)
    return info


def log_model_ref(ref: str | Path, *, store: "ModelStore | str | Path | None" = None, name: str | None = None,
                  registered_model_name: str | None = None, tracking_uri: str | None = None) -> dict[str, Any]:
    """Log a stored model (``fraud@3``, ``fraud@production``) or a model file to MLflow, uploading the
    existing signed file, and register it when ``registered_model_name`` is given.

    Returns ``{"run_id", "model_uri", "registered_model", "version"}``; ``model_uri`` is
    ``models:/NAME/VERSION`` when registered, else the logged model's URI.
    """
    from adpipe.core.model import is_path_ref
    from adpipe.core.store import ModelStore

    ref = str(ref)
    if is_path_ref(ref):
        path = Path(ref)
    else:
        path = (store if isinstance(store, ModelStore) else ModelStore(store)).resolve(ref).path
    with _tracking(tracking_uri):
        info = log_model(path, name or "model", registered_model_name=registered_model_name)
    version = info.registered_model_version
    uri = f"models:/{registered_model_name}/{version}" if registered_model_name and version else info.model_uri
    return {"run_id": info.run_id, "model_uri": uri, "registered_model": registered_model_name,
            "version": int(version) if version else None}


# --------------------------------------------------------------------------- loading
def load_model(uri: str, *, trusted: bool = False, strict_versions: bool = False,
               tracking_uri: str | None = None) -> "FittedPipeline":
    """Load the adpipe model behind an MLflow URI (``models:/name/3``, ``models:/name@alias``,
    ``models:/name/Production``, ``runs:/RUN_ID/model``).

    The ``.adpipe`` artifact is checked like any model file (integrity, trust policy, versions).
    The model's ``model_version`` becomes ``uri``, so result rows name the registry version.
    """
    mlflow = _mlflow()
    from adpipe.core.model import load

    with _tracking(tracking_uri), tempfile.TemporaryDirectory(prefix="adpipe-mlflow-") as tmp:
        with _errors(uri):
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        files = [local] if local.is_file() else sorted(local.rglob(f"*{modelfile.SUFFIX}"))
        files = [f for f in files if f.suffix == modelfile.SUFFIX]
        if len(files) != 1:
            found = "no" if not files else f"{len(files)}"
            raise ModelError(f"{uri} holds {found} adpipe model files ({modelfile.SUFFIX}); it was not logged "
                             "by adpipe.", hint="log adpipe models with adpipe.integrations.mlflow.log_model")
        try:
            model = load(files[0], trusted=trusted, strict_versions=strict_versions)
        except ModelError as exc:
            raise _relabel(exc, files[0], uri) from None
    model.model_version = uri
    return model


def _relabel(exc: ModelError, path: Path, uri: str) -> ModelError:
    """The same error, naming the URI instead of the temporary download path."""
    try:
        return type(exc)(exc.message.replace(str(path), f"{uri} ({path.name})"), hint=exc.hint)
    except TypeError:
        return exc
