"""Observability outside the HTTP service: JSON logs, OpenTelemetry spans per stage, pushed run metrics.

Spans are collected with the SDK's in-memory exporter; the Pushgateway is a real HTTP server on 127.0.0.1
recording what it receives; the CLI runs in subprocesses.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import blob_frame, run_cli, write_yaml
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client.parser import text_string_to_metric_families

from adpipe.core import tracing
from adpipe.core.cli import cli
from adpipe.core.engine import Pipeline
from adpipe.core.errors import ConfigError, DataError, SourceError
from adpipe.core.store import ModelStore


def config(tmp_path: Path, rows: int = 300, batch_rows: int = 100, **extra) -> Path:
    """data.csv (``rows`` rows: id, f0..f2, 10 outliers) and pipe.yaml scoring it in batches."""
    blob_frame(n=rows, with_id=True).to_csv(tmp_path / "data.csv", index=False)
    cfg = {"name": "blobs", "source": {"type": "csv", "path": "data.csv"},
           "detector": {"type": "iforest", "n_estimators": 30, "random_state": 0},
           "threshold": {"type": "contamination", "contamination": 0.05},
           "sinks": [{"type": "csv", "path": "out/scores.csv"}], "engine": {"batch_rows": batch_rows}, **extra}
    return write_yaml(tmp_path / "pipe.yaml", cfg)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- tracing
@pytest.fixture(scope="module")
def exporter():
    """An in-memory exporter on the global tracer provider (the SDK's own, or one set here)."""
    memory = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield memory
    memory.shutdown()  # later tests' spans are not kept


@pytest.fixture
def spans(exporter):
    exporter.clear()
    return exporter


def test_a_run_has_one_span_per_stage_call_under_its_run_span(tmp_path, spans):
    summary = Pipeline.from_config(config(tmp_path)).run()
    finished = spans.get_finished_spans()
    runs = [s for s in finished if s.name == "adpipe.run"]
    assert len(runs) == 1
    run = runs[0]
    assert run.parent is None and run.status.status_code == StatusCode.OK
    attrs = dict(run.attributes)
    assert attrs["adpipe.pipeline"] == "blobs" == summary.pipeline
    assert attrs["adpipe.run_id"] == summary.run_id
    assert attrs["adpipe.model_version"] == summary.model_version
    assert (attrs["adpipe.rows_in"], attrs["adpipe.rows_scored"], attrs["adpipe.anomalies"]) == \
        (summary.rows_in, summary.rows_scored, summary.anomalies) == (300, 300, summary.anomalies)
    stages = [s for s in finished if s is not run]
    assert stages and all(s.parent.span_id == run.context.span_id for s in stages)
    assert all(s.context.trace_id == run.context.trace_id for s in stages)
    timed = {name for name, seconds in summary.stage_seconds.items() if seconds > 0}
    assert {s.name for s in stages} == {f"adpipe.{name}" for name in timed}
    assert all(s.attributes["adpipe.stage"] == s.name.removeprefix("adpipe.") for s in stages)
    # validation runs once on the training rows, then once per scoring batch of 100
    validated = [s.attributes["adpipe.rows"] for s in stages if s.name == "adpipe.validate"]
    assert summary.batches == 3 and validated == [300, 100, 100, 100]


def test_a_failing_run_ends_its_span_with_error_status(tmp_path, spans):
    frame = blob_frame(with_id=True).astype({"f1": str})
    frame.loc[0, "f1"] = "twelve"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    path = config(tmp_path)
    with pytest.raises(DataError):
        Pipeline.from_config(path, ["source.path=bad.csv"]).run()
    run = next(s for s in spans.get_finished_spans() if s.name == "adpipe.run")
    assert run.status.status_code == StatusCode.ERROR
    assert "DataError" in run.status.description
    events = [e.attributes["exception.type"] for e in run.events if e.name == "exception"]
    assert events == ["adpipe.core.errors.DataError"]
    assert "adpipe.run_id" not in run.attributes  # the run never started scoring


def test_fit_has_its_own_span_with_the_model_version(tmp_path, spans):
    model = Pipeline.from_config(config(tmp_path)).fit()
    finished = spans.get_finished_spans()
    fit = next(s for s in finished if s.name == "adpipe.fit")
    assert fit.attributes["adpipe.model_version"] == model.model_version
    assert fit.attributes["adpipe.rows"] == model.training["rows"] == 300
    names = [s.name for s in finished if s.parent is not None and s.parent.span_id == fit.context.span_id]
    assert names[:2] == ["adpipe.read_training", "adpipe.validate"] and "adpipe.fit_detector" in names


def test_console_exporter_prints_spans_as_json_lines_on_stderr(tmp_path):
    config(tmp_path)
    r = run_cli("run", "config=pipe.yaml", "--json", cwd=tmp_path, env={"OTEL_TRACES_EXPORTER": "console"})
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)  # spans stay out of the command's output
    spans = [json.loads(line) for line in r.stderr.splitlines() if line.startswith('{"name"')]
    run = next(s for s in spans if s["name"] == "adpipe.run")
    assert run["attributes"]["adpipe.run_id"] == summary["run_id"]
    assert run["attributes"]["adpipe.rows_scored"] == summary["rows_scored"] == 300
    assert run["resource"]["attributes"]["service.name"] == "adpipe"
    stages = [s for s in spans if s is not run]
    assert {s["name"] for s in stages} >= {"adpipe.read", "adpipe.validate", "adpipe.fit_detector", "adpipe.write"}
    assert all(s["parent_id"] == run["context"]["span_id"] for s in stages)


def test_a_requested_exporter_without_the_sdk_is_a_config_error(tmp_path):
    config(tmp_path)
    code = "import sys; sys.modules['opentelemetry.sdk'] = None\nfrom adpipe.core.cli import main\nmain()"
    r = subprocess.run([sys.executable, "-c", code, "validate", "config=pipe.yaml"], cwd=tmp_path, text=True,
                       capture_output=True, timeout=120,
                       env={**__import__("os").environ, "OTEL_TRACES_EXPORTER": "otlp", "COLUMNS": "200"})
    assert r.returncode == 2
    assert "needs the OpenTelemetry SDK" in r.stderr and "pip install 'adpipe[otel]'" in r.stderr


@pytest.mark.parametrize("env, message", [
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, "unknown exporter 'zipkin'"),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "is not supported"),
])
def test_bad_otel_settings_are_config_errors(env, message, monkeypatch):
    monkeypatch.setattr(tracing, "enabled", lambda: False)  # as in a fresh process: no provider yet
    with pytest.raises(ConfigError, match=message):
        tracing.configure(env)


def test_no_exporter_leaves_tracing_off():
    assert tracing.configure({}) is False
    assert tracing.configure({"OTEL_TRACES_EXPORTER": "none"}) is False


# --------------------------------------------------------------------------- JSON logs
def test_json_logs_carry_timestamp_level_logger_and_run_fields(tmp_path):
    config(tmp_path)
    log_file = tmp_path / "logs" / "adpipe.jsonl"
    r = run_cli("--log-format", "json", "--log-file", str(log_file), "run", "config=pipe.yaml", "--json",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert records
    for rec in records:
        assert {"timestamp", "level", "logger", "message"} <= rec.keys()
        stamp = datetime.fromisoformat(rec["timestamp"])
        assert stamp.utcoffset() == timedelta(0)
    done = next(rec for rec in records if rec["message"].startswith("run of blobs finished"))
    assert done["level"] == "INFO" and done["logger"] == "adpipe.engine"
    assert (done["pipeline"], done["run_id"], done["model_version"]) == \
        ("blobs", summary["run_id"], summary["model_version"])
    assert (done["rows_in"], done["rows_scored"], done["anomalies"]) == \
        (summary["rows_in"], summary["rows_scored"], summary["anomalies"])


def test_json_logs_from_the_environment_on_stderr_and_a_failure_is_an_error_record(tmp_path):
    config(tmp_path)
    env = {"ADPIPE_LOG_FORMAT": "json"}
    ok = run_cli("run", "config=pipe.yaml", "-q", cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stderr
    lines = ok.stderr.splitlines()
    assert lines and all(json.loads(line)["pipeline"] == "blobs" for line in lines)  # nothing but JSON
    bad = run_cli("run", "config=pipe.yaml", "-q", "source.path=missing.csv", cwd=tmp_path, env=env)
    assert bad.returncode != 0
    records = [json.loads(line) for line in bad.stderr.splitlines() if line.startswith("{")]
    failed = next(rec for rec in records if rec["level"] == "ERROR")
    assert failed["logger"] == "adpipe.engine" and failed["status"] == "failed"
    assert failed["pipeline"] == "blobs" and failed["error_type"] == "SourceError"
    assert "failed after" in failed["message"] and "missing.csv" in failed["message"]


def test_text_logs_stay_the_default(tmp_path):
    config(tmp_path)
    r = run_cli("run", "config=pipe.yaml", "-q", cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == ""  # quiet as before: INFO lines only with --log-format json
    bad = run_cli("run", "config=pipe.yaml", "-q", "source.path=missing.csv", cwd=tmp_path)
    assert bad.returncode == 6 and bad.stderr.startswith("error (SourceError)")  # said once, by the CLI


def test_a_text_log_file_gets_the_failure(tmp_path):
    config(tmp_path)
    log_file = tmp_path / "adpipe.log"
    r = run_cli("--log-file", str(log_file), "run", "config=pipe.yaml", "source.path=missing.csv", cwd=tmp_path)
    assert r.returncode == 6 and "error (SourceError)" in r.stderr
    lines = log_file.read_text().splitlines()
    assert len(lines) == 1 and " ERROR adpipe.engine: run of blobs failed after " in lines[0]
    assert "SourceError: Input file not found" in lines[0]


def test_an_unknown_log_format_is_rejected():
    r = CliRunner().invoke(cli, ["--log-format", "xml", "plugins", "list"])
    assert r.exit_code == 2 and "--log-format" in r.output and "'text'" in r.output


def test_an_unwritable_log_file_is_a_config_error(tmp_path):
    config(tmp_path)
    (tmp_path / "plain.txt").write_text("a file, not a folder")
    r = run_cli("--log-file", str(tmp_path / "plain.txt" / "adpipe.log"), "validate", "config=pipe.yaml",
                cwd=tmp_path)
    assert r.returncode == 2
    assert "Cannot open the log file" in r.stderr and "--log-file" in r.stderr


# --------------------------------------------------------------------------- metrics push
class Gateway:
    """A stand-in Pushgateway on 127.0.0.1 recording every request (method, path, body)."""

    def __init__(self):
        self.requests: list[tuple[str, str, str]] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                gateway.requests.append((self.command, self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = do_POST = _record  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, from Prometheus text."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def run_values(found: dict, status: str = "succeeded") -> dict[str, float]:
    key = (("pipeline", "blobs"), ("status", status))
    return {name.removeprefix("adpipe_run_"): value for (name, labels), value in found.items() if labels == key}


def test_a_run_pushes_its_summary_to_the_pushgateway(tmp_path):
    with Gateway() as gw:
        path = config(tmp_path, metrics={"pushgateway": gw.url, "job": "nightly", "grouping": {"team": "risk"}})
        before = time.time()
        summary = Pipeline.from_config(path).run()
    assert len(gw.requests) == 1
    method, url_path, body = gw.requests[0]
    assert method == "PUT" and url_path == "/metrics/job/nightly/pipeline/blobs/team/risk"
    found = samples(body)
    values = run_values(found)
    assert values["rows_in"] == summary.rows_in == 300
    assert values["rows_scored"] == summary.rows_scored
    assert values["rows_rejected"] == summary.rows_rejected
    assert values["anomalies"] == summary.anomalies
    assert values["anomaly_rate"] == pytest.approx(summary.anomaly_rate)
    assert values["seconds"] == pytest.approx(summary.seconds)
    assert values["success"] == 1.0
    stages = {dict(labels)["stage"]: value for (name, labels), value in found.items()
              if name == "adpipe_run_stage_seconds"}
    assert stages == pytest.approx(summary.stage_seconds)
    info = [dict(labels) for (name, labels), _ in found.items() if name == "adpipe_run_model_info"]
    assert info == [{"pipeline": "blobs", "model_version": summary.model_version, "detector": "iforest"}]
    last = found[("adpipe_last_success_timestamp_seconds", (("pipeline", "blobs"),))]
    assert before <= last <= time.time()


def test_a_failed_run_pushes_a_failed_status_and_keeps_the_last_success(tmp_path):
    with Gateway() as gw:
        path = config(tmp_path, metrics={"pushgateway": gw.url})
        with pytest.raises(SourceError):
            Pipeline.from_config(path, ["source.path=missing.csv"]).run()
    assert len(gw.requests) == 1
    method, url_path, body = gw.requests[0]
    assert method == "POST"  # adds to the group: the last success's timestamp stays on the gateway
    assert url_path == "/metrics/job/adpipe/pipeline/blobs"
    found = samples(body)
    assert run_values(found, "failed")["success"] == 0.0
    assert "adpipe_last_success_timestamp_seconds" not in {name for name, _ in found}
    assert not any(name == "adpipe_run_rows_in" for name, _ in found)  # no counts from a failed run


def test_a_dead_pushgateway_logs_a_warning_and_the_run_succeeds(tmp_path, caplog):
    path = config(tmp_path, metrics={"pushgateway": f"http://127.0.0.1:{closed_port()}", "timeout_seconds": 2})
    with caplog.at_level(logging.WARNING, logger="adpipe.metrics"):
        summary = Pipeline.from_config(path).run()
    assert summary.status == "succeeded" and summary.rows_scored == 300
    assert (tmp_path / "out/scores.csv").is_file()
    warnings = [r for r in caplog.records if r.name == "adpipe.metrics" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "could not push the run's metrics" in warnings[0].getMessage()


def test_textfile_for_node_exporter_keeps_the_last_success_after_a_failure(tmp_path):
    prom = tmp_path / "textfiles" / "blobs.prom"
    path = config(tmp_path, metrics={"textfile": "textfiles/blobs.prom"})
    summary = Pipeline.from_config(path).run()
    first = samples(prom.read_text())
    assert run_values(first)["rows_scored"] == summary.rows_scored
    assert run_values(first)["anomalies"] == summary.anomalies
    last = first[("adpipe_last_success_timestamp_seconds", (("pipeline", "blobs"),))]
    with pytest.raises(SourceError):
        Pipeline.from_config(path, ["source.path=missing.csv"]).run()
    second = samples(prom.read_text())
    assert run_values(second, "failed")["success"] == 0.0
    assert second[("adpipe_last_success_timestamp_seconds", (("pipeline", "blobs"),))] == last
    assert not list(prom.parent.glob("*.tmp*"))  # written atomically


def test_adpipe_score_pushes_with_the_models_name_and_version(tmp_path):
    model = Pipeline.from_config(config(tmp_path)).fit()
    stored = ModelStore().add(model)
    with Gateway() as gw:
        config(tmp_path, metrics={"pushgateway": gw.url})  # the scoring config pushes
        r = run_cli("score", "model=blobs", "config=pipe.yaml", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert len(gw.requests) == 1 and gw.requests[0][:2] == ("PUT", "/metrics/job/adpipe/pipeline/blobs")
    found = samples(gw.requests[0][2])
    assert run_values(found)["rows_scored"] == summary["rows_scored"] == 300
    info = [dict(labels) for (name, labels), _ in found.items() if name == "adpipe_run_model_info"]
    assert info == [{"pipeline": "blobs", "model_version": summary["model_version"], "detector": "iforest"}]
    assert summary["model_version"] == stored.ref == "blobs@1"  # the store's version scored


@pytest.mark.parametrize("metrics, message", [
    ({"pushgateway": "ftp://gateway:9091"}, "metrics.pushgateway = 'ftp://gateway:9091'"),
    ({"pushgateway": "pushgateway:9091"}, "must be an http(s) URL"),
    ({"pushgateway": "http://"}, "must be an http(s) URL"),
    ({"pushgateway": "http://gateway:99999"}, "Port out of range"),
    ({"grouping": {"bad-label": "x"}}, "'bad-label' is not a Prometheus label name"),
    ({"grouping": {"pipeline": "x"}}, "'pipeline' is set by adpipe"),
    ({"textfile": "metrics.txt"}, "must end in .prom"),
    ({"timeout_seconds": 0}, "metrics.timeout_seconds"),
    ({"push_gateway": "http://x"}, "unknown key metrics.push_gateway"),
])
def test_bad_metrics_settings_are_config_errors(tmp_path, metrics, message):
    path = config(tmp_path, metrics=metrics)
    with pytest.raises(ConfigError) as err:
        Pipeline.from_config(path)
    assert message in str(err.value)

