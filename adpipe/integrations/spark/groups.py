"""Fit one pipeline per group (per merchant, per machine, ...) with Spark's ``applyInPandas``.

Each group arrives at one executor as one pandas DataFrame, is fitted there and its rows are scored
by its own model. Memory: a group must fit in an executor's Python worker, about
rows x columns x 8 bytes x 3 (Arrow batch, pandas frame, feature matrix) plus the model; a group of
10 million rows x 20 features needs roughly 5 GB. Split huge groups further (add a column to
``group_cols``) or sample them before fitting.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Iterable, Literal

import pandas as pd

from adpipe.core import schema as cols
from adpipe.core.errors import AdpipeError, ConfigError

GROUP, GROUP_ROWS, MODEL_PATH = "adpipe_group", "adpipe_group_rows", "adpipe_model_path"
POOLED = "(small groups pooled)"
#: config sections a per-group fit uses; sources, sinks and alerts stay on the driver
FIT_KEYS = ("name", "columns", "preprocess", "detector", "threshold", "calibration", "severity", "validation")


def _config(config: str | os.PathLike | dict, overrides: Iterable[str], base_dir: Path | None):
    from adpipe.core.config import load_config

    if isinstance(config, dict):
        cfg = load_config(data=config, base_dir=base_dir)
    else:
        cfg = load_config(config, list(overrides))
    if cfg.detector is None:
        raise ConfigError("fit_per_group needs a config with a detector.")
    raw = {k: v for k, v in (cfg.raw or {}).items() if k in FIT_KEYS}
    return cfg, raw


def fit_per_group(df: Any, group_cols: str | list[str], config: str | os.PathLike | dict, *,
                  overrides: Iterable[str] = (), min_group_rows: int = 50,
                  small_groups: Literal["pool", "skip"] = "pool", models_dir: str | os.PathLike | None = None,
                  base_dir: str | os.PathLike | None = None):
    """Fit the config's pipeline on each group of ``df`` and score the group's rows with it.

    Returns ``df`` with the result columns (as :func:`score_frame`) plus ``adpipe_group`` (the group's
    key as JSON, or the pooled marker) and ``adpipe_group_rows``. Groups with fewer than
    ``min_group_rows`` rows are too small to fit alone: ``small_groups="pool"`` (default) fits one model
    on all of them together, ``"skip"`` leaves them unscored (null results, a ``reject_reason``). A group
    whose fit fails (e.g. no valid rows) is not scored either, and its ``reject_reason`` says why; the
    other groups go on. With ``models_dir`` each group's model is saved there (a folder every executor
    can write) and ``adpipe_model_path`` names the file.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from adpipe.core.context import new_run_id
    from adpipe.integrations.spark.scoring import append_results, result_fields

    group_cols = [group_cols] if isinstance(group_cols, str) else list(group_cols)
    if not group_cols:
        raise ConfigError("fit_per_group needs at least one group column.")
    missing = [c for c in group_cols if c not in df.columns]
    if missing:
        raise ConfigError(f"Group column(s) {', '.join(missing)} are not in the DataFrame.",
                          hint=f"it has: {', '.join(df.columns)}")
    if small_groups not in ("pool", "skip"):
        raise ConfigError(f"small_groups must be 'pool' or 'skip', got {small_groups!r}.")
    if min_group_rows < 2:
        raise ConfigError(f"min_group_rows must be at least 2, got {min_group_rows}.")
    cfg, raw = _config(config, overrides, Path(base_dir) if base_dir else None)
    wanted = [*(cfg.columns.features or []), *(cfg.columns.id or [])]
    needed = [c for c in dict.fromkeys(wanted) if c not in df.columns]
    if needed:
        raise ConfigError(f"The config's column(s) {', '.join(needed)} are not in the DataFrame.",
                          hint=f"it has: {', '.join(df.columns)}")
    base = str(cfg.base_dir)
    run_id = new_run_id()
    out_dir = str(Path(models_dir).expanduser().resolve()) if models_dir else None
    if out_dir:
        Path(out_dir).mkdir(parents=True, exist_ok=True)

    rows = F.count(F.lit(1)).over(Window.partitionBy(*group_cols))
    key = F.to_json(F.struct(*[F.col(c) for c in group_cols]))
    small = rows < min_group_rows
    keyed = df.withColumn(GROUP_ROWS, rows).withColumn(
        GROUP, F.when(small, F.lit(POOLED) if small_groups == "pool" else F.concat(F.lit("small:"), key))
        .otherwise(key))
    extra = [T.StructField(GROUP, T.StringType()), T.StructField(GROUP_ROWS, T.LongType())]
    if out_dir:
        extra.append(T.StructField(MODEL_PATH, T.StringType()))
    schema = T.StructType([*df.schema.fields, *result_fields(), *extra])
    names = [f.name for f in schema.fields]

    def fit_group(frame: pd.DataFrame) -> pd.DataFrame:
        name = frame[GROUP].iloc[0]
        if name.startswith("small:"):
            frame[GROUP] = name[len("small:"):]
            return _unscored(frame, f"group has {len(frame)} rows, fewer than min_group_rows={min_group_rows}",
                             names)
        if len(frame) < min_group_rows:
            return _unscored(frame, f"the pooled small groups have {len(frame)} rows, fewer than "
                                    f"min_group_rows={min_group_rows}", names)
        try:
            model = _fit(raw, base, frame.drop(columns=[GROUP, GROUP_ROWS]))
        except AdpipeError as exc:
            return _unscored(frame, f"fit failed: {exc.message}", names)
        append_results(frame, model, run_id)
        if out_dir:
            frame[MODEL_PATH] = str(model.save(Path(out_dir) / _file_name(name)))
        return frame[names]

    return keyed.groupBy(GROUP).applyInPandas(fit_group, schema)


def _fit(raw: dict, base_dir: str, frame: pd.DataFrame):
    from adpipe.core.config import load_config
    from adpipe.core.engine import FittedPipeline

    return FittedPipeline.fit(load_config(data=raw, base_dir=Path(base_dir)), frame)


def _unscored(frame: pd.DataFrame, reason: str, names: list[str]) -> pd.DataFrame:
    for name in names:
        if name not in frame.columns:
            frame[name] = None
    frame[cols.REJECT_REASON] = reason
    return frame[names]


def _file_name(key: str) -> str:
    """A safe, unique file name for a group's model: readable part of the key plus a short hash."""
    readable = re.sub(r"[^A-Za-z0-9_.=-]+", "_", key).strip("_")[:60] or "group"
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:8]}.adpipe"
