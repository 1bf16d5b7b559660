"""Turn what users pass to the Python API into a pandas DataFrame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adpipe.core.errors import DataError, SourceError

MAX_DENSE_CELLS = 200_000_000


def to_frame(data: Any) -> pd.DataFrame:
    """DataFrame, Series, ndarray, list of lists, SciPy sparse matrix or CSV/Parquet path."""
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pd.Series):
        return data.to_frame()
    if isinstance(data, (str, Path)):
        return _read_path(Path(data))
    if hasattr(data, "tocsr") and hasattr(data, "shape"):  # scipy.sparse
        rows, cols = data.shape
        if rows * cols > MAX_DENSE_CELLS:
            raise DataError(f"The sparse matrix ({rows:,} x {cols:,}) is too large to densify for the detectors.",
                            hint="reduce it first, e.g. with TruncatedSVD, or score it in row slices")
        data = data.toarray()
    try:
        arr = np.asarray(data)
    except Exception as exc:
        raise DataError(f"Cannot turn {type(data).__name__} into a table: {exc}",
                        hint="pass a pandas DataFrame, a 2-D numpy array, a list of rows or a CSV path") from None
    if arr.dtype == object and arr.ndim == 1 and len(arr) and isinstance(arr[0], (list, tuple)):
        raise DataError("The rows have different lengths.", hint="every row must have the same number of values")
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise DataError(f"Expected 2-D data (rows x features), got an array of shape {arr.shape}.",
                        hint="reshape it to (n_rows, n_features)")
    return pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])


def _read_path(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise SourceError(f"Input file not found: {path} (resolved to {path.resolve()}).",
                          hint="check the path; relative paths resolve against the current directory here")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if path.suffix.lower() in (".jsonl", ".ndjson"):
            return pd.read_json(path, lines=True)
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"The file {path} is empty.", hint="give a file with a header row and data rows") from None
    except (ValueError, OSError) as exc:
        raise SourceError(f"Cannot read {path}: {exc}") from None
