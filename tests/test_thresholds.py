"""Built-in threshold plugins: learned cut-offs, ties, per-batch top-k, validation."""

from __future__ import annotations

import doctest
import importlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pydantic import ValidationError

import adpipe
import adpipe.plugins.thresholds as th
from adpipe.core.plugin import NAME_RE
from adpipe.core.registry import Registry

NAMES = {"contamination", "probability", "score", "top_k", "zscore", "mad", "iqr"}
CONFIGS = Path(adpipe.__file__).parent / "configs" / "threshold"


def ecdf(scores: np.ndarray) -> np.ndarray:
    """A monotone calibration like the engine's: training scores <= s, over n + 1 (only above-max reaches 1)."""
    ordered = np.sort(scores)
    return np.searchsorted(ordered, scores, side="right") / (len(scores) + 1)


def fitted(cls, scores, **params):
    scores = np.asarray(scores, dtype=float)
    return cls(**params).fit(scores, ecdf(scores))


# --- contract ------------------------------------------------------------------


def test_every_threshold_is_registered_and_follows_the_contract():
    reg = Registry()
    reg.register_module(th)
    assert set(reg.names("threshold")) == NAMES
    for info in reg.infos("threshold"):
        cls = info.cls
        assert issubclass(cls, adpipe.Threshold) and NAME_RE.match(cls.name) and cls.summary()
        assert issubclass(cls.Params, adpipe.Params) and cls.Params is not adpipe.Params
        for field_name, field in cls.Params.model_fields.items():
            assert field.description, f"{cls.name}.{field_name} needs a description"


@pytest.mark.parametrize("name", sorted(NAMES))
def test_each_threshold_has_a_config_group_file_matching_its_params(name):
    cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    cls = next(c for c in th.PLUGINS if c.name == name)
    assert cfg.pop("type") == name
    if name == "score":
        assert cfg == {"cutoff": "???"}  # required: Hydra's mandatory-value marker
        return
    assert cls(**cfg).params == cls().params  # the file holds exactly the defaults


@pytest.mark.parametrize("cls", th.PLUGINS)
def test_lifecycle_empty_training_unfitted_and_pickle(cls):
    params = {"cutoff": 1.0} if cls.name == "score" else {}
    with pytest.raises(adpipe.DataError, match="no training scores"):
        cls(**params).fit(np.array([]), np.array([]))
    with pytest.raises(adpipe.DataError):
        cls(**params).fit(np.array([np.nan, np.nan]), np.array([np.nan, np.nan]))
    with pytest.raises(adpipe.ModelError, match="fitted"):
        cls(**params).predict(np.array([1.0]), np.array([0.5]))
    rng = np.random.default_rng(0)
    scores = rng.normal(size=500)
    t = fitted(cls, scores, **params)
    assert t.threshold_on_ in ("score", "probability")
    assert t.threshold_ is None or isinstance(t.threshold_, float)
    new = rng.normal(size=77) * 2
    flags = t.predict(new, ecdf(np.r_[scores, new])[500:])
    assert flags.dtype == bool and flags.shape == (77,)
    again = pickle.loads(pickle.dumps(t))
    assert np.array_equal(again.predict(new, ecdf(new)), t.predict(new, ecdf(new)))
    # NaN never flagged, never a crash
    assert not t.predict(np.array([np.nan]), np.array([np.nan])).any()


def test_docstring_examples_run():
    for mod in ("contamination", "fixed", "statistical", "top_k"):
        result = doctest.testmod(importlib.import_module(f"adpipe.plugins.thresholds.{mod}"))
        assert result.failed == 0 and result.attempted > 0, mod


# --- params validation -----------------------------------------------------------


@pytest.mark.parametrize(
    "cls,params",
    [
        (th.Contamination, {"contamination": 0.0}),
        (th.Contamination, {"contamination": 0.5}),
        (th.Contamination, {"contamination": -0.1}),
        (th.Contamination, {"contamination": 1.2}),
        (th.Contamination, {"contamination": 0.1, "k": 3}),
        (th.Probability, {"cutoff": 1.01}),
        (th.Probability, {"cutoff": -0.01}),
        (th.Probability, {"threshold": 0.9}),
        (th.Score, {}),
        (th.Score, {"cutoff": float("nan")}),
        (th.TopK, {"k": 0}),
        (th.TopK, {"k": 2.5}),
        (th.ZScore, {"k": -1}),
        (th.MAD, {"k": -0.5}),
        (th.IQR, {"k": -1.5}),
        (th.IQR, {"k": float("inf")}),
        (th.MAD, {"kk": 3}),
    ],
)
def test_bad_params_are_rejected(cls, params):
    with pytest.raises(ValidationError):
        cls(**params)


# --- contamination -----------------------------------------------------------------


@pytest.mark.parametrize("c", [0.01, 0.05, 0.1, 0.25, 0.49])
def test_contamination_flags_about_c_of_training_rows(c):
    scores = np.random.default_rng(1).gamma(2.0, size=10_000)
    t = fitted(th.Contamination, scores, contamination=c)
    assert t.threshold_on_ == "probability"
    share = t.predict(scores, ecdf(scores)).mean()
    assert share == pytest.approx(c, abs=1e-4)
    assert t.flagged_share_ == share
    assert t.threshold_ == np.quantile(ecdf(scores), 1 - c, method="higher")  # no ties: the plain quantile


def test_contamination_with_a_big_tied_block_does_not_flag_the_whole_block():
    # 95% of training rows share one score (a detector that gives most rows 0)
    scores = np.r_[np.zeros(950), np.linspace(1, 2, 50)]
    t = fitted(th.Contamination, scores, contamination=0.1)
    flags = t.predict(scores, ecdf(scores))
    assert flags.mean() == pytest.approx(0.05)  # the closest achievable share; `>=` at the quantile would flag 100%
    assert not flags[:950].any() and flags[950:].all()
    assert np.quantile(ecdf(scores), 0.9, method="higher") == ecdf(scores)[0]  # what the naive rule would pick


def test_contamination_ties_at_the_top_and_in_the_middle():
    # 20 tied top scores, c = 0.1 of 100 -> flag the tied top block (20%) or nothing? never nothing:
    scores = np.r_[np.arange(80.0), np.full(20, 99.0)]
    t = fitted(th.Contamination, scores, contamination=0.1)
    assert t.predict(scores, ecdf(scores)).sum() == 20
    # a tied block straddles the quantile: the achievable count closest to c*n = 10 wins
    def flagged(top_distinct):  # n = 100: `top_distinct` distinct top scores above a block of 4 ties
        scores = np.r_[np.arange(96.0 - top_distinct), np.full(4, 100.0), np.arange(200.0, 200 + top_distinct)]
        return fitted(th.Contamination, scores, contamination=0.1).predict(scores, ecdf(scores)).sum()

    assert flagged(7) == 11  # 7 or 11 -> 11 is closer
    assert flagged(9) == 9  # 9 or 13 -> 9
    assert flagged(8) == 8  # 8 or 12: equally close -> the higher cut-off, fewer flags


def test_contamination_all_equal_flags_no_training_row():
    scores = np.ones(50)
    t = fitted(th.Contamination, scores, contamination=0.1)
    assert t.flagged_share_ == 0.0
    assert not t.predict(scores, ecdf(scores)).any()
    # a record above everything seen in training is still flagged
    assert t.predict(np.array([5.0]), np.array([1.0])).all()


def test_contamination_predicts_on_new_batches_with_the_training_cut_off():
    scores = np.random.default_rng(2).normal(size=1000)
    t = fitted(th.Contamination, scores, contamination=0.05)
    new_p = np.array([0.0, t.threshold_ - 1e-9, t.threshold_, 1.0])
    assert t.predict(None, new_p).tolist() == [False, False, True, True]


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=200, deadline=None)
@given(
    scores=arrays(np.float64, st.integers(20, 400), elements=finite),
    c=st.floats(0.01, 0.49),
)
def test_contamination_share_property(scores, c):
    probs = ecdf(scores)
    t = th.Contamination(contamination=c).fit(scores, probs)
    share = t.predict(scores, probs).mean()
    assert share == t.flagged_share_
    n = len(scores)
    # no other cut-off from the training data (or flagging none) gets closer to c
    achievable = {(probs >= u).mean() for u in np.unique(probs)} | {0.0}
    assert all(abs(share - c) <= abs(a - c) + 1e-9 for a in achievable)
    if len(np.unique(scores)) == n:  # without ties the share is within one row of c
        assert abs(share - c) <= 1 / n + 1e-9


@settings(max_examples=100, deadline=None)
@given(scores=arrays(np.float64, st.integers(50, 400), elements=st.integers(0, 5).map(float)), c=st.floats(0.01, 0.49))
def test_contamination_share_property_heavy_ties(scores, c):
    probs = ecdf(scores)
    t = th.Contamination(contamination=c).fit(scores, probs)
    share = t.predict(scores, probs).mean()
    achievable = {(probs >= u).mean() for u in np.unique(probs)} | {0.0}
    assert min(abs(a - c) for a in achievable) == pytest.approx(abs(share - c))


# --- fixed cut-offs ----------------------------------------------------------------


def test_probability_cut_off():
    t = fitted(th.Probability, np.arange(10.0))
    assert (t.threshold_, t.threshold_on_) == (0.9, "probability")
    assert t.predict(np.array([100.0, -5.0, 0.0]), np.array([0.89, 0.9, 1.0])).tolist() == [False, True, True]
    t = fitted(th.Probability, np.arange(10.0), cutoff=0.0)
    assert t.predict(None, np.array([0.0, 0.3])).all()


def test_score_cut_off():
    t = fitted(th.Score, np.arange(10.0), cutoff=-1.5)
    assert (t.threshold_, t.threshold_on_) == (-1.5, "score")
    assert t.predict(np.array([-2.0, -1.5, 7.0]), np.array([1.0, 0.0, 0.0])).tolist() == [False, True, True]


# --- top_k -------------------------------------------------------------------------


def test_top_k_is_per_batch():
    t = fitted(th.TopK, np.arange(10.0), k=3)
    assert t.threshold_ is None and t.threshold_on_ == "score"
    rng = np.random.default_rng(3)
    for size in (1, 2, 3, 10, 1000):
        batch = rng.normal(size=size)
        flags = t.predict(batch, ecdf(batch))
        assert flags.sum() == min(3, size)
        if size > 3:
            assert batch[flags].min() >= batch[~flags].max()
    assert t.predict(np.array([]), np.array([])).tolist() == []


def test_top_k_ties_go_to_earlier_rows_and_nan_is_never_flagged():
    t = fitted(th.TopK, np.arange(10.0), k=3)
    scores = np.array([1.0, 7.0, 5.0, 5.0, np.nan, 5.0, 7.0])
    assert t.predict(scores, None).tolist() == [False, True, True, False, False, False, True]
    assert t.predict(np.array([np.nan, 2.0, np.nan]), None).tolist() == [False, True, False]
    assert t.predict(np.array([-np.inf, np.nan, -np.inf, -np.inf]), None).tolist() == [True, False, True, True]


def test_top_k_large_batch_matches_a_stable_sort():
    t = fitted(th.TopK, np.arange(10.0), k=500)
    scores = np.random.default_rng(4).integers(0, 50, size=100_000).astype(float)  # many ties
    expected = np.zeros(scores.size, dtype=bool)
    expected[np.argsort(-scores, kind="stable")[:500]] = True
    assert np.array_equal(t.predict(scores, None), expected)


# --- statistical fences --------------------------------------------------------------

TRAIN = np.array([1.0, 2.0, 2.0, 3.0, 4.0, 5.0, 7.0, 9.0, 30.0])


def test_zscore_cut_off():
    mean = TRAIN.sum() / len(TRAIN)
    std = np.sqrt(((TRAIN - mean) ** 2).sum() / len(TRAIN))
    assert fitted(th.ZScore, TRAIN).threshold_ == pytest.approx(mean + 3 * std)
    t = fitted(th.ZScore, TRAIN, k=1)
    assert t.threshold_ == pytest.approx(mean + std) and t.threshold_on_ == "score"
    assert t.predict(np.array([t.threshold_, t.threshold_ + 1e-6]), None).tolist() == [False, True]


def test_mad_cut_off():
    # median 4; |x - 4| = 3 2 2 1 0 1 3 5 26 -> MAD 2
    assert fitted(th.MAD, TRAIN).threshold_ == pytest.approx(4 + 3 * 1.4826 * 2)
    assert fitted(th.MAD, TRAIN, k=0.5).threshold_ == pytest.approx(4 + 0.5 * 1.4826 * 2)


def test_iqr_cut_off():
    q1, q3 = 2.0, 7.0  # linear interpolation on 9 sorted values: positions 2 and 6
    assert fitted(th.IQR, TRAIN).threshold_ == pytest.approx(q3 + 1.5 * (q3 - q1))
    t = fitted(th.IQR, TRAIN, k=3)
    assert t.threshold_ == pytest.approx(q3 + 3 * (q3 - q1))
    assert t.predict(TRAIN, None).tolist() == [False] * 8 + [True]


@pytest.mark.parametrize("cls", [th.ZScore, th.MAD, th.IQR])
def test_constant_training_scores_flag_only_higher_scores(cls):
    t = fitted(cls, np.full(20, 2.0))
    assert t.threshold_ == 2.0
    assert t.predict(np.array([2.0, 1.0, 2.5]), None).tolist() == [False, False, True]
