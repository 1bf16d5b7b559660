"""The example pipelines in configs/ validate, run end to end and detect what they claim to.

Each example runs with its outputs redirected into ``tmp_path`` through Hydra
overrides (``sinks=[...]`` replaces the list, ``reject_sink.path=``,
``++summary.path=``), from a different working directory, so nothing is written
into the repository and relative paths are shown to resolve against the
config file's folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import adpipe
from adpipe.core import schema
from adpipe.core.config import load_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
DATA = CONFIGS / "data"

# name -> (data file, id columns, label, expected rows, expected rejected rows, file sink types in order)
EXAMPLES = {
    "fraud": ("transactions.csv", ["transaction_id", "timestamp", "customer_id", "amount", "merchant_category"],
              "is_fraud", 12_000, 6, ["parquet", "console"]),
    "manufacturing": ("sensors.csv", ["reading_id", "timestamp", "machine_id"], "is_fault", 10_000, 0, ["csv"]),
    "it_ops": ("server_metrics.csv", ["sample_id", "timestamp", "host"], "is_incident", 10_000, 0,
               ["jsonl", "parquet"]),
}
MIN_ROC_AUC = 0.75


def hydra_value(value) -> str:
    """A Python value in Hydra's override grammar (strings single-quoted)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(hydra_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def redirect_overrides(name: str, out: Path, summary: bool) -> list[str]:
    """Overrides sending every output of example ``name`` into ``out`` (same sink types and options)."""
    raw = load_config(CONFIGS / f"{name}.yaml").raw
    sinks = []
    for sink in raw["sinks"]:
        sink = dict(sink)
        if "path" in sink:
            sink["path"] = str(out / Path(sink["path"]).name)
        sinks.append(sink)
    overrides = [f"sinks={hydra_value(sinks)}"]
    if raw.get("reject_sink"):
        overrides.append(f"reject_sink.path={hydra_value(str(out / Path(raw['reject_sink']['path']).name))}")
    if summary:
        overrides.append(f"++summary.path={hydra_value(str(out / 'summary.json'))}")
    return overrides


def read_output(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".jsonl":
        return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines()])
    return pd.read_csv(path)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_config_validates(name):
    data, ids, label, *_ , sink_types = EXAMPLES[name]
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.name == name
    assert cfg.columns.label == label
    assert cfg.columns.id == ids
    assert cfg.source.type == "csv"
    # relative paths resolve against the config's folder, whatever the working directory
    assert cfg.source.params.path == DATA / data
    assert [s.type for s in cfg.sinks] == sink_types
    for sink in cfg.sinks:
        if hasattr(sink.params, "path"):
            assert sink.params.path.parent == CONFIGS / "out"
    assert cfg.threshold.type == "contamination"


@pytest.mark.parametrize("name, detector", [("fraud", "copod"), ("manufacturing", "ecod"), ("it_ops", "hbos")])
def test_example_detector_swaps_cleanly(name, detector):
    """The examples keep detector parameters in the defaults list, so `detector=X` swaps it whole."""
    cfg = load_config(CONFIGS / f"{name}.yaml", [f"detector={detector}"])
    assert cfg.detector.type == detector


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_end_to_end(name, tmp_path, monkeypatch):
    data, ids, label, rows, rejected, sink_types = EXAMPLES[name]
    out = tmp_path / "out"
    explicit_summary = name == "it_ops"  # the others leave it beside their first file sink
    monkeypatch.chdir(tmp_path)  # not the config's folder: paths must still resolve
    pipe = adpipe.Pipeline.from_config(CONFIGS / f"{name}.yaml", overrides=redirect_overrides(name, out, explicit_summary))
    summary = pipe.run(write_summary=True)

    assert summary.status == "succeeded"
    assert summary.rows_in == rows
    assert summary.rows_in == summary.rows_scored + summary.rows_rejected
    assert summary.rows_rejected == rejected
    assert 0 < summary.anomalies < 0.05 * summary.rows_scored

    # every file sink wrote every scored row, with the key columns and the DESIGN.md result columns
    files = [Path(p) for p in summary.outputs]
    assert [f.suffix.lstrip(".") for f in files] == [t for t in sink_types if t != "console"]
    assert all(f.parent == out for f in files)
    frames = [read_output(f) for f in files]
    result = frames[0]
    assert list(result.columns) == [*ids, *schema.RESULT_COLUMNS]
    for other in frames[1:]:
        assert len(other) == len(result)
        assert list(other.columns) == list(result.columns)
    assert len(result) == summary.rows_scored
    assert result[schema.PROBABILITY].between(0, 1).all()
    assert set(result[schema.LABEL].unique()) == {0, 1}
    assert int(result[schema.LABEL].sum()) == summary.anomalies
    assert set(result[schema.SEVERITY]) <= set(schema.SEVERITIES)
    assert (result.loc[result[schema.LABEL] == 0, schema.SEVERITY] == "none").all()
    assert (result[schema.MODEL_VERSION] == summary.model_version).all()
    assert (result[schema.RUN_ID] == summary.run_id).all()

    # the summary JSON exists where expected and agrees with the returned summary
    expected = out / ("summary.json" if explicit_summary else files[0].name.split(".")[0] + ".summary.json")
    assert summary.summary_path == str(expected) and expected.is_file()
    saved = json.loads(expected.read_text())
    for key in ("rows_in", "rows_scored", "rows_rejected", "anomalies", "run_id"):
        assert saved[key] == getattr(summary, key)

    # the detector finds the labelled anomalies, and the summary's ROC-AUC is the one on the output
    assert summary.metrics["roc_auc"] > MIN_ROC_AUC, summary.metrics
    truth = pd.read_csv(DATA / data)
    key = ids[0]
    joined = result[[key, schema.SCORE]].merge(truth[[key, label]], on=key, validate="one_to_one")
    assert len(joined) == summary.rows_scored
    assert roc_auc_score(joined[label], joined[schema.SCORE]) == pytest.approx(summary.metrics["roc_auc"])

    if rejected:
        rejects = pd.read_csv(out / "fraud_rejected.csv")
        assert len(rejects) == rejected
        assert rejects[schema.REJECT_REASON].str.contains("distance_from_home_km").all()
        assert set(rejects[key]).isdisjoint(result[key])
    assert not list(tmp_path.glob("**/.*.tmp-*"))  # no temp files left behind


def test_example_data_is_reproducible(tmp_path):
    """scripts/make_example_data.py regenerates configs/data/ byte for byte, at the documented sizes and rates."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_example_data", REPO / "scripts" / "make_example_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--out", str(tmp_path)])
    for name, (data, _, label, rows, *_) in EXAMPLES.items():
        fresh = tmp_path / data
        assert fresh.read_bytes() == (DATA / data).read_bytes(), f"{data} is stale: rerun the script"
        frame = pd.read_csv(fresh)
        assert len(frame) == rows
        assert 0.01 <= frame[label].mean() <= 0.03
        assert fresh.stat().st_size < 1.5e6
        assert np.isin(frame[label].unique(), [0, 1]).all()
