"""The engine end to end (in process): output schema, summary, chunking, fit options, bad input, rollback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import adpipe
from adpipe.core.schema import RESULT_COLUMNS, SEVERITIES
from adpipe.plugins.sinks.memory import MemorySink
from conftest import FailingScore, MeanDistance, basic_config, blob_frame, files_under, local_registry


def run(tmp_path: Path, cfg: dict, registry=None, **kwargs) -> adpipe.RunSummary:
    return adpipe.Pipeline.from_dict(cfg, base_dir=tmp_path, registry=registry).run(**kwargs)


def run_error(tmp_path: Path, cfg: dict, error=adpipe.AdpipeError, registry=None) -> adpipe.AdpipeError:
    with pytest.raises(error) as err:
        run(tmp_path, cfg, registry=registry)
    return err.value


@pytest.fixture
def data(make_csv) -> Path:
    """data.csv: id, f0..f2; 300 rows, the last 10 far-away outliers."""
    return make_csv(blob_frame(n=300, with_id=True))


def scores_of(tmp_path: Path, name: str = "out/scores.csv") -> pd.DataFrame:
    return pd.read_csv(tmp_path / name)


# --------------------------------------------------------------------------- output schema
def test_result_columns_default_to_every_input_column(tmp_path, data):
    summary = run(tmp_path, basic_config())
    out = scores_of(tmp_path)
    assert list(out.columns) == ["id", "f0", "f1", "f2", *RESULT_COLUMNS]
    assert len(out) == 300
    assert (out["run_id"] == summary.run_id).all() and (out["model_version"] == summary.model_version).all()
    pd.testing.assert_frame_equal(out[["id", "f0", "f1", "f2"]], pd.read_csv(data))


def test_id_columns_limit_the_key_columns_and_are_not_features(tmp_path, data):
    summary = run(tmp_path, basic_config(columns={"id": ["id"]}))
    out = scores_of(tmp_path)
    assert list(out.columns) == ["id", *RESULT_COLUMNS]
    assert out["id"].tolist() == list(range(1, 301))
    assert summary.training["features"] == 3  # f0..f2, not the id


def test_probabilities_labels_and_severity(tmp_path, data):
    run(tmp_path, basic_config(columns={"id": ["id"]}))
    out = scores_of(tmp_path)
    p = out["anomaly_probability"]
    assert p.between(0, 1).all()
    ordered = out.sort_values("anomaly_score", kind="stable")
    assert (np.diff(ordered["anomaly_probability"].to_numpy()) >= -1e-12).all(), "probability not monotone in score"
    assert set(out["is_anomaly"].unique()) <= {0, 1}
    assert set(out["severity"]) <= set(SEVERITIES)
    assert (out.loc[out["is_anomaly"] == 0, "severity"] == "none").all()
    assert (out.loc[out["is_anomaly"] == 1, "severity"] != "none").all()
    # the planted outliers are the highest scores and are flagged
    assert out.nlargest(10, "anomaly_score")["id"].min() > 290
    assert (out.loc[out["id"] > 290, "is_anomaly"] == 1).all()


def test_contamination_flags_about_that_share_of_training_rows(tmp_path, make_csv):
    make_csv(blob_frame(n=1000, n_outliers=0, seed=3))
    for share in (0.1, 0.02):
        cfg = basic_config(threshold={"type": "contamination", "contamination": share})
        summary = run(tmp_path, cfg)
        assert summary.anomalies == pytest.approx(1000 * share, abs=2)


@pytest.mark.parametrize("detector", ["ecod", "knn", "lof"])
def test_contamination_holds_for_detectors_with_their_own_training_scores(tmp_path, make_csv, detector):
    """`adpipe run` fits on the source and scores the same rows: contamination 0.1 must flag ~10 % of them.

    PyOD's kNN/LOF training scores leave each row out of its own neighbourhood and ECOD re-fits its
    ECDFs on new data, so score(X_train) differs from the training scores the calibration and threshold
    were fitted on; `adpipe.detect` reuses the training scores for exactly this reason.
    """
    make_csv(blob_frame(n=1000, n_outliers=0, seed=3))
    summary = run(tmp_path, basic_config(detector={"type": detector}, sinks=[]), write_summary=False)
    assert summary.anomalies / summary.rows_scored == pytest.approx(0.1, abs=0.01)
    assert adpipe.detect(pd.read_csv(tmp_path / "data.csv"), algorithm=detector,
                         contamination=0.1).summary["anomaly_percent"] == pytest.approx(10, abs=1)


def test_summary_json_beside_the_output_reconciles(tmp_path, data):
    summary = run(tmp_path, basic_config())
    path = tmp_path / "out" / "scores.summary.json"
    assert summary.summary_path == str(path)
    doc = json.loads(path.read_text())
    assert doc["rows_in"] == 300 == doc["rows_scored"] + doc["rows_rejected"]
    assert doc["anomalies"] == int(scores_of(tmp_path)["is_anomaly"].sum()) == summary.anomalies
    assert doc["run_id"] == summary.run_id and doc["status"] == "succeeded"
    assert doc["outputs"] == [str(tmp_path / "out" / "scores.csv")]
    assert {"fit_detector", "detect", "write"} <= set(doc["stage_seconds"])
    assert doc["training"]["rows"] == 300


def test_summary_path_can_be_configured(tmp_path, data):
    run(tmp_path, basic_config(summary={"path": "reports/run.json"}))
    assert json.loads((tmp_path / "reports" / "run.json").read_text())["rows_in"] == 300
    assert not (tmp_path / "out" / "scores.summary.json").exists()


def test_dated_outputs_in_one_folder_keep_separate_summaries(tmp_path, data):
    """Outputs named by date (daily.2024-01-01.csv, daily.2024-01-02.csv) must not share one summary file."""
    first = run(tmp_path, basic_config(out="out/daily.2024-01-01.csv"))
    second = run(tmp_path, basic_config(out="out/daily.2024-01-02.csv"))
    assert first.summary_path != second.summary_path
    assert json.loads(Path(first.summary_path).read_text())["run_id"] == first.run_id


def test_parquet_and_jsonl_sinks_get_the_same_rows(tmp_path, data):
    cfg = basic_config(columns={"id": ["id"]})
    cfg["sinks"] += [{"type": "parquet", "path": "out/scores.parquet"}, {"type": "jsonl", "path": "out/s.jsonl"}]
    run(tmp_path, cfg)
    csv = scores_of(tmp_path)
    pq = pd.read_parquet(tmp_path / "out" / "scores.parquet")
    js = pd.read_json(tmp_path / "out" / "s.jsonl", lines=True)
    assert len(csv) == len(pq) == len(js) == 300
    np.testing.assert_allclose(pq["anomaly_score"], csv["anomaly_score"])
    assert pq["id"].tolist() == js["id"].tolist() == csv["id"].tolist()


# --------------------------------------------------------------------------- chunking & fitting
def test_chunked_scoring_gives_the_same_scores_as_one_batch(tmp_path, data):
    one = run(tmp_path, basic_config(out="out/one.csv", columns={"id": ["id"]}))
    many = run(tmp_path, basic_config(out="out/many.csv", columns={"id": ["id"]}, engine={"batch_rows": 7}))
    assert (one.batches, many.batches) == (1, 43)
    a, b = scores_of(tmp_path, "out/one.csv"), scores_of(tmp_path, "out/many.csv")
    assert a["id"].tolist() == b["id"].tolist()
    np.testing.assert_allclose(a["anomaly_score"], b["anomaly_score"])
    np.testing.assert_allclose(a["anomaly_probability"], b["anomaly_probability"])
    assert a["is_anomaly"].tolist() == b["is_anomaly"].tolist()


def test_chunked_scoring_from_a_streamed_source_matches(tmp_path, data):
    """With a separate fit.source the scoring source is read in batches, not from memory."""
    fit = {"source": {"type": "csv", "path": "data.csv"}}
    run(tmp_path, basic_config(out="out/one.csv", columns={"id": ["id"]}, fit=fit))
    summary = run(tmp_path, basic_config(out="out/many.csv", columns={"id": ["id"]}, fit=fit,
                                         engine={"batch_rows": 13}))
    assert summary.batches == 24 and summary.rows_in == 300
    a, b = scores_of(tmp_path, "out/one.csv"), scores_of(tmp_path, "out/many.csv")
    np.testing.assert_allclose(a["anomaly_score"], b["anomaly_score"])
    assert a["is_anomaly"].tolist() == b["is_anomaly"].tolist()


def test_fit_sample_rows(tmp_path, make_csv):
    make_csv(blob_frame(n=500, with_id=True))
    cfg = basic_config(columns={"id": ["id"]}, fit={"sample_rows": 120, "seed": 1}, engine={"batch_rows": 50})
    summary = run(tmp_path, cfg)
    assert summary.training["rows"] == 120 and summary.training["sampled"] is True
    assert summary.rows_in == summary.rows_scored == 500
    assert len(scores_of(tmp_path)) == 500


def test_spilled_scoring_pass_equals_reading_the_source_again(tmp_path, make_csv):
    """engine.spill keeps the sampling pass's batches for scoring: same results as re-reading the CSV."""
    frame = blob_frame(n=500, with_id=True)
    frame["f1"] = frame["f1"].astype(object)
    frame.loc[77, "f1"] = "oops"  # a rejected row must be rejected the same way from the spill
    make_csv(frame)
    common = dict(columns={"id": ["id"]}, fit={"sample_rows": 120, "seed": 1}, validation={"on_invalid": "drop"})
    a = run(tmp_path, basic_config(out="out/spill.csv", engine={"batch_rows": 50}, **common))
    b = run(tmp_path, basic_config(out="out/reread.csv", engine={"batch_rows": 50, "spill": False}, **common))
    assert (a.rows_in, a.rows_scored, a.rows_rejected, a.batches) == (b.rows_in, b.rows_scored, b.rows_rejected,
                                                                     b.batches) == (500, 499, 1, 10)
    x, y = scores_of(tmp_path, "out/spill.csv"), scores_of(tmp_path, "out/reread.csv")
    assert x["id"].tolist() == y["id"].tolist()
    np.testing.assert_allclose(x["anomaly_score"], y["anomaly_score"])


def test_training_sample_is_spread_over_the_whole_source(tmp_path, make_csv):
    """The reservoir keeps a uniform sample: rows from the start, middle and end of a long source."""
    from adpipe.core.engine import read_frames

    batches = (adpipe.Batch(pd.DataFrame({"x": np.arange(i, i + 1000)})) for i in range(0, 100_000, 1000))
    sample = read_frames(batches, 2000, seed=0)
    assert len(sample) == 2000 and sample.index.is_unique
    assert (sample.index == sample["x"]).all()  # the index is each row's position in the source
    assert np.histogram(sample["x"], bins=4, range=(0, 100_000))[0].min() > 400


def test_bad_row_in_a_sampled_training_set_is_reported_with_its_data_row(tmp_path, make_csv):
    """With fit.sample_rows the training error must name the row of the file (250), not its position in the sample."""
    frame = blob_frame(n=300, with_id=True)
    frame.loc[249, "f0"] = np.nan
    make_csv(frame)
    err = run_error(tmp_path, basic_config(fit={"sample_rows": 280}), adpipe.DataError)
    assert "'f0'" in str(err) and "row(s) 250" in str(err), str(err)


def test_fit_sample_rows_larger_than_the_data_uses_every_row(tmp_path, data):
    summary = run(tmp_path, basic_config(fit={"sample_rows": 10_000}))
    assert summary.training["rows"] == 300


def test_separate_fit_source(tmp_path, make_csv):
    make_csv(blob_frame(n=400, n_outliers=0, seed=1, with_id=True), name="train.csv")
    score = blob_frame(n=60, n_outliers=6, seed=2, with_id=True)
    make_csv(score, name="data.csv")
    cfg = basic_config(columns={"id": ["id"]}, fit={"source": {"type": "csv", "path": "train.csv"}},
                       threshold={"type": "contamination", "contamination": 0.01})
    summary = run(tmp_path, cfg)
    assert summary.training["rows"] == 400 and summary.rows_in == 60
    out = scores_of(tmp_path)
    assert set(out.loc[out["is_anomaly"] == 1, "id"]) >= set(range(55, 61))


def test_fit_then_score_new_data_with_the_python_api(tmp_path):
    pipe = adpipe.Pipeline.from_dict({"detector": {"type": "iforest", "random_state": 0}}, base_dir=tmp_path)
    with pytest.raises(adpipe.ModelError):
        pipe.score(blob_frame(n=5, n_outliers=0))
    model = pipe.fit(blob_frame(n=300))
    new = pd.DataFrame({"f0": [0.0, 9.0], "f1": [0.0, -9.0], "f2": [0.0, 9.0]})
    out = pipe.score(new)
    assert list(out.columns) == ["f0", "f1", "f2", *RESULT_COLUMNS]
    assert out["anomaly_score"].iloc[1] > out["anomaly_score"].iloc[0]
    assert out["is_anomaly"].tolist() == [0, 1]
    assert model.score(new)["anomaly_score"].tolist() == out["anomaly_score"].tolist()


def test_dataframe_source_runs_in_memory(tmp_path):
    frame = blob_frame(n=120, with_id=True)
    sink = MemorySink()
    summary = run(tmp_path, {"source": {"type": "dataframe", "data": frame}, "detector": "iforest",
                             "columns": {"id": ["id"]}}, sinks=[sink], write_summary=False)
    assert summary.rows_in == 120
    assert sink.frame()["id"].tolist() == frame["id"].tolist()


def test_alerts_are_sent_for_anomalies(tmp_path, data, caplog):
    cfg = basic_config(alerts=[{"type": "log", "level": "WARNING"}])
    with caplog.at_level("WARNING", logger="adpipe.alerts"):
        summary = run(tmp_path, cfg)
    assert summary.alerts["sent"] >= 1 and summary.alerts["failed"] == 0
    assert "anomalies" in caplog.text


def test_label_column_gives_metrics(tmp_path, make_csv):
    make_csv(blob_frame(n=300, with_label=True, with_id=True))
    summary = run(tmp_path, basic_config(columns={"id": ["id"], "label": "label"}))
    m = summary.metrics
    assert set(m) >= {"roc_auc", "pr_auc", "precision", "recall", "f1"}
    assert m["roc_auc"] > 0.95 and m["recall"] == 1.0
    assert json.loads((tmp_path / "out" / "scores.summary.json").read_text())["metrics"]["roc_auc"] == m["roc_auc"]
    assert summary.training["features"] == 3  # the label is not a feature


def test_no_label_column_gives_no_metrics(tmp_path, data):
    assert run(tmp_path, basic_config()).metrics == {}


def test_preprocess_onehot_encodes_a_text_column(tmp_path, make_csv):
    frame = blob_frame(n=200)
    frame["merchant"] = np.where(np.arange(200) % 2, "fuel", "grocery")
    make_csv(frame)
    summary = run(tmp_path, basic_config(preprocess=[{"type": "onehot", "columns": ["merchant"]},
                                                     {"type": "standard_scaler"}]))
    assert summary.rows_scored == 200
    assert scores_of(tmp_path)["merchant"].tolist() == frame["merchant"].tolist()


# --------------------------------------------------------------------------- bad input
def test_empty_file_is_a_data_error(tmp_path, make_csv):
    make_csv("")
    err = run_error(tmp_path, basic_config(), adpipe.DataError)
    assert "data.csv" in str(err) and "empty" in str(err)
    assert not (tmp_path / "out" / "scores.csv").exists()


def test_header_only_file_is_a_data_error(tmp_path, make_csv):
    make_csv("id,f0,f1\n")
    err = run_error(tmp_path, basic_config(), adpipe.DataError)
    assert "data.csv" in str(err) and "no data rows" in str(err)


def test_missing_file_is_a_source_error(tmp_path):
    err = run_error(tmp_path, basic_config(data="nope.csv"), adpipe.SourceError)
    assert "nope.csv" in str(err) and err.exit_code == 6


def test_text_column_hints_at_onehot(tmp_path, make_csv):
    frame = blob_frame(n=40)
    frame["merchant"] = "grocery"
    make_csv(frame)
    err = run_error(tmp_path, basic_config(), adpipe.DataError)
    assert "'merchant'" in str(err) and "onehot" in (err.hint or "") and "columns.exclude" in (err.hint or "")


def test_text_column_can_be_excluded(tmp_path, make_csv):
    frame = blob_frame(n=40)
    frame["merchant"] = "grocery"
    make_csv(frame)
    summary = run(tmp_path, basic_config(columns={"exclude": ["merchant"]}))
    assert summary.training["features"] == 3 and summary.rows_scored == 40
    assert "merchant" in scores_of(tmp_path).columns


def bad_cells_frame() -> pd.DataFrame:
    """60 rows; data row 8 holds text in f1, row 4 NaN in f0, row 10 inf in f2."""
    frame = blob_frame(n=60, with_id=True)
    frame["f1"] = frame["f1"].astype(object)
    frame.loc[7, "f1"] = "abc"
    frame.loc[3, "f0"] = np.nan
    frame.loc[9, "f2"] = np.inf
    return frame


def test_raise_policy_names_column_row_and_value(tmp_path, make_csv):
    make_csv(bad_cells_frame())
    err = run_error(tmp_path, basic_config(), adpipe.DataError)
    text = str(err)
    assert "'f1'" in text and "'abc'" in text and "8" in text
    assert "'f0'" in text and "missing" in text and "'f2'" in text and "infinite" in text
    assert err.exit_code == 3 and "drop" in (err.hint or "")
    assert not (tmp_path / "out").exists() or files_under(tmp_path / "out") == []


def test_raise_at_scoring_counts_rows_across_batches(tmp_path, make_csv):
    make_csv(blob_frame(n=300, with_id=True), name="train.csv")
    frame = blob_frame(n=300, with_id=True)
    frame["f2"] = frame["f2"].astype(object)
    frame.loc[249, "f2"] = "n/a?"
    make_csv(frame)
    cfg = basic_config(fit={"source": {"type": "csv", "path": "train.csv"}}, engine={"batch_rows": 100})
    err = run_error(tmp_path, cfg, adpipe.DataError)
    assert "'f2'" in str(err) and "250" in str(err) and "'n/a?'" in str(err)
    # two batches were already written when the third failed: nothing may be left behind
    assert files_under(tmp_path / "out") == []


def test_drop_policy_sends_rejects_to_the_reject_sink(tmp_path, make_csv):
    make_csv(bad_cells_frame())
    cfg = basic_config(validation={"on_invalid": "drop"}, reject_sink={"type": "csv", "path": "out/rejected.csv"},
                       columns={"id": ["id"]})
    summary = run(tmp_path, cfg)
    assert (summary.rows_in, summary.rows_scored, summary.rows_rejected) == (60, 57, 3)
    rejected = pd.read_csv(tmp_path / "out" / "rejected.csv")
    assert sorted(rejected["id"]) == [4, 8, 10]
    reasons = dict(zip(rejected["id"], rejected["reject_reason"]))
    assert "f0" in reasons[4] and "missing" in reasons[4]
    assert "f1" in reasons[8] and "not a number" in reasons[8]
    assert "f2" in reasons[10] and "infinite" in reasons[10]
    out = scores_of(tmp_path)
    assert len(out) == 57 and not set(out["id"]) & {4, 8, 10}
    doc = json.loads((tmp_path / "out" / "scores.summary.json").read_text())
    assert doc["rows_in"] == doc["rows_scored"] + doc["rows_rejected"]
    assert doc["rejects_output"] == [str(tmp_path / "out" / "rejected.csv")]


def test_drop_policy_reconciles_across_batches(tmp_path, make_csv):
    frame = blob_frame(n=200, with_id=True)
    frame.loc[[5, 50, 51, 150, 199], "f0"] = np.nan
    make_csv(frame)
    cfg = basic_config(validation={"on_invalid": "drop"}, reject_sink={"type": "csv", "path": "out/rej.csv"},
                       engine={"batch_rows": 30})
    summary = run(tmp_path, cfg)
    assert summary.rows_in == 200 and summary.rows_rejected == 5 and summary.rows_scored == 195
    assert len(pd.read_csv(tmp_path / "out" / "rej.csv")) == 5


def test_impute_policy_scores_every_row(tmp_path, make_csv):
    make_csv(bad_cells_frame())
    summary = run(tmp_path, basic_config(validation={"on_invalid": "impute"}))
    assert (summary.rows_in, summary.rows_scored, summary.rows_rejected) == (60, 60, 0)
    out = scores_of(tmp_path)
    assert np.isfinite(out["anomaly_score"]).all()


def test_missing_column_at_scoring_is_a_data_error(tmp_path, make_csv):
    train = blob_frame(n=100, d=4, with_id=True)
    make_csv(train, name="train.csv")
    make_csv(train.drop(columns=["f3"]))
    cfg = basic_config(fit={"source": {"type": "csv", "path": "train.csv"}}, columns={"id": ["id"]})
    err = run_error(tmp_path, cfg, adpipe.DataError)
    assert "'f3'" in str(err) and "missing" in str(err)
    assert files_under(tmp_path / "out") == []


def test_missing_id_column_is_a_data_error(tmp_path, data):
    err = run_error(tmp_path, basic_config(columns={"id": ["transaction_id"]}), adpipe.DataError)
    assert "'transaction_id'" in str(err)


# --------------------------------------------------------------------------- failed runs leave nothing behind
def test_failed_run_leaves_no_output_and_keeps_the_previous_one(tmp_path, data):
    reg = local_registry(MeanDistance, FailingScore)
    cfg = basic_config(detector={"type": "mean_distance"}, reject_sink={"type": "csv", "path": "out/rej.csv"})
    run(tmp_path, cfg, registry=reg)
    good = (tmp_path / "out" / "scores.csv").read_bytes()
    before = files_under(tmp_path / "out")
    cfg["detector"] = {"type": "failing_score"}
    cfg["fit"] = {"source": dict(cfg["source"])}  # a separate training read: the run really scores the source
    cfg["sinks"].append({"type": "parquet", "path": "out/new.parquet"})
    err = run_error(tmp_path, cfg, adpipe.ModelError, registry=reg)
    assert "boom" in str(err) and "failing_score" in str(err)
    assert (tmp_path / "out" / "scores.csv").read_bytes() == good
    assert files_under(tmp_path / "out") == before  # no temp file, no new.parquet, same summary


class UnpublishableSink(adpipe.Sink):
    """Writes fine, then cannot publish (a full disk at the last moment)."""

    name = "unpublishable"

    def write(self, frame):
        pass

    def close(self, success):
        if success:
            raise OSError(28, "No space left on device")


def test_a_sink_that_cannot_publish_fails_the_run_and_rolls_back_the_rest(tmp_path, data):
    reg = local_registry(UnpublishableSink)
    cfg = basic_config(sinks=[{"type": "unpublishable"}, {"type": "csv", "path": "out/scores.csv"}],
                       reject_sink={"type": "csv", "path": "out/rej.csv"})
    err = run_error(tmp_path, cfg, adpipe.SinkError, registry=reg)
    assert "unpublishable" in str(err) and "No space left" in str(err) and err.exit_code == 7
    assert files_under(tmp_path / "out") == []  # neither the results nor the rejects, and no temp file


def test_output_path_that_is_a_folder_is_a_sink_error(tmp_path, data):
    (tmp_path / "out" / "scores.csv").mkdir(parents=True)
    err = run_error(tmp_path, basic_config(), adpipe.SinkError)
    assert "scores.csv" in str(err) and err.exit_code == 7


def test_a_rerun_replaces_the_output(tmp_path, data):
    first = run(tmp_path, basic_config())
    second = run(tmp_path, basic_config())
    out = scores_of(tmp_path)
    assert len(out) == 300 and (out["run_id"] == second.run_id).all() and first.run_id != second.run_id


def test_real_benchmark_data_with_labels(tmp_path, adbench_dir):
    """ADBench breastw (683 rows, 9 features, 239 anomalies): metrics reported and clearly better than chance."""
    with np.load(adbench_dir / "4_breastw.npz", allow_pickle=False) as npz:
        X, y = npz["X"], npz["y"]
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    frame.insert(0, "rid", np.arange(len(frame)))
    frame["y"] = y.astype(int)
    frame.to_csv(tmp_path / "breastw.csv", index=False)
    cfg = basic_config(data="breastw.csv", columns={"id": ["rid"], "label": "y"},
                       threshold={"type": "contamination", "contamination": 0.35},
                       preprocess=[{"type": "standard_scaler"}], engine={"batch_rows": 200})
    summary = run(tmp_path, cfg)
    assert summary.rows_in == len(frame) == summary.rows_scored
    assert summary.metrics["roc_auc"] > 0.9 and summary.metrics["recall"] > 0.7


def test_label_column_is_carried_when_present_and_not_needed_to_score():
    """Default ids are every input column, the label among them; data without the label still scores."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    frame["y"] = (rng.random(300) < 0.1).astype(int)
    model = adpipe.Pipeline.from_dict({"detector": {"type": "iforest", "random_state": 0},
                                       "columns": {"label": "y"}}).fit(frame)
    with_label, without = model.score(frame), model.score(frame.drop(columns="y"))
    assert "y" in with_label.columns and "y" not in without.columns
    np.testing.assert_array_equal(with_label["anomaly_score"], without["anomaly_score"])
