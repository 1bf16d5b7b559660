"""The Spark source and sink (``type: spark``): reading paths, tables and queries; writing paths and tables."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pydantic
import pytest
from conftest import run_cli

import adpipe
from adpipe.core.config import load_config
from adpipe.integrations.spark.io import SparkSink, SparkSource  # imports PySpark only when used

pytest.importorskip("pyspark")

FEATURES = ["f0", "f1", "f2", "f3"]
_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}_{next(_names)}"


def make_data(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=FEATURES)
    frame.iloc[-20:] += rng.uniform(6, 9, size=(20, len(FEATURES)))  # a few far-away rows
    frame.insert(0, "id", np.arange(n, dtype="int64"))
    frame["segment"] = rng.choice(["retail", "online", "atm"], size=n)
    return frame


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return make_data()


@pytest.fixture
def parquet(tmp_path: Path, data: pd.DataFrame) -> Path:
    path = tmp_path / "data.parquet"
    data.to_parquet(path, index=False)
    return path


def read_all(source: SparkSource, batch_rows: int = 300) -> tuple[pd.DataFrame, list[adpipe.Batch]]:
    batches = list(source.batches(batch_rows))
    return pd.concat([b.data for b in batches], ignore_index=True), batches


def to_spark(spark, frame: pd.DataFrame):
    """A Spark DataFrame of ``frame`` through Arrow (PySpark's own pandas path warns about pandas 3)."""
    return spark.createDataFrame(pa.Table.from_pandas(frame, preserve_index=False))


def read_back(spark, path: Path | str, fmt: str = "parquet") -> pd.DataFrame:
    return spark.read.format(fmt).load(str(path)).toArrow().to_pandas().sort_values("id", ignore_index=True)


def assert_no_java(message: str) -> None:
    assert "at org.apache" not in message and "\tat " not in message and "Py4J" not in message


# ------------------------------------------------------------------ source
def test_source_reads_a_parquet_path_in_bounded_batches(spark, parquet, data):
    frame, batches = read_all(SparkSource(path=str(parquet)), batch_rows=300)
    assert [len(b.data) for b in batches] == [300] * 6 + [200]
    pd.testing.assert_frame_equal(frame, data)  # same values, same order, same dtypes
    assert frame["id"].dtype == "int64" and all(frame[f].dtype == "float64" for f in FEATURES)
    assert pd.api.types.is_string_dtype(frame["segment"])
    assert batches[1].meta == {"spark": str(parquet), "row_start": 300, "rows": 300}


def test_source_reads_csv_with_options(spark, tmp_path, data):
    path = tmp_path / "data.csv"
    data.to_csv(path, index=False)
    source = SparkSource(path=str(path), format="csv", options={"header": True, "inferSchema": "true"})
    frame, _ = read_all(source, batch_rows=1000)
    pd.testing.assert_frame_equal(frame, data, check_dtype=False, check_exact=False, rtol=1e-12)
    assert frame["id"].dtype == "int32" and frame["f0"].dtype == "float64"  # Spark infers int, not bigint


def test_source_reads_a_temp_view_by_name_with_columns_and_where(spark, data):
    view = unique("spark_io_view")
    to_spark(spark, data).createOrReplaceTempView(view)
    source = SparkSource(table=view, columns=["id", "f1", "segment"], where="segment = 'online' AND f0 > 0")
    frame, batches = read_all(source, batch_rows=128)
    expected = data.loc[(data.segment == "online") & (data.f0 > 0), ["id", "f1", "segment"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(frame.sort_values("id", ignore_index=True), expected)
    assert max(len(b.data) for b in batches) <= 128
    assert batches[0].meta["spark"] == view


def test_source_reads_a_query_and_keeps_numbers_numeric(spark, data):
    view = unique("spark_io_query")
    to_spark(spark, data).createOrReplaceTempView(view)
    query = f"SELECT id, CAST(f0 AS DECIMAL(12, 4)) AS amount, segment FROM {view} WHERE id < 500"
    frame, _ = read_all(SparkSource(query=query, where="id >= 100"), batch_rows=1000)
    frame = frame.sort_values("id", ignore_index=True)
    assert frame["id"].tolist() == list(range(100, 500))
    assert frame["amount"].dtype == "float64"  # decimals arrive as numbers, not Decimal objects
    np.testing.assert_allclose(frame["amount"], data.f0.iloc[100:500].round(4), atol=1e-12)
    assert frame["segment"].tolist() == data.segment.iloc[100:500].tolist()


def test_source_reads_a_folder_of_many_partitions_in_order(spark, tmp_path, data):
    out = tmp_path / "many"
    to_spark(spark, data).repartition(7).sortWithinPartitions("id").write.parquet(str(out))
    frame, batches = read_all(SparkSource(path=str(out)), batch_rows=333)
    assert all(len(b.data) == 333 for b in batches[:-1]) and sum(len(b.data) for b in batches) == len(data)
    assert sorted(frame["id"]) == list(range(len(data)))


def test_missing_path_is_a_source_error_without_java_frames(spark, tmp_path):
    missing = tmp_path / "nowhere.parquet"
    with pytest.raises(adpipe.SourceError, match="does not exist") as info:  # a local path: checked before Spark
        list(SparkSource(path=str(missing)).batches(100))
    assert "nowhere.parquet" in str(info.value) and "relative paths" in info.value.hint
    with pytest.raises(adpipe.SourceError) as info:  # a URI: Spark's AnalysisException, translated
        list(SparkSource(path=missing.as_uri()).batches(100))
    message = str(info.value)
    assert "PATH_NOT_FOUND" in message and "nowhere.parquet" in message
    assert "hint:" in message and info.value.exit_code == 6
    assert_no_java(message)


def test_missing_table_is_a_source_error_without_java_frames(spark):
    with pytest.raises(adpipe.SourceError) as info:
        list(SparkSource(table="no_such_table_here").batches(100))
    message = str(info.value)
    assert "TABLE_OR_VIEW_NOT_FOUND" in message and "no_such_table_here" in message
    assert "temp view" in info.value.hint
    assert_no_java(message)


def test_bad_column_query_and_format_are_source_errors(spark, parquet):
    for params in ({"path": str(parquet), "columns": ["nope"]}, {"query": "SELEC 1"},
                   {"path": str(parquet), "format": "no_such_format"}):
        with pytest.raises(adpipe.SourceError) as info:
            list(SparkSource(**params).batches(100))
        assert_no_java(str(info.value))


def test_no_rows_is_a_data_error(spark, parquet):
    with pytest.raises(adpipe.DataError, match="has no rows"):
        list(SparkSource(path=str(parquet), where="id < 0").batches(100))


def test_exactly_one_of_table_path_query(tmp_path):
    with pytest.raises(pydantic.ValidationError, match="exactly one of `table`, `path`, `query`"):
        SparkSource()
    with pytest.raises(pydantic.ValidationError, match="got table and query"):
        SparkSource(table="t", query="SELECT 1")
    with pytest.raises(pydantic.ValidationError, match="exactly one of `table`, `path`"):
        SparkSink(table="t", path="out")
    with pytest.raises(pydantic.ValidationError, match="Extra inputs"):
        SparkSource(table="t", tabel="x")
    reg = adpipe.get_registry()  # registered by the spark plugin
    cfg = {"columns": {"features": FEATURES}, "detector": {"type": "iforest"},
           "source": {"type": "spark", "path": "a.parquet", "table": "t"}}
    with pytest.raises(adpipe.ConfigError, match="exactly one"):
        load_config(data=cfg, base_dir=tmp_path, registry=reg)
    cfg["source"] = {"type": "spark", "path": "a.parquet"}
    assert load_config(data=cfg, base_dir=tmp_path, registry=reg).source.params.path == tmp_path / "a.parquet"


# ------------------------------------------------------------------ sink
def run_sink(sink: SparkSink, *frames: pd.DataFrame) -> None:
    sink.open(None)
    for frame in frames:
        sink.write(frame)
    sink.close(True)


def test_sink_overwrite_replaces_the_previous_run(spark, tmp_path, data):
    out = tmp_path / "scores"
    run_sink(SparkSink(path=str(out)), data.iloc[:700], data.iloc[700:1500])
    pd.testing.assert_frame_equal(read_back(spark, out), data.iloc[:1500].reset_index(drop=True))
    sink = SparkSink(path=str(out))
    run_sink(sink, data.iloc[1500:])  # a second run replaces the first one's rows
    pd.testing.assert_frame_equal(read_back(spark, out), data.iloc[1500:].reset_index(drop=True))
    assert sink.outputs() == [str(out)]


def test_sink_append_adds_rows(spark, tmp_path, data):
    out = tmp_path / "scores"
    run_sink(SparkSink(path=str(out)), data.iloc[:1000])
    run_sink(SparkSink(path=str(out), mode="append"), data.iloc[1000:1200], data.iloc[1200:])
    pd.testing.assert_frame_equal(read_back(spark, out), data)


def test_sink_error_mode_refuses_an_existing_path(spark, tmp_path, data):
    out = tmp_path / "scores"
    run_sink(SparkSink(path=str(out), mode="error"), data.iloc[:10], data.iloc[10:30])  # new: written
    assert len(read_back(spark, out)) == 30
    with pytest.raises(adpipe.SinkError, match="exists already") as info:
        SparkSink(path=str(out), mode="error").open(None)
    assert info.value.exit_code == 7
    assert len(read_back(spark, out)) == 30


def test_sink_partition_by_and_csv_options(spark, tmp_path, data):
    out = tmp_path / "parts"
    run_sink(SparkSink(path=str(out), partition_by=["segment"]), data.iloc[:1000], data.iloc[1000:])
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["segment=atm", "segment=online", "segment=retail"]
    back = read_back(spark, out)
    pd.testing.assert_frame_equal(back[data.columns], data)
    csv = tmp_path / "csv"
    run_sink(SparkSink(path=str(csv), format="csv", options={"header": True}), data.iloc[:50])
    assert len(pd.concat(pd.read_csv(f) for f in csv.glob("part-*.csv"))) == 50


def test_sink_gives_all_missing_text_a_string_type_and_keeps_the_first_types(spark, tmp_path):
    out = tmp_path / "scores"
    first = pd.DataFrame({"id": [1, 2], "score": [0.5, 0.7], "reason": pd.Series([None, None], dtype=object)})
    later = pd.DataFrame({"id": [3], "score": [1], "reason": ["far from the median"]})  # int score, text reason
    run_sink(SparkSink(path=str(out)), first, later)
    df = spark.read.parquet(str(out))
    assert dict(df.dtypes) == {"id": "bigint", "score": "double", "reason": "string"}
    assert df.count() == 3


def test_sink_writes_a_table(spark, tmp_path, data):
    table = unique("spark_io_scores")
    options = {"path": str(tmp_path / "table")}  # an external table: its files stay in tmp_path
    run_sink(SparkSink(table=table, options=options), data.iloc[:100], data.iloc[100:300])
    assert spark.table(table).count() == 300
    with pytest.raises(adpipe.SinkError, match="exists already"):
        SparkSink(table=table, mode="error").open(None)
    run_sink(SparkSink(table=table, mode="append"), data.iloc[300:400])
    assert spark.table(table).count() == 400
    frame, _ = read_all(SparkSource(table=table), batch_rows=1000)  # and the source reads it back
    assert sorted(frame["id"]) == list(range(400))
    spark.sql(f"DROP TABLE {table}")


def test_sink_spark_errors_are_sink_errors(spark, tmp_path, data):
    sink = SparkSink(path=str(tmp_path / "scores"), partition_by=["no_such_column"])
    sink.open(None)
    with pytest.raises(adpipe.SinkError, match="no_such_column") as info:
        sink.write(data.iloc[:10])
    assert_no_java(str(info.value))
    with pytest.raises(adpipe.SinkError, match="before open"):
        SparkSink(path=str(tmp_path / "x")).write(data)


# ------------------------------------------------------------------ end to end
RESULT_COLUMNS = ["anomaly_score", "anomaly_probability", "is_anomaly", "severity", "model_version", "run_id"]


def test_end_to_end_spark_source_to_spark_sink(spark, tmp_path, parquet, data):
    reg = adpipe.get_registry()  # registered by the spark plugin
    out = tmp_path / "scores"
    cfg = {"columns": {"id": ["id"], "features": FEATURES},
           "source": {"type": "spark", "path": str(parquet)},
           "detector": {"type": "iforest", "random_state": 0},
           "sinks": [{"type": "spark", "path": str(out)}]}
    pipeline = adpipe.Pipeline.from_dict(cfg, base_dir=tmp_path, registry=reg)
    summary = pipeline.run()
    assert summary.rows_in == len(data) and summary.outputs == [str(out)]

    result = read_back(spark, out)
    assert len(result) == len(data) and result["id"].tolist() == data["id"].tolist()
    assert set(RESULT_COLUMNS) <= set(result.columns)
    assert result["run_id"].nunique() == 1 and result["run_id"].iloc[0] == summary.run_id
    assert result["is_anomaly"].sum() > 0

    # the same pipeline reading and writing Parquet files scores every row the same
    plain = dict(cfg, source={"type": "parquet", "path": str(parquet)},
                 sinks=[{"type": "parquet", "path": str(tmp_path / "plain.parquet")}])
    adpipe.Pipeline.from_dict(plain, base_dir=tmp_path, registry=reg).run()
    expected = pd.read_parquet(tmp_path / "plain.parquet").sort_values("id", ignore_index=True)
    for column in ["anomaly_score", "anomaly_probability"]:
        np.testing.assert_allclose(result[column], expected[column], rtol=0, atol=1e-9)
    assert result["is_anomaly"].tolist() == expected["is_anomaly"].tolist()
    assert result["severity"].tolist() == expected["severity"].tolist()
    np.testing.assert_allclose(result["anomaly_score"], pipeline.model_.score(data)["anomaly_score"], atol=1e-9)


def test_conformance_kit(spark, tmp_path, parquet):
    from adpipe.testing import check_plugin

    check_plugin(SparkSource, {"path": str(parquet)})
    check_plugin(SparkSink, {"path": str(tmp_path / "conformance")})
    assert SparkSource.requires == SparkSink.requires == ("pyspark",)
    assert SparkSource.summary().startswith("Read a Spark table") and SparkSink.summary().startswith("Write results")


def test_cli_runs_a_config_from_a_spark_path_to_a_partitioned_spark_path(tmp_path, parquet, data):
    """`adpipe run` with `type: spark` on both ends, in its own process with its own local Spark."""
    config = tmp_path / "spark.yaml"
    config.write_text(
        "columns: {id: [id, segment], features: [f0, f1, f2, f3]}\n"
        f"source: {{type: spark, path: {parquet.name}, where: \"segment != 'atm'\", master: 'local[1]'}}\n"
        "detector: {type: iforest, random_state: 0}\n"
        "sinks: [{type: spark, path: out, partition_by: [segment]}]\n"
    )
    done = run_cli("run", f"config={config}", cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = pd.read_parquet(tmp_path / "out")
    expected = data[data["segment"] != "atm"]
    assert sorted(result["id"]) == sorted(expected["id"]) and set(result["segment"].astype(str)) == {"retail", "online"}
    assert set(RESULT_COLUMNS) <= set(result.columns)

    config.write_text(config.read_text().replace("id: [id, segment]", "id: [id]").replace("out", "out2"))
    done = run_cli("run", f"config={config}", cwd=tmp_path, timeout=300)
    assert done.returncode != 0 and "SinkError" in done.stderr and "the results have no such column" in done.stderr
    assert "at org.apache" not in done.stderr
