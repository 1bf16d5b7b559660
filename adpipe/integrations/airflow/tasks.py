"""What an adpipe Airflow task does, without Airflow: run, fit or score one config and summarise it.

The operators in :mod:`adpipe.integrations.airflow.operators` are thin shells around :func:`execute`,
so everything here works (and is tested) without Airflow installed. The summary is small, plain JSON:
it becomes the task's XCom, so it never carries data rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from adpipe.core.errors import (
    ConfigError,
    ModelCompatibilityError,
    ModelIntegrityError,
    ModelTrustError,
    PluginError,
)

MODES = ("run", "fit", "score")
#: errors a retry cannot fix: the task fails at once instead of using up its retries
PERMANENT_ERRORS = (ConfigError, PluginError, ModelIntegrityError, ModelTrustError, ModelCompatibilityError)


def retryable(exc: BaseException) -> bool:
    """Whether Airflow should retry a task that raised ``exc``.

    A broken config, a missing plugin or a model file that fails its checks fails the same way on every try.
    Everything else (a partition not there yet, a database or broker down, no model in the store yet)
    may pass later, so it follows the task's ``retries`` as usual.
    """
    return not isinstance(exc, PERMANENT_ERRORS)


def override_args(overrides: Mapping[str, Any] | Sequence[str] | None) -> list[str]:
    """Hydra override strings from ``["key=value", ...]`` or ``{"key": value}``.

    Mapping values are written in Hydra's syntax: numbers and booleans as they are, ``None`` as
    ``null``, lists and mappings as flow sequences/mappings, and strings quoted when needed.
    """
    if overrides is None:
        return []
    if isinstance(overrides, str):
        raise ConfigError(f"overrides must be a list of 'key=value' strings or a mapping, got the string "
                          f"{overrides!r}.", hint="write overrides=['threshold.contamination=0.01']")
    if isinstance(overrides, Mapping):
        return [f"{key}={_hydra_value(value)}" for key, value in overrides.items()]
    out = []
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value.")
        out.append(item)
    return out


def _hydra_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{_hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    text = str(value)
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def load_task_config(config: str | Path, overrides: Any = None, *, input_path: str | None = None,
                     output_path: str | None = None, mode: str = "run"):
    """Compose and validate ``config`` with overrides, then point its input and output where the task says.

    ``input_path`` replaces the ``path`` of the source (in fit mode, of ``fit.source`` when the config
    has one); ``output_path`` replaces the ``path`` of the first sink that has one. Relative paths
    resolve against the config file's folder, like every path in a config.
    """
    from adpipe.core.compose import compose
    from adpipe.core.config import validate

    file = Path(config).expanduser()
    if file.suffix not in (".yaml", ".yml") and not file.exists():
        file = file.with_suffix(".yaml")
    raw = compose(config, override_args(overrides))
    if input_path:
        fit_source = (raw.get("fit") or {}).get("source")
        key, stage = ("fit.source", fit_source) if mode == "fit" and fit_source else ("source", raw.get("source"))
        _set_path(stage, input_path, key, "input_path")
    if output_path:
        sinks = [s for s in raw.get("sinks") or [] if isinstance(s, dict) and "path" in s]
        if not sinks:
            raise ConfigError(f"{file}: output_path={output_path!r} needs a sink with a path, and the config "
                              "has none.", hint="add a file sink (parquet, csv, jsonl) or drop output_path")
        sinks[0]["path"] = output_path
    return validate(raw, base_dir=file.resolve().parent, file=file.resolve(), default_name=file.stem,
                    need_detector=mode != "score")


def _set_path(stage: Any, value: str, key: str, arg: str) -> None:
    if not isinstance(stage, dict):
        raise ConfigError(f"{arg}={value!r} needs a {key} in the config, and there is none.")
    if "path" not in stage:
        raise ConfigError(f"{arg}={value!r} sets {key}.path, and the {stage.get('type')!r} {key} has no path.",
                          hint="set the source's own parameters through overrides instead")
    stage["path"] = value


def execute(mode: str, config: str | Path, *, overrides: Any = None, input_path: str | None = None,
            output_path: str | None = None, model: str | None = None, store: str | None = None,
            trust: bool = False, promote_to: str | None = None) -> dict[str, Any]:
    """Run one adpipe task and return its JSON summary.

    ``run`` fits and scores; ``fit`` saves a new model version to the store (and promotes it to
    ``promote_to`` when given); ``score`` scores with the stored ``model`` (a file, NAME, NAME@VERSION,
    NAME@STAGE or an MLflow URI). Raises :class:`adpipe.AdpipeError` subclasses on failure.
    """
    from adpipe.core.engine import Pipeline

    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {mode!r}.")
    if mode == "score" and not model:
        raise ConfigError("mode 'score' needs a model reference.", hint="pass model='NAME@production' or a file")
    if mode != "score" and model:
        raise ConfigError(f"mode {mode!r} fits its own model; model={model!r} is only for mode 'score'.")
    if promote_to and mode != "fit":
        raise ConfigError("promote_to is only for mode 'fit'.")
    store = store or None
    cfg = load_task_config(config, overrides, input_path=input_path, output_path=output_path, mode=mode)
    pipeline = Pipeline(cfg)
    if mode == "fit":
        return _fit(pipeline, store, promote_to)
    if mode == "score":
        from adpipe.core.model import is_path_ref, load_model

        fitted = load_model(model, store=store, trusted=trust)
        ref = None if is_path_ref(model) or ":/" in model else model
        summary = pipeline.run(model=fitted, model_ref=ref, store=store, trusted=trust)
        return _plain({"mode": mode, "model": model, **_run_fields(summary)})
    return _plain({"mode": mode, **_run_fields(pipeline.run())})


def _fit(pipeline, store: str | None, promote_to: str | None) -> dict[str, Any]:
    from adpipe.core.store import ModelStore

    model = pipeline.fit()
    target = ModelStore(store)
    stored = target.add(model)
    if promote_to:
        target.promote(stored.name, stored.version, promote_to)
    meta = model.metadata
    training = meta.get("training") or {}
    return _plain({
        "mode": "fit",
        "pipeline": meta.get("name"),
        "status": "succeeded",
        "model": stored.ref,
        "model_version": meta.get("model_version"),
        "model_path": str(stored.path),
        "stage": promote_to,
        "rows_trained": training.get("rows"),
        "rows_rejected": training.get("rejected"),
        "seconds": training.get("seconds"),
        "metrics": (meta.get("validation") or {}).get("metrics") or {},
    })


def _run_fields(summary) -> dict[str, Any]:
    d = summary.to_dict()
    keys = ("pipeline", "run_id", "status", "model_version", "rows_in", "rows_scored", "rows_rejected",
            "anomalies", "anomaly_rate", "outputs", "rejects_output", "summary_path", "seconds", "metrics",
            "alerts", "drift_events")
    return {k: d.get(k) for k in keys}


def _plain(summary: dict[str, Any]) -> dict[str, Any]:
    """Plain JSON types only (numpy numbers and paths become numbers and strings)."""
    return json.loads(json.dumps(summary, default=_default))


def _default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def anomalies_found(summary: Mapping[str, Any] | None, min_anomalies: int = 1,
                    min_anomaly_rate: float | None = None) -> bool:
    """Whether a run/score summary has at least ``min_anomalies`` anomalies (and, if given, that rate).

    For ``@task.short_circuit`` or a branch: ``anomalies_found(ti.xcom_pull(task_ids="score"), 10)``.
    """
    if not isinstance(summary, Mapping) or "anomalies" not in summary:
        raise ValueError(f"not an adpipe run or score summary: {summary!r:.200}")
    if int(summary["anomalies"]) < int(min_anomalies):
        return False
    return min_anomaly_rate is None or float(summary.get("anomaly_rate") or 0.0) >= float(min_anomaly_rate)
