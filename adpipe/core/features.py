"""The feature schema a model was fitted on, and the check that scoring data still matches it.

Recorded at fit: every input column's name, dtype and kind (numeric, text, datetime, timedelta), in
order, with the categories of text columns. At scoring, missing columns, extra columns (when the
features were inferred from the data rather than listed) and re-typed columns are each reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from adpipe.core.errors import SchemaMismatchError

MAX_CATEGORIES = 1000
SAMPLE = 200  # values looked at to tell a numeric column with bad cells from a text column


def kind_of(series: pd.Series) -> str | None:
    """``numeric``, ``text``, ``datetime`` or ``timedelta``; None when every value is missing."""
    kind = series.dtype.kind
    if kind in "iufbc":
        return "numeric"
    if kind == "M" or isinstance(series.dtype, pd.DatetimeTZDtype):
        return "datetime"
    if kind == "m":
        return "timedelta"
    values = series.dropna()
    if values.empty:
        return None
    if isinstance(series.dtype, pd.CategoricalDtype):
        values = pd.Series(series.cat.categories)
    # a numeric column with a few bad cells is still numeric: validation reports those rows
    parsed = pd.to_numeric(values.iloc[:SAMPLE], errors="coerce")
    return "numeric" if parsed.notna().any() else "text"


@dataclass
class Column:
    name: str
    dtype: str
    kind: str | None
    categories: list[str] | None = None


@dataclass
class FeatureSchema:
    """Input columns at fit time, which of them are features, ids and label."""

    columns: list[Column]
    features: list[str]
    id_columns: list[str]
    label: str | None
    features_listed: bool  # columns.features was given: other columns may come and go
    categories_truncated: list[str] = field(default_factory=list)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, features: list[str], id_columns: list[str], label: str | None,
                   features_listed: bool) -> "FeatureSchema":
        cols, truncated = [], []
        for name in frame.columns:
            series = frame[name]
            kind = kind_of(series)
            cats = None
            if kind == "text" and name in features:
                uniq = series.dropna().astype(str).unique()
                if len(uniq) > MAX_CATEGORIES:
                    truncated.append(str(name))
                cats = sorted(uniq)[:MAX_CATEGORIES]
            cols.append(Column(str(name), str(series.dtype), kind, cats))
        return cls(cols, list(features), list(id_columns), label, features_listed, truncated)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureSchema":
        return cls(**{**data, "columns": [Column(**c) for c in data["columns"]]})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def differences(self, frame: pd.DataFrame) -> list[str]:
        """Every way ``frame`` differs from the training schema (empty when it matches)."""
        known = {c.name: c for c in self.columns}
        # the label is carried along when present (default ids are every input column) but never needed
        needed = [c for c in dict.fromkeys([*self.features, *self.id_columns]) if c != self.label]
        out = [f"missing column '{name}' ({known[name].dtype} in training)" if name in known
               else f"missing column '{name}'" for name in needed if name not in frame.columns]
        if not self.features_listed:
            allowed = set(known) | {self.label}
            out += [f"extra column '{name}' ({frame[name].dtype}) was not in the training data"
                    for name in frame.columns if name not in allowed]
        for name in self.features:
            col = known.get(name)
            if col is None or col.kind is None or name not in frame.columns:
                continue
            now = kind_of(frame[name])
            if now is not None and now != col.kind:
                example = frame[name].dropna().iloc[0]
                out.append(f"column '{name}' was {col.kind} ({col.dtype}) in training, is now {now} "
                           f"({frame[name].dtype}, e.g. {example!r})")
        return out

    def check(self, frame: pd.DataFrame, where: str = "data to score") -> None:
        # the same columns and dtypes as a frame that passed: nothing to look at again (object columns
        # are looked at every time, since their content decides between numeric and text)
        key = tuple(zip(frame.columns, map(str, frame.dtypes)))
        if key == getattr(self, "_passed", None):
            return
        diffs = self.differences(frame)
        if diffs:
            raise SchemaMismatchError(
                f"The {where} does not match the model's feature schema:\n  - " + "\n  - ".join(diffs), diffs,
                hint="score data with the columns and types the model was fitted on (`adpipe models show` "
                     "lists them), or fit a new model on the new schema")
        if not any(frame[name].dtype.kind == "O" for name in self.features if name in frame.columns):
            self._passed = key
