"""Helpers shared by the scikit-learn and PyOD detector wrappers."""

from __future__ import annotations

import builtins
import contextlib
import re
import warnings
from typing import Iterator

import numpy as np

import adpipe


def as_matrix(X, name: str) -> np.ndarray:
    """``X`` as a 2-D float array, or a :class:`adpipe.DataError` saying what is wrong."""
    try:
        arr = np.asarray(X, dtype=float)
    except (TypeError, ValueError) as exc:
        raise adpipe.DataError(
            f"detector '{name}' needs numeric features: {exc}",
            hint="encode or drop text columns in `preprocess`",
        ) from None
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise adpipe.DataError(f"detector '{name}' needs a 2-D feature matrix, got shape {arr.shape}.")
    # C order always: numba-compiled PyOD code compiles once per memory layout, and frames
    # converted from pandas are often Fortran-ordered
    return np.ascontiguousarray(arr)


def check_fitted(det, name: str) -> None:
    if getattr(det, "model_", None) is None:
        raise adpipe.ModelError(f"detector '{name}' is not fitted yet.", hint="call fit(X) before score(X)")


def check_width(n_features_in: int, X: np.ndarray, name: str) -> None:
    if X.shape[1] != n_features_in:
        raise adpipe.ModelError(
            f"detector '{name}' was fitted on {n_features_in} feature columns but got {X.shape[1]}.",
            hint="score data with the same columns (and preprocessing) as the training data",
        )


@contextlib.contextmanager
def model_errors(name: str, stage: str, X: np.ndarray) -> Iterator[None]:
    """Turn a library ``ValueError`` raised while fitting/scoring into :class:`adpipe.ModelError`."""
    try:
        yield
    except adpipe.AdpipeError:
        raise
    except ValueError as exc:  # includes numpy.linalg.LinAlgError
        raise adpipe.ModelError(
            f"detector '{name}' failed to {stage} on {X.shape[0]} rows x {X.shape[1]} features: {exc}",
            hint=f"check the detector's parameters against the data (`adpipe plugins show {name}`)",
        ) from exc


@contextlib.contextmanager
def quiet(rules: tuple[tuple[str, str], ...]) -> Iterator[None]:
    """Silence the listed (warning category name, message regex) pairs."""
    if not rules:
        yield
        return
    with warnings.catch_warnings():
        for category_name, message in rules:
            category = _warning_category(category_name)
            warnings.filterwarnings("ignore", message=re.escape(message) if message else "", category=category)
        yield


def _warning_category(name: str) -> type[Warning]:
    if name == "ConvergenceWarning":
        from sklearn.exceptions import ConvergenceWarning

        return ConvergenceWarning
    category = getattr(builtins, name, None)
    return category if isinstance(category, type) and issubclass(category, Warning) else Warning


def scores_1d(scores, n_rows: int, name: str) -> np.ndarray:
    out = np.asarray(scores, dtype=float).reshape(-1)
    if out.shape[0] != n_rows:
        raise adpipe.ModelError(f"detector '{name}' returned {out.shape[0]} scores for {n_rows} rows.")
    return out
