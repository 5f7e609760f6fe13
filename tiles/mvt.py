"""Mapbox Vector Tiles of a store layer, encoded by DuckDB (`ST_AsMVT`) on the WebMercatorQuad grid.

One query per tile: the features intersecting the tile (plus its buffer) are selected through the layer's R-tree
(the selection is a MATERIALIZED CTE with a constant envelope, the only shape DuckDB 1.4 plans as an
RTREE_INDEX_SCAN), thinned to at most `max_features` by a deterministic stride on `fid`, simplified below
`simplify_below_zoom` by one tile unit, clipped and quantised by `ST_AsMVTGeom`, and aggregated by `ST_AsMVT`.

SQL is built from catalogue identifiers only (the layer's table name and field names, quoted); tile numbers and
bounds are parameters.

    >>> from layers import open_read_only
    >>> with open_read_only("city.duckdb") as store:  # doctest: +SKIP
    ...     tile = VectorTileLayer.from_store(store, "shelters").tile(14, 13442, 6208)
    ...     tile.features, len(tile.content)
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import duckdb
import morecantile

from tiles.errors import TileRequestError

if TYPE_CHECKING:
    from layers.models import FieldInfo, LayerInfo
    from layers.store import LayerStore

MVT_MEDIA_TYPE = "application/vnd.mapbox-vector-tile"
WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
MAX_ZOOM = 24
_R = 6378137.0

_NATIVE = {"BOOLEAN", "VARCHAR", "FLOAT", "DOUBLE", "INTEGER", "BIGINT"}
_INTEGER = ("TINYINT", "SMALLINT", "INTEGER", "UTINYINT", "USMALLINT")
_BIGINT = ("BIGINT", "UINTEGER")
_FLOAT = ("FLOAT", "REAL")
_DOUBLE = ("DOUBLE", "DECIMAL", "NUMERIC", "HUGEINT", "UBIGINT", "UHUGEINT")


class VectorTile(NamedTuple):
    """An encoded tile: `content` (MVT protobuf bytes) and the number of features in it (0: an empty tile)."""

    content: bytes
    features: int


@dataclass(frozen=True)
class MvtOptions:
    """How tiles are cut.

    Attributes:
        extent: tile extent in MVT units.
        buffer: buffer around the tile in MVT units (keeps lines and labels continuous across tile edges).
        max_features: at most this many features per tile; denser tiles keep every n-th feature by `fid`.
        simplify_below_zoom: lines and polygons are simplified by one tile unit below this zoom.
        minzoom, maxzoom: zoom range advertised (TileJSON) and accepted.
    """

    extent: int = 4096
    buffer: int = 64
    max_features: int = 20_000
    simplify_below_zoom: int = 16
    minzoom: int = 0
    maxzoom: int = 22


def mvt_property(f: FieldInfo) -> str:
    """The SQL expression of a field as an MVT property (ST_AsMVT takes VARCHAR, FLOAT, DOUBLE, INTEGER, BIGINT,
    BOOLEAN only: DECIMAL, dates and the rest are cast)."""
    t = f.type.upper()
    col = '"' + f.name.replace('"', '""') + '"'
    if t in _NATIVE:
        return col
    if t.startswith(_INTEGER):
        return f"{col}::INTEGER"
    if t.startswith(_BIGINT):
        return f"{col}::BIGINT"
    if t.startswith(_FLOAT):
        return f"{col}::FLOAT"
    if t.startswith(_DOUBLE):
        return f"{col}::DOUBLE"
    return f"{col}::VARCHAR"


def _lonlat(x: float, y: float) -> tuple[float, float]:
    """Spherical Mercator metres to lon/lat degrees, clamped to the globe (tile buffers reach past its edges)."""
    lon = math.degrees(x / _R)
    lat = 90.0 if y / _R > 20 else -90.0 if y / _R < -20 else math.degrees(math.atan(math.sinh(y / _R)))
    return max(-180.0, min(180.0, lon)), lat


def check_tile(z: int, x: int, y: int, minzoom: int = 0, maxzoom: int = MAX_ZOOM) -> morecantile.Tile:
    """A WebMercatorQuad tile, checked.

    Raises:
        TileRequestError: zoom outside [minzoom, maxzoom] or x/y outside the matrix of that zoom.
    """
    if not minzoom <= z <= maxzoom:
        raise TileRequestError(f"zoom {z} is outside {minzoom}..{maxzoom} for WebMercatorQuad")
    n = 1 << z
    if not (0 <= x < n and 0 <= y < n):
        raise TileRequestError(f"Tile(x={x}, y={y}, z={z}) is outside WebMercatorQuad: x and y must be in 0..{n - 1}")
    return morecantile.Tile(x, y, z)


@dataclass
class VectorTileLayer:
    """A store layer as a source of vector tiles.

    Cheap to construct (no I/O); `tile()` runs one query on a cursor of the calling thread.

    Args:
        store: an open store.
        info: the layer's catalogue record (fields, geometry type, extent).
        table: its feature table (`LayerStore.table_name`).
        options: how tiles are cut.
    """

    store: LayerStore
    info: LayerInfo
    table: str
    options: MvtOptions = field(default_factory=MvtOptions)
    _local: threading.local = field(default_factory=threading.local, repr=False)

    @classmethod
    def from_store(cls, store: LayerStore, name: str, options: MvtOptions | None = None) -> VectorTileLayer:
        """The layer `name` of an open store (raises `LayerNotFoundError` when it is absent or hidden)."""
        return cls(store, store.info(name), store.table_name(name), options or MvtOptions())

    @property
    def name(self) -> str:
        """The layer name, also the MVT layer name inside each tile."""
        return self.info.name

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._local.cursor = self.store.cursor()
        return cur

    def _sql(self, simplify: bool) -> str:
        props = [(f.name, mvt_property(f)) for f in self.info.fields]
        sel_cols = "".join(f'"{n.replace(chr(34), chr(34) * 2)}", ' for n, _ in props)
        out_cols = "".join(f'{expr} AS "{n.replace(chr(34), chr(34) * 2)}", ' for n, expr in props)
        # PROJ has no CGCS2000 -> WGS 84 shift (they agree to centimetres), and EPSG:4326 -> 3857 is ~4x faster than
        # EPSG:4490 -> 3857 in DuckDB 1.4 (measured), so stored lon/lat are read as WGS 84.
        merc = "ST_Transform(geom, 'EPSG:4326', 'EPSG:3857', always_xy := true)"
        if simplify:
            merc = f"ST_Simplify({merc}, ?)"
        return f"""
            WITH s AS MATERIALIZED (
                SELECT fid, {sel_cols}geom FROM {self.table} WHERE ST_Intersects(geom, ST_MakeEnvelope(?, ?, ?, ?))),
            n AS (SELECT greatest(1, ceil(count(*) / ?))::BIGINT AS stride FROM s),
            q AS (
                SELECT fid, {out_cols}ST_AsMVTGeom({merc},
                    {{'min_x': ?, 'min_y': ?, 'max_x': ?, 'max_y': ?}}::BOX_2D, ?, ?, true) AS geom
                FROM s, n WHERE n.stride = 1 OR fid % n.stride = 0)
            SELECT ST_AsMVT(q, ?, ?, 'geom', 'fid'), count(*) FROM q WHERE geom IS NOT NULL"""

    def tile(self, z: int, x: int, y: int) -> VectorTile:
        """Encode one WebMercatorQuad tile.

        Args:
            z, x, y: the tile (XYZ numbering, y from the north).

        Returns:
            The tile bytes and its feature count (0 for a tile with no feature: serve it as 204 No Content).

        Raises:
            TileRequestError: the tile is outside the grid or the layer's zoom range.
        """
        o = self.options
        t = check_tile(z, x, y, o.minzoom, o.maxzoom)
        xb = WEB_MERCATOR.xy_bounds(t)
        pad = (xb.right - xb.left) * o.buffer / o.extent
        lon0, lat0 = _lonlat(xb.left - pad, xb.bottom - pad)
        lon1, lat1 = _lonlat(xb.right + pad, xb.top + pad)
        ext = self.info.extent
        if ext is not None and (lon0 > ext[2] or lon1 < ext[0] or lat0 > ext[3] or lat1 < ext[1]):
            return VectorTile(b"", 0)
        simplify = z < o.simplify_below_zoom and "Point" not in self.info.geometry_type
        params: list[object] = [lon0, lat0, lon1, lat1, o.max_features]
        if simplify:
            params.append((xb.right - xb.left) / o.extent)
        params += [xb.left, xb.bottom, xb.right, xb.top, o.extent, o.buffer, self.name, o.extent]
        content, count = self._cursor().execute(self._sql(simplify), params).fetchone()
        return VectorTile(bytes(content) if count else b"", int(count))


def vector_layers_json(infos: Sequence[LayerInfo], options: MvtOptions) -> list[dict[str, object]]:
    """TileJSON 3.0 `vector_layers` entries (id, fields with their types, zoom range) of layers."""

    def kind(f: FieldInfo) -> str:
        t = f.type.upper()
        if t == "BOOLEAN":
            return "Boolean"
        if t.startswith(_INTEGER + _BIGINT + _FLOAT + _DOUBLE):
            return "Number"
        return "String"

    return [{"id": i.name, "description": i.title, "minzoom": options.minzoom, "maxzoom": options.maxzoom,
             "fields": {f.name: kind(f) for f in i.fields}} for i in infos]


__all__ = ["MVT_MEDIA_TYPE", "MvtOptions", "VectorTile", "VectorTileLayer", "check_tile", "mvt_property",
           "vector_layers_json"]
