"""Drift detection: the ks/psi/adwin/page_hinkley plugins, the monitor, the history and `adpipe drift history`."""

from __future__ import annotations

import doctest
import importlib
import json
import math
import sqlite3
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats

import adpipe
from adpipe.core.config import load_config
from adpipe.core.drift import SCORE, DriftEvent, DriftHistory, DriftMonitor, parse_since
from adpipe.core.errors import ConfigError
from adpipe.plugins.drift import ADWIN, DETECTORS, KS, PSI, PageHinkley
from adpipe.testing import check_contract
from conftest import run_cli

SHIFT_AT = 20_500  # mid-window on purpose: windows are [20,000, 21,000), [21,000, 22,000), ...


def shifted(seed: int, shift: float = 0.5, at: int = SHIFT_AT, after: int = 10_000, loc: float = 0.0,
            sd: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.r_[rng.normal(loc, sd, at), rng.normal(loc + shift * sd, sd, after)]


def reference(seed: int = 100, n: int = 5000, loc: float = 0.0, sd: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(loc, sd, n)


def feed(det, values: np.ndarray, sizes) -> list[tuple[int, float]]:
    """Feed ``values`` in chunks of ``sizes`` (cycled); findings as (absolute position, statistic)."""
    out, i, k = [], 0, 0
    while i < values.size:
        n = sizes[k % len(sizes)]
        out += [(i + f.position, round(f.statistic, 12)) for f in det.update(values[i:i + n])]
        i, k = i + n, k + 1
    return out


def config(**drift):
    return load_config(data={"name": "pipe", "detector": {"type": "iforest"}, "drift": drift})


# --------------------------------------------------------------------------- plugins
def test_registered_with_a_valid_contract():
    reg = adpipe.get_registry()
    assert {"ks", "psi", "adwin", "page_hinkley"} <= set(reg.names("drift_detector"))
    for cls in DETECTORS:
        if not cls.missing_requirements():  # river is an optional extra
            assert check_contract(cls).kind == "drift_detector"
    assert KS.needs_reference and PSI.needs_reference and not ADWIN.needs_reference
    assert ADWIN.requires == ("river",) and "stream" in PageHinkley.install_hint


@pytest.mark.parametrize("module", ["ks", "psi"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(f"adpipe.plugins.drift.{module}"))
    assert result.attempted and not result.failed


@pytest.mark.parametrize("kind", ["continuous", "ties", "rounded"])
def test_ks_matches_scipy(kind):
    rng = np.random.default_rng(3)
    for _ in range(20):
        if kind == "ties":
            ref, win = rng.integers(0, 10, 3000).astype(float), rng.integers(0, 11, 300).astype(float)
        elif kind == "rounded":
            ref, win = np.round(rng.normal(size=3000), 1), np.round(rng.normal(0.1, 1, 300), 1)
        else:
            ref, win = rng.normal(size=3000), rng.normal(0.2, 1, 300)
        ks = KS(window=300, alpha=0.999).start(ref)
        (f,) = ks.update(win)
        want = stats.ks_2samp(win, ref, method="asymp")
        assert f.statistic == pytest.approx(want.statistic, abs=1e-12)
        assert f.p_value == pytest.approx(want.pvalue, rel=1e-9, abs=1e-300)
        assert (f.window, f.reference, f.position) == (300, 3000, 299)


@pytest.mark.parametrize("cls", [KS, PSI])
def test_window_tests_fire_within_the_first_window_after_a_shift(cls):
    # a 0.5-sd mean shift at record 20,500: found by the end of the first full window after it, i.e.
    # within 1,499 records (499 when the part-shifted window [20,000, 21,000) already fires)
    for seed in range(5):
        found = cls().start(reference()).update(shifted(seed))
        after = [f.position for f in found if f.position >= SHIFT_AT]
        assert after and after[0] - SHIFT_AT <= 1_499, (seed, after[:3])
        assert len([f for f in found if f.position < SHIFT_AT]) <= 1  # at most one false alarm in 20 windows
    first = KS().start(reference()).update(shifted(0))
    f = [x for x in first if x.position >= SHIFT_AT][0]
    assert f.position == 20_999 and f.p_value < 0.01 and f.statistic > f.threshold
    assert f.detail.startswith("KS D=") and "the last 1,000 values and the 5,000 of the reference" in f.detail
    assert "median moved from" in f.detail


def test_ks_false_positive_rate_on_stationary_data():
    windows = fired = 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        ks = KS(alpha=0.01).start(rng.normal(size=5000))
        fired += len(ks.update(rng.normal(size=100_000)))
        windows += 100
    assert fired / windows <= 0.025  # alpha = 0.01 (binomial: P(>25 of 1,000) is about 1e-4)


def test_psi_quiet_on_stationary_data():
    rng = np.random.default_rng(7)
    for _ in range(5):
        psi = PSI().start(rng.normal(size=5000))
        assert psi.update(rng.normal(size=100_000)) == []


def test_psi_hand_computed():
    # reference 0..99 in 4 quantile bins (edges 24.75, 49.5, 74.25): 25% each
    psi = PSI(window=100, bins=4).start(np.arange(100.0))
    window = np.r_[np.zeros(40), np.full(30, 30.0), np.full(20, 60.0), np.full(10, 90.0)]  # 40/30/20/10 %
    (f,) = psi.update(window)
    want = 0.15 * math.log(0.4 / 0.25) + 0.05 * math.log(0.3 / 0.25) - 0.05 * math.log(0.2 / 0.25) \
        - 0.15 * math.log(0.1 / 0.25)
    assert f.statistic == pytest.approx(want, abs=1e-12) and f.statistic == pytest.approx(0.228217, abs=1e-6)
    assert (f.threshold, f.p_value, f.position) == (0.2, None, 99)
    assert "bin (-inf, 24.8] holds 40% of them vs 25%" in f.detail
    # an empty bin counts as epsilon (1e-4): 50/30/20/0 %
    psi = PSI(window=100, bins=4).start(np.arange(100.0))
    (f,) = psi.update(np.r_[np.zeros(50), np.full(30, 30.0), np.full(20, 60.0)])
    e = 1e-4
    want = 0.25 * math.log(2) + 0.05 * math.log(1.2) - 0.05 * math.log(0.8) + (e - 0.25) * math.log(e / 0.25)
    assert f.statistic == pytest.approx(want, abs=1e-12)


def test_psi_merges_tied_quantiles():
    psi = PSI(window=100, bins=10).start(np.r_[np.zeros(500), np.ones(500)])
    assert psi.edges_.tolist() == [0.0, 0.5, 1.0]  # tied deciles merge: 4 bins, shares 50/0/50/0 %
    (f,) = psi.update(np.zeros(100))
    e = 1e-4
    assert f.statistic == pytest.approx(0.5 * math.log(2) + (e - 0.5) * math.log(e / 0.5), abs=1e-12)


@pytest.mark.parametrize("cls,params", [(KS, {}), (PSI, {}), (KS, {"rebase": True}), (PSI, {"window": 777}),
                                        (ADWIN, {}), (PageHinkley, {})])
def test_chunk_boundaries_do_not_matter(cls, params):
    if cls in (ADWIN, PageHinkley):
        pytest.importorskip("river")
    values = shifted(1, shift=1.0, at=12_345, after=8_000)
    ref = reference()
    whole = feed(cls(**params).start(ref), values, [values.size])
    assert whole and whole[0][0] >= 12_345
    for sizes in ([1000], [1, 7, 999, 1001, 3], [2500, 1, 1, 13_000], [333]):
        assert feed(cls(**params).start(ref), values, sizes) == whole, sizes
    assert feed(cls(**params).start(ref), values[:6000], [1]) == [x for x in whole if x[0] < 6000]


def test_first_window_is_the_reference_without_one():
    ks = KS(window=500).start(None)
    rng = np.random.default_rng(0)
    assert ks.update(rng.normal(size=500)) == [] and ks.reference_.size == 500
    assert ks.update(rng.normal(size=2000)) == []
    (f,) = ks.update(rng.normal(2, 1, 500))
    assert f.reference == 500 and f.position == 499


def test_after_a_detection():
    values = shifted(2, shift=1.0, at=10_000, after=10_000)
    keep = KS().start(reference()).update(values)
    assert [f.position for f in keep] == list(range(10_999, 20_000, 1000))  # fires while the drift lasts
    rebase = KS(rebase=True).start(reference()).update(values)
    assert [f.position for f in rebase] == [10_999]  # once per change: the drifted window is the reference
    back = KS(rebase=True).start(reference()).update(np.r_[values, reference(5, 3000)])
    assert [f.position for f in back] == [10_999, 20_999]  # and the way back is a change too


@pytest.mark.parametrize("cls,bound", [(ADWIN, 200), (PageHinkley, 200)])
def test_streaming_detectors_find_an_abrupt_shift(cls, bound):
    pytest.importorskip("river")
    for seed in range(5):  # 1-sd mean shift of a feature on another scale (mean 100, sd 20)
        values = shifted(seed, shift=1.0, at=10_000, loc=100, sd=20)
        found = cls().start(reference(seed + 50, loc=100, sd=20)).update(values)
        assert found and all(f.position >= 10_000 for f in found), [f.position for f in found]
        assert found[0].position - 10_000 <= bound
        assert len(found) <= 2  # River resets after a detection: no alarm on every record
    f = found[0]
    assert f.statistic > f.threshold
    if cls is ADWIN:
        assert f.reference > 9000 and f.statistic == pytest.approx(20, rel=0.5)
        assert "mean moved from 10" in f.detail


@pytest.mark.parametrize("cls", [ADWIN, PageHinkley])
def test_streaming_detectors_quiet_on_stationary_data(cls):
    pytest.importorskip("river")
    # no reference: the scale comes from a warm-up; about 1 false alarm per 1-2 million values
    fired = [len(cls().start(None).update(np.random.default_rng(seed).normal(5, 3, 100_000))) for seed in range(5)]
    assert sum(fired) <= 1, fired


@pytest.mark.parametrize("cls,params", [
    (KS, {"alpha": 0}), (KS, {"alpha": 1.5}), (KS, {"window": 5}), (KS, {"windw": 100}),
    (PSI, {"bins": 1}), (PSI, {"threshold": -0.1}), (PSI, {"epsilon": 0}),
    (ADWIN, {"delta": 2}), (PageHinkley, {"mode": "sideways"}), (PageHinkley, {"threshold": 0}),
])
def test_bad_params_rejected(cls, params):
    with pytest.raises(Exception) as exc:
        cls(**params)
    assert "validation error" in str(exc.value)


def test_bad_params_in_a_config():
    with pytest.raises(ConfigError, match=r"drift\.detectors\[1\]\.alpha = 2"):
        config(detectors=[{"type": "psi"}, {"type": "ks", "alpha": 2}])
    with pytest.raises(ConfigError, match="'kss' is not an installed drift detector plugin"):
        config(detectors=[{"type": "kss"}])


# --------------------------------------------------------------------------- monitor
def frames(n_batches: int, rows: int, shift_from: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for b in range(n_batches):
        frame = pd.DataFrame({"a": rng.normal(size=rows), "b": rng.normal(size=rows), "t": ["x"] * rows})
        start = b * rows
        moved = np.arange(start, start + rows) >= shift_from
        frame.loc[moved, "a"] += 1.0
        yield start, frame, rng.normal(size=rows) + moved * 2.0


def test_monitor_events_cooldown_and_history(adpipe_home):
    cfg = config(detectors=[{"type": "ks"}, {"type": "psi"}], features=["a", "b"], cooldown_rows=5000)
    ref = {"a": reference(1), "b": reference(2), SCORE: reference(3)}
    ctx = adpipe.RunContext(pipeline="fraud", model_version="fraud@3")
    mon = DriftMonitor(cfg, ["a", "b", "t"], ref, ctx)
    assert mon.columns == ["a", "b", SCORE] and mon.tests == ["ks", "psi"] and mon.enabled
    events = []
    for start, frame, scores in frames(10, 2000, shift_from=9_500):
        events += mon.update(frame, scores, row_start=start)
    assert {e.feature for e in events} == {"a", SCORE}  # b never moved
    ks_a = [e for e in events if (e.feature, e.test) == ("a", "ks")]
    # windows end at 9,999, 10,999, ...: the first fires, the next ones within 5,000 rows are suppressed
    assert [e.window["end_row"] for e in ks_a] == [9_999, 14_999, 19_999][:len(ks_a)] and len(ks_a) >= 2
    e = ks_a[0]
    assert e.window == {"start_row": 9_000, "end_row": 9_999, "size": 1000, "reference_size": 5000}
    assert (e.pipeline, e.run_id, e.model_version, e.severity) == ("fraud", ctx.run_id, "fraud@3", "high")
    assert e.summary().startswith("drift in a of fraud (ks, rows 9,000-9,999): KS D=")
    assert mon.suppressed > 0 and mon.stats()["events"] == len(events)
    stored = DriftHistory().query(limit=1000)
    assert (adpipe_home / "drift.db").is_file() and len(stored) == len(events)
    assert sorted(x.to_dict()["window"]["end_row"] for x in stored) == sorted(x.window["end_row"] for x in events)


def test_monitor_maps_rows_around_missing_values(tmp_path):
    cfg = config(detectors=[{"type": "ks", "window": 100}], score=False, cooldown_rows=0,
                 history=str(tmp_path / "d.db"))
    mon = DriftMonitor(cfg, ["a"], {"a": reference()})
    a = np.r_[np.random.default_rng(0).normal(size=150), np.full(50, np.nan), np.full(250, 5.0)]
    a[10:20] = np.inf
    events = mon.update({"a": a[:170]}, None, row_start=1000) + mon.update({"a": a[170:]}, None, row_start=1170)
    # finite values: rows 1000-1009, 1020-1149, 1200-1449; windows of 100 values: the 1st (rows 1000-1109)
    # is stationary, the 2nd holds rows 1110-1149 and 1200-1259, the 3rd rows 1260-1359
    assert [(e.window["start_row"], e.window["end_row"]) for e in events] == [(1110, 1259), (1260, 1359)]
    assert DriftHistory(tmp_path / "d.db").query()[0].window["end_row"] == 1359


def test_monitor_score_and_all_features_by_default(tmp_path):
    cfg = config(detectors=["psi"], history=str(tmp_path / "d.db"))
    mon = DriftMonitor(cfg, ["a", "t"], None)
    assert mon.columns == ["a", "t", SCORE]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=3000), "t": ["x"] * 3000})
    events = mon.update(frame, np.r_[rng.normal(size=2000), rng.normal(3, 1, 1000)], 0)
    assert [(e.feature, e.window["end_row"]) for e in events] == [(SCORE, 2999)]
    assert mon.skipped == {"t": "not numeric"}
    assert DriftMonitor(config(), ["a"], None).update(frame, None, 0) == []  # no detectors: off


def test_monitor_restart(tmp_path):
    cfg = config(detectors=[{"type": "ks", "window": 500}], score=False, history=str(tmp_path / "d.db"))
    mon = DriftMonitor(cfg, ["a"], {"a": reference()})
    moved = {"a": np.random.default_rng(0).normal(3, 1, 1000)}
    assert len(mon.update(moved, None, 0)) == 1  # the second window falls in the cooldown
    mon.restart({"a": np.random.default_rng(1).normal(3, 1, 5000)})  # e.g. refitted on the new data
    assert mon.update(moved, None, 1000) == []


def test_monitor_rejects_unknown_features():
    with pytest.raises(ConfigError) as exc:
        DriftMonitor(config(detectors=["ks"], features=["amount", "colour"]), ["amount", "age"], None)
    assert "'colour'" in str(exc.value) and "available features: amount, age" in str(exc.value)


def test_monitor_cost_is_small():
    cfg = config(detectors=["ks", "psi"], features=None, history=None)
    feats = [f"f{i}" for i in range(20)]
    rng = np.random.default_rng(0)
    mon = DriftMonitor(cfg, feats, {f: rng.normal(size=20_000) for f in feats}, record=False)
    frame = pd.DataFrame(rng.normal(size=(10_000, 20)), columns=feats)
    t = time.perf_counter()
    for i in range(5):
        mon.update(frame, rng.normal(size=10_000), i * 10_000)
    assert (time.perf_counter() - t) / 5 < 0.25  # about 12 ms on a 2-core box; generous for loaded CI


# --------------------------------------------------------------------------- history and CLI
def event(feature="a", test="ks", pipeline="fraud", at=None, statistic=0.31):
    at = at or datetime.now(timezone.utc)
    return DriftEvent(pipeline=pipeline, run_id="r1", model_version="fraud@1", feature=feature, test=test,
                      statistic=statistic, threshold=0.05, p_value=2e-40,
                      window={"start_row": 1000, "end_row": 1999, "size": 1000, "reference_size": 5000},
                      detail="KS D=0.31 (p=2e-40); median moved from 0.02 to 1.48",
                      detected_at=at.isoformat(timespec="milliseconds"))


def test_history_round_trip(tmp_path):
    h = DriftHistory(tmp_path / "h.db")
    old = datetime.now(timezone.utc) - timedelta(days=10)
    events = [event(at=old), event("b", "psi"), event("a", "adwin", pipeline="other", statistic=math.nan)]
    h.add(events)
    got = h.query()
    assert [e.test for e in got] == ["adwin", "psi", "ks"]  # newest first
    assert got[2] == events[0] and math.isnan(got[0].statistic)
    assert [e.test for e in h.query(pipeline="fraud")] == ["psi", "ks"]
    assert [e.test for e in h.query(feature="a")] == ["adwin", "ks"]
    assert [e.test for e in h.query(since="7d")] == ["adwin", "psi"]
    assert [e.test for e in h.query(since=(old - timedelta(hours=1)).isoformat())] == ["adwin", "psi", "ks"]
    assert len(h.query(limit=1)) == 1
    with sqlite3.connect(h.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_parse_since():
    assert parse_since("2024-05-01") == datetime(2024, 5, 1, tzinfo=timezone.utc).timestamp()
    assert parse_since("2024-05-01T12:00:00Z") == datetime(2024, 5, 1, 12, tzinfo=timezone.utc).timestamp()
    assert abs(parse_since("2h") - (datetime.now(timezone.utc).timestamp() - 7200)) < 5
    with pytest.raises(ValueError, match="duration"):
        parse_since("last tuesday")


def cli(*args):
    from adpipe.core.cli import cli as group

    return CliRunner().invoke(group, ["drift", "history", *args], env={"COLUMNS": "250", "NO_COLOR": "1"})


def test_cli_history(adpipe_home, tmp_path):
    out = cli()
    assert out.exit_code == 0 and "no drift recorded" in out.output
    assert not (adpipe_home / "drift.db").exists()  # looking does not create it
    DriftHistory().add([event(), event("amount", "psi", pipeline="other")])
    out = cli()
    assert out.exit_code == 0, out.output
    for text in ("fraud", "amount", "psi", "0.31", "0.05", "2e-40", "1,000-1,999", "median moved"):
        assert text in out.output
    lines = cli("--json", "--pipeline", "other").output.strip().splitlines()
    assert [json.loads(x)["feature"] for x in lines] == ["amount"]
    assert cli("--feature", "nope").output.strip().startswith("no drift recorded")
    assert len(cli("--json", "--since", "1h", "--limit", "1").output.strip().splitlines()) == 1
    bad = cli("--since", "yesterday-ish")
    assert bad.exit_code == 2 and "--since" in bad.output
    DriftHistory(tmp_path / "other.db").add([event("x")])
    assert json.loads(cli("--json", "--db", str(tmp_path / "other.db")).output)["feature"] == "x"


@pytest.mark.slow
def test_cli_history_subprocess(adpipe_home, tmp_path):
    DriftHistory().add([event()])
    proc = run_cli("drift", "history", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "KS D=0.31" in proc.stdout and "fraud" in proc.stdout
