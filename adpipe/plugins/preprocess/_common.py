"""Helpers shared by the built-in preprocessors (not plugins themselves).

Every stage works on a numpy block of the columns it owns and rebuilds the
frame once, so a 100k-row batch costs one sklearn call, never a Python loop
over cells.
"""

from __future__ import annotations

from typing import Annotated, Any, Sequence

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype
from pydantic import Field

from adpipe.core.errors import ConfigError, DataError, ModelError

FLOAT = np.float64

#: a count (int >= 1) or a share (float strictly between 0 and 1); 1.0 is
#: refused rather than silently read as the count 1
CountOrShare = Annotated[int, Field(ge=1, strict=True)] | Annotated[float, Field(gt=0, lt=1)]


def is_numeric(dtype: Any) -> bool:
    """Numeric (not bool) dtype: what ``columns: null`` selects."""
    return is_numeric_dtype(dtype) and not is_bool_dtype(dtype)


def numeric_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c, dt in frame.dtypes.items() if is_numeric(dt)]


def _listing(columns: Sequence[Any]) -> str:
    shown = ", ".join(repr(c) for c in list(columns)[:30])
    return shown + (", ..." if len(columns) > 30 else "")


def require_config_columns(stage: str, wanted: Sequence[str], available: Sequence[Any]) -> None:
    """At fit time: every configured column must exist (ConfigError otherwise)."""
    have = set(available)
    missing = [c for c in wanted if c not in have]
    if missing:
        raise ConfigError(
            f"preprocess stage '{stage}' names column(s) not in the data: {_listing(missing)}.",
            hint=f"available columns: {_listing(list(available))}",
        )


def require_data_columns(stage: str, wanted: Sequence[str], frame: pd.DataFrame) -> None:
    """At transform time: a column seen at fit is missing from the batch (DataError)."""
    have = set(frame.columns)
    missing = [c for c in wanted if c not in have]
    if missing:
        raise DataError(
            f"preprocess stage '{stage}' needs column(s) {_listing(missing)}, missing from this batch.",
            hint="score data with the same columns as the training data",
        )


def select_columns(stage: str, configured: list[str] | None, frame: pd.DataFrame) -> list[str]:
    """The configured columns (checked), or every numeric column when None."""
    if configured is None:
        cols = numeric_columns(frame)
        if not cols:
            raise DataError(
                f"preprocess stage '{stage}' found no numeric column to work on.",
                hint="encode text columns first (onehot/ordinal) or set `columns`",
            )
        return cols
    require_config_columns(stage, configured, frame.columns)
    return list(configured)


def numeric_block(stage: str, frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """The columns as one float64 array (DataError naming text columns)."""
    bad = [c for c in columns if not (is_numeric_dtype(frame[c].dtype))]
    if bad:
        raise DataError(
            f"preprocess stage '{stage}' needs numeric columns, but {_listing(bad)} hold text.",
            hint="encode them first with an onehot or ordinal stage, or leave them out of `columns`",
        )
    return frame[columns].to_numpy(dtype=FLOAT, na_value=np.nan)


def check_fitted(stage: Any, attr: str = "columns_") -> None:
    if not hasattr(stage, attr):
        raise ModelError(f"preprocess stage '{stage.name}' is used before it was fitted.", hint="call fit() first")


def fit_sklearn(stage: str, estimator: Any, X: np.ndarray) -> Any:
    """Fit a scikit-learn estimator, turning its ValueErrors into DataError."""
    if X.shape[0] == 0:
        raise DataError(f"preprocess stage '{stage}' got no training rows.")
    try:
        return estimator.fit(X)
    except ValueError as exc:
        raise DataError(
            f"preprocess stage '{stage}' cannot be fitted: {exc}",
            hint="missing values need an impute stage first" if "NaN" in str(exc) else None,
        ) from exc


def check_new_names(stage: str, new: list[str], kept: list[Any]) -> None:
    """Output names must be unique and not clash with columns passed through."""
    dup = sorted({n for n in new if new.count(n) > 1} | (set(new) & set(kept)))
    if dup:
        raise DataError(
            f"preprocess stage '{stage}' would create duplicate column name(s): {_listing(dup)}.",
            hint="rename the clashing input columns",
        )


def rebuild(
    frame: pd.DataFrame, columns: list[str], values: np.ndarray, names: list[str] | None = None
) -> pd.DataFrame:
    """``frame`` with ``columns`` replaced by the columns of ``values``.

    With ``names`` omitted the outputs keep the input names and positions;
    otherwise the new block takes the place of the first replaced column.
    Other columns pass through untouched (dtype kept).
    """
    same = names is None
    names = list(columns) if same else list(names)
    values = np.asarray(values, dtype=FLOAT)
    new = {n: values[:, i] for i, n in enumerate(names)}
    replaced = set(columns)
    data: dict[Any, Any] = {}
    placed = False
    for c in frame.columns:
        if c not in replaced:
            data[c] = frame[c].array
        elif same:
            data[c] = new[c]
        elif not placed:
            data.update(new)
            placed = True
    if not same and not placed:
        data.update(new)
    return pd.DataFrame(data, index=frame.index, copy=False)


def replaced_names(columns: list[Any], replaced: list[Any], names: list[str]) -> list[Any]:
    """Column names after ``rebuild(frame, replaced, values, names)`` of a frame with ``columns``."""
    gone = set(replaced)
    first = next((i for i, c in enumerate(columns) if c in gone), len(columns))
    kept = [c for c in columns if c not in gone]
    return kept[:first] + list(names) + kept[first:]
