"""What every file source shares: checking the path, typed errors, batch metadata."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import pandas as pd
from pandas.api.types import pandas_dtype

from adpipe.core.errors import DataError, SourceError

PATH_HINT = "check the source's `path`; in a config, relative paths resolve against the config file's folder"


def require_path(path: Path, *, folder_ok: bool = False) -> Path:
    """Return ``path`` if it exists (a file, or a folder when ``folder_ok``), else raise SourceError."""
    if not path.exists():
        raise SourceError(f"Input file not found: '{path}' (resolved to '{path.resolve()}').", hint=PATH_HINT)
    if path.is_dir() and not folder_ok:
        raise SourceError(f"Input path '{path}' is a folder, not a file.", hint=PATH_HINT)
    return path


def empty_input(path: Path | str, detail: str) -> DataError:
    return DataError(
        f"Input '{path}' is empty ({detail}): there are no records to score.",
        hint="check that the file was completely written, and that the source points at the right file",
    )


def missing_columns(path: Path | str, wanted: list[str], available: list[str]) -> DataError:
    missing = [c for c in wanted if c not in available]
    return DataError(
        f"Input '{path}' has no column(s) {', '.join(map(repr, missing))}.",
        hint=f"the source's `columns` must name existing columns; available: {', '.join(map(str, available))}",
    )


def meta(source: Path | str, row_start: int, frame: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    return {"source": str(source), "row_start": row_start, "rows": len(frame), **extra}


def check_dtypes(value: dict[str, str] | None) -> dict[str, str] | None:
    """Pydantic validator: every value must be a dtype pandas understands."""
    for column, dtype in (value or {}).items():
        try:
            pandas_dtype(dtype)
        except TypeError:
            raise ValueError(f"column {column!r}: {dtype!r} is not a pandas dtype (try float64, int64, str, category)")
    return value


def check_encoding(value: str) -> str:
    """Pydantic validator: a text encoding Python knows."""
    try:
        codecs.lookup(value)
    except LookupError:
        raise ValueError(f"unknown text encoding {value!r} (try utf-8, latin-1, cp1252)") from None
    return value
