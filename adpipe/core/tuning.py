"""Hyper-parameter search: try settings from ``tune.space``, keep the best, fit the final model.

    result = tune("configs/tune_example.yaml")        # or a PipelineConfig
    result.best_params, result.best_value             # {'detector.n_neighbors': 322, ...}, 0.627
    ModelStore().add(result.model)                    # saved like `adpipe fit` saves

Every trial fits on the same training part and is measured on the same labelled validation part (one
stratified, seeded split). Optuna samples the settings: GridSampler, RandomSampler or TPESampler, all
seeded by ``tune.seed``. A trial the pipeline rejects is recorded with its error and the search goes on.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
from rich.markup import escape

from adpipe.core import evaluate
from adpipe.core.compose import STAGE_LISTS, STAGES
from adpipe.core.config import SECTIONS, PipelineConfig, load_config, resolve_paths
from adpipe.core.errors import AdpipeError, ConfigError, DataError, ModelError
from adpipe.core.progress import progress_bar
from adpipe.core.registry import Registry, get_registry
from adpipe.core.tuning_space import Param, _validate, apply, check_space

log = logging.getLogger("adpipe.tune")
INSTALL = "pip install 'adpipe[tune]'"
DEFAULT_TRIALS = 30


# --------------------------------------------------------------------------- results
@dataclass
class TrialRecord:
    """One tried setting: its parameters, objective value and metrics, or the error that stopped it."""

    number: int  # 1-based
    params: dict[str, Any]
    state: str = "running"  # complete | failed | interrupted
    value: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"trial": self.number, "state": self.state, "params": self.params, "value": self.value,
                "metrics": self.metrics, "seconds": round(self.seconds, 4), "error": self.error}


@dataclass
class TuneResult:
    """What :func:`tune` found; ``model`` is the final model fitted with the best setting."""

    name: str
    method: str
    objective: str
    space: dict[str, Any]
    trials: list[TrialRecord]
    stopped: str  # finished | timeout | interrupted
    seconds: float
    training_rows: int
    validation_rows: int
    seed: int
    base: PipelineConfig
    config: PipelineConfig | None = None  # the best config
    model: Any = None  # FittedPipeline

    def ranked(self) -> list[TrialRecord]:
        """Completed trials, best first (ties: the earlier trial), then the failed ones."""
        done = sorted((t for t in self.trials if t.state == "complete"), key=lambda t: (-t.value, t.number))
        return done + [t for t in self.trials if t.state != "complete"]

    @property
    def best(self) -> TrialRecord | None:
        ranked = self.ranked()
        return ranked[0] if ranked and ranked[0].state == "complete" else None

    @property
    def best_params(self) -> dict[str, Any]:
        return dict(self.best.params) if self.best else {}

    @property
    def best_value(self) -> float | None:
        return self.best.value if self.best else None

    def counts(self) -> dict[str, int]:
        return {s: sum(t.state == s for t in self.trials) for s in ("complete", "failed", "interrupted")}

    def summary(self) -> dict[str, Any]:
        """The tuning results kept in the final model's metadata (``training.tuning``)."""
        best = self.best
        return {"method": self.method, "objective": self.objective, "trials": len(self.trials),
                "completed": self.counts()["complete"], "failed": self.counts()["failed"], "stopped": self.stopped,
                "best_trial": best.number if best else None, "best_params": self.best_params,
                "best_value": self.best_value, "best_metrics": best.metrics if best else {},
                "space": self.space, "validation_rows": self.validation_rows, "training_rows": self.training_rows,
                "seed": self.seed, "seconds": round(self.seconds, 3)}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.summary(), "results": [t.to_dict() for t in self.ranked()]}

    def best_raw(self, secrets: bool = False) -> dict:
        """The composed config with the best setting applied (paths absolute; secrets masked unless asked)."""
        from adpipe.core.secrets import mask

        raw = _absolute_paths(apply(self.base.raw or {}, self.best_params), self.config or self.base)
        raw["name"] = self.name  # the model keeps its name whatever the file is called
        first = [k for k in ("name", "source", "columns", "preprocess", "detector", "threshold") if k in raw]
        raw = {k: raw[k] for k in [*first, *(k for k in raw if k not in first)]}
        return raw if secrets else mask(raw)

    def write_best_config(self, path: str | Path) -> Path:
        """The best config as YAML, runnable with ``adpipe run config=PATH`` (secret values masked)."""
        import yaml

        from adpipe.core.secrets import mask

        path = Path(path)
        raw = self.best_raw()
        masked = raw != self.best_raw(secrets=True)
        best = self.best
        head = [f"# Best setting of `adpipe tune` for {self.base.path or self.name}",
                f"# {self.method} search, {len(self.trials)} trials: trial {best.number if best else '-'} reached "
                f"{self.objective} {_fmt(self.best_value)} with {json.dumps(mask(self.best_params), default=str)}"]
        if masked:
            head.append("# Secret values are masked (***): set them again before running this config.")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(head) + "\n" + yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        return path

    def write_report(self, path: str | Path) -> Path:
        """An HTML report: objective per trial with the running best, each parameter against the objective."""
        return write_report(self, path)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _absolute_paths(raw: dict, cfg: PipelineConfig) -> dict:
    """Path parameters of stages and sections made absolute (a best config may be written anywhere)."""
    out = copy.deepcopy(raw)

    def fix(node: Any, model) -> Any:
        if not isinstance(node, dict):
            return node
        fixed = resolve_paths(model, node, cfg.base_dir)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in fixed.items()}

    for key in STAGES:
        spec = getattr(cfg, key, None)
        if spec is not None and isinstance(out.get(key), dict):
            out[key] = fix(out[key], spec.cls.Params)
    for key in STAGE_LISTS:
        items = out.get(key)
        if isinstance(items, list):
            out[key] = [fix(item, spec.cls.Params) for item, spec in zip(items, getattr(cfg, key), strict=True)]
    for section, model in SECTIONS.items():
        if isinstance(out.get(section), dict):
            out[section] = fix(out[section], model)
    fit = out.get("fit")
    if cfg.fit_source is not None and isinstance(fit, dict) and isinstance(fit.get("source"), dict):
        fit["source"] = fix(fit["source"], cfg.fit_source.cls.Params)
    return out


# --------------------------------------------------------------------------- the search
class _Interrupts:
    """SIGINT during the search: stop starting trials; a second one (or one during the final fit) aborts."""

    def __init__(self):
        self.requested = False
        self.final = False

    def handler(self, signum, frame):
        if self.requested or self.final:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("Ctrl-C: finishing the current trial, then fitting the best setting so far (Ctrl-C again "
                    "aborts)")

    @contextlib.contextmanager
    def installed(self, enabled: bool) -> Iterator[None]:
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self.handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("adpipe tune needs Optuna, which is not installed.", hint=INSTALL) from None
    return optuna


def _sampler(optuna, method: str, params: list[Param], seed: int):
    if method == "grid":
        return optuna.samplers.GridSampler({p.key: _encoded(p) for p in params}, seed=seed)
    if method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _encoded(p: Param) -> list[Any]:
    """Optuna's categorical choices: plain values as they are, lists and mappings as JSON text."""
    return [v if v is None or isinstance(v, (bool, int, float, str)) else json.dumps(v) for v in p.grid()]


def _suggest(trial, p: Param, method: str) -> Any:
    if method == "grid" or p.choices is not None:
        choices = _encoded(p)
        picked = trial.suggest_categorical(p.key, choices)
        return p.grid()[choices.index(picked)]
    if p.integer:
        return trial.suggest_int(p.key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
    value = trial.suggest_float(p.key, float(p.low), float(p.high), step=p.step, log=p.log)
    return round(value, 12) if p.step is not None else value


def _read(cfg: PipelineConfig, data: Any) -> pd.DataFrame:
    from adpipe.core.engine import Pipeline
    from adpipe.core.frames import to_frame

    if data is not None:  # positions as the index, as a source's rows have
        return to_frame(data).reset_index(drop=True)
    return Pipeline(cfg).read_training()


def split(cfg: PipelineConfig, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(training positions, validation positions, labels): one stratified, seeded split of the labelled rows."""
    label = cfg.columns.label
    if not label:
        raise ConfigError("Tuning measures each setting on labelled rows, but the config has no columns.label.",
                          hint="set columns.label to the ground-truth column (0 = normal, 1 = anomaly)")
    held, labels = evaluate.labelled_holdout(frame, label, cfg.tune.validation, cfg.tune.seed,
                                             where="the training data", hint="tune on data with labelled anomalies "
                                             "(1) and normal rows (0)")
    train = np.setdiff1d(np.arange(len(frame)), held)
    return train, held, labels


def _measure(cfg: PipelineConfig, train: pd.DataFrame, valid: pd.DataFrame, labels: pd.Series) -> dict[str, float]:
    from adpipe.core.engine import FittedPipeline
    from adpipe.core.schema import LABEL, SCORE

    model = FittedPipeline.fit(cfg, train, row_numbers=train.index.to_numpy())
    result, _ = model.score_batch(valid, policy="drop")
    y = labels.loc[result.index].to_numpy()
    measured = evaluate.metrics(y, result[SCORE].to_numpy(), result[LABEL].to_numpy())
    if not measured:
        raise DataError("The validation rows left after validation do not hold both classes.")
    bad = [k for k, v in measured.items() if not math.isfinite(v)]
    if bad:
        raise ModelError(f"{bad[0]} is not finite (the detector returned NaN or infinite scores).")
    return measured


def tune(config: str | Path | PipelineConfig, overrides: list[str] | tuple[str, ...] = (), *, data: Any = None,
         registry: Registry | None = None, progress: bool = False, fit_final: bool = True,
         on_trial: Callable[[TrialRecord, TrialRecord | None], None] | None = None,
         handle_signals: bool = True) -> TuneResult:
    """Search ``tune.space`` and fit the final model with the best setting.

    ``data``: a table to tune and fit on instead of the configured source. ``on_trial(record, best)`` is
    called after every trial (raising KeyboardInterrupt from it stops the search like Ctrl-C does).
    ``handle_signals``: the first Ctrl-C stops starting new trials and the final model is fitted with the
    best setting so far; a second one aborts (KeyboardInterrupt).
    """
    from adpipe.core.engine import FittedPipeline

    registry = registry or get_registry()
    if isinstance(config, PipelineConfig) and overrides:
        raise ConfigError("Overrides apply to a config file, not to a loaded PipelineConfig.",
                          hint="pass the config's path, or load it with load_config(path, overrides)")
    base = config if isinstance(config, PipelineConfig) else load_config(config, list(overrides), registry=registry)
    params = check_space(base, registry)
    optuna = _optuna()
    spec = base.tune
    frame = _read(base, data)
    if len(frame) == 0:
        raise DataError("The training data is empty: there are no rows to tune on.",
                        hint="check the source path and that the file has data rows below its header")
    train_pos, held_pos, labels = split(base, frame)
    train, valid = frame.iloc[train_pos], frame.iloc[held_pos]
    valid_labels = pd.Series(labels[held_pos], index=valid.index)
    if spec.method == "grid":
        n_grid = math.prod(len(p.grid()) for p in params)
        n_trials = min(spec.trials or n_grid, n_grid)
    else:
        n_trials = spec.trials or DEFAULT_TRIALS

    records: list[TrialRecord] = []
    interrupts = _Interrupts()

    def best() -> TrialRecord | None:
        done = [r for r in records if r.state == "complete"]
        return max(done, key=lambda r: (r.value, -r.number)) if done else None

    def objective(trial) -> float:
        values = {p.key: _suggest(trial, p, spec.method) for p in params}
        record = TrialRecord(trial.number + 1, values)
        records.append(record)
        start = time.perf_counter()
        try:
            raw = apply(base.raw, {**values, "fit.holdout": 0})
            record.metrics = _measure(_validate(base, raw, registry), train, valid, valid_labels)
            record.value, record.state = record.metrics[spec.objective], "complete"
            return record.value
        except KeyboardInterrupt:
            record.state, record.error = "interrupted", "interrupted"
            raise
        except Exception as exc:
            record.state = "failed"
            record.error = exc.message if isinstance(exc, AdpipeError) else f"{type(exc).__name__}: {exc}"
            raise _TrialFailed from exc
        finally:
            record.seconds = time.perf_counter() - start

    def after(study, frozen) -> None:
        record = next(r for r in records if r.number == frozen.number + 1)
        top = best()
        bar.advance()
        bar.update(status=f"best {spec.objective} {top.value:.4f} (trial {top.number}: "
                   f"{escape(_params_text(top.params))})" if top else "no trial succeeded yet")
        if on_trial is not None:
            on_trial(record, best())
        if interrupts.requested:
            study.stop()

    started = time.perf_counter()
    stopped = "finished"
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with interrupts.installed(handle_signals):
        try:
            study = optuna.create_study(direction="maximize", sampler=_sampler(optuna, spec.method, params, spec.seed))
            with progress_bar(n_trials, progress, "tuning") as bar:
                study.optimize(objective, n_trials=n_trials, timeout=spec.timeout_seconds, catch=(_TrialFailed,),
                               callbacks=[after], gc_after_trial=False)
        except KeyboardInterrupt:
            if interrupts.requested:  # a second Ctrl-C
                raise
            interrupts.requested = True
        finally:
            optuna.logging.set_verbosity(verbosity)
        interrupts.final = True
        if interrupts.requested:
            stopped = "interrupted"
        elif len(records) < n_trials:
            stopped = "timeout"
        result = TuneResult(base.name, spec.method, spec.objective, {p.key: p.to_dict() for p in params}, records,
                            stopped, time.perf_counter() - started, len(train), len(valid), spec.seed, base)
        top = result.best
        if top is None:
            if stopped == "interrupted":
                raise KeyboardInterrupt
            failed = [r for r in records if r.state == "failed"]
            raise ModelError(f"No trial succeeded ({len(failed)} failed); the first error: "
                             f"{failed[0].error if failed else 'none ran'}",
                             hint="check the ranges in tune.space against the data and the detector")
        result.config = _validate(base, apply(base.raw, top.params), registry)
        if fit_final:
            with _status(progress, "fitting the final model with the best setting"):
                result.model = FittedPipeline.fit(result.config, frame, row_numbers=frame.index.to_numpy())
            result.model.training["tuning"] = result.summary()
    return result


class _TrialFailed(Exception):
    """A trial's own error, already recorded: Optuna marks the trial failed and goes on."""


# --------------------------------------------------------------------------- progress
def _params_text(params: dict[str, Any], width: int = 60) -> str:
    text = ", ".join(f"{k.rsplit('.', 1)[-1]}={_short(v)}" for k, v in params.items())
    return text if len(text) <= width else text[:width - 1] + "…"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _status(enabled: bool, text: str):
    if not (enabled and sys.stderr.isatty()):
        return contextlib.nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(text)


def write_report(result: "TuneResult", path: str | Path) -> Path:
    """One HTML page: the best setting, objective per trial with the running best, each parameter's effect,
    and the ranked trials (see :mod:`adpipe.core.tuning_report`)."""
    from adpipe.core.tuning_report import write_report as write

    return write(result, path)
