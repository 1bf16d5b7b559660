"""Missing-value imputation with scikit-learn's SimpleImputer."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

import adpipe
from adpipe.plugins.preprocess._common import (
    check_fitted,
    fit_sklearn,
    numeric_block,
    rebuild,
    require_data_columns,
    select_columns,
)
from adpipe.plugins.preprocess.scalers import COLUMNS_DOC


class Impute(adpipe.Preprocessor):
    """Fill missing numeric values with a statistic learned on the training data (sklearn SimpleImputer).

    ±inf is treated as missing too. A column with no observed value in the
    training data cannot be imputed by a statistic: use ``strategy: constant``
    or leave it out.
    """

    name = "impute"
    handles_missing = True

    class Params(adpipe.Params):
        strategy: Literal["mean", "median", "most_frequent", "constant"] = adpipe.Field(
            "median", description="how the fill value of each column is learned"
        )
        fill_value: float | None = adpipe.Field(
            None, description="value used by strategy=constant (null = 0); ignored otherwise"
        )
        columns: list[str] | None = adpipe.Field(None, min_length=1, description=COLUMNS_DOC)

    def _block(self, frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
        X = numeric_block(self.name, frame, columns)
        inf = np.isinf(X)
        return np.where(inf, np.nan, X) if inf.any() else X

    def fit(self, frame: pd.DataFrame) -> "Impute":
        p = self.params
        columns = select_columns(self.name, p.columns, frame)
        X = self._block(frame, columns)
        if p.strategy != "constant":
            empty = [c for c, ok in zip(columns, (~np.isnan(X)).any(axis=0)) if not ok]
            if empty and len(X):
                raise adpipe.DataError(
                    f"impute: column(s) {', '.join(map(repr, empty))} have no value in the training data, "
                    f"so strategy={p.strategy!r} has nothing to learn from.",
                    hint="use strategy: constant, or leave these columns out",
                )
        from sklearn.impute import SimpleImputer  # imported on use: plugin discovery stays fast
        imputer = SimpleImputer(strategy=p.strategy, fill_value=p.fill_value, keep_empty_features=True)
        self.imputer_ = fit_sklearn(self.name, imputer, X)
        self.columns_ = columns
        return self

    @property
    def fill_values_(self) -> dict[str, Any]:
        """The learned fill value of each column."""
        check_fitted(self)
        return dict(zip(self.columns_, self.imputer_.statistics_.tolist()))

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        check_fitted(self)
        require_data_columns(self.name, self.columns_, frame)
        return rebuild(frame, self.columns_, self.imputer_.transform(self._block(frame, self.columns_)))
