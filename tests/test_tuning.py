"""adpipe tune: grid/random/bayes search over tune.space, the final model, interruption, bad input.

The data has a known best setting: 45 anomalies in tight clusters of 5 points, normal data in one
big blob plus four blobs of 60. kNN with fewer than ~5 neighbours sees each anomaly's cluster mates
(anomalies look normal); with more than ~40 the small normal blobs look anomalous; in between,
ROC-AUC is ~0.999. The anomaly share is 5 %, so contamination 0.05 gives the best F1.
"""

from __future__ import annotations

import itertools
import json
import signal
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import adpipe
from adpipe.core import schema
from adpipe.core.cli import main
from adpipe.core.config import load_config
from adpipe.core.errors import ConfigError, DataError
from adpipe.core.tuning import tune

REPO = Path(__file__).resolve().parents[1]
PLATEAU = (5, 35)  # n_neighbors that reach ROC-AUC ~0.999 on this data


def clusters_frame(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts, labels = [rng.normal(0, 1, size=(615, 2))], [np.zeros(615)]
    for a in np.deg2rad([0, 90, 180, 270]):  # small normal blobs
        parts.append(8 * np.array([np.cos(a), np.sin(a)]) + rng.normal(0, 0.4, size=(60, 2)))
        labels.append(np.zeros(60))
    for a in np.deg2rad(np.arange(9) * 40 + 20):  # tight anomaly clusters
        parts.append(5.5 * np.array([np.cos(a), np.sin(a)]) + rng.normal(0, 0.05, size=(5, 2)))
        labels.append(np.ones(5))
    frame = pd.DataFrame(np.vstack(parts), columns=["x", "y"]).round(4)
    frame["label"] = np.concatenate(labels).astype(int)
    return frame


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tune_data") / "data.csv"
    clusters_frame().to_csv(path, index=False)
    return path


@pytest.fixture
def write_config(tmp_path, data_csv):
    """``write_config(tune_section, **top_level)`` -> a config path in tmp_path scoring data_csv."""

    def write(tune_spec: dict, **extra) -> Path:
        cfg = {"name": "pipe", "source": {"type": "csv", "path": str(data_csv)}, "columns": {"label": "label"},
               "detector": {"type": "knn", "n_neighbors": 5},
               "threshold": {"type": "contamination", "contamination": 0.1}, "tune": tune_spec, **extra}
        path = tmp_path / "pipe.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    return write


def cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


GRID = {"method": "grid", "objective": "f1",
        "space": {"detector.n_neighbors": [2, 15, 80], "threshold.contamination": [0.02, 0.05, 0.2]}}


# --------------------------------------------------------------------------- finding the best
def test_grid_finds_the_known_best_and_tries_every_combination_once(write_config):
    result = tune(write_config(GRID), fit_final=False)
    assert result.best_params == {"detector.n_neighbors": 15, "threshold.contamination": 0.05}
    assert result.best_value > 0.85
    tried = [(t.params["detector.n_neighbors"], t.params["threshold.contamination"]) for t in result.trials]
    assert sorted(tried) == sorted(itertools.product([2, 15, 80], [0.02, 0.05, 0.2]))
    assert [t.state for t in result.trials] == ["complete"] * 9 and result.stopped == "finished"
    # the runner-up is clearly worse: the best is unique, not a tie
    assert result.ranked()[1].value < result.best_value - 0.2
    # fewer trials than combinations: distinct combinations, never one twice
    part = tune(write_config({**GRID, "trials": 4}), fit_final=False)
    tried = [tuple(t.params.values()) for t in part.trials]
    assert len(tried) == 4 and len(set(tried)) == 4


@pytest.mark.parametrize("method", ["random", "bayes"])
def test_random_and_bayes_get_within_epsilon_of_the_best(write_config, method):
    grid = tune(write_config({"method": "grid", "space": {"detector.n_neighbors": [2, 15, 80]}}), fit_final=False)
    assert grid.best_params == {"detector.n_neighbors": 15}
    result = tune(write_config({"method": method, "trials": 20, "seed": 1,
                                "space": {"detector.n_neighbors": {"low": 1, "high": 100}}}), fit_final=False)
    assert len(result.trials) == 20
    assert result.best_value >= grid.best_value - 0.002
    assert PLATEAU[0] <= result.best_params["detector.n_neighbors"] <= PLATEAU[1]
    # seeded: the same search again tries the same settings
    again = tune(write_config({"method": method, "trials": 5, "seed": 1,
                               "space": {"detector.n_neighbors": {"low": 1, "high": 100}}}), fit_final=False)
    assert [t.params for t in again.trials] == [t.params for t in result.trials[:5]]


def test_float_step_log_and_nested_keys(write_config):
    """A stepped float range on a grid, a nested space and a stage whose type is searched."""
    result = tune(write_config({"method": "grid", "objective": "f1", "space": {
        "detector": {"type": ["knn", "lof"], "n_neighbors": [15]},
        "threshold.contamination": {"low": 0.03, "high": 0.07, "step": 0.02}}}), fit_final=False)
    tried = sorted((t.params["detector.type"], t.params["threshold.contamination"]) for t in result.trials)
    assert tried == [(d, c) for d in ("knn", "lof") for c in (0.03, 0.05, 0.07)]
    assert all(t.state == "complete" for t in result.trials)
    assert result.best_params["threshold.contamination"] == 0.05
    # the base detector lacks n_neighbors: it is checked against the searched types instead
    space = {"detector": {"type": ["knn", "lof"], "n_neighbors": [15]},
             "preprocess.0.type": ["standard_scaler", "robust_scaler"]}
    swapped = tune(write_config({"method": "grid", "space": space}, detector={"type": "iforest"},
                                preprocess=[{"type": "standard_scaler"}]), fit_final=False)
    assert len(swapped.trials) == 4 and all(t.state == "complete" for t in swapped.trials)
    assert swapped.config.detector.type in ("knn", "lof") and swapped.config.detector.params.n_neighbors == 15
    logged = tune(write_config({"method": "random", "trials": 6, "space": {
        "threshold.contamination": {"low": 0.01, "high": 0.3, "log": True}}}), fit_final=False)
    assert all(0.01 <= t.params["threshold.contamination"] <= 0.3 for t in logged.trials)


def test_python_api_on_a_table_with_a_loaded_config():
    cfg = load_config(data={"columns": {"label": "label"}, "detector": {"type": "knn"},
                            "tune": {"method": "grid", "space": {"detector.n_neighbors": [2, 15]}}})
    result = tune(cfg, data=clusters_frame())
    assert result.best_params == {"detector.n_neighbors": 15} and result.training_rows + result.validation_rows == 900
    assert result.model.config.detector.params.n_neighbors == 15
    assert result.model.training["tuning"]["best_params"] == {"detector.n_neighbors": 15}
    with pytest.raises(ConfigError, match="Overrides apply to a config file"):
        tune(cfg, ["tune.trials=1"], data=clusters_frame())


# --------------------------------------------------------------------------- the final model and outputs
def test_cli_saves_the_best_model_which_scores_like_a_direct_fit(write_config, tmp_path, capsys, data_csv):
    path = write_config(GRID)
    store = tmp_path / "store"
    code, out, err = cli(capsys, "tune", f"config={path}", "--store", str(store), "--json",
                         "--report", str(tmp_path / "tune.html"), "--best-config", str(tmp_path / "best.yaml"))
    assert code == 0, err
    doc = json.loads(out)
    best = {"detector.n_neighbors": 15, "threshold.contamination": 0.05}
    assert doc["ref"] == "pipe@1" and doc["tuning"]["best_params"] == best
    assert len(doc["tuning"]["results"]) == 9 and doc["tuning"]["results"][0]["params"] == best
    # the store's metadata carries the tuning results (what `adpipe models show` reads)
    code, out, _ = cli(capsys, "models", "show", "pipe@1", "--store", str(store), "--json")
    tuning = json.loads(out)["training"]["tuning"]
    assert tuning["method"] == "grid" and tuning["objective"] == "f1" and tuning["trials"] == 9
    assert tuning["best_params"] == best and tuning["best_value"] == doc["tuning"]["best_value"]
    code, out, _ = cli(capsys, "models", "show", "pipe@1", "--store", str(store))
    assert code == 0 and "tuning: grid search, 9 trials" in out and "detector.n_neighbors=15" in out
    # the saved model has the best parameters and scores like a model fitted directly with them
    model = adpipe.load_model("pipe@1", store=store)
    assert model.config.detector.params.n_neighbors == 15
    assert model.config.threshold.params.contamination == 0.05
    direct = adpipe.Pipeline.from_config(path, ["detector.n_neighbors=15", "threshold.contamination=0.05"]).fit()
    frame = pd.read_csv(data_csv)
    cols = [schema.SCORE, schema.PROBABILITY, schema.LABEL]
    pd.testing.assert_frame_equal(model.score(frame)[cols], direct.score(frame)[cols])
    # the best config runs as it is, with the same settings
    best_cfg = load_config(tmp_path / "best.yaml")
    assert best_cfg.name == "pipe" and best_cfg.detector.params.n_neighbors == 15
    assert best_cfg.threshold.params.contamination == 0.05
    page = (tmp_path / "tune.html").read_text()
    assert page.count("<img") == 3  # objective per trial, one scatter per parameter
    assert "Trials, best first" in page and "detector.n_neighbors" in page


def test_cli_terminal_output_and_out_file(write_config, tmp_path, capsys):
    path = write_config({**GRID, "space": {**GRID["space"], "detector.n_neighbors": [15, 5000]}})
    code, out, err = cli(capsys, "tune", f"config={path}", "--out", str(tmp_path / "m.adpipe"))
    assert code == 0, err
    assert "grid search, 6 trials (3 completed, 3 failed)" in " ".join(out.split())
    assert "best: trial" in out and "n_neighbors=15" in out and "m.adpipe" in out
    assert "failed" in out and "n_neighbors" in out  # failed trials listed with their error
    assert (tmp_path / "m.adpipe").is_file()
    code, out, _ = cli(capsys, "tune", f"config={path}", "--out", str(tmp_path / "n.adpipe"), "-q")
    assert code == 0 and out.strip() == str(tmp_path / "n.adpipe")


def test_a_failing_trial_is_recorded_and_the_search_goes_on(write_config):
    result = tune(write_config({"method": "grid", "space": {"detector.n_neighbors": [5000, 15, 80]}}))
    failed = [t for t in result.trials if t.state == "failed"]
    assert len(failed) == 1 and failed[0].params == {"detector.n_neighbors": 5000}
    assert "n_neighbors" in failed[0].error and failed[0].value is None
    assert result.counts() == {"complete": 2, "failed": 1, "interrupted": 0}
    assert result.best_params == {"detector.n_neighbors": 15} and result.ranked()[-1] is failed[0]
    assert result.model.config.detector.params.n_neighbors == 15


# --------------------------------------------------------------------------- stopping early
RANDOM = {"method": "random", "trials": 40, "space": {"detector.n_neighbors": {"low": 1, "high": 100}}}


def test_keyboard_interrupt_in_a_trial_keeps_the_completed_ones_and_fits(write_config):
    def on_trial(record, best):
        if record.number == 3:
            raise KeyboardInterrupt

    result = tune(write_config(RANDOM), on_trial=on_trial)
    assert result.stopped == "interrupted" and len(result.trials) == 3
    assert result.model is not None
    assert result.model.config.detector.params.n_neighbors == result.best_params["detector.n_neighbors"]
    assert result.model.training["tuning"]["stopped"] == "interrupted"


def test_ctrl_c_stops_starting_trials_and_a_second_aborts(write_config):
    before = signal.getsignal(signal.SIGINT)

    def once(record, best):
        if record.number == 2:
            signal.raise_signal(signal.SIGINT)

    result = tune(write_config(RANDOM), on_trial=once)
    assert result.stopped == "interrupted" and len(result.trials) == 2 and result.model is not None
    assert signal.getsignal(signal.SIGINT) is before

    def twice(record, best):
        if record.number == 2:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        tune(write_config(RANDOM), on_trial=twice)
    assert signal.getsignal(signal.SIGINT) is before


def test_timeout_stops_the_search_and_fits_the_best_so_far(write_config):
    result = tune(write_config({**RANDOM, "trials": 100_000, "timeout_seconds": 0.3}))
    assert result.stopped == "timeout"
    assert 1 <= len(result.trials) < 100_000
    assert result.model is not None and result.best is not None


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("space, message, hint", [
    ({}, "tune.space is empty", "tune:"),
    ({"detector.n_neighbourz": [5, 10]}, "'detector.n_neighbourz' is not a key", "'detector.n_neighbors'"),
    ({"treshold.contamination": [0.1]}, "is not a key", "'threshold.contamination'"),
    ({"detector.n_neighbors": {"low": 0, "high": 10}}, "the value 0 is not allowed", "plugins show"),
    ({"threshold.contamination": [0.05, 0.7]}, "the value 0.7 is not allowed", "plugins show"),
    ({"detector.type": ["knn", "knnn"]}, "'knnn'", "plugins show"),
])
def test_bad_space_keys_and_values(write_config, space, message, hint):
    with pytest.raises(ConfigError) as exc:
        tune(write_config({"method": "random", "space": space}))
    assert message in exc.value.message and hint in exc.value.hint


@pytest.mark.parametrize("spec, message, hint", [
    ({"low": 5}, "has no `high`", "range"),
    ({"low": 10, "high": 1}, "must be below high", "single value"),
    ("abc", "not a list of values or a range", "range"),
    ({"low": 1, "high": 5, "stepp": 1}, "unknown range key 'stepp'", "'step'"),
    ([], "empty", "list"),
    ({"low": 0, "high": 1.0, "log": True}, "log range needs low > 0", "drop log"),
    ({"low": "a", "high": 3}, "is not a number", "range"),
    ({"low": 1, "high": 5, "step": -1}, "positive", "step"),
    ([5, 5], "listed twice", "once"),
])
def test_malformed_ranges(write_config, spec, message, hint):
    with pytest.raises(ConfigError) as exc:
        load_config(write_config({"space": {"detector.n_neighbors": spec}}))
    assert message in exc.value.message and hint in exc.value.hint
    assert "tune.space.detector.n_neighbors" in exc.value.message


def test_grid_needs_a_step_for_a_continuous_range(write_config):
    with pytest.raises(ConfigError) as exc:
        load_config(write_config({"method": "grid", "space": {"threshold.contamination": {"low": 0.01, "high": 0.2}}}))
    assert "continuous range" in exc.value.message and "step" in exc.value.hint
    cfg = load_config(write_config({"method": "grid", "space": {
        "threshold.contamination": {"low": 0.01, "high": 0.2, "step": 0.05}}}))  # 0.01 .. 0.16
    assert cfg.tune.method == "grid"


def test_labels_are_required(write_config, tmp_path, data_csv):
    with pytest.raises(ConfigError) as exc:
        tune(write_config(GRID, columns={}))
    assert "columns.label" in exc.value.message and "columns.label" in exc.value.hint
    with pytest.raises(DataError) as exc:
        tune(write_config(GRID, columns={"label": "labl"}))
    assert "'labl' is not in the training data" in exc.value.message and "'label'" in exc.value.hint
    one_class = tmp_path / "normal.csv"
    pd.read_csv(data_csv).assign(label=0).to_csv(one_class, index=False)
    with pytest.raises(DataError) as exc:
        tune(write_config(GRID, source={"type": "csv", "path": str(one_class)}))
    assert "only the value 0" in exc.value.message and "anomalies" in exc.value.hint


def test_without_optuna_the_cli_says_how_to_install_it(write_config, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    code, out, err = cli(capsys, "tune", f"config={write_config(GRID)}")
    assert code == 2 and "needs Optuna" in err and "pip install 'adpipe[tune]'" in err


def test_example_config_tunes(tmp_path):
    """configs/tune_example.yaml runs as shipped (two trials here to keep the test short)."""
    result = tune(REPO / "configs" / "tune_example.yaml", ["tune.trials=2"], fit_final=False)
    assert result.name == "cardio" and len(result.trials) == 2
    assert result.best is not None and 0 < result.best_value <= 1
    assert result.validation_rows == 550 and result.training_rows == 1281


def test_space_doctests():
    import doctest

    import adpipe.core.tuning_space as space

    assert doctest.testmod(space).failed == 0
