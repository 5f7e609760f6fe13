"""Attribute names as real data has them: which column holds building heights or floor counts.

Open data and Chinese surveying data name these fields in many ways: `HEIGHT`, `measuredHeight`, `building:levels`,
高度, 建筑高度, 层数, 楼层数, or the pinyin initials of the Chinese name (JZGD = 建筑高度, CS = 层数). Names are
compared case-insensitively after dropping spaces, `_`, `-`, `:` and `.`, in the order of the lists below (the
first that is a column wins). Values such as "12层", "25.5m" or "25,5" are read as the number they start with.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

#: Height columns in metres, most specific first.
HEIGHT_NAMES = (
    "height", "building_height", "bldg_height", "bld_height", "measuredHeight", "measured_height", "height_m",
    "roof_height", "hoogte", "höhe", "hoehe", "hauteur", "altura",
    "建筑高度", "房屋高度", "建筑物高度", "楼高", "高度", "JZGD", "FWGD", "JZWGD", "GD",
)
#: Floor-count columns, most specific first.
FLOOR_NAMES = (
    "floors", "floor_count", "num_floors", "nfloors", "storeys", "stories", "storeysAboveGround",
    "building:levels", "building_levels", "levels", "floor",
    "地上层数", "建筑层数", "房屋层数", "总层数", "楼层数", "层数", "楼层", "DSCS", "JZCS", "FWCS", "ZCS", "CS",
)
# words that make a column look like heights or floors although no name above matched
_LIKELY = re.compile(r"height|hoehe|höhe|hoogte|hauteur|altura|floor|stor(e)?y|stories|level|高|层|楼", re.I)
_NUMBER = re.compile(r"^\s*([-+]?\d+(?:[.,]\d+)?)")


def normalise(name: str) -> str:
    """A column name as compared: case-folded, without spaces, `_`, `-`, `:` and `.`."""
    return re.sub(r"[\s_\-:.]", "", str(name)).casefold()


def find_field(columns: Iterable[str], names: Iterable[str]) -> str | None:
    """The first column (its own spelling) whose normalised name equals a normalised name of `names`."""
    by_name: dict[str, str] = {}
    for c in columns:
        by_name.setdefault(normalise(c), c)
    for n in names:
        hit = by_name.get(normalise(n))
        if hit is not None:
            return hit
    return None


def numeric_values(values: pd.Series) -> np.ndarray:
    """(n,) float64: numbers as they are; text read as the number it starts with ("12层", "25.5 m", "25,5");
    NaN where there is none, and for non-finite or non-positive values."""
    out = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan).copy()
    text = values.dtype == object or pd.api.types.is_string_dtype(values.dtype)
    if text:
        missing = np.isnan(out)
        if missing.any():
            raw = values[missing].astype("string").str.extract(_NUMBER, expand=False).str.replace(",", ".")
            out[missing] = pd.to_numeric(raw, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    out[~np.isfinite(out) | (out <= 0)] = np.nan
    return out


def likely_fields(columns: Iterable[str], used: Iterable[str | None] = ()) -> list[str]:
    """Columns whose names look like heights or floor counts, other than those in `used`."""
    skip = {u for u in used if u is not None}
    return [c for c in columns if c not in skip and _LIKELY.search(str(c))]


__all__ = ["FLOOR_NAMES", "HEIGHT_NAMES", "find_field", "likely_fields", "normalise", "numeric_values"]
