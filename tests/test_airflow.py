"""Airflow provider: the task logic in-process, and real Airflow 3 DAG runs (``dag.test()``) in a subprocess
with a temporary AIRFLOW_HOME and a migrated SQLite metadata database."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_yaml

import adpipe
from adpipe.integrations.airflow import anomalies_found, tasks
from adpipe.integrations.airflow.plugin import AirflowProvider
from adpipe.integrations.airflow.provider import get_provider_info

HERE = Path(__file__).parent
EXAMPLES = Path(adpipe.__file__).parent / "integrations" / "airflow" / "example_dags"
FEATURES = ["amount", "items", "hour", "distance_km", "card_age_days"]
needs_airflow = pytest.mark.skipif(importlib.util.find_spec("airflow") is None, reason="needs apache-airflow")


def payments(n: int, day: str, anomalies: int = 0, seed: int = 0) -> pd.DataFrame:
    """One day of card payments; the last ``anomalies`` rows are gross outliers."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "payment_id": [f"{day}-{i:05d}" for i in range(n)],
        "merchant_id": rng.integers(1, 50, n).astype(str),
        "amount": rng.lognormal(3.5, 0.5, n),
        "items": rng.poisson(3, n).astype(float),
        "hour": rng.integers(8, 22, n).astype(float),
        "distance_km": rng.exponential(5, n),
        "card_age_days": rng.uniform(100, 3000, n),
    })
    if anomalies:
        bad = df.index[-anomalies:]
        df.loc[bad, "amount"] *= 60
        df.loc[bad, "distance_km"] = rng.uniform(3000, 9000, anomalies)
        df.loc[bad, "hour"] = 3.0
        df.loc[bad, "card_age_days"] = 1.0
    return df


def write_partition(root: Path, day: str, df: pd.DataFrame) -> Path:
    folder = root / "events" / f"ds={day}"
    folder.mkdir(parents=True, exist_ok=True)
    df.to_parquet(folder / "part-0.parquet", index=False)
    return folder


# --------------------------------------------------------------------------- the task logic, no Airflow
@pytest.fixture
def lake(tmp_path: Path) -> Path:
    for i, day in enumerate(["2026-11-16", "2026-11-17", "2026-11-18"]):
        write_partition(tmp_path, day, payments(800, day, seed=i))
    return tmp_path


def test_override_args_from_mapping_and_list():
    assert tasks.override_args({"threshold.contamination": 0.05, "detector.n_estimators": 50,
                                "validation.on_invalid": "drop", "columns.features": ["a", "b"],
                                "engine.progress": False, "x.y": None}) == [
        "threshold.contamination=0.05", "detector.n_estimators=50", "validation.on_invalid='drop'",
        "columns.features=['a','b']", "engine.progress=false", "x.y=null"]
    assert tasks.override_args(["threshold.contamination=0.05"]) == ["threshold.contamination=0.05"]
    assert tasks.override_args(None) == []
    with pytest.raises(adpipe.ConfigError, match="not of the form key=value"):
        tasks.override_args(["threshold.contamination"])
    with pytest.raises(adpipe.ConfigError, match="list of 'key=value' strings or a mapping"):
        tasks.override_args("threshold.contamination=0.05")


def test_mapping_overrides_reach_the_config(lake):
    cfg = tasks.load_task_config(EXAMPLES / "payments.yaml", {"threshold.contamination": 0.05,
                                                               "detector.n_estimators": 30, "name": "it's odd"},
                                 input_path=str(lake / "events"), output_path=str(lake / "o.parquet"))
    assert cfg.threshold.params.contamination == 0.05
    assert cfg.detector.params.n_estimators == 30
    assert cfg.name == "it's odd"
    assert Path(cfg.source.params.path) == lake / "events"
    assert Path(cfg.sinks[0].params.path) == lake / "o.parquet"


def test_input_and_output_paths_resolve_like_config_paths(tmp_path):
    config = write_yaml(tmp_path / "cfg" / "p.yaml", {
        "columns": {"features": ["x"]}, "source": {"type": "csv", "path": "in.csv"},
        "fit": {"source": {"type": "csv", "path": "train.csv"}},
        "detector": {"type": "iforest"},
        "sinks": [{"type": "console"}, {"type": "csv", "path": "a.csv"}, {"type": "csv", "path": "b.csv"}]})
    cfg = tasks.load_task_config(config, input_path="day.csv", output_path="out/day.csv")
    assert Path(cfg.source.params.path) == tmp_path / "cfg" / "day.csv"
    assert Path(cfg.fit_source.params.path) == tmp_path / "cfg" / "train.csv"  # run mode: the source only
    assert [Path(s.params.path).name for s in cfg.sinks[1:]] == ["day.csv", "b.csv"]  # first file sink only
    fit = tasks.load_task_config(config, input_path="history.csv", mode="fit")
    assert Path(fit.fit_source.params.path).name == "history.csv"  # fit mode: what the fit reads
    assert Path(fit.source.params.path).name == "in.csv"


def test_input_output_paths_need_somewhere_to_go(tmp_path):
    config = write_yaml(tmp_path / "p.yaml", {
        "columns": {"features": ["x"]}, "detector": {"type": "iforest"},
        "source": {"type": "sql", "url": "sqlite:///x.db", "query": "select 1"},
        "sinks": [{"type": "console"}]})
    with pytest.raises(adpipe.ConfigError, match="sets source.path, and the 'sql' source has no path"):
        tasks.load_task_config(config, input_path="x.csv")
    with pytest.raises(adpipe.ConfigError, match="needs a sink with a path"):
        tasks.load_task_config(config, output_path="x.csv")
    with pytest.raises(adpipe.ConfigError, match="Config file not found"):
        tasks.load_task_config(tmp_path / "missing.yaml")


def test_execute_run_fit_score_summaries(lake):
    config = EXAMPLES / "payments.yaml"
    fit = tasks.execute("fit", config, input_path=str(lake / "events"), promote_to="production")
    assert fit["model"] == "payments@1" and fit["stage"] == "production"
    assert fit["rows_trained"] == 3 * 800 and fit["model_version"].startswith("payments-")
    assert adpipe.ModelStore().resolve("payments@production").version == 1

    write_partition(lake, "2026-11-20", payments(800, "2026-11-20", anomalies=40, seed=9))  # the next day

    out = lake / "scores" / "ds=2026-11-20" / "scores.parquet"
    day = lake / "events" / "ds=2026-11-20"
    score = tasks.execute("score", config, model="payments@production", input_path=str(day), output_path=str(out))
    assert score["mode"] == "score" and score["model"] == "payments@production"
    assert score["model_version"] == fit["model"] == "payments@1"  # the version that scored, resolved
    assert score["status"] == "succeeded"
    assert score["rows_in"] == score["rows_scored"] == 800 and score["rows_rejected"] == 0
    results = pd.read_parquet(out)
    assert score["outputs"] == [str(out)] and len(results) == 800
    assert score["anomalies"] == int(results["is_anomaly"].sum()) >= 40
    flagged = set(results.loc[results["is_anomaly"] == 1, "payment_id"])
    assert flagged >= {f"2026-11-20-{i:05d}" for i in range(760, 800)}
    # the XCom is a small plain-JSON summary, never rows
    assert json.loads(json.dumps(score)) == score and len(json.dumps(score)) < 2000

    model = adpipe.load_model("payments@production")
    expected = model.score(pd.read_parquet(day))
    assert np.allclose(results["anomaly_score"].to_numpy(), expected["anomaly_score"].to_numpy(), atol=1e-12)

    run = tasks.execute("run", config, input_path=str(lake / "events" / "ds=2026-11-20"),
                        output_path=str(lake / "run.parquet"), overrides=["threshold.contamination=0.05"])
    assert run["mode"] == "run" and run["rows_scored"] == 800 and run["anomalies"] >= 40
    assert Path(run["summary_path"]).is_file()


def test_execute_refuses_mismatched_arguments(lake):
    config = EXAMPLES / "payments.yaml"
    with pytest.raises(adpipe.ConfigError, match="mode must be one of run, fit, score"):
        tasks.execute("predict", config)
    with pytest.raises(adpipe.ConfigError, match="needs a model reference"):
        tasks.execute("score", config)
    with pytest.raises(adpipe.ConfigError, match="only for mode 'score'"):
        tasks.execute("run", config, model="payments@1")
    with pytest.raises(adpipe.ConfigError, match="promote_to is only for mode 'fit'"):
        tasks.execute("run", config, promote_to="production")
    with pytest.raises(adpipe.ModelNotFoundError):
        tasks.execute("score", config, model="payments@production", input_path=str(lake / "events"))


def test_which_errors_are_retried():
    assert not tasks.retryable(adpipe.ConfigError("bad key"))
    assert not tasks.retryable(adpipe.PluginError("no such plugin"))
    assert not tasks.retryable(adpipe.ModelIntegrityError("damaged"))
    assert not tasks.retryable(adpipe.ModelTrustError("unsigned"))
    assert tasks.retryable(adpipe.SourceError("partition not there yet"))
    assert tasks.retryable(adpipe.SinkError("database down"))
    assert tasks.retryable(adpipe.ModelNotFoundError("not fitted yet"))
    assert tasks.retryable(adpipe.DataError("empty"))


def test_anomalies_found():
    summary = {"anomalies": 12, "rows_scored": 1000, "anomaly_rate": 0.012}
    assert anomalies_found(summary) and anomalies_found(summary, 12) and not anomalies_found(summary, 13)
    assert anomalies_found(summary, 1, 0.01) and not anomalies_found(summary, 1, 0.02)
    assert not anomalies_found({"anomalies": 0, "anomaly_rate": 0.0})
    for bad in (None, {"mode": "fit", "model": "payments@1"}, "12"):
        with pytest.raises(ValueError, match="not an adpipe run or score summary"):
            anomalies_found(bad)


def test_provider_info_and_plugin_registration():
    info = get_provider_info()
    assert info["package-name"] == "adpipe" and info["versions"] == [adpipe.__version__]
    assert info["operators"][0]["python-modules"] == ["adpipe.integrations.airflow.operators"]
    plugin = adpipe.get_registry().get("integration", "airflow")
    assert plugin is AirflowProvider and plugin.summary().startswith("Airflow provider")
    assert (Path(AirflowProvider.example_dags()) / "adpipe_example.py").is_file()
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("adpipe.")]
    assert ep.load() is get_provider_info


# --------------------------------------------------------------------------- real Airflow
class Hook(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def webhook():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    srv.received = []
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory, webhook) -> dict:
    """AIRFLOW_HOME with a migrated SQLite database, a dags folder and the example's data lake, made once."""
    root = tmp_path_factory.mktemp("airflow")
    dags = root / "dags"
    dags.mkdir()
    shutil.copy(EXAMPLES / "adpipe_example.py", dags)
    shutil.copy(EXAMPLES / "payments.yaml", dags)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "HTTP_PROXY", "http_proxy"))}
    env.update({
        "AIRFLOW_HOME": str(root / "home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{root / 'home' / 'airflow.db'}",
        "ADPIPE_HOME": str(root / "adpipe_home"),
        "ADPIPE_STORE": str(root / "adpipe_home" / "models"),
        "AIRFLOW_VAR_ADPIPE_DATA": str(root / "lake"),
        "AIRFLOW_VAR_ADPIPE_STORE": str(root / "store"),
        "AIRFLOW_VAR_ADPIPE_ALERT_WEBHOOK": f"http://127.0.0.1:{webhook.server_port}/alerts",
        "NO_PROXY": "127.0.0.1,localhost",
        "PYTHONPATH": os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")]),
    })
    migrate = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True,
                             text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    return {"env": env, "root": root, "dags": dags, "lake": root / "lake", "store": root / "store"}


def run_dags(airflow_env: dict, dag_file: Path, runs: list[dict]) -> tuple[list[dict], str]:
    proc = subprocess.run([sys.executable, str(HERE / "airflow_harness.py"), str(dag_file), json.dumps(runs)],
                          env=airflow_env["env"], capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    results = [json.loads(line.split(" ", 1)[1]) for line in proc.stdout.splitlines()
               if line.startswith("HARNESS-RESULT ")]
    assert proc.returncode == 0 and len(results) == len(runs), log[-5000:]
    return results, log


@pytest.fixture(scope="module")
def example_runs(airflow_env):
    """The example DAGs end to end: the weekly fit, then a normal day and a day with 60 fraudulent payments."""
    lake = airflow_env["lake"]
    for i, day in enumerate(["2026-11-16", "2026-11-17", "2026-11-18"]):
        write_partition(lake, day, payments(1000, day, seed=i))
    dag_file = airflow_env["dags"] / "adpipe_example.py"
    (fit,), fit_log = run_dags(airflow_env, dag_file, [{"dag_id": "adpipe_weekly_fit", "date": "2026-11-16"}])
    write_partition(lake, "2026-11-19", payments(1000, "2026-11-19", seed=5))  # the days after the fit
    write_partition(lake, "2026-11-20", payments(1000, "2026-11-20", anomalies=60, seed=6))
    scores, log = run_dags(airflow_env, dag_file, [{"dag_id": "adpipe_daily_score", "date": "2026-11-19"},
                                                   {"dag_id": "adpipe_daily_score", "date": "2026-11-20"}])
    return [fit, *scores], fit_log + log


@needs_airflow
def test_example_weekly_fit_promotes_a_model(example_runs, airflow_env):
    (fit, _, _), _ = example_runs
    assert fit["state"] == "success" and fit["tasks"] == {"fit": "success"}
    summary = fit["xcom"]["fit"]
    assert summary["mode"] == "fit" and summary["model"] == "payments@1" and summary["stage"] == "production"
    assert summary["rows_trained"] == 3000
    assert Path(summary["model_path"]).is_relative_to(airflow_env["store"])  # the adpipe_store Variable


@needs_airflow
def test_example_daily_score_branches_on_anomalies(example_runs, airflow_env, webhook):
    (fit, normal, bad), log = example_runs
    lake = airflow_env["lake"]
    assert normal["state"] == bad["state"] == "success"
    assert normal["tasks"] == {"score": "success", "anomalies_found": "success", "alert": "skipped",
                               "all_clear": "success"}
    assert bad["tasks"] == {"score": "success", "anomalies_found": "success", "alert": "success",
                            "all_clear": "skipped"}
    for day, run in (("2026-11-19", normal), ("2026-11-20", bad)):
        summary = run["xcom"]["score"]
        out = lake / "scores" / f"ds={day}" / "scores.parquet"  # {{ ds }} rendered in output_path
        assert summary["outputs"] == [str(out)] and summary["rows_scored"] == 1000
        assert summary["model"] == "payments@production"
        assert summary["model_version"] == fit["xcom"]["fit"]["model"] == "payments@1"
        results = pd.read_parquet(out)
        assert len(results) == 1000 and summary["anomalies"] == int(results["is_anomaly"].sum())
        assert set(results["payment_id"].str[:10]) == {day}
    assert normal["xcom"]["score"]["anomalies"] < 25 <= bad["xcom"]["score"]["anomalies"]
    flagged = pd.read_parquet(lake / "scores" / "ds=2026-11-20" / "scores.parquet").query("is_anomaly == 1")
    assert set(flagged["payment_id"]) >= {f"2026-11-20-{i:05d}" for i in range(940, 1000)}
    # the alert went to the webhook, once, for the bad day only
    assert len(webhook.received) == 1
    text = webhook.received[0]["text"]
    assert f"{bad['xcom']['score']['anomalies']:,} of 1,000 payments flagged on 2026-11-20" in text
    assert bad["xcom"]["alert"] == text and webhook.received[0]["summary"] == bad["xcom"]["score"]
    assert "adpipe score summary" in log


BROKEN_DAG = '''
from datetime import datetime, timedelta
from airflow.sdk import DAG
from adpipe.integrations.airflow import AdpipeRunOperator, AdpipeScoreOperator

with DAG("adpipe_failures", schedule=None, start_date=datetime(2026, 1, 1),
         default_args={"retries": 2, "retry_delay": timedelta(seconds=0)}) as dag:
    AdpipeRunOperator(task_id="broken_config", config="CONFIG", overrides={"detector.n_estimators": "many"})
    AdpipeRunOperator(task_id="missing_partition", config="CONFIG", input_path="/nonexistent/{{ ds }}")
    AdpipeScoreOperator(task_id="no_model_yet", config="CONFIG", model="nosuchmodel@production")
'''


@needs_airflow
def test_adpipe_errors_fail_the_task_with_the_adpipe_message(airflow_env):
    dag_file = airflow_env["dags"] / "adpipe_failures.py"
    dag_file.write_text(BROKEN_DAG.replace("CONFIG", str(airflow_env["dags"] / "payments.yaml")))
    (run,), log = run_dags(airflow_env, dag_file, [{"dag_id": "adpipe_failures", "date": "2026-11-20"}])
    assert run["state"] == "failed"
    assert run["tasks"] == {"broken_config": "failed", "missing_partition": "failed", "no_model_yet": "failed"}
    # a broken config cannot get better: no retries; a missing partition or model may: retried as usual
    assert run["tries"] == {"broken_config": 1, "missing_partition": 3, "no_model_yet": 3}
    assert run["xcom"] == {}
    assert "adpipe run failed: ConfigError:" in log and "detector.n_estimators" in log
    assert "(not retried: a retry cannot fix this)" in log
    assert "adpipe run failed: SourceError:" in log and "/nonexistent/2026-11-20" in log
    assert "adpipe score failed: ModelNotFoundError:" in log and "nosuchmodel" in log


@needs_airflow
def test_airflow_lists_the_provider(airflow_env):
    env = airflow_env["env"]
    got = subprocess.run([sys.executable, "-m", "airflow", "providers", "get", "adpipe", "-o", "json"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr[-2000:]
    (info,) = json.loads(got.stdout[got.stdout.index("["):])
    assert info == {"Provider": "adpipe", "Version": adpipe.__version__}
    listed = subprocess.run([sys.executable, "-m", "airflow", "providers", "list", "-o", "json"], env=env,
                            capture_output=True, text=True, timeout=120)
    providers = {p["package_name"]: p for p in json.loads(listed.stdout[listed.stdout.index("["):])}
    assert providers["adpipe"]["version"] == adpipe.__version__
    assert "run, fit and score operators" in providers["adpipe"]["description"]


LIGHT = '''
import sys
from adpipe.integrations.airflow import AdpipeFitOperator, AdpipeScoreOperator, AdpipeBranchOperator
ops = [AdpipeScoreOperator(task_id="s", config="/nowhere/{{ ds }}.yaml", model="m@production",
                           input_path="/in/{{ ds }}", output_path="/out/{{ ds }}.parquet",
                           overrides={"threshold.contamination": "{{ params.c }}"}),
       AdpipeFitOperator(task_id="f", config="/nowhere.yaml", promote_to="production"),
       AdpipeBranchOperator(task_id="b", summary_task_id="s", if_anomalies="x", min_anomalies="{{ params.n }}")]
try:
    AdpipeScoreOperator(task_id="bad", config="c.yaml", mode="predict")
except ValueError as exc:
    print("BAD-MODE", exc)
heavy = [m for m in ("adpipe.core.engine", "adpipe.core.config", "sklearn", "pyod", "hydra") if m in sys.modules]
print("HEAVY", heavy)
print("FIELDS", sorted(ops[0].template_fields), ops[0].mode, ops[1].mode)
'''


@needs_airflow
def test_operators_construct_without_io_or_heavy_imports(airflow_env, tmp_path):
    script = tmp_path / "light.py"
    script.write_text(LIGHT)
    proc = subprocess.run([sys.executable, str(script)], env=airflow_env["env"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "HEAVY []" in out
    assert "BAD-MODE mode must be one of run, fit, score, got 'predict'" in out
    assert ("FIELDS ['config', 'input_path', 'model', 'output_path', 'overrides', 'promote_to', 'store'] "
            "score fit") in out
