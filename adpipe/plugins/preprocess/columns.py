"""Column selection: keep (``select``) or remove (``drop``) named columns."""

from __future__ import annotations

import pandas as pd

import adpipe
from adpipe.plugins.preprocess._common import check_fitted, require_config_columns, require_data_columns


class ColumnsParams(adpipe.Params):
    columns: list[str] = adpipe.Field(..., min_length=1, description="column names (required)")


class Select(adpipe.Preprocessor):
    """Keep only the named columns, in the order given."""

    name = "select"

    class Params(ColumnsParams):
        pass

    def output_columns(self, columns: list[str]) -> list[str]:
        present = set(columns)
        return [c for c in self.params.columns if c in present]

    def fit(self, frame: pd.DataFrame) -> "Select":
        require_config_columns(self.name, self.params.columns, frame.columns)
        self.columns_ = list(self.params.columns)
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        check_fitted(self)
        require_data_columns(self.name, self.columns_, frame)
        return frame[self.columns_]


class Drop(adpipe.Preprocessor):
    """Remove the named columns; every other column passes through."""

    name = "drop"

    class Params(ColumnsParams):
        pass

    def output_columns(self, columns: list[str]) -> list[str]:
        dropped = set(self.params.columns)
        return [c for c in columns if c not in dropped]

    def fit(self, frame: pd.DataFrame) -> "Drop":
        require_config_columns(self.name, self.params.columns, frame.columns)
        if not self.output_columns(list(frame.columns)):
            raise adpipe.ConfigError(
                "preprocess stage 'drop' would remove every column.", hint="drop fewer columns, or use select"
            )
        self.columns_ = list(self.params.columns)
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        check_fitted(self)
        require_data_columns(self.name, self.columns_, frame)
        return frame.drop(columns=self.columns_)
