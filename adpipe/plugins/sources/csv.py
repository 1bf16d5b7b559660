"""CSV source: ``pandas.read_csv`` in chunks, so memory follows the batch size."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Literal

import pandas as pd
from pydantic import field_validator

import adpipe
from adpipe.core.errors import DataError, SourceError
from adpipe.plugins.sources._files import check_dtypes, check_encoding, empty_input, meta, missing_columns, require_path


class CsvSource(adpipe.Source):
    """Read a CSV file in batches (pandas.read_csv with chunksize)."""

    name = "csv"

    class Params(adpipe.Params):
        path: Path = adpipe.Field(description="CSV file; relative paths resolve against the config file's folder")
        sep: str = adpipe.Field(",", min_length=1, description="field delimiter")
        encoding: str = adpipe.Field("utf-8", description="text encoding, e.g. utf-8, latin-1, cp1252")
        columns: list[str] | None = adpipe.Field(None, min_length=1, description="read only these columns")
        dtype: dict[str, str] | None = adpipe.Field(None, description="column -> pandas dtype, e.g. {account: str}")
        na_values: list[str] | None = adpipe.Field(None, description="extra strings read as missing values")
        header: int | None = adpipe.Field(0, ge=0, description="line number of the header row; null: no header")
        names: list[str] | None = adpipe.Field(None, description="column names (for files without a header)")
        skiprows: int = adpipe.Field(0, ge=0, description="lines to skip at the start of the file")
        comment: str | None = adpipe.Field(None, min_length=1, max_length=1, description="comment character")
        decimal: str = adpipe.Field(".", min_length=1, max_length=1, description="decimal point character")
        thousands: str | None = adpipe.Field(None, min_length=1, max_length=1, description="thousands separator")
        quotechar: str = adpipe.Field('"', min_length=1, max_length=1, description="quote character")
        compression: Literal["infer", "gzip", "bz2", "zip", "xz", "zstd"] | None = adpipe.Field(
            "infer", description="compression; 'infer' guesses it from the file name (.gz, .bz2, .zip, .xz, .zst)"
        )
        max_rows: int | None = adpipe.Field(None, ge=1, description="read at most this many records")

        _dtypes = field_validator("dtype")(check_dtypes)

        _encoding = field_validator("encoding")(check_encoding)

    _reader = None

    def batches(self, batch_rows: int) -> Iterator[adpipe.Batch]:
        p = self.params
        path = require_path(p.path)
        try:
            reader = pd.read_csv(
                path, chunksize=batch_rows, sep=p.sep, encoding=p.encoding, usecols=p.columns, dtype=p.dtype,
                na_values=p.na_values, header=p.header, names=p.names, skiprows=p.skiprows or None,
                comment=p.comment, decimal=p.decimal, thousands=p.thousands, quotechar=p.quotechar,
                compression=p.compression, nrows=p.max_rows,
            )  # fmt: skip
        except (ValueError, OSError) as exc:
            raise self._error(exc) from exc
        self._reader = reader
        row = 0
        with reader:
            chunks = iter(reader)
            while True:
                try:
                    chunk = next(chunks)
                except StopIteration:
                    break
                except (ValueError, OSError) as exc:
                    raise self._error(exc) from exc
                if len(chunk):
                    yield adpipe.Batch(chunk, meta(path, row, chunk))
                    row += len(chunk)
        if row == 0:
            raise empty_input(path, "it has a header but no data rows")

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _error(self, exc: Exception) -> Exception:
        path, p = self.params.path, self.params
        if isinstance(exc, pd.errors.EmptyDataError):
            return empty_input(path, "no header and no data")
        if isinstance(exc, UnicodeDecodeError):
            return SourceError(
                f"Cannot read '{path}': it is not valid {p.encoding} text ({exc}).",
                hint="set the source's `encoding` (e.g. latin-1 or cp1252) to the file's encoding",
            )
        if isinstance(exc, pd.errors.ParserError):
            return SourceError(
                f"Cannot parse CSV file '{path}': {exc}",
                hint=f"every row needs as many fields as the header; check that `sep` ({p.sep!r}) and "
                f"`quotechar` ({p.quotechar!r}) match the file, and look at the line named above",
            )
        if isinstance(exc, ValueError) and "Usecols do not match" in str(exc):
            return missing_columns(path, p.columns or [], self._header())
        if isinstance(exc, DataError):
            return exc
        return SourceError(f"Cannot read CSV file '{path}': {type(exc).__name__}: {exc}")

    def _header(self) -> list[str]:
        p = self.params
        try:
            head = pd.read_csv(p.path, nrows=0, sep=p.sep, encoding=p.encoding, header=p.header, names=p.names,
                               skiprows=p.skiprows or None, comment=p.comment, compression=p.compression)
        except (ValueError, OSError):
            return []
        return [str(c) for c in head.columns]
