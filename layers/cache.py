"""An in-process cache of hot layer versions, for bbox queries without a DuckDB statement.

DuckDB's fixed cost per statement (parse, bind, plan: about 0.6 ms) plus fetching attributes by row id is more than
a whole lookup in an in-memory index, so `LayerStore` keeps the layers it is asked about in memory, least recently
used out first, within a byte budget:

- the version's features as one Arrow table (`fid`, every field, `geom` as WKB) in the store's row order (the rows
  are Hilbert-sorted), read with one DuckDB query by the second bbox query of that version (the first is answered
  by DuckDB, so a one-shot process such as `cim layers query` never loads a whole layer for one window);
- each feature's bounding box, float64, and a packed index over them (`PackedBoxIndex`): the rows already sit in
  Hilbert order, so blocks of consecutive rows are tight boxes and the tree is just their bounds, level by level.

Only bbox selections (with fields, limit, offset) are answered here; the answer is the DuckDB path's exactly: the
bbox candidates whose box is not inside the window are tested for true intersection with shapely, as DuckDB's
`ST_Intersects` does. Versions are immutable (a re-import writes a new table), so a cached version never goes
stale; the store looks the current version up in its own catalogue cache.

For `LayerStore.query` (GeoDataFrame answers) a cached version also gets a `LayerFrame`, built by its first
GeoDataFrame query answered from the cache: the whole layer as a GeoDataFrame with shapely geometries, from which a
query takes its rows by position, as GeoPandas' own `iloc` does, instead of parsing WKB and building a frame from
scratch (the GeoDataFrame constructor alone costs about 0.5 ms). Shapely geometries are large (about 400 bytes for
a five-vertex square), so the frame is counted in the budget and built only for the layers asked in that form.

Budget: `CIM_LAYER_CACHE_MB` (default 1024; 0 disables the cache) or `LayerStore(cache_mb=...)`. A layer larger
than the budget is never cached; a frame that does not fit beside its layer is never built (those GeoDataFrame
answers are converted from Arrow per query).
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import duckdb
import numpy as np
import pyarrow as pa
import shapely

from layers.errors import LayerInputError

if TYPE_CHECKING:
    import geopandas as gpd

DEFAULT_CACHE_MB = 1024.0
LOAD_ON_QUERY = 2  # the bbox query of a layer version that loads it
BLOCK = 32  # rows (and child nodes) per index node: 40 us per query and 16 ms per build for 1M boxes
_SAMPLE_ROWS = 2048  # rows read to estimate a layer's size before loading it
# Process memory of shapely geometries (RSS after `shapely.from_wkb`, 300k of each: points 217 bytes, 3-vertex
# lines 281, squares 408, 40-vertex polygons 1254, squares with a hole 697, two-square multipolygons 889), as bytes
# per geometry, per part or ring, per vertex.
_GEOMETRY_BYTES = (120, 90, 25)


def budget_mb_from_env() -> float:
    """`$CIM_LAYER_CACHE_MB` as a number of megabytes (default 1024; 0 or less disables the cache).

    Raises:
        LayerInputError: the variable is set but is not a number.
    """
    raw = os.environ.get("CIM_LAYER_CACHE_MB", "").strip()
    if not raw:
        return DEFAULT_CACHE_MB
    try:
        return float(raw)
    except ValueError as exc:
        raise LayerInputError(f"CIM_LAYER_CACHE_MB={raw!r} is not a number of megabytes; use e.g. 512, or 0 to "
                         f"disable the layer cache") from exc


@dataclass(frozen=True)
class PackedBoxIndex:
    """A packed tree over boxes given in a spatially coherent order (e.g. Hilbert-sorted rows).

    Node `i` of a level covers nodes `i * BLOCK .. i * BLOCK + BLOCK - 1` of the level below; the last level is the
    boxes themselves. Boxes of empty geometries are stored as (+inf, +inf, -inf, -inf) and never match.

    Attributes:
        levels: root level first; each `(4, m)` float64 rows xmin, ymin, xmax, ymax.
    """

    levels: tuple[np.ndarray, ...]

    @classmethod
    def build(cls, bounds: np.ndarray) -> PackedBoxIndex:
        """Index `bounds`, `(n, 4)` float64 xmin, ymin, xmax, ymax (NaN rows: empty geometries)."""
        rows = np.array(bounds, dtype=np.float64).T.copy()
        empty = np.isnan(rows).any(axis=0)
        rows[:, empty] = np.array([[np.inf], [np.inf], [-np.inf], [-np.inf]])
        levels = [rows]
        while levels[-1].shape[1] > BLOCK:
            below = levels[-1]
            starts = np.arange(0, below.shape[1], BLOCK)
            node = np.empty((4, len(starts)))
            node[0] = np.minimum.reduceat(below[0], starts)
            node[1] = np.minimum.reduceat(below[1], starts)
            node[2] = np.maximum.reduceat(below[2], starts)
            node[3] = np.maximum.reduceat(below[3], starts)
            levels.append(node)
        return cls(tuple(reversed(levels)))

    @property
    def boxes(self) -> np.ndarray:
        """The indexed boxes, `(4, n)` float64."""
        return self.levels[-1]

    @property
    def nbytes(self) -> int:
        """Bytes held by the index (the boxes included)."""
        return sum(lv.nbytes for lv in self.levels)

    def query(self, xmin: float, ymin: float, xmax: float, ymax: float) -> np.ndarray:
        """Positions of the boxes meeting the closed window, `(k,)` int64, ascending."""
        top = self.levels[0]
        hits = np.flatnonzero((top[0] <= xmax) & (top[2] >= xmin) & (top[1] <= ymax) & (top[3] >= ymin))
        offsets = np.arange(BLOCK)
        for level in self.levels[1:]:
            if not hits.size:
                break
            size = level.shape[1]
            cand = (hits[:, None] * BLOCK + offsets).ravel()
            if cand[-1] >= size:
                cand = cand[cand < size]
            hits = cand[(level[0, cand] <= xmax) & (level[2, cand] >= xmin)
                        & (level[1, cand] <= ymax) & (level[3, cand] >= ymin)]
        return hits.astype(np.int64, copy=False)


@dataclass(frozen=True)
class LayerFrame:
    """A cached layer as one GeoDataFrame, for GeoDataFrame answers taken by row position.

    Attributes:
        frame: `fid`, the fields, `geometry` (shapely, EPSG:4490), as `layers.store.to_geodataframe` makes them,
            in store row order, with a RangeIndex; without the `per_query` columns.
        per_query: integer and boolean fields with nulls: pandas gives them a float or object dtype only when the
            selected rows hold a null, so they are converted from Arrow for each answer, as `to_geodataframe` does.
        nbytes: estimated bytes held (attribute columns, shapely geometries).
        build_seconds: wall time of the build.
    """

    frame: gpd.GeoDataFrame
    per_query: frozenset[str]
    nbytes: int
    build_seconds: float

    @functools.cached_property
    def columns(self) -> list[str]:
        """The frame's column names, in order."""
        return [str(c) for c in self.frame.columns]


@dataclass(frozen=True)
class CachedLayer:
    """One layer version in memory: its features in store order and an index of their boxes.

    Attributes:
        table: `fid`, every field, `geom` (WKB), as `LayerStore.query_arrow` returns them, in store row order.
        index: the boxes of `table`'s rows.
        exact_boxes: True when a feature meets a window exactly when its box does (single points), so no
            geometry test is needed.
        load_seconds: wall time of the load (DuckDB query, Arrow and index build).
    """

    table: pa.Table
    index: PackedBoxIndex
    exact_boxes: bool
    load_seconds: float
    _column: dict[str, int] = field(default_factory=dict, repr=False)
    _frame: list[LayerFrame] = field(default_factory=list, repr=False)  # set once, by `LayerCache.frame`

    def __post_init__(self) -> None:
        self._column.update({n: i for i, n in enumerate(self.table.column_names)})

    @property
    def nbytes(self) -> int:
        """Bytes held (Arrow buffers and index, and the frame once built)."""
        return self.table.nbytes + self.index.nbytes + (self._frame[0].nbytes if self._frame else 0)

    @property
    def frame(self) -> LayerFrame | None:
        """The GeoDataFrame form, once `LayerCache.frame` has built it."""
        return self._frame[0] if self._frame else None

    @property
    def num_rows(self) -> int:
        """Number of features."""
        return self.table.num_rows

    def select(self, bbox: Sequence[float]) -> np.ndarray:
        """Rows whose geometry intersects the closed window `bbox` (xmin, ymin, xmax, ymax), `(k,)` int64 ascending.

        Like DuckDB's `ST_Intersects(geom, ST_MakeEnvelope(...))`: a feature whose box meets the window but whose
        geometry does not (an L-shaped building, a diagonal road) is not selected.
        """
        x0, y0, x1, y1 = (float(v) for v in bbox)
        rows = self.index.query(x0, y0, x1, y1)
        if self.exact_boxes or not rows.size:
            return rows
        boxes = self.index.boxes[:, rows]
        inside = (boxes[0] >= x0) & (boxes[2] <= x1) & (boxes[1] >= y0) & (boxes[3] <= y1)
        edge = rows[~inside]
        if not edge.size:
            return rows
        wkb = self.table.column(self._column["geom"]).take(pa.array(edge)).to_numpy(zero_copy_only=False)
        window = shapely.box(x0, y0, x1, y1)
        shapely.prepare(window)
        keep = inside.copy()
        keep[~inside] = shapely.intersects(window, shapely.from_wkb(wkb))
        return rows[keep]

    def query(self, bbox: Sequence[float], columns: Sequence[str], *, limit: int | None = None, offset: int = 0,
              order_by_fid: bool = False) -> pa.Table:
        """The selected features as `LayerStore.query_arrow` returns them.

        Args:
            bbox: the window (xmin, ymin, xmax, ymax) in lon/lat.
            columns: the fields to return, between `fid` and `geom` (names as in the table).
            limit, offset: paging, applied after the ordering.
            order_by_fid: sort by fid (otherwise store order).
        """
        rows = self.rows(bbox, limit=limit, offset=offset, order_by_fid=order_by_fid)
        picked = self.table.select([self._column["fid"], *(self._column[c] for c in columns), self._column["geom"]])
        return picked.take(pa.array(rows, type=pa.int64()))

    def rows(self, bbox: Sequence[float], *, limit: int | None = None, offset: int = 0,
             order_by_fid: bool = False) -> np.ndarray:
        """The rows `query` returns, `(k,)` int64 positions in the table (arguments as `query`)."""
        rows = self.select(bbox)
        if order_by_fid and rows.size > 1:
            fid = self.table.column(self._column["fid"]).take(pa.array(rows)).to_numpy()
            rows = rows[np.argsort(fid, kind="stable")]
        if offset or limit is not None:
            rows = rows[offset:None if limit is None else offset + limit]
        return rows

    def query_frame(self, bbox: Sequence[float], columns: Sequence[str], *, limit: int | None = None,
                    offset: int = 0, order_by_fid: bool = False) -> gpd.GeoDataFrame:
        """The selected features as `to_geodataframe(self.query(...))` makes them, taken from the frame.

        Raises:
            ValueError: the frame is not built (see `LayerCache.frame`).
        """
        import pandas as pd

        if not self._frame:
            raise ValueError("the layer's frame is not built; ask LayerCache.frame first")
        lf = self._frame[0]
        rows = self.rows(bbox, limit=limit, offset=offset, order_by_fid=order_by_fid)
        wanted = ["fid", *columns, "geometry"]
        keep = [c for c in wanted if c not in lf.per_query] if lf.per_query else wanted
        # a copy either way (pandas' take), so callers may modify it; the shapely geometries are immutable
        if keep == lf.columns:
            out = lf.frame.iloc[rows]
        else:
            out = lf.frame.iloc[rows, [lf.columns.index(c) for c in keep]]
        out.index = pd.RangeIndex(len(rows))
        if lf.per_query:
            for pos, name in enumerate(wanted):
                if name in lf.per_query:
                    out.insert(pos, name, self.table.column(self._column[name]).take(pa.array(rows)).to_pandas())
        return out

    def estimate_frame_bytes(self) -> int:
        """Bytes `build_frame` would hold, from the attribute columns and a sample of the geometries."""
        geom = self.table.column(self._column["geom"])
        n = self.table.num_rows
        if not n:
            return 0
        picks = np.unique(np.linspace(0, n - 1, min(n, _SAMPLE_ROWS)).astype(np.int64))
        sample = shapely.from_wkb(geom.take(pa.array(picks)).to_numpy(zero_copy_only=False))
        parts = shapely.get_parts(sample)
        polygons = shapely.get_type_id(parts) == 3
        components = len(parts) + int(polygons.sum()) + int(shapely.get_num_interior_rings(parts[polygons]).sum())
        per_geometry, per_component, per_vertex = _GEOMETRY_BYTES
        geometry = (len(sample) * per_geometry + components * per_component
                    + int(shapely.get_num_coordinates(sample).sum()) * per_vertex)
        attributes = self.table.nbytes - geom.nbytes
        return math.ceil(attributes + 8 * n + geometry * n / len(sample))

    def build_frame(self, crs: Any, nbytes: int) -> LayerFrame:
        """The whole layer as a `LayerFrame` (one `shapely.from_wkb` of every row: about 1.2 s for 1M squares).

        Args:
            crs: the store's CRS (a pyproj CRS), given to the geometry column.
            nbytes: the size to record (`estimate_frame_bytes`).
        """
        import geopandas as gpd

        t0 = time.perf_counter()
        per_query = frozenset(
            name for name in self.table.column_names[1:-1]
            if (pa.types.is_integer(self.table.schema.field(name).type)
                or pa.types.is_boolean(self.table.schema.field(name).type))
            and self.table.column(name).null_count)
        attributes = self.table.drop_columns(["geom", *per_query])
        geoms = shapely.from_wkb(self.table.column(self._column["geom"]).to_numpy(zero_copy_only=False))
        # the same conversion as to_geodataframe (Table.to_pandas defaults: consolidated blocks, which `iloc` takes
        # faster than split ones), so stable columns get the same dtypes
        frame = gpd.GeoDataFrame(attributes.to_pandas(), geometry=gpd.array.GeometryArray(geoms, crs=crs),
                                 copy=False)
        return LayerFrame(frame, per_query, nbytes, time.perf_counter() - t0)


def load_layer(cur: duckdb.DuckDBPyConnection, table: str, fields: Sequence[str], geometry_type: str) -> CachedLayer:
    """Read a layer version into memory with one DuckDB query.

    Args:
        cur: a cursor of the store.
        table: the quoted table name (`data."name__vN"`).
        fields: the version's field names, in table order.
        geometry_type: the catalogue's geometry type (`Point`, `Polygon Z`...).
    """
    t0 = time.perf_counter()
    res = cur.execute(_load_sql(table, fields)).fetch_arrow_table()
    bounds = np.column_stack([res.column(i).to_numpy() for i in range(1, 5)]).astype(np.float64, copy=False)
    data = res.select(range(5, res.num_columns))
    rowid = res.column(0).to_numpy()
    if rowid.size > 1 and not (np.diff(rowid) > 0).all():  # a scan keeps insertion order; check, it is cheap
        order = np.argsort(rowid, kind="stable")
        bounds, data = bounds[order], data.take(pa.array(order))
    try:
        data = data.combine_chunks()  # one chunk per column: `take` across many chunks is slower
    except (pa.ArrowInvalid, pa.ArrowCapacityError):
        pass  # more than 2 GB of WKB does not fit one binary chunk; stay chunked
    return CachedLayer(table=data, index=PackedBoxIndex.build(bounds),
                       exact_boxes=geometry_type.split()[0] == "Point", load_seconds=time.perf_counter() - t0)


def estimate_bytes(cur: duckdb.DuckDBPyConnection, table: str, fields: Sequence[str], feature_count: int) -> int:
    """Bytes a layer version would take in the cache, from its first rows (one small query)."""
    sample = cur.execute(_load_sql(table, fields) + f" LIMIT {_SAMPLE_ROWS}").fetch_arrow_table()
    if not sample.num_rows:
        return 0
    per_row = sample.select(range(5, sample.num_columns)).nbytes / sample.num_rows
    index_per_row = 32 * (1 + 1 / (BLOCK - 1))
    return math.ceil(feature_count * (per_row + index_per_row))


def _load_sql(table: str, fields: Sequence[str]) -> str:
    cols = "".join('"' + f.replace('"', '""') + '", ' for f in fields)
    # the same expressions as LayerStore.query_arrow, so the cached columns have the DuckDB path's types
    return (f"SELECT rowid, ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom), "
            f"fid, {cols}ST_AsWKB(geom) AS geom FROM {table}")


class CacheStats(NamedTuple):
    """What a `LayerCache` holds and has done."""

    budget_bytes: int
    bytes: int
    layers: int
    hits: int
    misses: int
    loads: int
    load_seconds: float
    evictions: int
    too_large: int
    frames: int = 0
    frame_seconds: float = 0.0


class LayerCache:
    """A thread-safe LRU of `CachedLayer`s within a byte budget.

    Keys are anything hashable naming an immutable layer version (`LayerStore` uses the version's table and the
    time it was written). While one thread loads a layer, other threads asking for it get None (and use DuckDB)
    instead of waiting.

    Args:
        budget_bytes: the most the cached layers may hold; 0 disables the cache.
        load_on: the request for a key that loads it (`claim` says no to the ones before).
    """

    def __init__(self, budget_bytes: int, *, load_on: int = LOAD_ON_QUERY) -> None:
        self.budget_bytes = max(0, int(budget_bytes))
        self.load_on = max(1, int(load_on))
        self._asked: dict[Hashable, int] = {}
        self._layers: OrderedDict[Hashable, CachedLayer] = OrderedDict()
        self._too_large: set[Hashable] = set()
        self._loading: set[Hashable] = set()
        self._no_frame: set[Hashable] = set()
        self._framing: set[Hashable] = set()
        self._lock = threading.Lock()
        self._bytes = 0
        self._hits = self._misses = self._loads = self._evictions = 0
        self._load_seconds = 0.0
        self._frames = 0
        self._frame_seconds = 0.0

    @property
    def enabled(self) -> bool:
        """False when the budget is 0."""
        return self.budget_bytes > 0

    def get(self, key: Hashable) -> CachedLayer | None:
        """The cached layer (now the most recently used), or None."""
        with self._lock:
            layer = self._layers.get(key)
            if layer is not None:
                self._layers.move_to_end(key)
                self._hits += 1
            return layer

    def claim(self, key: Hashable) -> bool:
        """True when the caller should load `key` now: not cached, not known to be too large, no other thread
        loading it, and asked for `load_on` times. A True answer must be followed by `put` or `release`."""
        with self._lock:
            if not self.enabled or key in self._layers or key in self._too_large or key in self._loading:
                return False
            self._misses += 1
            asked = self._asked.get(key, 0) + 1
            if asked < self.load_on:
                self._asked[key] = asked
                return False
            self._asked.pop(key, None)
            self._loading.add(key)
            return True

    def too_large(self, key: Hashable, nbytes: int) -> bool:
        """True (and remembered) when a layer of `nbytes` cannot fit the budget."""
        if nbytes <= self.budget_bytes:
            return False
        with self._lock:
            self._too_large.add(key)
        return True

    def put(self, key: Hashable, layer: CachedLayer) -> bool:
        """Keep a layer loaded after `claim`, evicting least recently used ones; False when it is too large."""
        with self._lock:
            self._loading.discard(key)
            self._loads += 1
            self._load_seconds += layer.load_seconds
            size = layer.nbytes
            if size > self.budget_bytes:
                self._too_large.add(key)
                return False
            while self._layers and self._bytes + size > self.budget_bytes:
                _, old = self._layers.popitem(last=False)
                self._bytes -= old.nbytes
                self._evictions += 1
            self._layers[key] = layer
            self._bytes += size
            return True

    def frame(self, key: Hashable, layer: CachedLayer, crs: Any) -> LayerFrame | None:
        """The GeoDataFrame form of a cached layer, built now (and counted in the budget, evicting least recently
        used layers) unless it is built already; None when it cannot fit beside the layer, when the layer is no
        longer cached, or while another thread builds it (answer from `layer.query` then).

        Args:
            key: the layer's key.
            layer: the cached layer (from `get`).
            crs: the store's CRS, for the geometry column.
        """
        built = layer.frame
        if built is not None:
            return built
        with self._lock:
            if key in self._no_frame or key in self._framing or self._layers.get(key) is not layer:
                return None
            self._framing.add(key)
        try:
            need = layer.estimate_frame_bytes()
            if layer.nbytes + need > self.budget_bytes:
                with self._lock:
                    self._no_frame.add(key)
                return None
            built = layer.build_frame(crs, need)
        finally:
            with self._lock:
                self._framing.discard(key)
        with self._lock:
            self._frames += 1
            self._frame_seconds += built.build_seconds
            if self._layers.get(key) is not layer:
                return built  # evicted meanwhile: good for this answer, not kept
            for old_key in [k for k in self._layers if k != key]:
                if self._bytes + built.nbytes <= self.budget_bytes:
                    break
                self._bytes -= self._layers.pop(old_key).nbytes
                self._evictions += 1
            layer._frame.append(built)
            self._bytes += built.nbytes
            return built

    def release(self, key: Hashable) -> None:
        """Give up a `claim` (the load failed or was not needed)."""
        with self._lock:
            self._loading.discard(key)

    def clear(self) -> None:
        """Forget every layer (and which layers were too large)."""
        with self._lock:
            self._layers.clear()
            self._too_large.clear()
            self._no_frame.clear()
            self._asked.clear()
            self._bytes = 0

    def cached(self) -> list[Hashable]:
        """Cached keys, least recently used first."""
        with self._lock:
            return list(self._layers)

    def stats(self) -> CacheStats:
        """Counters and sizes."""
        with self._lock:
            return CacheStats(self.budget_bytes, self._bytes, len(self._layers), self._hits, self._misses,
                              self._loads, self._load_seconds, self._evictions, len(self._too_large), self._frames,
                              self._frame_seconds)


__all__ = ["DEFAULT_CACHE_MB", "CacheStats", "CachedLayer", "LayerCache", "LayerFrame", "PackedBoxIndex",
           "budget_mb_from_env", "estimate_bytes", "load_layer"]
