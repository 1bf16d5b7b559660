"""`adpipe fit`, `adpipe score` and `adpipe models ...` end to end, in subprocesses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, blob_frame, run_cli, write_yaml
from test_cli import assert_clean_error, no_outputs

pytestmark = pytest.mark.slow


@pytest.fixture
def fraud(tmp_path: Path) -> Path:
    """The fraud example copied into tmp_path: fraud.yaml + data/transactions.csv, outputs into out/."""
    shutil.copy(REPO / "configs" / "fraud.yaml", tmp_path / "fraud.yaml")
    (tmp_path / "data").mkdir()
    shutil.copy(REPO / "configs" / "data" / "transactions.csv", tmp_path / "data" / "transactions.csv")
    return tmp_path


def ok(proc):
    assert proc.returncode == 0, proc.stderr
    return proc


def test_fit_then_score_reproduces_run(fraud):
    ok(run_cli("run", "config=fraud.yaml", "-q", cwd=fraud))
    ran = pd.read_parquet(fraud / "out" / "fraud_scores.parquet")
    fitted = ok(run_cli("fit", "config=fraud.yaml", cwd=fraud))
    assert "fraud@1 saved to" in fitted.stdout and "roc_auc" in fitted.stdout and "passed" in fitted.stdout
    ok(run_cli("score", "model=fraud@latest", "config=fraud.yaml", "-q", cwd=fraud))
    scored = pd.read_parquet(fraud / "out" / "fraud_scores.parquet")
    assert len(scored) == len(ran) == 11_994
    for col in ("transaction_id", "anomaly_score", "anomaly_probability", "is_anomaly", "severity"):
        assert scored[col].tolist() == ran[col].tolist(), col
    assert (scored["model_version"] == "fraud@1").all()
    summary = json.loads((fraud / "out" / "fraud_scores.summary.json").read_text())
    assert summary["model_version"] == "fraud@1" and summary["rows_rejected"] == 6
    assert summary["metrics"]["roc_auc"] > 0.9


def test_promote_and_rollback(fraud):
    for _ in range(3):
        ok(run_cli("fit", "config=fraud.yaml", "-q", cwd=fraud))
    assert ok(run_cli("models", "promote", "fraud", "1", "--stage", "production", cwd=fraud)).stdout.strip() == \
        "fraud@production -> version 1"
    ok(run_cli("models", "promote", "fraud", "2", "--stage", "production", cwd=fraud))
    ok(run_cli("models", "promote", "fraud", "3", "--stage", "staging", cwd=fraud))
    listing = json.loads(ok(run_cli("models", "list", "--json", cwd=fraud)).stdout)
    assert listing[0]["stages"] == {"production": 2, "staging": 3} and listing[0]["versions"] == [1, 2, 3]
    ok(run_cli("score", "model=fraud@production", "config=fraud.yaml", "-q", cwd=fraud))
    assert (pd.read_parquet(fraud / "out" / "fraud_scores.parquet")["model_version"] == "fraud@2").all()
    assert "version 2 -> 1" in ok(run_cli("models", "rollback", "fraud", cwd=fraud)).stdout
    ok(run_cli("score", "model=fraud@production", "config=fraud.yaml", "-q", cwd=fraud))
    assert (pd.read_parquet(fraud / "out" / "fraud_scores.parquet")["model_version"] == "fraud@1").all()
    assert_clean_error(run_cli("models", "rollback", "fraud", cwd=fraud), 5, "no earlier version")
    shown = ok(run_cli("models", "show", "fraud@production", cwd=fraud)).stdout
    assert "fraud@1" in shown and "stages: production" in shown and "rollback" in shown
    assert "signed with this machine's key" in shown


def test_models_show_list_and_delete(tmp_path, make_csv):
    make_csv(blob_frame(with_id=True, with_label=True))
    write_yaml(tmp_path / "blob.yaml", {"detector": "iforest", "columns": {"id": ["id"], "label": "label"},
                                        "source": {"type": "csv", "path": "data.csv"}})
    ok(run_cli("fit", "config=blob.yaml", cwd=tmp_path))
    ok(run_cli("fit", "config=blob.yaml", "detector=lof", cwd=tmp_path))
    shown = ok(run_cli("models", "show", "blob", cwd=tmp_path)).stdout
    assert "blob@2" in shown and '"type": "lof"' in shown and "f0" in shown and "feature" in shown
    meta = json.loads(ok(run_cli("models", "show", "blob@1", "--json", cwd=tmp_path)).stdout)
    assert meta["ref"] == "blob@1" and meta["config"]["detector"]["type"] == "iforest" and meta["signed"]
    table = ok(run_cli("models", "list", cwd=tmp_path)).stdout
    assert "blob" in table and "lof" in table
    assert ok(run_cli("models", "delete", "blob", "1", cwd=tmp_path)).stdout.strip() == "deleted blob version(s) 1"
    assert json.loads(ok(run_cli("models", "list", "--json", cwd=tmp_path)).stdout)[0]["versions"] == [2]
    assert_clean_error(run_cli("models", "show", "blob@1", cwd=tmp_path), 5, "no version 1")


def test_compare_two_versions_on_data(tmp_path, make_csv):
    csv = make_csv(blob_frame(n=400, n_outliers=20, with_id=True, with_label=True))
    write_yaml(tmp_path / "blob.yaml", {"detector": "iforest", "columns": {"id": ["id"], "label": "label"},
                                        "source": {"type": "csv", "path": "data.csv"}})
    ok(run_cli("fit", "config=blob.yaml", cwd=tmp_path))
    ok(run_cli("fit", "config=blob.yaml", "detector=knn", "+threshold={type: contamination, contamination: 0.05}", cwd=tmp_path))
    out = json.loads(ok(run_cli("models", "compare", "blob@1", "blob@2", "--data", str(csv), "--json",
                                cwd=tmp_path)).stdout)
    keys = {d["key"]: (d["a"], d["b"]) for d in out["differences"]}
    assert keys["config.detector.type"] == ("iforest", "knn")
    assert keys["config.threshold.contamination"] == (0.1, 0.05)
    models = out["data"]["models"]
    assert models["blob@1"]["anomalies"] > models["blob@2"]["anomalies"]
    assert models["blob@1"]["metrics"]["roc_auc"] > 0.9 and "f1" in models["blob@2"]["metrics"]
    agree = out["data"]["agreement"]
    assert agree["rows_compared"] == 400 and agree["flagged_by_both"] > 0 and agree["score_rank_correlation"] > 0.5
    text = ok(run_cli("models", "compare", "blob@1", "blob@2", "--data", str(csv), cwd=tmp_path)).stdout
    assert "config.detector.type" in text and "roc_auc" in text and "agreement" in text


def test_fit_out_file_and_score_it_elsewhere(tmp_path, make_csv):
    make_csv(blob_frame(with_id=True))
    write_yaml(tmp_path / "blob.yaml", {"detector": "iforest", "columns": {"id": ["id"]},
                                        "source": {"type": "csv", "path": "data.csv"},
                                        "sinks": [{"type": "csv", "path": "out/a.csv"}]})
    ok(run_cli("fit", "config=blob.yaml", "--out", "models/blob.adpipe", cwd=tmp_path))
    ok(run_cli("run", "config=blob.yaml", "-q", cwd=tmp_path))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.move(tmp_path / "models" / "blob.adpipe", elsewhere / "moved.adpipe")
    ok(run_cli("score", "model=moved.adpipe", f"config={tmp_path / 'blob.yaml'}", "sinks.0.path=out/b.csv", "-q",
               cwd=elsewhere))
    a, b = pd.read_csv(tmp_path / "out" / "a.csv"), pd.read_csv(tmp_path / "out" / "b.csv")
    assert a["anomaly_score"].tolist() == b["anomaly_score"].tolist()


def test_scoring_config_needs_no_detector(tmp_path, make_csv):
    make_csv(blob_frame(with_id=True))
    write_yaml(tmp_path / "train.yaml", {"detector": "iforest", "columns": {"id": ["id"]},
                                         "source": {"type": "csv", "path": "data.csv"}})
    write_yaml(tmp_path / "score.yaml", {"source": {"type": "csv", "path": "data.csv"},
                                         "sinks": [{"type": "jsonl", "path": "out/s.jsonl"}]})
    ok(run_cli("fit", "config=train.yaml", cwd=tmp_path))
    summary = json.loads(ok(run_cli("score", "model=train", "config=score.yaml", "--json", cwd=tmp_path)).stdout)
    assert summary["rows_scored"] == 300 and summary["anomalies"] == 30 and summary["pipeline"] == "train"
    assert len(pd.read_json(tmp_path / "out" / "s.jsonl", lines=True)) == 300


# --------------------------------------------------------------------------- bad input
@pytest.fixture
def fitted(tmp_path, make_csv) -> Path:
    make_csv(blob_frame(with_id=True))
    write_yaml(tmp_path / "blob.yaml", {"detector": "iforest", "columns": {"id": ["id"]},
                                        "source": {"type": "csv", "path": "data.csv"},
                                        "sinks": [{"type": "csv", "path": "out/s.csv"}]})
    ok(run_cli("fit", "config=blob.yaml", "--out", "blob.adpipe", cwd=tmp_path))
    return tmp_path


def score(folder: Path, model: str, *extra: str):
    return run_cli("score", f"model={model}", "config=blob.yaml", *extra, cwd=folder)


def test_bad_model_references(fitted):
    assert_clean_error(score(fitted, "missing.adpipe"), 5, "No model file at")
    (fitted / "empty_dir").mkdir()
    assert_clean_error(score(fitted, "empty_dir/"), 5, "is a directory, not an adpipe model")
    assert_clean_error(score(fitted, "data.csv"), 5, "not an adpipe model file")
    assert_clean_error(score(fitted, "nosuchmodel"), 5, "No model named 'nosuchmodel'")
    assert_clean_error(run_cli("score", "config=blob.yaml", cwd=fitted), 2, "No model given", "model=REF")
    assert no_outputs(fitted)


def test_edited_model_file(fitted):
    path = fitted / "blob.adpipe"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert_clean_error(score(fitted, "blob.adpipe"), 5, "damaged or was edited", "checksum")
    assert no_outputs(fitted)


def test_model_from_a_newer_adpipe(fitted):
    from adpipe.core import modelfile

    path = fitted / "blob.adpipe"
    mf = modelfile.read(path)
    modelfile.write(path, {**mf.metadata, "adpipe_version": "42.0"}, mf.payload)
    assert_clean_error(score(fitted, "blob.adpipe"), 5, "adpipe 42.0 made it", "upgrade")


def test_foreign_model_needs_trust(fitted):
    env = {"ADPIPE_MODEL_KEY": "some-other-machine"}
    assert_clean_error(run_cli("score", "model=blob.adpipe", "config=blob.yaml", cwd=fitted, env=env), 5,
                       "signed with another key", "--trust")
    ok(run_cli("score", "model=blob.adpipe", "config=blob.yaml", "--trust", "-q", cwd=fitted, env=env))


def test_data_with_a_missing_column(fitted):
    pd.read_csv(fitted / "data.csv").drop(columns=["f1"]).to_csv(fitted / "data.csv", index=False)
    err = assert_clean_error(score(fitted, "blob.adpipe"), 3, "missing column 'f1'", "feature schema")
    assert "pickle" not in err
    assert no_outputs(fitted)


def test_promote_bad_input(fitted):
    ok(run_cli("fit", "config=blob.yaml", cwd=fitted))
    assert_clean_error(run_cli("models", "promote", "blob", "9", cwd=fitted), 5, "no version 9")
    assert_clean_error(run_cli("models", "promote", "blob", "1", "--stage", "latest", cwd=fitted), 5,
                       "cannot be a stage label")
    assert_clean_error(run_cli("models", "promote", "nope", "1", cwd=fitted), 5, "No model named 'nope'")
