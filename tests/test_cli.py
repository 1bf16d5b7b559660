"""The command line end to end, in subprocesses: `python -m adpipe ...` with cwd=tmp_path."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import basic_config, blob_frame, files_under, run_cli, write_yaml

pytestmark = pytest.mark.slow


def assert_clean_error(proc, code: int, *fragments: str) -> str:
    """Non-zero documented exit code, one paragraph with a hint on stderr, no traceback."""
    err = proc.stderr
    assert proc.returncode == code, (proc.returncode, proc.stdout, err)
    assert "Traceback" not in err, err
    assert err.startswith("error ("), err
    assert "hint:" in err, err
    assert "\n\n" not in err.strip(), err  # one paragraph
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def no_outputs(folder) -> bool:
    return not (folder / "out").exists() or files_under(folder / "out") == []


# --------------------------------------------------------------------------- run
def test_run_writes_outputs_and_summary(project):
    proc = run_cli("run", "config=pipe.yaml", cwd=project)
    assert proc.returncode == 0, proc.stderr
    out = pd.read_csv(project / "out" / "scores.csv")
    assert len(out) == 300 and out["is_anomaly"].sum() == 30
    summary = json.loads((project / "out" / "scores.summary.json").read_text())
    assert summary["rows_in"] == summary["rows_scored"] == 300
    assert "rows in" in proc.stdout and "300" in proc.stdout
    assert files_under(project / "out") == ["scores.csv", "scores.summary.json"]


def test_run_with_overrides_and_json(project):
    proc = run_cli("run", "config=pipe.yaml", "detector=lof", "threshold.contamination=0.02", "+fit.sample_rows=200",
                   "sinks=[{type: csv, path: out/scores.csv}, {type: console}]", "--json", cwd=project)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["detector"] == "lof"  # stdout is pure JSON: the console sink prints on stderr
    assert "anomalies in 300 rows" in proc.stderr
    assert summary["training"]["rows"] == 200 and summary["rows_scored"] == 300
    assert 2 <= summary["anomalies"] <= 15
    assert json.loads((project / "out" / "scores.summary.json").read_text())["run_id"] == summary["run_id"]


def test_run_quiet_prints_nothing(project):
    proc = run_cli("run", "config=pipe.yaml", "--quiet", cwd=project)
    assert proc.returncode == 0 and proc.stdout == "", proc.stderr
    assert (project / "out" / "scores.csv").is_file()


def test_validate(project):
    proc = run_cli("validate", "config=pipe.yaml", "detector=ecod", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout and "ecod" in proc.stdout
    assert not (project / "out").exists()  # validating runs nothing


SECRET_PLUGIN = '''
import adpipe

class Webhook(adpipe.AlertChannel):
    """Posts alerts to a webhook (test double, never sends)."""
    name = "test_webhook"

    class Params(adpipe.Params):
        webhook_url: str = adpipe.Field(description="where to post")
        password: str = adpipe.Field(description="basic-auth password")
        channel: str = adpipe.Field("#alerts", description="channel name")

    def send(self, anomalies, context):
        pass

@adpipe.hookimpl
def adpipe_register(registry):
    registry.add(Webhook)
'''


def test_config_prints_the_composed_config_and_masks_secrets(project):
    (project / "adpt_cli_secrets.py").write_text(SECRET_PLUGIN)
    cfg = basic_config(alerts=[{"type": "test_webhook", "webhook_url": "${oc.env:ADPT_HOOK}",
                                "password": "hunter2-pw"}])
    cfg["sinks"].append({"type": "sql", "url": "postgresql://scott:tiger-pw@db.example/x", "table": "scores"})
    write_yaml(project / "secret.yaml", cfg)
    env = {"PYTHONPATH": str(project), "ADPIPE_PLUGINS": "adpt_cli_secrets",
           "ADPT_HOOK": "https://hooks.example.com/services/T000/B000/XYZsecret"}
    proc = run_cli("config", "config=secret.yaml", "detector.n_estimators=33", cwd=project, env=env)
    assert proc.returncode == 0, proc.stderr
    import yaml

    doc = yaml.safe_load(proc.stdout)
    assert doc["detector"]["type"] == "iforest" and doc["detector"]["n_estimators"] == 33
    assert doc["validation"]["on_invalid"] == "raise" and doc["engine"]["batch_rows"] == 100000  # defaults filled
    assert doc["alerts"][0]["channel"] == "#alerts"
    for secret in ("XYZsecret", "hunter2-pw", "tiger-pw"):
        assert secret not in proc.stdout, proc.stdout
    assert doc["alerts"][0]["password"] == "***" and doc["alerts"][0]["webhook_url"] == "***"


# --------------------------------------------------------------------------- plugins
def test_plugins_list(tmp_path):
    """Every kind is listed; a plugin module that fails to import is reported, the rest still load."""
    (tmp_path / "adpt_cli_broken.py").write_text("raise ImportError('needs the frobnicator')\n")
    proc = run_cli("plugins", "list", cwd=tmp_path,
                   env={"PYTHONPATH": str(tmp_path), "ADPIPE_PLUGINS": "adpt_cli_broken"})
    assert proc.returncode == 0, proc.stderr
    assert "failed to load adpt_cli_broken" in proc.stdout and "frobnicator" in proc.stdout
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    for kind, name in (("detector", "iforest"), ("source", "csv"), ("sink", "parquet"),
                       ("threshold", "contamination"), ("preprocessor", "onehot"), ("alert_channel", "log")):
        assert any(kind in ln and f" {name} " in ln for ln in lines), (kind, name)
    assert "Isolation Forest" in proc.stdout  # the summary line


def test_plugins_list_kind(tmp_path):
    proc = run_cli("plugins", "list", "--kind", "detector", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert " iforest " in proc.stdout and " lof " in proc.stdout and " ecod " in proc.stdout
    assert "standard_scaler" not in proc.stdout and "parquet" not in proc.stdout
    count = int(proc.stdout.strip().splitlines()[-1].split()[0])
    assert count >= 40


def test_plugins_show(tmp_path):
    proc = run_cli("plugins", "show", "iforest", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "iforest (detector)" in out and "parameters" in out
    row = next(ln for ln in out.splitlines() if " n_estimators " in ln)
    assert ">= 1" in row and "100" in row and "number of base estimators" in out.replace("\n", " ")
    assert "annotation=" not in out and "metadata=" not in out, "unreadable type description"


def test_plugins_show_unknown(tmp_path):
    proc = run_cli("plugins", "show", "iforrest", cwd=tmp_path)
    assert_clean_error(proc, 2, "iforrest", "did you mean 'iforest'")


def test_help_lists_exit_codes(tmp_path):
    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for word in ("run", "validate", "config", "plugins", "Exit codes"):
        assert word in proc.stdout


# --------------------------------------------------------------------------- errors
def test_misspelled_plugin(project):
    proc = run_cli("run", "config=pipe.yaml", "detector.type=iforrest", cwd=project)
    assert_clean_error(proc, 2, "pipe.yaml", "'iforrest'", "did you mean 'iforest'")
    assert no_outputs(project)


def test_out_of_range_parameter(project):
    proc = run_cli("run", "config=pipe.yaml", "detector.n_estimators=-5", cwd=project)
    assert_clean_error(proc, 2, "pipe.yaml", "detector.n_estimators", "-5", ">= 1")
    assert no_outputs(project)


def test_missing_data_file(project):
    (project / "data.csv").unlink()
    proc = run_cli("run", "config=pipe.yaml", cwd=project)
    assert_clean_error(proc, 6, "data.csv")
    assert no_outputs(project)


def test_text_in_a_numeric_column(project):
    frame = blob_frame(n=300, with_id=True)
    frame["f1"] = frame["f1"].astype(object)
    frame.loc[41, "f1"] = "twelve"
    frame.to_csv(project / "data.csv", index=False)
    proc = run_cli("run", "config=pipe.yaml", cwd=project)
    assert_clean_error(proc, 3, "'f1'", "'twelve'", "42")
    assert no_outputs(project)


def test_empty_file(project):
    (project / "data.csv").write_text("")
    proc = run_cli("run", "config=pipe.yaml", cwd=project)
    assert_clean_error(proc, 3, "data.csv", "empty")
    assert no_outputs(project)


def test_no_config_and_bad_override(project):
    assert_clean_error(run_cli("run", cwd=project), 2, "config=PATH")
    proc = run_cli("run", "config=pipe.yaml", "fit.sample_rows=10", cwd=project)
    assert_clean_error(proc, 2, "pipe.yaml")
    assert no_outputs(project)


def test_failed_run_keeps_the_previous_output(project):
    assert run_cli("run", "config=pipe.yaml", "-q", cwd=project).returncode == 0
    before = (project / "out" / "scores.csv").read_bytes()
    frame = blob_frame(n=300, with_id=True)
    frame.loc[299, "f0"] = np.inf
    frame.to_csv(project / "data.csv", index=False)
    proc = run_cli("--debug", "run", "config=pipe.yaml", "-q", cwd=project)
    assert proc.returncode == 3
    assert "Traceback" in proc.stderr and "DataError" in proc.stderr  # --debug shows the traceback
    assert (project / "out" / "scores.csv").read_bytes() == before
    assert files_under(project / "out") == ["scores.csv", "scores.summary.json"]
