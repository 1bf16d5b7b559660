"""Plain JSON values from what pandas and numpy hand back (used by reports, ``--json`` output and alerts).

>>> import numpy as np
>>> jsonable({"a": np.float32(0.5), "b": [np.int64(3), float("nan")]})
{'a': 0.5, 'b': [3, None]}
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: numpy/pandas scalars unwrapped, NaN/NaT -> None, dates -> ISO text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()  # pd.Timestamp too
    if isinstance(value, (np.datetime64, np.timedelta64)):
        return None if np.isnat(value) else str(value)
    if isinstance(value, (np.generic, np.ndarray)):
        return jsonable(value.tolist())
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)  # Decimal, Timedelta, Path, ...
