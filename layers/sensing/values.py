"""Values on the wire and in the store: times, intervals, GeoJSON geometries, results, the caller's access."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import shapely

from layers.sensing.errors import QueryError, SensingInputError
from layers.sensing.odata import MAX_GEOMETRY_POINTS, parse_time
from layers.types import SECURITY_LEVELS


@dataclass(frozen=True)
class Access:
    """What a caller may do with the sensing store.

    Attributes:
        levels: the security levels of Things the caller may see (`public` always).
        write: the caller may create, change and delete entities and post observations.
        key_id: the caller's key id (for the audit log), None when anonymous or a local process.
    """

    levels: tuple[str, ...] = ("public",)
    write: bool = False
    key_id: str | None = None

    @property
    def full(self) -> bool:
        """True when the caller sees every level (no visibility filter is needed)."""
        return set(SECURITY_LEVELS) <= set(self.levels)

    def sees(self, level: str) -> bool:
        return level in self.levels

    def clearance(self) -> str:
        """The highest level the caller sees."""
        return max(self.levels, key=SECURITY_LEVELS.index)


LOCAL = Access(levels=SECURITY_LEVELS, write=True)  # a notebook or CLI process that opened the store itself
PUBLIC = Access()


def iso(t: datetime | None) -> str | None:
    """A naive UTC datetime as ISO 8601 with `Z` (milliseconds when the time has a fraction)."""
    if t is None:
        return None
    if t.tzinfo is not None:  # isoformat would append the offset
        t = t.astimezone(UTC).replace(tzinfo=None)
    us = t.microsecond
    if not us:
        return t.isoformat() + "Z"
    if us % 1000 == 0:
        return t.isoformat(timespec="milliseconds") + "Z"
    return t.isoformat().rstrip("0") + "Z"


def interval(start: datetime | None, end: datetime | None) -> str | None:
    """`start` or `start/end` in ISO 8601."""
    if start is None:
        return None
    return iso(start) if end is None else f"{iso(start)}/{iso(end)}"


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def parse_instant(value: Any, what: str) -> datetime:
    """A time from JSON: an ISO 8601 string.

    Raises:
        SensingInputError: not a string or not ISO 8601.
    """
    if not isinstance(value, str):
        raise SensingInputError(f"{what} must be an ISO 8601 time string such as 2024-07-20T08:00:00Z, "
                                f"not {type(value).__name__}")
    try:
        return parse_time(value, what)
    except QueryError as exc:  # the same words, as an input error of a body
        raise SensingInputError(str(exc)) from None


def parse_interval(value: Any, what: str) -> tuple[datetime, datetime | None]:
    """A time instant (`t`) or interval (`t1/t2`, t1 <= t2) from JSON."""
    if isinstance(value, str) and "/" in value:
        a, _, b = value.partition("/")
        start, end = parse_instant(a, what), parse_instant(b, what)
        if end < start:
            raise SensingInputError(f"{what} {value!r} ends before it starts")
        return start, end
    return parse_instant(value, what), None


_GEOMETRY_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
                   "GeometryCollection")
_LONLAT_CRS = ("EPSG:4326", "EPSG:4490", "urn:ogc:def:crs:OGC:1.3:CRS84", "urn:ogc:def:crs:EPSG::4326",
               "urn:ogc:def:crs:EPSG::4490", "CRS84", "OGC:CRS84")


def parse_geojson(value: Any, what: str) -> tuple[str, bytes]:
    """A GeoJSON geometry (or a Feature holding one) as given (JSON text) and as WKB in lon/lat.

    GeoJSON (RFC 7946) is WGS 84 lon/lat; it is stored as CGCS2000 lon/lat, which agrees with it within centimetres.
    A legacy `crs` member is accepted when it names a lon/lat CRS.

    Raises:
        SensingInputError: not a GeoJSON geometry, a projected `crs`, coordinates outside lon/lat, too large.
    """
    if not isinstance(value, dict):
        raise SensingInputError(f"{what} must be a GeoJSON geometry object such as "
                                f'{{"type": "Point", "coordinates": [113.30, 40.09]}}')
    geometry = value.get("geometry") if value.get("type") == "Feature" else value
    if not isinstance(geometry, dict) or geometry.get("type") not in _GEOMETRY_TYPES:
        raise SensingInputError(f"{what}: {str(value.get('type'))[:40]!r} is not a GeoJSON geometry type "
                                f"({', '.join(_GEOMETRY_TYPES)}) or Feature")
    crs = value.get("crs") or geometry.get("crs")
    if crs is not None:
        name = str(((crs.get("properties") or {}).get("name")) if isinstance(crs, dict) else crs)
        if name not in _LONLAT_CRS:
            raise SensingInputError(f"{what}: crs {name[:60]!r} is not lon/lat; send RFC 7946 GeoJSON "
                                    f"(WGS 84 / CGCS2000 longitude, latitude)")
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if text.count(",") > 2 * MAX_GEOMETRY_POINTS:
        raise SensingInputError(f"{what} has more than {MAX_GEOMETRY_POINTS} coordinates")
    try:
        geom = shapely.from_geojson(json.dumps(geometry))
    except (shapely.errors.ShapelyError, ValueError) as exc:
        raise SensingInputError(f"{what} is not valid GeoJSON: {exc}") from None
    if geom is None or geom.is_empty:
        raise SensingInputError(f"{what} is an empty geometry")
    xmin, ymin, xmax, ymax = geom.bounds
    if not (-180 <= xmin <= xmax <= 180 and -90 <= ymin <= ymax <= 90) or not all(map(math.isfinite, geom.bounds)):
        raise SensingInputError(f"{what} has coordinates outside longitude -180..180 / latitude -90..90 "
                                f"(bounds {geom.bounds}); send lon/lat degrees, longitude first")
    return text, shapely.to_wkb(geom)


def encode_result(value: Any, what: str = "result") -> tuple[float | None, str | None]:
    """An observation's result as (number, JSON text): floats keep only the number; integers both (so they come
    back as integers); booleans, strings, objects and arrays only the JSON text.

    Raises:
        SensingInputError: a missing (null) result, NaN or infinity.
    """
    if value is None:
        raise SensingInputError(f"{what} is missing (null); an observation needs a result")
    if isinstance(value, bool):
        return None, "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SensingInputError(f"{what} {value} is not a finite number")
        return value, None
    if isinstance(value, int):
        return float(value), str(value)
    return None, json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def decode_result(number: float | None, text: str | None) -> Any:
    """The JSON value of a stored result."""
    if text is not None:
        return json.loads(text)
    return number


def dumps(value: Any) -> str:
    """Compact JSON text (non-ASCII kept)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


__all__ = ["LOCAL", "PUBLIC", "Access", "decode_result", "dumps", "encode_result", "interval", "iso", "now_utc",
           "parse_geojson", "parse_instant", "parse_interval"]
