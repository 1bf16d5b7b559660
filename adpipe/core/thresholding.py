"""Choose a probability cut-off for a fitted model, from scored data (``adpipe threshold``).

    probs = model.score(df)["anomaly_probability"].to_numpy()
    rows = impact_table(probs, labels, [0.9, 0.99], cost_fp=5, cost_fn=200)
    best = optimal_threshold(probs, labels, objective="cost", cost_fp=5, cost_fn=200)
    ci = bootstrap_interval(probs, labels, objective="cost", cost_fp=5, cost_fn=200, seed=0)
    found = data_driven(scores, "karch")          # no labels: a pythresh method, on raw scores
    new = with_cutoff(model, best.threshold, {"method": "cost"})

Searches are exact: every distinct value is tried as a cut-off (flag ``value >= t``) in one sorted sweep
with cumulative counts, O(n log n). Ties between cut-offs go to the higher one (fewer flags).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from adpipe.core import evaluate, schema
from adpipe.core.errors import ConfigError, DataError, PluginError
from adpipe.core.evaluate import Curve
from adpipe.core.jsonable import jsonable

if TYPE_CHECKING:
    from adpipe.core.engine import FittedPipeline

DEFAULT_CUTOFFS = (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
OBJECTIVES = ("f1", "precision", "cost")
#: pythresh thresholders that give one cut-off on 1-D scores quickly and need no extra package (pythresh 1.1)
PYTHRESH_METHODS = {
    "aucp": "AUCP", "chau": "CHAU", "decomp": "DECOMP", "dsn": "DSN", "eb": "EB", "fgd": "FGD",
    "filter": "FILTER", "fwfm": "FWFM", "gesd": "GESD", "hist": "HIST", "iqr": "IQR", "karch": "KARCH",
    "mad": "MAD", "moll": "MOLL", "mtt": "MTT", "qmcd": "QMCD", "regr": "REGR", "wind": "WIND", "yj": "YJ",
    "zscore": "ZSCORE",
}
DEFAULT_METHOD = "karch"
#: data-driven methods see at most this many scores (evenly spaced order statistics of all of them)
PYTHRESH_MAX_ROWS = 2000
INSTALL_HINT = "pip install 'adpipe[thresholds]'  (installs pythresh)"


# --------------------------------------------------------------------------- input checks
def check_values(values: Any, what: str = "anomaly probabilities") -> np.ndarray:
    """A non-empty 1-d float array with only finite values, else DataError."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise DataError(f"There are no {what}: the data has no rows.", hint="pass a file with data rows")
    bad = int((~np.isfinite(v)).sum())
    if bad:
        raise DataError(f"{bad} of {v.size} {what} are NaN or infinite.",
                        hint="check the data for missing or infinite values (or the detector for NaN scores)")
    return v


def check_labels(labels: Any, n: int | None = None, column: str = "label", both: bool = True) -> np.ndarray:
    """Labels as an int array of 0/1, else DataError; ``both`` also needs both classes present."""
    raw = np.asarray(labels).ravel()
    if n is not None and raw.size != n:
        raise DataError(f"There are {raw.size} labels for {n} values.", hint="pass one label per row")
    try:
        y = raw.astype(np.float64)
    except (TypeError, ValueError):
        y = None
    if y is None or not np.isin(y, (0.0, 1.0)).all():
        odd = [x for x in dict.fromkeys(raw.tolist()) if y is None or x not in (0, 1)][:3]
        raise DataError(f"The label column '{column}' must hold 0 (normal) or 1 (anomaly); it also has "
                        f"{', '.join(map(repr, odd))}.",
                        hint="map the labels to 0/1 and drop rows without a label, or name another column "
                             "with label=COLUMN")
    y = y.astype(np.int8)
    if both and y.size and (y.min() == y.max()):
        only = "anomalies (1)" if y[0] else "normal rows (0)"
        raise DataError(f"The label column '{column}' holds only {only}: choosing a threshold needs both classes.",
                        hint="use labelled data with both normal rows and anomalies, or choose without labels "
                             "with --method (e.g. --method karch)")
    return y


def check_costs(cost_fp: float | None, cost_fn: float | None) -> tuple[float, float] | None:
    """(cost_fp, cost_fn) or None when neither is given; a missing one is 0; negative or NaN is a ConfigError."""
    if cost_fp is None and cost_fn is None:
        return None
    out = []
    for name, value in (("cost-fp", cost_fp), ("cost-fn", cost_fn)):
        value = 0.0 if value is None else float(value)
        if not np.isfinite(value) or value < 0:
            raise ConfigError(f"--{name} must be a finite number >= 0, got {value}.",
                              hint="costs are what one false alarm (fp) and one missed anomaly (fn) cost, "
                                   "e.g. --cost-fp 5 --cost-fn 200")
        out.append(value)
    if out[0] == 0 and out[1] == 0:
        raise ConfigError("--cost-fp and --cost-fn are both 0: every threshold would cost nothing.",
                          hint="give at least one positive cost, e.g. --cost-fp 5 --cost-fn 200")
    return out[0], out[1]


def check_cutoffs(values: Iterable[float]) -> list[float]:
    out = []
    for v in values:
        v = float(v)
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"Candidate threshold {v} is not a probability in [0, 1].",
                              hint="thresholds apply to anomaly_probability, e.g. --at 0.97,0.99")
        out.append(v)
    return out


# --------------------------------------------------------------------------- the exact sweep
def _present(curve: Curve) -> Curve:
    """Only the cut-offs that are values of the (resampled) rows: those where the flagged count grows."""
    keep = np.diff(curve.flagged, prepend=0.0) > 0
    return Curve(curve.thresholds[keep], curve.tp[keep], curve.fp[keep], curve.positives, curve.total)


def sweep(values: Any, labels: Any) -> Curve:
    """Exact confusion counts at every distinct value of ``values`` used as the cut-off."""
    v = check_values(values)
    y = check_labels(labels, v.size, both=False)
    return evaluate.ScoreGroups(v).curve(y)


# --------------------------------------------------------------------------- optimising
@dataclass
class Choice:
    """A chosen cut-off and what it gives on the data it was chosen on."""

    threshold: float
    objective: str  # f1, precision or cost (or a data-driven method's name)
    value: float  # F1; recall at the precision target; cost
    flagged: int
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    cost: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))


def value_name(objective: str) -> str:
    return {"f1": "F1", "precision": "recall", "cost": "cost"}.get(objective, "flagged")


def resolve_objective(objective: str | None, min_precision: float | None,
                      costs: tuple[float, float] | None) -> str:
    """The objective: as given, else precision with a target, cost with costs, else F1."""
    if objective is None:
        objective = "precision" if min_precision is not None else "cost" if costs else "f1"
    if objective not in OBJECTIVES:
        from adpipe.core.registry import suggest

        raise ConfigError(f"Unknown objective '{objective}'.", hint=suggest(objective, OBJECTIVES))
    if objective == "precision":
        if min_precision is None:
            raise ConfigError("The precision objective needs a target.", hint="pass --min-precision 0.9")
        if not 0 < min_precision <= 1:
            raise ConfigError(f"--min-precision must be in (0, 1], got {min_precision}.",
                              hint="e.g. --min-precision 0.9: at least 90 % of the flagged rows are anomalies")
    if objective == "cost" and not costs:
        raise ConfigError("The cost objective needs costs.", hint="pass --cost-fp 5 --cost-fn 200")
    return objective


def _best(curve: Curve, objective: str, min_precision: float | None, costs: tuple[float, float] | None) -> int | None:
    """Index of the best cut-off on ``curve`` (the highest on ties); None when a precision target is unreachable."""
    if objective == "f1":
        return int(np.argmax(curve.f1))
    if objective == "cost":
        return int(np.argmin(curve.cost(*costs)))
    ok = np.flatnonzero(curve.precision >= min_precision)
    if not ok.size:
        return None
    # the best recall reaching the target (the lowest such cut-off); on a tie in recall, the highest cut-off
    # (the same anomalies found with fewer false alarms)
    return int(ok[np.argmax(curve.tp[ok] == curve.tp[ok[-1]])])


def _value(curve: Curve, j: int, objective: str, costs: tuple[float, float] | None) -> float:
    if objective == "f1":
        return float(curve.f1[j])
    if objective == "cost":
        return float(curve.cost(*costs)[j])
    return float(curve.recall[j])


def optimal_threshold(probs: Any, labels: Any, objective: str | None = None, *, min_precision: float | None = None,
                      cost_fp: float | None = None, cost_fn: float | None = None,
                      column: str = "label") -> Choice:
    """The cut-off that maximises F1, reaches ``min_precision`` with the best recall, or minimises
    ``cost_fp * FP + cost_fn * FN``, searched over every distinct value of ``probs``.

    >>> p = np.array([0.1, 0.4, 0.35, 0.8, 0.9])
    >>> optimal_threshold(p, [0, 0, 1, 1, 1]).threshold
    0.35
    """
    costs = check_costs(cost_fp, cost_fn)
    objective = resolve_objective(objective, min_precision, costs)
    p = check_values(probs)
    y = check_labels(labels, p.size, column)
    curve = evaluate.ScoreGroups(p).curve(y)
    j = _best(curve, objective, min_precision, costs)
    if j is None:
        k = int(np.nanargmax(curve.precision[::-1]))
        k = len(curve.thresholds) - 1 - k  # the highest precision, at the lowest cut-off reaching it
        raise DataError(f"No threshold reaches precision {min_precision}: the highest is "
                        f"{curve.precision[k]:.4f} (at {curve.thresholds[k]:.6g}, flagging {int(curve.flagged[k])} "
                        "rows).", hint="lower --min-precision, or use a better model or more labelled data")
    return Choice(float(curve.thresholds[j]), objective, _value(curve, j, objective, costs), int(curve.flagged[j]),
                  float(curve.precision[j]), float(curve.recall[j]), float(curve.f1[j]),
                  float(curve.cost(*costs)[j]) if costs else None,
                  {"min_precision": min_precision} if objective == "precision" else
                  {"cost_fp": costs[0], "cost_fn": costs[1]} if costs else {})


# --------------------------------------------------------------------------- bootstrap
@dataclass
class Interval:
    """Percentile bootstrap intervals of the re-optimised cut-off and of the objective at the chosen one."""

    confidence: float
    resamples: int
    seed: int
    threshold: tuple[float, float] | None  # None when no resample could be optimised
    value: tuple[float, float]
    value_name: str
    skipped: int  # resamples with one class only, or where the precision target was unreachable

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))


def bootstrap_interval(probs: Any, labels: Any, objective: str | None = None, *, threshold: float | None = None,
                       n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
                       min_precision: float | None = None, cost_fp: float | None = None,
                       cost_fn: float | None = None, progress: Callable[[int], None] | None = None) -> Interval:
    """Resample the rows with replacement ``n_resamples`` times (seeded): re-optimise the cut-off on each, and
    measure the objective at ``threshold`` (default: the cut-off chosen on all rows) on each.

    A resample is weighted counts over the sorted distinct values, so each one is O(n). ``progress`` is
    called with 1 after each resample.
    """
    if n_resamples < 1:
        raise ConfigError(f"--bootstrap must be >= 1 resample, got {n_resamples}.", hint="e.g. --bootstrap 1000")
    if not 0 < confidence < 1:
        raise ConfigError(f"--confidence must be between 0 and 1, got {confidence}.", hint="e.g. --confidence 0.95")
    costs = check_costs(cost_fp, cost_fn)
    objective = resolve_objective(objective, min_precision, costs)
    p = check_values(probs)
    y = check_labels(labels, p.size)
    if threshold is None:
        threshold = optimal_threshold(p, y, objective, min_precision=min_precision, cost_fp=cost_fp,
                                      cost_fn=cost_fn).threshold
    groups = evaluate.ScoreGroups(p)
    at = int(np.searchsorted(-groups.values, -threshold, side="right")) - 1  # last value >= threshold
    rng = np.random.default_rng(seed)
    cuts, values, skipped = [], [], 0
    for _ in range(n_resamples):
        w = np.bincount(rng.integers(0, p.size, p.size), minlength=p.size).astype(np.float64)
        whole = groups.curve(y, w)
        full = _present(whole)  # the resample's own values are its cut-offs
        if 0 < full.positives < full.total:
            j = _best(full, objective, min_precision, costs)
            if j is None:
                skipped += 1
            else:
                cuts.append(full.thresholds[j])
            values.append(_value(whole, at, objective, costs) if at >= 0 else np.nan)
        else:
            skipped += 1
        if progress is not None:
            progress(1)
    tail = (1 - confidence) / 2 * 100
    q = [tail, 100 - tail]
    cut_ci = tuple(float(x) for x in np.percentile(cuts, q)) if cuts else None
    vals = np.asarray(values, dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    value_ci = tuple(float(x) for x in np.percentile(vals, q)) if vals.size else (np.nan, np.nan)
    return Interval(confidence, n_resamples, seed, cut_ci, value_ci, value_name(objective), skipped)


# --------------------------------------------------------------------------- impact table
def impact_row(flags: np.ndarray, labels: np.ndarray | None = None,
               costs: tuple[float, float] | None = None) -> dict[str, Any]:
    """Flagged count and share of a 0/1 flag array; with labels precision, recall, F1, the counts and the cost."""
    flags = np.asarray(flags, dtype=bool)
    n = flags.size
    row: dict[str, Any] = {"flagged": int(flags.sum()), "share": float(flags.mean()) if n else float("nan")}
    if labels is None:
        return row
    y = np.asarray(labels).astype(bool)
    tp, fp = int((flags & y).sum()), int((flags & ~y).sum())
    fn = int(y.sum()) - tp
    row.update({"precision": tp / (tp + fp) if tp + fp else float("nan"),
                "recall": tp / (tp + fn) if tp + fn else float("nan"),
                "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan"),
                "tp": tp, "fp": fp, "fn": fn})
    if costs:
        row["cost"] = costs[0] * fp + costs[1] * fn
    return row


def impact_table(probs: Any, labels: Any = None, thresholds: Iterable[float] = DEFAULT_CUTOFFS,
                 cost_fp: float | None = None, cost_fn: float | None = None) -> list[dict[str, Any]]:
    """One row per cut-off (ascending): threshold, flagged, share, and with labels precision, recall, F1,
    tp/fp/fn and, with costs, ``cost_fp * FP + cost_fn * FN``. Precision is NaN when nothing is flagged.

    >>> [r["flagged"] for r in impact_table([0.2, 0.95, 0.99], thresholds=[0.9, 0.99])]
    [2, 1]
    """
    p = check_values(probs)
    y = None if labels is None else check_labels(labels, p.size, both=False)
    costs = check_costs(cost_fp, cost_fn)
    return [{"threshold": t, **impact_row(p >= t, y, costs)} for t in sorted(set(check_cutoffs(thresholds)))]


# --------------------------------------------------------------------------- without labels
@dataclass
class DataDriven:
    method: str
    cutoff: float  # on the scale of the values given (raw scores in the CLI)
    flagged: int
    rows_used: int
    warnings: list[str] = field(default_factory=list)


def check_method(method: str) -> str:
    """The pythresh method name in lower case; ConfigError for a name that is not supported."""
    name = str(method).lower()
    if name not in PYTHRESH_METHODS:
        from adpipe.core.registry import suggest

        raise ConfigError(f"Unknown data-driven method '{method}'.",
                          hint=suggest(name, sorted(PYTHRESH_METHODS)) + " (docs/thresholds.md lists them)")
    return name


def data_driven(values: Any, method: str = DEFAULT_METHOD, *, max_rows: int = PYTHRESH_MAX_ROWS) -> DataDriven:
    """A cut-off on ``values`` (higher = more anomalous) from a pythresh thresholder, without labels.

    More than ``max_rows`` values are summarised by evenly spaced order statistics (deterministic, and
    the extremes are kept). pythresh min-max normalises its input; the cut-off is mapped back.
    """
    method = check_method(method)
    v = check_values(values, "scores")
    lo, hi = float(v.min()), float(v.max())
    if lo == hi:
        raise DataError(f"Every score is the same ({lo:.6g}): no data-driven threshold can separate them.",
                        hint="score more (or more varied) data, or check the model")
    try:
        import importlib

        module = importlib.import_module(f"pythresh.thresholds.{method}")
    except ImportError as exc:
        raise PluginError(f"Data-driven thresholds need pythresh ({exc}).", hint=INSTALL_HINT) from None
    sample = np.sort(v)
    if sample.size > max_rows:
        sample = sample[np.linspace(0, sample.size - 1, max_rows).round().astype(int)]
    state = np.random.get_state()  # pythresh seeds numpy's global generator: leave it as it was
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            thresholder = getattr(module, PYTHRESH_METHODS[method])()
            thresholder.eval(sample)
        normed = thresholder.thresh_
    except Exception as exc:
        raise DataError(f"pythresh '{method}' failed on these scores: {type(exc).__name__}: {exc}",
                        hint="try another --method (e.g. iqr, mad or zscore)") from None
    finally:
        np.random.set_state(state)
    if normed is None or not np.isfinite(normed):
        raise DataError(f"pythresh '{method}' gave no cut-off for these scores.", hint="try another --method")
    cutoff = lo + float(normed) * (hi - lo)
    notes = sorted({str(w.message).splitlines()[0] for w in caught})
    return DataDriven(method, cutoff, int((v >= cutoff).sum()), int(sample.size), notes)


# --------------------------------------------------------------------------- a model on data
@dataclass
class Analysis:
    """What ``adpipe threshold`` computes for a model on a data set (``to_dict()`` is its JSON)."""

    rows: int
    rejected: int
    label: str | None  # the label column used, None without labels
    scores: np.ndarray
    probs: np.ndarray
    labels: np.ndarray | None
    current: dict[str, Any]  # the model's threshold: type, on, cutoff, probability (its probability cut-off)
    choice: Choice
    table: list[dict[str, Any]]  # impact rows, each with "marks" (current / chosen)
    interval: Interval | None = None
    costs: tuple[float, float] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "rejected": self.rejected, "label": self.label,
                "positives": None if self.labels is None else int(self.labels.sum()),
                "current": jsonable(self.current),
                "choice": self.choice.to_dict(),
                "interval": self.interval.to_dict() if self.interval else None,
                "cost_fp": self.costs[0] if self.costs else None, "cost_fn": self.costs[1] if self.costs else None,
                "table": jsonable(self.table), "notes": self.notes}


def analyse(model: "FittedPipeline", data: Any, label: str | None = None, *, objective: str | None = None,
            min_precision: float | None = None, cost_fp: float | None = None, cost_fn: float | None = None,
            method: str | None = None, at: Iterable[float] | None = None, bootstrap: int = 1000,
            confidence: float = 0.95, seed: int = 0, progress: Callable[[int], None] | None = None) -> Analysis:
    """Score ``data`` (a frame or a CSV/Parquet path) with ``model`` and choose a probability cut-off.

    With labels (``label``, default the model's ``columns.label``) the cut-off optimises ``objective``
    (F1, a precision target, or cost), with a bootstrap interval; with ``method`` or without labels it
    comes from a pythresh method on the raw scores (default karch), mapped to a probability by the
    model's calibration.
    """
    from adpipe.core.frames import to_frame

    costs = check_costs(cost_fp, cost_fn)
    if method is not None and (objective is not None or min_precision is not None):
        raise ConfigError("--method chooses without labels; it cannot be combined with --objective or "
                          "--min-precision.", hint="drop --method to optimise on the labels, or drop the objective")
    if method is not None:
        method = check_method(method)
    if objective is not None or min_precision is not None:
        resolve_objective(objective, min_precision, costs)
    cutoffs = check_cutoffs(DEFAULT_CUTOFFS if at is None else at)
    frame = to_frame(data)
    if len(frame) == 0:
        raise DataError("The data is empty: there are no rows to score.",
                        hint="pass a file with a header row and data rows")
    column, notes = _label_column(model, frame, label)
    scoring = frame  # a label column the model never saw would be an unexpected column: leave it out
    if column and column not in {*model.feature_columns, *model.id_columns} and not _schema_knows(model, column):
        scoring = frame.drop(columns=[column])
    result, rejected = model.score_batch(scoring)
    if len(result) == 0:
        raise DataError("No row of the data could be scored: every row was rejected.",
                        hint="check the data against the model's features (`adpipe models show`)")
    if len(rejected):
        notes.append(f"{len(rejected)} rows were rejected by the model's validation and left out")
    scores = check_values(result[schema.SCORE].to_numpy(), "anomaly scores")
    probs = check_values(result[schema.PROBABILITY].to_numpy())
    wants_labels = objective is not None or min_precision is not None or costs is not None
    labels = None
    if column:
        labels = check_labels(frame.loc[result.index, column].to_numpy(), column=column, both=method is None)
    elif wants_labels and method is None:
        raise DataError("Choosing a threshold by an objective (F1, precision or cost) needs labels, and the "
                        "data has no label column.",
                        hint="name the 0/1 column with label=COLUMN, or choose without labels with --method karch")
    current = current_threshold(model)
    interval = None
    if labels is not None and method is None:
        choice = optimal_threshold(probs, labels, objective, min_precision=min_precision, cost_fp=cost_fp,
                                   cost_fn=cost_fn, column=column)
        if bootstrap:
            interval = bootstrap_interval(probs, labels, choice.objective, threshold=choice.threshold,
                                          n_resamples=bootstrap, confidence=confidence, seed=seed,
                                          min_precision=min_precision, cost_fp=cost_fp, cost_fn=cost_fn,
                                          progress=progress)
    else:
        found = data_driven(scores, method or DEFAULT_METHOD)
        cutoff = float(np.clip(model.calibrator.transform(np.array([found.cutoff]))[0], 0.0, 1.0))
        row = impact_row(probs >= cutoff, labels, costs)
        choice = Choice(cutoff, found.method, float(row["flagged"]), row["flagged"], row.get("precision"),
                        row.get("recall"), row.get("f1"), row.get("cost"),
                        {"score_cutoff": found.cutoff, "rows_used": found.rows_used, "default": method is None})
        notes += [f"pythresh {found.method}: {w}" for w in found.warnings]
        if choice.flagged > probs.size / 2:
            notes.append(f"pythresh {found.method} flags {choice.flagged / probs.size:.0%} of the rows: it does not "
                         "suit these scores; try another --method (iqr, mad, filter or chau are stricter)")
    on_prob = current["probability"] if current["on"] == "probability" else None
    extra = [choice.threshold] + ([on_prob] if on_prob is not None else [])
    table = impact_table(probs, labels, [*cutoffs, *extra], *(costs or (None, None)))
    for row in table:
        row["marks"] = [m for m, t in (("current", on_prob), ("chosen", choice.threshold)) if row["threshold"] == t]
    if on_prob is None:  # a raw-score cut-off or a per-batch rule (top_k): the model's own flags
        flags = result[schema.LABEL].to_numpy().astype(bool)
        table.append({"threshold": current["probability"], **impact_row(flags, labels, costs), "marks": ["current"]})
    return Analysis(len(result), len(rejected), column, scores, probs, labels, current, choice, table, interval,
                    costs, notes)


def current_threshold(model: "FittedPipeline") -> dict[str, Any]:
    """The model's threshold: its type, the scale it cuts (score/probability), its cut-off and the
    probability equivalent (None for a per-batch rule such as top_k)."""
    th = model.threshold
    on = getattr(th, "threshold_on_", None)
    cut = getattr(th, "threshold_", None)
    prob = None
    if cut is not None and on == "probability":
        prob = float(cut)
    elif cut is not None and on == "score":
        prob = float(model.calibrator.transform(np.array([float(cut)]))[0])
    return {"type": model.config.threshold.type, "on": on, "cutoff": None if cut is None else float(cut),
            "probability": prob}


def _label_column(model: "FittedPipeline", frame, label: str | None) -> tuple[str | None, list[str]]:
    if label:
        if label not in frame.columns:
            have = ", ".join(map(str, frame.columns[:30]))
            raise DataError(f"The data has no label column '{label}'; it has: {have}.",
                            hint="name the 0/1 ground-truth column with label=COLUMN")
        return label, []
    default = model.config.columns.label
    if default and default in frame.columns:
        return default, []
    if default:
        return None, [f"the model's label column '{default}' is not in the data: choosing without labels"]
    return None, []


def _schema_knows(model: "FittedPipeline", column: str) -> bool:
    known = model.schema
    return known is None or known.features_listed or column in {c.name for c in known.columns} \
        or column == known.label


# --------------------------------------------------------------------------- writing
def with_cutoff(model: "FittedPipeline", cutoff: float, provenance: dict[str, Any] | None = None) -> "FittedPipeline":
    """A copy of ``model`` whose threshold is the ``probability`` plugin at ``cutoff`` (flag >= cutoff).

    ``provenance`` (method, objective, value, interval, data file) is kept in the model's training
    metadata under ``threshold``. The copy gets a new ``model_version``; ``model`` is not changed.
    """
    from adpipe.core.config import StageSpec
    from adpipe.core.registry import get_registry

    cutoff = check_cutoffs([cutoff])[0]
    cls = get_registry().get("threshold", "probability")
    spec = StageSpec("threshold", "probability", cls, cls.Params(cutoff=cutoff), "threshold")
    new = copy.copy(model)
    new.config = dataclasses.replace(model.config, threshold=spec)
    new.threshold = spec.build().fit(np.array([0.0]), np.array([cutoff]))
    previous = model.config.threshold.to_dict()
    new.training = {**model.training, "threshold": {"cutoff": cutoff, "previous": previous, **(provenance or {}),
                                                    "note": "validation metrics were measured at the previous "
                                                            "threshold"}}
    digest = hashlib.sha256(f"{model.model_version}|{cutoff!r}|{provenance!r}".encode()).hexdigest()[:10]
    new.model_version = f"{model.config.name}-{digest}"
    new.metadata = {}
    return new
