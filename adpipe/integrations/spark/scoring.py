"""Score Spark DataFrames with an adpipe model: a pandas UDF and whole-frame scoring (mapInPandas).

The model travels to the executors once, as a broadcast of its bytes (default) or as a model file every
executor can read, and each executor's Python worker loads it once and keeps it for every later Arrow
batch and task (Spark reuses Python workers).
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal

import numpy as np
import pandas as pd

from adpipe.core import schema as cols
from adpipe.core.errors import ConfigError, SchemaMismatchError

if TYPE_CHECKING:
    from adpipe.core.engine import FittedPipeline

#: models loaded in this process (an executor's Python worker), by content digest or file identity
_CACHE: dict[str, Any] = {}
#: how many times this process loaded each model (once, while the worker lives)
LOADS: Counter[str] = Counter()
OUTPUTS = ("struct", "score", "probability", "label")


class ModelHandle:
    """What executors need to get the model: a broadcast of its pickled bytes, or a model file path.

    ``transport="broadcast"`` (default) sends the model from the driver's memory once per executor; it
    needs nothing shared. ``transport="file"`` has every executor read the model file itself (a path on
    storage they all see: HDFS mounted, NFS, a shared volume); executors need no signing key, since they
    accept the file only if its content is exactly what the driver checked (SHA-256 of the payload).
    Either way the driver loads the model first, so trust and integrity are checked once, there.
    """

    def __init__(self, model: "FittedPipeline | str | os.PathLike", spark: Any, *,
                 transport: Literal["broadcast", "file"] = "broadcast", trusted: bool = False, store: Any = None):
        from adpipe.core.engine import FittedPipeline
        from adpipe.core.model import load_model

        if transport not in ("broadcast", "file"):
            raise ConfigError(f"transport must be 'broadcast' or 'file', got {transport!r}.")
        fitted = model if isinstance(model, FittedPipeline) else load_model(str(model), store=store, trusted=trusted)
        self.model = fitted  # driver side only (not pickled)
        self.path, self._broadcast = None, None
        if transport == "file":
            if isinstance(model, FittedPipeline):
                raise ConfigError("transport='file' needs a model file or store reference, not a model object.",
                                  hint="pass the .adpipe path (or NAME@VERSION), or use transport='broadcast'")
            self.path = _model_path(str(model), store)
            self.digest = fitted.metadata["payload"]["sha256"]  # what the driver checked and trusted
            self.key = f"file:{self.path}:{self.digest}"
        else:
            payload = pickle.dumps(fitted, protocol=5)
            self.key = "bytes:" + hashlib.sha256(payload).hexdigest()
            self._broadcast = spark.sparkContext.broadcast(payload)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "model"}

    def get(self) -> "FittedPipeline":
        """The model, loaded at most once per Python process."""
        model = _CACHE.get(self.key)
        if model is None:
            if self._broadcast is not None:
                model = pickle.loads(self._broadcast.value)  # bytes the driver made from its own model
            else:
                from adpipe.core.model import load

                model = load(self.path, trusted=True, expect_sha256=self.digest)
            _CACHE[self.key] = model
            LOADS[self.key] += 1
        return model

    def destroy(self) -> None:
        """Free the broadcast on the executors (after the last job that uses it)."""
        if self._broadcast is not None:
            self._broadcast.destroy()


def _model_path(ref: str, store: Any) -> str:
    from adpipe.core.model import is_path_ref
    from adpipe.core.store import ModelStore

    if is_path_ref(ref):
        return str(Path(ref).expanduser().resolve())
    if ":/" in ref:
        raise ConfigError(f"transport='file' cannot read {ref!r} on executors.", hint="use transport='broadcast'")
    return str(ModelStore(store).resolve(ref).path)


# --------------------------------------------------------------------------- schema check (driver)
def _kind(dtype: Any) -> str | None:
    from pyspark.sql import types as T

    if isinstance(dtype, (T.NumericType, T.BooleanType)):
        return "numeric"
    if isinstance(dtype, (T.StringType, T.CharType, T.VarcharType)):
        return "text"
    if isinstance(dtype, (T.TimestampType, T.TimestampNTZType, T.DateType)):
        return "datetime"
    if isinstance(dtype, T.DayTimeIntervalType):
        return "timedelta"
    return None


def check_columns(df: Any, model: "FittedPipeline", need_ids: bool = True) -> None:
    """Raise :class:`adpipe.SchemaMismatchError` when ``df`` lacks a column the model needs or has one of
    another kind (numeric, text, datetime) than at fit. Runs on the driver: no Spark job starts."""
    fields = {f.name: f.dataType for f in df.schema.fields}
    needed = list(dict.fromkeys([*model.feature_columns, *(model.id_columns if need_ids else [])]))
    known = {c.name: c for c in model.schema.columns} if model.schema is not None else {}
    diffs = [f"missing column '{name}'" + (f" ({known[name].dtype} in training)" if name in known else "")
             for name in needed if name not in fields]
    for name in model.feature_columns:
        col = known.get(name)
        now = _kind(fields[name]) if name in fields else None
        if col is not None and col.kind and now and now != col.kind:
            diffs.append(f"column '{name}' was {col.kind} ({col.dtype}) in training, is now {now} "
                         f"({fields[name].simpleString()})")
    if diffs:
        raise SchemaMismatchError(
            "The Spark DataFrame does not match the model's feature schema:\n  - " + "\n  - ".join(diffs), diffs,
            hint=f"the model needs {', '.join(needed)}; select or cast the DataFrame's columns to match")


# --------------------------------------------------------------------------- the scoring UDF
def _policy(model: "FittedPipeline") -> str:
    """Rows that fail validation get null results rather than failing the Spark job (unless imputed)."""
    return "impute" if model.config.validation.on_invalid == "impute" else "drop"


def _result_type(output: str):
    from pyspark.sql import types as T

    fields = {"score": T.DoubleType(), "probability": T.DoubleType(), "label": T.ByteType()}
    if output == "struct":
        return T.StructType([T.StructField(cols.SCORE, fields["score"]),
                             T.StructField(cols.PROBABILITY, fields["probability"]),
                             T.StructField(cols.LABEL, fields["label"])])
    return fields[output]


def score_udf(model: "FittedPipeline | str | os.PathLike", output: str = "struct", *, spark: Any = None,
              transport: Literal["broadcast", "file"] = "broadcast", trusted: bool = False, store: Any = None):
    """A pandas UDF (iterator form) that scores the model's feature columns, passed as one struct.

        udf = score_udf(model)                                    # or a path / NAME@production
        df = df.withColumn("adpipe", udf(F.struct(*udf.feature_columns)))
        df.select("id", "adpipe.anomaly_score", "adpipe.is_anomaly")

    ``output``: ``struct`` (anomaly_score, anomaly_probability, is_anomaly), or one of ``score``,
    ``probability``, ``label`` alone. Rows with missing or non-finite features get nulls (or are
    imputed when the model's ``validation.on_invalid`` is ``impute``). The UDF has the attributes
    ``feature_columns`` and ``model_version``.
    """
    from pyspark.sql.functions import pandas_udf

    from adpipe.integrations.spark.session import get_spark

    if output not in OUTPUTS:
        raise ConfigError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}.")
    handle = ModelHandle(model, spark or get_spark(), transport=transport, trusted=trusted, store=store)
    features, policy = list(handle.model.feature_columns), _policy(handle.model)
    pick = {"score": cols.SCORE, "probability": cols.PROBABILITY, "label": cols.LABEL}.get(output)
    result_columns = [cols.SCORE, cols.PROBABILITY, cols.LABEL]

    def score(batches):
        fitted = handle.get()
        for frame in batches:
            values, _ = fitted.score_values(frame, policy)
            out = values[result_columns].reindex(frame.index)
            out[cols.LABEL] = out[cols.LABEL].astype("Int8")
            yield out if pick is None else out[pick]

    # Spark reads the UDF's form from its type hints: frames in, a frame (struct) or a series out
    score.__annotations__ = {"batches": Iterator[pd.DataFrame],
                             "return": Iterator[pd.DataFrame] if pick is None else Iterator[pd.Series]}
    udf = pandas_udf(score, _result_type(output))  # type: ignore[call-overload]
    udf.feature_columns = features
    udf.model_version = handle.model.model_version
    return udf


# --------------------------------------------------------------------------- whole frames
def result_fields(with_reject_reason: bool = True):
    """The DESIGN.md result columns as Spark fields."""
    from pyspark.sql import types as T

    fields = [T.StructField(cols.SCORE, T.DoubleType()), T.StructField(cols.PROBABILITY, T.DoubleType()),
              T.StructField(cols.LABEL, T.ByteType()), T.StructField(cols.SEVERITY, T.StringType()),
              T.StructField(cols.MODEL_VERSION, T.StringType()), T.StructField(cols.RUN_ID, T.StringType())]
    if with_reject_reason:
        fields.append(T.StructField(cols.REJECT_REASON, T.StringType()))
    return fields


def score_frame(df: Any, model: "FittedPipeline | str | os.PathLike", *, run_id: str | None = None,
                transport: Literal["broadcast", "file"] = "broadcast", trusted: bool = False, store: Any = None):
    """``df`` with the result columns appended (``mapInPandas``): anomaly_score, anomaly_probability,
    is_anomaly, severity, model_version, run_id, and reject_reason for rows that failed validation
    (their results are null; nothing is dropped).

    The columns are checked against the model's schema on the driver first, so a missing or re-typed
    feature raises :class:`adpipe.SchemaMismatchError` before any task runs. Lazy, like any Spark
    transformation: nothing is scored until an action (write, count, collect).
    """
    from adpipe.core.context import new_run_id

    handle = ModelHandle(model, df.sparkSession, transport=transport, trusted=trusted, store=store)
    clash = [f.name for f in result_fields() if f.name in df.columns]
    if clash:
        raise SchemaMismatchError(f"The Spark DataFrame already has result column(s) {', '.join(clash)}.", clash,
                                  hint="drop or rename them before scoring")
    check_columns(df, handle.model)
    from pyspark.sql import types as T

    out_schema = T.StructType([*df.schema.fields, *result_fields()])
    run_id = run_id or new_run_id()

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        fitted = handle.get()
        for frame in batches:
            yield append_results(frame, fitted, run_id)

    return df.mapInPandas(score, out_schema)


def append_results(frame: pd.DataFrame, model: "FittedPipeline", run_id: str) -> pd.DataFrame:
    """Score ``frame`` and append the result columns in place; rows that fail validation keep their place
    with null results and a ``reject_reason``."""
    values, rejected = model.score_values(frame, _policy(model))
    out = values.reindex(frame.index)
    for name in (cols.SCORE, cols.PROBABILITY, cols.SEVERITY):
        frame[name] = out[name].to_numpy()
    frame[cols.LABEL] = out[cols.LABEL].astype("Int8").to_numpy()
    frame[cols.MODEL_VERSION] = model.model_version
    frame[cols.RUN_ID] = run_id
    reasons = np.full(len(frame), None, dtype=object)
    if len(rejected):
        reasons[frame.index.get_indexer(rejected.index)] = rejected[cols.REJECT_REASON].to_numpy()
    frame[cols.REJECT_REASON] = reasons
    return frame
