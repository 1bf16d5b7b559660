"""Schemathesis against the app's own OpenAPI document: no generated request may get a 5xx.

In-process (ASGI), bounded and derandomized examples per endpoint, a real store with a fitted model so
the scoring endpoints get past the model lookup.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from conftest import blob_frame, write_yaml
from hypothesis import HealthCheck, settings

from adpipe.core.engine import Pipeline
from adpipe.core.store import ModelStore
from adpipe.service.app import create_app
from adpipe.service.settings import ServeSettings

pytestmark = pytest.mark.slow
CONFIG = {"name": "blob", "columns": {"id": ["id"]}, "source": {"type": "csv", "path": "data.csv"},
          "detector": {"type": "iforest", "n_estimators": 20, "random_state": 0},
          "threshold": {"type": "contamination", "contamination": 0.05}}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    root: Path = tmp_path_factory.mktemp("fuzz")
    blob_frame(n=200, d=3, with_id=True).to_csv(root / "data.csv", index=False)
    write_yaml(root / "configs" / "blob.yaml", CONFIG)
    store = ModelStore(root / "store")
    store.add(Pipeline.from_dict(CONFIG, base_dir=root).fit())
    # trusted: the per-test ADPIPE_HOME (model key) changes between the tests of this module
    app = create_app(ServeSettings(no_auth=True, store=store.root, state_file=root / "state.sqlite",
                                   configs_dir=root / "configs", models=["blob"], trusted=True,
                                   max_batch_rows=50))
    app.state.service.load_configured()
    yield app
    app.state.service.close()


@pytest.fixture
def api_schema(app):
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=20, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    if case.path_parameters and "name" in case.path_parameters and case.operation.method.upper() == "POST":
        case.path_parameters["name"] = "blob"  # scoring and promotion bodies reach the real model
    response = case.call()
    assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: " \
                                       f"{response.text[:500]}"
    if response.status_code >= 400:
        body = response.json()
        assert {"error", "message"} <= set(body), body
