"""Validation on fit: metrics on a held-out split, pass criteria, score-distribution sanity checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

METRICS = ("roc_auc", "pr_auc", "precision", "recall", "f1")


def metrics(labels: np.ndarray, scores: np.ndarray, flags: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC (average precision), and precision/recall/F1 of the flags; {} without both classes."""
    from sklearn import metrics as m

    y = np.asarray(labels, dtype=np.float64)
    ok = ~np.isnan(y)
    y, s, f = y[ok].astype(int), np.asarray(scores)[ok], np.asarray(flags)[ok]
    if len(np.unique(y)) < 2:
        return {}
    return {
        "roc_auc": float(m.roc_auc_score(y, s)),
        "pr_auc": float(m.average_precision_score(y, s)),
        "precision": float(m.precision_score(y, f, zero_division=0)),
        "recall": float(m.recall_score(y, f, zero_division=0)),
        "f1": float(m.f1_score(y, f, zero_division=0)),
    }


# --------------------------------------------------------------------------- exact sweeps over scores
@dataclass
class Curve:
    """Confusion counts with every distinct value as the cut-off (flag ``value >= t``), highest first."""

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    positives: float
    total: float

    @property
    def flagged(self) -> np.ndarray:
        return self.tp + self.fp

    @property
    def fn(self) -> np.ndarray:
        return self.positives - self.tp

    @property
    def precision(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.tp / self.flagged

    @property
    def recall(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.tp / self.positives

    @property
    def f1(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return 2 * self.tp / (2 * self.tp + self.fp + self.fn)

    def cost(self, cost_fp: float, cost_fn: float) -> np.ndarray:
        return cost_fp * self.fp + cost_fn * self.fn

    def roc_auc(self) -> float:
        """Area under the ROC curve; tied values count half (scikit-learn's ``roc_auc_score``)."""
        pos, neg = np.diff(self.tp, prepend=0.0), np.diff(self.fp, prepend=0.0)
        negatives = self.total - self.positives
        below = negatives - self.fp  # negatives scored strictly lower
        return float((pos * (below + 0.5 * neg)).sum() / (self.positives * negatives))

    def average_precision(self) -> float:
        """Precision averaged over the recall steps (scikit-learn's ``average_precision_score``)."""
        precision = np.nan_to_num(self.precision)
        return float(np.sum(np.diff(self.recall, prepend=0.0) * precision))


class ScoreGroups:
    """The distinct values (descending) and each value's group, computed once for many sweeps."""

    def __init__(self, values: np.ndarray):
        ascending, inverse = np.unique(values, return_inverse=True)
        self.values = ascending[::-1]
        self.group = len(ascending) - 1 - inverse.ravel()

    def curve(self, labels: np.ndarray, weights: np.ndarray | None = None) -> Curve:
        """Counts at every distinct value; ``weights`` (resample counts) may leave some values with no rows."""
        k = len(self.values)
        w = np.ones(len(labels)) if weights is None else weights
        pos = np.bincount(self.group, weights=w * labels, minlength=k)
        rows = np.bincount(self.group, weights=w, minlength=k)
        tp = np.cumsum(pos)
        fp = np.cumsum(rows) - tp
        return Curve(self.values, tp, fp, float(tp[-1]), float(tp[-1] + fp[-1]))



# --------------------------------------------------------------------------- held-out data
def holdout_split(labels: np.ndarray | None, n: int, fraction: float, seed: int) -> np.ndarray | None:
    """Positions of a stratified held-out split, or None when there is nothing to evaluate against."""
    if labels is None or fraction <= 0:
        return None
    y = np.asarray(labels, dtype=np.float64)
    known = np.flatnonzero(~np.isnan(y))
    classes, counts = np.unique(y[known], return_counts=True)
    if len(classes) < 2 or counts.min() < 2 or round(len(known) * fraction) < 2:
        return None
    from sklearn.model_selection import train_test_split

    _, held = train_test_split(known, test_size=fraction, random_state=seed, stratify=y[known])
    return np.sort(held)


def labelled_holdout(frame, label: str, fraction: float, seed: int, where: str = "the data",
                     hint: str = "use data with labelled anomalies (1) and normal rows (0)",
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(held-out positions, labels as floats with NaN where unusable): one stratified, seeded split of the
    labelled rows; a DataError when the label column is missing, has one class, or is too small to split."""
    import pandas as pd

    from adpipe.core.errors import DataError
    from adpipe.core.registry import suggest

    if label not in frame.columns:
        raise DataError(f"The label column '{label}' is not in {where}.",
                        hint=suggest(label, [str(c) for c in frame.columns]))
    labels = pd.to_numeric(frame[label], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    classes, counts = np.unique(labels[~np.isnan(labels)], return_counts=True)
    if len(classes) < 2:
        found = "no usable values" if not len(classes) else f"only the value {classes[0]:g}"
        raise DataError(f"The label column '{label}' holds {found}: ROC-AUC, PR-AUC and F1 need both normal (0) "
                        "and anomalous (1) rows.", hint=hint)
    held = holdout_split(labels, len(frame), fraction, seed)
    if held is None:
        shown = ", ".join(f"{c:g}: {n}" for c, n in zip(classes, counts, strict=True))
        raise DataError(f"Too few labelled rows to hold out {fraction:.0%} of them with both classes ({shown}).",
                        hint="use more labelled data or a larger held-out share")
    return held, labels


def sanity_checks(scores: np.ndarray, flags: np.ndarray) -> list[dict[str, str]]:
    """Checks on the training scores that need no labels: degenerate, coarse, non-finite, flag rate."""
    scores = np.asarray(scores, dtype=np.float64)
    finite = scores[np.isfinite(scores)]
    out = []

    def add(name: str, status: str, detail: str) -> None:
        out.append({"check": name, "status": status, "detail": detail})

    bad = scores.size - finite.size
    add("finite_scores", "fail" if finite.size == 0 else "warn" if bad else "ok",
        f"{bad} of {scores.size} training scores are NaN or infinite" if bad else "every training score is finite")
    distinct = np.unique(finite).size
    if distinct <= 1:
        add("distinct_scores", "fail", "every training row got the same score: the detector learned nothing "
            "(constant features, or too few rows for its parameters)")
    elif distinct < min(10, finite.size) or distinct < 0.01 * finite.size:
        add("distinct_scores", "warn", f"only {distinct} distinct scores over {finite.size} rows: ties make the "
            "threshold coarse")
    else:
        add("distinct_scores", "ok", f"{distinct} distinct scores")
    rate = float(np.mean(flags)) if len(flags) else 0.0
    add("flag_rate", "warn" if rate in (0.0, 1.0) else "ok",
        f"{rate:.2%} of training rows flagged" + (" (none)" if rate == 0 else " (all)" if rate == 1 else ""))
    return out


def judge(measured: dict[str, float], criteria: dict[str, float | None], checks: list[dict[str, str]],
          evaluated: bool) -> dict[str, Any]:
    """Apply the pass criteria (``min_<metric>``): returns passed and the reasons it did not."""
    reasons = [f"{c['check']}: {c['detail']}" for c in checks if c["status"] == "fail"]
    for key, limit in criteria.items():
        if limit is None:
            continue
        metric = key.removeprefix("min_")
        if not evaluated or metric not in measured:
            reasons.append(f"{key} = {limit} is set but {metric} could not be measured (no labelled "
                           "held-out rows of both classes)")
        elif measured[metric] < limit:
            reasons.append(f"{metric} {measured[metric]:.4f} < {key} {limit}")
    return {"passed": not reasons, "reasons": reasons}
