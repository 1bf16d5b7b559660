"""The sql sink against the PostgreSQL server on 127.0.0.1:5432 (database ``test``, trust auth).

Each test works in its own freshly created schema, dropped afterwards. The
tests are skipped, saying why, only when the server cannot be reached.
"""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pytest

import adpipe
from adpipe.plugins.sinks import SqlSink

sa = pytest.importorskip("sqlalchemy")
pytest.importorskip("psycopg")

pytestmark = pytest.mark.postgres

HOST = "127.0.0.1:5432/test"


@pytest.fixture(scope="module")
def pg_url() -> str:
    errors = []
    for user in ("postgres", "root"):
        url = f"postgresql+psycopg://{user}@{HOST}"
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("select 1")
            return url
        except sa.exc.OperationalError as exc:
            errors.append(f"{user}: {str(exc.orig).strip().splitlines()[0]}")
        finally:
            engine.dispose()
    pytest.skip(f"PostgreSQL server at {HOST} is unreachable ({'; '.join(errors)})")


@pytest.fixture
def engine(pg_url):
    engine = sa.create_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def schema(engine) -> str:
    name = f"adpipe_test_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    yield name
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def results(ids, run_id: str = "run-1") -> pd.DataFrame:
    ids = list(ids)
    n = len(ids)
    return pd.DataFrame(
        {
            "id": np.asarray(ids, dtype="int64"),
            "anomaly_score": np.linspace(0, 1, n),
            "anomaly_probability": np.linspace(0, 1, n),
            "is_anomaly": np.asarray([i % 2 for i in range(n)], dtype="int64"),
            "severity": pd.array(["none", "high"] * (n // 2) + ["none"] * (n % 2), dtype="str"),
            "model_version": pd.array(["v1"] * n, dtype="str"),
            "run_id": pd.array([run_id] * n, dtype="str"),
            "scored_at": pd.Timestamp("2024-05-01 12:00", tz="UTC"),
        }
    )


def context() -> adpipe.RunContext:
    return adpipe.RunContext(pipeline="t", id_columns=["id"])


def query(engine, sql: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql)]


def test_creates_a_keyed_table_and_upserts(engine, pg_url, schema):
    sink = SqlSink(url=pg_url, table="scores", schema=schema, chunksize=2)
    sink.open(context())  # key from the context's id_columns
    sink.write(results(range(5)))
    sink.write(results(range(5)))  # replayed batch: no duplicates
    sink.write(results(range(3, 8), run_id="run-2"))
    sink.close(True)
    assert query(engine, f'select count(*), count(distinct id) from "{schema}".scores') == [(8, 8)]
    assert query(engine, f'select id, run_id from "{schema}".scores where id in (2, 3) order by id') == [
        (2, "run-1"),
        (3, "run-2"),
    ]
    inspector = sa.inspect(engine)
    assert inspector.get_pk_constraint("scores", schema=schema)["constrained_columns"] == ["id"]
    types = {c["name"]: type(c["type"]).__name__ for c in inspector.get_columns("scores", schema=schema)}
    assert types["id"] == "BIGINT" and types["severity"] == "TEXT" and types["is_anomaly"] == "BIGINT"
    assert types["anomaly_score"] == "DOUBLE_PRECISION" and types["scored_at"] == "TIMESTAMP"
    assert query(engine, f"select column_default from information_schema.columns where table_schema = '{schema}' "
                         "and table_name = 'scores' and column_name = 'id'") == [(None,)]  # no serial  # fmt: skip


def test_rerun_is_idempotent_in_the_default_schema(engine, pg_url):
    table = f"adpipe_test_{uuid.uuid4().hex[:12]}"
    try:
        for _ in range(2):
            sink = SqlSink(url=pg_url, table=table)
            sink.open(context())
            sink.write(results(range(4)))
            sink.write(results(range(4, 6)))
            sink.close(True)
        assert query(engine, f'select count(*) from "{table}"') == [(6,)]
        assert sink.outputs() == [f"{pg_url}#{table}"]
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{table}"')


def test_text_composite_key_and_duplicates_within_a_batch(engine, pg_url, schema):
    frame = results(range(4)).assign(account=pd.array(["a", "a", "b", "b"], dtype="str"), id=[1, 2, 1, 2])
    frame = pd.concat([frame, frame.iloc[[0]].assign(run_id="last")], ignore_index=True)
    sink = SqlSink(url=pg_url, table="scores", schema=schema, key=["account", "id"])
    sink.open(adpipe.RunContext(pipeline="t"))
    sink.write(frame)
    sink.write(frame)
    sink.close(True)
    assert query(engine, f'select account, id, run_id from "{schema}".scores order by 1, 2') == [
        ("a", 1, "last"),
        ("a", 2, "run-1"),
        ("b", 1, "run-1"),
        ("b", 2, "run-1"),
    ]


def test_existing_table_without_a_unique_key_falls_back_to_delete_then_insert(engine, pg_url, schema):
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f'create table "{schema}".scores (id bigint, anomaly_score float8, anomaly_probability float8, '
            "is_anomaly int, severity text, model_version text, run_id text, scored_at timestamptz)"
        )
    for run_id in ("run-1", "run-2"):
        sink = SqlSink(url=pg_url, table="scores", schema=schema)
        sink.open(context())
        sink.write(results(range(4), run_id=run_id))
        sink.close(True)
    assert query(engine, f'select count(*), min(run_id) from "{schema}".scores') == [(4, "run-2")]


def test_missing_key_column_is_a_sink_error(pg_url, schema):
    sink = SqlSink(url=pg_url, table="scores", schema=schema, key=["transaction_id"])
    sink.open(context())
    with pytest.raises(adpipe.SinkError, match="transaction_id"):
        sink.write(results(range(3)))
    sink.close(False)


def test_missing_schema_is_a_sink_error(pg_url):
    sink = SqlSink(url=pg_url, table="scores", schema=f"nope_{uuid.uuid4().hex[:8]}")
    sink.open(context())
    with pytest.raises(adpipe.SinkError, match="has no schema"):
        sink.write(results(range(3)))
    sink.close(False)


def test_type_clash_is_a_sink_error(pg_url, schema):
    sink = SqlSink(url=pg_url, table="scores", schema=schema)
    sink.open(context())
    sink.write(results(range(3)))
    with pytest.raises(adpipe.SinkError, match="Writing 3 rows"):
        sink.write(results(range(3)).assign(anomaly_score=pd.array(["x", "y", "z"], dtype="str")))
    sink.close(False)


def test_connection_failure_masks_the_password(pg_url):
    url = sa.engine.make_url(pg_url).set(password="s3cret", database=f"missing_{uuid.uuid4().hex[:8]}")
    raw = url.render_as_string(hide_password=False)
    with pytest.raises(adpipe.SinkError, match="Cannot connect") as err:
        SqlSink(url=raw, table="scores").open(context())
    assert "s3cret" not in str(err.value) and ":***@" in str(err.value)


def test_a_whole_pipeline_into_postgresql_twice_keeps_one_row_per_key(engine, pg_url, schema, tmp_path):
    """`adpipe run` into PostgreSQL: every scored row lands once; a rerun (at-least-once replay) upserts."""
    rng = np.random.default_rng(0)
    data = pd.DataFrame(rng.normal(size=(500, 3)), columns=["a", "b", "c"]).assign(id=np.arange(500))
    data.to_csv(tmp_path / "data.csv", index=False)
    cfg = {
        "source": {"type": "csv", "path": "data.csv"},
        "columns": {"id": ["id"]},
        "detector": {"type": "iforest", "n_estimators": 30},
        "threshold": {"type": "contamination", "contamination": 0.05},
        "sinks": [{"type": "sql", "url": pg_url, "schema": schema, "table": "scores"}],
        "engine": {"batch_rows": 120},
        "summary": {"path": str(tmp_path / "summary.json")},
    }
    runs = [adpipe.Pipeline.from_dict(cfg, base_dir=tmp_path).run() for _ in range(2)]
    assert all(r.rows_in == r.rows_scored == 500 for r in runs)
    rows = query(engine, f'SELECT count(*), count(DISTINCT id), sum(is_anomaly) FROM "{schema}".scores')
    assert rows == [(500, 500, runs[1].anomalies)]
    assert query(engine, f'SELECT DISTINCT run_id FROM "{schema}".scores') == [(runs[1].run_id,)]
