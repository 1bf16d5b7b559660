"""Spark source and sink: read tables, paths or queries through a Spark session; write results back.

PySpark is imported on first use (inside methods), so listing plugins stays fast.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any, ClassVar, Iterator, Literal

import pandas as pd
from pydantic import model_validator

import adpipe
from adpipe.core.errors import AdpipeError, DataError, SinkError, SourceError
from adpipe.plugins.sources._files import PATH_HINT

OptionValue = str | bool | int | float  # Spark takes option values as strings; true -> "true"
TABLE_HINT = "check the name (db.table, catalog.db.table) and that the table or temp view exists in this Spark session"
HINTS = {"PATH_NOT_FOUND": PATH_HINT, "TABLE_OR_VIEW_NOT_FOUND": TABLE_HINT}


def spark_message(exc: BaseException) -> str:
    """Spark's own message for ``exc``, without JVM stack frames."""
    from pyspark.errors import PySparkException

    if isinstance(exc, PySparkException):
        text = exc.getMessage()
    elif getattr(exc, "java_exception", None) is not None:  # a JVM error PySpark did not convert
        error, text = exc.java_exception, ""
        while error is not None and not text:  # skip wrappers ("Exception thrown in awaitResult")
            text = str(error.getMessage() or "")
            text = "" if text.startswith("Exception thrown in awaitResult") else text
            error = error.getCause()
    else:
        text = str(exc)
    text = str(text).split("\nDriver stacktrace:")[0]
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("at ")).strip()


@contextlib.contextmanager
def spark_errors(error: type[AdpipeError], what: str, hint: str | None = None) -> Iterator[None]:
    """Turn Spark's errors into ``error`` ("{what}: {Spark's message}"), and keep PySpark's own noise for them
    quiet: PySpark 4 logs every analysis error as JSON with the whole JVM stack, and warns about pandas 3."""
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException
    from pyspark.logger import PySparkLogger

    loggers = [PySparkLogger.getLogger(n) for n in ("SQLQueryContextLogger", "DataFrameQueryContextLogger")]
    disabled = [log.disabled for log in loggers]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
            for log in loggers:
                log.disabled = True
            yield
    except (PySparkException, Py4JError) as exc:
        condition = exc.getCondition() if isinstance(exc, PySparkException) else None
        err = error(f"{what}: {spark_message(exc)}", hint=HINTS.get(condition or "", hint))
        # a raw Py4JJavaError prints the JVM stack: keep it out of the traceback
        raise err from (exc if isinstance(exc, PySparkException) else None)
    finally:
        for log, was in zip(loggers, disabled, strict=True):
            log.disabled = was


class SparkParams(adpipe.Params):
    """What the Spark source and sink share: one target, its format and options, the session."""

    targets: ClassVar[tuple[str, ...]] = ("table", "path")

    table: str | None = adpipe.Field(
        None, min_length=1, description="table or view in the session's catalog (db.table, catalog.db.table)"
    )
    path: str | Path | None = adpipe.Field(
        None, description="file or folder (any Hadoop URI: s3a://, hdfs://, abfss://); relative local paths "
        "resolve against the config file's folder"
    )
    format: str = adpipe.Field(
        "parquet", min_length=1, description="Spark data source of `path`: parquet, csv, json, orc, delta (needs "
        "its package on the session), ...; for a `table`, only used when set"
    )
    options: dict[str, OptionValue] = adpipe.Field(
        default_factory=dict, description="data source options, e.g. {header: true} for csv"
    )
    master: str | None = adpipe.Field(
        None, description="Spark master for a session adpipe starts (default local[*]); an active session is "
        "used as it is"
    )
    conf: dict[str, OptionValue] = adpipe.Field(
        default_factory=dict, description="Spark settings for a session adpipe starts (ignored when one is active)"
    )

    @model_validator(mode="after")
    def _one_target(self):
        given = [n for n in self.targets if getattr(self, n) is not None]
        if len(given) != 1:
            names = ", ".join(f"`{n}`" for n in self.targets)
            raise ValueError(f"give exactly one of {names}" + (f" (got {' and '.join(given)})" if given else ""))
        return self

    @property
    def target(self) -> str:
        return next(str(getattr(self, n)) for n in self.targets if getattr(self, n) is not None)

    def spark(self):
        from adpipe.integrations.spark.session import get_spark

        return get_spark(self.master, self.conf)


class SparkSource(adpipe.Source):
    """Read a Spark table, a path (parquet, csv, json, delta, ...) or a SQL query through a Spark session.

    `where` and `columns` run in Spark, before anything reaches the driver. The executors turn the rows
    into Arrow batches (``mapInArrow``) and the driver fetches them one Spark partition at a time
    (``toLocalIterator(prefetchPartitions=True)``), so driver memory stays bounded: the JVM holds the
    partition being read and the next one; Python holds one Arrow batch
    (``spark.sql.execution.arrow.maxRecordsPerBatch`` rows), the rows waiting to fill a batch of
    ``batch_rows``, and that batch as pandas. ``DataFrame.toArrow()``/``toPandas()`` would hold the whole
    result. Rows come in the DataFrame's order. Column types are Spark's, through Arrow: numbers stay
    numbers (decimals become float64), strings become pandas ``str``, timestamps are tz-aware UTC.
    Executors need pyarrow (as for any pandas UDF), not adpipe.
    """

    name = "spark"
    requires = ("pyspark",)
    install_hint = "pip install 'adpipe[spark]'"

    class Params(SparkParams):
        targets: ClassVar[tuple[str, ...]] = ("table", "path", "query")

        query: str | None = adpipe.Field(None, min_length=1, description="a Spark SQL query to read")
        columns: list[str] | None = adpipe.Field(None, min_length=1, description="read only these columns")
        where: str | None = adpipe.Field(
            None, min_length=1, description="a Spark SQL filter, e.g. \"day = '2024-06-01'\" (runs in Spark)"
        )

    @property
    def what(self) -> str:
        p = self.params
        if p.table is not None:
            return f"Spark table '{p.table}'"
        return f"{p.format} path '{p.path}' (Spark)" if p.path is not None else "Spark SQL query"

    def dataframe(self):
        """The Spark DataFrame this source reads (nothing is computed yet)."""
        p = self.params
        local = p.path is not None and "://" not in str(p.path) and not any(c in str(p.path) for c in "*?[{")
        if local and not Path(p.path).exists():  # say so before Spark logs a JVM stack trace about it
            raise SourceError(f"Cannot read {self.what}: it does not exist.", hint=PATH_HINT)
        with spark_errors(SourceError, f"Cannot read {self.what}"):
            spark = p.spark()
            if p.query is not None:
                df = spark.sql(p.query)
            elif p.table is not None:
                reader = spark.read.options(**p.options)
                df = (reader.format(p.format) if "format" in p.model_fields_set else reader).table(p.table)
            else:
                df = spark.read.format(p.format).options(**p.options).load(str(p.path))
            if p.where is not None:
                df = df.where(p.where)
            if p.columns is not None:
                df = df.select(*p.columns)
            decimals = [f.name for f in df.schema.fields if f.dataType.typeName() == "decimal"]
            return df.withColumns({c: df[c].cast("double") for c in decimals}) if decimals else df

    def arrow_batches(self, df) -> Iterator[Any]:
        """The rows of ``df`` as Arrow record batches, one Spark partition at a time."""
        import pyarrow as pa

        def to_ipc(batches):  # on the executors; nested, so cloudpickle ships it by value (no adpipe there)
            import pyarrow as pa

            for batch in batches:  # each Arrow batch becomes one cell of Arrow IPC bytes
                sink = pa.BufferOutputStream()
                with pa.ipc.new_stream(sink, batch.schema) as writer:
                    writer.write_batch(batch)
                yield pa.record_batch([pa.array([sink.getvalue().to_pybytes()], pa.binary())], names=["ipc"])

        with spark_errors(SourceError, f"Cannot read {self.what}"):
            cells = df.mapInArrow(to_ipc, "ipc binary").toLocalIterator(prefetchPartitions=True)
        while True:
            with spark_errors(SourceError, f"Reading {self.what} failed"):  # Spark runs a job per partition
                row = next(cells, None)
            if row is None:
                return
            yield from pa.ipc.open_stream(pa.py_buffer(row[0]))

    def batches(self, batch_rows: int) -> Iterator[adpipe.Batch]:
        from adpipe.plugins.sources.parquet import rebatch

        row = 0
        for table in rebatch(self.arrow_batches(self.dataframe()), batch_rows):
            frame = table.to_pandas()
            yield adpipe.Batch(frame, {"spark": self.params.target, "row_start": row, "rows": len(frame)})
            row += len(frame)
        if row == 0:
            raise DataError(f"{self.what} has no rows: there are no records to score.",
                            hint="check the source's `where`, query, table or path")


class SparkSink(adpipe.Sink):
    """Write results to a Spark table or path (parquet, csv, json, delta, ...) through a Spark session.

    Each ``write`` is one Spark job, committed before it returns (``durable``). `mode` is for the whole run:
    ``overwrite`` replaces the table/path with this run's rows (the first write overwrites, later ones
    append), ``append`` adds to it, ``error`` fails at ``open`` when it exists already. Nothing is rolled
    back: after a failed run (``close(success=False)``) the batches written so far stay, and with
    ``overwrite`` the previous contents are gone once the first batch is written. Appended rows are not
    deduplicated on the id columns, so a redelivered stream batch is written twice. Every batch is cast
    to the first batch's Arrow types; text columns with no values at all are stored as strings.
    """

    name = "spark"
    durable = True
    requires = ("pyspark",)
    install_hint = "pip install 'adpipe[spark]'"

    class Params(SparkParams):
        mode: Literal["append", "overwrite", "error"] = adpipe.Field(
            "overwrite", description="for the whole run: overwrite (replace with this run's rows), append, "
            "or error (fail if the target exists)"
        )
        partition_by: list[str] | None = adpipe.Field(
            None, min_length=1, description="partition the output by these columns (folders col=value)"
        )

    _spark = None
    _schema = None  # Arrow schema of the first batch
    _writes = 0

    @property
    def what(self) -> str:
        p = self.params
        return f"Spark table '{p.table}'" if p.table is not None else f"{p.format} path '{p.path}' (Spark)"

    def open(self, context: Any = None) -> None:
        self._schema, self._writes = None, 0
        with spark_errors(SinkError, f"Cannot open {self.what}"):
            self._spark = self.params.spark()
            if self.params.mode == "error" and self.exists():
                raise SinkError(f"{self.what} exists already, and the sink's mode is 'error'.",
                                hint="write elsewhere, remove it, or set mode: overwrite or append")

    def exists(self) -> bool:
        spark, p = self._spark, self.params
        if p.table is not None:
            return spark.catalog.tableExists(p.table)
        jvm = getattr(spark, "_jvm", None)
        if jvm is None:  # Spark Connect: only local paths can be checked (the first write still refuses)
            return "://" not in str(p.path) and Path(p.path).exists()
        hadoop_path = jvm.org.apache.hadoop.fs.Path(str(p.path))  # s3a://, hdfs://, local files alike
        return hadoop_path.getFileSystem(spark._jsc.hadoopConfiguration()).exists(hadoop_path)

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa

        from adpipe.plugins.sinks.parquet import conform, first_schema

        if self._spark is None:
            raise SinkError("The spark sink was written to before open().", hint="call open(context) first")
        if frame.empty and self._writes:  # appending nothing changes nothing
            return
        frame = frame.rename(columns=str)
        p = self.params
        missing = [c for c in p.partition_by or [] if c not in frame.columns]
        if missing:
            raise SinkError(f"Cannot partition {self.what} by {missing}: the results have no such column.",
                            hint="carry it into the output with columns.id (e.g. id: [id, segment])")
        try:
            if self._schema is None:
                self._schema = first_schema(frame)
            table = conform(frame, self._schema, self.params.target)
        except pa.ArrowException as exc:
            raise SinkError(f"Cannot convert {len(frame)} result rows for {self.what}: {exc}") from exc
        mode = {"error": "errorifexists"}.get(p.mode, p.mode) if not self._writes else "append"
        with spark_errors(SinkError, f"Writing {len(frame)} rows to {self.what} failed"):
            writer = self._spark.createDataFrame(table).write.mode(mode).options(**p.options)
            if p.partition_by:
                writer = writer.partitionBy(*p.partition_by)
            if p.path is not None:
                writer.format(p.format).save(str(p.path))
            else:
                (writer.format(p.format) if "format" in p.model_fields_set else writer).saveAsTable(p.table)
        self._writes += 1

    def close(self, success: bool) -> None:
        """Nothing to publish or roll back: every write was committed by its own Spark job."""
        self._spark = None

    def outputs(self) -> list[str]:
        return [self.params.target]
