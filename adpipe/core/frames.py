"""Turn what users pass to the Python API into a pandas DataFrame."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adpipe.core.errors import DataError, SourceError

MAX_DENSE_CELLS = 200_000_000


def to_frame(data: Any) -> pd.DataFrame:
    """A DataFrame from what Python users pass in; arrays and plain rows get columns ``x0..x{n-1}``.

    Accepts a DataFrame or Series, a CSV/Parquet/JSON Lines path, a numpy array, a SciPy sparse matrix,
    a list of rows or of dicts, a dict of columns, or anything with ``to_pandas()`` (pyarrow, polars).
    """
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pd.Series):
        return data.to_frame()
    if isinstance(data, (str, Path)):
        return _read_path(Path(data))
    if hasattr(data, "tocsr") and hasattr(data, "shape"):  # scipy.sparse
        check_dense_size(*data.shape)
        data = data.toarray()
    if isinstance(data, np.ndarray) and not data.dtype.names:
        array = data.reshape(-1, 1) if data.ndim == 1 else data
        if array.ndim != 2:
            raise DataError(f"Expected 2-D data (rows x features), got an array of shape {data.shape}.",
                            hint="reshape it to (n_rows, n_features)")
        return pd.DataFrame(array, columns=x_columns(array.shape[1]))
    if hasattr(data, "to_pandas"):  # pyarrow / polars tables
        return to_frame(data.to_pandas())
    if isinstance(data, (list, tuple)) and data and all(isinstance(r, (list, tuple)) for r in data) \
            and len({len(r) for r in data}) > 1:
        raise DataError("The rows have different lengths.", hint="every row must have the same number of values")
    try:  # list of rows, list of dicts, dict of columns, numpy structured array
        frame = pd.DataFrame(data)
    except (TypeError, ValueError) as exc:
        raise DataError(f"Cannot turn {type(data).__name__} into a table of records: {exc}",
                        hint="pass a pandas DataFrame, a 2-D numpy array, a list of rows or a CSV path") from None
    if isinstance(frame.columns, pd.RangeIndex):
        frame.columns = x_columns(frame.shape[1])
    return frame


def x_columns(n: int) -> list[str]:
    return [f"x{i}" for i in range(n)]


def check_dense_size(rows: int, cols: int) -> None:
    if rows * cols > MAX_DENSE_CELLS:
        raise DataError(
            f"The sparse input ({rows:,} x {cols:,}) would need {rows * cols:,} dense cells, more than the "
            f"{MAX_DENSE_CELLS:,} adpipe allows in memory.",
            hint="reduce the number of features (e.g. TruncatedSVD) or write the data to Parquet and use a file "
                 "source",
        )


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
