"""Built-in sinks: round trips, atomic publication, idempotent reruns, SQL upserts on SQLite."""

from __future__ import annotations

import gzip
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pydantic
import pytest

import adpipe
from adpipe.core.registry import Registry
from adpipe.plugins import sinks
from adpipe.plugins.sinks import ConsoleSink, CsvSink, JsonlSink, MemorySink, ParquetSink, SqlSink


def results(ids, score_offset: float = 0.0, run_id: str = "run-1") -> pd.DataFrame:
    """A result frame as the engine writes it (pandas 3 string dtype for the text columns)."""
    ids = list(ids)
    n = len(ids)
    return pd.DataFrame(
        {
            "id": np.asarray(ids, dtype="int64"),
            "anomaly_score": np.linspace(0, 1, n) + score_offset,
            "anomaly_probability": np.linspace(0, 1, n),
            "is_anomaly": np.asarray([i % 2 for i in range(n)], dtype="int64"),
            "severity": pd.array(["none", "high"] * (n // 2) + ["none"] * (n % 2), dtype="str"),
            "model_version": pd.array(["v1"] * n, dtype="str"),
            "run_id": pd.array([run_id] * n, dtype="str"),
        }
    )


def context(**kw) -> adpipe.RunContext:
    return adpipe.RunContext(pipeline="t", id_columns=["id"], **kw)


READERS = {
    "csv": pd.read_csv,
    "parquet": pd.read_parquet,
    "jsonl": lambda p: pd.read_json(p, lines=True),
}
FILE_SINKS = {"csv": CsvSink, "parquet": ParquetSink, "jsonl": JsonlSink}


def run(sink: adpipe.Sink, *frames: pd.DataFrame, success: bool = True) -> None:
    sink.open(context())
    for frame in frames:
        sink.write(frame)
    sink.close(success)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name)


# -- registration -------------------------------------------------------------


def test_sinks_register_through_the_hook():
    registry = Registry()
    registry.register_module(sinks)
    assert registry.names("sink") == ["console", "csv", "jsonl", "kafka", "memory", "parquet", "redis_stream", "sql"]
    for cls in (CsvSink, ParquetSink, JsonlSink):
        assert cls.Params.model_fields["path"].annotation is Path
    assert SqlSink.Params.model_fields["path"].annotation == Path | None


# -- file sinks ------------------------------------------------------------------


@pytest.fixture(params=sorted(FILE_SINKS))
def fmt(request) -> str:
    return request.param


def test_file_sink_round_trip(tmp_path, fmt):
    path = tmp_path / "out" / "deep" / f"scores.{fmt}"  # parent folders are created
    sink = FILE_SINKS[fmt](path=path)
    run(sink, results(range(5)), results(range(5, 8)))
    assert sink.outputs() == [str(path)]
    back = READERS[fmt](path)
    expected = pd.concat([results(range(5)), results(range(5, 8))], ignore_index=True)
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)
    assert leftovers(path.parent) == []


def test_file_sink_writes_a_hidden_temp_file_until_success(tmp_path, fmt):
    path = tmp_path / f"scores.{fmt}"
    sink = FILE_SINKS[fmt](path=path)
    sink.open(context())
    sink.write(results(range(3)))
    assert not path.exists()
    (tmp,) = leftovers(tmp_path)
    assert tmp.startswith(f".scores.{fmt}.tmp-")
    sink.close(True)
    assert path.exists() and leftovers(tmp_path) == []


def test_failed_run_leaves_no_file_and_no_temp_file(tmp_path, fmt):
    path = tmp_path / f"scores.{fmt}"
    run(FILE_SINKS[fmt](path=path), results(range(4)), success=False)
    assert list(tmp_path.iterdir()) == []


def test_failed_run_keeps_the_previous_complete_output(tmp_path, fmt):
    path = tmp_path / f"scores.{fmt}"
    run(FILE_SINKS[fmt](path=path), results(range(4)))
    before = path.read_bytes()
    run(FILE_SINKS[fmt](path=path), results(range(100), run_id="run-2"), success=False)
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_rerun_replaces_the_file(tmp_path, fmt):
    path = tmp_path / f"scores.{fmt}"
    for _ in range(2):  # a replayed run is idempotent
        run(FILE_SINKS[fmt](path=path), results(range(4)), results(range(4, 6)))
    assert len(READERS[fmt](path)) == 6


def test_reopening_a_sink_starts_over(tmp_path, fmt):
    path = tmp_path / f"scores.{fmt}"
    sink = FILE_SINKS[fmt](path=path)
    sink.open(context())
    sink.write(results(range(50)))
    run(sink, results(range(3)))
    assert len(READERS[fmt](path)) == 3


def test_run_without_rows_publishes_an_empty_file(tmp_path, fmt):
    path = tmp_path / f"scores.{fmt}"
    run(FILE_SINKS[fmt](path=path), results(range(5)))
    run(FILE_SINKS[fmt](path=path))
    assert path.exists() and leftovers(tmp_path) == []
    if fmt == "parquet":
        assert pd.read_parquet(path).empty
    else:
        assert path.read_bytes() == b""


def test_batches_with_other_columns_are_a_sink_error(tmp_path, fmt):
    sink = FILE_SINKS[fmt](path=tmp_path / f"scores.{fmt}")
    sink.open(context())
    sink.write(results(range(3)))
    if fmt == "jsonl":  # every line describes itself: other columns are fine
        sink.write(results(range(3)).drop(columns="severity"))
    else:
        with pytest.raises(adpipe.SinkError, match="missing: \\['severity'\\]"):
            sink.write(results(range(3)).drop(columns="severity"))
    sink.close(False)
    assert list(tmp_path.iterdir()) == []


def test_reordered_columns_are_aligned(tmp_path):
    path = tmp_path / "scores.csv"
    frame = results(range(3))
    run(CsvSink(path=path), frame, frame[frame.columns[::-1]])
    assert list(pd.read_csv(path).columns) == list(frame.columns)
    assert len(pd.read_csv(path)) == 6


def test_output_path_that_is_a_folder_is_a_sink_error(tmp_path, fmt):
    with pytest.raises(adpipe.SinkError, match="is a folder"):
        FILE_SINKS[fmt](path=tmp_path).open(context())


def test_compressed_text_outputs(tmp_path):
    run(CsvSink(path=tmp_path / "s.csv.gz"), results(range(3)), results(range(3, 5)))
    run(JsonlSink(path=tmp_path / "s.jsonl.gz"), results(range(3)), results(range(3, 5)))
    assert len(pd.read_csv(tmp_path / "s.csv.gz")) == 5
    with gzip.open(tmp_path / "s.jsonl.gz", "rt") as fh:
        assert len(fh.readlines()) == 5


def test_csv_options(tmp_path):
    path = tmp_path / "s.csv"
    run(CsvSink(path=path, sep=";", float_format="%.2f"), results(range(3)))
    assert path.read_text().splitlines()[2].startswith("1;0.50;")


def test_parquet_keeps_types_and_compression(tmp_path):
    import pyarrow.parquet as pq

    path = tmp_path / "s.parquet"
    run(ParquetSink(path=path, compression="zstd"), results(range(3)), results(range(3, 6)))
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == 2
    assert meta.row_group(0).column(0).compression == "ZSTD"
    back = pd.read_parquet(path)
    assert back["is_anomaly"].dtype == "int64" and back["anomaly_score"].dtype == "float64"
    assert pd.api.types.is_string_dtype(back["severity"])


def test_parquet_casts_later_batches_to_the_first_schema(tmp_path):
    path = tmp_path / "s.parquet"
    first = results(range(3)).assign(note=[None, None, None])  # all-missing text: stored as string
    later = results(range(3, 6)).assign(note=["a", None, "c"], is_anomaly=[0.0, 1.0, 0.0])
    run(ParquetSink(path=path), first, later)
    back = pd.read_parquet(path)
    assert back["note"].iloc[[3, 5]].tolist() == ["a", "c"] and back["note"].isna().sum() == 4
    assert back["is_anomaly"].dtype == "int64"


def test_parquet_incompatible_batch_is_a_sink_error_naming_the_column(tmp_path):
    sink = ParquetSink(path=tmp_path / "s.parquet")
    sink.open(context())
    sink.write(results(range(3)))
    with pytest.raises(adpipe.SinkError, match="'anomaly_score'"):
        sink.write(results(range(3)).assign(anomaly_score=["high", "low", "x"]))
    sink.close(False)
    assert list(tmp_path.iterdir()) == []


def test_file_sink_write_without_open_opens_it(tmp_path):
    sink = CsvSink(path=tmp_path / "s.csv")
    sink.write(results(range(2)))
    sink.close(True)
    assert len(pd.read_csv(tmp_path / "s.csv")) == 2


def test_close_without_open_is_harmless(tmp_path):
    for cls in FILE_SINKS.values():
        cls(path=tmp_path / "x").close(True)
        cls(path=tmp_path / "x").close(False)
    assert list(tmp_path.iterdir()) == []


# -- memory and console ------------------------------------------------------------


def test_memory_sink_collects_frames():
    sink = MemorySink()
    run(sink, results(range(2)), results(range(2, 5)))
    assert len(sink.frames) == 2 and sink.outputs() == []
    assert sink.frame()["id"].tolist() == [0, 1, 2, 3, 4]
    run(sink, results(range(3)), success=False)
    assert sink.frames == [] and sink.frame().empty


def test_console_sink_prints_the_top_anomalies(capsys):
    sink = ConsoleSink(top=2)
    frames = [results(range(0, 6)), results(range(6, 12), score_offset=10)]
    run(sink, *frames)
    out = capsys.readouterr().err
    assert "6 anomalies in 12 rows" in out and "6 high" in out
    assert "top 2 anomalies" in out
    # the two highest flagged scores are ids 11 and 9 (odd ids are flagged, scores rise with the id)
    rows = [line for line in out.splitlines() if "high" in line and "│" in line]
    assert [line.split("│")[1].strip() for line in rows] == ["11", "9"]


def test_console_sink_can_print_to_stdout(capsys):
    sink = ConsoleSink(stream="stdout")
    sink.open(context())
    sink.write(pd.DataFrame({"id": [1], "anomaly_score": [2.0], "anomaly_probability": [0.99], "is_anomaly": [1],
                             "severity": ["high"], "model_version": "m", "run_id": "r"}))
    sink.close(True)
    assert "1 anomalies in 1 rows" in capsys.readouterr().out


def test_console_sink_is_quiet_on_failure_and_handles_no_anomalies(capsys):
    run(ConsoleSink(), results(range(4)), success=False)
    assert capsys.readouterr().err == ""
    run(ConsoleSink(), results(range(4)).assign(is_anomaly=0))
    out = capsys.readouterr().err
    assert "0 anomalies in 4 rows" in out and "top" not in out


# -- sql on SQLite --------------------------------------------------------------------


def sqlite_rows(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def test_sql_params():
    with pytest.raises(pydantic.ValidationError, match="exactly one of"):
        SqlSink(table="t")
    with pytest.raises(pydantic.ValidationError, match="exactly one of"):
        SqlSink(table="t", url="sqlite://", path="x.db")
    assert SqlSink(url="sqlite://", table="t", schema="main").params.db_schema == "main"
    sink = SqlSink(url="postgresql+psycopg://u:s3cret@db/x", table="t")
    assert "s3cret" not in repr(sink) and "s3cret" not in str(sink.params.model_dump())
    assert "s3cret" not in sink.outputs()[0] and "***" in sink.outputs()[0]


def test_sql_sink_creates_a_keyed_table_and_upserts(tmp_path):
    db = tmp_path / "sub" / "results.db"  # the folder is created
    sink = SqlSink(path=db, table="scores")
    sink.open(context())  # key defaults to the context's id_columns
    sink.write(results(range(5)))
    sink.write(results(range(5)))  # a replayed batch
    sink.write(results(range(3, 8), score_offset=100, run_id="run-2"))  # overlaps ids 3 and 4
    sink.close(True)
    assert sqlite_rows(db, "select count(*), count(distinct id) from scores") == [(8, 8)]
    assert sqlite_rows(db, "select run_id from scores where id = 4") == [("run-2",)]
    assert sqlite_rows(db, "select run_id from scores where id = 0") == [("run-1",)]
    (ddl,) = sqlite_rows(db, "select sql from sqlite_master where name = 'scores'")[0]
    assert "PRIMARY KEY (id)" in ddl and "BIGINT" in ddl and "TEXT" in ddl
    assert sink.outputs() == [f"sqlite:///{db.resolve()}#scores"]


def test_sql_sink_rerun_is_idempotent(tmp_path):
    db = tmp_path / "r.db"
    for _ in range(2):
        run(SqlSink(path=db, table="scores"), results(range(4)), results(range(4, 6)))
    assert sqlite_rows(db, "select count(*) from scores") == [(6,)]


def test_sql_sink_explicit_composite_key_and_url(tmp_path):
    db = tmp_path / "k.db"
    frame = results(range(4)).assign(day=["d1", "d1", "d2", "d2"])
    sink = SqlSink(url=f"sqlite:///{db}", table="scores", key=["day", "id"])
    sink.open(adpipe.RunContext(pipeline="t"))  # no id columns in the context: the key param is used
    sink.write(frame)
    sink.write(frame.assign(day="d3"))
    sink.write(frame)
    sink.close(True)
    assert sqlite_rows(db, "select count(*) from scores") == [(8,)]


def test_sql_sink_duplicate_keys_in_one_batch_keep_the_last(tmp_path):
    db = tmp_path / "d.db"
    frame = pd.concat([results([1, 2]), results([1], run_id="last")], ignore_index=True)
    run(SqlSink(path=db, table="scores"), frame)
    assert sqlite_rows(db, "select id, run_id from scores order by id") == [(1, "last"), (2, "run-1")]


def test_sql_sink_existing_table_without_unique_key_uses_delete_then_insert(tmp_path):
    db = tmp_path / "e.db"
    frame = results(range(4))
    with sqlite3.connect(db) as conn:
        conn.execute(
            "create table scores (id integer, anomaly_score real, anomaly_probability real, is_anomaly integer, "
            "severity text, model_version text, run_id text, extra text)"
        )
    for _ in range(2):
        run(SqlSink(path=db, table="scores"), frame)
    assert sqlite_rows(db, "select count(*), count(distinct id) from scores") == [(4, 4)]


def test_sql_sink_without_any_key_is_a_sink_error(tmp_path):
    with pytest.raises(adpipe.SinkError, match="needs key columns"):
        SqlSink(path=tmp_path / "x.db", table="t").open(adpipe.RunContext(pipeline="t"))


def test_sql_sink_missing_key_column_is_a_sink_error(tmp_path):
    sink = SqlSink(path=tmp_path / "x.db", table="t", key=["transaction_id"])
    sink.open(context())
    with pytest.raises(adpipe.SinkError, match="transaction_id"):
        sink.write(results(range(3)))
    sink.close(False)


def test_sql_sink_missing_key_values_are_a_sink_error(tmp_path):
    sink = SqlSink(path=tmp_path / "x.db", table="t")
    sink.open(context())
    with pytest.raises(adpipe.SinkError, match="1 row"):
        sink.write(results(range(3)).astype({"id": "float64"}).assign(id=[1.0, None, 3.0]))
    sink.close(False)


def test_sql_sink_new_columns_against_an_existing_table_are_a_sink_error(tmp_path):
    db = tmp_path / "x.db"
    run(SqlSink(path=db, table="t"), results(range(3)))
    sink = SqlSink(path=db, table="t")
    sink.open(context())
    with pytest.raises(adpipe.SinkError, match="no column"):
        sink.write(results(range(3)).assign(surprise=1))
    sink.close(False)


def test_sql_sink_connection_failure_masks_the_password():
    sink = SqlSink(url="postgresql+psycopg://someone:s3cret@127.0.0.1:1/nodb", table="t")
    with pytest.raises(adpipe.SinkError, match="Cannot connect") as err:
        sink.open(context())
    text = str(err.value)
    assert "s3cret" not in text and "someone:***@127.0.0.1:1/nodb" in text


def test_sql_sink_bad_url_is_a_sink_error():
    with pytest.raises(adpipe.SinkError, match="Cannot use the database URL"):
        SqlSink(url="nosuchdb://u:pw@h/x", table="t").open(context())


def test_non_string_column_names_are_written_as_strings(tmp_path):
    frame = pd.DataFrame({0: [1, 2], 1: [0.5, 0.7]})
    run(ParquetSink(path=tmp_path / "s.parquet"), frame)
    assert list(pd.read_parquet(tmp_path / "s.parquet").columns) == ["0", "1"]
    sink = SqlSink(path=tmp_path / "s.db", table="t", key=["0"])
    run(sink, frame)
    assert sqlite_rows(tmp_path / "s.db", 'select "0", "1" from t order by 1') == [(1, 0.5), (2, 0.7)]
