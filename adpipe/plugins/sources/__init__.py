"""Built-in sources: csv, parquet, jsonl files, in-memory data (dataframe), Kafka and Redis Streams."""

import adpipe
from adpipe.plugins.sources.csv import CsvSource
from adpipe.plugins.sources.dataframe import DataFrameSource
from adpipe.plugins.sources.jsonl import JsonlSource
from adpipe.plugins.sources.kafka import KafkaSource
from adpipe.plugins.sources.parquet import ParquetSource
from adpipe.plugins.sources.redis_stream import RedisStreamSource

SOURCES = (CsvSource, ParquetSource, JsonlSource, DataFrameSource, KafkaSource, RedisStreamSource)


@adpipe.hookimpl
def adpipe_register(registry):
    for cls in SOURCES:
        registry.add(cls)
