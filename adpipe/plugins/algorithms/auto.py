"""``auto``: a small, diverse ensemble chosen from the data's shape, without labels.

The rules (evidence and measurements in docs/ensembles.md):

- always ``iforest`` (best mean ROC-AUC of the unsupervised detectors in
  ADBench, Han et al. 2022) and ``hbos`` (among ADBench's strongest, linear
  time, a per-feature view unlike iforest's);
- a third member for a different view of the data: ``knn`` (distance to the
  k-th neighbour, k = 20, or rows // 5 on tiny data) on low-dimensional,
  mostly continuous data; ``copod`` instead when there are at least 50
  features (distances concentrate, Beyer et al. 1999, Zimek et al. 2012) or
  when most features are discrete (distances tie; tail probabilities work
  from value frequencies);
- features are standardised first (kNN needs comparable units, and so does
  HBOS's density regulariser; iforest and copod are unchanged by it);
- each member's scores are calibrated (ECDF, Zimek, Campello & Sander 2014)
  and the three are combined by their **median**: one member that is badly
  wrong on a dataset (kNN when anomalies form a dense cluster) cannot move the
  result;
- on more than ``max_fit_rows`` rows the members are fitted on a seeded random
  sample and the other rows are scored, so neighbour search stays affordable.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import numpy as np
import pandas as pd

import adpipe
from adpipe.plugins.algorithms._common import as_matrix, check_width
from adpipe.plugins.algorithms.ensemble import Ensemble

HIGH_DIM = 50  # features from which knn is left out
DISCRETE_VALUES = 10  # a feature with at most this many distinct values is discrete
MOSTLY_DISCRETE = 0.5  # share of discrete features from which knn is left out
K_NEIGHBORS = 20  # knn's k (Campos et al. 2016: larger k is steadier than small k)
PROFILE_ROWS = 5000  # rows the feature profile is measured on (a seeded sample)
METHOD = "median"  # of three calibrated scores: robust to one failing member
BRUTE_FROM = 8  # knn searches by brute force from this many features (trees lose their edge; same neighbours)


def profile(X: np.ndarray, seed: int | None = 0) -> dict[str, Any]:
    """Cheap, label-free facts about a feature matrix: rows, features, discrete/binary/constant columns."""
    n, d = X.shape
    rows = X
    if n > PROFILE_ROWS:
        rows = X[np.random.default_rng(seed).choice(n, PROFILE_ROWS, replace=False)]
    distinct = np.array([len(np.unique(rows[:, j])) for j in range(d)])
    discrete = int((distinct <= DISCRETE_VALUES).sum())
    return {"rows": int(n), "features": int(d), "discrete_features": discrete,
            "binary_features": int((distinct <= 2).sum()), "constant_features": int((distinct <= 1).sum()),
            "discrete_share": round(discrete / d, 4) if d else 0.0}


def choose(facts: dict[str, Any], max_fit_rows: int, seed: int | None = 0) -> tuple[list[dict], list[str]]:
    """The members for data with these ``facts`` (see :func:`profile`) and why each was chosen."""
    n, d = facts["rows"], facts["features"]
    members: list[dict[str, Any]] = [{"type": "iforest", "random_state": seed}, {"type": "hbos"}]
    reasons = ["iforest: the best mean ROC-AUC of the unsupervised detectors in ADBench (Han et al. 2022); "
               "isolates rows that few random splits separate",
               "hbos: among ADBench's strongest on average and linear in the rows; scores each feature's "
               "histogram density, a different view from iforest's"]
    if d >= HIGH_DIM:
        members.append({"type": "copod"})
        reasons.append(f"copod, not knn: {d} features (>= {HIGH_DIM}), where distances concentrate and nearest "
                       "neighbours lose their contrast (Beyer et al. 1999; Zimek, Schubert & Kriegel 2012)")
    elif facts["discrete_share"] >= MOSTLY_DISCRETE:
        members.append({"type": "copod"})
        reasons.append(f"copod, not knn: {facts['discrete_features']} of {d} features take at most "
                       f"{DISCRETE_VALUES} distinct values, so distances tie; copod's empirical tail "
                       "probabilities work from value frequencies")
    else:
        k = max(1, min(K_NEIGHBORS, n // 5, n - 1))
        members.append({"type": "knn", "n_neighbors": k, **({"algorithm": "brute"} if d >= BRUTE_FROM else {})})
        why = f"knn (k={k}): a local, distance-based view on {d} mostly continuous features; ADBench found " \
              "neighbour methods win where anomalies are local, Campos et al. (2016) found kNN among the " \
              "most robust"
        reasons.append(why + (f"; k = rows // 5 on tiny data ({n} rows)" if k < K_NEIGHBORS else ""))
    reasons.append(f"features standardised (mean 0, sd 1) first; members combined by the {METHOD} of their "
                   "ECDF-calibrated scores (Zimek, Campello & Sander 2014), so one badly wrong member cannot "
                   "move the result")
    if n > max_fit_rows:
        reasons.append(f"members fitted on a random sample of {max_fit_rows} of {n} rows (the others are "
                       "scored), so the neighbour search stays affordable")
    return members, reasons


class Auto(adpipe.Detector):
    """Automatic choice: a small, diverse ensemble picked from the data's shape (no labels needed).

    Always Isolation Forest and HBOS, plus kNN on low-dimensional continuous data or COPOD on
    high-dimensional or mostly discrete data; features standardised, members combined by the median
    of their calibrated scores. ``describe()`` / ``chosen_`` record what was chosen and why. Rules and evidence
    (ADBench, Campos et al. 2016, Zimek et al. 2014): docs/ensembles.md.
    """

    name = "auto"

    class Params(adpipe.Params):
        max_fit_rows: int = adpipe.Field(
            20_000, ge=100, description="Members are fitted on a seeded random sample of at most this many rows "
                                        "(the other training rows are scored), so kNN stays affordable.")
        random_state: Optional[int] = adpipe.Field(
            0, description="Seed of iforest, of the fitting sample and of the profiling sample.")

    scaler_: Any = None
    ensemble_: Ensemble | None = None
    n_features_in_: int | None = None
    #: what was chosen and why: members, method, reasons, the data profile
    chosen_: dict[str, Any] | None = None

    @classmethod
    def key_params(cls) -> tuple[str, ...]:
        return ()

    def fit(self, X) -> "Auto":
        from sklearn.preprocessing import StandardScaler

        X = as_matrix(X, self.name)
        if X.shape[0] < 2:
            raise adpipe.DataError(f"detector '{self.name}' needs at least 2 training rows, got {X.shape[0]}.")
        p = self.params
        facts = profile(X, p.random_state)
        members, reasons = choose(facts, p.max_fit_rows, p.random_state)
        scaler = StandardScaler().fit(X)
        ensemble = Ensemble(members=members, method=METHOD, max_fit_rows=p.max_fit_rows,
                            random_state=p.random_state)
        with warnings.catch_warnings():  # PyOD's KNN warns about any `algorithm` but auto/ball_tree
            warnings.filterwarnings("ignore", message="algorithm parameter is deprecated", category=FutureWarning)
            ensemble.fit(scaler.transform(X))
        self.scaler_, self.ensemble_, self.n_features_in_ = scaler, ensemble, X.shape[1]
        self.training_scores_ = ensemble.training_scores_
        self.chosen_ = {"members": ensemble.labels, "specs": members, "method": METHOD, "reasons": reasons,
                        "profile": facts}
        return self

    def _scaled(self, X) -> np.ndarray:
        if self.ensemble_ is None:
            raise adpipe.ModelError(f"detector '{self.name}' is not fitted yet.", hint="call fit(X) before score(X)")
        X = as_matrix(X, self.name)
        check_width(self.n_features_in_, X, self.name)
        return self.scaler_.transform(X) if len(X) else X

    def score(self, X) -> np.ndarray:
        X = self._scaled(X)
        return self.ensemble_.score(X) if len(X) else np.empty(0, dtype=float)

    def contributions(self, X) -> pd.DataFrame:
        """Per row: each chosen member's calibrated probability and share of the combined score."""
        out = self.ensemble_.contributions(self._scaled(X))
        if isinstance(X, pd.DataFrame):
            out.index = X.index
        return out

    def describe(self) -> dict[str, Any]:
        """What was chosen and why (``chosen_``) plus the fitted ensemble's :meth:`Ensemble.describe`."""
        if self.chosen_ is None:
            return {"chosen": None, "rules": "fit first: the choice depends on the data"}
        return {**self.chosen_, "ensemble": self.ensemble_.describe()}
