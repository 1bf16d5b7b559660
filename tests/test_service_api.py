"""The REST API (`adpipe serve`) over real HTTP on 127.0.0.1: scoring equals the in-process API,
version selection, models, fit jobs, readiness, metrics, the OpenAPI document, and bad input."""

from __future__ import annotations

import json
import math
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import blob_frame, write_yaml
from service_harness import serve

from adpipe.core.engine import Pipeline
from adpipe.core.model import load_model
from adpipe.core.store import ModelStore
from adpipe.service.app import create_app
from adpipe.service.settings import ServeSettings

pytestmark = pytest.mark.slow
RESULT_COLUMNS = ["anomaly_score", "anomaly_probability", "is_anomaly", "severity", "model_version", "run_id"]
JSON = {"content-type": "application/json"}


def blob_config(tmp: Path, **extra: Any) -> dict[str, Any]:
    cfg = {"name": "blob", "columns": {"id": ["id"]}, "source": {"type": "csv", "path": "data.csv"},
           "detector": {"type": "iforest", "n_estimators": 50, "random_state": 0},
           "threshold": {"type": "contamination", "contamination": 0.05}}
    cfg.update(extra)
    return cfg


@pytest.fixture
def data(tmp_path: Path) -> pd.DataFrame:
    frame = blob_frame(n=400, d=3, n_outliers=10, with_id=True)
    frame.to_csv(tmp_path / "data.csv", index=False)
    return frame


@pytest.fixture
def store(tmp_path: Path, data: pd.DataFrame) -> ModelStore:
    """A store holding blob@1 (iforest, seed 0) and blob@2 (iforest, seed 1)."""
    st = ModelStore(tmp_path / "store")
    for seed in (0, 1):
        cfg = blob_config(tmp_path, detector={"type": "iforest", "n_estimators": 50, "random_state": seed})
        st.add(Pipeline.from_dict(cfg, base_dir=tmp_path).fit())
    return st


@contextmanager
def running(tmp_path: Path, store: ModelStore, **settings: Any) -> Iterator[httpx.Client]:
    app = create_app(ServeSettings(no_auth=True, store=store.root, state_file=tmp_path / "state.sqlite",
                                   **settings))
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def wait_ready(client: httpx.Client, tries: int = 200) -> httpx.Response:
    for _ in range(tries):
        r = client.get("/v1/health/ready")
        if r.status_code == 200:
            return r
        time.sleep(0.05)
    return r


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records", double_precision=15))


def assert_same(http: dict[str, Any], local: dict[str, Any]) -> None:
    assert set(http) == set(local)
    for key, value in local.items():
        if isinstance(value, float):
            assert http[key] == pytest.approx(value, abs=1e-12, rel=0), key
        else:
            assert http[key] == value, key


# --------------------------------------------------------------------------- scoring
def test_single_and_batch_scores_equal_in_process(tmp_path, store, data):
    model = load_model("blob@2", store=store)
    rows = records(data)
    with running(tmp_path, store, models=["blob@2"]) as client:
        assert wait_ready(client).json()["models"]["blob@2"] == {"loaded": True, "model": "blob@2", "error": None}
        for record in rows[::20] + rows[-10:]:  # inliers and every planted outlier
            r = client.post("/v1/models/blob/score", json={"record": record})
            assert r.status_code == 200, r.text
            assert_same(r.json(), model.score_one(record))
        r = client.post("/v1/models/blob/score/batch", json={"records": rows})
        assert r.status_code == 200, r.text
        body = r.json()
    local, rejected = model.score_batch(data)
    assert len(rejected) == 0
    assert (body["model"], body["model_version"], body["rows_in"], body["rows_scored"], body["rows_rejected"]) == \
        ("blob", "blob@2", 400, 400, 0)
    assert body["anomalies"] == int(local["is_anomaly"].sum()) > 0
    assert len(body["run_id"]) == 32 and body["rejected"] == []
    expected = local.assign(run_id=body["run_id"]).to_dict(orient="records")
    assert len(body["results"]) == len(expected)
    for got, want in zip(body["results"], expected, strict=True):
        assert_same(got, {k: (v.item() if hasattr(v, "item") else v) for k, v in want.items()})
    # the engine's own message type gives the same answer in-process
    in_process = model.score_records(rows, run_id=body["run_id"])
    assert in_process.model_dump(exclude={"seconds"}) == {k: v for k, v in body.items() if k != "seconds"}


def test_batch_as_columns_and_as_arrow_equal_the_records_batch(tmp_path, store, data):
    import pyarrow as pa

    model = load_model("blob@2", store=store)
    bad = data.copy()
    bad.loc[5, "f0"] = np.nan  # one row the model rejects, with its reason
    local, rejected = model.score_batch(bad, policy="drop")
    assert list(rejected.index) == [5]
    sink = pa.BufferOutputStream()
    table = pa.Table.from_pandas(bad, preserve_index=False)
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    with running(tmp_path, store) as client:
        columns = {c: json.loads(bad[c].to_json(orient="values")) for c in bad.columns}  # NaN as null
        cols = client.post("/v1/models/blob/score/batch", json={"columns": columns})
        assert cols.status_code == 200, cols.text
        body = cols.json()
        arrow = client.post("/v1/models/blob/score/batch", content=sink.getvalue().to_pybytes(),
                            headers={"content-type": "application/vnd.apache.arrow.stream"})
        assert arrow.status_code == 200, arrow.text
        assert client.post("/v1/models/blob/score/batch", content=b"not arrow",
                           headers={"content-type": "application/vnd.apache.arrow.stream"}).status_code == 400
        short = client.post("/v1/models/blob/score/batch", json={"columns": {"id": [1, 2], "f0": [0.1]}})
        assert short.status_code == 422 and "same number of values" in short.json()["message"]
        both = client.post("/v1/models/blob/score/batch", json={"columns": {"id": [1]}, "records": []})
        assert both.status_code == 422
    assert body["results"] == [] and (body["rows_in"], body["rows_scored"], body["rows_rejected"]) == (400, 399, 1)
    assert body["rejected"][0]["index"] == 5 and "f0" in body["rejected"][0]["reason"]
    assert body["columns"]["id"] == local["id"].tolist()
    for col in ("anomaly_score", "anomaly_probability"):
        assert np.allclose(body["columns"][col], local[col].to_numpy(), rtol=0, atol=1e-12)
    assert body["columns"]["is_anomaly"] == local["is_anomaly"].tolist()
    assert body["columns"]["severity"] == local["severity"].tolist()
    got = pa.ipc.open_stream(arrow.content).read_all()
    assert arrow.headers["x-adpipe-rows-rejected"] == "1" and arrow.headers["x-adpipe-rows-in"] == "400"
    assert json.loads(got.schema.metadata[b"adpipe.rejected"])[0]["index"] == 5
    frame = got.to_pandas()
    assert frame["id"].tolist() == local["id"].tolist()
    assert np.allclose(frame["anomaly_score"], local["anomaly_score"], rtol=0, atol=1e-12)
    assert frame["is_anomaly"].tolist() == local["is_anomaly"].tolist()


def test_version_selection_and_promotion(tmp_path, store, data):
    record = records(data)[-1]
    with running(tmp_path, store) as client:
        def version_of(query: str = "") -> str:
            r = client.post(f"/v1/models/blob/score{query}", json={"record": record})
            assert r.status_code == 200, r.text
            return r.json()["model_version"]

        assert version_of() == "blob@2"  # no production label: the newest
        assert version_of("?version=1") == "blob@1"
        assert version_of("?version=latest") == "blob@2"
        r = client.post("/v1/models/blob/promote", json={"version": 1, "stage": "production"})
        assert r.status_code == 200, r.text
        assert r.json()["stages"] == ["production"] and r.json()["ref"] == "blob@1"
        assert version_of() == "blob@1"
        assert version_of("?version=production") == "blob@1"
        store.promote("blob", 2, "staging")  # another process moves labels: picked up without a restart
        assert version_of("?version=staging") == "blob@2"
        store.promote("blob", 2, "production")
        assert version_of() == "blob@2"
        for query, word in (("?version=9", "no version 9"), ("?version=canary", "labelled 'canary'")):
            r = client.post(f"/v1/models/blob/score{query}", json={"record": record})
            assert r.status_code == 404 and r.json()["error"] == "model_not_found" and word in r.json()["message"]
        r = client.post("/v1/models/blob/promote", json={"version": 7})
        assert r.status_code == 404 and "no version 7" in r.json()["message"]
        r = client.post("/v1/models/blob/promote", json={"version": 1, "stage": "Prod!"})
        assert r.status_code == 422 and r.json()["error"] == "bad_stage"


def test_models_list_and_inspect(tmp_path, store):
    store.promote("blob", 1, "production")
    with running(tmp_path, store, models=["blob@production"]) as client:
        wait_ready(client)
        listing = client.get("/v1/models").json()
        assert [m["name"] for m in listing] == ["blob"]
        blob = client.get("/v1/models/blob").json()
        assert (blob["latest"], blob["stages"], blob["default_version"], blob["loaded"]) == \
            (2, {"production": 1}, 1, [1])
        assert [v["ref"] for v in blob["versions"]] == ["blob@1", "blob@2"]
        v1 = client.get("/v1/models/blob/versions/production").json()
        assert v1 == client.get("/v1/models/blob/versions/1").json()
        meta = store.get("blob", 1).metadata()
        assert (v1["version"], v1["detector"], v1["rows"], v1["features"], v1["model_version"]) == \
            (1, "iforest", meta["training"]["rows"], ["f0", "f1", "f2"], meta["model_version"])
        assert client.get("/v1/models/nope").status_code == 404
        assert client.get("/v1/models/blob/versions/5").status_code == 404


# --------------------------------------------------------------------------- fit jobs
def poll_job(client: httpx.Client, job_id: str, tries: int = 600) -> dict[str, Any]:
    for _ in range(tries):
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_fit_job_lifecycle(tmp_path, store, data):
    configs = tmp_path / "configs"
    configs.mkdir()
    data.to_csv(configs / "data.csv", index=False)
    write_yaml(configs / "blob.yaml", blob_config(tmp_path))
    with running(tmp_path, store, configs_dir=configs) as client:
        r = client.post("/v1/jobs/fit", json={"config": "blob.yaml", "overrides": ["detector.n_estimators=20"]})
        assert r.status_code == 202, r.text
        assert r.json()["status"] in ("queued", "running")
        good = poll_job(client, r.json()["id"])
        assert good["status"] == "succeeded", good
        assert good["model"] == "blob@3" and good["error"] is None and good["seconds"] > 0
        assert [v["version"] for v in client.get("/v1/models/blob").json()["versions"]] == [1, 2, 3]
        assert ModelStore(store.root).get("blob", 3).metadata()["config"]["detector"]["n_estimators"] == 20
        r = client.post("/v1/jobs/fit", json={"config": "blob.yaml", "overrides": ["detector.n_estimators=-5"]})
        bad = poll_job(client, r.json()["id"])
        assert bad["status"] == "failed" and bad["model"] is None and "n_estimators" in bad["error"]
        assert {j["id"] for j in client.get("/v1/jobs").json()} == {good["id"], bad["id"]}
        fits = client.get("/v1/runs", params={"kind": "fit"}).json()
        assert {(f["id"], f["status"]) for f in fits} == {(good["id"], "succeeded"), (bad["id"], "failed")}
        for config, status, error in (("../data.csv", 400, "bad_config_name"),
                                      (str(configs / "blob.yaml"), 400, "bad_config_name"),
                                      ("missing.yaml", 404, "config_not_found")):
            r = client.post("/v1/jobs/fit", json={"config": config})
            assert (r.status_code, r.json()["error"]) == (status, error), config
        r = client.post("/v1/jobs/fit", json={"config": "blob.yaml", "overrides": ["--out=/tmp/x.adpipe"]})
        assert (r.status_code, r.json()["error"]) == (400, "bad_override")
        assert client.get("/v1/jobs/nope").status_code == 404


def test_fit_jobs_refused_without_configs_dir_and_unfinished_jobs_fail_on_restart(tmp_path, store):
    with running(tmp_path, store) as client:
        r = client.post("/v1/jobs/fit", json={"config": "blob.yaml"})
        assert r.status_code == 409 and r.json()["error"] == "fit_jobs_disabled" and "configs_dir" in r.json()["hint"]
    with sqlite3.connect(tmp_path / "state.sqlite") as db:  # a job that was running when the server stopped
        db.execute("INSERT INTO jobs (id, status, config, overrides, created_at, started_at) VALUES "
                   "('j1', 'running', 'blob.yaml', '[]', '2026-01-01T00:00:00Z', '2026-01-01T00:00:01Z')")
    with running(tmp_path, store) as client:
        job = client.get("/v1/jobs/j1").json()
        assert job["status"] == "failed" and "server stopped" in job["error"] and job["finished_at"]


# --------------------------------------------------------------------------- health and metrics
def test_readiness_waits_for_every_model(tmp_path, store):
    with running(tmp_path, store, models=["blob@1", "ghost@production"]) as client:
        assert client.get("/v1/health/live").json() == {"status": "ok"}
        r = client.get("/v1/health/ready")
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "not_ready" and body["store"]["reachable"]
        assert body["models"]["ghost@production"]["loaded"] is False
        assert "ghost" in body["models"]["ghost@production"]["error"]
    with running(tmp_path, store, models=["blob@1"]) as client:
        r = wait_ready(client)
        assert r.status_code == 200 and r.json()["models"]["blob@1"]["loaded"]


def metric(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_metrics_count_exactly_the_requests_made(tmp_path, store, data):
    rows = records(data)
    with running(tmp_path, store) as client:
        before = client.get("/metrics").text
        for record in rows[:3]:
            assert client.post("/v1/models/blob/score", json={"record": record}).status_code == 200
        assert client.post("/v1/models/blob/score", json={"record": {"f0": 1}}).status_code == 422
        batch = client.post("/v1/models/blob/score/batch", json={"records": rows[-5:]}).json()
        after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    route = "/v1/models/{name}/score"

    def delta(name: str, **labels: str) -> float:
        return metric(after.text, name, **labels) - metric(before, name, **labels)

    assert delta("adpipe_http_requests_total", route=route, method="POST", status="200") == 3
    assert delta("adpipe_http_requests_total", route=route, method="POST", status="422") == 1
    assert delta("adpipe_http_requests_total", route=route + "/batch", method="POST", status="200") == 1
    assert delta("adpipe_http_request_duration_seconds_count", route=route) == 4
    assert delta("adpipe_rows_scored_total", model="blob") == 3 + 5
    assert delta("adpipe_anomalies_total", model="blob") == batch["anomalies"] + sum(
        load_model("blob@2", store=store).score_one(r)["is_anomaly"] for r in rows[:3])
    assert metric(after.text, "adpipe_model_info", model="blob", version="2", model_version="blob@2") == 1
    assert metric(after.text, "adpipe_jobs", status="queued") == 0
    assert "/v1/models/blob/score" not in after.text  # route templates, never raw paths


def test_openapi_lists_every_endpoint_and_docs_serve_html(tmp_path, store):
    with running(tmp_path, store) as client:
        spec = client.get("/openapi.json").json()
        docs = client.get("/docs")
    expected = {"/v1/health/live": {"get"}, "/v1/health/ready": {"get"}, "/metrics": {"get"},
                "/v1/models": {"get"}, "/v1/models/{name}": {"get"}, "/v1/models/{name}/versions/{version}": {"get"},
                "/v1/models/{name}/promote": {"post"}, "/v1/models/{name}/score": {"post"},
                "/v1/models/{name}/score/batch": {"post"}, "/v1/jobs/fit": {"post"}, "/v1/jobs": {"get"},
                "/v1/jobs/{job_id}": {"get"}, "/v1/runs": {"get"}, "/v1/anomalies": {"get"},
                "/v1/dashboard/data": {"get"}}
    for path, methods in expected.items():
        assert methods <= set(spec["paths"].get(path, {})), path
    batch = spec["paths"]["/v1/models/{name}/score/batch"]["post"]
    assert "records" in batch["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert {"ScoreRequest", "BatchResult", "ModelInfo", "JobStatus", "ErrorBody"} <= set(spec["components"]["schemas"])
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert "swagger" in docs.text.lower()


# --------------------------------------------------------------------------- activity and dashboard data
def test_runs_anomalies_histogram_and_drift(tmp_path, data):
    st = ModelStore(tmp_path / "store")
    cfg = blob_config(tmp_path, drift={"detectors": [{"type": "ks", "window": 100}],
                                       "history": str(tmp_path / "drift.db")})
    st.add(Pipeline.from_dict(cfg, base_dir=tmp_path).fit())
    rows = records(data)
    shifted = [{**r, "f0": r["f0"] + 4.0} for r in rows[:200]]
    with running(tmp_path, st, models=["blob@1"]) as client:
        wait_ready(client)
        first = client.post("/v1/models/blob/score/batch", json={"records": rows}).json()
        second = client.post("/v1/models/blob/score/batch", json={"records": shifted}).json()
        runs = client.get("/v1/runs").json()
        anomalies = client.get("/v1/anomalies", params={"limit": 500}).json()
        dash = client.get("/v1/dashboard/data").json()
        text = client.get("/metrics").text
    assert [(r["kind"], r["model"], r["status"], r["rows_in"], r["anomalies"]) for r in runs] == \
        [("score_batch", "blob@1", "succeeded", 200, second["anomalies"]),
         ("score_batch", "blob@1", "succeeded", 400, first["anomalies"])]
    assert len(anomalies) == first["anomalies"] + second["anomalies"]
    flagged = [r for r in first["results"] if r["is_anomaly"]]
    oldest = anomalies[len(anomalies) - len(flagged):]  # newest first
    assert sorted(a["record"]["id"] for a in oldest) == sorted(r["id"] for r in flagged)
    assert all(a["model"] == "blob" and a["version"] == 1 and a["anomaly_probability"] > 0 for a in anomalies)
    assert set(dash) == {"generated_at", "models", "runs", "anomalies", "histogram", "drift"}
    assert dash["models"][0]["name"] == "blob" and dash["models"][0]["loaded"] is True
    assert dash["models"][0]["versions"][0]["detector"] == "iforest"
    hist = dash["histogram"]
    assert (hist["model"], hist["version"], hist["n"]) == ("blob", 1, 600)
    assert sum(hist["counts"]) == 600 and len(hist["edges"]) == len(hist["counts"]) + 1
    assert hist["edges"][0] == 0.0 and hist["edges"][-1] == 1.0 and 0 < hist["threshold"] < 1
    assert dash["drift"] and all(e["pipeline"] == "blob" for e in dash["drift"])
    assert "f0" in {e["feature"] for e in dash["drift"]} and "test" in dash["drift"][0]
    assert metric(text, "adpipe_drift_detected", model="blob", feature="f0") == 1
    assert metric(text, "adpipe_drift_events_total", model="blob", feature="f0", test="ks") >= 1


# --------------------------------------------------------------------------- bad input
def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(tmp_path, store, data):
    rows = records(data)
    good = rows[0]
    score, batch = "/v1/models/blob/score", "/v1/models/blob/score/batch"
    cases = [  # (path, body bytes or json, status, error, words in the message)
        (score, b'{"record": {"id": 1, ', 400, "malformed_json", ["not valid JSON"]),
        (batch, b'{"records": [', 400, "malformed_json", ["not valid JSON"]),
        (score, {"recrd": good}, 422, "validation_error", ["record"]),
        (score, {"record": [1, 2]}, 422, "validation_error", ["record"]),
        (batch, {"records": {"a": 1}}, 422, "validation_error", ["records"]),
        (batch, {"records": [good, 3]}, 422, "validation_error", ["records.1"]),
        (batch, {"rows": [good]}, 422, "validation_error", ["records"]),
        (score, {"record": {"id": 1, "f0": 0.1, "f1": 0.2}}, 422, "schema_mismatch", ["'f2'"]),
        (score, {"record": {"id": 1, "f0": 0.1, "f1": 0.2, "fx": 1}}, 422, "schema_mismatch", ["'f2'"]),
        (score, {"record": {**good, "f1": "abc"}}, 422, "data_error", ["'f1'", "not a number"]),
        (score, {"record": {**good, "f1": {"nested": 1}}}, 422, "data_error", ["'f1'"]),
        (score, {"record": {**good, "f2": None}}, 422, "data_error", ["'f2'"]),
        (score, b'{"record": {"id": 1, "f0": NaN, "f1": 0.0, "f2": 0.0}}', 422, "data_error", ["'f0'"]),
        (score, b'{"record": {"id": 1, "f0": 0.0, "f1": Infinity, "f2": 0.0}}', 422, "data_error", ["'f1'"]),
        (batch, {"records": [{"id": 1, "f0": 0.1}]}, 422, "schema_mismatch", ["'f1'"]),
        (batch, b'{"records": [{"id": 1, "f0": NaN, "f1": 0.0, "f2": 0.0}]}', 422, "data_error", ["f0"]),
        (batch, {"records": [{**good, "f2": "x"}, {**good, "f2": None}]}, 422, "schema_mismatch", ["f2"]),
        (batch, {"records": [{**good, "f2": None}, {**good, "f1": None}]}, 422, "data_error", ["f2"]),
        ("/v1/models/ghost/score", {"record": good}, 404, "model_not_found", ["ghost"]),
        ("/v1/models/..%2Fetc/score", {"record": good}, 404, None, []),
        ("/v1/models/ghost/score/batch", {"records": [good]}, 404, "model_not_found", ["ghost"]),
        ("/v1/nothing", {}, 404, "not_found", []),
    ]
    with running(tmp_path, store) as client:
        for path, body, status, error, words in cases:
            kwargs = {"content": body, "headers": JSON} if isinstance(body, bytes) else {"json": body}
            r = client.post(path, **kwargs)
            assert r.status_code == status, (path, body, r.text)
            out = r.json()
            assert set(out) >= {"error", "message", "hint"}, out
            if error:
                assert out["error"] == error, (body, out)
            for word in words:
                assert word in out["message"], (body, out)
        r = client.post(score, content=json.dumps({"record": good}))  # JSON without its content type
        assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type"
        r = client.get(score)
        assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
        # some bad rows: 200, those rows rejected with the column named, the rest scored
        mixed = [good, {**good, "f1": None}, {**good, "f2": "x"}, rows[1],
                 {"id": 9, "f0": math.inf, "f1": 0.0, "f2": 0.0}]
        r = client.post(batch, content=json.dumps({"records": mixed}), headers=JSON)  # Infinity token
        assert r.status_code == 200, r.text
        out = r.json()
        assert (out["rows_in"], out["rows_scored"], out["rows_rejected"]) == (5, 2, 3)
        assert [(x["index"], x["reason"]) for x in out["rejected"]] == \
            [(1, "missing: f1"), (2, "not a number: f2"), (4, "infinite: f0")]
        assert [x["id"] for x in out["results"]] == [good["id"], rows[1]["id"]]
        # still serving
        assert client.get("/v1/health/live").status_code == 200
        assert client.post(score, json={"record": good}).status_code == 200


def test_batch_over_max_batch_rows_is_413(tmp_path, store, data):
    rows = records(data)
    with running(tmp_path, store, max_batch_rows=10) as client:
        r = client.post("/v1/models/blob/score/batch", json={"records": rows[:11]})
        assert r.status_code == 413 and r.json()["error"] == "too_many_records" and "10" in r.json()["message"]
        assert client.post("/v1/models/blob/score/batch", json={"records": rows[:10]}).status_code == 200
        assert client.post("/v1/models/blob/score/batch", json={"records": []}).json()["rows_in"] == 0


def test_serve_cli_validates_settings_before_starting(tmp_path, store):
    from conftest import run_cli

    bad = write_yaml(tmp_path / "serve.yaml", {"port": 70000, "no_auth": True})
    proc = run_cli("serve", "--settings", str(bad), cwd=tmp_path)
    assert proc.returncode == 2 and "port" in proc.stderr and "65535" in proc.stderr
    proc = run_cli("serve", "--store", str(tmp_path / "store"), cwd=tmp_path)  # no keys, no --no-auth
    assert proc.returncode == 2 and "keys_file" in proc.stderr
    proc = run_cli("serve", "--no-auth", "--store", str(store.root), "--model", "ghost@production", cwd=tmp_path)
    assert proc.returncode == 5 and "ghost" in proc.stderr
