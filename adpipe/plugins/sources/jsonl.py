"""JSON Lines source: ``pandas.read_json(lines=True)`` in chunks of batch_rows lines."""

from __future__ import annotations

import bz2
import gzip
import itertools
import json
import lzma
from pathlib import Path
from typing import Iterator

import pandas as pd
from pydantic import field_validator

import adpipe
from adpipe.core.errors import DataError, SourceError
from adpipe.plugins.sources._files import check_dtypes, check_encoding, empty_input, meta, missing_columns, require_path

OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def find_bad_line(path: Path, encoding: str, start: int, count: int) -> tuple[int, str] | None:
    """1-based number and JSON error of the first line in ``[start, start+count)`` that is not valid JSON."""
    opener = OPENERS.get(path.suffix, open)
    try:
        with opener(path, "rt", encoding=encoding, errors="replace") as fh:
            for number, line in enumerate(itertools.islice(fh, start, start + count), start + 1):
                if line.strip():
                    try:
                        json.loads(line)
                    except ValueError as exc:
                        return number, str(exc)
    except OSError:
        pass
    return None


class JsonlSource(adpipe.Source):
    """Read a JSON Lines file (one JSON object per line) in batches."""

    name = "jsonl"

    class Params(adpipe.Params):
        path: Path = adpipe.Field(
            description="JSON Lines file (.jsonl, also .gz/.bz2/.xz); relative paths resolve against the "
            "config file's folder"
        )
        columns: list[str] | None = adpipe.Field(None, min_length=1, description="keep only these fields")
        dtype: dict[str, str] | None = adpipe.Field(
            None, description="field -> pandas dtype; default: as JSON has it (numbers stay numbers, no date guessing)"
        )
        encoding: str = adpipe.Field("utf-8", description="text encoding")

        _dtypes = field_validator("dtype")(check_dtypes)

        _encoding = field_validator("encoding")(check_encoding)

    _reader = None

    def batches(self, batch_rows: int) -> Iterator[adpipe.Batch]:
        p = self.params
        path = require_path(p.path)
        try:
            # dtype=False: keep JSON's own types; pandas would otherwise turn numeric fields named
            # like dates (event_time, timestamp, ...) into datetimes
            reader = pd.read_json(path, lines=True, chunksize=batch_rows, encoding=p.encoding, dtype=False)
        except (ValueError, OSError) as exc:
            raise self._error(exc, 0, batch_rows) from exc
        self._reader = reader
        row = 0
        with reader:
            for index in itertools.count():
                try:
                    chunk = next(reader)
                except StopIteration:
                    break
                except (ValueError, OSError) as exc:
                    raise self._error(exc, index * batch_rows, batch_rows) from exc
                if p.columns:
                    if not set(p.columns) <= set(chunk.columns):
                        raise missing_columns(path, p.columns, list(chunk.columns))
                    chunk = chunk[p.columns]
                if p.dtype:
                    chunk = self._cast(chunk, row)
                if len(chunk):
                    chunk.index = pd.RangeIndex(row, row + len(chunk))
                    yield adpipe.Batch(chunk, meta(path, row, chunk))
                    row += len(chunk)
        if row == 0:
            raise empty_input(path, "no JSON records")

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _cast(self, chunk: pd.DataFrame, row: int) -> pd.DataFrame:
        wanted = {c: t for c, t in (self.params.dtype or {}).items() if c in chunk.columns}
        try:
            return chunk.astype(wanted)
        except (ValueError, TypeError) as exc:
            raise DataError(
                f"Cannot convert records {row + 1}-{row + len(chunk)} of '{self.params.path}' to the dtypes "
                f"{wanted}: {exc}",
                hint="fix the values, or the source's `dtype`",
            ) from exc

    def _error(self, exc: Exception, start: int, count: int) -> SourceError:
        path = self.params.path
        if isinstance(exc, UnicodeDecodeError):
            return SourceError(
                f"Cannot read '{path}': it is not valid {self.params.encoding} text ({exc}).",
                hint="set the source's `encoding` to the file's encoding",
            )
        if isinstance(exc, OSError):
            return SourceError(f"Cannot read JSON Lines file '{path}': {exc}")
        bad = find_bad_line(path, self.params.encoding, start, count)
        where = f"line {bad[0]}: {bad[1]}" if bad else f"lines {start + 1}-{start + count}: {exc}"
        return SourceError(
            f"Malformed JSON Lines file '{path}', {where}",
            hint="each line must be one complete JSON object, e.g. {\"id\": 1, \"amount\": 9.5}",
        )
