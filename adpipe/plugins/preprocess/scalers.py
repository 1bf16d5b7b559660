"""Scalers: scikit-learn's StandardScaler, MinMaxScaler and RobustScaler."""

from __future__ import annotations

from typing import Any

import pandas as pd
from pydantic import field_validator

import adpipe
from adpipe.plugins.preprocess._common import (
    check_fitted,
    fit_sklearn,
    numeric_block,
    rebuild,
    require_data_columns,
    select_columns,
)

COLUMNS_DOC = "columns to transform; null = every numeric column (others pass through unchanged)"


class ColumnsParams(adpipe.Params):
    columns: list[str] | None = adpipe.Field(None, min_length=1, description=COLUMNS_DOC)


class SklearnColumnStage(adpipe.Preprocessor):
    """Base of stages that apply one scikit-learn transformer to numeric columns, in place."""

    def make_transformer(self) -> Any:
        raise NotImplementedError

    def fit(self, frame: pd.DataFrame) -> "SklearnColumnStage":
        columns = select_columns(self.name, self.params.columns, frame)
        X = numeric_block(self.name, frame, columns)
        self.transformer_ = fit_sklearn(self.name, self.make_transformer(), X)
        self.columns_ = columns
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        check_fitted(self)
        require_data_columns(self.name, self.columns_, frame)
        values = self.transformer_.transform(numeric_block(self.name, frame, self.columns_))
        return rebuild(frame, self.columns_, values)


class StandardScaler(SklearnColumnStage):
    """Standardise numeric columns to zero mean and unit variance (sklearn StandardScaler)."""

    name = "standard_scaler"

    class Params(ColumnsParams):
        with_mean: bool = adpipe.Field(True, description="subtract the training mean")
        with_std: bool = adpipe.Field(True, description="divide by the training standard deviation")

    def make_transformer(self) -> Any:
        from sklearn import preprocessing as skp  # imported on use: plugin discovery stays fast
        return skp.StandardScaler(with_mean=self.params.with_mean, with_std=self.params.with_std)


class MinMaxScaler(SklearnColumnStage):
    """Scale numeric columns to a fixed range learned from the training min and max (sklearn MinMaxScaler)."""

    name = "minmax_scaler"

    class Params(ColumnsParams):
        feature_range: tuple[float, float] = adpipe.Field(
            (0.0, 1.0), description="[low, high] the training min and max map to; low < high"
        )
        clip: bool = adpipe.Field(
            False, description="clip scoring values to feature_range (hides how far out a value is)"
        )

        @field_validator("feature_range")
        @classmethod
        def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
            if not v[0] < v[1]:
                raise ValueError(f"feature_range must be [low, high] with low < high, got {list(v)}")
            return v

    def make_transformer(self) -> Any:
        from sklearn import preprocessing as skp  # imported on use: plugin discovery stays fast
        return skp.MinMaxScaler(feature_range=self.params.feature_range, clip=self.params.clip)


class RobustScaler(SklearnColumnStage):
    """Centre on the median and scale by a quantile range: robust to outliers (sklearn RobustScaler)."""

    name = "robust_scaler"

    class Params(ColumnsParams):
        with_centering: bool = adpipe.Field(True, description="subtract the training median")
        with_scaling: bool = adpipe.Field(True, description="divide by the training quantile range")
        quantile_range: tuple[float, float] = adpipe.Field(
            (25.0, 75.0), description="[q_min, q_max] percentiles of the scale; 0 <= q_min < q_max <= 100"
        )
        unit_variance: bool = adpipe.Field(False, description="rescale so normal data ends with unit variance")

        @field_validator("quantile_range")
        @classmethod
        def _in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
            if not 0.0 <= v[0] < v[1] <= 100.0:
                raise ValueError(f"quantile_range must satisfy 0 <= q_min < q_max <= 100, got {list(v)}")
            return v

    def make_transformer(self) -> Any:
        p = self.params
        from sklearn import preprocessing as skp  # imported on use: plugin discovery stays fast
        return skp.RobustScaler(
            with_centering=p.with_centering,
            with_scaling=p.with_scaling,
            quantile_range=p.quantile_range,
            unit_variance=p.unit_variance,
        )
