"""Queries of a `LayerStore`: selections by bbox, geometry, CQL2 filter and nearest neighbours as Arrow tables,
GeoDataFrames and GeoJSON feature pages (bbox selections answered from the in-memory layer cache when it holds the
layer), counts, query plans and statistics per division; and the bbox check and conversions they share."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Hashable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa
import shapely
from pyproj import CRS

from cim.sources.crs import parse_crs, transformer
from layers.budget import bounded
from layers.cache import CachedLayer, LayerCache, estimate_bytes, load_layer
from layers.db import quote
from layers.errors import LayerInputError
from layers.filters import compile_filter
from layers.ingest import FID, stage
from layers.models import FeaturePage, LayerInfo, StatsResult, StatsRow
from layers.sources import GEOM, read_source
from layers.types import STORE_CRS, BBox, LonLat
from layers.values import json_value

if TYPE_CHECKING:
    import geopandas as gpd

_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
            "FLOAT", "DOUBLE", "REAL")


class LayerQueries:
    """The query part of `LayerStore` (a mixin: the store holds the catalogue reads, `_reader()` and the layer
    cache these methods use)."""

    # what `LayerStore` gives these methods (declared here for readers and type checkers; the store sets them)
    cache: LayerCache

    if TYPE_CHECKING:
        def _reader(self) -> duckdb.DuckDBPyConnection: ...
        def _layer_entry(self, name: str, version: int | None) -> tuple[LayerInfo, str, str]: ...
        def _layer_meta(self, name: str, version: int | None) -> tuple[LayerInfo, str]: ...
        def info(self, name: str, version: int | None = None) -> LayerInfo: ...
        def table_name(self, name: str, version: int | None = None) -> str: ...

    def _selection(
        self,
        name: str,
        *,
        bbox: Sequence[float] | None,
        intersects: Any,
        where: str | None,
        fields: Sequence[str] | None,
        version: int | None,
    ) -> tuple[LayerInfo, str, list[str], list[str], list[Any]]:
        info, table = self._layer_meta(name, version)
        by_fold = {f.casefold(): f for f in info.field_names()}
        if fields is None:
            cols = info.field_names()
        else:
            cols = []
            for f in fields:
                if f.casefold() == FID:
                    continue
                if f.casefold() not in by_fold:
                    raise LayerInputError(f"--fields: {f!r} is not a field of {name!r}; fields: "
                                          f"{', '.join(info.field_names())}")
                cols.append(by_fold[f.casefold()])
        clauses: list[str] = []
        params: list[Any] = []
        if bbox is not None:
            # Written as literals (finite floats, checked): a bound parameter makes DuckDB plan the query twice,
            # once for preparing and once more to see the constant the R-tree needs (0.5 ms of a 1.5 ms query).
            b = check_bbox(bbox)
            clauses.append(f"ST_Intersects(geom, ST_MakeEnvelope({b.xmin!r}, {b.ymin!r}, {b.xmax!r}, {b.ymax!r}))")
        if intersects is not None:
            clauses.append("ST_Intersects(geom, ST_GeomFromWKB(?))")
            params.append(shapely.to_wkb(selection_geometry(intersects)))
        if where:
            flt = compile_filter(where, [FID, *info.field_names()])
            clauses.append(flt.sql)
            params.extend(flt.params)
        return info, table, cols, clauses, params

    def query_arrow(
        self,
        name: str,
        *,
        bbox: Sequence[float] | None = None,
        intersects: Any = None,
        where: str | None = None,
        fields: Sequence[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
        version: int | None = None,
        order: bool | None = None,
    ) -> pa.Table:
        """Features as an Arrow table: `fid`, the fields, `geom` as WKB (EPSG:4490 lon/lat).

        Args:
            name: the layer.
            bbox: (xmin, ymin, xmax, ymax) lon/lat; features intersecting it (uses the R-tree index).
            intersects: a shapely geometry in lon/lat; features intersecting it (uses the R-tree index).
            where: a CQL2-text attribute filter (see `layers.filters`).
            fields: attributes to return (default all).
            limit, offset: paging.
            version: an older version (default current).
            order: sort by fid; by default only when paging (otherwise rows come in the store's Hilbert order).

        A bbox selection without `intersects` and `where` is answered from the in-memory layer cache
        (`layers.cache`) when the layer fits its budget: the second such query of a layer version loads it
        (`layers.cache.LOAD_ON_QUERY`).
        """
        out = self._query_arrow(name, bbox=bbox, intersects=intersects, where=where, fields=fields, limit=limit,
                                offset=offset, version=version, order=order, cached=True)
        assert isinstance(out, pa.Table)
        return out

    def _query_arrow(self, name: str, *, bbox: Sequence[float] | None, intersects: Any, where: str | None,
                     fields: Sequence[str] | None, limit: int | None, offset: int, version: int | None,
                     order: bool | None, cached: bool, frame: bool = False) -> pa.Table | gpd.GeoDataFrame:
        """The selection as an Arrow table; with `frame`, as a GeoDataFrame when the layer cache has the layer's
        frame (see `layers.cache.LayerFrame`), else still as Arrow (the caller converts it)."""
        _, table, cols, clauses, params = self._selection(name, bbox=bbox, intersects=intersects, where=where,
                                                          fields=fields, version=version)
        by_fid = bool(order or (order is None and (limit is not None or offset)))
        if cached and self._bbox_only(bbox, intersects, where) and (limit is None or int(limit) >= 0) \
                and int(offset) >= 0:
            key, hot = self._hot_entry(name, version)
            if hot is not None:
                page = {"limit": None if limit is None else int(limit), "offset": int(offset), "order_by_fid": by_fid}
                if frame and self.cache.frame(key, hot, _store_crs()) is not None:
                    return hot.query_frame(check_bbox(bbox), cols, **page)
                return hot.query(check_bbox(bbox), cols, **page)
        sql = (f"SELECT fid, {''.join(quote(c) + ', ' for c in cols)}ST_AsWKB(geom) AS geom FROM {table}"
               + (" WHERE " + " AND ".join(clauses) if clauses else ""))
        if by_fid:
            sql += " ORDER BY fid"
        elif bbox is not None or intersects is not None:
            # The R-tree yields rows in its own order; the store's (Hilbert) order is the documented one. Paging is
            # done here: DuckDB 1.4.4 fails with an internal error on ORDER BY rowid LIMIT after an R-tree scan.
            sql += " ORDER BY rowid"
            table = self._run(sql, params, where)
            return table.slice(int(offset), None if limit is None else max(int(limit), 0))
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        if offset:
            sql += " OFFSET ?"
            params.append(int(offset))
        return self._run(sql, params, where)

    def _bbox_only(self, bbox: Sequence[float] | None, intersects: Any, where: str | None) -> bool:
        """True for the selections the layer cache answers: a bbox with some area and no other filter (a window of
        zero width or height goes to DuckDB: its envelope is a degenerate polygon, left to DuckDB's own rules)."""
        if not self.cache.enabled or bbox is None or intersects is not None or where:
            return False
        b = check_bbox(bbox)
        return b.xmin < b.xmax and b.ymin < b.ymax

    def _hot_layer(self, name: str, version: int | None) -> CachedLayer | None:
        """The layer version from the cache, loading it now if it fits; None: ask DuckDB (the cache is off, the
        layer is too large, or another thread is loading it)."""
        return self._hot_entry(name, version)[1]

    def _hot_entry(self, name: str, version: int | None) -> tuple[Hashable, CachedLayer | None]:
        """The layer version's cache key and `_hot_layer`."""
        info, table, key = self._layer_entry(name, version)
        layer = self.cache.get(key)
        if layer is not None or not self.cache.claim(key):
            return key, layer
        try:
            cur = self._reader()
            if self.cache.too_large(key, estimate_bytes(cur, table, info.field_names(), info.feature_count)):
                self.cache.release(key)
                return key, None
            layer = load_layer(cur, table, info.field_names(), info.geometry_type)
        except BaseException:
            self.cache.release(key)
            raise
        self.cache.put(key, layer)
        return key, layer

    def _run(self, sql: str, params: list[Any], where: str | None) -> pa.Table:
        try:
            if not where:
                return self._reader().execute(sql, params).fetch_arrow_table()
            # a filter is the caller's text: its statement is interrupted when the caller's time budget runs out
            # (whole-layer reads that build shared caches are not bounded by one request's budget)
            with bounded(self._reader(), "the filter") as cur:
                return cur.execute(sql, params).fetch_arrow_table()
        except (duckdb.ConversionException, duckdb.BinderException, duckdb.InvalidInputException) as exc:
            raise LayerInputError(f"--where {where!r}: {str(exc).splitlines()[0]}") from exc

    def count(self, name: str, *, bbox: Sequence[float] | None = None, intersects: Any = None,
              where: str | None = None, version: int | None = None) -> int:
        """Number of features matching the same selection as `query`."""
        return self._count(name, bbox=bbox, intersects=intersects, where=where, version=version, cached=True)

    def _count(self, name: str, *, bbox: Sequence[float] | None, intersects: Any, where: str | None,
               version: int | None, cached: bool) -> int:
        _, table, _, clauses, params = self._selection(name, bbox=bbox, intersects=intersects, where=where,
                                                       fields=[], version=version)
        if cached and self._bbox_only(bbox, intersects, where):
            hot = self._hot_layer(name, version)
            if hot is not None:
                return int(hot.select(check_bbox(bbox)).size)
        sql = f"SELECT count(*) AS n FROM {table}" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        return int(self._run(sql, params, where).column(0)[0].as_py())

    def explain(self, name: str, *, bbox: Sequence[float] | None = None, intersects: Any = None,
                where: str | None = None) -> str:
        """DuckDB's physical plan of a selection (look for RTREE_INDEX_SCAN)."""
        _, table, _, clauses, params = self._selection(name, bbox=bbox, intersects=intersects, where=where,
                                                       fields=[], version=None)
        sql = f"EXPLAIN SELECT fid FROM {table}" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        return "\n".join(str(r[1]) for r in self._reader().execute(sql, params).fetchall())

    def query(
        self,
        name: str,
        *,
        bbox: Sequence[float] | None = None,
        intersects: Any = None,
        where: str | None = None,
        near: Sequence[float] | None = None,
        k: int = 10,
        fields: Sequence[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
        version: int | None = None,
        order: bool | None = None,
    ) -> gpd.GeoDataFrame:
        """Features as a GeoDataFrame in EPSG:4490 (arguments as `query_arrow`).

        Args:
            near: (lon, lat): return the `k` features nearest to this point, nearest first, with a `distance_m`
                column (metres, on the ellipsoid's local azimuthal-equidistant plane). Combines with the filters.
            k: how many neighbours for `near`.
            order: sort by fid (default: only when paging).

        A bbox selection answered from the layer cache is taken by row position from the layer's cached
        GeoDataFrame (built by the first such query, if it fits the cache budget; see `layers.cache.LayerFrame`).
        """
        if near is not None:
            return self._nearest(name, LonLat(*map(float, near)), k, bbox=bbox, intersects=intersects,
                                 where=where, fields=fields, version=version)
        out = self._query_arrow(name, bbox=bbox, intersects=intersects, where=where, fields=fields, limit=limit,
                                offset=offset, version=version, order=order, cached=True, frame=True)
        return to_geodataframe(out) if isinstance(out, pa.Table) else out

    def _nearest(self, name: str, point: LonLat, k: int, **kw: Any) -> gpd.GeoDataFrame:
        if k < 1:
            raise LayerInputError(f"--k must be at least 1, not {k}")
        if not (-180 <= point.lon <= 180 and -90 <= point.lat <= 90):
            raise LayerInputError(f"--near {point.lon},{point.lat} is not a lon,lat in degrees")
        bbox = kw.pop("bbox")
        # the hot-layer cache is for bbox queries: a nearest-neighbour search never loads a layer into it
        total = self._count(name, bbox=bbox, intersects=kw["intersects"], where=kw["where"], version=kw["version"],
                            cached=False)
        k = min(k, total)
        aeqd = f"+proj=aeqd +lat_0={point.lat} +lon_0={point.lon} +ellps=GRS80 +units=m"
        to_local = transformer(STORE_CRS, aeqd)
        radius = 0.002  # degrees of latitude; grows until the k nearest are certainly inside the window
        while True:
            dx = radius / max(math.cos(math.radians(point.lat)), 1e-6)
            window = (point.lon - dx, point.lat - radius, point.lon + dx, point.lat + radius)
            window = _clip_bbox(window, bbox)
            table = self._query_arrow(name, bbox=window, limit=None, offset=0, order=None, cached=False, **kw)
            covers_all = radius >= 180
            if table.num_rows >= k or covers_all:
                geoms = shapely.from_wkb(table.column(GEOM).to_numpy(zero_copy_only=False))
                local = shapely.transform(geoms, lambda c: np.column_stack(to_local.transform(c[:, 0], c[:, 1])))
                dist = shapely.distance(shapely.Point(0, 0), local)
                order = np.argsort(dist, kind="stable")[:k]
                needed = (dist[order[-1]] if k else 0.0) / 110_574.0 * 1.01  # metres -> degrees of latitude
                if covers_all or needed <= radius:
                    out = table.take(pa.array(order)).append_column("distance_m", pa.array(dist[order]))
                    return to_geodataframe(out)
                radius = needed
            else:
                radius *= 4

    def features(
        self,
        name: str,
        *,
        bbox: Sequence[float] | None = None,
        where: str | None = None,
        fields: Sequence[str] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> FeaturePage:
        """A page of GeoJSON-ready features with `numberMatched` (for OGC API Features)."""
        table = self.query_arrow(name, bbox=bbox, where=where, fields=fields, limit=limit, offset=offset)
        matched = self.count(name, bbox=bbox, where=where)
        return FeaturePage(layer=name, number_matched=matched, number_returned=table.num_rows,
                           features=list(geojson_features(table)))

    def stats(
        self,
        name: str,
        by: str,
        *,
        field: str | None = None,
        agg: str = "count",
        label: str | None = None,
    ) -> StatsResult:
        """Statistics of a layer per division of another layer (e.g. population per community).

        Each feature is assigned to every division that contains its representative point (the point itself, or a
        point on the surface of a line or polygon), so a polygon straddling a border is counted once.

        Args:
            name: the layer to summarise.
            by: the division layer (polygons).
            field: numeric field to aggregate (required unless agg is count).
            agg: count, sum, mean, min or max.
            label: division field to name rows by (default: the first text field of the division layer).
        """
        aggs = {"count": None, "sum": "sum", "mean": "avg", "min": "min", "max": "max"}
        if agg not in aggs:
            raise LayerInputError(f"--agg {agg!r} is not one of {', '.join(aggs)}")
        info = self.info(name)
        div = self.info(by)
        if "POLYGON" not in div.geometry_type.upper():
            raise LayerInputError(f"--by {by!r} has {div.geometry_type} geometries; divisions must be polygons")
        value_sql = "NULL"
        if field is not None:
            types = {f.name.casefold(): f for f in info.fields}
            f = types.get(field.casefold())
            if f is None:
                raise LayerInputError(f"--field {field!r} is not a field of {name!r}; fields: "
                                      f"{', '.join(info.field_names())}")
            if agg != "count" and not f.type.upper().startswith(_NUMERIC):
                raise LayerInputError(f"--field {f.name!r} is {f.type}, not numeric; --agg {agg} needs numbers")
            field = f.name
            value_sql = quote(f.name)
        elif agg != "count":
            raise LayerInputError(f"--agg {agg} needs --field")
        if label is None:
            label = next((f.name for f in div.fields if f.type.upper() == "VARCHAR"), None)
        elif label.casefold() not in {f.name.casefold() for f in div.fields}:
            raise LayerInputError(f"--label {label!r} is not a field of {by!r}; fields: {', '.join(div.field_names())}")
        else:
            label = next(f.name for f in div.fields if f.name.casefold() == label.casefold())
        label_sql = f"d.{quote(label)}::VARCHAR" if label else "NULL"
        agg_sql = f"{aggs[agg]}(p.v)" if aggs[agg] else "NULL"
        # a point is its own representative point: ST_PointOnSurface would only copy a million of them
        point_sql = "geom" if info.geometry_type.split()[0] == "Point" else "ST_PointOnSurface(geom)"
        sql = f"""
            WITH p AS (SELECT {point_sql} AS pt, {value_sql} AS v FROM {self.table_name(name)})
            SELECT d.fid, {label_sql} AS label, count(p.pt) AS n, {agg_sql} AS value
            FROM {self.table_name(by)} d LEFT JOIN p ON ST_Contains(d.geom, p.pt)
            GROUP BY d.fid, label ORDER BY d.fid"""
        rows = self._reader().execute(sql).fetchall()
        return StatsResult(
            layer=name, divisions=by, label_field=label, field=field, agg=agg,
            rows=[StatsRow(division_fid=r[0], division=r[1], count=r[2],
                           value=float(r[2]) if agg == "count" else (None if r[3] is None else float(r[3])))
                  for r in rows])


def check_bbox(bbox: Sequence[float]) -> BBox:
    """A query's bbox as a `BBox` in lon/lat degrees (the store's CGCS2000), checked.

    Raises:
        LayerInputError: not four finite numbers; outside -180..180 / -90..90 (the message says when the numbers
            look like projected metres or latitude first); min above max (the message gives the box the user
            probably meant).
    """
    try:
        values = [float(x) for x in bbox]
    except (TypeError, ValueError) as exc:
        raise LayerInputError(f"--bbox {bbox!r}: expected four numbers minlon,minlat,maxlon,maxlat") from exc
    if len(values) != 4 or not all(math.isfinite(x) for x in values):
        raise LayerInputError(f"--bbox {bbox!r}: expected four finite numbers minlon,minlat,maxlon,maxlat")
    b = BBox(*values)
    text = ",".join(f"{x:g}" for x in b)
    lons, lats = (b.xmin, b.xmax), (b.ymin, b.ymax)
    if not (all(-180 <= x <= 180 for x in lons) and all(-90 <= y <= 90 for y in lats)):
        if any(abs(v) > 360 for v in b):
            why = ("these look like projected coordinates (metres); a bbox is lon/lat in degrees: transform its "
                   "corners to EPSG:4490 or EPSG:4326 first")
        elif all(-90 <= x <= 90 for x in lons) and all(-180 <= y <= 180 for y in lats):
            why = (f"latitude first? the order is minlon,minlat,maxlon,maxlat: "
                   f"{b.ymin:g},{b.xmin:g},{b.ymax:g},{b.xmax:g}")
        else:
            why = "longitudes must lie in -180..180 and latitudes in -90..90"
        raise LayerInputError(f"--bbox {text}: outside the globe; {why}")
    if b.xmin > b.xmax or b.ymin > b.ymax:
        fixed = (min(lons), min(lats), max(lons), max(lats))
        raise LayerInputError(f"--bbox {text}: {'minlon > maxlon' if b.xmin > b.xmax else 'minlat > maxlat'}; the "
                              f"order is minlon,minlat,maxlon,maxlat (did you mean "
                              f"{','.join(f'{v:g}' for v in fixed)}?)")
    return b


def _clip_bbox(window: tuple[float, float, float, float], bbox: Sequence[float] | None) -> BBox:
    if bbox is None:
        return BBox(*window)
    b = check_bbox(bbox)
    return BBox(max(window[0], b.xmin), max(window[1], b.ymin), min(window[2], b.xmax), min(window[3], b.ymax)) \
        if window[0] <= b.xmax and window[2] >= b.xmin and window[1] <= b.ymax and window[3] >= b.ymin \
        else BBox(b.xmin, b.ymin, b.xmin, b.ymin)


def selection_geometry(value: Any) -> Any:
    """A shapely geometry in lon/lat from a geometry, or from a file (all its features, reprojected, unioned).

    Raises:
        LayerInputError: the file has no usable geometry.
    """
    if isinstance(value, shapely.Geometry):
        return value
    staged = stage(read_source(value))
    geoms = shapely.from_wkb(staged.table.column(GEOM).to_numpy(zero_copy_only=False))
    return shapely.union_all(geoms)


def to_geodataframe(table: pa.Table) -> gpd.GeoDataFrame:
    """An Arrow table with a WKB `geom` column (as `query_arrow` returns) as a GeoDataFrame in EPSG:4490."""
    import geopandas as gpd

    geoms = shapely.from_wkb(table.column(GEOM).to_numpy(zero_copy_only=False))
    df = table.drop_columns([GEOM]).to_pandas()
    df["geometry"] = gpd.array.GeometryArray(geoms, crs=_store_crs())
    return gpd.GeoDataFrame(df, geometry="geometry")


@functools.cache
def _store_crs() -> CRS:
    return parse_crs(STORE_CRS)  # built once: a pyproj CRS from a string costs more than a small query


def geojson_features(table: pa.Table) -> Iterator[dict[str, Any]]:
    """GeoJSON Feature dicts (`id` = fid) from an Arrow table with a WKB `geom` column."""
    geoms = shapely.to_geojson(shapely.from_wkb(table.column(GEOM).to_numpy(zero_copy_only=False)))
    props = table.drop_columns([FID, GEOM]).to_pylist()
    fids = table.column(FID).to_pylist()
    for fid, p, g in zip(fids, props, geoms, strict=True):
        yield {"type": "Feature", "id": fid, "geometry": None if g is None else json.loads(g),
               "properties": {k: json_value(v) for k, v in p.items()}}


__all__ = ["LayerQueries", "check_bbox", "geojson_features", "selection_geometry", "to_geodataframe"]
