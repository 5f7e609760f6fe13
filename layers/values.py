"""A layer's property values as JSON values: the one rule for every place that writes attributes as JSON (the
store's features, query exports, the viewer's identify, WMS GetFeatureInfo)."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import numpy as np

from layers.types import JsonValue


def json_value(v: Any) -> JsonValue:
    """A property value as a JSON value.

    None, NaN (and infinities, which JSON cannot hold either), NaT and `pd.NA` -> None; numpy and pandas scalars
    -> the Python number or bool; datetimes, dates and times -> ISO 8601 text (`isoformat()`); Decimal -> float;
    bytes -> lower-case hex; anything else (lists, dicts, ...) -> `str(v)`.

    Args:
        v: one value of a row, as Arrow's `to_pylist` or a pandas frame gives it.

    Returns:
        None, a bool, an int, a finite float or a str.
    """
    if v is None or isinstance(v, (bool, str)) and not isinstance(v, np.generic):
        return v
    if isinstance(v, (np.datetime64, np.timedelta64)):
        if np.isnat(v):
            return None
        import pandas as pd  # nanosecond datetime64 `.item()` is an int, so go through pandas

        return (pd.Timestamp(v) if isinstance(v, np.datetime64) else pd.Timedelta(v)).isoformat()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float | Decimal):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    import pandas as pd

    if v is pd.NaT or v is pd.NA:
        return None
    if hasattr(v, "isoformat"):
        return str(v.isoformat())
    return str(v)


__all__ = ["json_value"]
