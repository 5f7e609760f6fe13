"""Type aliases and small value types of the layer store."""

from __future__ import annotations

from typing import Literal, NamedTuple

SecurityLevel = Literal["public", "internal", "confidential"]
LibraryLevel = Literal["base", "theme", "topic"]
ExportFormat = Literal["geojson", "gpkg", "parquet", "csv"]
Aggregate = Literal["count", "sum", "mean", "min", "max"]
JsonValue = None | bool | int | float | str  # a property value as written to JSON (`layers.values.json_value`)

SECURITY_LEVELS: tuple[SecurityLevel, ...] = ("public", "internal", "confidential")
LIBRARY_LEVELS: tuple[LibraryLevel, ...] = ("base", "theme", "topic")
STORE_CRS = "EPSG:4490"  # CGCS2000 geographic; stored lon/lat (x = east)


class BBox(NamedTuple):
    """An axis-aligned box in lon/lat degrees (or the units of the CRS it is given in)."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float


class LonLat(NamedTuple):
    """A point in lon/lat degrees."""

    lon: float
    lat: float


def security_rank(level: str) -> int:
    """0 for public, 1 for internal, 2 for confidential."""
    return SECURITY_LEVELS.index(level)  # type: ignore[arg-type]
