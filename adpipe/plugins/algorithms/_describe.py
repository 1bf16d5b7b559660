"""Short human-readable text for a ``Params`` field: ``int >= 1``, ``'auto' | float in (0, 1]``."""

from __future__ import annotations

import types
import typing
from typing import Any

import annotated_types as at
from pydantic.fields import FieldInfo


def allowed(field: FieldInfo) -> str:
    """What values a field accepts, e.g. ``int >= 1 | 'auto' | null``."""
    return _fmt(field.annotation, list(field.metadata))


def _fmt(tp: Any, metadata: list[Any]) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(tp)
        meta = []
        for m in extra:
            meta += list(getattr(m, "metadata", [])) if isinstance(m, FieldInfo) else [m]
        return _fmt(base, metadata + meta)
    if origin in (typing.Union, types.UnionType):
        parts = [_fmt(arg, metadata) for arg in typing.get_args(tp)]
        return " | ".join(dict.fromkeys(parts))
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any"
    if origin in (list, tuple, dict):
        return f"{origin.__name__}"
    name = getattr(tp, "__name__", str(tp))
    bounds = _bounds(metadata) if tp in (int, float) else ""
    return f"{name} {bounds}".strip()


def _bounds(metadata: list[Any]) -> str:
    lo = hi = None
    for m in metadata:
        if isinstance(m, at.Ge):
            lo = ("[", m.ge)
        elif isinstance(m, at.Gt):
            lo = ("(", m.gt)
        elif isinstance(m, at.Le):
            hi = ("]", m.le)
        elif isinstance(m, at.Lt):
            hi = (")", m.lt)
    if lo and hi:
        return f"in {lo[0]}{lo[1]}, {hi[1]}{hi[0]}"
    if lo:
        return f"{'>=' if lo[0] == '[' else '>'} {lo[1]}"
    if hi:
        return f"{'<=' if hi[0] == ']' else '<'} {hi[1]}"
    return ""
