"""Mapbox Vector Tiles of a store layer, encoded by DuckDB (`ST_AsMVT`) on the WebMercatorQuad grid.

A layer is first projected to Web Mercator into an in-memory DuckDB (`MercatorWorkspace`, once per layer version,
on its first tile). A tile is then two queries: the count of features intersecting the tile plus its buffer (a
sequential scan on bounding-box columns that DuckDB prunes by row-group min/max, since rows are in Hilbert order)
and the encoding: every feature, or every n-th by `fid` when the count exceeds `max_features`, simplified below
`simplify_below_zoom` by one tile unit, clipped and quantised by `ST_AsMVTGeom`, aggregated by `ST_AsMVT`. The
R-tree of the store is not used: fetching a dense tile's rows from it one by one cost a second per tile.

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
    max_features: int = 5_000
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


class MercatorWorkspace:
    """An in-memory DuckDB holding layers' features projected to Web Mercator, one table per layer version.

    The store is read-only while the server runs and a version's table never changes, so each layer is projected
    once (`ST_Transform`, then sorted along a Hilbert curve so a tile's rows sit in few row groups) and every tile
    afterwards is a sequential scan with a cheap bounding-box predicate that DuckDB prunes by row-group min/max.
    Points keep `x`/`y` columns only; other geometries keep the projected geometry and its bounding box.
    Properties are stored already cast to MVT types. Thread-safe: one cursor per thread.
    """

    def __init__(self) -> None:
        self._con: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self._tables: dict[str, str] = {}
        self._building: dict[str, threading.Lock] = {}
        self._names: dict[str, str] = {}

    def _connection(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._con is None:
                from layers.db import connect

                self._con = connect(None)
                # Tiles are small queries served side by side: one thread each costs a third less CPU than two.
                self._con.execute("SET threads = 1")
            return self._con

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor on the workspace."""
        con = self._connection()
        cur = getattr(self._local, "cursor", None)
        if cur is None or getattr(self._local, "owner", None) is not con:
            cur = self._local.cursor = con.cursor()
            self._local.owner = con
        return cur

    def table(self, layer: VectorTileLayer) -> str:
        """The workspace table of a layer version, projected on first use (other callers wait for it)."""
        name = self._tables.get(layer.table)
        if name is not None:
            return name
        with self._lock:
            gate = self._building.get(layer.table)
            if gate is None:
                gate = self._building[layer.table] = threading.Lock()
                self._names[layer.table] = f"layer_{len(self._names)}"
            name = self._names[layer.table]
        with gate:
            if layer.table not in self._tables:
                _project(layer, self.cursor(), name)
                self._tables[layer.table] = name
        return name

    def close(self) -> None:
        """Drop every projected table (the memory goes back)."""
        with self._lock:
            if self._con is not None:
                self._con.close()
            self._con = None
            self._tables.clear()
            self._building.clear()
            self._names.clear()
            self._local = threading.local()


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _is_point(info: LayerInfo) -> bool:
    return info.geometry_type in ("Point", "Point Z")


def _project(layer: VectorTileLayer, cur: duckdb.DuckDBPyConnection, name: str) -> None:
    """Copy a layer's features into the workspace table `name`, in Web Mercator (see `MercatorWorkspace`)."""
    props = "".join(f"{mvt_property(f)} AS {_quoted(f.name)}, " for f in layer.info.fields)
    # PROJ has no CGCS2000 -> WGS 84 shift (they agree to centimetres), and EPSG:4326 -> 3857 is ~4x faster than
    # EPSG:4490 -> 3857 in DuckDB 1.4 (measured), so stored lon/lat are read as WGS 84.
    merc = "ST_Transform(geom, 'EPSG:4326', 'EPSG:3857', always_xy := true)"
    if _is_point(layer.info):
        shape, geom = "ST_X(m) AS __x, ST_Y(m) AS __y", ""
        kx, ky = "__x", "__y"
    else:
        shape = ("ST_AsWKB(m) AS __wkb, ST_XMin(m) AS __xmin, ST_YMin(m) AS __ymin, ST_XMax(m) AS __xmax, "
                 "ST_YMax(m) AS __ymax")
        geom = ", ST_GeomFromWKB(__wkb) AS __geom"
        kx, ky = "(__xmin + __xmax) / 2", "(__ymin + __ymax) / 2"
    arrow = layer.store.cursor().execute(
        f"SELECT fid, {props}{shape} FROM (SELECT *, {merc} AS m FROM {layer.table} WHERE geom IS NOT NULL)"
    ).fetch_arrow_table()
    cur.register("projected", arrow)
    try:
        cols = ", ".join(_quoted(c) for c in arrow.column_names if c != "__wkb")
        bounds = f"{{'min_x': min({kx}), 'min_y': min({ky}), 'max_x': max({kx}), 'max_y': max({ky})}}::BOX_2D"
        cur.execute(f"CREATE TABLE {name} AS SELECT {cols}{geom} FROM projected "
                    f"ORDER BY ST_Hilbert({kx}, {ky}, (SELECT {bounds} FROM projected))")
    finally:
        cur.unregister("projected")


@dataclass
class VectorTileLayer:
    """A store layer as a source of vector tiles.

    Cheap to construct (no I/O). The first `tile()` projects the layer into `workspace` (a second or two for a
    million points); each tile is then two short queries on a cursor of the calling thread: the count of features
    in the buffered tile, which sets the thinning stride, and the encoding of every stride-th of them.

    Args:
        store: an open store.
        info: the layer's catalogue record (fields, geometry type, extent).
        table: its feature table (`LayerStore.table_name`).
        options: how tiles are cut.
        workspace: where projected layers live (share one between the layers of a server); default one of its own.
    """

    store: LayerStore
    info: LayerInfo
    table: str
    options: MvtOptions = field(default_factory=MvtOptions)
    workspace: MercatorWorkspace = field(default_factory=MercatorWorkspace, repr=False)

    @classmethod
    def from_store(cls, store: LayerStore, name: str, options: MvtOptions | None = None,
                   workspace: MercatorWorkspace | None = None) -> VectorTileLayer:
        """The layer `name` of an open store (raises `LayerNotFoundError` when it is absent or hidden)."""
        return cls(store, store.info(name), store.table_name(name), options or MvtOptions(),
                   workspace or MercatorWorkspace())

    @property
    def name(self) -> str:
        """The layer name, also the MVT layer name inside each tile."""
        return self.info.name

    def prepare(self) -> None:
        """Project the layer into the workspace now rather than on the first tile."""
        self.workspace.table(self)

    def _where(self) -> str:
        if _is_point(self.info):
            return "__x BETWEEN $x0 AND $x1 AND __y BETWEEN $y0 AND $y1"
        return ("__xmax >= $x0 AND __xmin <= $x1 AND __ymax >= $y0 AND __ymin <= $y1 "
                "AND ST_Intersects(__geom, ST_MakeEnvelope($x0, $y0, $x1, $y1))")

    def _sql(self, table: str, simplify: bool, thin: bool) -> str:
        cols = "".join(f"{_quoted(f.name)}, " for f in self.info.fields)
        geom = "ST_Point(__x, __y)" if _is_point(self.info) else "__geom"
        if simplify:
            geom = f"ST_Simplify({geom}, $tolerance)"
        # The NULL test sits in the aggregates' FILTER: as a WHERE, DuckDB would evaluate ST_AsMVTGeom on every row
        # of the box before the cheap stride test.
        return f"""
            WITH q AS (
                SELECT fid, {cols}ST_AsMVTGeom({geom},
                    {{'min_x': $left, 'min_y': $bottom, 'max_x': $right, 'max_y': $top}}::BOX_2D, $extent, $buffer,
                    true) AS geom
                FROM {table} WHERE {self._where()}{" AND fid % $stride = 0" if thin else ""})
            SELECT ST_AsMVT(q, $name, $extent, 'geom', 'fid') FILTER (WHERE geom IS NOT NULL),
                   count(*) FILTER (WHERE geom IS NOT NULL)
            FROM q"""

    def tile(self, z: int, x: int, y: int) -> VectorTile:
        """Encode one WebMercatorQuad tile.

        Features intersecting the tile and its buffer are counted; above `max_features`, every n-th by `fid` is
        kept (n = ceil(count / max_features)).

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
        table = self.workspace.table(self)
        cur = self.workspace.cursor()
        box = {"x0": xb.left - pad, "y0": xb.bottom - pad, "x1": xb.right + pad, "y1": xb.top + pad}
        stride = 1
        if self.info.feature_count > o.max_features:
            count = cur.execute(f"SELECT count(*) FROM {table} WHERE {self._where()}", box).fetchone()[0]
            stride = max(1, math.ceil(count / o.max_features))
        simplify = z < o.simplify_below_zoom and not _is_point(self.info)
        params: dict[str, object] = {**box, "left": xb.left, "bottom": xb.bottom, "right": xb.right,
                                     "top": xb.top, "extent": o.extent, "buffer": o.buffer, "name": self.name}
        if simplify:
            params["tolerance"] = (xb.right - xb.left) / o.extent
        if stride > 1:
            params["stride"] = stride
        content, count = cur.execute(self._sql(table, simplify, stride > 1), params).fetchone()
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
