"""In-memory source for the Python API: a DataFrame, array, list of rows or sparse matrix."""

from __future__ import annotations

import sys
from typing import Any, Iterator

import pandas as pd

import adpipe
from adpipe.core.frames import check_dense_size, to_frame, x_columns
from adpipe.plugins.sources._files import empty_input

def _sparse(data: Any) -> Any:
    """``data`` as a CSR matrix if it is a scipy sparse matrix/array, else None (scipy is not imported here)."""
    sparse = sys.modules.get("scipy.sparse")
    if sparse is None or not sparse.issparse(data):
        return None
    check_dense_size(*data.shape)
    return data.tocsr()


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
                    self._csr[start:stop].toarray(), columns=x_columns(self.shape[1]), index=pd.RangeIndex(start, stop)
                )
            else:
                frame = self._frame.iloc[start:stop]
            yield adpipe.Batch(frame, {"source": "dataframe", "row_start": start, "rows": stop - start})

    def __repr__(self) -> str:
        kind = "sparse matrix" if self._csr is not None else "DataFrame"
        return f"DataFrameSource(<{kind} {self.shape[0]} x {self.shape[1]}>)"
