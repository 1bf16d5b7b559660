"""Environment files (env=NAME / ADPIPE_ENV), ADPIPE_OVERRIDES and the documented precedence:

plugin defaults < config file (with its defaults list) < env file < ADPIPE_OVERRIDES < command line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import REPO, blob_frame, run_cli

from adpipe.core.cli import cli
from adpipe.core.config import load_config
from adpipe.core.errors import ConfigError

CONFIG = """\
name: shop
defaults:
  - detector: iforest          # adpipe's own group option
  - _self_
source: {type: csv, path: data.csv}
threshold: {type: contamination, contamination: 0.1}
sinks:
  - {type: csv, path: out/scores.csv}
"""
PROD = """\
defaults:
  - override /detector: lof
threshold: {contamination: 0.05}
sinks:
  - {type: jsonl, path: "out/${name}_prod.jsonl"}
"""
DEV = """\
threshold: {contamination: 0.2}
"""


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch):
    for var in ("ADPIPE_ENV", "ADPIPE_OVERRIDES"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    blob_frame(200).to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "pipe.yaml").write_text(CONFIG)
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "prod.yaml").write_text(PROD)
    (tmp_path / "env" / "dev.yaml").write_text(DEV)
    return tmp_path


def contamination(cfg) -> float:
    return cfg.threshold.params.contamination


# --------------------------------------------------------------------------- merging and precedence
def test_without_env_the_config_file_holds(folder):
    cfg = load_config(folder / "pipe.yaml")
    assert contamination(cfg) == 0.1 and cfg.detector.type == "iforest"
    assert [s.type for s in cfg.sinks] == ["csv"]


def test_env_file_is_merged_over_the_config(folder):
    cfg = load_config(folder / "pipe.yaml", ["env=prod"])
    assert contamination(cfg) == 0.05  # env file beats the config file
    assert cfg.threshold.type == "contamination"  # mappings merge key by key
    assert cfg.detector.type == "lof"  # `override /detector: lof` picks the group option
    assert [(s.type, s.params.path) for s in cfg.sinks] == [("jsonl", folder / "out" / "shop_prod.jsonl")]
    assert cfg.source.params.path == folder / "data.csv"  # untouched keys stay


def test_command_line_beats_env_file(folder):
    cfg = load_config(folder / "pipe.yaml", ["env=prod", "threshold.contamination=0.3", "detector=ecod"])
    assert contamination(cfg) == 0.3 and cfg.detector.type == "ecod"


def test_adpipe_overrides_beats_env_file_and_loses_to_command_line(folder, monkeypatch):
    monkeypatch.setenv("ADPIPE_OVERRIDES", "threshold.contamination=0.25 'sinks=[{type: csv, path: out/a b.csv}]'")
    cfg = load_config(folder / "pipe.yaml", ["env=prod"])
    assert contamination(cfg) == 0.25
    assert [s.params.path.name for s in cfg.sinks] == ["a b.csv"]  # shell quoting keeps the space
    cfg = load_config(folder / "pipe.yaml", ["env=prod", "threshold.contamination=0.3"])
    assert contamination(cfg) == 0.3


def test_adpipe_overrides_with_bad_quoting(folder, monkeypatch):
    monkeypatch.setenv("ADPIPE_OVERRIDES", "threshold.contamination='0.2")
    with pytest.raises(ConfigError, match="ADPIPE_OVERRIDES cannot be split"):
        load_config(folder / "pipe.yaml")


def test_adpipe_env_selects_and_env_argument_wins(folder, monkeypatch):
    monkeypatch.setenv("ADPIPE_ENV", "dev")
    assert contamination(load_config(folder / "pipe.yaml")) == 0.2
    assert contamination(load_config(folder / "pipe.yaml", ["env=prod"])) == 0.05
    assert contamination(load_config(folder / "pipe.yaml", ["env="])) == 0.1  # env= turns ADPIPE_ENV off


# --------------------------------------------------------------------------- bad env files
def test_unknown_env_lists_the_available_ones(folder):
    with pytest.raises(ConfigError) as err:
        load_config(folder / "pipe.yaml", ["env=staging"])
    assert "unknown env 'staging'" in err.value.message
    assert str(folder / "env" / "staging.yaml") in err.value.message
    assert err.value.hint == "available envs: dev, prod"


def test_unknown_env_without_env_folder(tmp_path):
    (tmp_path / "pipe.yaml").write_text(CONFIG)
    with pytest.raises(ConfigError, match="unknown env 'prod'") as err:
        load_config(tmp_path / "pipe.yaml", ["env=prod"])
    assert "create" in err.value.hint and str(tmp_path / "env") in err.value.hint


def test_env_name_cannot_leave_the_env_folder(folder):
    with pytest.raises(ConfigError, match="unknown env"):
        load_config(folder / "pipe.yaml", ["env=../pipe"])


def test_malformed_env_yaml_names_the_env_file(folder):
    (folder / "env" / "bad.yaml").write_text("threshold: {contamination: [0.1,\n")
    with pytest.raises(ConfigError) as err:
        load_config(folder / "pipe.yaml", ["env=bad"])
    assert err.value.message.startswith(f"{folder / 'env' / 'bad.yaml'}: cannot read the env file")
    assert "line 2" in err.value.message and err.value.hint == "check the YAML syntax"


def test_env_file_that_is_not_a_mapping(folder):
    (folder / "env" / "list.yaml").write_text("- threshold\n")
    with pytest.raises(ConfigError, match="an env file must be a mapping"):
        load_config(folder / "pipe.yaml", ["env=list"])


def test_invalid_value_from_env_file_names_the_file_path_and_value(folder):
    (folder / "env" / "strict.yaml").write_text("threshold: {contamination: 0.9}\n")
    with pytest.raises(ConfigError) as err:
        load_config(folder / "pipe.yaml", ["env=strict"])
    message = err.value.message
    assert message.startswith(f"{folder / 'env' / 'strict.yaml'}: threshold.contamination = 0.9")
    assert str(folder / "pipe.yaml") in message and "allowed: float > 0.0 < 0.5" in message


def test_invalid_value_from_command_line_or_adpipe_overrides_says_so(folder, monkeypatch):
    with pytest.raises(ConfigError) as err:
        load_config(folder / "pipe.yaml", ["env=dev", "threshold.contamination=0.7"])
    assert "threshold.contamination = 0.7" in err.value.message
    assert err.value.message.endswith("(set by a command-line override)")
    monkeypatch.setenv("ADPIPE_OVERRIDES", "detector.n_estimators=0")
    with pytest.raises(ConfigError) as err:
        load_config(folder / "pipe.yaml")
    assert "detector.n_estimators = 0" in err.value.message and "(set by ADPIPE_OVERRIDES)" in err.value.message


def test_group_override_in_env_needs_the_group_in_the_defaults_list(folder):
    (folder / "inline.yaml").write_text("detector: {type: iforest}\nsource: {type: csv, path: data.csv}\n")
    with pytest.raises(ConfigError) as err:
        load_config(folder / "inline.yaml", ["env=prod"])
    assert err.value.message.startswith(f"{folder / 'env' / 'prod.yaml'}: Could not override 'detector'")
    assert "defaults list" in err.value.hint


# --------------------------------------------------------------------------- the CLI
def test_config_command_prints_the_composed_config_and_sources(folder, monkeypatch):
    monkeypatch.setenv("ADPIPE_OVERRIDES", "++engine.batch_rows=50")
    runner = CliRunner()
    args = ["config", f"config={folder / 'pipe.yaml'}", "env=prod", "threshold.contamination=0.02"]
    shown = runner.invoke(cli, args)
    assert shown.exit_code == 0, shown.output
    assert "type: lof" in shown.output and "contamination: 0.02" in shown.output
    assert "batch_rows: 50" in shown.output and "shop_prod.jsonl" in shown.output
    sources = runner.invoke(cli, [*args, "--sources"])
    assert sources.exit_code == 0, sources.output
    rows = dict(line.split(None, 1) for line in sources.output.splitlines())
    assert rows["threshold.contamination"] == "command line"
    assert rows["threshold.type"] == str(folder / "pipe.yaml")
    assert rows["detector.type"] == rows["sinks"] == str(folder / "env" / "prod.yaml")
    assert rows["engine.batch_rows"] == "ADPIPE_OVERRIDES"
    assert rows["detector.n_neighbors"] == str(folder / "env" / "prod.yaml")  # from the group file it picked
    assert rows["detector.leaf_size"] == "default" and rows["calibration"] == "default"


def test_validate_command_with_env_error_exits_2(folder):
    result = CliRunner().invoke(cli, ["validate", f"config={folder / 'pipe.yaml'}", "env=nope"])
    assert result.exit_code != 0 and isinstance(result.exception, ConfigError)
    assert "available envs: dev, prod" in str(result.exception)


def test_example_prod_env_needs_its_secrets(tmp_path):
    env = {"ADPIPE_ENV": "prod", "ADPIPE_DATABASE_URL": "", "SLACK_WEBHOOK_URL": ""}
    proc = run_cli("config", f"config={REPO / 'configs' / 'fraud.yaml'}", cwd=tmp_path,
                   env={k: v for k, v in env.items() if v})
    assert proc.returncode == 2, proc.stderr
    assert "needs the environment variable ADPIPE_DATABASE_URL, which is not set" in proc.stderr
    assert str(REPO / "configs" / "env" / "prod.yaml") in proc.stderr
    secret = "postgresql+psycopg://adpipe:s3cret@db:5432/anomalies"
    proc = run_cli("config", f"config={REPO / 'configs' / 'fraud.yaml'}", cwd=tmp_path,
                   env={"ADPIPE_ENV": "prod", "ADPIPE_DATABASE_URL": secret,
                        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x", "ADPIPE_OUTPUT_DIR": "/srv"})
    assert proc.returncode == 0, proc.stderr
    assert "s3cret" not in proc.stdout and "hooks.slack.com" not in proc.stdout
    assert "table: fraud_scores" in proc.stdout and "path: /srv/fraud_rejected.parquet" in proc.stdout
    assert "type: slack" in proc.stdout


def test_fraud_example_runs_with_env_dev(tmp_path):
    """`adpipe run config=configs/fraud.yaml env=dev` end to end; ADPIPE_OUTPUT_DIR keeps outputs in tmp."""
    out = tmp_path / "out"
    proc = run_cli("run", f"config={REPO / 'configs' / 'fraud.yaml'}", "env=dev", "--json", cwd=tmp_path,
                   env={"ADPIPE_OUTPUT_DIR": str(out)}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["rows_in"] == 12_000 and summary["rows_rejected"] == 6
    scores = pd.read_parquet(out / "fraud_scores.parquet")
    assert len(scores) == 11_994 and scores["is_anomaly"].sum() == summary["anomalies"]
    assert len(pd.read_csv(out / "fraud_rejected.csv")) == 6
    assert sorted(p.name for p in out.iterdir()) == ["fraud_rejected.csv", "fraud_scores.parquet",
                                                     "fraud_scores.summary.json"]
    assert "anomalies in 11994 rows" in proc.stderr  # the dev env's console sink
