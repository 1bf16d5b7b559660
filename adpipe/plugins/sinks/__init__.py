"""Built-in sinks: csv, parquet, jsonl files, SQL tables, Kafka, Redis Streams, the console and memory."""

import adpipe
from adpipe.plugins.sinks.console import ConsoleSink
from adpipe.plugins.sinks.csv import CsvSink
from adpipe.plugins.sinks.jsonl import JsonlSink
from adpipe.plugins.sinks.kafka import KafkaSink
from adpipe.plugins.sinks.memory import MemorySink
from adpipe.plugins.sinks.parquet import ParquetSink
from adpipe.plugins.sinks.redis_stream import RedisStreamSink
from adpipe.plugins.sinks.sql import SqlSink

SINKS = (CsvSink, ParquetSink, JsonlSink, SqlSink, ConsoleSink, MemorySink, KafkaSink, RedisStreamSink)


@adpipe.hookimpl
def adpipe_register(registry):
    for cls in SINKS:
        registry.add(cls)
