"""Parquet source: a file or a folder of files, read batch by batch with pyarrow."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.dataset as ds

import adpipe
from adpipe.core.errors import SourceError
from adpipe.plugins.sources._files import empty_input, meta, missing_columns, require_path

SUFFIXES = {".parquet", ".pq", ".parq"}


def parquet_files(folder: Path) -> list[str]:
    """Parquet files under ``folder``, skipping hidden and ``_``-prefixed entries (temp files, _SUCCESS)."""
    return sorted(
        str(f)
        for f in folder.rglob("*")
        if f.suffix in SUFFIXES and f.is_file()
        and not any(part.startswith((".", "_")) for part in f.relative_to(folder).parts)
    )


def rebatch(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Regroup record batches (cut at row-group edges) into tables of exactly ``rows`` rows, the last shorter."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        count += batch.num_rows
        while count >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(pending)


class ParquetSource(adpipe.Source):
    """Read a Parquet file, or a folder of Parquet files, in batches (pyarrow)."""

    name = "parquet"

    class Params(adpipe.Params):
        path: Path = adpipe.Field(
            description="Parquet file, or folder of .parquet files (hive partitions become columns); "
            "relative paths resolve against the config file's folder"
        )
        columns: list[str] | None = adpipe.Field(None, min_length=1, description="read only these columns")

    def batches(self, batch_rows: int) -> Iterator[adpipe.Batch]:
        path = require_path(self.params.path, folder_ok=True)
        dataset = self._dataset(path)
        columns = self.params.columns
        if columns and not set(columns) <= set(dataset.schema.names):
            raise missing_columns(path, columns, dataset.schema.names)
        scanner = dataset.scanner(columns=columns, batch_size=batch_rows, batch_readahead=1, fragment_readahead=1)
        row = 0
        try:
            for table in rebatch(scanner.to_batches(), batch_rows):
                frame = table.to_pandas()
                yield adpipe.Batch(frame, meta(path, row, frame))
                row += len(frame)
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(f"Cannot read Parquet data '{path}': {exc}") from exc
        if row == 0:
            raise empty_input(path, "it holds no rows")

    @staticmethod
    def _dataset(path: Path) -> ds.Dataset:
        if path.is_dir():
            files = parquet_files(path)
            if not files:
                raise empty_input(path, f"a folder with no {'/'.join(sorted(SUFFIXES))} files")
            source, base = files, str(path)
        else:
            source, base = str(path), None
        try:
            return ds.dataset(source, format="parquet", partitioning="hive", partition_base_dir=base)
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(
                f"Cannot open '{path}' as Parquet: {exc}",
                hint="check that the file is a complete Parquet file (not CSV or JSON, not cut short)",
            ) from exc
