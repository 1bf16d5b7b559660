"""``ensemble``: several detectors combined on calibrated scores.

Each member is any registered detector with its own parameters. After
fitting, each member's training scores fit its own ECDF
:class:`~adpipe.core.calibration.Calibrator`, so every member speaks the same
language (share of training rows scoring lower) before the scores are
combined. ``aom`` and ``moa`` follow PyOD's ``pyod.models.combination``
(combo's static buckets: members shuffled with ``random_state``, then cut into
``n_buckets`` equal groups); they are computed here so combo is not needed.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Literal, Optional, Union

import numpy as np
import pandas as pd
from pydantic import ValidationError, model_validator
from pydantic_core import PydanticCustomError

import adpipe
from adpipe.core.calibration import Calibrator
from adpipe.core.registry import suggest
from adpipe.plugins.algorithms._common import as_matrix, check_width
from adpipe.plugins.algorithms._describe import allowed

METHODS = ("average", "max", "median", "weighted", "aom", "moa", "vote")
MIN_MEMBERS, MAX_MEMBERS = 2, 10
#: vote: weight of the members' mean probability in the score; below 1 / MAX_MEMBERS, so it only breaks ties
TIE_BREAK = 0.01
DEFAULT_MEMBERS = [{"type": "iforest"}, {"type": "hbos"}, {"type": "copod"}]

MemberSpec = Union[str, dict[str, Any]]


def _invalid(title: str, loc: tuple, detail: str, value: Any) -> ValidationError:
    error = PydanticCustomError("ensemble", "{detail}", {"detail": detail})
    return ValidationError.from_exception_data(title, [{"type": error, "loc": loc, "input": value}])


def member_class(name: str) -> type[adpipe.Detector]:
    """The detector class registered as ``name`` (ConfigError naming the choices when there is none)."""
    return adpipe.get_registry().get("detector", name)


def normalize_members(value: Any, title: str) -> Any:
    """``["iforest", {type: knn, n_neighbors: 10}]`` -> list of ``{"type": ..., **params}``, each checked
    by its detector's Params; errors are located at ``members.<i>.<param>``."""
    if not isinstance(value, list):
        return value  # the field's own type check reports it
    out = []
    for i, spec in enumerate(value):
        spec = {"type": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, dict):
            raise _invalid(title, ("members", i), "a member is a detector name or {type: NAME, ...params}", spec)
        spec = dict(spec)
        kind = spec.pop("type", None)
        if not isinstance(kind, str) or not kind:
            raise _invalid(title, ("members", i, "type"), "each member needs `type:` (a detector name)", kind)
        try:
            cls = member_class(kind)
        except adpipe.ConfigError as exc:
            raise _invalid(title, ("members", i, "type"), f"'{kind}' is not an installed detector; {exc.hint}",
                           kind) from None
        try:
            cls.Params(**spec)
        except ValidationError as exc:
            raise ValidationError.from_exception_data(
                title, [_member_error(kind, cls, i, err) for err in exc.errors()]) from None
        out.append({"type": kind, **spec})
    return out


def _member_error(kind: str, cls, i: int, err: dict) -> dict:
    loc = ("members", i, *err["loc"])
    key = str(err["loc"][0]) if err["loc"] else ""
    fields = cls.Params.model_fields
    if err["type"] == "extra_forbidden":
        detail = f"'{kind}' has no parameter '{key}'; {suggest(key, list(fields))}"
    elif err["type"] == "ensemble":  # a nested ensemble's own message
        detail = err["msg"]
    else:
        detail = f"{kind}: {err['msg']}" + (f" (allowed: {allowed(fields[key])})" if key in fields else "")
    return {"type": PydanticCustomError("ensemble", "{detail}", {"detail": detail}), "loc": loc,
            "input": err.get("input")}


def default_buckets(n_members: int) -> int:
    """aom/moa with no ``n_buckets``: the smallest divisor >= 2 of the member count."""
    return next(b for b in range(2, n_members + 1) if n_members % b == 0)


def member_labels(members: list[dict[str, Any]]) -> list[str]:
    """Column names for members: the type, numbered when a type occurs more than once (knn_1, knn_2)."""
    types = [m["type"] for m in members]
    seen: dict[str, int] = {}
    out = []
    for t in types:
        seen[t] = seen.get(t, 0) + 1
        out.append(f"{t}_{seen[t]}" if types.count(t) > 1 else t)
    return out


def buckets(n_members: int, n_buckets: int, random_state: int | None) -> list[list[int]]:
    """combo's static buckets: member indices shuffled (sklearn.utils.shuffle), cut into equal groups."""
    from sklearn.utils import shuffle

    order = shuffle(list(range(n_members)), random_state=random_state)
    size = n_members // n_buckets
    return [sorted(order[i:i + size]) for i in range(0, n_members, size)]


def combine(P: np.ndarray, method: str, weights: np.ndarray | None = None, groups: list[list[int]] | None = None,
            cutoff: float = 0.9) -> np.ndarray:
    """Combined score of each row of ``P`` (rows x members, calibrated probabilities)."""
    if method == "average":
        return P.mean(axis=1)
    if method == "weighted":
        return P @ weights
    if method == "max":
        return P.max(axis=1)
    if method == "median":
        return np.median(P, axis=1)
    if method == "aom":
        return np.mean([P[:, g].max(axis=1) for g in groups], axis=0)
    if method == "moa":
        return np.max([P[:, g].mean(axis=1) for g in groups], axis=0)
    if method == "vote":
        return (P >= cutoff).mean(axis=1) + TIE_BREAK * P.mean(axis=1)
    raise ValueError(f"unknown method {method!r}")


def contributions(P: np.ndarray, method: str, weights: np.ndarray | None = None,
                  groups: list[list[int]] | None = None, cutoff: float = 0.9) -> np.ndarray:
    """Each member's part of the combined score: rows x members, each row summing to :func:`combine`."""
    n, m = P.shape
    rows = np.arange(n)
    C = np.zeros_like(P)
    if method == "average":
        C = P / m
    elif method == "weighted":
        C = P * weights
    elif method == "max":
        top = P.argmax(axis=1)
        C[rows, top] = P[rows, top]
    elif method == "median":
        order = np.argsort(P, axis=1, kind="stable")
        middle = [m // 2] if m % 2 else [m // 2 - 1, m // 2]
        for k in middle:
            C[rows, order[:, k]] += P[rows, order[:, k]] / len(middle)
    elif method == "aom":
        for g in groups:
            top = np.asarray(g)[P[:, g].argmax(axis=1)]
            C[rows, top] += P[rows, top] / len(groups)
    elif method == "moa":
        means = np.column_stack([P[:, g].mean(axis=1) for g in groups])
        best = means.argmax(axis=1)
        for b, g in enumerate(groups):
            hit = best == b
            C[np.ix_(hit, g)] = P[np.ix_(hit, g)] / len(g)
    elif method == "vote":
        C = ((P >= cutoff) + TIE_BREAK * P) / m
    return C


def shares(C: np.ndarray) -> np.ndarray:
    """Contributions as shares of each row's combined score (equal shares where it is 0)."""
    total = C.sum(axis=1, keepdims=True)
    safe = np.where(total > 0, total, 1.0)
    return np.where(total > 0, C / safe, 1.0 / C.shape[1])


def fit_member(det: adpipe.Detector, X: np.ndarray) -> np.ndarray:
    """Fit one member; return its training scores (its own ``training_scores_`` when it sets them)."""
    det.fit(X)
    own = getattr(det, "training_scores_", None)
    if own is None or len(own) != len(X):
        own = det.score(X)
    return np.asarray(own, dtype=float).reshape(-1)


@contextlib.contextmanager
def member_errors(label: str, kind: str, stage: str) -> Iterator[None]:
    """A member's unexpected exception -> ModelError naming the member (adpipe errors pass through)."""
    try:
        yield
    except adpipe.AdpipeError:
        raise
    except Exception as exc:
        raise adpipe.ModelError(f"ensemble member '{label}' failed to {stage}: {type(exc).__name__}: {exc}",
                                hint=f"check that member's parameters (`adpipe plugins show {kind}`)") from exc


class Ensemble(adpipe.Detector):
    """Ensemble of detectors combined on calibrated scores (average, max, median, weighted, aom, moa, vote).

    Each member is any registered detector with its own parameters. Its training scores fit its own
    ECDF calibration, and members are combined on those probabilities, so detectors on different
    scales mix fairly (Zimek, Campello & Sander, SIGKDD Explorations 2014). aom/moa: Aggarwal &
    Sathe, SIGKDD Explorations 2015 (PyOD's pyod.models.combination). ``contributions(X)`` and
    ``describe()`` show what each member adds. See docs/ensembles.md.
    """

    name = "ensemble"

    class Params(adpipe.Params):
        members: list[MemberSpec] = adpipe.Field(
            DEFAULT_MEMBERS, min_length=MIN_MEMBERS, max_length=MAX_MEMBERS,
            description="2 to 10 member detectors, each a detector name (`iforest`) or a mapping "
                        "{type: knn, n_neighbors: 10} checked by that detector's parameters.")
        method: Literal[METHODS] = adpipe.Field(
            "average", description="How calibrated member scores combine: average, max, median, weighted "
                                   "(needs weights), aom (average of bucket maxima), moa (maximum of bucket "
                                   "averages) or vote (share of members at or above vote_cutoff).")
        weights: Optional[list[float]] = adpipe.Field(
            None, description="method weighted: one positive weight per member (normalised to sum to 1).")
        n_buckets: Optional[int] = adpipe.Field(
            None, ge=2, description="aom/moa: number of member groups; must divide the member count "
                                    "(null = its smallest divisor >= 2).")
        vote_cutoff: float = adpipe.Field(
            0.9, gt=0, lt=1, description="vote: a member votes 'anomaly' at a calibrated probability >= this.")
        max_fit_rows: Optional[int] = adpipe.Field(
            None, ge=10, description="Fit members on a seeded random sample of at most this many rows (the "
                                     "other training rows are scored); null = every row. Keeps neighbour-based "
                                     "members affordable on large data.")
        random_state: Optional[int] = adpipe.Field(
            0, description="Seed of the aom/moa buckets and of the max_fit_rows sample.")

        @model_validator(mode="before")
        @classmethod
        def _members(cls, data: Any) -> Any:
            if isinstance(data, dict) and "members" in data:
                data = {**data, "members": normalize_members(data["members"], "ensemble")}
            return data

        @model_validator(mode="after")
        def _consistent(self):
            m = len(self.members)
            if self.method == "weighted":
                if self.weights is None:
                    raise _invalid("ensemble", ("weights",), "method weighted needs `weights`, one per member",
                                   None)
                if len(self.weights) != m:
                    raise _invalid("ensemble", ("weights",),
                                   f"{len(self.weights)} weights for {m} members: give one weight per member",
                                   self.weights)
                if min(self.weights) <= 0 or not np.isfinite(self.weights).all():
                    raise _invalid("ensemble", ("weights",), "weights must be positive finite numbers",
                                   self.weights)
            elif self.weights is not None:
                raise _invalid("ensemble", ("weights",), f"weights are used only by method weighted, not "
                                                         f"{self.method}", self.weights)
            if self.method in ("aom", "moa") and self.n_buckets is not None:
                ok = [b for b in range(2, m + 1) if m % b == 0]
                if self.n_buckets not in ok:
                    raise _invalid("ensemble", ("n_buckets",),
                                   f"{self.n_buckets} buckets do not split {m} members into equal groups; "
                                   f"allowed: {', '.join(map(str, ok))}", self.n_buckets)
            return self

    members_: list[adpipe.Detector] | None = None
    calibrators_: list[Calibrator] | None = None
    n_features_in_: int | None = None
    fit_rows_: int | None = None  # rows the members were fitted on
    summary_: dict[str, Any] | None = None  # per member: correlation with the combined score, mean share

    @classmethod
    def key_params(cls) -> tuple[str, ...]:
        return ("members", "method")

    # -- the set-up the params describe ------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        return member_labels(self.params.members)

    def _weights(self) -> np.ndarray | None:
        w = self.params.weights
        return None if w is None else np.asarray(w, dtype=float) / float(np.sum(w))

    def _groups(self) -> list[list[int]] | None:
        p = self.params
        if p.method not in ("aom", "moa"):
            return None
        m = len(p.members)
        return buckets(m, p.n_buckets or default_buckets(m), p.random_state)

    def _combine(self, P: np.ndarray) -> np.ndarray:
        return combine(P, self.params.method, self._weights(), self._groups(), self.params.vote_cutoff)

    def _contributions(self, P: np.ndarray) -> np.ndarray:
        return contributions(P, self.params.method, self._weights(), self._groups(), self.params.vote_cutoff)

    # -- the detector contract ------------------------------------------------------------------
    def fit(self, X) -> "Ensemble":
        X = as_matrix(X, self.name)
        n = X.shape[0]
        if n < 2:
            raise adpipe.DataError(f"detector '{self.name}' needs at least 2 training rows, got {n}.")
        limit = self.params.max_fit_rows
        sample = None
        if limit is not None and n > limit:
            rng = np.random.default_rng(self.params.random_state)
            sample = np.sort(rng.choice(n, limit, replace=False))
        fit_X = X if sample is None else X[sample]
        members, calibrators = [], []
        P = np.empty((n, len(self.params.members)))
        for j, (label, spec) in enumerate(zip(self.labels, self.params.members, strict=True)):
            params = {k: v for k, v in spec.items() if k != "type"}
            det = member_class(spec["type"])(params)
            with member_errors(label, spec["type"], "fit"):
                own = fit_member(det, fit_X)
            calibrator = Calibrator("ecdf").fit(own)
            raw = own
            if sample is not None:  # the rows left out of fitting are scored
                rest = np.ones(n, dtype=bool)
                rest[sample] = False
                raw = np.empty(n)
                raw[sample] = own
                with member_errors(label, spec["type"], "score"):
                    raw[rest] = det.score(X[rest])
            P[:, j] = calibrator.transform(raw)
            members.append(det)
            calibrators.append(calibrator)
        self.members_, self.calibrators_, self.n_features_in_ = members, calibrators, X.shape[1]
        self.fit_rows_ = int(len(fit_X))
        self.training_scores_ = self._combine(P)
        self._summarise(P, self.training_scores_)
        return self

    def member_probabilities(self, X) -> np.ndarray:
        """Calibrated probability of each row under each member (rows x members)."""
        if self.members_ is None:
            raise adpipe.ModelError(f"detector '{self.name}' is not fitted yet.", hint="call fit(X) before score(X)")
        X = as_matrix(X, self.name)
        check_width(self.n_features_in_, X, self.name)
        P = np.empty((X.shape[0], len(self.members_)))
        if X.shape[0] == 0:
            return P
        for j, (label, spec) in enumerate(zip(self.labels, self.params.members, strict=True)):
            with member_errors(label, spec["type"], "score"):
                P[:, j] = self.calibrators_[j].transform(self.members_[j].score(X))
        return P

    def score(self, X) -> np.ndarray:
        P = self.member_probabilities(X)
        return self._combine(P) if len(P) else np.empty(0, dtype=float)

    # -- what each member adds --------------------------------------------------------------------
    def contributions(self, X) -> pd.DataFrame:
        """Per row: each member's calibrated probability (column = member label), each member's share of
        the combined score (``<label>_share``, summing to 1) and the combined score (``combined``)."""
        P = self.member_probabilities(X)
        index = X.index if isinstance(X, pd.DataFrame) else None
        S = shares(self._contributions(P))
        out = pd.DataFrame(P, columns=self.labels, index=index)
        for j, label in enumerate(self.labels):
            out[f"{label}_share"] = S[:, j]
        out["combined"] = self._combine(P)
        return out

    def _summarise(self, P: np.ndarray, combined: np.ndarray) -> None:
        S = shares(self._contributions(P))
        corr = []
        for j in range(P.shape[1]):
            same = np.std(P[:, j]) == 0 or np.std(combined) == 0
            corr.append(None if same else round(float(np.corrcoef(P[:, j], combined)[0, 1]), 4))
        self.summary_ = {"correlation": corr, "mean_share": [round(float(s), 4) for s in S.mean(axis=0)]}

    def describe(self) -> dict[str, Any]:
        """Members, method, weights and, once fitted, each member's correlation with the combined training
        score and its average share of it."""
        p = self.params
        weights = self._weights()
        groups = self._groups()
        fitted = self.members_ is not None
        members = []
        for j, (label, spec) in enumerate(zip(self.labels, p.members, strict=True)):
            row: dict[str, Any] = {"label": label, "type": spec["type"],
                                   "params": {k: v for k, v in spec.items() if k != "type"}}
            if weights is not None:
                row["weight"] = round(float(weights[j]), 4)
            if fitted:
                row["correlation"] = self.summary_["correlation"][j]
                row["mean_share"] = self.summary_["mean_share"][j]
            members.append(row)
        out: dict[str, Any] = {"method": p.method, "members": members,
                               "weights": None if weights is None else [round(float(w), 4) for w in weights]}
        if groups is not None:
            out["buckets"] = [[self.labels[i] for i in g] for g in groups]
        if p.method == "vote":
            out["vote_cutoff"] = p.vote_cutoff
        if fitted:
            out["fit_rows"] = self.fit_rows_
        return out

