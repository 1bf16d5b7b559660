"""The engine: fit a pipeline, then score batches and deliver them.

Per batch: validate -> preprocess -> detect -> calibrate -> threshold ->
write every sink -> alert -> acknowledge to the source. Memory is bounded by
the batch size, except for the training data (all rows, or ``fit.sample_rows``).
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd

from adpipe.core import schema, validation
from adpipe.core.calibration import Calibrator
from adpipe.core.config import PipelineConfig, load_config
from adpipe.core.errors import AdpipeError, ConfigError, DataError, ModelError, PluginError
from adpipe.core.frames import to_frame
from adpipe.core.plugin import Batch, Detector, Preprocessor, Source, Threshold
from adpipe.core.registry import Registry, get_registry
from adpipe.core.runner import Runner, fitting_status
from adpipe.core.spill import Spill
from adpipe.core.summary import RunSummary, StageTimer


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
        timer = StageTimer()
        with timer("read_training"):
            frame = to_frame(data) if data is not None else self._read_training()
        rows = None if data is not None else frame.index.to_numpy()
        self.model_ = FittedPipeline.fit(self.config, frame, timer=timer, row_numbers=rows)
        return self.model_

    def _read_training(self, spill: Spill | None = None) -> pd.DataFrame:
        cfg = self.config
        spec = cfg.fit_source or cfg.source
        if spec is None:
            raise ConfigError("No training data: the config has neither `source` nor `fit.source`.",
                              hint="add a source, or pass data to fit()")
        source = spec.build()
        if not source.finite and cfg.fit.sample_rows is None:
            raise ConfigError(f"The {spec.type} source never ends, so it cannot be read whole for training.",
                              hint="set fit.source to a finite training source")
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
    def run(self, *, progress: bool = False, write_summary: bool = True, sinks: list | None = None) -> RunSummary:
        """Fit on the training data, then score the source into every sink."""
        cfg = self.config
        if cfg.source is None:
            raise ConfigError("The config has no `source` to score.", hint="add source: {type: csv, path: ...}")
        timer = StageTimer()
        started = time.perf_counter()
        one_source = cfg.fit_source is None and cfg.source.cls.finite
        whole = one_source and cfg.fit.sample_rows is None
        # a sample of the source: keep the parsed batches for the scoring pass (sources that need
        # acknowledgements are read again instead)
        spill = Spill() if (one_source and not whole and cfg.engine.spill and cfg.source.cls.ack is Source.ack) \
            else None
        try:
            with fitting_status(progress):
                with timer("read_training"):
                    frame = self._read_training(spill)
                self.model_ = FittedPipeline.fit(cfg, frame, timer=timer, row_numbers=frame.index.to_numpy())
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
        self.fit_scores_: pd.Series | None = None  # raw scores of the training rows, by row

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
        with timer("validate"):
            checked = self._check(frame, where="training data", row_numbers=row_numbers)
        if len(checked.frame) == 0:
            raise DataError("No valid training rows remain after validation.", hint="inspect the reject output")
        with timer("preprocess"):
            if self.config.validation.on_invalid == "impute":
                from sklearn.impute import SimpleImputer

                self.imputer = SimpleImputer(strategy="median", keep_empty_features=True).fit(checked.numeric)
            X = self._features(checked, fit=True)
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
            if len(train_scores) == len(checked.frame):  # kept only until a run has scored these rows
                self.fit_scores_ = pd.Series(train_scores, index=checked.frame.index)
            self.calibrator = Calibrator(self.config.calibration.method).fit(train_scores)
            probs = self.calibrator.transform(train_scores)
        with timer("threshold"):
            labels = self.labels(checked.frame) if len(train_scores) == len(checked.frame) else None
            self.threshold = self.config.threshold.build().fit(train_scores, probs, labels)
        fitted_at = datetime.now(timezone.utc).isoformat()
        digest = hashlib.sha256(json.dumps(self.config.to_dict(), sort_keys=True, default=str).encode()
                                + fitted_at.encode()).hexdigest()
        self.model_version = f"{self.config.name}-{digest[:10]}"
        self.training = {
            "rows": int(len(checked.frame)),
            "rejected": int(len(checked.rejected)),
            "features": len(self.feature_columns),
            "seconds": round(time.perf_counter() - t0, 4),
            "fitted_at": fitted_at,
            "sampled": config.fit.sample_rows is not None,
            "score_quantiles": {q: float(np.quantile(train_scores, q)) for q in (0.0, 0.5, 0.9, 0.99, 1.0)},
        }
        return self

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
               row_numbers: np.ndarray | None = None) -> validation.Checked:
        allow_nan = any(spec.cls.handles_missing for spec in self.config.preprocess)
        return validation.check(frame, self.numeric_columns, policy=self.config.validation.on_invalid,
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

    def labels(self, frame: pd.DataFrame) -> np.ndarray | None:
        """The ground-truth column (``columns.label``) as floats, NaN where unusable; None without one."""
        label = self.config.columns.label
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

    def score_batch(self, frame: pd.DataFrame, row_start: int = 0, run_id: str = "",
                    timer: StageTimer | None = None,
                    known_scores: pd.Series | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Score one batch: returns (result frame, rejected rows with reject_reason).

        ``known_scores``: raw scores already computed for these rows (by index), e.g. the training scores.
        """
        timer = timer or StageTimer()
        if self.detector is None:
            raise ModelError("The model is not fitted.", hint="fit the pipeline first")
        with timer("validate"):
            validation.require_columns(frame, [*self.feature_columns, *(c for c in self.id_columns
                                                                         if c not in self.feature_columns)])
            checked = self._check(frame, row_start=row_start)
        result = checked.frame[self.id_columns].copy() if self.id_columns else pd.DataFrame(index=checked.frame.index)
        if known_scores is not None and len(checked.frame) and checked.frame.index.isin(known_scores.index).all():
            scores = known_scores.loc[checked.frame.index].to_numpy()
        elif len(checked.frame):
            with timer("preprocess"):
                X = self._features(checked)
            with timer("detect"):
                scores = self._detect(X)
        else:
            scores = np.empty(0)
        probs, flags, severity = self.label(scores, timer)
        result[schema.SCORE] = scores
        result[schema.PROBABILITY] = probs
        result[schema.LABEL] = flags.astype(np.int8)
        result[schema.SEVERITY] = severity
        result[schema.MODEL_VERSION] = self.model_version
        result[schema.RUN_ID] = run_id
        return result, checked.rejected

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
