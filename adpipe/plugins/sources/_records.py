"""Decoding stream messages into frames, and dead-letter records, shared by the stream sources.

    frame, bad = decode(payloads, "json")      # bad: [(position, error text), ...]
    frame.attrs["positions"]                   # each row's position in ``payloads``

A message that cannot be decoded never stops the loop: it is reported in ``bad`` and the source sends
it to its dead-letter destination with :func:`dead_letter_record`.
"""

from __future__ import annotations

import base64
import csv
import io
import math
from datetime import datetime, timezone
from itertools import repeat
from operator import itemgetter
from typing import Any, Literal

import numpy as np
import pandas as pd

try:
    import orjson

    _loads, _dumps = orjson.loads, orjson.dumps
    _ORJSON = True  # writes NaN and infinities as null, which encode_rows' fast path relies on
except ImportError:  # pragma: no cover - orjson comes with the stream extra
    import json

    _loads = json.loads
    _ORJSON = False

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, default=str).encode()

Format = Literal["json", "csv"]
POSITIONS = "positions"  # frame.attrs key: row -> position in the payload list


class Positions(list):
    """``frame.attrs[POSITIONS]``: a plain list that pandas does not copy.

    pandas deep-copies ``attrs`` in almost every operation on a frame (``reset_index``, ``loc``,
    ``reindex``, ``copy``, ...); a 10,000-row batch went through about ten copies of its 10,000
    positions on its way to the sinks. The list is never changed after :func:`decode`, so its "deep
    copy" is itself.
    """

    __slots__ = ()

    def __deepcopy__(self, memo: dict) -> Positions:
        return self


def decode(payloads: list[bytes | None], fmt: Format = "json", columns: list[str] | None = None
           ) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """Decode message values into one frame (one row per good message) and the bad ones' errors.

    ``json``: each message is one JSON object. ``csv``: each message is one CSV line whose fields are
    ``columns`` (required).
    """
    if fmt == "csv" and not columns:
        raise ValueError("csv messages need `columns` (the field names, in order)")
    if fmt == "json":
        rows, keep, bad = _decode_json_all(payloads)
        frame = _json_frame(rows)
        frame.attrs[POSITIONS] = Positions(keep)
        return frame, bad
    rows: list[Any] = []
    keep: list[int] = []
    bad: list[tuple[int, str]] = []
    for pos, value in enumerate(payloads):
        if value is None:
            bad.append((pos, "empty message (no value)"))
            continue
        try:
            row = _decode_csv(value, columns)
        except ValueError as exc:
            bad.append((pos, str(exc)))
            continue
        rows.append(row)
        keep.append(pos)
    frame = pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
    for col in frame.columns:  # numbers where a whole column parses; validation rejects odd cells
        try:
            frame[col] = pd.to_numeric(frame[col])
        except (ValueError, TypeError):
            pass
    frame.attrs[POSITIONS] = Positions(keep)
    return frame, bad


def _decode_json_all(payloads: list[bytes | None]) -> tuple[list[dict], list[int], list[tuple[int, str]]]:
    """:func:`_decode_json` over a batch, with the same results and errors, faster: a payload with one
    ``{`` and no ``[`` cannot hold a nested object or list, so only the others are checked field by field."""
    n = len(payloads)
    try:  # the usual batch: every message a flat JSON object, in C-level loops
        rows = list(map(_loads, payloads))
        if set(map(type, rows)) == {dict} and set(map(type, payloads)) == {bytes} \
                and list(map(bytes.count, payloads, repeat(b"{"))).count(1) == n \
                and not any(map(bytes.__contains__, payloads, repeat(b"["))):
            return rows, list(range(n)), []
    except Exception:  # a message that is not JSON (or no value): one by one, below
        pass
    rows = []
    keep: list[int] = []
    bad: list[tuple[int, str]] = []
    loads = _loads
    for pos, value in enumerate(payloads):
        if value is None:
            bad.append((pos, "empty message (no value)"))
            continue
        try:
            row = loads(value)
        except Exception as exc:  # orjson.JSONDecodeError / json.JSONDecodeError
            bad.append((pos, f"not valid JSON: {exc}"))
            continue
        if type(row) is not dict or not (type(value) is bytes and value.count(b"{") == 1 and b"[" not in value):
            try:
                _check_flat(row)
            except ValueError as exc:
                bad.append((pos, str(exc)))
                continue
        rows.append(row)
        keep.append(pos)
    return rows, keep, bad


def _json_frame(rows: list[dict]) -> pd.DataFrame:
    """``pd.DataFrame.from_records(rows)``, faster when every row has the same fields (the usual case):
    the rows go in as tuples, which pandas turns into columns and types exactly as it does dicts."""
    if not rows:
        return pd.DataFrame()
    keys = list(rows[0])
    if len(keys) > 1:
        n = len(keys)
        try:
            if all(len(r) == n for r in rows):  # the same size and every key present: the same keys
                return pd.DataFrame.from_records(list(map(itemgetter(*keys), rows)), columns=keys)
        except KeyError:  # a row lacks one of the first row's fields
            pass
    return pd.DataFrame.from_records(rows)


def _decode_json(value: bytes) -> dict:
    try:
        row = _loads(value)
    except Exception as exc:  # orjson.JSONDecodeError / json.JSONDecodeError
        raise ValueError(f"not valid JSON: {exc}") from None
    _check_flat(row)
    return row


def _check_flat(row: Any) -> None:
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    for key, val in row.items():
        if isinstance(val, (dict, list)):
            raise ValueError(f"field '{key}' holds a nested {type(val).__name__}; records must be flat")


def _decode_csv(value: bytes, columns: list[str]) -> list[Any]:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text: {exc}") from None
    fields = next(csv.reader(io.StringIO(text)), [])
    if len(fields) != len(columns):
        raise ValueError(f"expected {len(columns)} fields ({', '.join(columns)}), got {len(fields)}")
    return [f if f != "" else None for f in fields]


def dead_letter_record(payload: bytes | None, error: str, stage: str, origin: dict[str, Any],
                       pipeline: str = "") -> bytes:
    """A dead-letter message (JSON): the error, where the record came from, and the original payload.

    ``stage`` is ``decode`` (not a record), ``validate`` (a record with unusable values) or
    ``overflow`` (shed by a full buffer). The payload is kept as text when it is UTF-8, else base64.
    """
    out: dict[str, Any] = {"error": error, "stage": stage, "pipeline": pipeline, "origin": origin,
                           "at": datetime.now(timezone.utc).isoformat()}
    if payload is None:
        out["payload"] = None
    else:
        try:
            out["payload"] = payload.decode("utf-8")
        except UnicodeDecodeError:
            out["payload_base64"] = base64.b64encode(payload).decode("ascii")
    return _dumps(out)


def encode_rows(frame: pd.DataFrame) -> list[bytes]:
    """Result rows as JSON objects (NaN as null, numpy scalars as plain numbers)."""
    if frame.empty:
        return []
    columns = list(frame.columns)
    if _ORJSON and frame.columns.is_unique and all(type(c) is str for c in columns) \
            and all(_plain(dtype) for dtype in frame.dtypes):
        # every column is numbers, booleans or str: ``tolist()`` gives Python values, and orjson writes
        # NaN (a missing float or str) as null, so the bytes are those of the general path below
        dumps = _dumps
        values = [frame[c].tolist() for c in columns]
        return [dumps(dict(zip(columns, row))) for row in zip(*values)]
    dates = [c for c in columns if frame[c].dtype.kind in "Mm"]
    if dates:  # timestamps as ISO 8601 text, durations as seconds
        frame = frame.assign(**{c: (frame[c].map(lambda v: v.isoformat(), na_action="ignore")
                                    if frame[c].dtype.kind == "M" else frame[c].dt.total_seconds())
                                for c in dates})
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [_dumps(r) for r in records]


def _plain(dtype: Any) -> bool:
    """A numpy number/boolean dtype, or pandas' ``str`` dtype (missing values are NaN)."""
    if isinstance(dtype, np.dtype):
        return dtype.kind in "biuf"
    if isinstance(dtype, pd.StringDtype):
        na = dtype.na_value
        return isinstance(na, float) and math.isnan(na)
    return False
