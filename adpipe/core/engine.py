"""The engine: fit a pipeline, then score batches and deliver them.

Per batch: validate -> preprocess -> detect -> calibrate -> threshold ->
write every sink -> alert -> acknowledge to the source. Memory is bounded by
the batch size, except for the training data (all rows, or ``fit.sample_rows``).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from adpipe.core import evaluate, metrics_push, schema, tracing, validation
from adpipe.core.calibration import Calibrator
from adpipe.core.config import PipelineConfig, load_config
from adpipe.core.errors import AdpipeError, ConfigError, DataError, ModelError, PluginError, SchemaMismatchError
from adpipe.core.features import FeatureSchema
from adpipe.core.frames import to_frame
from adpipe.core.plugin import Batch, Detector, Preprocessor, Source, Threshold
from adpipe.core.registry import Registry, get_registry
from adpipe.core.runner import Runner, alert_failure, fitting_status
from adpipe.core.spill import Spill
from adpipe.core.summary import RunSummary, StageTimer

if TYPE_CHECKING:
    from adpipe.core.messages import BatchResult

log = logging.getLogger("adpipe.engine")


class Pipeline:
    """A validated pipeline config, ready to fit and run::

        pipe = Pipeline.from_config("configs/fraud.yaml", overrides=["detector=lof"])
        summary = pipe.run()            # fit, then score the source into every sink
        model = pipe.fit()              # or: fit only, then model.score(df)
    """

    def __init__(self, config: PipelineConfig, registry: Registry | None = None):
        self.config = config
        self.registry = registry or get_registry()
        self.model_: FittedPipeline | None = None

    @classmethod
    def from_config(cls, path: str | Path, overrides: Iterable[str] = (), registry: Registry | None = None):
        return cls(load_config(path, list(overrides), registry=registry), registry)

    @classmethod
    def from_dict(cls, data: dict, base_dir: Path | None = None, registry: Registry | None = None):
        return cls(load_config(data=data, base_dir=base_dir, registry=registry), registry)

    # ------------------------------------------------------------------ fit
    def fit(self, data: Any = None) -> "FittedPipeline":
        """Fit on ``data`` (any table :func:`to_frame` accepts) or on the configured training source."""
        with tracing.observe("fit", self.config.name) as span:
            timer = StageTimer()
            with timer("read_training") as stage:
                frame = to_frame(data) if data is not None else self.read_training()
                stage.set_attribute("adpipe.rows", len(frame))
            rows = None if data is not None else frame.index.to_numpy()
            self.model_ = model = FittedPipeline.fit(self.config, frame, timer=timer, row_numbers=rows)
            fields = {"model_version": model.model_version, "rows": model.training.get("rows"),
                      "rows_rejected": model.training.get("rejected"), "seconds": model.training.get("seconds")}
            span.set_attributes({f"adpipe.{k}": v for k, v in fields.items() if v is not None})
            log.info("fitted %s on %s rows", model.model_version, fields["rows"], extra=fields)
        return self.model_

    def read_training(self, spill: Spill | None = None) -> pd.DataFrame:
        """The training rows: all of ``fit.source`` (or the source), or a ``fit.sample_rows`` sample."""
        cfg = self.config
        spec = cfg.fit_source or cfg.source
        if spec is None:
            raise ConfigError("No training data: the config has neither `source` nor `fit.source`.",
                              hint="add a source, or pass data to fit()")
        source = spec.build()
        if not source.finite:
            source.close()
            raise ConfigError(f"The {spec.type} source never ends, so it cannot be read for training.",
                              hint="set fit.source to a finite training source (a file or table); `adpipe run` "
                                   "can also fit on the stream's first stream.warmup_rows records")
        batches = source.batches(cfg.engine.batch_rows)
        if spill is not None:
            batches = _tee(batches, spill.add)
        try:
            return read_frames(batches, cfg.fit.sample_rows, cfg.fit.seed)
        finally:
            source.close()

    # ------------------------------------------------------------------ score
    def score(self, data: Any) -> pd.DataFrame:
        """Score ``data`` with the fitted model and return the result frame."""
        if self.model_ is None:
            raise ModelError("This pipeline is not fitted yet.", hint="call pipeline.fit() first")
        return self.model_.score(data)

    # ------------------------------------------------------------------ run
    def run(self, *, model: "FittedPipeline | None" = None, progress: bool = False, write_summary: bool = True,
            sinks: list | None = None, model_ref: str | None = None, store: Any = None,
            trusted: bool = False) -> RunSummary:
        """Fit on the training data, then score the source into every sink (see :meth:`_run`).

        The run is traced (span ``adpipe.run``), logged with its run fields, and its metrics are pushed as
        the config's ``metrics:`` section says, for failed runs too (a failed push only logs a warning).
        """
        name = model.config.name if model is not None else self.config.name
        started = time.perf_counter()
        try:
            with tracing.observe("run", name, model_version=model.model_version if model is not None else None) \
                    as span:
                summary = self._run(model=model, progress=progress, write_summary=write_summary, sinks=sinks,
                                    model_ref=model_ref, store=store, trusted=trusted)
                tracing.finish(span, summary)
                fields = {"run_id": summary.run_id, "model_version": summary.model_version, "status": summary.status,
                          "rows_in": summary.rows_in, "rows_scored": summary.rows_scored,
                          "rows_rejected": summary.rows_rejected, "anomalies": summary.anomalies,
                          "seconds": round(summary.seconds, 4)}
                log.info("run of %s finished: %s rows scored, %s anomalies", summary.pipeline, summary.rows_scored,
                         summary.anomalies, extra=fields)
        except BaseException:
            metrics_push.push(self.config.metrics, name, status="failed",
                              seconds=time.perf_counter() - started)
            raise
        metrics_push.push(self.config.metrics, summary.pipeline, status=summary.status,
                          seconds=summary.seconds, summary=summary)
        return summary

    def _run(self, *, model: "FittedPipeline | None" = None, progress: bool = False, write_summary: bool = True,
             sinks: list | None = None, model_ref: str | None = None, store: Any = None,
             trusted: bool = False) -> RunSummary:
        """Fit on the training data, then score the source into every sink.

        With ``model`` (e.g. from :func:`adpipe.load_model`) nothing is fitted: the model brings its
        columns, preprocessing, detector, calibration, threshold, severity and validation policy; this
        config brings the source, sinks, reject sink, alerts, engine and summary settings. ``model_ref``
        (``fraud@production``) lets a stream load the store's new version when it changes.

        An endless source (Kafka, Redis Streams) without a model and without ``fit.source`` is fitted on
        its first ``stream.warmup_rows`` records.
        """
        cfg = self.config
        if cfg.source is None:
            raise ConfigError("The config has no `source` to score.", hint="add source: {type: csv, path: ...}")
        if model is not None:
            if cfg.explain.column:  # the scoring config asks for explanations
                model = copy.copy(model)
                model.config = dataclasses.replace(model.config, explain=cfg.explain)
            self.model_ = model
            return Runner(model, with_model(cfg, model), self.registry, model_ref=model_ref, store=store,
                          trusted=trusted).run(progress=progress, write_summary=write_summary, sinks=sinks)
        if not cfg.source.cls.finite and cfg.fit_source is None:  # warm up on the stream itself
            return Runner(None, cfg, self.registry).run(progress=progress, write_summary=write_summary, sinks=sinks)
        timer = StageTimer()
        started = time.perf_counter()
        one_source = cfg.fit_source is None and cfg.source.cls.finite
        whole = one_source and cfg.fit.sample_rows is None
        # a sample of the source: keep the parsed batches for the scoring pass (sources that need
        # acknowledgements are read again instead)
        spill = Spill() if (one_source and not whole and cfg.engine.spill and cfg.source.cls.ack is Source.ack) \
            else None
        try:
            try:
                with fitting_status(progress):
                    with timer("read_training"):
                        frame = self.read_training(spill)
                    self.model_ = FittedPipeline.fit(cfg, frame, timer=timer, row_numbers=frame.index.to_numpy())
            except Exception as exc:  # the scoring loop alerts its own failures; fitting's are alerted here
                alert_failure(cfg, exc)
                raise
            batches, known = None, None
            if whole:  # the training rows are the whole source: score them from memory, no second read
                batches = _slices(frame, cfg.engine.batch_rows)
                # keep the detector's own training scores for these rows (kNN and LOF leave each row out of
                # its own neighbourhood), as PyOD's labels_ and adpipe.detect do
                known = self.model_.fit_scores_
            elif spill is not None and spill.ok:
                batches = spill.batches()
            del frame
            self.model_.fit_scores_ = None
            return Runner(self.model_, cfg, self.registry, timer=timer, started=started).run(
                progress=progress, write_summary=write_summary, batches=batches, sinks=sinks, known_scores=known)
        finally:
            if spill is not None:
                spill.close()


def with_model(config: PipelineConfig, model: "FittedPipeline") -> PipelineConfig:
    """A scoring config: ``config``'s source, sinks and run settings; the model's own stages and columns."""
    own = model.config
    columns = own.columns.model_copy(update={"label": config.columns.label or own.columns.label})
    return dataclasses.replace(config, name=own.name, preprocess=own.preprocess, detector=own.detector,
                               threshold=own.threshold, columns=columns, calibration=own.calibration,
                               severity=own.severity, validation=own.validation)


def _subset(checked: validation.Checked, positions: np.ndarray) -> validation.Checked:
    return validation.Checked(checked.frame.iloc[positions], checked.numeric[positions], checked.rejected)


STATS_ROWS = 200_000  # training summaries are computed on at most this many rows (an even stride)


def _stride(values: np.ndarray) -> np.ndarray:
    return values[::-(-len(values) // STATS_ROWS)] if len(values) > STATS_ROWS else values


def _distribution(values: np.ndarray) -> dict[str, float]:
    """Count, mean, std and quantiles of the finite values (a training summary kept in the model)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"count": 0}
    q = np.quantile(_stride(v), [0.01, 0.25, 0.5, 0.75, 0.99])  # quantiles of a sample, the rest exact
    return {"count": int(v.size), "mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            **dict(zip(("p01", "p25", "p50", "p75", "p99"), map(float, q))), "max": float(v.max())}


REFERENCE_ROWS = 1000  # training values kept per feature as the drift reference


def _reference(numeric: np.ndarray, columns: list[str], scores: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)

    def sample(n: int):
        return rng.choice(n, REFERENCE_ROWS, replace=False) if n > REFERENCE_ROWS else slice(None)

    rows = sample(len(numeric))
    out = {col: numeric[rows, j].astype(np.float64) for j, col in enumerate(columns)}
    out[schema.SCORE] = np.asarray(scores[sample(len(scores))], dtype=np.float64)
    return out


def _slices(frame: pd.DataFrame, step: int) -> Iterator[Batch]:
    for i in range(0, len(frame), step):
        yield Batch(frame.iloc[i:i + step], {"row_start": i})


def _tee(batches: Iterator[Batch], keep) -> Iterator[Batch]:
    for batch in batches:
        keep(batch)
        yield batch


def read_frames(batches: Iterator[Batch], sample_rows: int | None, seed: int) -> pd.DataFrame:
    """Concatenate batches, or keep a uniform random sample of ``sample_rows`` rows (one pass)."""
    if sample_rows is None:
        frames = [b.data for b in batches]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    rng = np.random.default_rng(seed)
    kept: pd.DataFrame | None = None
    keys = np.empty(0)
    seen = 0
    for batch in batches:  # the index keeps each row's position in the source, for error messages
        frame = batch.data.set_axis(pd.RangeIndex(seen, seen + len(batch.data)), axis=0)
        seen += len(frame)
        new_keys = rng.random(len(frame))
        if kept is not None and len(kept) >= sample_rows:  # only rows that beat the current sample matter
            cut = new_keys < keys.max()
            frame, new_keys = frame[cut], new_keys[cut]
        kept = frame if kept is None else pd.concat([kept, frame])
        keys = np.concatenate([keys, new_keys])
        if len(kept) > sample_rows:  # keep the rows with the smallest random keys
            idx = np.sort(np.argpartition(keys, sample_rows)[:sample_rows])
            kept, keys = kept.iloc[idx], keys[idx]
    return kept if kept is not None else pd.DataFrame()


class FittedPipeline:
    """Everything scoring needs: fitted preprocessing, detector, calibrator, threshold."""

    def __init__(self, config: PipelineConfig):
        self.config = config
        self.id_columns: list[str] = []
        self.feature_columns: list[str] = []
        self.numeric_columns: list[str] = []
        self.text_columns: list[str] = []
        self.preprocessors: list[Preprocessor] = []
        self.detector: Detector | None = None
        self.calibrator: Calibrator | None = None
        self.threshold: Threshold | None = None
        self.imputer = None
        self.model_version = ""
        self.training: dict[str, Any] = {}
        self.validation: dict[str, Any] = {}
        self.schema: FeatureSchema | None = None
        self.metadata: dict[str, Any] = {}  # set when saved or loaded (see adpipe.core.model)
        self.fit_scores_: pd.Series | None = None  # raw scores of the training rows, by row
        #: a sample of training values per numeric feature and of the training scores ("anomaly_score"),
        #: the reference that drift tests compare new data with
        self.reference: dict[str, np.ndarray] = {}
        #: share of training rows per category of each text feature (for explanations)
        self.category_shares: dict[str, dict[str, float]] = {}

    def __getstate__(self) -> dict[str, Any]:
        """What a model file keeps: no training scores, no source/sinks/alerts or local paths."""
        from adpipe.core.model import model_config

        return {**self.__dict__, "config": model_config(self.config), "fit_scores_": None, "metadata": {}}

    def save(self, path: str | Path, *, sign: bool = True) -> Path:
        """Write this model to a ``.adpipe`` file (signed with this machine's model key unless ``sign=False``)."""
        from adpipe.core.model import save

        return save(self, path, sign=sign)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, config: PipelineConfig, frame: pd.DataFrame, timer: StageTimer | None = None,
            row_numbers: np.ndarray | None = None) -> "FittedPipeline":
        """Fit on ``frame``; ``row_numbers`` (0-based positions in the source) make error messages exact."""
        self = cls(config)
        timer = timer or StageTimer()
        if frame is None or len(frame) == 0:
            raise DataError("The training data is empty: there are no rows to fit on.",
                            hint="check the source path and that the file has data rows below its header")
        t0 = time.perf_counter()
        self._resolve_columns(list(frame.columns))
        validation.require_columns(frame, self.feature_columns, "training data")
        text_only = validation.text_columns_in(frame, self.numeric_columns)
        if text_only:
            col = text_only[0]
            example = frame[col].dropna().iloc[0]
            raise DataError(
                f"Column '{col}' holds text (e.g. {example!r}), not numbers; detectors need numeric features.",
                hint=f"encode it with preprocess: [{{type: onehot, columns: [{col}]}}] or leave it out with "
                     f"columns.exclude: [{col}]",
            )
        with timer("validate", rows=len(frame)):
            checked = self._check(frame, where="training data", row_numbers=row_numbers)
        if len(checked.frame) == 0:
            raise DataError("No valid training rows remain after validation.", hint="inspect the reject output")
        spec = self.config.columns
        self.schema = FeatureSchema.from_frame(frame, self.feature_columns, self.id_columns, spec.label,
                                               features_listed=spec.features is not None)
        labels = self.labels(checked.frame)
        held = evaluate.holdout_split(labels, len(checked.frame), config.fit.holdout, config.fit.seed)
        fit_rows = np.arange(len(checked.frame)) if held is None else np.setdiff1d(np.arange(len(checked.frame)), held)
        fit_part = checked if held is None else _subset(checked, fit_rows)
        with timer("preprocess"):
            if self.config.validation.on_invalid == "impute":
                from sklearn.impute import SimpleImputer

                self.imputer = SimpleImputer(strategy="median", keep_empty_features=True).fit(fit_part.numeric)
            X = self._features(fit_part, fit=True)
        with timer("fit_detector"):
            self.detector = self.config.detector.build()
            try:
                self.detector.fit(X)
            except AdpipeError:
                raise
            except Exception as exc:
                raise ModelError(f"Detector '{self.config.detector.type}' failed to fit: {type(exc).__name__}: {exc}",
                                 hint="check its parameters against the data size (`adpipe plugins show "
                                      f"{self.config.detector.type}`)") from exc
        with timer("calibrate"):
            train_scores = self._training_scores(X)
            every_row = len(train_scores) == len(fit_part.frame)
            if every_row:  # kept only until a run has scored these rows
                self.fit_scores_ = pd.Series(train_scores, index=fit_part.frame.index)
            self.calibrator = Calibrator(self.config.calibration.method).fit(train_scores)
            probs = self.calibrator.transform(train_scores)
        with timer("threshold"):
            fit_labels = labels[fit_rows] if every_row and labels is not None else None
            self.threshold = self.config.threshold.build().fit(train_scores, probs, fit_labels)
            flags = np.asarray(self.threshold.predict(train_scores, probs), dtype=bool)
        fitted_at = datetime.now(timezone.utc).isoformat()
        digest = hashlib.sha256(json.dumps(self.config.to_dict(), sort_keys=True, default=str).encode()
                                + fitted_at.encode()).hexdigest()
        self.model_version = f"{self.config.name}-{digest[:10]}"
        self.training = {
            "rows": int(len(fit_part.frame)),
            "rejected": int(len(checked.rejected)),
            "held_out": 0 if held is None else int(len(held)),
            "features": len(self.feature_columns),
            "seconds": round(time.perf_counter() - t0, 4),
            "fitted_at": fitted_at,
            "sampled": config.fit.sample_rows is not None,
            "score_quantiles": {q: float(np.quantile(_stride(train_scores), q)) for q in (0.0, 0.5, 0.9, 0.99, 1.0)},
            "scores": _distribution(train_scores),
            "flagged": int(flags.sum()),
            "feature_stats": {col: _distribution(fit_part.numeric[:, j])
                              for j, col in enumerate(self.numeric_columns)},
        }
        describe = getattr(self.detector, "describe", None)  # combinations (ensemble, auto) say what they hold
        if callable(describe):
            self.training["detector"] = describe()
        self.reference = _reference(fit_part.numeric, self.numeric_columns, train_scores)
        if self.text_columns:
            from adpipe.core.explain import category_shares

            self.category_shares = category_shares(fit_part.frame, self.text_columns)
        with timer("validate_model"):
            self.validation = self._validate(checked, held, labels, train_scores, flags)
        return self

    def _validate(self, checked, held, labels, train_scores, flags) -> dict[str, Any]:
        """Held-out metrics (with labels), sanity checks on the training scores, and the pass verdict."""
        measured: dict[str, float] = {}
        if held is not None:
            part = _subset(checked, held)
            scores = self._detect(self._features(part))
            _, held_flags, _ = self.label(scores)
            measured = evaluate.metrics(labels[held], scores, held_flags)
        checks = evaluate.sanity_checks(_stride(train_scores), _stride(flags))
        verdict = evaluate.judge(measured, self.config.fit.criteria.model_dump(), checks, bool(measured))
        return {"split": "holdout" if measured else None, "holdout_rows": 0 if held is None else int(len(held)),
                "metrics": measured, "checks": checks, "criteria": self.config.fit.criteria.model_dump(),
                **verdict}

    def _resolve_columns(self, columns: list[str]) -> None:
        spec = self.config.columns
        drop = set(spec.exclude) | ({spec.label} if spec.label else set())
        self.id_columns = list(spec.id) if spec.id is not None else list(columns)
        if spec.features is not None:
            features = list(spec.features)
        else:
            base = columns if spec.id is None else [c for c in columns if c not in spec.id]
            features = [c for c in base if c not in drop]
        if not features:
            raise DataError("No feature columns are left for the detector.",
                            hint="check columns.features / columns.id / columns.exclude against the data's columns")
        self.feature_columns = features
        self.preprocessors = [spec.build() for spec in self.config.preprocess]  # fitted later, in fit()
        kept = list(features)
        for pre in self.preprocessors:
            kept = pre.output_columns(kept)
        used = [c for c in features if c in kept] or features
        self.text_columns = sorted({c for pre in self.preprocessors for c in pre.text_columns(used)},
                                   key=used.index)
        self.numeric_columns = [c for c in used if c not in self.text_columns]

    def _check(self, frame: pd.DataFrame, row_start: int = 0, where: str = "input",
               row_numbers: np.ndarray | None = None, policy: str | None = None) -> validation.Checked:
        allow_nan = any(spec.cls.handles_missing for spec in self.config.preprocess)
        return validation.check(frame, self.numeric_columns, policy=policy or self.config.validation.on_invalid,
                                allow_nan=allow_nan, row_start=row_start, where=where, row_numbers=row_numbers)

    def _features(self, checked: validation.Checked, fit: bool = False) -> np.ndarray:
        values = checked.numeric
        if self.imputer is not None:
            values = self.imputer.transform(values)
        if self.preprocessors:
            frame = pd.DataFrame(values, columns=self.numeric_columns, index=checked.frame.index)
            for col in self.text_columns:
                frame[col] = checked.frame[col]
            for pre in self.preprocessors:
                frame = pre.fit(frame).transform(frame) if fit else pre.transform(frame)
            values = frame.to_numpy(dtype=np.float64, na_value=np.nan)
        if not np.isfinite(values).all():
            raise DataError("Values are still missing or infinite after preprocessing.",
                            hint="add {type: impute} to preprocess, or set validation.on_invalid: impute")
        return values

    def _training_scores(self, X: np.ndarray) -> np.ndarray:
        scores = getattr(self.detector, "training_scores_", None)
        if scores is not None and len(scores) == len(X):
            return np.asarray(scores, dtype=np.float64)
        limit = self.config.calibration.max_rows
        if len(X) > limit:
            X = X[np.random.default_rng(0).choice(len(X), limit, replace=False)]
        return self._detect(X)

    def labels(self, frame: pd.DataFrame, column: str | None = None) -> np.ndarray | None:
        """The ground-truth column (``column``, default ``columns.label``) as floats, NaN where unusable;
        None without one."""
        label = column or self.config.columns.label
        if not label or label not in frame.columns:
            return None
        return pd.to_numeric(frame[label], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)

    def _detect(self, X: np.ndarray) -> np.ndarray:
        try:
            scores = np.asarray(self.detector.score(X), dtype=np.float64).reshape(-1)
        except AdpipeError:
            raise
        except Exception as exc:
            raise ModelError(f"Detector '{self.config.detector.type}' failed to score: {type(exc).__name__}: {exc}"
                             ) from exc
        if len(scores) != len(X):
            raise PluginError(f"Detector '{self.config.detector.type}' returned {len(scores)} scores for "
                              f"{len(X)} rows.")
        return scores

    # ------------------------------------------------------------------ scoring
    def score(self, data: Any) -> pd.DataFrame:
        """Score a table and return the result frame (rejected rows are left out)."""
        result, _ = self.score_batch(to_frame(data))
        return result

    def explain(self, data: Any, top: int | None = None, rows: str = "flagged") -> pd.DataFrame:
        """Explain the flagged records of ``data`` (``top`` default: ``explain.top_features``; see
        :func:`adpipe.core.explain.explain`)."""
        from adpipe.core.explain import explain

        return explain(self, data, top=top or self.config.explain.top_features, rows=rows)

    def score_one(self, record: Mapping[str, Any], run_id: str = "") -> dict[str, Any]:
        """Score one record (column -> value) in-process: its id columns plus the result columns.

        Without preprocessing stages no frame is built (the fast path for services and streams). A
        record with a missing feature or an unusable value raises :class:`adpipe.DataError` (with
        ``validation.on_invalid: impute`` it is imputed instead).
        """
        if self.detector is None:
            raise ModelError("The model is not fitted.", hint="fit the pipeline first")
        if not isinstance(record, Mapping):
            raise DataError(f"score_one takes a mapping of column -> value, got {type(record).__name__}.",
                            hint="pass a dict such as {'amount': 12.5, ...}; use score(frame) for tables")
        missing = [c for c in self.feature_columns if c not in record]
        if missing:
            raise SchemaMismatchError(f"The record lacks feature(s) {', '.join(map(repr, missing))}.",
                                      [f"missing column {c!r}" for c in missing],
                                      hint=f"the model's features are {', '.join(self.feature_columns)}")
        if self.preprocessors or self.imputer is not None:
            frame = pd.DataFrame([dict(record)])
            result, rejected = self.score_batch(frame, run_id=run_id, policy=None)
            if not len(result):
                raise DataError(f"The record cannot be scored: {rejected[schema.REJECT_REASON].iloc[0]}.")
            return result.iloc[0].to_dict()
        try:
            x = np.array([[record[c] for c in self.numeric_columns]], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            bad = [c for c in self.numeric_columns if not _is_number(record[c])]
            raise DataError(f"The record has a value that is not a number in {', '.join(map(repr, bad))}: {exc}.",
                            hint=f"features {', '.join(self.numeric_columns)} must be numbers") from None
        if not np.isfinite(x).all():
            bad = [c for c, v in zip(self.numeric_columns, x[0]) if not np.isfinite(v)]
            raise DataError(f"The record has missing or infinite value(s) in {', '.join(map(repr, bad))}.",
                            hint="send finite numbers, or fit with validation.on_invalid: impute")
        scores = self._detect(x)
        probs, flags, severity = self.label(scores)
        out = {c: record.get(c) for c in self.id_columns}
        out.update({schema.SCORE: float(scores[0]), schema.PROBABILITY: float(probs[0]),
                    schema.LABEL: int(flags[0]), schema.SEVERITY: str(severity[0]),
                    schema.MODEL_VERSION: self.model_version, schema.RUN_ID: run_id})
        return out

    def score_batch(self, frame: pd.DataFrame, row_start: int = 0, run_id: str = "",
                    timer: StageTimer | None = None, known_scores: pd.Series | None = None,
                    policy: str | None = None, learn: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Score one batch: returns (result frame, rejected rows with reject_reason).

        ``known_scores``: raw scores already computed for these rows (by index), e.g. the training scores.
        ``policy`` overrides ``validation.on_invalid`` (a stream rejects rows instead of raising).
        ``learn``: an online detector learns the batch's rows after scoring them.
        """
        timer = timer or StageTimer()
        if self.detector is None:
            raise ModelError("The model is not fitted.", hint="fit the pipeline first")
        with timer("validate", rows=len(frame)):
            if self.schema is not None:
                self.schema.check(frame)
            else:
                validation.require_columns(frame, [c for c in dict.fromkeys([*self.feature_columns, *self.id_columns])
                                                   if c != self.config.columns.label])
            checked = self._check(frame, row_start=row_start, policy=policy)
        ids = [c for c in self.id_columns if c in frame.columns or c != self.config.columns.label]
        result = checked.frame[ids].copy() if ids else pd.DataFrame(index=checked.frame.index)
        known = np.zeros(len(checked.frame), dtype=bool)
        if known_scores is not None and len(checked.frame):
            known = checked.frame.index.isin(known_scores.index)
        scores = np.empty(len(checked.frame))
        if known.any():
            scores[known] = known_scores.loc[checked.frame.index[known]].to_numpy()
        if not known.all():
            todo = checked if not known.any() else _subset(checked, np.flatnonzero(~known))
            with timer("preprocess"):
                X = self._features(todo)
            with timer("detect"):
                scores[~known] = self._detect(X)
                if learn and len(X):
                    self.detector.learn(X)
        probs, flags, severity = self.label(scores, timer)
        columns = {schema.SCORE: scores, schema.PROBABILITY: probs, schema.LABEL: flags.astype(np.int8),
                   schema.SEVERITY: severity, schema.MODEL_VERSION: self.model_version, schema.RUN_ID: run_id}
        explain = getattr(self.config, "explain", None)
        if explain is not None and explain.column:  # optional: off by default, costs nothing then
            from adpipe.core.explain import EXPLANATION, explanation_column

            with timer("explain"):
                columns[EXPLANATION] = explanation_column(self, checked, flags, explain.top_features)
        added = pd.DataFrame(columns, index=result.index)
        result = pd.concat([result.drop(columns=[c for c in columns if c in result.columns]), added], axis=1)
        return result, checked.rejected

    def score_values(self, frame: pd.DataFrame, policy: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Score, probability, label and severity for the rows of ``frame`` that pass validation.

        Needs only the feature columns and skips the schema check: for callers that checked the schema
        once for many batches (Spark executors). Returns (results indexed like the kept rows, rejected
        rows with ``reject_reason``).
        """
        if self.detector is None:
            raise ModelError("The model is not fitted.", hint="fit the pipeline first")
        validation.require_columns(frame, self.feature_columns)
        checked = self._check(frame, policy=policy)
        scores = self._detect(self._features(checked)) if len(checked.frame) else np.empty(0)
        probs, flags, severity = self.label(scores)
        results = pd.DataFrame({schema.SCORE: scores, schema.PROBABILITY: probs,
                                schema.LABEL: flags.astype(np.int8), schema.SEVERITY: severity},
                               index=checked.frame.index)
        return results, checked.rejected

    def label(self, scores: np.ndarray, timer: StageTimer | None = None):
        """Raw scores -> (probabilities, anomaly flags, severities)."""
        timer = timer or StageTimer()
        with timer("calibrate"):
            probs = self.calibrator.transform(scores)
        with timer("threshold"):
            flags = np.asarray(self.threshold.predict(scores, probs), dtype=bool) if len(scores) else \
                np.empty(0, dtype=bool)
            severity = self.severity(probs, flags)
        return probs, flags, severity

    def severity(self, probs: np.ndarray, flags: np.ndarray) -> np.ndarray:
        sev = self.config.severity
        band = np.searchsorted([sev.medium, sev.high, sev.critical], probs, side="right") + 1
        names = np.array(schema.SEVERITIES, dtype=object)
        return names[np.where(flags, band, 0)]

    # ------------------------------------------------------------------ messages (adpipe.core.messages)
    def score_records(self, records: Sequence[Mapping[str, Any]], run_id: str = "") -> "BatchResult":
        """Score a list of records (column -> value): a :class:`adpipe.core.messages.BatchResult`.

        Records with unusable values are rejected with a reason (``RejectedRecord.index`` is the record's
        position), or imputed under ``validation.on_invalid: impute``; records lacking one of the model's
        columns altogether raise :class:`adpipe.SchemaMismatchError`.
        """
        result, batch = self.score_table(records_frame(records), run_id=run_id)
        batch.results = result_rows(result)
        return batch

    def score_table(self, frame: pd.DataFrame, run_id: str = "") -> "tuple[pd.DataFrame, BatchResult]":
        """Score a frame of records as a batch request: (result frame, :class:`BatchResult` with the counts
        and the rejected rows but no ``results``; ``RejectedRecord.index`` is the row's position)."""
        from adpipe.core.messages import BatchResult, RejectedRecord

        started = time.perf_counter()
        frame = frame.reset_index(drop=True)
        if len(frame) == 0:
            result, rejected = pd.DataFrame({schema.LABEL: []}), pd.DataFrame({schema.REJECT_REASON: []})
        else:
            policy = "drop" if self.config.validation.on_invalid == "raise" else None
            result, rejected = self.score_batch(frame, run_id=run_id, policy=policy)
        reasons = [RejectedRecord.model_construct(index=int(i), reason=str(r))
                   for i, r in zip(rejected.index, rejected[schema.REJECT_REASON].tolist(), strict=True)]
        batch = BatchResult.model_construct(
            model=self.config.name, model_version=self.model_version, run_id=run_id, rows_in=len(frame),
            rows_scored=len(result), rows_rejected=len(rejected), anomalies=int(result[schema.LABEL].sum()),
            seconds=round(time.perf_counter() - started, 6), results=[], columns=None, rejected=reasons)
        return result, batch


def result_rows(result: pd.DataFrame) -> list[dict[str, Any]]:
    """A result frame as a list of plain dicts (Python scalars), column by column (fast)."""
    columns = list(result.columns)
    values = [result[c].tolist() for c in columns]
    return [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]


def records_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """A DataFrame from records (column -> value), built column by column (the fast way for JSON records).

    Columns are those of the first record, or the union in first-seen order when records differ; a
    record lacking a column gets a missing value there.
    """
    if not isinstance(records, Sequence) or not all(type(r) is dict or isinstance(r, Mapping) for r in records):
        raise DataError("Records must be a list of mappings (column -> value).",
                        hint='send e.g. [{"amount": 12.5, "hour": 3}, ...]')
    if not records:
        return pd.DataFrame()
    order = tuple(records[0])
    if all(tuple(r) == order for r in records):  # the usual case: rows as tuples (pandas infers each column)
        return pd.DataFrame.from_records([tuple(r.values()) for r in records], columns=list(order))
    columns = list(dict.fromkeys(k for r in records for k in r))
    return pd.DataFrame({c: [r.get(c) for r in records] for c in columns}, columns=columns)


def _is_number(value: Any) -> bool:
    if value is None:  # missing, reported as such
        return True
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
