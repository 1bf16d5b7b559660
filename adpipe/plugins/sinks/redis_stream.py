"""Redis Streams sink: every result row XADDed as one JSON entry, optionally deduplicated on its key.

``write`` returns once Redis has every row (how durable that is depends on the server's persistence:
AOF with ``appendfsync always``/``everysec``). Delivery is at-least-once, so a replayed batch may be
written twice; with ``dedupe_seconds`` a row whose key was written within that time is skipped: a Lua
script checks ``adpipe:dedupe:<stream>:<key>``, XADDs and sets the key with an expiry, atomically.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
from pydantic import SecretStr

import adpipe
from adpipe.core.errors import SinkError
from adpipe.plugins.sources._records import encode_rows
from adpipe.plugins.sources.redis_stream import DEFAULT_URL, address, connect, connection_errors

# KEYS: stream, dedupe key; ARGV: field, ttl ms, maxlen ('' for none), row. XADD before SET: a failed
# XADD leaves no dedupe key behind (a script's writes are not rolled back on error).
DEDUPE_XADD = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if ARGV[3] == '' then
  redis.call('XADD', KEYS[1], '*', ARGV[1], ARGV[4])
else
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', ARGV[1], ARGV[4])
end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
return 1
"""


class RedisStreamSink(adpipe.Sink):
    """Append results to a Redis stream, one JSON entry per row (optionally deduplicated on the key)."""

    name = "redis_stream"
    requires = ("redis",)
    install_hint = "pip install 'adpipe[stream]'"
    durable = True

    class Params(adpipe.Params):
        url: SecretStr = adpipe.Field(DEFAULT_URL, validate_default=True, description="redis://[:password@]"
                                      "host:port/db (also rediss://, unix://); never printed")
        stream: str = adpipe.Field(min_length=1, description="stream key written to")
        field: str = adpipe.Field("data", min_length=1, description="entry field holding the row's JSON")
        maxlen: int | None = adpipe.Field(None, ge=1, description="trim the stream to about this many entries "
                                          "(MAXLEN ~)")
        key: list[str] | None = adpipe.Field(None, min_length=1, description="record key columns (for "
                                             "dedupe_seconds); default: the pipeline's id columns")
        dedupe_seconds: float | None = adpipe.Field(None, gt=0, description="skip a row whose key was written "
                                                    "within this many seconds (replayed batches)")
        chunk_rows: int = adpipe.Field(1_000, ge=1, description="rows sent per pipelined round trip")
        timeout_seconds: float = adpipe.Field(10, gt=0, description="socket timeout of each round trip")

    client: Any = None
    _script: Any = None
    key: list[str] = []
    #: rows skipped as duplicates, rows written (since open)
    skipped = written = 0

    @property
    def where(self) -> str:
        return f"stream '{self.params.stream}' at {address(self.params.url.get_secret_value())}"

    def open(self, context: Any = None) -> None:
        import redis

        p = self.params
        self.close(True)
        self.key = list(p.key or getattr(context, "id_columns", None) or [])
        if p.dedupe_seconds and not self.key:
            raise SinkError(f"The redis_stream sink for {self.where} needs key columns to deduplicate on.",
                            hint="set the sink's `key`, or the pipeline's `columns.id`, or drop `dedupe_seconds`")
        client = connect(p.url.get_secret_value(), p.timeout_seconds, error=SinkError)
        try:
            client.ping()
        except (*connection_errors(), redis.ResponseError) as exc:
            client.close()
            raise SinkError(f"Cannot connect to Redis {self.where}: {exc}",
                            hint="start the server or fix the sink's `url` (host, port, password)") from exc
        self.client, self.skipped, self.written = client, 0, 0
        self._script = client.register_script(DEDUPE_XADD) if p.dedupe_seconds else None

    def write(self, frame: pd.DataFrame) -> None:
        import redis

        p = self.params
        if self.client is None:
            raise SinkError("The redis_stream sink was written to before open().", hint="call open(context) first")
        if frame.empty:
            return
        keys = self._dedupe_keys(frame) if self._script is not None else None
        rows = encode_rows(frame)
        ttl = str(max(1, int(p.dedupe_seconds * 1000))) if p.dedupe_seconds else ""
        done = 0
        try:
            for start in range(0, len(rows), p.chunk_rows):
                pipe = self.client.pipeline(transaction=False)
                for i in range(start, min(start + p.chunk_rows, len(rows))):
                    if keys is None:
                        pipe.xadd(p.stream, {p.field: rows[i]}, maxlen=p.maxlen, approximate=True)
                    else:
                        self._script(keys=[p.stream, keys[i]], args=[p.field, ttl, p.maxlen or "", rows[i]],
                                     client=pipe)
                results = pipe.execute()
                added = sum(1 for r in results if r != 0) if keys is not None else len(results)
                self.written += added
                self.skipped += len(results) - added
                done += len(results)
        except (*connection_errors(), redis.ResponseError) as exc:
            raise SinkError(
                f"Writing rows {done + 1}-{len(rows)} of {len(rows)} to Redis {self.where} failed: {exc}",
                hint="check the server (up, memory, ACL) and that the key is a stream; the batch is not "
                     "acknowledged, so it is written again on replay") from exc

    def _dedupe_keys(self, frame: pd.DataFrame) -> list[str]:
        missing = [k for k in self.key if k not in frame.columns]
        if missing:
            raise SinkError(f"Result frame for {self.where} lacks key column(s) {missing}; it has "
                            f"{list(frame.columns)}.", hint="the sink's `key` must name columns of the output")
        values = frame[self.key]
        if values.isna().any(axis=None):
            raise SinkError(f"{int(values.isna().any(axis=1).sum())} row(s) for {self.where} have a missing key "
                            f"({self.key}).", hint="key columns must identify every record")
        prefix = f"adpipe:dedupe:{self.params.stream}:"
        if len(self.key) == 1:
            return [prefix + _key_text(v) for v in values.iloc[:, 0].tolist()]
        return [prefix + json.dumps([_key_text(v) for v in row]) for row in values.itertuples(index=False)]

    def close(self, success: bool = True) -> None:
        """Release the connections (rows were written for good by each write)."""
        if self.client is not None:
            self.client.close()
        self.client = None

    def outputs(self) -> list[str]:
        return [f"{address(self.params.url.get_secret_value())}#{self.params.stream}"]

    def __repr__(self) -> str:
        p = self.params
        return f"RedisStreamSink(url=<hidden>, stream={p.stream!r}, dedupe_seconds={p.dedupe_seconds!r})"


def _key_text(value: Any) -> str:
    """One key value as text; 7.0 and 7 are the same key (ids turn float when a batch has a NaN)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)
