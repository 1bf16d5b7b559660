"""Categorical encoders: scikit-learn's OneHotEncoder and OrdinalEncoder.

Encoded columns may hold text (pandas ``str``/object), booleans or numbers,
with missing values. Values are compared as text, so the category ``3`` is the
same whether a batch read it as ``3``, ``3.0`` or ``"3"``; missing values are
a category of their own (onehot) or encode as -1 (ordinal).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

import adpipe
from adpipe.plugins.preprocess._common import (
    FLOAT,
    CountOrShare,
    check_fitted,
    check_new_names,
    fit_sklearn,
    is_numeric,
    rebuild,
    replaced_names,
    require_config_columns,
    require_data_columns,
)


def as_categories(col: pd.Series) -> np.ndarray:
    """One column as an object array of strings, with ``np.nan`` where missing (vectorised)."""
    if is_numeric(col.dtype):
        x = col.to_numpy(dtype=FLOAT, na_value=np.nan)
        missing = np.isnan(x)
        text = x.astype(str).astype(object)
        whole = ~missing & (np.abs(x) < 2.0**53) & (x == np.trunc(x))
        if whole.any():  # 3.0 -> "3", like an integer column or a CSV cell would read
            text[whole] = x[whole].astype(np.int64).astype(str)
        text[missing] = np.nan
        return text
    return col.astype("str").to_numpy(dtype=object, na_value=np.nan)


def category_block(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    out = np.empty((len(frame), len(columns)), dtype=object)
    for i, c in enumerate(columns):
        out[:, i] = as_categories(frame[c])
    return out


def combine_name(feature: str, category: Any) -> str:
    """Onehot output name: ``merchant=grocery`` (``merchant=nan`` for missing)."""
    return f"{feature}={category}"


class CategoricalParams(adpipe.Params):
    columns: list[str] = adpipe.Field(..., min_length=1, description="the categorical columns to encode (required)")
    max_categories: int | None = adpipe.Field(
        None, ge=2, description="keep at most this many categories per column, the rarest grouped as one; null = all"
    )
    min_frequency: CountOrShare | None = adpipe.Field(
        None,
        description="categories seen fewer times (int) or in a smaller share of rows (float < 1) are grouped "
        "as infrequent; null = keep all",
    )


class CategoricalEncoder(adpipe.Preprocessor):
    """Base of the encoders: claims its columns as text, encodes them with scikit-learn."""

    def text_columns(self, columns: list[str]) -> list[str]:
        present = set(columns)
        return [c for c in self.params.columns if c in present]

    def make_encoder(self) -> Any:
        raise NotImplementedError

    def fit(self, frame: pd.DataFrame) -> "CategoricalEncoder":
        columns = list(self.params.columns)
        require_config_columns(self.name, columns, frame.columns)
        self.encoder_ = fit_sklearn(self.name, self.make_encoder(), category_block(frame, columns))
        self.columns_ = columns
        return self

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        check_fitted(self)
        require_data_columns(self.name, self.columns_, frame)
        return self.encoder_.transform(category_block(frame, self.columns_))


class OneHot(CategoricalEncoder):
    """One-hot encode categorical columns into 0/1 columns named like merchant=grocery (sklearn OneHotEncoder).

    Categories unseen in training encode as all zeros (a pattern no training
    row has); missing values are a category of their own (``merchant=nan``);
    with ``max_categories`` or ``min_frequency`` rare categories share one
    ``merchant=infrequent_sklearn`` column.
    """

    name = "onehot"

    class Params(CategoricalParams):
        pass

    def make_encoder(self) -> Any:
        p = self.params
        from sklearn import preprocessing as skp  # imported on use: plugin discovery stays fast
        return skp.OneHotEncoder(
            handle_unknown="ignore",
            sparse_output=False,
            dtype=FLOAT,
            max_categories=p.max_categories,
            min_frequency=p.min_frequency,
            feature_name_combiner=combine_name,
        )

    def fit(self, frame: pd.DataFrame) -> "OneHot":
        super().fit(frame)
        names = [str(n) for n in self.encoder_.get_feature_names_out(self.columns_)]
        check_new_names(self.name, names, [c for c in frame.columns if c not in set(self.columns_)])
        self.feature_names_ = names
        return self

    def output_columns(self, columns: list[str]) -> list[str]:
        """After fit: ``columns`` with the encoded ones replaced by the onehot columns."""
        if not hasattr(self, "feature_names_"):
            return columns
        return replaced_names(columns, self.columns_, self.feature_names_)

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        values = self.encode(frame)
        return rebuild(frame, self.columns_, values, self.feature_names_)


class Ordinal(CategoricalEncoder):
    """Encode categorical columns as codes 0, 1, 2, ...; unseen or missing values become -1 (sklearn OrdinalEncoder).

    Codes follow the sorted category text; rare categories share one code
    when ``max_categories`` or ``min_frequency`` is set.
    """

    name = "ordinal"

    class Params(CategoricalParams):
        pass

    def make_encoder(self) -> Any:
        p = self.params
        from sklearn import preprocessing as skp  # imported on use: plugin discovery stays fast
        return skp.OrdinalEncoder(
            handle_unknown="use_encoded_value",
            unknown_value=-1,
            encoded_missing_value=-1,
            dtype=FLOAT,
            max_categories=p.max_categories,
            min_frequency=p.min_frequency,
        )

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        values = self.encode(frame)
        return rebuild(frame, self.columns_, values)
