"""Parquet sink: pyarrow ``ParquetWriter``, one row group per batch, published atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import adpipe
from adpipe.core.errors import SinkError
from adpipe.plugins.sinks._atomic import FileSink


def first_schema(frame: pd.DataFrame) -> pa.Schema:
    """Arrow schema of the first batch; all-missing text columns (type null) become strings."""
    schema = pa.Schema.from_pandas(frame, preserve_index=False)
    for i, field in enumerate(schema):
        if pa.types.is_null(field.type):
            schema = schema.set(i, field.with_type(pa.large_string()))
    return schema


def conform(frame: pd.DataFrame, schema: pa.Schema, target: Path) -> pa.Table:
    """``frame`` as an Arrow table of exactly ``schema`` (columns matched by name, values cast)."""
    missing = [n for n in schema.names if n not in frame.columns]
    extra = [c for c in frame.columns if c not in schema.names]
    if missing or extra:
        raise SinkError(
            f"A batch for '{target}' has different columns from the first batch "
            f"(missing: {missing or 'none'}, new: {extra or 'none'}).",
            hint="every batch written to one file sink must have the same columns",
        )
    table = pa.Table.from_pandas(frame[schema.names], preserve_index=False)
    arrays = []
    for field in schema:
        column = table.column(field.name)
        try:
            arrays.append(column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise SinkError(
                f"Column '{field.name}' of a batch for '{target}' is {column.type}, and cannot be stored as "
                f"{field.type} like in the first batch: {exc}",
                hint="give that column one type in every batch",
            ) from exc
    return pa.Table.from_arrays(arrays, schema=schema)


class ParquetSink(FileSink):
    """Write results to a Parquet file (atomically replaced on success)."""

    name = "parquet"

    class Params(FileSink.Params):
        compression: Literal["snappy", "gzip", "brotli", "zstd", "lz4", "none"] = adpipe.Field(
            "snappy", description="column compression codec"
        )
        dictionary: Literal["auto", "all", "none"] = adpipe.Field(
            "auto",
            description="dictionary encoding: 'auto' for every column but floating-point ones (scores and "
            "measurements rarely repeat, and trying costs time on every row group), 'all' or 'none'",
        )

    _writer: pq.ParquetWriter | None = None

    def _start(self, tmp: Path) -> None:
        self._writer = None  # created on the first frame: its schema comes from that frame

    def _write(self, frame: pd.DataFrame) -> None:
        frame = frame.rename(columns=str)  # Arrow and Parquet name columns with strings
        try:
            if self._writer is None:
                schema = first_schema(frame)
                table = conform(frame, schema, self.target)
                self._writer = pq.ParquetWriter(self._tmp, schema, compression=self.params.compression,
                                                use_dictionary=self._dictionary(schema))
            else:
                table = conform(frame, self._writer.schema, self.target)
            self._writer.write_table(table)
        except pa.ArrowException as exc:
            raise SinkError(f"Cannot write Parquet output '{self.target}': {exc}") from exc

    def _dictionary(self, schema: pa.Schema) -> bool | list[str]:
        if self.params.dictionary != "auto":
            return self.params.dictionary == "all"
        return [f.name for f in schema if not pa.types.is_floating(f.type)]

    def _finish(self, tmp: Path) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()
        elif not tmp.exists():  # no rows at all: still publish a valid (empty) file
            pq.write_table(pa.table({}), tmp, compression=self.params.compression)
