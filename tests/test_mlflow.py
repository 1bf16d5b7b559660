"""MLflow integration against a real local tracking store (SQLite backend: it has the model registry).

One model is fitted and registered per module (MLflow's import and database set-up are slow); every
test points MLflow and adpipe at that module's store, key and artifacts, and resets MLflow after.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

mlflow = pytest.importorskip("mlflow")

from conftest import blob_frame, run_cli, write_yaml  # noqa: E402

from adpipe.core.engine import Pipeline  # noqa: E402
from adpipe.core.errors import ModelNotFoundError, ModelTrustError  # noqa: E402
from adpipe.core.model import load_model  # noqa: E402
from adpipe.integrations.mlflow import log_model, log_model_ref  # noqa: E402

# MLflow's own notices (no input example, stage deprecations, SQLAlchemy internals)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")


def _env(mp: pytest.MonkeyPatch, ns: SimpleNamespace) -> None:
    mp.setenv("ADPIPE_HOME", str(ns.home))
    mp.setenv("MLFLOW_TRACKING_URI", ns.uri)  # subprocesses see it too
    mp.setenv("MLFLOW_EXPERIMENT_ID", ns.experiment)
    for var in ("ADPIPE_MODEL_KEY", "ADPIPE_MODEL_TRUST"):
        mp.delenv(var, raising=False)
    mlflow.set_tracking_uri(ns.uri)


def _reset() -> None:
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A fitted model logged and registered as version 1 of a fresh registered model."""
    root = tmp_path_factory.mktemp("mlflow")
    ns = SimpleNamespace(root=root, home=root / "home", uri=f"sqlite:///{root}/mlflow.db", experiment="")
    with pytest.MonkeyPatch.context() as mp:
        mlflow.set_tracking_uri(ns.uri)
        ns.experiment = mlflow.create_experiment("adpipe-tests", artifact_location=(root / "artifacts").as_uri())
        _env(mp, ns)
        ns.frame = blob_frame(200, 3, 10, with_id=True, with_label=True)
        ns.model = Pipeline.from_dict({"detector": {"type": "iforest", "n_estimators": 50, "random_state": 0},
                                       "columns": {"id": ["id"], "label": "label"}}).fit(ns.frame)
        ns.name = f"adpipe_test_{uuid.uuid4().hex[:8]}"
        with mlflow.start_run() as run:  # an active run: log_model uses it and leaves it open
            ns.info = log_model(ns.model, registered_model_name=ns.name)
            assert mlflow.active_run().info.run_id == run.info.run_id
        ns.uri1 = f"models:/{ns.name}/1"
        ns.expected = ns.model.score(ns.frame)
        _reset()
        yield ns
    _reset()


@pytest.fixture(autouse=True)
def mlflow_env(logged, monkeypatch):
    _env(monkeypatch, logged)
    yield
    _reset()


def test_logged_run_has_params_metrics_and_registry_version(logged):
    assert logged.info.run_id and int(logged.info.registered_model_version) == 1
    run = mlflow.get_run(logged.info.run_id)
    assert run.data.tags["adpipe.model_version"] == logged.model.model_version
    assert "adpipe.detector" not in run.data.params  # the caller's run: its params are left alone
    assert "roc_auc" in run.data.metrics
    logged_model = mlflow.get_logged_model(logged.info.model_id)
    assert logged_model.params["adpipe.detector"] == "iforest"
    assert logged_model.params["adpipe.model_version"] == logged.model.model_version


def test_pyfunc_predict_matches_score(logged):
    pred = mlflow.pyfunc.load_model(logged.uri1).predict(logged.frame)
    pd.testing.assert_frame_equal(pred.reset_index(drop=True), logged.expected.reset_index(drop=True))


def test_load_model_from_registry_scores_identically(logged):
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(logged.name, "champion", 1)
    for uri in (logged.uri1, f"models:/{logged.name}@champion", f"runs:/{logged.info.run_id}/model"):
        model = load_model(uri)
        assert model.model_version == uri
        got = model.score(logged.frame)
        assert (got["model_version"] == uri).all()
        pd.testing.assert_frame_equal(got.drop(columns="model_version"),
                                      logged.expected.drop(columns="model_version"))


def test_signature_inputs_are_features_and_ids(logged):
    sig = mlflow.models.get_model_info(logged.uri1).signature
    assert sig.inputs.input_names() == ["id", "f0", "f1", "f2"]
    assert set(sig.inputs.input_names()) == set(logged.model.feature_columns) | set(logged.model.id_columns)
    types = {c.name: c.type.name for c in sig.inputs.inputs}
    assert types == {"id": "long", "f0": "double", "f1": "double", "f2": "double"}
    assert "anomaly_score" in sig.outputs.input_names()


def test_log_stored_model_makes_version_2_with_the_same_file(logged, tmp_path):
    from adpipe.core.store import ModelStore

    stored = ModelStore(tmp_path / "store").add(logged.model)
    out = log_model_ref(stored.ref, store=tmp_path / "store", registered_model_name=logged.name)
    assert out["registered_model"] == logged.name and out["version"] == 2
    assert out["model_uri"] == f"models:/{logged.name}/2" and out["run_id"]
    run = mlflow.get_run(out["run_id"])  # a run of its own: ended, with the model's params
    assert run.info.status == "FINISHED" and run.data.params["adpipe.detector"] == "iforest"
    local = mlflow.artifacts.download_artifacts(artifact_uri=out["model_uri"], dst_path=str(tmp_path / "dl"))
    uploaded = next(p for p in (tmp_path / "dl").rglob("*.adpipe"))
    assert local and uploaded.read_bytes() == stored.path.read_bytes()  # uploaded as is, not re-saved
    got = load_model(out["model_uri"]).score(logged.frame)
    np.testing.assert_array_equal(got["anomaly_score"], logged.expected["anomaly_score"])


def test_unknown_model_or_version_is_model_not_found(logged):
    for uri in (f"models:/no_such_model_{uuid.uuid4().hex[:8]}/1", f"models:/{logged.name}/999",
                f"models:/{logged.name}@no_such_alias"):
        with pytest.raises(ModelNotFoundError, match="MLflow has no model"):
            load_model(uri)


def test_model_signed_with_another_key_is_refused(logged, monkeypatch):
    monkeypatch.setenv("ADPIPE_MODEL_KEY", "not-the-key-it-was-signed-with")
    with pytest.raises(ModelTrustError) as err:
        load_model(logged.uri1)
    assert logged.uri1 in str(err.value)  # names the registry URI, not the temporary download
    model = load_model(logged.uri1, trusted=True)  # an explicit choice still loads it
    assert model.model_version == logged.uri1


def test_cli_scores_a_registry_model(logged, tmp_path):
    logged.frame.to_csv(tmp_path / "data.csv", index=False)
    write_yaml(tmp_path / "score.yaml", {"source": {"type": "csv", "path": "data.csv"},
                                         "sinks": [{"type": "csv", "path": "out/scores.csv"}]})
    env = {"MLFLOW_TRACKING_URI": logged.uri, "ADPIPE_HOME": str(logged.home)}
    proc = run_cli("score", f"model={logged.uri1}", f"config={tmp_path / 'score.yaml'}", "--quiet",
                   cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    got = pd.read_csv(tmp_path / "out/scores.csv").sort_values("id").reset_index(drop=True)
    want = logged.expected.sort_values("id").reset_index(drop=True)
    np.testing.assert_array_equal(got["id"], want["id"])
    np.testing.assert_allclose(got["anomaly_score"], want["anomaly_score"], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(got["is_anomaly"], want["is_anomaly"])
    assert (got["model_version"] == logged.uri1).all()


def test_missing_mlflow_is_a_plugin_error_with_install_hint(monkeypatch):
    from adpipe.core.errors import PluginError
    from adpipe.integrations.mlflow.plugin import MlflowRegistry

    monkeypatch.setattr(MlflowRegistry, "requires", ("mlflow_is_not_installed",))
    with pytest.raises(PluginError, match=r"pip install 'adpipe\[mlflow\]'"):
        load_model("models:/anything/1")


def test_plugin_module_does_not_import_mlflow():
    code = ("import sys, adpipe.integrations.mlflow.plugin as p; from adpipe.core.registry import Registry; "
            "r = Registry(); r.register_module(p); assert ('integration', 'mlflow') in r; "
            "assert 'mlflow' not in sys.modules, 'mlflow was imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_cli_registers_a_stored_model(logged, tmp_path):
    from adpipe.core.store import ModelStore

    store = tmp_path / "store"
    ModelStore(store).add(logged.model)
    env = {"MLFLOW_TRACKING_URI": logged.uri, "ADPIPE_HOME": str(logged.home), "ADPIPE_STORE": str(store),
           "MLFLOW_EXPERIMENT_ID": logged.experiment}
    proc = run_cli("models", "register", "pipeline@1", "--as", logged.name, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    version = mlflow.MlflowClient().get_latest_versions(logged.name)[-1].version  # this test's own version
    assert f"models:/{logged.name}/{version}" in proc.stdout
    got = mlflow.pyfunc.load_model(f"models:/{logged.name}/{version}").predict(logged.frame)
    np.testing.assert_array_equal(got["anomaly_score"], logged.expected["anomaly_score"])
