"""Input validation, property-based: every invalid cell is caught, every kept row is usable, counts reconcile."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import adpipe
from adpipe.core import validation
from adpipe.core.schema import REJECT_REASON

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
VALID = st.one_of(
    finite,
    st.integers(min_value=-(2**53), max_value=2**53),
    finite.map(repr),  # a number written as text, e.g. "1.5" or "-3e-07"
    st.integers(min_value=-(10**9), max_value=10**9).map(str),
)
INVALID = st.one_of(
    st.just(float("nan")),
    st.just(float("inf")),
    st.just(float("-inf")),
    st.none(),
    st.just(""),
    st.just("   "),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz/?-", min_size=1, max_size=8).filter(lambda s: s != "-"),
)


def is_valid(cell) -> bool:
    if cell is None:
        return False
    if isinstance(cell, str):
        try:
            value = float(cell)
        except ValueError:
            return False
        return math.isfinite(value)
    return math.isfinite(float(cell))


@st.composite
def frames(draw):
    """A frame with 1-3 numeric feature columns (cells valid or not) plus an id column."""
    n_rows = draw(st.integers(min_value=1, max_value=25))
    n_cols = draw(st.integers(min_value=1, max_value=3))
    data = {"id": list(range(n_rows))}
    for j in range(n_cols):
        kind = draw(st.sampled_from(["float", "object"]))
        if kind == "float":  # a float column: only NaN/inf can be invalid
            cells = draw(st.lists(st.one_of(finite, st.sampled_from([np.nan, np.inf, -np.inf])),
                                  min_size=n_rows, max_size=n_rows))
            data[f"c{j}"] = pd.Series(cells, dtype="float64")
        else:
            cells = draw(st.lists(st.one_of(VALID, INVALID), min_size=n_rows, max_size=n_rows))
            data[f"c{j}"] = pd.Series(cells, dtype="object")
    return pd.DataFrame(data)


def expected_invalid_rows(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    return np.array([not all(is_valid(frame.at[i, c]) for c in columns) for i in frame.index], dtype=bool)


def feature_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c != "id"]


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames())
def test_drop_rejects_exactly_the_invalid_rows(frame):
    cols = feature_columns(frame)
    bad = expected_invalid_rows(frame, cols)
    checked = validation.check(frame, cols, policy="drop", allow_nan=False)
    assert len(checked.frame) + len(checked.rejected) == len(frame)
    assert sorted(checked.rejected["id"]) == sorted(frame.loc[bad, "id"])
    assert sorted(checked.frame["id"]) == sorted(frame.loc[~bad, "id"])
    assert all(isinstance(r, str) and r.strip() for r in checked.rejected[REJECT_REASON])
    assert checked.numeric.shape == (len(checked.frame), len(cols))
    assert np.isfinite(checked.numeric).all()
    # the kept values are the numbers the cells hold
    for i, row in enumerate(checked.frame.itertuples(index=False)):
        for j, col in enumerate(cols):
            assert checked.numeric[i, j] == pytest.approx(float(getattr(row, col)), rel=1e-12, abs=0)
    # the input is not modified
    assert REJECT_REASON not in frame.columns


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames(), st.integers(min_value=0, max_value=10_000))
def test_raise_iff_some_cell_is_invalid(frame, row_start):
    cols = feature_columns(frame)
    bad = expected_invalid_rows(frame, cols)
    if bad.any():
        with pytest.raises(adpipe.DataError) as err:
            validation.check(frame, cols, policy="raise", allow_nan=False, row_start=row_start)
        first_bad = int(np.flatnonzero(bad)[0]) + row_start + 1  # 1-based data row
        assert str(first_bad) in str(err.value)
        assert err.value.hint
    else:
        checked = validation.check(frame, cols, policy="raise", allow_nan=False, row_start=row_start)
        assert len(checked.frame) == len(frame) and len(checked.rejected) == 0
        assert np.isfinite(checked.numeric).all()


@settings(max_examples=100, deadline=None, database=None)
@given(frames())
def test_impute_keeps_every_row_and_marks_invalid_cells_missing(frame):
    cols = feature_columns(frame)
    checked = validation.check(frame, cols, policy="impute", allow_nan=False)
    assert len(checked.frame) == len(frame) and len(checked.rejected) == 0
    for i in range(len(frame)):
        for j, col in enumerate(cols):
            cell = frame[col].iloc[i]
            if is_valid(cell):
                assert checked.numeric[i, j] == pytest.approx(float(cell), rel=1e-12, abs=0)
            else:
                assert np.isnan(checked.numeric[i, j])


@settings(max_examples=100, deadline=None, database=None)
@given(frames())
def test_drop_with_an_imputing_preprocessor_only_rejects_text(frame):
    """With allow_nan (an impute stage follows), missing and infinite pass as NaN; text is still rejected."""
    cols = feature_columns(frame)
    checked = validation.check(frame, cols, policy="drop", allow_nan=True)
    assert len(checked.frame) + len(checked.rejected) == len(frame)
    assert not np.isinf(checked.numeric).any()
    for reason in checked.rejected[REJECT_REASON]:
        assert reason.startswith("not a number")


# --------------------------------------------------------------------------- examples
def test_reasons_name_every_problem_of_a_row():
    frame = pd.DataFrame({"a": pd.Series(["x", 1.0, None], dtype=object), "b": [np.inf, 2.0, np.nan]})
    checked = validation.check(frame, ["a", "b"], policy="drop", allow_nan=False)
    reasons = checked.rejected[REJECT_REASON].tolist()
    assert reasons == ["not a number: a; infinite: b", "missing: a, b"]
    assert checked.frame.index.tolist() == [1]


def test_raise_message_lists_at_most_three_rows_and_counts_the_rest():
    frame = pd.DataFrame({"a": [np.nan] * 10 + [1.0]})
    with pytest.raises(adpipe.DataError) as err:
        validation.check(frame, ["a"], policy="raise", allow_nan=False, where="training data")
    text = str(err.value)
    assert "training data" in text and "'a'" in text and "1, 2, 3" in text and "7 more" in text


def test_require_columns_names_the_missing_ones():
    with pytest.raises(adpipe.DataError) as err:
        validation.require_columns(pd.DataFrame({"a": [1]}), ["a", "b", "c"])
    assert "'b'" in str(err.value) and "'c'" in str(err.value) and "has: a" in str(err.value)


def test_text_columns_in():
    frame = pd.DataFrame({"num": [1, 2], "txt": ["x", "y"], "mixed": ["1", "y"], "none": [None, None]})
    assert validation.text_columns_in(frame, ["num", "txt", "mixed", "none"]) == ["txt"]


def test_missing_timestamp_is_not_turned_into_a_huge_number():
    """A datetime feature column (parquet keeps timestamps) with a missing value (NaT).

    The NaT cell must count as missing (rejected under ``drop``), not silently become
    -9.2e18 (the int64 minimum pandas uses for NaT).
    """
    frame = pd.DataFrame({"when": pd.to_datetime(["2024-01-01", None, "2024-01-03"]), "x": [1.0, 2.0, 3.0]})
    checked = validation.check(frame, ["when", "x"], policy="drop", allow_nan=False)
    assert np.abs(checked.numeric).max() < 1e18, checked.numeric
    assert len(checked.rejected) == 1 and "missing" in checked.rejected[REJECT_REASON].iloc[0]
