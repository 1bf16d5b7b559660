"""Built-in sources: csv, parquet, jsonl files and in-memory data (dataframe)."""

import adpipe
from adpipe.plugins.sources.csv import CsvSource
from adpipe.plugins.sources.dataframe import DataFrameSource
from adpipe.plugins.sources.jsonl import JsonlSource
from adpipe.plugins.sources.parquet import ParquetSource

SOURCES = (CsvSource, ParquetSource, JsonlSource, DataFrameSource)


@adpipe.hookimpl
def adpipe_register(registry):
    for cls in SOURCES:
        registry.add(cls)
