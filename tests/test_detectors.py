"""The built-in detector plugins: scikit-learn wrappers and the PyOD catalog."""

from __future__ import annotations

import importlib.util
import pickle
import subprocess
import sys
import warnings
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pydantic
import pytest
import yaml

import adpipe
import adpipe.plugins.algorithms as algorithms
from adpipe.core.registry import Registry, load_registry
from adpipe.plugins.algorithms import DETECTORS, PYOD_DETECTORS, SKLEARN_DETECTORS, TORCH_DETECTORS
from adpipe.plugins.algorithms._catalog import CATALOG

REPO = Path(__file__).resolve().parents[1]
ADBENCH = Path(__file__).resolve().parents[2] / "shared/data/adbench"
CONFIGS = REPO / "adpipe" / "configs" / "detector"

HAS_TORCH = importlib.util.find_spec("torch") is not None
MAIN = ["iforest", "lof", "knn", "ecod", "copod", "hbos", "pca", "ocsvm", "isolation_forest", "local_outlier_factor"]
#: O(n^2) or worse, or numba-heavy: fitted on tiny data only
SLOW = {"abod", "loci", "sos", "lmdd", "kpca", "sod", "rgraph", "rod", "qmcd", "cof", "cblof"}
NON_TORCH = [n for n in DETECTORS if n not in TORCH_DETECTORS]


def _usable(name: str) -> bool:
    return not DETECTORS[name].missing_requirements()


def _data_for(name: str, X: np.ndarray) -> np.ndarray:
    return X[:, :1] if name == "mad" else X


@pytest.fixture(scope="module")
def registry() -> Registry:
    reg = Registry()
    reg.register_module(algorithms, dist="adpipe", entry_point="algorithms")
    return reg


@pytest.fixture(scope="module")
def blobs():
    """Gaussian blob plus outliers scattered on a shell far outside it (train and test)."""
    rng = np.random.default_rng(42)

    def make(n_normal: int, n_out: int):
        normal = rng.normal(size=(n_normal, 4))
        direction = rng.normal(size=(n_out, 4))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        outliers = direction * rng.uniform(6, 9, size=(n_out, 1))
        X = np.vstack([normal, outliers])
        y = np.r_[np.zeros(n_normal), np.ones(n_out)].astype(bool)
        return X, y

    return make(300, 12), make(100, 10)


@pytest.fixture(scope="module")
def glass():
    path = ADBENCH / "14_glass.npz"
    if not path.exists():
        pytest.skip(f"ADBench data not found at {path}")
    data = np.load(path)
    return data["X"].astype(float), data["y"].astype(int)


# -- registration -------------------------------------------------------------------------


def test_at_least_40_detectors_registered(registry):
    names = registry.names("detector")
    assert len(names) >= 40
    assert set(names) == set(DETECTORS) | {"ensemble", "auto"}  # combinations of the others
    assert set(SKLEARN_DETECTORS) == {"isolation_forest", "local_outlier_factor", "one_class_svm", "elliptic_envelope"}
    for name in MAIN + ["avg_knn", "median_knn", "mad", "lscp", "auto_encoder", "vae", "deep_svdd"]:
        assert name in names


def test_registered_through_the_entry_point():
    if not any(ep.value == "adpipe.plugins.algorithms" for ep in entry_points(group="adpipe.plugins")):
        pytest.skip("adpipe is not installed with its entry points")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # other built-in plugin modules may still be under construction
        reg = load_registry(autoload=False)
    assert set(DETECTORS) <= set(reg.names("detector"))


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_plugin_contract(name):
    cls = DETECTORS[name]
    assert issubclass(cls, adpipe.Detector) and cls.name == name
    assert cls.summary() and not cls.summary().endswith(":")
    assert issubclass(cls.Params, adpipe.Params)
    for field, info in cls.Params.model_fields.items():
        assert info.description, f"{name}.{field} has no description"
        assert field != "contamination"
    # defaults are valid and Params round-trip through a dump (as configs do)
    params = cls.Params()
    assert cls.Params(**params.model_dump()) == params
    if "random_state" in cls.Params.model_fields:
        assert params.random_state == 0


def test_pyod_docstrings_name_the_pyod_class():
    for entry in CATALOG:
        cls = PYOD_DETECTORS[entry.name]
        assert f"pyod.models.{entry.module}.{entry.cls}" in cls.__doc__
        assert cls.summary() == entry.summary
    assert len({e.name for e in CATALOG}) == len(CATALOG)


def test_import_does_not_import_pyod_or_sklearn():
    code = "import adpipe.plugins.algorithms, sys; print('pyod' in sys.modules, 'sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == ["False", "False"]


def test_params_and_registration_do_not_import_pyod():
    code = (
        "import sys, adpipe.plugins.algorithms as a\n"
        "from adpipe.core.registry import Registry\n"
        "r = Registry(); r.register_module(a)\n"
        "assert all(c.Params.model_fields is not None for c in a.DETECTORS.values())\n"
        "print('pyod' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.split() == ["False", "False"]


# -- parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_unknown_keys_rejected(name):
    with pytest.raises(pydantic.ValidationError, match="no_such_param"):
        DETECTORS[name](no_such_param=1)
    with pytest.raises(pydantic.ValidationError):
        DETECTORS[name]({"contamination": 0.1})  # the threshold stage owns contamination


@pytest.mark.parametrize(
    "name, params",
    [
        ("lof", {"n_neighbors": 0}),
        ("iforest", {"n_estimators": -1}),
        ("iforest", {"max_samples": 1.5}),
        ("iforest", {"max_samples": "all"}),
        ("knn", {"n_neighbors": 0}),
        ("knn", {"method": "maximum"}),
        ("hbos", {"n_bins": 1}),
        ("ocsvm", {"nu": 0}),
        ("ocsvm", {"kernel": "precomputed"}),
        ("pca", {"n_components": 0}),
        ("sod", {"alpha": 1.5}),
        ("auto_encoder", {"epoch_num": 0}),
        ("auto_encoder", {"dropout_rate": 1.0}),
        ("isolation_forest", {"n_estimators": 0}),
        ("local_outlier_factor", {"n_neighbors": 0}),
        ("one_class_svm", {"nu": 1.5}),
        ("elliptic_envelope", {"support_fraction": 0}),
        ("lscp", {"detector_list": ["lof"]}),
        ("lscp", {"detector_list": ["lof", "no_such_detector"]}),
        ("lscp", {"detector_list": ["lof", {"type": "knn", "n_neighbors": 0}]}),
        ("lscp", {"detector_list": ["lof", "lscp"]}),
    ],
)
def test_out_of_range_rejected(name, params):
    with pytest.raises(pydantic.ValidationError):
        DETECTORS[name](**params)


def test_valid_values_accepted():
    assert DETECTORS["iforest"](max_samples=256).params.max_samples == 256
    assert DETECTORS["iforest"](max_samples=0.5).params.max_samples == 0.5
    assert DETECTORS["hbos"](n_bins="auto").params.n_bins == "auto"
    assert DETECTORS["ocsvm"](gamma=0.1).params.gamma == 0.1
    assert DETECTORS["lof"]({"n_neighbors": 35}).params.n_neighbors == 35
    spec = DETECTORS["lscp"](detector_list=["lof", {"type": "knn", "n_neighbors": 7}]).params.detector_list
    assert spec == [{"type": "lof"}, {"type": "knn", "n_neighbors": 7}]


def test_avg_and_median_knn_fix_the_method():
    assert "method" not in DETECTORS["avg_knn"].Params.model_fields
    assert DETECTORS["avg_knn"]().pyod_kwargs()["method"] == "mean"
    assert DETECTORS["median_knn"]().pyod_kwargs()["method"] == "median"
    assert DETECTORS["knn"]().pyod_kwargs()["contamination"] == 0.1


# -- torch detectors ----------------------------------------------------------------------------


def test_torch_detectors_listed():
    expected = {"auto_encoder", "vae", "deep_svdd", "so_gaal", "mo_gaal", "anogan", "alad", "dif", "lunar", "ae1svm"}
    assert set(TORCH_DETECTORS) == expected
    for name in TORCH_DETECTORS:
        assert DETECTORS[name].requires == ("torch",)
        assert "adpipe[deep]" in DETECTORS[name].install_hint


@pytest.mark.skipif(HAS_TORCH, reason="torch is installed")
@pytest.mark.parametrize("name", sorted(TORCH_DETECTORS))
def test_torch_detectors_without_torch(name):
    cls = DETECTORS[name]
    assert len(cls.Params.model_fields) >= 3  # parameters can be shown without torch
    with pytest.raises(adpipe.PluginError, match="torch") as err:
        cls()
    assert "adpipe[deep]" in str(err.value)


# -- fitting and scoring -------------------------------------------------------------------------


#: R-graph assumes inliers lie in a union of low-dimensional subspaces; on a full-rank blob it ranks
#: the planted outliers lower (documented in docs/detectors.md and its catalog note)
NOT_ON_BLOBS = {"rgraph"}


@pytest.mark.parametrize("name", NON_TORCH)
def test_fit_score_synthetic(name, blobs):
    cls = DETECTORS[name]
    if not _usable(name):
        with pytest.raises(adpipe.PluginError, match="|".join(cls.missing_requirements())):
            cls()
        pytest.skip(f"needs {', '.join(cls.missing_requirements())}")
    (X, y), (X_test, y_test) = blobs
    if name == "loci":  # O(n^3)
        X, y, X_test, y_test = X[::10], y[::10], X_test[::20], y_test[::20]
    elif name in SLOW:
        X, y, X_test, y_test = X[::5], y[::5], X_test[::5], y_test[::5]
    X, X_test = _data_for(name, X), _data_for(name, X_test)
    det = cls()
    assert det.fit(X) is det
    scores = det.score(X_test)
    assert scores.shape == (len(X_test),) and scores.dtype == float
    assert np.isfinite(scores).all()
    if name in PYOD_DETECTORS:
        assert det.training_scores_ is not None
    if det.training_scores_ is not None:
        assert det.training_scores_.shape == (len(X),) and np.isfinite(det.training_scores_).all()
    assert det.score(X_test[:0]).shape == (0,)
    if name not in NOT_ON_BLOBS:  # higher = more anomalous, for every detector
        assert scores[y_test].mean() > scores[~y_test].mean()
        train = det.training_scores_ if det.training_scores_ is not None else det.score(X)
        assert train[y].mean() > train[~y].mean()


@pytest.mark.parametrize("name", NON_TORCH)
def test_fit_score_glass(name, glass):
    if not _usable(name):
        pytest.skip(f"needs {', '.join(DETECTORS[name].missing_requirements())}")
    X, _ = glass
    if name in SLOW:
        X = X[:40] if name == "loci" else X[:60]
    X = _data_for(name, X)
    det = DETECTORS[name]().fit(X)
    scores = det.score(X[:10])
    assert scores.shape == (10,) and np.isfinite(scores).all()
    if name in PYOD_DETECTORS:
        assert det.training_scores_.shape == (len(X),)


@pytest.mark.parametrize("name", MAIN)
def test_planted_outliers_score_higher(name, blobs):
    (X, y), (X_test, y_test) = blobs
    det = DETECTORS[name]().fit(X)
    scores = det.score(X_test)
    assert scores[y_test].mean() > scores[~y_test].mean()
    assert scores[y_test].min() > np.median(scores[~y_test])
    train = det.training_scores_ if det.training_scores_ is not None else det.score(X)
    assert train[y].mean() > train[~y].mean()


def test_training_scores_exclude_self_for_neighbour_methods(blobs):
    (X, _), _ = blobs
    for name in ("knn", "local_outlier_factor"):
        det = DETECTORS[name]().fit(X)
        # re-scoring training rows counts each row as its own neighbour: scores shrink
        assert det.training_scores_.mean() > det.score(X).mean()


def test_reproducible_by_default(blobs):
    (X, _), (X_test, _) = blobs
    for name, params in [("iforest", {"n_estimators": 20}), ("isolation_forest", {"n_estimators": 20}),
                         ("loda", {}), ("inne", {"n_estimators": 20})]:
        a = DETECTORS[name](**params).fit(X).score(X_test)
        b = DETECTORS[name](**params).fit(X).score(X_test)
        np.testing.assert_array_equal(a, b)


def test_lscp_builds_base_detectors(blobs):
    (X, y), _ = blobs
    det = DETECTORS["lscp"](detector_list=[{"type": "knn", "n_neighbors": 5}, "lof", "hbos"]).fit(X)
    assert len(det.model_.detector_list) == 3
    assert det.training_scores_[y].mean() > det.training_scores_[~y].mean()


def test_fitted_detector_pickles(blobs):
    (X, _), (X_test, _) = blobs
    X = X[::3]
    for name in ("knn", "isolation_forest", "lscp"):
        det = DETECTORS[name]().fit(X)
        clone = pickle.loads(pickle.dumps(det))
        np.testing.assert_allclose(clone.score(X_test), det.score(X_test))
        assert type(clone.params) is DETECTORS[name].Params


# -- errors -------------------------------------------------------------------------------------


def test_library_value_error_becomes_model_error():
    X = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(adpipe.ModelError, match="knn.*n_neighbors"):
        DETECTORS["knn"](n_neighbors=50).fit(X)


def test_parameter_combination_rejected_by_pyod_is_a_config_error():
    X = np.random.default_rng(0).normal(size=(40, 3))
    with pytest.raises(adpipe.ConfigError, match="sod.*ref_set"):
        DETECTORS["sod"](n_neighbors=5, ref_set=10).fit(X)


def test_mad_is_univariate():
    X = np.random.default_rng(0).normal(size=(30, 3))
    with pytest.raises(adpipe.DataError, match="exactly 1 feature"):
        DETECTORS["mad"]().fit(X)
    scores = DETECTORS["mad"]().fit(X[:, 0]).score(X[:5, :1])  # a 1-D column is accepted too
    assert scores.shape == (5,)


def test_cd_needs_two_features():
    with pytest.raises(adpipe.DataError, match="at least 2"):
        DETECTORS["cd"]().fit(np.random.default_rng(0).normal(size=(30, 1)))


@pytest.mark.parametrize("name", ["knn", "isolation_forest"])
def test_score_before_fit_and_wrong_width(name):
    X = np.random.default_rng(0).normal(size=(30, 3))
    with pytest.raises(adpipe.ModelError, match="not fitted"):
        DETECTORS[name]().score(X)
    det = DETECTORS[name]().fit(X)
    with pytest.raises(adpipe.ModelError, match="3 feature columns"):
        det.score(np.zeros((2, 4)))


def test_non_numeric_input_is_a_data_error():
    with pytest.raises(adpipe.DataError, match="numeric"):
        DETECTORS["knn"]().fit(np.array([["a", "b"], ["c", "d"]]))


# -- config group files -------------------------------------------------------------------------


def test_one_config_file_per_detector():
    files = {p.stem for p in CONFIGS.glob("*.yaml")}
    assert set(DETECTORS) <= files
    for name, cls in DETECTORS.items():
        data = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
        assert data["type"] == name
        cls.Params(**{k: v for k, v in data.items() if k != "type"})  # every value is valid


def test_config_files_are_up_to_date(capsys):
    spec = importlib.util.spec_from_file_location("gen_detector_configs", REPO / "scripts/gen_detector_configs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0, capsys.readouterr().err


# -- detectors whose PyOD class scores a batch as a set -----------------------------------------

BATCH_SET = [e.name for e in CATALOG if e.batch_scoring]


def test_batch_scoring_detectors_have_a_block_parameter():
    assert {"cof", "sod", "loci", "sos", "lmdd", "ecod", "copod"} <= set(BATCH_SET)
    for name in BATCH_SET:
        assert "score_block_rows" in DETECTORS[name].Params.model_fields
        assert "score_block_rows" not in DETECTORS[name]().pyod_kwargs()
    with pytest.raises(pydantic.ValidationError):
        DETECTORS["cof"](score_block_rows=0)


@pytest.mark.parametrize("name", ["cof", "sod", "ecod", "copod", "cd"])
def test_block_of_one_makes_scores_independent_of_the_batch(name):
    rng = np.random.default_rng(1)
    X, T = rng.normal(size=(60, 3)), rng.normal(size=(12, 3))
    det = DETECTORS[name](score_block_rows=1).fit(X)
    together = det.score(T)
    alone = np.array([det.score(T[i : i + 1])[0] for i in range(len(T))])
    np.testing.assert_allclose(together, alone)
    assert np.isfinite(alone).all()


def test_new_rows_are_scored_against_the_training_rows(blobs):
    """COF on its own scores a batch only against itself: a single row would be meaningless."""
    (X, y), _ = blobs
    det = DETECTORS["cof"]().fit(X[::3])
    far, near = np.full((1, 4), 8.0), np.zeros((1, 4))
    assert det.score(far)[0] > det.score(near)[0]
    assert det.score(far)[0] > np.percentile(det.training_scores_, 90)


def test_feature_bagging_takes_a_detector_spec():
    Params = DETECTORS["feature_bagging"].Params  # validated even without combo installed
    assert Params(base_estimator={"type": "knn", "n_neighbors": 3}).base_estimator == {"type": "knn", "n_neighbors": 3}
    assert Params().base_estimator is None  # PyOD's default base detector (LOF)
    with pytest.raises(pydantic.ValidationError):
        Params(base_estimator={"type": "knn", "n_neighbors": -3})


def test_docs_list_every_detector():
    doc = REPO / "docs" / "detectors.md"
    if not doc.exists():
        pytest.skip("docs/detectors.md not generated (python bench/score_distributions.py)")
    text = doc.read_text()
    missing = [name for name in DETECTORS if f"`{name}`" not in text]
    assert not missing, f"regenerate docs/detectors.md: {missing}"
