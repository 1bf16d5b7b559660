"""Built-in sources: chunked reading, typed errors with useful text, round trips."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pydantic
import pytest

import adpipe
from adpipe.core.registry import Registry
from adpipe.plugins import sources
from adpipe.plugins.sources import CsvSource, DataFrameSource, JsonlSource, ParquetSource


def sample(rows: int = 10) -> pd.DataFrame:
    return pd.DataFrame({"id": np.arange(rows), "amount": np.arange(rows) * 1.5, "kind": ["a", "b"] * (rows // 2)})


def read_all(source: adpipe.Source, batch_rows: int) -> list[adpipe.Batch]:
    try:
        return list(source.batches(batch_rows))
    finally:
        source.close()


def sizes(batches: list[adpipe.Batch]) -> list[int]:
    return [len(b.data) for b in batches]


def starts(batches: list[adpipe.Batch]) -> list[int]:
    return [b.meta["row_start"] for b in batches]


# -- registration and params --------------------------------------------------


def test_sources_register_through_the_hook():
    registry = Registry()
    registry.register_module(sources)
    assert registry.names("source") == ["csv", "dataframe", "jsonl", "kafka", "parquet", "redis_stream"]


@pytest.mark.parametrize("cls", [CsvSource, ParquetSource, JsonlSource])
def test_path_params_are_paths_and_unknown_keys_are_rejected(cls):
    assert cls.Params.model_fields["path"].annotation is Path
    with pytest.raises(pydantic.ValidationError, match="nope"):
        cls(path="x", nope=1)


def test_csv_params_are_validated():
    with pytest.raises(pydantic.ValidationError, match="not a pandas dtype"):
        CsvSource(path="x.csv", dtype={"id": "integerish"})
    with pytest.raises(pydantic.ValidationError, match="unknown text encoding"):
        CsvSource(path="x.csv", encoding="klingon")


# -- csv -------------------------------------------------------------------------


def test_csv_reads_in_batches_of_batch_rows(tmp_path):
    path = tmp_path / "data.csv"
    sample(10).to_csv(path, index=False)
    batches = read_all(CsvSource(path=path), 4)
    assert sizes(batches) == [4, 4, 2]
    assert starts(batches) == [0, 4, 8]
    assert all(b.meta["source"] == str(path) for b in batches)
    frame = pd.concat(b.data for b in batches)
    pd.testing.assert_frame_equal(frame, sample(10), check_dtype=False)
    assert list(frame.index) == list(range(10))


def test_csv_streams_instead_of_loading_the_file(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n" + "1,2\n" * 100 + "1,2,3\n")
    batches = CsvSource(path=path).batches(10)
    assert len(next(batches).data) == 10  # the bad line at the end has not been read yet
    with pytest.raises(adpipe.SourceError, match="line 102"):
        list(batches)


def test_csv_keeps_values_as_pandas_parses_them(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("id,amount,note\n007,1.5,x\n008,n/a,\n")
    (batch,) = read_all(CsvSource(path=path, dtype={"id": "str"}, na_values=["n/a"]), 100)
    assert list(batch.data["id"]) == ["007", "008"]
    assert batch.data["amount"].isna().tolist() == [False, True]


def test_csv_options(tmp_path):
    path = tmp_path / "data.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("# exported\nid;amount;extra\n1;1,5;x\n2;2,5;y\n")
    source = CsvSource(path=path, sep=";", decimal=",", comment="#", columns=["id", "amount"])
    (batch,) = read_all(source, 100)
    assert list(batch.data.columns) == ["id", "amount"]
    assert batch.data["amount"].tolist() == [1.5, 2.5]


def test_csv_max_rows(tmp_path):
    path = tmp_path / "data.csv"
    sample(10).to_csv(path, index=False)
    assert sizes(read_all(CsvSource(path=path, max_rows=5), 4)) == [4, 1]


def test_csv_missing_file_names_the_path_and_its_absolute_form(tmp_path):
    path = tmp_path / "nowhere" / "data.csv"
    with pytest.raises(adpipe.SourceError) as err:
        read_all(CsvSource(path=path), 10)
    text = str(err.value)
    assert str(path) in text and str(path.resolve()) in text
    assert "hint:" in text and "config file's folder" in text


def test_csv_relative_missing_path_shows_where_it_was_looked_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(adpipe.SourceError) as err:
        read_all(CsvSource(path="data/x.csv"), 10)
    assert str(tmp_path / "data" / "x.csv") in str(err.value)


def test_csv_folder_is_a_source_error(tmp_path):
    with pytest.raises(adpipe.SourceError, match="is a folder"):
        read_all(CsvSource(path=tmp_path), 10)


@pytest.mark.parametrize("content", ["", "\n\n", "a,b,c\n"], ids=["zero-bytes", "blank-lines", "header-only"])
def test_csv_empty_file_is_a_data_error(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(adpipe.DataError, match="is empty") as err:
        read_all(CsvSource(path=path), 10)
    assert str(path) in str(err.value) and err.value.hint


def test_csv_ragged_rows_are_a_source_error_with_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n3,4\n5,6,7\n")
    with pytest.raises(adpipe.SourceError) as err:
        read_all(CsvSource(path=path), 10)
    assert "line 4" in str(err.value) and str(path) in str(err.value)
    assert "sep" in err.value.hint


def test_csv_wrong_encoding_is_a_source_error_with_a_hint(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("name,x\nJosé,1\n".encode("latin-1"))
    with pytest.raises(adpipe.SourceError, match="not valid utf-8") as err:
        read_all(CsvSource(path=path), 10)
    assert "encoding" in err.value.hint
    (batch,) = read_all(CsvSource(path=path, encoding="latin-1"), 10)
    assert batch.data["name"].tolist() == ["José"]


def test_csv_missing_columns_are_a_data_error_listing_the_available_ones(tmp_path):
    path = tmp_path / "data.csv"
    sample(4).to_csv(path, index=False)
    with pytest.raises(adpipe.DataError, match="'nope'") as err:
        read_all(CsvSource(path=path, columns=["id", "nope"]), 10)
    assert "id, amount, kind" in err.value.hint


# -- parquet -----------------------------------------------------------------------


def test_parquet_round_trip_in_exact_batches_across_row_groups(tmp_path):
    path = tmp_path / "data.parquet"
    pq.write_table(pa.Table.from_pandas(sample(10), preserve_index=False), path, row_group_size=3)
    batches = read_all(ParquetSource(path=path), 4)
    assert sizes(batches) == [4, 4, 2]
    assert starts(batches) == [0, 4, 8]
    pd.testing.assert_frame_equal(pd.concat([b.data for b in batches], ignore_index=True), sample(10))


def test_parquet_columns(tmp_path):
    path = tmp_path / "data.parquet"
    sample(6).to_parquet(path)
    (batch,) = read_all(ParquetSource(path=path, columns=["amount"]), 100)
    assert list(batch.data.columns) == ["amount"]
    with pytest.raises(adpipe.DataError, match="'nope'"):
        read_all(ParquetSource(path=path, columns=["nope"]), 100)


def test_parquet_folder_reads_every_file_and_skips_hidden_ones(tmp_path):
    folder = tmp_path / "parts"
    (folder / "day=1").mkdir(parents=True)
    (folder / "day=2").mkdir()
    sample(4).to_parquet(folder / "day=1" / "part-0.parquet")
    sample(6).to_parquet(folder / "day=2" / "part-0.parquet")
    (folder / ".part.parquet.tmp-123").write_bytes(b"half written")
    (folder / "_SUCCESS").write_text("")
    (folder / "run.summary.json").write_text("{}")
    batches = read_all(ParquetSource(path=folder), 3)
    assert sizes(batches) == [3, 3, 3, 1]
    frame = pd.concat(b.data for b in batches)
    assert sorted(frame["day"].astype(int).tolist()) == [1] * 4 + [2] * 6  # hive partition column


def test_parquet_missing_file(tmp_path):
    with pytest.raises(adpipe.SourceError, match="not found") as err:
        read_all(ParquetSource(path=tmp_path / "x.parquet"), 10)
    assert str((tmp_path / "x.parquet").resolve()) in str(err.value)


def test_parquet_not_parquet_is_a_source_error(tmp_path):
    path = tmp_path / "fake.parquet"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(adpipe.SourceError, match="Parquet"):
        read_all(ParquetSource(path=path), 10)


def test_parquet_empty_file_and_empty_folder_are_data_errors(tmp_path):
    path = tmp_path / "empty.parquet"
    sample(4).iloc[:0].to_parquet(path)
    with pytest.raises(adpipe.DataError, match="is empty"):
        read_all(ParquetSource(path=path), 10)
    (tmp_path / "none").mkdir()
    with pytest.raises(adpipe.DataError, match="is empty"):
        read_all(ParquetSource(path=tmp_path / "none"), 10)


# -- jsonl -------------------------------------------------------------------------


def test_jsonl_round_trip_in_batches(tmp_path):
    path = tmp_path / "data.jsonl"
    sample(10).to_json(path, orient="records", lines=True)
    batches = read_all(JsonlSource(path=path), 4)
    assert sizes(batches) == [4, 4, 2]
    assert starts(batches) == [0, 4, 8]
    pd.testing.assert_frame_equal(pd.concat(b.data for b in batches), sample(10), check_dtype=False)


def test_jsonl_keeps_date_like_numbers_numeric_and_selects_columns(tmp_path):
    path = tmp_path / "data.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write('{"id": 1, "event_time": 1700000000, "x": 1.5}\n\n{"id": 2, "event_time": 1700000100, "x": 2.5}\n')
    (batch,) = read_all(JsonlSource(path=path, columns=["event_time", "x"]), 10)
    assert list(batch.data.columns) == ["event_time", "x"]
    assert pd.api.types.is_integer_dtype(batch.data["event_time"])
    with pytest.raises(adpipe.DataError, match="'nope'"):
        read_all(JsonlSource(path=path, columns=["nope"]), 10)


def test_jsonl_malformed_line_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    lines = [f'{{"id": {i}}}' for i in range(7)]
    lines[5] = '{"id": 5,'
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(adpipe.SourceError, match="line 6") as err:
        read_all(JsonlSource(path=path), 2)
    assert str(path) in str(err.value) and "JSON object" in err.value.hint


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_jsonl_empty_is_a_data_error(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(adpipe.DataError, match="is empty"):
        read_all(JsonlSource(path=path), 10)


def test_jsonl_missing_file(tmp_path):
    with pytest.raises(adpipe.SourceError, match="not found"):
        read_all(JsonlSource(path=tmp_path / "x.jsonl"), 10)


# -- dataframe ----------------------------------------------------------------------


def test_dataframe_source_yields_slices():
    frame = sample(10)
    batches = read_all(DataFrameSource(data=frame), 4)
    assert sizes(batches) == [4, 4, 2]
    assert starts(batches) == [0, 4, 8]
    assert batches[0].meta["source"] == "dataframe"
    pd.testing.assert_frame_equal(pd.concat(b.data for b in batches), frame)


@pytest.mark.parametrize(
    "data", [np.arange(6.0).reshape(3, 2), [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]], ids=["numpy", "list-of-rows"]
)
def test_dataframe_source_names_array_columns(data):
    (batch,) = read_all(DataFrameSource(data=data), 10)
    assert list(batch.data.columns) == ["x0", "x1"]
    assert batch.data.to_numpy().tolist() == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]


def test_dataframe_source_keeps_types_of_mixed_rows_and_dicts():
    (batch,) = read_all(DataFrameSource(data=[[1, "a"], [2, "b"]]), 10)
    assert pd.api.types.is_integer_dtype(batch.data["x0"])
    (batch,) = read_all(DataFrameSource(data=[{"id": 1, "v": 0.5}]), 10)
    assert list(batch.data.columns) == ["id", "v"]


def test_dataframe_source_densifies_sparse_input_per_batch():
    sparse = pytest.importorskip("scipy.sparse")
    matrix = sparse.random(10, 3, density=0.3, format="coo", random_state=0)
    batches = read_all(DataFrameSource(data=matrix), 4)
    assert sizes(batches) == [4, 4, 2]
    dense = pd.concat(b.data for b in batches)
    assert list(dense.columns) == ["x0", "x1", "x2"]
    np.testing.assert_array_equal(dense.to_numpy(), matrix.toarray())


def test_dataframe_source_refuses_huge_sparse_input():
    sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(adpipe.DataError, match="dense cells"):
        DataFrameSource(data=sparse.csr_matrix((100_000, 3_000)))


def test_dataframe_source_bad_inputs():
    with pytest.raises(adpipe.DataError, match="2-D"):
        DataFrameSource(data=np.zeros((2, 2, 2)))
    with pytest.raises(adpipe.DataError, match="is empty"):
        read_all(DataFrameSource(data=pd.DataFrame({"a": []})), 10)
    assert "3 x 2" in repr(DataFrameSource(data=np.zeros((3, 2))))


def test_jsonl_dtype(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"id": 7, "x": "1.5"}\n{"id": 8, "x": "oops"}\n')
    (batch,) = read_all(JsonlSource(path=path, dtype={"id": "str"}), 10)
    assert batch.data["id"].tolist() == ["7", "8"]
    with pytest.raises(adpipe.DataError, match="records 1-2"):
        read_all(JsonlSource(path=path, dtype={"x": "float64"}), 10)
