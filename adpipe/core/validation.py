"""Input validation: which columns are needed, which cells are unusable, and why.

Numeric feature columns are coerced to float64. A cell is invalid when it is
missing (unless a preprocessing stage imputes), infinite, or text that is not
a number. The policy decides what happens to rows holding invalid cells:
``raise`` (a DataError naming columns, rows and examples), ``drop`` (the rows
go to the reject sink with a ``reject_reason``) or ``impute`` (invalid cells
become NaN and are filled with the training median).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from adpipe.core.errors import DataError
from adpipe.core.schema import REJECT_REASON

MAX_EXAMPLES = 3


@dataclass
class Checked:
    """A validated batch: numeric features, usable rows, rejected rows."""

    frame: pd.DataFrame  # usable input rows (all input columns)
    numeric: np.ndarray  # float64 (n_ok, n_numeric); NaN only where allowed
    rejected: pd.DataFrame  # rejected input rows plus REJECT_REASON


def require_columns(frame: pd.DataFrame, needed: list[str], what: str = "input") -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        present = ", ".join(map(str, frame.columns[:30]))
        raise DataError(
            f"The {what} is missing column(s) {', '.join(map(repr, missing))}; it has: {present}.",
            hint="fix the column names in the data, or set columns.features / columns.id / columns.exclude "
                 "in the config to the columns the data really has",
        )


def coerce_numeric(frame: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Return (values float64, text_mask): text_mask marks non-null cells that are not numbers."""
    text = np.zeros((len(frame), len(columns)), dtype=bool)
    dtypes = frame.dtypes
    if all(dtypes[col].kind in "fiub" for col in columns):  # all numeric: one conversion
        return frame[columns].to_numpy(dtype=np.float64, na_value=np.nan, copy=True), text
    out = np.empty(text.shape, dtype=np.float64)
    for j, col in enumerate(columns):
        series = frame[col]
        if series.dtype.kind in "fiub":
            out[:, j] = series.to_numpy(dtype=np.float64, na_value=np.nan)
            continue
        if series.dtype.kind in "Mm":  # datetimes/durations: seconds (since the epoch); NaT is missing
            values = series.to_numpy()
            seconds = values.astype("datetime64[ns]" if series.dtype.kind == "M" else "timedelta64[ns]")
            out[:, j] = np.where(np.isnat(seconds), np.nan, seconds.astype(np.int64) / 1e9)
            continue
        numbers = pd.to_numeric(series, errors="coerce")
        out[:, j] = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
        text[:, j] = numbers.isna().to_numpy() & series.notna().to_numpy()
    return out, text


def text_columns_in(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """Columns holding text only (no value parses as a number): not numeric at all."""
    bad = []
    for col in columns:
        series = frame[col]
        if series.dtype.kind in "fiubMm" or series.isna().all():
            continue
        if pd.to_numeric(series.dropna(), errors="coerce").isna().all():
            bad.append(col)
    return bad


def check(
    frame: pd.DataFrame,
    numeric_columns: list[str],
    *,
    policy: str,
    allow_nan: bool,
    row_start: int = 0,
    where: str = "input",
    row_numbers: np.ndarray | None = None,
) -> Checked:
    """Validate the numeric feature columns of ``frame`` under ``policy``.

    Error messages count data rows from 1: ``row_start`` + position, or ``row_numbers[position]`` when
    the frame is a sample whose rows come from all over the source.
    """
    if row_numbers is None:
        row_numbers = np.arange(row_start, row_start + len(frame))
    values, text = coerce_numeric(frame, numeric_columns)
    nan = np.isnan(values) & ~text
    inf = np.isinf(values)
    if policy == "impute":  # every unusable cell becomes NaN, filled later
        values[inf | text] = np.nan
        bad = np.zeros_like(text)
    elif allow_nan:  # a preprocessing stage imputes: missing and infinite pass as NaN
        values[inf | text] = np.nan
        bad = text
    else:
        bad = text | inf | nan
    text, inf, nan = text & bad, inf & bad, nan & bad
    rows_bad = bad.any(axis=1)
    if not rows_bad.any():
        empty = frame.iloc[:0].assign(**{REJECT_REASON: pd.Series(dtype="object")})
        return Checked(frame, values, empty)
    if policy == "raise":
        raise DataError(_describe(frame, numeric_columns, text, inf, nan, row_numbers, where),
                        hint="fix the data, or set validation.on_invalid to 'drop' (rows go to the reject sink) "
                             "or 'impute' (missing/invalid values become the training median); a text column "
                             "can be encoded with preprocess {type: onehot, columns: [...]} or excluded "
                             "with columns.exclude")
    reasons = _reasons(numeric_columns, text, inf, nan, rows_bad)
    rejected = frame.loc[rows_bad].copy()
    rejected[REJECT_REASON] = reasons
    keep = ~rows_bad
    return Checked(frame.loc[keep], values[keep], rejected)


def _reasons(columns, text, inf, nan, rows_bad) -> list[str]:
    out = []
    for i in np.flatnonzero(rows_bad):
        parts = []
        for mask, what in ((text, "not a number"), (nan, "missing"), (inf, "infinite")):
            cols = [columns[j] for j in np.flatnonzero(mask[i])]
            if cols:
                parts.append(f"{what}: {', '.join(cols)}")
        out.append("; ".join(parts))
    return out


def _describe(frame, columns, text, inf, nan, row_numbers, where) -> str:
    problems = []
    for j, col in enumerate(columns):
        for mask, what in ((text, "text that is not a number"), (nan, "missing values"), (inf, "infinite values")):
            rows = np.flatnonzero(mask[:, j])
            if rows.size == 0:
                continue
            shown = ", ".join(str(row_numbers[r] + 1) for r in rows[:MAX_EXAMPLES])
            more = f" and {rows.size - MAX_EXAMPLES} more" if rows.size > MAX_EXAMPLES else ""
            example = ""
            if what.startswith("text"):
                example = f" (e.g. {frame[col].iloc[rows[0]]!r})"
            problems.append(f"column '{col}' has {what}{example} in data row(s) {shown}{more}")
    return f"Invalid values in the {where}: " + "; ".join(problems) + "."
