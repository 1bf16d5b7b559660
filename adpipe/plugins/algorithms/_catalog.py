"""The PyOD detectors adpipe wraps: one row per detector.

A row names the PyOD module and class, gives the one-line summary and the
reference, and says what differs from a mechanical wrap of the constructor:
ranges and choices for key parameters, parameters that are excluded (and
why), parameters that take other detectors (mapped to detector *specs*),
defaults adpipe changes, and what the data must look like.

Rules applied to every row (see :mod:`adpipe.plugins.algorithms._params`):

- ``contamination`` is never a parameter: adpipe's threshold stage decides
  what counts as an anomaly; PyOD gets a fixed ``0.1`` (it only uses it for
  its own ``labels_``, which adpipe ignores).
- ``random_state`` defaults to ``0`` (reproducible runs by default) and
  ``verbose`` to ``0``/``False`` (no progress bars in pipeline logs).
- :data:`COMMON_BOUNDS` gives ranges to parameters that mean the same thing
  in every detector (``n_neighbors``, ``n_estimators``, ``batch_size``, ...).

This module is data only: importing it imports neither PyOD nor scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Literal, Union

from pydantic import Field

from adpipe.plugins.algorithms import _forest

TORCH = ("torch",)
TORCH_HINT = "pip install 'adpipe[deep]' (a CPU build of torch)"

#: value PyOD gets for ``contamination`` (it must be in (0, 0.5]); unused by adpipe
FIXED_CONTAMINATION = 0.1

#: ranges for parameters that mean the same in every detector that has them
COMMON_BOUNDS: dict[str, dict[str, float]] = {
    "n_neighbors": {"ge": 1},
    "n_neighbours": {"ge": 1},
    "n_estimators": {"ge": 1},
    "n_clusters": {"ge": 2},
    "n_components": {"ge": 1},
    "n_selected_components": {"ge": 1},
    "leaf_size": {"ge": 1},
    "p": {"ge": 1},
    "batch_size": {"ge": 1},
    "epochs": {"ge": 1},
    "epoch_num": {"ge": 1},
    "n_epochs": {"ge": 1},
    "stop_epochs": {"ge": 1},
    "epochs_query": {"ge": 1},
    "lr": {"gt": 0},
    "learning_rate": {"gt": 0},
    "learning_rate_gen": {"gt": 0},
    "learning_rate_disc": {"gt": 0},
    "learning_rate_query": {"gt": 0},
    "lr_d": {"gt": 0},
    "lr_g": {"gt": 0},
    "dropout_rate": {"ge": 0, "lt": 1},
    "latent_dim": {"ge": 1},
    "max_iter": {"ge": 1},
    "n_init": {"ge": 1},
    "tol": {"ge": 0},
}

# Parameter types used by several rows ------------------------------------------------
_PosInt = Annotated[int, Field(ge=1)]
_Fraction = Annotated[float, Field(gt=0, le=1)]
#: ``max_samples`` of tree ensembles: "auto", a row count, or a share of the rows
MAX_SAMPLES = Union[Literal["auto"], _PosInt, _Fraction]
#: ``max_features``: a column count or a share of the columns
MAX_FEATURES = Union[_PosInt, _Fraction]
#: ``n_bins`` of histogram detectors: a count (>= 2) or "auto" (Birge-Rozenblac)
N_BINS = Union[Annotated[int, Field(ge=2)], Literal["auto"]]
#: ``subset_size``: a row count or a share of the rows
SUBSET_SIZE = Union[_PosInt, Annotated[float, Field(gt=0, lt=1)]]
#: ``gamma`` of kernel methods: a positive float or sklearn's "auto"/"scale"
KERNEL_GAMMA = Union[Annotated[float, Field(gt=0)], Literal["auto", "scale"]]


@dataclass(frozen=True)
class Spec:
    """A parameter that takes PyOD detector objects, mapped to adpipe detector specs.

    In a config a spec is a detector name (``lof``) or a mapping with ``type``
    and that detector's parameters (``{type: lof, n_neighbors: 15}``); it is
    validated by that detector's ``Params`` and built into a PyOD object at fit.
    """

    many: bool
    default: Any
    description: str


@dataclass(frozen=True)
class Entry:
    name: str
    module: str
    cls: str
    summary: str
    reference: str
    #: key parameters: written as values into configs/detector/<name>.yaml
    key: tuple[str, ...] = ()
    bounds: dict[str, dict[str, float]] = field(default_factory=dict)
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    types: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    #: parameter -> why it is not exposed
    exclude: dict[str, str] = field(default_factory=dict)
    #: parameter -> value always passed to PyOD (not exposed)
    fixed: dict[str, Any] = field(default_factory=dict)
    #: parameter -> function of the training matrix (not exposed)
    from_data: dict[str, Callable[[Any], Any]] = field(default_factory=dict)
    specs: dict[str, Spec] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    install_hint: str | None = None
    min_features: int = 1
    max_features: int | None = None
    #: PyOD scores a batch of new rows *as a set* (see :data:`BATCH_SCORING`): None, "with_training"
    #: (adpipe appends each block of new rows to the training rows) or "blocks" (PyOD does that itself)
    batch_scoring: str | None = None
    #: (warning category name, message regex) silenced during fit/score
    quiet: tuple[tuple[str, str], ...] = ()
    #: Python class name of the adpipe wrapper (default: the PyOD class name)
    py_name: str | None = None
    #: (fitted PyOD model, X) -> decision_function(X), faster for a few rows (single-record scoring)
    small_batch: Callable[[Any, Any], Any] | None = None
    note: str = ""

    @property
    def torch(self) -> bool:
        return "torch" in self.requires


_KNN_ALGO = ("auto", "ball_tree", "kd_tree", "brute")
_ESTIMATOR = "takes an estimator object, which a YAML config cannot express"
_ARRAY = "takes an array shaped like the data, which a config cannot sensibly express"
_SPEC_EXAMPLE = "a detector name (`lof`) or a mapping `{type: lof, n_neighbors: 15}`"

CATALOG: tuple[Entry, ...] = (
    # -- proximity -------------------------------------------------------------------
    Entry("knn", "knn", "KNN", "k-nearest-neighbour distance (distance to the k-th neighbour).",
          "Ramaswamy, Rastogi & Shim, SIGMOD 2000", key=("n_neighbors", "method"),
          choices={"method": ("largest", "mean", "median"), "algorithm": _KNN_ALGO}, bounds={"radius": {"gt": 0}}),
    Entry("avg_knn", "knn", "KNN", "Average distance to the k nearest neighbours.",
          "Angiulli & Pizzuti, PKDD 2002", key=("n_neighbors",), py_name="AvgKNN",
          choices={"algorithm": _KNN_ALGO}, bounds={"radius": {"gt": 0}},
          fixed={"method": "mean"}, exclude={"method": "fixed to 'mean' (use `knn` for the others)"}),
    Entry("median_knn", "knn", "KNN", "Median distance to the k nearest neighbours.",
          "Angiulli & Pizzuti, PKDD 2002", key=("n_neighbors",), py_name="MedianKNN",
          choices={"algorithm": _KNN_ALGO}, bounds={"radius": {"gt": 0}},
          fixed={"method": "median"}, exclude={"method": "fixed to 'median' (use `knn` for the others)"}),
    Entry("lof", "lof", "LOF", "Local Outlier Factor: local density relative to the neighbours' density.",
          "Breunig et al., SIGMOD 2000", key=("n_neighbors",), choices={"algorithm": _KNN_ALGO},
          fixed={"novelty": True}, exclude={"novelty": "always True: adpipe scores new data with the fitted model"}),
    Entry("cof", "cof", "COF", "Connectivity-based Outlier Factor (LOF with chaining distance).",
          "Tang et al., PAKDD 2002", key=("n_neighbors", "method"), bounds={"n_neighbors": {"ge": 2}},
          choices={"method": ("fast", "memory")},
          batch_scoring="with_training"),
    Entry("abod", "abod", "ABOD", "Angle-based outlier detection (variance of angles to the neighbours).",
          "Kriegel, Schubert & Zimek, KDD 2008", key=("n_neighbors", "method"), bounds={"n_neighbors": {"ge": 2}},
          choices={"method": ("fast", "default"), "algorithm": _KNN_ALGO}),
    Entry("sod", "sod", "SOD", "Subspace outlier detection in axis-parallel subspaces of shared neighbours.",
          "Kriegel et al., PAKDD 2009", key=("n_neighbors", "ref_set", "alpha"),
          bounds={"n_neighbors": {"ge": 2}, "ref_set": {"ge": 1}, "alpha": {"gt": 0, "lt": 1}},
          choices={"algorithm": _KNN_ALGO}, note="`ref_set` must be smaller than `n_neighbors`.",
          batch_scoring="with_training"),
    Entry("sampling", "sampling", "Sampling", "Distance to a small random sample of the training data.",
          "Sugiyama & Borgwardt, NeurIPS 2013", key=("subset_size",), types={"subset_size": SUBSET_SIZE}),
    Entry("inne", "inne", "INNE", "Isolation using nearest-neighbour ensembles (hypersphere isolation).",
          "Bandaragoda et al., Computational Intelligence 2018", key=("n_estimators", "max_samples"),
          types={"max_samples": MAX_SAMPLES}),
    Entry("loci", "loci", "LOCI", "Local correlation integral (multi-granularity deviation factor); O(n^3), small data only.",
          "Papadimitriou et al., ICDE 2003", key=("alpha", "k"),
          types={"alpha": Annotated[float, Field(gt=0, le=1)]}, bounds={"k": {"gt": 0}},
          batch_scoring="with_training"),
    # -- probabilistic / statistical -------------------------------------------------
    Entry("ecod", "ecod", "ECOD", "Empirical-CDF-based outlier detection (parameter-free, per-feature tails).",
          "Li et al., TKDE 2022",
          batch_scoring="blocks"),
    Entry("copod", "copod", "COPOD", "Copula-based outlier detection (parameter-free, empirical copula tails).",
          "Li et al., ICDM 2020",
          batch_scoring="blocks"),
    Entry("hbos", "hbos", "HBOS", "Histogram-based outlier score (features treated as independent).",
          "Goldstein & Dengel, KI 2012", key=("n_bins", "alpha", "tol"), types={"n_bins": N_BINS},
          bounds={"alpha": {"gt": 0, "lt": 1}, "tol": {"gt": 0, "lt": 1}}),
    Entry("loda", "loda", "LODA", "Lightweight on-line detector of anomalies (random 1-D projection histograms).",
          "Pevny, Machine Learning 2016", key=("n_bins", "n_random_cuts"), types={"n_bins": N_BINS},
          bounds={"n_random_cuts": {"ge": 1}}),
    Entry("gmm", "gmm", "GMM", "Gaussian mixture model: negative log-likelihood under the fitted mixture.",
          "Aggarwal, Outlier Analysis (2015), ch. 2", key=("n_components", "covariance_type"),
          bounds={"reg_covar": {"ge": 0}},
          exclude={"weights_init": _ARRAY, "means_init": _ARRAY, "precisions_init": _ARRAY,
                   "warm_start": "adpipe fits each model once; warm starts have no effect"}),
    Entry("kde", "kde", "KDE", "Kernel density estimation: negative log-density.",
          "Latecki, Lazarevic & Pokrajac, MLDM 2007", key=("bandwidth",), bounds={"bandwidth": {"gt": 0}}),
    Entry("mad", "mad", "MAD", "Median absolute deviation (modified z-score) of a single feature.",
          "Iglewicz & Hoaglin, How to Detect and Handle Outliers (1993)", max_features=1,
          exclude={"threshold": "only sets PyOD's own labels_ (z-score > 3.5); adpipe's threshold stage labels rows"},
          note="Univariate: the data must have exactly one feature column."),
    Entry("mcd", "mcd", "MCD", "Minimum covariance determinant: robust Mahalanobis distance.",
          "Rousseeuw & Driessen, Technometrics 1999", key=("support_fraction",),
          types={"support_fraction": Union[Annotated[float, Field(gt=0, le=1)], None]}),
    Entry("qmcd", "qmcd", "QMCD", "Quasi-Monte Carlo discrepancy: how much a point disturbs the sample's uniformity.",
          "Fang & Ma, Journal of Complexity 2001"),
    Entry("sos", "sos", "SOS", "Stochastic outlier selection (affinity-based outlier probability); O(n^2) memory.",
          "Janssens et al., Tilburg University TR 2012", key=("perplexity",),
          bounds={"perplexity": {"gt": 0}, "eps": {"gt": 0}},
          batch_scoring="with_training"),
    Entry("cd", "cd", "CD", "Cook's distance of each row in regressions of every feature on the others.",
          "Cook, Technometrics 1977", min_features=2,
          exclude={"model": _ESTIMATOR + " (PyOD's default LinearRegression is used)"},
          note="Needs at least two feature columns.",
          batch_scoring="with_training"),
    # -- linear models / subspace ----------------------------------------------------
    Entry("pca", "pca", "PCA", "Principal component analysis: weighted distance to the principal subspace.",
          "Shyu et al., ICDM workshop 2003", key=("n_components", "n_selected_components", "standardization"),
          types={"n_components": Union[Annotated[int, Field(ge=1)], Annotated[float, Field(gt=0, lt=1)],
                                       Literal["mle"], None]},
          exclude={"copy": "would shadow pydantic's BaseModel.copy; PyOD's default (True: never overwrite the "
                           "input) is kept"}),
    Entry("kpca", "kpca", "KPCA", "Kernel PCA: reconstruction error in the kernel feature space.",
          "Hoffmann, Pattern Recognition 2007", key=("n_components", "kernel", "gamma"),
          choices={"kernel": ("linear", "poly", "rbf", "sigmoid", "cosine")},
          types={"subset_size": SUBSET_SIZE, "gamma": Union[Annotated[float, Field(gt=0)], None]},
          defaults={"n_components": 10},
          note="adpipe's default `n_components` is 10; PyOD's (all components) reconstructs every training row "
               "exactly, so all scores are ~0 (numerical noise)."),
    Entry("ocsvm", "ocsvm", "OCSVM", "One-class SVM (PyOD wrapper): signed distance to the learned boundary.",
          "Schölkopf et al., Neural Computation 2001", key=("kernel", "nu", "gamma"),
          choices={"kernel": ("linear", "poly", "rbf", "sigmoid")}, types={"gamma": KERNEL_GAMMA},
          bounds={"nu": {"gt": 0, "le": 1}, "degree": {"ge": 0}, "cache_size": {"gt": 0}, "max_iter": {"ge": -1}}),
    Entry("lmdd", "lmdd", "LMDD", "Linear method for deviation-based outlier detection (smoothing factor).",
          "Arning, Agrawal & Raghavan, KDD 1996", key=("n_iter", "dis_measure"), bounds={"n_iter": {"ge": 1}},
          choices={"dis_measure": ("aad", "var", "iqr")},
          batch_scoring="with_training"),
    Entry("rgraph", "rgraph", "RGraph", "R-graph: random walks on an elastic-net self-representation graph.",
          "You, Robinson & Vidal, CVPR 2017", key=("transition_steps", "n_nonzero", "gamma"),
          bounds={"transition_steps": {"ge": 1}, "n_nonzero": {"ge": 1}, "gamma": {"gt": 0},
                  "tau": {"ge": 0, "le": 1}, "maxiter_lasso": {"ge": 1}, "blocksize_test_data": {"ge": 1},
                  "support_size": {"ge": 1}, "maxiter": {"ge": 1}},
          choices={"algorithm": ("lasso_lars", "lasso_cd")},
          quiet=(("ConvergenceWarning", ""),),
          note="Assumes inliers lie in a union of low-dimensional subspaces: on full-rank data (a Gaussian "
               "blob, the ADBench sets in docs/detectors.md) it ranks outliers lower than inliers. Scoring refits "
               "the graph on the training rows plus each block of `blocksize_test_data` new rows: slow."),
    # -- outlier ensembles / isolation -----------------------------------------------
    Entry("iforest", "iforest", "IForest", "Isolation Forest (PyOD wrapper): short average path length = anomalous.",
          "Liu, Ting & Zhou, ICDM 2008", key=("n_estimators", "max_samples", "max_features"),
          types={"max_samples": MAX_SAMPLES, "max_features": MAX_FEATURES},
          choices={"behaviour": ("old", "new")}, small_batch=_forest.pyod_decision_function),
    Entry("cblof", "cblof", "CBLOF", "Cluster-based local outlier factor (k-means clusters, large vs small).",
          "He, Xu & Deng, Pattern Recognition Letters 2003", key=("n_clusters", "alpha", "beta"),
          bounds={"alpha": {"gt": 0.5, "lt": 1}, "beta": {"ge": 1}},
          exclude={"clustering_estimator": _ESTIMATOR + " (PyOD's default KMeans(n_clusters, random_state) is used)",
                   "check_estimator": "only checks the excluded clustering_estimator"}),
    Entry("feature_bagging", "feature_bagging", "FeatureBagging",
          "Feature bagging: a base detector fitted on random feature subsets, scores combined.",
          "Lazarevic & Kumar, KDD 2005", key=("base_estimator", "n_estimators", "max_features", "combination"),
          types={"max_features": MAX_FEATURES}, choices={"combination": ("average", "max")},
          specs={"base_estimator": Spec(False, None, "Base detector fitted on each feature subset: "
                                        + _SPEC_EXAMPLE + ". None means PyOD's default, LOF.")},
          exclude={"check_estimator": "deprecated in PyOD",
                   "estimator_params": "give the base detector's parameters in `base_estimator` instead"},
          requires=("combo",), install_hint="pip install 'adpipe[ensembles]'"),
    Entry("lscp", "lscp", "LSCP", "Locally selective combination of parallel outlier ensembles.",
          "Zhao et al., SDM 2019", key=("detector_list", "local_region_size"),
          bounds={"local_region_size": {"ge": 2}, "n_bins": {"ge": 2}},
          types={"local_max_features": Annotated[float, Field(gt=0, le=1)]},
          specs={"detector_list": Spec(True, [{"type": "lof", "n_neighbors": k} for k in (15, 20, 25, 35)],
                                       "Base detectors (at least two), each " + _SPEC_EXAMPLE + ".")},
          quiet=(("UserWarning", "The number of histogram bins is greater than the number of classifiers"),),
          batch_scoring="blocks"),
    Entry("suod", "suod", "SUOD", "SUOD: accelerated training and scoring of a heterogeneous detector ensemble.",
          "Zhao et al., MLSys 2021", key=("base_estimators", "combination"),
          choices={"combination": ("average", "maximization"),
                   "jl_method": ("basic", "discrete", "circulant", "toeplitz")},
          bounds={"target_dim_frac": {"gt": 0, "le": 1}},
          specs={"base_estimators": Spec(True, None, "Base detectors, each " + _SPEC_EXAMPLE
                                         + ". None means SUOD's default mix of LOF, HBOS, COPOD and IForest.")},
          exclude={"approx_clf": _ESTIMATOR},
          requires=("suod", "combo"), install_hint="pip install 'adpipe[ensembles]'"),
    Entry("hdbscan", "hdbscan", "HDBSCAN", "HDBSCAN cluster membership: 1 - membership strength (noise scores 1).",
          "Campello, Moulavi & Sander, PAKDD 2013", key=("min_cluster_size", "min_samples"),
          bounds={"min_cluster_size": {"ge": 2}, "min_samples": {"ge": 1}},
          quiet=(("FutureWarning", "The default value of `copy`"),),
          note="Every row HDBSCAN labels as noise scores exactly 1, so on data without clear clusters many rows "
               "tie at the top score."),
    Entry("rod", "rod", "ROD", "Rotation-based outlier detection (3-D subspace volumes); parameter-free.",
          "Almardeny, Boujnah & Cleary, TKDE 2020",
          batch_scoring="with_training"),
    # -- neural networks (need torch) --------------------------------------------------
    Entry("auto_encoder", "auto_encoder", "AutoEncoder", "Fully connected autoencoder: reconstruction error.",
          "Aggarwal, Outlier Analysis (2015), ch. 3", key=("hidden_neuron_list", "epoch_num", "batch_size", "lr"),
          requires=TORCH, install_hint=TORCH_HINT),
    Entry("vae", "vae", "VAE", "Variational (beta-)autoencoder: reconstruction error.",
          "Kingma & Welling, ICLR 2014; Burgess et al., 2018",
          key=("encoder_neuron_list", "decoder_neuron_list", "latent_dim", "epoch_num", "beta"),
          requires=TORCH, install_hint=TORCH_HINT),
    Entry("deep_svdd", "deep_svdd", "DeepSVDD", "Deep support vector data description: distance to a hypersphere centre.",
          "Ruff et al., ICML 2018", key=("hidden_neurons", "epochs", "use_ae"),
          from_data={"n_features": lambda X: int(X.shape[1])},
          exclude={"c": "the hypersphere centre is learned from the data"},
          requires=TORCH, install_hint=TORCH_HINT),
    Entry("so_gaal", "so_gaal", "SO_GAAL", "Single-objective generative adversarial active learning.",
          "Liu et al., TKDE 2019", key=("stop_epochs",), bounds={"momentum": {"ge": 0, "le": 1}},
          requires=TORCH, install_hint=TORCH_HINT),
    Entry("mo_gaal", "mo_gaal", "MO_GAAL", "Multiple-objective generative adversarial active learning.",
          "Liu et al., TKDE 2019", key=("k", "stop_epochs"), bounds={"k": {"ge": 1}, "momentum": {"ge": 0, "le": 1}},
          requires=TORCH, install_hint=TORCH_HINT),
    Entry("anogan", "anogan", "AnoGAN", "AnoGAN: GAN reconstruction and discriminator feature residuals.",
          "Schlegl et al., IPMI 2017", key=("G_layers", "D_layers", "epochs"),
          requires=TORCH, install_hint=TORCH_HINT),
    Entry("alad", "alad", "ALAD", "Adversarially learned anomaly detection (bi-directional GAN).",
          "Zenati et al., ICDM 2018", key=("latent_dim", "epochs"),
          requires=TORCH, install_hint=TORCH_HINT),
    Entry("dif", "dif", "DIF", "Deep isolation forest: isolation forests on random neural representations.",
          "Xu et al., TKDE 2023", key=("n_ensemble", "n_estimators", "max_samples"),
          bounds={"n_ensemble": {"ge": 1}, "max_samples": {"ge": 1}, "representation_dim": {"ge": 1}},
          requires=TORCH, install_hint=TORCH_HINT),
    Entry("lunar", "lunar", "LUNAR", "LUNAR: a graph neural network learns to score local neighbourhoods.",
          "Goodge et al., AAAI 2022", key=("n_neighbours", "model_type", "n_epochs"),
          choices={"model_type": ("WEIGHT", "SCORE"), "negative_sampling": ("UNIFORM", "SUBSPACE", "MIXED"),
                   "algorithm": _KNN_ALGO},
          bounds={"val_size": {"ge": 0, "lt": 1}},
          exclude={"scaler": _ESTIMATOR + " (PyOD's default: a fresh MinMaxScaler per fit)"},
          requires=TORCH, install_hint=TORCH_HINT),
    Entry("ae1svm", "ae1svm", "AE1SVM", "Autoencoder jointly trained with a one-class SVM on random Fourier features.",
          "Nguyen & Vien, ECML-PKDD 2018", key=("hidden_neurons", "epochs", "nu"),
          bounds={"nu": {"gt": 0, "le": 1}, "kernel_approx_features": {"ge": 1}},
          exclude={"loss_fn": "takes a torch loss object (PyOD's default MSELoss is used)"},
          requires=TORCH, install_hint=TORCH_HINT),
)

#: PyOD detectors deliberately not wrapped, and why (shown in docs/detectors.md)
NOT_WRAPPED: dict[str, str] = {
    "xgbod": "supervised (needs labelled anomalies to train XGBoost on top of unsupervised scores)",
    "devnet": "semi-supervised: `fit(X, y)` requires labelled anomalies",
    "so_gaal_new": "experimental port of SO_GAAL in PyOD 3; `so_gaal` wraps the established one",
    "embedding / multimodal / audio_ae": "not tabular (text, image and audio inputs)",
    "ts_* / pyg_*": "time-series and graph detectors (windowed or graph inputs, not rows of numbers)",
}
