"""Why a record was flagged: per-feature contributions, one readable sentence, global importance.

    table = explain(model, frame, top=3)          # one row per flagged record
    table.loc[0, "explanation"]                   # 'amount 9,400 is 12σ above the typical 80; ...'
    feature_importance(model)                     # mean |contribution| per feature, sorted

A feature's contribution is how much the raw anomaly score drops when that feature alone is set to its
typical training value (the median; the most common category of a text feature), with every other
feature kept (occlusion). Values are replaced in the input, before preprocessing, so scalers and
one-hot encoders see ordinary rows. One detector call scores all rows with all replacements stacked.

Faster paths are used when preprocessing keeps the feature space (one detector column per numeric
input, no text features): a detector with an ``explain(X)`` method returning (rows x features)
contributions, and PyOD's ECOD/COPOD, whose per-feature tail scores (``O``) add up to the score.
The sentence measures each named value against the training median in robust σ (MAD scaled to a
normal σ; the IQR or the standard deviation when the MAD is 0).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from adpipe.core import schema, validation
from adpipe.core.errors import ConfigError, DataError, ModelError
from adpipe.core.frames import to_frame

log = logging.getLogger(__name__)

EXPLANATION = schema.EXPLANATION
CONTRIBUTIONS = "contributions"
METHODS = ("auto", "occlusion", "tail_scores", "detector")
ROWS = ("flagged", "all")
STACK_ROWS = 100_000  # rows per detector call when scoring the replaced copies
RARE = 0.02  # a category in fewer training rows than this share is called rare
MINOR = 0.2  # features contributing less than this share of the top one are not named
MAX_CATEGORIES = 1000


# --------------------------------------------------------------------------- training summaries
def category_shares(frame: pd.DataFrame, columns: list[str]) -> dict[str, dict[str, float]]:
    """Share of training rows per category of each text column (the most common ones first)."""
    out = {}
    for col in columns:
        shares = as_text(frame[col]).value_counts(normalize=True, dropna=False)
        out[col] = {str(k): float(v) for k, v in shares.iloc[:MAX_CATEGORIES].items()}
    return out


def as_text(series: pd.Series) -> pd.Series:
    """Category values as text, whole numbers without '.0' (as the encoders compare them)."""
    if series.dtype.kind in "fiu":
        x = series.to_numpy(dtype=np.float64, na_value=np.nan)
        text = x.astype(str).astype(object)
        whole = np.isfinite(x) & (np.abs(x) < 2.0**53) & (x == np.trunc(x))
        text[whole] = x[whole].astype(np.int64).astype(str)
        return pd.Series(text, index=series.index)
    return series.astype(str)


@dataclass
class Typical:
    """What a normal value looks like: per numeric feature a median and a robust σ; per text feature
    the category shares and the most common category."""

    median: dict[str, float]
    sigma: dict[str, float]
    shares: dict[str, dict[str, float]]
    mode: dict[str, str]


def typical_values(model) -> Typical:
    from scipy.stats import median_abs_deviation

    stats = model.training.get("feature_stats", {})
    reference = getattr(model, "reference", None) or {}
    median, sigma = {}, {}
    for col in model.numeric_columns:
        st = stats.get(col, {})
        ref = np.asarray(reference.get(col, []), dtype=np.float64)
        ref = ref[np.isfinite(ref)]
        median[col] = float(st.get("p50", np.median(ref) if ref.size else 0.0))
        mad = float(median_abs_deviation(ref, scale="normal")) if ref.size else 0.0
        iqr = (st.get("p75", 0.0) - st.get("p25", 0.0)) / 1.349
        sigma[col] = next((s for s in (mad, iqr, st.get("std", 0.0)) if s and s > 0), math.nan)
    shares = getattr(model, "category_shares", None) or {}
    shares = {col: shares.get(col, {}) for col in model.text_columns}
    mode = {col: next(iter(s), "") for col, s in shares.items()}
    return Typical(median, sigma, shares, mode)


# --------------------------------------------------------------------------- contributions
@dataclass
class Contributions:
    """Per-feature contributions for some records: ``matrix[i, j]`` is the raw score drop of record i
    when feature ``features[j]`` takes its typical value."""

    features: list[str]
    result: pd.DataFrame  # the records' keys and result columns
    checked: validation.Checked  # the records' validated input
    matrix: np.ndarray
    scores: np.ndarray  # raw scores the contributions are measured from
    probability_drop: np.ndarray  # same shape as matrix
    method: str
    typical: Typical


def fitted(model):
    """The FittedPipeline of ``model`` (a Pipeline is unwrapped), or a ModelError."""
    inner = getattr(model, "model_", model) if not hasattr(model, "numeric_columns") else model
    if inner is None or getattr(inner, "detector", None) is None:
        raise ModelError("The model is not fitted, so there is nothing to explain.",
                         hint="fit it first (pipeline.fit(data) or `adpipe fit`), or load one with load_model")
    return inner


def check_top(top: Any) -> int:
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ConfigError(f"top must be a whole number of at least 1, got {top!r}.",
                          hint="name at least one feature per explanation, e.g. top=3")
    return int(top)


def features_of(model) -> list[str]:
    """Input features in the order the model lists them (numeric and text)."""
    used = set(model.numeric_columns) | set(model.text_columns)
    return [c for c in model.feature_columns if c in used]


def contributions(model, frame: Any, rows: str = "flagged", method: str = "auto") -> Contributions:
    """Score ``frame`` and compute contributions for its flagged rows (``rows="all"``: every row)."""
    model = fitted(model)
    _check_rows(rows)
    _check_method(method)
    return _for_checked(model, validated(model, frame), rows, method)


def _check_rows(rows: str) -> None:
    if rows not in ROWS:
        raise ConfigError(f"rows must be one of {', '.join(ROWS)}, got {rows!r}.", hint='rows="flagged" or "all"')


def validated(model, frame: Any) -> validation.Checked:
    """``frame`` checked against the model's schema and validation policy."""
    frame = to_frame(frame)
    if len(frame) == 0:
        raise DataError("The data to explain is empty: there are no rows.",
                        hint="pass a table with a header row and at least one data row")
    if model.schema is not None:
        model.schema.check(frame, where="data to explain")
    else:
        validation.require_columns(frame, model.feature_columns, "data to explain")
    return model._check(frame, where="data to explain")


def _restore(values: np.ndarray) -> np.ndarray:
    return values.astype(str).astype(np.float64) if values.dtype == np.float32 else values.astype(np.float64)


def reference_rows(model) -> validation.Checked:
    """The model's training reference sample as validated rows (numeric features only)."""
    if model.text_columns:
        raise DataError("The model has text features, which its training reference sample does not keep.",
                        hint="pass the data to measure importance on, e.g. feature_importance(model, frame)")
    reference = getattr(model, "reference", None) or {}
    if not reference or any(c not in reference for c in model.numeric_columns):
        raise DataError("The model keeps no training reference sample.", hint="pass data to measure on")
    # float64 since this version; older models kept float32, whose shortest decimal restores data written with
    # up to 7 significant digits (rank-based detectors such as ECOD are sensitive to the ties float32 breaks)
    values = np.column_stack([_restore(np.asarray(reference[c])) for c in model.numeric_columns])
    values = values[np.isfinite(values).all(axis=1)]
    frame = pd.DataFrame(values, columns=model.numeric_columns)
    return validation.Checked(frame, values, frame.iloc[:0])


def _for_checked(model, checked: validation.Checked, rows: str, method: str) -> Contributions:
    X = model._features(checked) if len(checked.frame) else np.empty((0, 0))
    scores = model._detect(X) if len(X) else np.empty(0)
    probs, flags, severity = model.label(scores)
    result = checked.frame[[c for c in model.id_columns if c in checked.frame.columns]].copy()
    result[schema.SCORE], result[schema.PROBABILITY] = scores, probs
    result[schema.LABEL], result[schema.SEVERITY] = flags.astype(np.int8), severity
    pos = np.flatnonzero(flags) if rows == "flagged" else np.arange(len(scores))
    return compute(model, _subset(checked, pos), method, X=X[pos] if len(X) else None, scores=scores[pos],
                   result=result.iloc[pos])


def _subset(checked: validation.Checked, pos: np.ndarray) -> validation.Checked:
    return validation.Checked(checked.frame.iloc[pos], checked.numeric[pos], checked.rejected)


def compute(model, checked: validation.Checked, method: str = "auto", *, X: np.ndarray | None = None,
            scores: np.ndarray | None = None, result: pd.DataFrame | None = None) -> Contributions:
    """Contributions for the validated rows ``checked`` (``X``/``scores``: their features and scores if known)."""
    feats = features_of(model)
    typical = typical_values(model)
    chosen = choose_method(model, method)
    n = len(checked.frame)
    matrix, base = None, None
    if n and chosen != "occlusion":
        X = model._features(checked) if X is None else X
        try:
            matrix, base = _fast(model, chosen, X, typical)
        except Exception as exc:  # a shortcut only: the generic path still works
            log.debug("explanations: the %s path failed (%s), using occlusion", chosen, exc)
            matrix = None
        if matrix is None:  # the fast path did not apply after all
            chosen = "occlusion"
    if matrix is None:
        matrix, base = _occlusion(model, checked, typical, feats, scores)
    calibrate = model.calibrator.transform
    drop = calibrate(base)[:, None] - calibrate((base[:, None] - matrix).ravel()).reshape(matrix.shape) \
        if n else np.empty((0, len(feats)))
    if result is None:
        result = checked.frame[[c for c in model.id_columns if c in checked.frame.columns]]
    return Contributions(feats, result, checked, matrix, base, drop, chosen, typical)


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}.",
                          hint="leave it at 'auto': the fastest path the detector allows")


def choose_method(model, method: str = "auto") -> str:
    """The path used: ``detector`` (its own ``explain``), ``tail_scores`` (ECOD/COPOD) or ``occlusion``."""
    _check_method(method)
    if method == "occlusion":
        return method
    same = same_space(model)
    has = {"detector": same and callable(getattr(model.detector, "explain", None)),
           "tail_scores": same and _tail_estimator(model) is not None}
    if method == "auto":
        return next((m for m in ("detector", "tail_scores") if has[m]), "occlusion")
    if not has[method]:
        raise ConfigError(f"The {method} path does not apply to this model (detector "
                          f"'{model.config.detector.type}'" + ("" if same else ", preprocessing changes the "
                                                               "feature space") + ").",
                          hint="use method='auto' or 'occlusion'")
    return method


def same_space(model) -> bool:
    """True when the detector sees one column per numeric input feature, in order (scalers, imputers)."""
    if model.text_columns:
        return False
    kept = list(model.feature_columns)
    for pre in model.preprocessors:
        kept = pre.output_columns(kept)
    return list(kept) == list(model.numeric_columns)


def _tail_estimator(model):
    """PyOD's ECOD/COPOD (duck-typed): ``decision_function`` leaves per-feature tail scores in ``O``."""
    est = getattr(model.detector, "model_", None)
    tails = getattr(est, "O", None)
    if not (callable(getattr(est, "decision_function", None)) and hasattr(est, "X_train")
            and isinstance(tails, np.ndarray) and tails.ndim == 2 and tails.shape[1] == len(model.numeric_columns)):
        return None
    return est


def _fast(model, method: str, X: np.ndarray, typical: Typical) -> tuple[np.ndarray | None, np.ndarray | None]:
    row = np.array([[typical.median[c] for c in model.numeric_columns]])
    typical_X = model._features(validation.Checked(pd.DataFrame(index=[0]), row, pd.DataFrame()))
    if method == "detector":
        per = np.asarray(model.detector.explain(X), dtype=np.float64)
        normal = np.asarray(model.detector.explain(typical_X), dtype=np.float64)
        if per.shape != X.shape or normal.shape != typical_X.shape:
            return None, None
        return per - normal, model._detect(X)
    est = _tail_estimator(model)
    block = getattr(model.detector, "block_rows", lambda: len(X))() or len(X)
    tails, scores = [], []
    for start in range(0, len(X), block):
        chunk = X[start:start + block]
        s = np.asarray(est.decision_function(chunk), dtype=np.float64)
        part = np.asarray(est.O, dtype=np.float64)[-len(chunk):]
        if part.shape != chunk.shape or not np.allclose(part.sum(axis=1), s, rtol=1e-6, atol=1e-9):
            return None, None
        tails.append(part)
        scores.append(s)
    est.decision_function(typical_X)
    normal = np.asarray(est.O, dtype=np.float64)[-1]
    return np.vstack(tails) - normal, np.concatenate(scores)


def _occlusion(model, checked: validation.Checked, typical: Typical, feats: list[str],
               base: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Score every row with each feature in turn set to its typical value (stacked, few detector calls)."""
    n = len(checked.frame)
    variants: list[str | None] = ([] if base is not None else [None]) + feats
    if n == 0:
        return np.empty((0, len(feats))), np.empty(0)
    numeric_pos = {c: j for j, c in enumerate(model.numeric_columns)}
    text = checked.frame[model.text_columns].astype(object).reset_index(drop=True)
    per_call = max(1, STACK_ROWS // n)
    out = np.empty((len(variants), n))
    for g in range(0, len(variants), per_call):
        group = variants[g:g + per_call]
        numeric = np.tile(checked.numeric, (len(group), 1))
        frame = pd.concat([text] * len(group), ignore_index=True) if model.text_columns else \
            pd.DataFrame(index=pd.RangeIndex(n * len(group)))
        for i, col in enumerate(group):
            rows = slice(i * n, (i + 1) * n)
            if col in numeric_pos:
                numeric[rows, numeric_pos[col]] = typical.median[col]
            elif col is not None:
                frame.iloc[rows, frame.columns.get_loc(col)] = typical.mode[col]
        X = model._features(validation.Checked(frame, numeric, frame.iloc[:0]))
        out[g:g + len(group)] = model._detect(X).reshape(len(group), n)
    if base is None:
        base, out = out[0], out[1:]
    return base[:, None] - out.T, base


# --------------------------------------------------------------------------- wording
def fmt_number(x: float | None, spread: float | None = None) -> str:
    """A number for people: 9,400 · 12.3 · 0.0213 · 3; with ``spread``, no digits finer than a tenth of it."""
    if x is None or not math.isfinite(x):
        return "missing" if x is None or math.isnan(x) else str(x)
    if spread is not None and math.isfinite(spread) and spread > 0:
        x = round(x, 1 - int(math.floor(math.log10(spread)))) + 0.0  # + 0.0: no "-0"
    if x == int(x) and abs(x) < 1e15:
        return f"{int(x):,}"
    if abs(x) >= 1000:
        return f"{round(x):,}"
    if abs(x) >= 1:
        text = f"{x:,.{max(0, 2 - int(math.floor(math.log10(abs(x)))))}f}"
    else:
        text = f"{x:.3g}"
    return text.rstrip("0").rstrip(".") if "." in text and "e" not in text else text


def fmt_sigma(d: float) -> str:
    a = abs(d)
    return f"{a:,.0f}σ" if round(a, 1) >= 10 else f"{a:.1f}σ"


def fmt_share(share: float) -> str:
    p = 100 * share
    if p >= 10:
        return f"{p:.0f} %"
    if p >= 1:
        return f"{p:.1f} %"
    return f"{p:.2g} %" if p >= 0.001 else "<0.001 %"


def describe_feature(item: dict[str, Any]) -> str:
    """One clause of a sentence: 'amount 9,400 is 12σ above the typical 80'."""
    name, value = item["feature"], item["value"]
    if item["kind"] == "text":
        share = item["share"]
        if not share:
            return f"{name} {value!r} was never seen in training"
        if share < RARE:
            return f"{name} {value!r} is rare ({fmt_share(share)} of training rows)"
        typical = item["typical"]
        if value == typical:
            return f"{name} {value!r} is the most common value ({fmt_share(share)} of training rows)"
        return (f"{name} {value!r} is less common than {typical!r} ({fmt_share(share)} vs "
                f"{fmt_share(item['typical_share'])} of training rows)")
    if value is None:
        return f"{name} is missing"
    spread = item["spread"]
    shown, typical = fmt_number(value, spread), fmt_number(item["typical"], spread)
    if item["deviation"] is None:
        return f"{name} {shown} differs from {typical}, the value of every training row"
    if item["direction"] == "at":
        return f"{name} {shown} is close to the typical {typical}"
    return f"{name} {shown} is {fmt_sigma(item['deviation'])} {item['direction']} the typical {typical}"


def sentence(items: list[dict[str, Any]]) -> str:
    return "; ".join(describe_feature(i) for i in items)


def _surprise(c: Contributions) -> np.ndarray:
    """How unusual each value is, in σ (text: the normal σ with the same two-sided tail share)."""
    from scipy.stats import norm

    out = np.zeros(c.matrix.shape)
    for j, col in enumerate(c.features):
        if col in c.typical.median:
            k = list(c.typical.median).index(col)
            sd = c.typical.sigma[col]
            gap = np.abs(c.checked.numeric[:, k] - c.typical.median[col])
            dev = gap / sd if sd > 0 else np.where(gap > 0, np.inf, 0.0)  # no spread: any change is extreme
            out[:, j] = np.nan_to_num(dev, nan=0.0, posinf=1e300)
        else:
            shares = c.typical.shares.get(col, {})
            share = as_text(c.checked.frame[col]).map(shares).fillna(0.0).to_numpy(dtype=np.float64)
            out[:, j] = np.minimum(norm.isf(share / 2), 1e300)
    return out


def items(c: Contributions, top: int) -> list[list[dict[str, Any]]]:
    """The named features of each record, most contributing first, as structured data."""
    top = check_top(top)
    surprise = _surprise(c)
    numeric_pos = {col: k for k, col in enumerate(c.typical.median)}
    text_values = {col: as_text(c.checked.frame[col]).to_numpy() for col in c.typical.mode}
    out = []
    for i in range(len(c.matrix)):
        contrib = c.matrix[i]
        if (contrib > 0).any():
            order = np.lexsort((-surprise[i], -contrib))[:top]
            order = [j for j in order if contrib[j] > 0 and contrib[j] >= MINOR * contrib[order[0]]]
        else:  # no single feature lowers the score: name the most unusual values
            order = list(np.argsort(-surprise[i], kind="stable")[:top])
        row = []
        for j in order:
            col = c.features[j]
            item: dict[str, Any] = {"feature": col}
            if col in numeric_pos:
                value = float(c.checked.numeric[i, numeric_pos[col]])
                median, sd = c.typical.median[col], c.typical.sigma[col]
                dev = (value - median) / sd if sd > 0 and math.isfinite(value) else None
                direction = "above" if value > median else "below" if value < median else "at"
                if dev is not None and abs(dev) < 0.05:
                    direction = "at"
                item.update(kind="numeric", value=value if math.isfinite(value) else None, typical=median,
                            spread=sd if math.isfinite(sd) else None, deviation=None if dev is None else
                            round(dev, 3), direction=direction, share=None, typical_share=None)
            else:
                value = str(text_values[col][i])
                share = c.typical.shares.get(col, {}).get(value, 0.0)
                mode = c.typical.mode[col]
                item.update(kind="text", value=value, typical=mode, spread=None, deviation=None,
                            direction="unseen" if share == 0 else "rare" if share < RARE else "common",
                            share=share, typical_share=c.typical.shares[col].get(mode, 0.0))
            item.update(contribution=float(contrib[j]), probability_drop=float(c.probability_drop[i, j]))
            row.append(item)
        out.append(row)
    return out


def describe(c: Contributions, top: int = 3) -> pd.DataFrame:
    """One row per record: its keys and result columns, ``explanation`` and ``contributions``."""
    named = items(c, top)
    table = c.result.copy()
    table[EXPLANATION] = [sentence(row) for row in named]
    table[CONTRIBUTIONS] = named
    table.attrs["method"] = c.method
    return table


def explain(model, frame: Any, top: int = 3, rows: str = "flagged", method: str = "auto") -> pd.DataFrame:
    """Explain the flagged records of ``frame`` (``rows="all"``: every record).

    Returns one row per explained record: the record keys (``columns.id``), the result columns,
    ``explanation`` (one sentence) and ``contributions`` (a list of dicts: feature, kind, value,
    typical, spread, deviation (σ), direction, share (text), contribution (raw score drop),
    probability_drop), the most contributing feature first. ``method``: ``auto`` (the fastest path
    the detector allows), ``occlusion``, ``tail_scores`` (ECOD/COPOD) or ``detector``.
    """
    top = check_top(top)
    return describe(contributions(model, frame, rows, method), top)


def explanation_column(model, checked: validation.Checked, flags: np.ndarray, top: int) -> np.ndarray:
    """The ``explanation`` result column: a sentence for flagged rows, '' for the others."""
    out = np.full(len(flags), "", dtype=object)
    pos = np.flatnonzero(flags)
    if len(pos):
        c = compute(model, _subset(checked, pos))
        out[pos] = [sentence(row) for row in items(c, top)]
    return out


# --------------------------------------------------------------------------- global importance
IMPORTANCE_ROWS = 2000


def importance_table(c: Contributions) -> pd.DataFrame:
    """Mean absolute contribution per feature over the records of ``c``, largest first."""
    m = c.matrix
    mean_abs = np.abs(m).mean(axis=0) if len(m) else np.zeros(len(c.features))
    total = mean_abs.sum()
    table = pd.DataFrame({"feature": c.features, "importance": mean_abs,
                          "share": mean_abs / total if total > 0 else np.zeros(len(c.features)),
                          "mean_contribution": m.mean(axis=0) if len(m) else np.zeros(len(c.features)),
                          "rows": len(m)})
    table = table.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)
    table.attrs["method"] = c.method
    return table


def feature_importance(model, frame: Any = None, rows: str = "flagged", method: str = "auto",
                       sample: int = IMPORTANCE_ROWS, seed: int = 0) -> pd.DataFrame:
    """Global feature importance: mean |contribution| per feature, sorted (columns feature, importance,
    share, mean_contribution, rows).

    Measured on ``frame``, or without one on the model's training reference sample; over its flagged
    rows (all rows when none is flagged, or with ``rows="all"``); at most ``sample`` rows (random, seeded).
    """
    model = fitted(model)
    _check_rows(rows)
    _check_method(method)
    checked = reference_rows(model) if frame is None else validated(model, frame)
    X = model._features(checked)
    scores = model._detect(X)
    _, flags, _ = model.label(scores)
    flagged = rows == "flagged" and bool(flags.any())
    pos = np.flatnonzero(flags) if flagged else np.arange(len(scores))
    if len(pos) > sample:
        pos = np.sort(np.random.default_rng(seed).choice(pos, sample, replace=False))
    c = compute(model, _subset(checked, pos), method, X=X[pos], scores=scores[pos])
    table = importance_table(c)
    table.attrs["rows_used"] = "flagged" if flagged else "all"
    return table
