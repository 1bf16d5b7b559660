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
from datetime import datetime, timezone
from typing import Any, Literal

import pandas as pd

try:
    import orjson

    _loads, _dumps = orjson.loads, orjson.dumps
except ImportError:  # pragma: no cover - orjson comes with the stream extra
    import json

    _loads = json.loads

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, default=str).encode()

Format = Literal["json", "csv"]
POSITIONS = "positions"  # frame.attrs key: row -> position in the payload list


def decode(payloads: list[bytes | None], fmt: Format = "json", columns: list[str] | None = None
           ) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """Decode message values into one frame (one row per good message) and the bad ones' errors.

    ``json``: each message is one JSON object. ``csv``: each message is one CSV line whose fields are
    ``columns`` (required).
    """
    rows: list[Any] = []
    keep: list[int] = []
    bad: list[tuple[int, str]] = []
    if fmt == "csv" and not columns:
        raise ValueError("csv messages need `columns` (the field names, in order)")
    for pos, value in enumerate(payloads):
        if value is None:
            bad.append((pos, "empty message (no value)"))
            continue
        try:
            row = _decode_json(value) if fmt == "json" else _decode_csv(value, columns)
        except ValueError as exc:
            bad.append((pos, str(exc)))
            continue
        rows.append(row)
        keep.append(pos)
    if fmt == "json":
        frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame()
    else:
        frame = pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
        for col in frame.columns:  # numbers where a whole column parses; validation rejects odd cells
            try:
                frame[col] = pd.to_numeric(frame[col])
            except (ValueError, TypeError):
                pass
    frame.attrs[POSITIONS] = keep
    return frame, bad


def _decode_json(value: bytes) -> dict:
    try:
        row = _loads(value)
    except Exception as exc:  # orjson.JSONDecodeError / json.JSONDecodeError
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    for key, val in row.items():
        if isinstance(val, (dict, list)):
            raise ValueError(f"field '{key}' holds a nested {type(val).__name__}; records must be flat")
    return row


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
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [_dumps(r) for r in records]
