"""scikit-learn's outlier detectors as adpipe plugins.

scikit-learn's ``score_samples`` is *higher = more normal*; adpipe's contract
is *higher = more anomalous*, so every score here is ``-score_samples(X)``.
``contamination`` is not exposed: adpipe's threshold stage decides what is
an anomaly (the estimators get their default, which only moves
``offset_``/``predict``, never ``score_samples``). scikit-learn is imported
in ``fit``, not at module import.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Optional, Union

import numpy as np

import adpipe
from adpipe.plugins.algorithms import _forest
from adpipe.plugins.algorithms._common import as_matrix, check_fitted, check_width, model_errors, scores_1d

_PosInt = Annotated[int, adpipe.Field(ge=1)]
_Fraction = Annotated[float, adpipe.Field(gt=0, le=1)]
_RANDOM_STATE = "Seed of the random number generator (an int makes runs reproducible; null = fresh randomness)."
_N_JOBS = "Parallel jobs for fit and score (null = 1, -1 = all cores)."


class _SklearnDetector(adpipe.Detector):
    """Shared fit/score of the scikit-learn wrappers."""

    model_: Any = None
    n_features_in_: int | None = None
    _key: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def key_params(cls) -> tuple[str, ...]:
        """The parameters worth setting first (written as values into the config group file)."""
        return cls._key

    def make_model(self):
        raise NotImplementedError

    def fit(self, X) -> "_SklearnDetector":
        X = as_matrix(X, self.name)
        if X.shape[0] < 2:
            raise adpipe.DataError(f"detector '{self.name}' needs at least 2 training rows, got {X.shape[0]}.")
        model = self.make_model()
        with model_errors(self.name, "fit", X):
            model.fit(X)
        self.model_ = model
        self.n_features_in_ = X.shape[1]
        return self

    def score(self, X) -> np.ndarray:
        check_fitted(self, self.name)
        X = as_matrix(X, self.name)
        check_width(self.n_features_in_, X, self.name)
        if X.shape[0] == 0:
            return np.empty(0, dtype=float)
        with model_errors(self.name, "score", X):
            return scores_1d(-self.score_samples(X), X.shape[0], self.name)

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        return self.model_.score_samples(X)


class IsolationForest(_SklearnDetector):
    """Isolation Forest (scikit-learn): rows isolated by few random splits are anomalous.

    Wraps ``sklearn.ensemble.IsolationForest``; score = ``-score_samples(X)``, in about
    (-1, -0.5] for normal rows and up to 0 for anomalies. Reference: Liu, Ting & Zhou, ICDM 2008.
    """

    name = "isolation_forest"
    _key = ("n_estimators", "max_samples", "max_features")

    class Params(adpipe.Params):
        n_estimators: int = adpipe.Field(100, ge=1, description="Number of trees in the forest.")
        max_samples: Union[Literal["auto"], _PosInt, _Fraction] = adpipe.Field(
            "auto",
            description="Rows drawn to grow each tree: a count, a share of the rows (0, 1], "
            "or 'auto' = min(256, n_rows).",
        )
        max_features: Union[_PosInt, _Fraction] = adpipe.Field(
            1.0, description="Columns drawn to grow each tree: a count or a share of the columns (0, 1]."
        )
        bootstrap: bool = adpipe.Field(False, description="Draw the rows of each tree with replacement.")
        n_jobs: Optional[int] = adpipe.Field(None, description=_N_JOBS)
        random_state: Optional[int] = adpipe.Field(0, description=_RANDOM_STATE)

    def make_model(self):
        from sklearn.ensemble import IsolationForest as Model

        return Model(**self.params.model_dump())

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        return _forest.score_samples(self.model_, X)  # a few rows: all trees at once, identical scores


class LocalOutlierFactor(_SklearnDetector):
    """Local Outlier Factor (scikit-learn, novelty mode): density relative to the neighbours'.

    Wraps ``sklearn.neighbors.LocalOutlierFactor(novelty=True)``; score = the LOF (about 1
    for inliers, larger for outliers). ``training_scores_`` holds the training rows' own
    LOF, computed without counting a row as its own neighbour. Reference: Breunig et al.,
    SIGMOD 2000.
    """

    name = "local_outlier_factor"
    _key = ("n_neighbors",)

    class Params(adpipe.Params):
        n_neighbors: int = adpipe.Field(
            20, ge=1, description="Neighbours that define the local density (capped at n_rows - 1)."
        )
        algorithm: Literal["auto", "ball_tree", "kd_tree", "brute"] = adpipe.Field(
            "auto", description="Nearest-neighbour search algorithm."
        )
        leaf_size: int = adpipe.Field(30, ge=1, description="Leaf size of the ball/kd tree (speed and memory only).")
        metric: str = adpipe.Field("minkowski", description="Distance metric (any scikit-learn/scipy metric name).")
        p: float = adpipe.Field(2, ge=1, description="Power of the Minkowski metric (1 = manhattan, 2 = euclidean).")
        metric_params: Optional[dict[str, Any]] = adpipe.Field(None, description="Extra arguments of the metric.")
        n_jobs: Optional[int] = adpipe.Field(None, description=_N_JOBS)

    def make_model(self):
        from sklearn.neighbors import LocalOutlierFactor as Model

        return Model(novelty=True, **self.params.model_dump())

    def fit(self, X) -> "LocalOutlierFactor":
        super().fit(X)
        self.training_scores_ = -np.asarray(self.model_.negative_outlier_factor_, dtype=float)
        return self


class OneClassSVM(_SklearnDetector):
    """One-class SVM (scikit-learn): distance outside the learned support of the data.

    Wraps ``sklearn.svm.OneClassSVM``; score = ``-score_samples(X)`` (minus the unshifted
    decision function). Scale the features first (e.g. ``standard_scaler``). Reference:
    Schölkopf et al., Neural Computation 2001.
    """

    name = "one_class_svm"
    _key = ("kernel", "nu", "gamma")

    class Params(adpipe.Params):
        kernel: Literal["linear", "poly", "rbf", "sigmoid"] = adpipe.Field("rbf", description="Kernel function.")
        degree: int = adpipe.Field(3, ge=0, description="Degree of the 'poly' kernel.")
        gamma: Union[Annotated[float, adpipe.Field(gt=0)], Literal["scale", "auto"]] = adpipe.Field(
            "scale",
            description="Kernel coefficient of rbf/poly/sigmoid: a positive float, 'scale' = "
            "1 / (n_features * X.var()) or 'auto' = 1 / n_features.",
        )
        coef0: float = adpipe.Field(0.0, description="Independent term of the poly and sigmoid kernels.")
        tol: float = adpipe.Field(1e-3, gt=0, description="Tolerance of the stopping criterion.")
        nu: float = adpipe.Field(
            0.5, gt=0, le=1,
            description="Upper bound on the share of training errors and lower bound on the share of "
            "support vectors.",
        )
        shrinking: bool = adpipe.Field(True, description="Use the shrinking heuristic.")
        cache_size: float = adpipe.Field(200, gt=0, description="Kernel cache size in MB.")
        max_iter: int = adpipe.Field(-1, ge=-1, description="Iteration limit of the solver (-1 = none).")

    def make_model(self):
        from sklearn.svm import OneClassSVM as Model

        return Model(**self.params.model_dump())


class EllipticEnvelope(_SklearnDetector):
    """Elliptic envelope (scikit-learn): robust Mahalanobis distance under a Gaussian fit.

    Wraps ``sklearn.covariance.EllipticEnvelope`` (minimum covariance determinant); score =
    the squared Mahalanobis distance to the robust centre. Reference: Rousseeuw & Van
    Driessen, Technometrics 1999.
    """

    name = "elliptic_envelope"
    _key = ("support_fraction",)

    class Params(adpipe.Params):
        store_precision: bool = adpipe.Field(True, description="Store the estimated precision matrix.")
        assume_centered: bool = adpipe.Field(
            False, description="Assume the data is centred (robust location zero) instead of estimating it."
        )
        support_fraction: Optional[_Fraction] = adpipe.Field(
            None,
            description="Share of rows in the support of the raw MCD estimate, in (0, 1]; "
            "null = (n_rows + n_features + 1) / 2 rows.",
        )
        random_state: Optional[int] = adpipe.Field(0, description=_RANDOM_STATE)

    def make_model(self):
        from sklearn.covariance import EllipticEnvelope as Model

        return Model(**self.params.model_dump())


SKLEARN_DETECTORS: dict[str, type[adpipe.Detector]] = {
    cls.name: cls for cls in (IsolationForest, LocalOutlierFactor, OneClassSVM, EllipticEnvelope)
}
