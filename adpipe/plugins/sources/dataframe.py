"""In-memory source for the Python API: a DataFrame, array, list of rows or sparse matrix."""

from __future__ import annotations

import sys
from typing import Any, Iterator

import numpy as np
import pandas as pd

import adpipe
from adpipe.core.errors import DataError
from adpipe.plugins.sources._files import empty_input

MAX_DENSE_CELLS = 200_000_000  # ~1.6 GB of float64


def _columns(n: int) -> list[str]:
    return [f"x{i}" for i in range(n)]


def _sparse(data: Any) -> Any:
    """``data`` as a CSR matrix if it is a scipy sparse matrix/array, else None (scipy is not imported here)."""
    sparse = sys.modules.get("scipy.sparse")
    if sparse is None or not sparse.issparse(data):
        return None
    rows, cols = data.shape
    if rows * cols > MAX_DENSE_CELLS:
        raise DataError(
            f"The sparse input ({rows} x {cols}) would need {rows * cols:,} dense cells, more than the "
            f"{MAX_DENSE_CELLS:,} adpipe allows in memory.",
            hint="reduce the number of features (e.g. TruncatedSVD) or write the data to Parquet and use a file source",
        )
    return data.tocsr()


def to_frame(data: Any) -> pd.DataFrame:
    """Turn what a Python user passes in into a DataFrame (arrays and rows get columns x0..x{n-1})."""
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pd.Series):
        return data.to_frame()
    if isinstance(data, np.ndarray) and not data.dtype.names:
        array = data.reshape(-1, 1) if data.ndim == 1 else data
        if array.ndim != 2:
            raise DataError(
                f"Input data must be 2-D (rows x features), got an array of shape {data.shape}.",
                hint="pass a pandas DataFrame, a 2-D numpy array or a list of rows",
            )
        return pd.DataFrame(array, columns=_columns(array.shape[1]))
    if hasattr(data, "to_pandas"):  # pyarrow / polars tables
        return to_frame(data.to_pandas())
    try:  # list of rows, list of dicts, dict of columns, numpy structured array
        frame = pd.DataFrame(data)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"Cannot turn {type(data).__name__} into a table of records: {exc}",
            hint="pass a pandas DataFrame, a 2-D numpy array or a list of rows",
        ) from exc
    if isinstance(frame.columns, pd.RangeIndex):
        frame.columns = _columns(frame.shape[1])
    return frame


class DataFrameSource(adpipe.Source):
    """Score data held in memory (pandas DataFrame, numpy array, list of rows, scipy sparse)."""

    name = "dataframe"

    class Params(adpipe.Params):
        data: Any = adpipe.Field(
            description="a pandas DataFrame; also a 2-D numpy array or list of rows (columns x0..x{n-1}), "
            "a list of dicts, or a scipy sparse matrix"
        )

    def __init__(self, params=None, **kwargs: Any):
        super().__init__(params, **kwargs)
        data = self.params.data
        self._csr = _sparse(data)
        self._frame = None if self._csr is not None else to_frame(data)

    @property
    def shape(self) -> tuple[int, int]:
        return self._csr.shape if self._csr is not None else self._frame.shape

    def batches(self, batch_rows: int) -> Iterator[adpipe.Batch]:
        rows = self.shape[0]
        if rows == 0:
            raise empty_input("dataframe", "0 rows")
        for start in range(0, rows, batch_rows):
            stop = min(start + batch_rows, rows)
            if self._csr is not None:  # densify one batch at a time
                frame = pd.DataFrame(
                    self._csr[start:stop].toarray(), columns=_columns(self.shape[1]), index=pd.RangeIndex(start, stop)
                )
            else:
                frame = self._frame.iloc[start:stop]
            yield adpipe.Batch(frame, {"source": "dataframe", "row_start": start, "rows": stop - start})

    def __repr__(self) -> str:
        kind = "sparse matrix" if self._csr is not None else "DataFrame"
        return f"DataFrameSource(<{kind} {self.shape[0]} x {self.shape[1]}>)"
