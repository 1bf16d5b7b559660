"""adpipe.testing: the conformance kit passes good plugins and explains what is wrong with bad ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import adpipe
from adpipe.testing import check_plugin, check_registration, outlier_data
from conftest import MeanDistance, plugin_module


def builtin(kind: str, name: str):
    return adpipe.get_registry().get(kind, name)


@pytest.mark.parametrize("kind, name, params", [
    ("detector", "iforest", {"n_estimators": 20}),
    ("detector", "ecod", None),
    ("detector", "lof", None),
    ("detector", "isolation_forest", None),
    ("preprocessor", "standard_scaler", None),
    ("preprocessor", "minmax_scaler", None),
    ("threshold", "contamination", None),
    ("threshold", "top_k", {"k": 5}),
    ("alert_channel", "log", None),
    ("sink", "memory", None),
])
def test_builtins_pass(kind, name, params):
    check_plugin(builtin(kind, name), params)


def test_file_sinks_pass(tmp_path):
    check_plugin(builtin("sink", "csv"), {"path": str(tmp_path / "out.csv")})
    check_plugin(builtin("sink", "parquet"), {"path": str(tmp_path / "out.parquet")})
    # close(False) of the second round removed the output of that round only; no temp files remain
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "out.parquet"]


def test_csv_source_passes(tmp_path):
    path = tmp_path / "in.csv"
    pd.DataFrame({"a": range(25), "b": range(25)}).to_csv(path, index=False)
    check_plugin(builtin("source", "csv"), {"path": str(path)})


def test_local_detector_passes():
    check_plugin(MeanDistance, {"scale": 2.0})


def test_outlier_data():
    X, y = outlier_data(n=100, d=3, n_outliers=5)
    assert X.shape == (100, 3) and y.sum() == 5 and set(np.unique(y)) == {0, 1}


# --------------------------------------------------------------------------- broken plugins
class Inverted(MeanDistance):
    """Scores normal rows high: the wrong orientation."""

    name = "inverted"

    def score(self, X):
        return -super().score(X)


class FitReturnsNone(MeanDistance):
    """Forgets to return self from fit."""

    name = "fit_returns_none"

    def fit(self, X):
        super().fit(X)


class OpenParams(MeanDistance):
    """Params that accept anything."""

    name = "open_params"

    class Params(adpipe.Params):
        model_config = {**adpipe.Params.model_config, "extra": "allow"}
        scale: float = adpipe.Field(1.0, description="scale")


class Undocumented(MeanDistance):
    """A parameter without a description."""

    name = "undocumented"

    class Params(adpipe.Params):
        scale: float = 1.0


class NaNScores(MeanDistance):
    """Returns NaN scores."""

    name = "nan_scores"

    def score(self, X):
        return np.full(len(X), np.nan)


class WrongShape(MeanDistance):
    """Returns a column vector."""

    name = "wrong_shape"

    def score(self, X):
        return super().score(X).reshape(-1, 1)


class ChangesInput(MeanDistance):
    """Scales its input in place."""

    name = "changes_input"

    def fit(self, X):
        X *= 2
        return super().fit(X)


class Moody(MeanDistance):
    """Scores change every call."""

    name = "moody"

    def score(self, X):
        self.mean_ = self.mean_ + 1.0
        return super().score(X)


class BadName(MeanDistance):
    """Capitalised name."""

    name = "BadName"


class NoDoc(MeanDistance):
    name = "no_doc"


NoDoc.__doc__ = None


class Unordered(adpipe.Threshold):
    """Flags the lowest scores."""

    name = "unordered"

    def predict(self, scores, probabilities):
        return scores < np.quantile(scores, 0.1)


class NotBool(adpipe.Threshold):
    """Returns 0/1 integers instead of booleans."""

    name = "not_bool"

    def predict(self, scores, probabilities):
        return (scores > 1).astype(int)


class DropsRows(adpipe.Preprocessor):
    """Drops every other row."""

    name = "drops_rows"

    def transform(self, frame):
        return frame.iloc[::2]


@pytest.mark.parametrize("cls, fragment", [
    (Inverted, "higher = more anomalous"),
    (FitReturnsNone, "return self"),
    (OpenParams, "unknown keys"),
    (Undocumented, "'scale' has no description"),
    (NaNScores, "NaN"),
    (WrongShape, "shape"),
    (ChangesInput, "modified its input"),
    (Moody, "twice"),
    (BadName, "lower_snake_case"),
    (NoDoc, "docstring"),
    (Unordered, "monoton"),
    (NotBool, "boolean"),
    (DropsRows, "one row per input row"),
])
def test_broken_plugins_fail_with_a_helpful_message(cls, fragment):
    with pytest.raises(AssertionError) as err:
        check_plugin(cls)
    msg = str(err.value)
    assert fragment in msg, msg
    assert cls.__qualname__ in msg and "fix:" in msg


def test_check_registration_checks_every_registered_class():
    reg = check_registration(plugin_module(MeanDistance))
    assert reg.names("detector") == ["mean_distance"]
    with pytest.raises(AssertionError, match="higher = more anomalous"):
        check_registration(plugin_module(MeanDistance, Inverted))


def test_check_registration_of_a_module_registering_nothing():
    with pytest.raises(AssertionError, match="registered no plugin"):
        check_registration(plugin_module())


def test_check_registration_passes_params_by_name():
    class Needs(MeanDistance):
        """Has a required parameter."""

        name = "needs_param"

        class Params(adpipe.Params):
            scale: float = adpipe.Field(gt=0, description="required scale")

    check_registration(plugin_module(Needs), params={"needs_param": {"scale": 3.0}})
