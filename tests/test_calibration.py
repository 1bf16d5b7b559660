"""Calibration: raw scores -> anomaly_probability in [0, 1], monotone, fitted on training scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import adpipe
from adpipe.core.calibration import Calibrator

scores_st = st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=300)


def grid(train: np.ndarray) -> np.ndarray:
    lo, hi = float(train.min()), float(train.max())
    pad = (hi - lo) or 1.0
    return np.sort(np.r_[np.linspace(lo - pad, hi + pad, 501), train])


@pytest.mark.parametrize("method", ["ecdf", "gaussian"])
@settings(max_examples=60, deadline=None, database=None)
@given(train=scores_st)
def test_probability_is_in_unit_interval_and_monotone(method, train):
    train = np.asarray(train)
    cal = Calibrator(method).fit(train)
    x = grid(train)
    p = cal.transform(x)
    assert p.shape == x.shape and np.isfinite(p).all()
    assert ((p >= 0) & (p <= 1)).all()
    assert (np.diff(p) >= -1e-12).all()


@settings(max_examples=60, deadline=None, database=None)
@given(train=scores_st)
def test_ecdf_is_the_share_of_training_rows_scoring_lower(train):
    train = np.asarray(train)
    cal = Calibrator("ecdf").fit(train)
    x = grid(train)
    p = cal.transform(x)
    n1 = train.size + 1  # levels are counted over n + 1 rows: only scores above the training max reach 1.0
    lower = (train[None, :] < x[:, None]).sum(axis=1) / n1
    # interpolated between neighbouring training scores: about the share scoring lower (levels may be counted
    # over n + 1 rows so that only scores above the training maximum reach 1.0), at most the share scoring at
    # or below the next training score
    knots = np.unique(train)
    nxt = knots[np.minimum(np.searchsorted(knots, x, side="left"), knots.size - 1)]
    upper = np.where(x > knots[-1], 1.0, (train[None, :] <= nxt[:, None]).sum(axis=1) / n1)
    assert (p >= lower - 1.0 / (train.size + 1) - 1e-9).all() and (p <= upper + 1e-9).all()
    assert cal.transform(np.array([train.min() - 1.0]))[0] == 0.0
    assert cal.transform(np.array([train.max() + 1.0]))[0] == 1.0


def test_ecdf_with_many_distinct_scores_stays_close_to_the_empirical_share():
    train = np.random.default_rng(0).standard_normal(50_000)
    cal = Calibrator("ecdf").fit(train)
    x = np.linspace(-4, 4, 2001)
    share = (np.sort(train)[None, :] < x[:, None]).mean(axis=1)
    assert np.abs(cal.transform(x) - share).max() < 2e-3
    assert cal.transform(np.array([0.0]))[0] == pytest.approx(0.5, abs=0.01)


def test_ties_get_equal_probabilities():
    train = np.r_[np.zeros(90), np.arange(1, 11, dtype=float)]
    cal = Calibrator("ecdf").fit(train)
    p = cal.transform(train)
    assert np.unique(p[:90]).size == 1
    assert 0.0 <= p[0] <= 0.9 < p[-1] <= 1.0
    assert (np.diff(p) >= 0).all()


@pytest.mark.parametrize("method", ["ecdf", "gaussian"])
def test_constant_training_scores(method):
    cal = Calibrator(method).fit(np.full(100, 3.0))
    p = cal.transform(np.array([2.0, 3.0, 4.0, 1e9]))
    assert np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()
    assert p[0] <= p[1] <= p[2] <= p[3]
    assert p[0] == 0.0 and p[3] == pytest.approx(1.0)


def test_gaussian_is_kriegels_erf_scaling():
    train = np.random.default_rng(1).normal(10.0, 2.0, size=10_000)
    cal = Calibrator("gaussian").fit(train)
    mean, std = train.mean(), train.std()
    x = np.array([mean - 5 * std, mean, mean + std, mean + 3 * std])
    expected = [0.0, 0.0, math.erf(1 / math.sqrt(2)), math.erf(3 / math.sqrt(2))]
    np.testing.assert_allclose(cal.transform(x), expected, atol=1e-9)


def test_non_finite_training_scores_are_ignored():
    cal = Calibrator("ecdf").fit(np.array([np.nan, 1.0, 2.0, np.inf, 3.0]))
    p = cal.transform(np.array([0.0, 2.0, 10.0]))
    assert p[0] == 0.0 and 0 < p[1] < 1 and p[2] == 1.0


def test_no_finite_training_scores_is_a_data_error():
    with pytest.raises(adpipe.DataError):
        Calibrator("ecdf").fit(np.array([np.nan, np.inf]))
    with pytest.raises(adpipe.DataError):
        Calibrator("gaussian").fit(np.array([]))


def test_unknown_method():
    with pytest.raises(ValueError):
        Calibrator("sigmoid")


def test_engine_calibrates_with_the_configured_method(tmp_path):
    from conftest import blob_frame

    pipe = adpipe.Pipeline.from_dict({"detector": {"type": "iforest", "random_state": 0},
                                      "calibration": {"method": "gaussian"}}, base_dir=tmp_path)
    model = pipe.fit(blob_frame(n=300))
    assert model.calibrator.method == "gaussian"
    out = model.score(blob_frame(n=300))
    assert out["anomaly_probability"].between(0, 1).all()
    assert (out["anomaly_probability"] == 0).sum() > 50  # erf scaling: below the mean -> 0


def test_constant_data_does_not_flag_every_row():
    """Constant training data: every score ties; contamination 0.05 must not flag (and call critical) every row."""
    result = adpipe.detect(np.ones((200, 3)), algorithm="iforest", contamination=0.05)
    assert result.summary["anomalies"] <= 10, (result.summary, set(result.severity))
