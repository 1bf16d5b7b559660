"""Keep secrets out of printed configs and logs."""

from __future__ import annotations

import re
from typing import Any

SECRET_KEY = re.compile(r"(password|passwd|secret|token|api_key|apikey|webhook|credential)", re.I)
URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)([^@\s]+)(@)")


def mask(value: Any, key: str = "") -> Any:
    """A copy of ``value`` with secret-looking keys and URL passwords replaced by ``***``."""
    if isinstance(value, dict):
        return {k: mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v, key) for v in value]
    if SECRET_KEY.search(key) and value not in (None, "", False):
        return "***"
    if isinstance(value, str):
        return URL_PASSWORD.sub(r"\1***\3", value)
    return value
