"""Redis Streams source: an endless stream read through a consumer group, at-least-once.

Each entry holds one record: a JSON object (or CSV line) in the field ``field``, or, with
``field: null``, one column per entry field. Entries are acknowledged (XACK) only in :meth:`ack`,
after every sink wrote the batch.

Recovery: on start the consumer first re-reads its own pending entries (a restarted consumer with
the same name gets back what it had read but not acknowledged); every ``claim_every_ms`` it claims
entries other consumers left pending for ``claim_idle_ms`` (XAUTOCLAIM), so a consumer that died
under another name loses nothing. An entry delivered more than ``max_deliveries`` times is poison.

Bad entries (undecodable or poison) go to the ``dead_letter`` stream and are acknowledged with their
batch. Without ``dead_letter`` the source stops with a SourceError naming the entry and leaves it
pending: nothing is skipped silently.

A server unreachable at start is a SourceError at once. A connection lost later is retried with
backoff for ``reconnect_seconds`` (empty batches keep coming meanwhile), then it is a SourceError;
unacknowledged entries stay pending and nothing is acknowledged that was not written.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Any, Callable, Iterator, Literal
from urllib.parse import urlsplit

import pandas as pd
from pydantic import SecretStr, model_validator

import adpipe
from adpipe.core.errors import SourceError
from adpipe.core.schema import REJECT_REASON
from adpipe.plugins.sources._records import POSITIONS, dead_letter_record, decode

log = logging.getLogger(__name__)
DEFAULT_URL = "redis://127.0.0.1:6379/0"


# ---------------------------------------------------------------- shared with the redis_stream sink
def address(url: str) -> str:
    """``url`` without user and password: ``redis://host:port/db``."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return f"unix://{parts.path}"
        db = parts.path.strip("/") or "0"
        return f"{parts.scheme}://{parts.hostname or 'localhost'}:{parts.port or 6379}/{db}"
    except ValueError:
        return "<invalid url>"


def connect(url: str, timeout: float, error: type[Exception] = SourceError) -> Any:
    """A client on its own connection pool (thread-safe); retries are ours, not redis-py's."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    try:
        return redis.Redis.from_url(url, socket_connect_timeout=min(timeout, 5.0), socket_timeout=timeout,
                                    retry=Retry(NoBackoff(), 0), health_check_interval=0)
    except ValueError as exc:  # malformed URL: say so without echoing it (it may hold a password)
        raise error(f"Invalid Redis URL ({address(url)}): {str(exc).replace(url, '<url>')}",
                    hint="use redis://[:password@]host:port/db, rediss://... or unix:///path") from None


def connection_errors() -> tuple[type[Exception], ...]:
    import redis

    return redis.ConnectionError, redis.TimeoutError


# ---------------------------------------------------------------- the source
class RedisStreamSource(adpipe.Source):
    """Read records from a Redis stream through a consumer group (endless, at-least-once)."""

    name = "redis_stream"
    finite = False
    requires = ("redis",)
    install_hint = "pip install 'adpipe[stream]'"

    class Params(adpipe.Params):
        url: SecretStr = adpipe.Field(DEFAULT_URL, validate_default=True, description="redis://[:password@]"
                                      "host:port/db (also rediss://, unix://); never printed")
        stream: str = adpipe.Field(min_length=1, description="stream key to read")
        group: str = adpipe.Field("adpipe", min_length=1, description="consumer group (created when missing)")
        consumer: str | None = adpipe.Field(
            None, min_length=1, description="consumer name in the group; default: the host name, stable across "
            "restarts so a restarted consumer takes back its pending entries at once. Give each process on "
            "one host its own name")
        start_id: str = adpipe.Field("$", min_length=1, description="where a new group starts: $ (new entries "
                                     "only) or 0 (the stream's history)")
        field: str | None = adpipe.Field("data", min_length=1, description="entry field holding the record; "
                                         "null: every entry field is a column")
        format: Literal["json", "csv"] = adpipe.Field("json", description="record format in `field`")
        columns: list[str] | None = adpipe.Field(None, min_length=1, description="csv: the field names, in order")
        entry_id_column: str | None = adpipe.Field(None, min_length=1, description="add the entry id as this "
                                                   "column (text, e.g. for columns.id)")
        max_batch_rows: int = adpipe.Field(10_000, ge=1, description="a batch is yielded at this many entries")
        max_batch_ms: int = adpipe.Field(500, ge=10, description="... or this long after its first entry; "
                                         "when idle an empty batch comes this often")
        block_ms: int = adpipe.Field(200, ge=1, description="longest single wait for new entries (capped by "
                                     "max_batch_ms); bounds how long stop() takes")
        claim_idle_ms: int = adpipe.Field(60_000, ge=1, description="claim entries other consumers left pending "
                                          "this long; keep it above the longest read-to-ack time")
        claim_every_ms: int = adpipe.Field(10_000, ge=1, description="how often pending entries are claimed")
        max_deliveries: int = adpipe.Field(5, ge=1, description="an entry delivered more often is poison: it "
                                           "goes to dead_letter")
        dead_letter: str | None = adpipe.Field(None, min_length=1, description="stream for undecodable, poison "
                                               "and rejected records; without it a bad entry stops the source "
                                               "and stays pending")
        reconnect_seconds: float = adpipe.Field(30, ge=0, description="retry a lost connection this long, "
                                                "then fail")

        @model_validator(mode="after")
        def _consistent(self):
            if self.field is not None and self.format == "csv" and not self.columns:
                raise ValueError("format csv needs `columns` (the field names, in order)")
            if self.columns and (self.field is None or self.format != "csv"):
                raise ValueError("`columns` is only for format csv (with a `field`)")
            if self.dead_letter == self.stream:
                raise ValueError("`dead_letter` must be another stream than `stream`")
            return self

    #: pipeline name written into dead-letter records (the runner may set it)
    pipeline: str = ""

    def __init__(self, params=None, **kwargs: Any):
        super().__init__(params, **kwargs)
        self._stop = threading.Event()
        self._lock = threading.Lock()  # guards _client creation and _inflight
        self._client_: Any = None
        self._inflight: set[str] = set()  # read, not yet acked: never claimed back from ourselves
        self._row = 0
        self._pel: str | None = "0"  # cursor through our own pending entries; None once done
        self._claim_cursor, self._claim_at = "0-0", 0.0

    @property
    def consumer(self) -> str:
        return self.params.consumer or socket.gethostname()

    @property
    def where(self) -> str:
        return f"stream '{self.params.stream}' at {address(self.params.url.get_secret_value())}"

    # ------------------------------------------------------------ connection
    def _client(self) -> Any:
        with self._lock:
            if self._client_ is None:
                timeout = max(self.params.max_batch_ms, self.params.block_ms) / 1000 + 5
                self._client_ = connect(self.params.url.get_secret_value(), timeout)
            return self._client_

    def _call(self, what: str, fn: Callable[[Any], Any]) -> Any:
        """``fn(client)``, retrying a lost connection with backoff for ``reconnect_seconds``."""
        import redis
        import tenacity

        def give_up(state: tenacity.RetryCallState):
            exc = state.outcome.exception()
            raise self._lost(what, exc) from exc

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(connection_errors()),
            wait=tenacity.wait_exponential(multiplier=0.05, max=2.0),
            stop=tenacity.stop_after_delay(self.params.reconnect_seconds),
            before_sleep=lambda state: state.attempt_number == 1 and log.warning(
                "redis_stream: lost %s while %s (%s); retrying", self.where, what, state.outcome.exception()),
            retry_error_callback=give_up)
        try:
            return retrying(lambda: fn(self._client()))
        except redis.ResponseError as exc:
            raise self._refused(what, exc) from exc

    def _lost(self, what: str, exc: Exception) -> SourceError:
        return SourceError(
            f"Redis {self.where} is unreachable while {what}: {exc} (retried for {self.params.reconnect_seconds:g} "
            "s). Entries not yet acknowledged stay pending and are read again on restart.",
            hint="check that the Redis server is up and reachable (host, port, firewall, TLS), or raise the "
                 "source's `reconnect_seconds`")

    def _refused(self, what: str, exc: Exception) -> SourceError:
        text = str(exc)
        hint = "check the source's `url`, `stream` and `group`"
        if text.startswith("NOGROUP"):
            hint = (f"the stream or its group '{self.params.group}' was deleted; a restart recreates it at "
                    "`start_id`")
        elif text.startswith("WRONGTYPE"):
            hint = f"the key '{self.params.stream}' (or dead_letter) is not a stream: use another key"
        elif "AUTH" in text or "NOPERM" in text or "NOAUTH" in text:
            hint = "check the user and password in the source's `url`, and the user's ACL permissions"
        return SourceError(f"Redis {self.where} refused {what}: {text}", hint=hint)

    def _open(self) -> None:
        """Connect (failing fast: the server must be reachable at start) and create the group."""
        import redis

        p = self.params
        try:
            self._client().xgroup_create(p.stream, p.group, id=p.start_id, mkstream=True)
        except connection_errors() as exc:
            raise SourceError(f"Cannot connect to Redis {self.where}: {exc}",
                              hint="start the server or fix the source's `url` (host, port, password)") from exc
        except redis.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):  # BUSYGROUP: the group exists already
                raise self._refused(f"creating consumer group '{p.group}'", exc) from exc
        with self._lock:
            self._inflight.clear()
        self._pel, self._claim_cursor, self._claim_at = "0", "0-0", 0.0

    # ------------------------------------------------------------ reading
    def batches(self, batch_rows: int) -> Iterator[adpipe.Batch]:
        p = self.params
        limit = max(1, min(batch_rows, p.max_batch_rows))
        window = p.max_batch_ms / 1000
        self._open()
        entries: list[tuple[str, dict]] = []
        again: set[str] = set()  # ids delivered before (own pending, claimed): checked for poison
        started = time.monotonic()  # the batch's first entry, or the last yield while idle
        down_since, delay = None, 0.05
        while not self._stop.is_set():
            left = started + window - time.monotonic()
            if len(entries) >= limit or left <= 0:
                yield self._batch(entries, again)
                entries, again, started = [], set(), time.monotonic()
                continue
            try:
                got, redelivered = self._fetch(limit - len(entries), left)
                down_since, delay = None, 0.05
            except connection_errors() as exc:
                now = time.monotonic()
                if down_since is None:
                    down_since = now
                    log.warning("redis_stream: lost %s (%s); reconnecting", self.where, exc)
                if now - down_since >= p.reconnect_seconds:
                    raise self._lost("reading", exc) from exc
                self._stop.wait(max(0.001, min(delay, left)))
                delay = min(delay * 2, 2.0)
                continue
            if got and not entries:
                started = time.monotonic()
            entries += got
            if redelivered:
                again.update(eid for eid, _ in got)
        if entries:  # read before stop(): hand them over rather than leave them to a restart
            yield self._batch(entries, again)

    def _fetch(self, count: int, left: float) -> tuple[list[tuple[str, dict]], bool]:
        """The next entries: our own pending ones first, then claimed ones when due, then new ones."""
        import redis

        p, r = self.params, self._client()
        try:
            if self._pel is not None:
                got = _entries(r.xreadgroup(p.group, self.consumer, {p.stream: self._pel}, count=count))
                self._pel = got[-1][0] if got else None
                return self._take(got), True
            now = time.monotonic()
            if now >= self._claim_at:
                cursor, claimed, *_ = r.xautoclaim(p.stream, p.group, self.consumer, p.claim_idle_ms,
                                                   start_id=self._claim_cursor, count=count)
                self._claim_cursor = _text(cursor)
                # a full scan of the pending list: wait; else go on scanning next time
                self._claim_at = now + p.claim_every_ms / 1000 if self._claim_cursor == "0-0" else now
                with self._lock:
                    got = [e for e in _pairs(claimed) if e[0] not in self._inflight]
                if got:
                    log.info("redis_stream: claimed %d entries idle > %d ms from %s", len(got), p.claim_idle_ms,
                             self.where)
                    return self._take(got), True
            block = max(1, int(min(p.block_ms, left * 1000)))
            got = _entries(r.xreadgroup(p.group, self.consumer, {p.stream: ">"}, count=count, block=block))
            return self._take(got), False
        except redis.ResponseError as exc:
            raise self._refused("reading", exc) from exc

    def _take(self, got: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
        with self._lock:
            self._inflight.update(eid for eid, _ in got)
        return got

    def _batch(self, entries: list[tuple[str, dict]], again: set[str]) -> adpipe.Batch:
        p = self.params
        acks = [eid for eid, _ in entries]
        live = [(eid, f) for eid, f in entries if f]  # no fields: deleted (trimmed) while pending, just ack
        counts = self._deliveries([eid for eid, _ in live if eid in again])
        letters: list[tuple[bytes | None, str, str, str]] = []  # (payload, error, stage, entry id)
        good = []
        for eid, fields in live:
            n = counts.get(eid, 1)
            if n > p.max_deliveries:
                letters.append((self._payload(fields), f"delivered {n} times, more than max_deliveries="
                                f"{p.max_deliveries} (never acknowledged: it may crash the pipeline)", "poison", eid))
            else:
                good.append((eid, fields))
        frame, bad = self._decode([f for _, f in good])
        letters += [(self._payload(good[pos][1]), error, "decode", good[pos][0]) for pos, error in bad]
        if letters:
            self._send(letters)
        rows = [good[pos] for pos in frame.attrs.pop(POSITIONS)]
        frame.index = pd.RangeIndex(self._row, self._row + len(frame))
        self._row += len(frame)
        if p.entry_id_column:
            frame[p.entry_id_column] = [eid for eid, _ in rows]
        meta = {"source": self.name, "stream": p.stream, "group": p.group, "consumer": self.consumer,
                "ids": [eid for eid, _ in rows], "payloads": [self._payload(f) for _, f in rows],
                "acks": acks, "dead_lettered": len(letters)}
        return adpipe.Batch(frame, meta)

    def _deliveries(self, ids: list[str]) -> dict[str, int]:
        """Delivery count of each pending entry (XPENDING), in one round trip."""
        if not ids:
            return {}
        p = self.params

        def ask(r: Any) -> list:
            pipe = r.pipeline(transaction=False)
            for eid in ids:
                pipe.xpending_range(p.stream, p.group, min=eid, max=eid, count=1)
            return pipe.execute()

        out = {}
        for rows in self._call("reading delivery counts (XPENDING)", ask):
            for row in rows:
                out[_text(row["message_id"])] = int(row["times_delivered"])
        return out

    def _decode(self, entries: list[dict]) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
        p = self.params
        if p.field is None:
            return decode_fields(entries)
        key = p.field.encode()
        payloads = [f.get(key) for f in entries]
        frame, bad = decode(payloads, p.format, p.columns)
        names = lambda f: ", ".join(sorted(_text(k) for k in f))  # noqa: E731
        bad = [(pos, f"entry has no field '{p.field}' (it has: {names(entries[pos])})" if payloads[pos] is None
                else err) for pos, err in bad]
        return frame, bad

    def _payload(self, fields: dict) -> bytes | None:
        """The record as sent: the ``field`` value, else every field as a JSON object."""
        if self.params.field is not None and self.params.field.encode() in fields:
            return fields[self.params.field.encode()]
        return json.dumps({_text(k): v.decode("utf-8", "backslashreplace") for k, v in fields.items()}).encode()

    # ------------------------------------------------------------ dead letters, acks
    def _send(self, letters: list[tuple[bytes | None, str, str, str]]) -> None:
        p = self.params
        if p.dead_letter is None:
            payload, error, stage, eid = letters[0]
            raise SourceError(
                f"Entry {eid} of {self.where} cannot be processed ({stage}: {error}); {len(letters)} such entr"
                f"{'y' if len(letters) == 1 else 'ies'} in this batch. They stay pending (unacknowledged).",
                hint=f"set the source's `dead_letter` to a stream name so bad entries go there and reading goes "
                     f"on, or acknowledge the entry by hand: XACK {p.stream} {p.group} {eid}")
        records = [dead_letter_record(payload, error, stage, {"stream": p.stream, "group": p.group, "id": eid},
                                      self.pipeline) for payload, error, stage, eid in letters]

        def add(r: Any) -> None:
            pipe = r.pipeline(transaction=False)
            for record in records:
                pipe.xadd(p.dead_letter, {"data": record})
            pipe.execute()

        self._call(f"writing {len(records)} entries to dead-letter stream '{p.dead_letter}'", add)

    def dead_letter(self, batch: adpipe.Batch, rejected: pd.DataFrame) -> bool:
        if self.params.dead_letter is None:
            return False
        if len(rejected) == 0:
            return True
        ids, payloads = batch.meta["ids"], batch.meta["payloads"]
        reasons = rejected[REJECT_REASON] if REJECT_REASON in rejected.columns else ["rejected"] * len(rejected)
        positions = batch.data.index.get_indexer(rejected.index)
        if (positions < 0).any():
            raise SourceError(f"dead_letter() got {int((positions < 0).sum())} rows that are not in the batch.",
                              hint="pass rows of batch.data, keeping their index labels")
        self._send([(payloads[i], str(reason), "validate", ids[i]) for i, reason in zip(positions, reasons)])
        return True

    def ack(self, batch: adpipe.Batch) -> None:
        ids = batch.meta.get("acks") or []
        p = self.params
        for start in range(0, len(ids), 10_000):
            chunk = ids[start:start + 10_000]
            self._call(f"acknowledging {len(chunk)} entries", lambda r: r.xack(p.stream, p.group, *chunk))
        with self._lock:
            self._inflight.difference_update(ids)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        with self._lock:
            client, self._client_ = self._client_, None
        if client is not None:
            client.close()

    def __repr__(self) -> str:
        p = self.params
        return f"RedisStreamSource(url=<hidden>, stream={p.stream!r}, group={p.group!r}, consumer={self.consumer!r})"


# ---------------------------------------------------------------- helpers
def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(entries: Any) -> list[tuple[str, dict]]:
    return [(_text(eid), fields or {}) for eid, fields in entries or []]


def _entries(resp: Any) -> list[tuple[str, dict]]:
    """XREADGROUP's reply (one stream) as [(id, fields)]."""
    return _pairs(resp[0][1]) if resp else []


def decode_fields(entries: list[dict]) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """Entries whose fields are the columns, as :func:`decode` returns them (numbers where a column parses)."""
    rows, keep, bad = [], [], []
    for pos, fields in enumerate(entries):
        try:
            rows.append({_text(k): v.decode("utf-8") for k, v in fields.items()})
            keep.append(pos)
        except UnicodeDecodeError as exc:
            bad.append((pos, f"a field is not UTF-8 text: {exc}"))
    frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame()
    for col in frame.columns:
        try:
            frame[col] = pd.to_numeric(frame[col])
        except (ValueError, TypeError):
            pass
    frame.attrs[POSITIONS] = keep
    return frame, bad
