"""Staging of an import: validate and repair geometries, reproject to CGCS2000, normalise attribute columns.

Everything here works on private in-memory data (an in-memory DuckDB and Arrow tables), so it needs no lock on the
store: the store is only touched by the short commit that follows (`LayerStore`). Geometry checks run in DuckDB
(parallel, no per-feature Python objects); only the features that fail go through shapely to be repaired or
rejected with a reason.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from pyproj import CRS

from cim.sources.crs import parse_crs, transformer
from cim.sources.limits import check_wkb
from layers.db import ROW_GROUP_SIZE, connect
from layers.errors import GeometryRejectedError, LayerInputError
from layers.models import Rejection
from layers.sources import GEOM, SourceData
from layers.types import STORE_CRS

FID = "fid"
_RESERVED = {FID, GEOM}
_CHUNK = 1 << 14
_PIECE = 1 << 16  # rows per piece of the numpy passes: long enough kernels for threads, small enough for the cache
_CACHED = 1 << 13  # polygons per step of the convexity test: its (vertices, polygons) temporaries fit in L2
_T = TypeVar("_T")
_R = TypeVar("_R")
_OUT_OF_RANGE = "coordinates outside the lon/lat range (is the CRS right? pass --crs)"


@dataclass
class Staged:
    """An import ready to commit.

    Attributes:
        table: `fid` (n,) int64, attribute columns, `geom` (n,) binary WKB in EPSG:4490 lon/lat; rows in the
            Hilbert order of their bounding-box centres (rows with equal keys in source order), so that features
            close on the map are close in the file.
        read: features read from the source.
        repaired: features whose geometry was invalid and was repaired.
        rejected: features left out, with reasons.
        source_crs: the CRS the source coordinates were in.
        key_field: the column that identifies a feature across versions.
        renamed: source column name -> stored name, for columns that had to be renamed.
        extent: (xmin, ymin, xmax, ymax) of the kept geometries, lon/lat.
        types: the geometry types of the kept features, as DuckDB's `ST_GeometryType` names them (POINT, ...).
        has_z: whether any kept geometry has Z coordinates.
    """

    source: SourceData
    table: pa.Table
    read: int
    repaired: int
    rejected: list[Rejection]
    source_crs: CRS
    key_field: str
    renamed: dict[str, str]
    extent: tuple[float, float, float, float]
    types: tuple[str, ...]
    has_z: bool


def crs_label(crs: CRS) -> str:
    """`EPSG:n` when the CRS has an authority code, else its name."""
    auth = crs.to_authority(min_confidence=90)
    return f"{auth[0]}:{auth[1]}" if auth else crs.name


def is_store_crs(crs: CRS) -> bool:
    """True when coordinates in `crs` are already CGCS2000 lon/lat."""
    return bool(crs.equals(CRS.from_user_input(STORE_CRS), ignore_axis_order=True))


def stage(source: SourceData, *, key_field: str | None = None) -> Staged:
    """Validate, repair, reproject and normalise a source read by `read_source`.

    Args:
        source: the features read.
        key_field: attribute identifying a feature across versions (for `diff`); default: the source's
            feature id (`fid`), or the CityJSON object id.

    Returns:
        The staged import.

    Raises:
        GeometryRejectedError: no feature survived validation.
        LayerInputError: `key_field` is not a column of the source.
    """
    assert source.crs is not None
    n = source.table.num_rows
    fids = source.feature_ids
    if fids is None or not (n < 2 or bool(np.all(np.diff(fids) > 0)) or len(np.unique(fids)) == n):
        fids = np.arange(1, n + 1, dtype=np.int64)

    def label(row: int) -> str:
        if source.feature_ids is not None:
            return str(source.feature_ids[row])
        if source.key_field:
            return str(source.table.column(source.key_field)[row].as_py())
        return str(row + 1)
    wkb = source.table.column(GEOM)  # joined into one array by `take_rows`, with the other columns
    problems, bounds = _find_problems(wkb, geographic=source.crs.is_geographic and is_store_crs(source.crs))
    problems.update({row: reason for row, reason in source.row_errors.items()})

    keep = np.ones(n, dtype=bool)
    rejected: list[Rejection] = []
    replacement: dict[int, bytes] = {}
    rejected.extend(Rejection(feature=label, reason=reason) for label, reason in source.missing)
    for row, reason in sorted(problems.items()):
        if reason == "invalid":
            fixed, why = _repair(bytes(wkb[row].as_py()))
            if fixed is not None:
                replacement[row] = fixed
                continue
            reason = why
        keep[row] = False
        rejected.append(Rejection(feature=label(row), reason=reason))

    if replacement:
        # the repaired values go after the originals and a take puts them in place: no per-row Python objects
        rows = np.fromiter(replacement, np.int64, len(replacement))
        index = np.arange(n, dtype=np.int64)
        index[rows] = n + np.arange(len(rows))
        fixed_wkb = pa.array(list(replacement.values()), pa.binary())
        wkb = pa.chunked_array([*wkb.chunks, fixed_wkb], pa.binary()).take(pa.array(index))
        bounds[rows] = shapely.bounds(shapely.from_wkb(fixed_wkb.to_numpy(zero_copy_only=False)))
    if not is_store_crs(source.crs):
        wkb, bounds, bad = _reproject(wkb, keep, source.crs)
        for row in bad:
            keep[row] = False
            rejected.append(Rejection(feature=label(row),
                                      reason=f"coordinates cannot be transformed from {crs_label(source.crs)} "
                                             f"to {STORE_CRS} (outside the CRS's area of use?)"))
    if not keep.any():
        sample = "; ".join(f"{r.feature}: {r.reason}" for r in rejected[:5])
        hint = ("; if the coordinates look projected, the CRS is wrong: pass --crs"
                if any("coordinates" in r.reason for r in rejected) else "")
        raise GeometryRejectedError(
            f"{source.path}: none of the {n + len(source.missing)} features has a usable geometry ({sample}){hint}"
        )
    kept = None if keep.all() else np.flatnonzero(keep)
    box = bounds if kept is None else bounds[kept]
    extent = _extent(box)
    order = hilbert_order(box, extent)
    if kept is not None:
        order = kept[order]
    attrs, renamed = _normalise(source.table.drop_columns([GEOM]))
    table = take_rows(attrs.add_column(0, FID, pa.array(fids, pa.int64())).append_column(GEOM, wkb), order)
    key = key_field or source.key_field or FID
    key = renamed.get(key, key)
    if key not in table.column_names or key == GEOM:
        raise LayerInputError(f"--key {key_field!r} is not a field of {source.path}; fields: "
                              f"{', '.join(c for c in table.column_names if c != GEOM)}")
    types, has_z = wkb_types(table.column(GEOM))
    return Staged(source, table, n + len(source.missing), len(replacement), rejected, source.crs, key, renamed,
                  extent, types, has_z)


_WKB_TYPES = {1: "POINT", 2: "LINESTRING", 3: "POLYGON", 4: "MULTIPOINT", 5: "MULTILINESTRING", 6: "MULTIPOLYGON",
              7: "GEOMETRYCOLLECTION"}


def wkb_types(wkb: pa.ChunkedArray) -> tuple[tuple[str, ...], bool]:
    """The distinct top-level geometry types of WKB values and whether any has Z, read from their headers.

    Reads ISO WKB (Z as type + 1000, ZM + 3000) and extended WKB (Z flag 0x80000000) in either byte order, which
    is what GDAL, Arrow sources and shapely write; the values must be WKB DuckDB reads (checked in staging).

    Args:
        wkb: (n,) binary WKB without nulls.

    Returns:
        Sorted type names as DuckDB's `ST_GeometryType` gives them (POINT, MULTIPOLYGON, ...), and has-Z.
    """
    def codes(chunk: pa.Array) -> np.ndarray:
        if len(chunk) == 0:
            return np.zeros(0, np.uint32)
        _, off_buf, data_buf = chunk.buffers()
        start = np.frombuffer(off_buf, np.int32, len(chunk), chunk.offset * 4)
        data = np.frombuffer(data_buf, np.uint8)
        code = _values(data, start.astype(np.int64) + 1, 1, "<u4")[:, 0]
        big = data[start] == 0
        if big.any():
            code[big] = code[big].byteswap()
        return np.unique(code) if (code != code[0]).any() else code[:1]

    found = {int(c) for part in _parallel(codes, wkb.chunks) for c in part}
    names, has_z = set(), False
    for code in found:
        iso = code & 0x0FFFFFFF
        names.add(_WKB_TYPES.get(iso % 1000, "GEOMETRY"))
        has_z |= bool(code & 0x80000000) or iso // 1000 in (1, 3)
    return tuple(sorted(names)), has_z


def _extent(box: np.ndarray) -> tuple[float, float, float, float]:
    """xmin, ymin, xmax, ymax of (m, 4) bounds, m >= 1: one column each (a row-wise reduction is far slower)."""
    xmin, ymin, xmax, ymax = _parallel(lambda c: float((np.min if c < 2 else np.max)(box[:, c])), range(4))
    return xmin, ymin, xmax, ymax


def hilbert_order(box: np.ndarray, extent: tuple[float, float, float, float]) -> np.ndarray:
    """The order of boxes along the Hilbert curve of their centres; boxes with equal keys keep their order.

    Args:
        box: (m, 4) float64 xmin, ymin, xmax, ymax.
        extent: the grid of the curve (see `hilbert_keys`).

    Returns:
        (m,) int64 positions into `box`.
    """
    if len(box) >= 1 << 32:  # positions no longer fit beside the key
        keys = hilbert_keys((box[:, 0] + box[:, 2]) / 2, (box[:, 1] + box[:, 3]) / 2, extent)
        return np.argsort(keys, kind="stable")

    def packed(i: int) -> np.ndarray:  # key in the high half, position in the low half: one sort, stable
        b = box[i:i + _PIECE]
        keys = hilbert_keys((b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, extent)
        return keys.astype(np.uint64) << np.uint64(32) | np.arange(i, i + len(b), dtype=np.uint64)

    keyed = np.concatenate(_parallel(packed, range(0, len(box), _PIECE)) or [np.zeros(0, np.uint64)])
    keyed.sort()
    return (keyed & np.uint64(0xFFFFFFFF)).astype(np.int64)


def _parallel(fn: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
    """`[fn(i) for i in items]` on a few threads: numpy and Arrow kernels release the GIL."""
    todo = list(items)
    workers = min(4, os.cpu_count() or 1, len(todo))
    if workers < 2:
        return [fn(i) for i in todo]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, todo))


def take_rows(table: pa.Table, order: np.ndarray) -> pa.Table:
    """`table.take(order)`, column pieces taken in parallel, one chunk per DuckDB row group.

    Args:
        table: the rows.
        order: (m,) int64 row indices.

    Returns:
        The m rows in `order`, every column in chunks of `ROW_GROUP_SIZE` rows (the last one shorter), which
        DuckDB writes as row groups as they are.
    """
    index = pa.array(order, pa.int64())
    starts = range(0, len(order), ROW_GROUP_SIZE)
    columns = [_joined(c) for c in table.columns]
    records = [_records(c) for c in columns]

    def take(job: tuple[int, int]) -> pa.Array:
        column, at = columns[job[0]], job[1]
        if records[job[0]] is None:
            return pc.take(column, index.slice(at, ROW_GROUP_SIZE))
        picked = np.take(records[job[0]], order[at:at + ROW_GROUP_SIZE])
        width = picked.dtype.itemsize
        offsets = np.arange(0, (len(picked) + 1) * width, width, dtype=np.int32)
        return pa.Array.from_buffers(column.type, len(picked), [None, pa.py_buffer(offsets), pa.py_buffer(picked)])

    pieces = _parallel(take, [(c, i) for c in range(len(columns)) for i in starts])
    per_column = len(starts)
    return pa.Table.from_arrays(
        [pa.chunked_array(pieces[c * per_column:(c + 1) * per_column], table.schema.field(c).type)
         for c in range(len(columns))], schema=table.schema)


def _joined(column: pa.ChunkedArray) -> pa.Array:
    """A column's chunks as one array; the bytes of binary and string chunks are copied on a few threads."""
    if column.num_chunks == 1:
        return column.chunk(0)
    if column.null_count or not (pa.types.is_binary(column.type) or pa.types.is_string(column.type)):
        return column.combine_chunks()
    chunks = [c for c in column.chunks if len(c)]
    bounds = [np.frombuffer(c.buffers()[1], np.int32, len(c) + 1, c.offset * 4) for c in chunks]
    rows = np.cumsum([0] + [len(c) for c in chunks])
    at = np.cumsum([0] + [int(b[-1] - b[0]) for b in bounds])
    if at[-1] >= 2 ** 31:
        return column.combine_chunks()
    offsets = np.empty(len(column) + 1, np.int32)
    data = np.empty(at[-1], np.uint8)

    def copy(i: int) -> None:
        b = bounds[i]
        if b[-1] > b[0]:
            data[at[i]:at[i + 1]] = np.frombuffer(chunks[i].buffers()[2], np.uint8)[b[0]:b[-1]]
        offsets[rows[i]:rows[i + 1]] = b[:-1] - b[0] + at[i]

    _parallel(copy, range(len(chunks)))
    offsets[-1] = at[-1]
    return pa.Array.from_buffers(column.type, len(column), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _records(column: pa.Array) -> np.ndarray | None:
    """A binary or string column whose values all have the same length, as (n,) numpy void records; else None.

    Points (21-byte WKB) and same-size rings are such columns; numpy takes fixed-size records faster than Arrow
    takes variable-length values.
    """
    if column.null_count or len(column) < 2 or not (pa.types.is_binary(column.type)
                                                     or pa.types.is_string(column.type)):
        return None
    offsets = np.frombuffer(column.buffers()[1], np.int32, len(column) + 1, column.offset * 4)
    width = int(offsets[1] - offsets[0])
    if width == 0 or offsets[-1] - offsets[0] != width * len(column) or (np.diff(offsets) != width).any():
        return None
    return np.frombuffer(column.buffers()[2], f"V{width}", len(column), int(offsets[0]))


def _find_problems(wkb: pa.ChunkedArray, *, geographic: bool) -> tuple[dict[int, str], np.ndarray]:
    """Rows whose geometry is missing, unreadable, empty, invalid or (for lon/lat data) out of range.

    Values that are not simply valid are walked by `cim.sources.limits.check_wkb` before DuckDB or GEOS parses them: corrupt
    ones and ones beyond the nesting and size limits are rejected with that reason.

    Returns:
        Reason by row, and the (n, 4) float64 bounds xmin, ymin, xmax, ymax of every readable geometry.
    """
    simple, bounds = simply_valid(wkb)
    problems: dict[int, str] = {}
    if geographic:
        def outside(i: int) -> np.ndarray:
            b = bounds[i:i + _PIECE]
            return i + np.flatnonzero(simple[i:i + _PIECE] & ((b[:, 0] < -180) | (b[:, 2] > 180)
                                                              | (b[:, 1] < -90) | (b[:, 3] > 90)))
        for part in _parallel(outside, range(0, len(bounds), _PIECE)):
            problems.update({int(r): _OUT_OF_RANGE for r in part})
    rest = np.flatnonzero(~simple)
    if len(rest) == 0:
        return problems, bounds
    # nothing native parses a value before it passed the walk (DuckDB spatial crashes on deep nesting)
    unsafe = check_wkb(wkb, rest)
    if unsafe:
        problems.update(unsafe)
        rest = rest[~np.isin(rest, np.fromiter(unsafe, np.int64, len(unsafe)))]
        if len(rest) == 0:
            return problems, bounds
    con = connect(None)
    try:
        src = pa.table({"row": pa.array(rest, pa.int64()), "wkb": wkb.take(pa.array(rest))})
        con.register("src", pa.Table.from_batches(src.to_batches(max_chunksize=_CHUNK)))  # DuckDB scans by batch
        out_of_range = ("WHEN ST_XMin(g) < -180 OR ST_XMax(g) > 180 OR ST_YMin(g) < -90 OR ST_YMax(g) > 90 "
                        f"THEN '{_OUT_OF_RANGE}' " if geographic else "")
        found = con.execute(f"""
            SELECT row, CASE
                WHEN wkb IS NULL THEN 'no geometry'
                WHEN g IS NULL THEN 'unreadable geometry (corrupt WKB)'
                WHEN ST_IsEmpty(g) THEN 'empty geometry'
                WHEN NOT ST_IsValid(g) THEN 'invalid'
                {out_of_range}
              END AS problem, ST_XMin(g) AS x0, ST_YMin(g) AS y0, ST_XMax(g) AS x1, ST_YMax(g) AS y1
            FROM (SELECT row, wkb, TRY(ST_GeomFromWKB(wkb)) AS g FROM src)""").fetch_arrow_table()
    finally:
        con.close()
    rows = found.column("row").to_numpy()
    bounds[rows] = np.column_stack([found.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
                                    for c in ("x0", "y0", "x1", "y1")])
    bad = found.filter(pc.is_valid(found.column("problem")))
    problems.update(zip(bad.column("row").to_pylist(), bad.column("problem").to_pylist(), strict=True))
    return problems, bounds


def simply_valid(wkb: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """The geometries that are certainly valid by their shape alone, read straight from the WKB bytes.

    GEOS's validity check costs about a microsecond per geometry whatever its size; most features of a city's
    layers are points or convex rings (rectangular footprints, parcels), whose validity follows from a few
    vectorised sums. Covered exactly: 2D little-endian (Multi)Points of one finite point, and 2D (Multi)Polygons
    of one part and one ring of at most 64 vertices that is strictly convex (every turn the same way, each
    clearly away from straight, one full turn in all), which cannot touch or cross itself. Everything else,
    near-degenerate rings included, is left to GEOS.

    Args:
        wkb: (n,) binary WKB (nulls allowed), in one chunk or several.

    Returns:
        ok: (n,) bool, True where the geometry is certainly valid and not empty.
        bounds: (n, 4) float64 xmin, ymin, xmax, ymax of the `ok` rows (NaN elsewhere).
    """
    n = len(wkb)
    ok = np.empty(n, dtype=bool)
    bounds = np.empty((n, 4))
    jobs, at = [], 0
    for chunk in wkb.chunks if isinstance(wkb, pa.ChunkedArray) else [wkb]:
        jobs += [(chunk.slice(i, _PIECE), at + i) for i in range(0, len(chunk), _PIECE)]
        at += len(chunk)
    # pieces small enough for their temporaries to stay in cache, each filling its rows of the output
    _parallel(lambda job: _simply_valid_piece(job[0], ok[job[1]:job[1] + len(job[0])],
                                              bounds[job[1]:job[1] + len(job[0])]), jobs)
    return ok, bounds


def _simply_valid_piece(wkb: pa.Array, ok: np.ndarray, bounds: np.ndarray) -> None:
    """`simply_valid` of one array, written into `ok` (n,) and `bounds` (n, 4)."""
    n = len(wkb)
    ok[:] = False
    bounds[:] = np.nan
    if n == 0 or not pa.types.is_binary(wkb.type):
        return
    _, off_buf, data_buf = wkb.buffers()
    offsets = np.frombuffer(off_buf, np.int32, n + 1, wkb.offset * 4).astype(np.int64)
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    start, size = offsets[:-1].copy(), np.diff(offsets)
    if wkb.null_count:
        size[wkb.is_null().to_numpy(zero_copy_only=False)] = 0

    def u32(rows: np.ndarray, at: np.ndarray | int) -> np.ndarray:
        return _values(data, start[rows] + at, 1, "<u4")[:, 0]

    def kind(rows: np.ndarray, at: np.ndarray | int) -> np.ndarray:  # -1 unless little-endian
        return np.where(data[start[rows] + at] == 1, u32(rows, np.asarray(at) + 1).astype(np.int64), -1)

    head = np.flatnonzero(size >= 9)
    body = np.zeros(n, dtype=np.int64)  # offset of the single point or polygon inside the WKB
    gtype = np.full(n, -1, dtype=np.int64)
    gtype[head] = kind(head, 0)
    multi = head[np.isin(gtype[head], (4, 6)) & (size[head] >= 18)]
    multi = multi[u32(multi, 5) == 1]
    body[multi] = 9
    gtype[multi] = kind(multi, body[multi])  # a single part is read like the plain geometry

    points = np.flatnonzero((gtype == 1) & (size == body + 21))
    xy = _values(data, start[points] + body[points] + 5, 2, "<f8")
    x, y = xy[:, 0], xy[:, 1]
    fine = np.isfinite(x) & np.isfinite(y)
    if not fine.all():
        points, x, y = points[fine], x[fine], y[fine]
    rows = slice(None) if len(points) == n else points  # a layer of points: no scatter
    ok[rows] = True
    bounds[rows, 0] = bounds[rows, 2] = x
    bounds[rows, 1] = bounds[rows, 3] = y

    polys = np.flatnonzero((gtype == 3) & (size >= body + 13))
    polys = polys[u32(polys, body[polys] + 5) == 1]
    count = u32(polys, body[polys] + 9).astype(np.int64)
    exact = (count >= 4) & (count <= 64) & (size[polys] == body[polys] + 13 + 16 * count)
    polys, count = polys[exact], count[exact]
    for k in np.unique(count):
        same_size = polys[count == k]
        xy_all = _values(data, start[same_size] + body[same_size] + 13, 2 * int(k), "<f8", copy=False)
        for i in range(0, len(same_size), _CACHED):  # (k, _CACHED) temporaries stay in the core's cache
            rows, xy = same_size[i:i + _CACHED], xy_all[i:i + _CACHED]
            x, y = np.ascontiguousarray(xy[:, 0::2].T), np.ascontiguousarray(xy[:, 1::2].T)  # (k, m): fast reductions
            convex = _strictly_convex(x, y)
            if not convex.all():
                rows, x, y = rows[convex], x[:, convex], y[:, convex]
            ok[rows] = True
            bounds[rows, 0], bounds[rows, 1] = x.min(axis=0), y.min(axis=0)
            bounds[rows, 2], bounds[rows, 3] = x.max(axis=0), y.max(axis=0)


def _values(data: np.ndarray, at: np.ndarray, count: int, dtype: str, copy: bool = True) -> np.ndarray:
    """(len(at), count) little-endian numbers of `dtype` starting at byte offsets `at` (any alignment).

    The values must lie inside `data`. With `copy=False` the result may be a read-only, unaligned view of `data`
    (for a caller that copies it anyway).
    """
    size = np.dtype(dtype).itemsize
    if len(at) > 1 and (step := int(at[1] - at[0])) >= size * count and bool((np.diff(at) == step).all()):
        # evenly spaced records (a run of same-size geometries): one strided copy, no gather
        base = np.frombuffer(data, dtype, (len(data) - int(at[0])) // size, int(at[0]))
        view = np.lib.stride_tricks.as_strided(base, (len(at), count), (step, size), writeable=False)
        return np.array(view) if copy else view
    out = np.empty((len(at), count), dtype=dtype)
    shift = at % size
    for s in np.unique(shift):  # one view of the buffer per byte alignment: gather values, not bytes
        view = data[s:s + (len(data) - s) // size * size].view(dtype)
        rows = np.flatnonzero(shift == s)
        out[rows] = view[((at[rows] - s) // size)[:, None] + np.arange(count)]
    return out


def _strictly_convex(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(m,) bool: closed rings, x and y (k, m), turning the same way at every vertex, each turn well above rounding.

    Such a ring is simple exactly when its edge direction goes round once, i.e. when the edges leave the upper
    half-plane of directions once (a step turns by less than half a turn, so it cannot skip a half-plane).
    """
    # a sum that overflows only sends a (huge) ring to GEOS
    closed = (x[0] == x[-1]) & (y[0] == y[-1]) & np.isfinite(x.sum(axis=0) + y.sum(axis=0))
    ex, ey = np.empty_like(x), np.empty_like(y)  # edges, the first one again at the end
    np.subtract(x[1:], x[:-1], out=ex[:-1])
    np.subtract(y[1:], y[:-1], out=ey[:-1])
    ex[-1], ey[-1] = ex[0], ey[0]
    cross = ex[:-1] * ey[1:] - ey[:-1] * ex[1:]
    length = ex * ex + ey * ey
    # a x b from rounded differences is off by a few 1e-16 |a||b|: a 1e-9 margin leaves no doubt about the sign
    clear = (cross * cross > 1e-18 * length[:-1] * length[1:]).all(axis=0)
    same = (cross.min(axis=0) > 0) | (cross.max(axis=0) < 0)
    upper = (ey > 0) | ((ey == 0) & (ex > 0))  # direction in [0, pi): exact, from the signs alone
    rounds = (upper[:-1] & ~upper[1:]).sum(axis=0)
    return closed & clear & same & (rounds == 1)


def _repair(wkb: bytes) -> tuple[bytes | None, str]:
    """Repair an invalid geometry keeping its dimension; (None, reason) when nothing usable remains."""
    geom = shapely.from_wkb(wkb, on_invalid="ignore")
    if geom is None:
        return None, "unreadable geometry (corrupt WKB)"
    reason = shapely.is_valid_reason(geom)
    coords = shapely.get_coordinates(geom)
    if not np.isfinite(coords).all():
        return None, f"invalid geometry: non-finite coordinates ({reason})"
    dim = shapely.get_dimensions(geom)
    fixed = shapely.make_valid(geom)
    parts = shapely.get_parts(fixed)
    parts = parts[(shapely.get_dimensions(parts) == dim) & ~shapely.is_empty(parts)]
    if len(parts) == 0:
        return None, f"invalid geometry that cannot be repaired ({reason})"
    if len(parts) == 1:
        result = parts[0]
    else:
        result = {0: shapely.multipoints, 1: shapely.multilinestrings, 2: shapely.multipolygons}[int(dim)](parts)
    if not shapely.is_valid(result):
        return None, f"invalid geometry that cannot be repaired ({reason})"
    return shapely.to_wkb(result), reason


def _reproject(wkb: pa.Array, keep: np.ndarray, crs: CRS) -> tuple[pa.Array, np.ndarray, list[int]]:
    """Transform the kept geometries to EPSG:4490 lon/lat.

    Returns:
        The new WKB, the (n, 4) bounds in lon/lat, and the rows whose result is not finite or not lon/lat.
    """
    t = transformer(crs, parse_crs(STORE_CRS))

    def move(coords: np.ndarray) -> np.ndarray:
        out = coords.copy()
        out[:, 0], out[:, 1] = t.transform(coords[:, 0], coords[:, 1])
        return out

    rows = np.flatnonzero(keep)
    geoms = np.full(len(wkb), None, dtype=object)
    geoms[rows] = shapely.transform(shapely.from_wkb(wkb.take(pa.array(rows)).to_numpy(zero_copy_only=False)),
                                    move, include_z=None)
    bounds = shapely.bounds(geoms)
    box = bounds[rows]
    ok = (np.isfinite(box).all(axis=1) & (box[:, 0] >= -180) & (box[:, 2] <= 180)
          & (box[:, 1] >= -90) & (box[:, 3] <= 90))
    return pa.array(shapely.to_wkb(geoms), pa.binary()), bounds, [int(r) for r in rows[~ok]]


def hilbert_keys(x: np.ndarray, y: np.ndarray, extent: tuple[float, float, float, float]) -> np.ndarray:
    """Positions of points along a Hilbert curve over `extent` (a 65536 x 65536 grid).

    Args:
        x, y: (n,) float64 coordinates.
        extent: xmin, ymin, xmax, ymax of the grid.

    Returns:
        (n,) uint32 keys; sorting by them keeps points that are close on the map close in the order.
    """
    side = 1 << 16
    x0, y0, x1, y1 = extent
    gx = np.clip((x - x0) / max(x1 - x0, 1e-12) * side, 0, side - 1).astype(np.uint16)
    gy = np.clip((y - y0) / max(y1 - y0, 1e-12) * side, 0, side - 1).astype(np.uint16)
    digits, after = _hilbert_tables_4()
    key = np.zeros(len(gx), dtype=np.uint32)  # 4**16 positions fit
    state = np.zeros(len(gx), dtype=np.uint16)  # 256 x the state: the row of the tables
    for shift in (12, 8, 4, 0):  # four levels of the curve per step, from the top
        cell = state | ((gx >> shift) & 15) << 4 | ((gy >> shift) & 15)
        key <<= 8
        key |= np.take(digits, cell)
        state = np.take(after, cell)
    return key


@functools.cache
def _hilbert_tables_4() -> tuple[np.ndarray, np.ndarray]:
    """Four levels at a time: (1024,) uint8 digits and next state (x256) by state x256 + x nibble x16 + y nibble.

    Two steps of the two-level tables of `_hilbert_tables`.
    """
    digits2, after2 = _hilbert_tables()
    digits = np.zeros(1024, dtype=np.uint8)
    after = np.zeros(1024, dtype=np.uint16)
    for state in range(4):
        for xn in range(16):
            for yn in range(16):
                first = state * 16 + ((xn >> 2) << 2 | yn >> 2)  # the upper two levels, then the lower two
                second = int(after2[first]) + ((xn & 3) << 2 | yn & 3)
                digits[state * 256 + xn * 16 + yn] = int(digits2[first]) << 4 | int(digits2[second])
                after[state * 256 + xn * 16 + yn] = int(after2[second]) // 16 * 256
    return digits, after


@functools.cache
def _hilbert_tables() -> tuple[np.ndarray, np.ndarray]:
    """Two levels of the Hilbert curve at a time: (64,) uint8 digits and next state (x16) by state x16 + cell.

    A state is how the quadrant is turned (mirrored across both axes, swapped); at each level the quadrant
    (rx, ry) gives the digit (3 rx) ^ ry, and the curve turns: a swap when ry = 0, plus a mirror when rx = 1.
    """
    digits = np.zeros(64, dtype=np.uint8)
    after = np.zeros(64, dtype=np.uint8)
    for state in range(4):
        for cell in range(16):
            mirror, swap = state & 1, state >> 1
            digit = 0
            for bx, by in (((cell >> 3) & 1, (cell >> 1) & 1), ((cell >> 2) & 1, cell & 1)):
                rx, ry = (by, bx) if swap else (bx, by)
                rx, ry = rx ^ mirror, ry ^ mirror
                digit = digit << 2 | ((3 * rx) ^ ry)
                if ry == 0:
                    mirror, swap = mirror ^ rx, swap ^ 1
            digits[state * 16 + cell] = digit
            after[state * 16 + cell] = (mirror | swap << 1) * 16
    return digits, after


def _STORABLE(typ: pa.DataType) -> bool:
    """Arrow types a DuckDB table column and a vector tile property can take as they are."""
    t = pa.types
    return bool(t.is_boolean(typ) or t.is_integer(typ) or t.is_float32(typ) or t.is_float64(typ)
                or t.is_string(typ) or t.is_binary(typ) or t.is_date(typ) or t.is_timestamp(typ) or t.is_time(typ))


def _normalise(table: pa.Table) -> tuple[pa.Table, dict[str, str]]:
    """Column types DuckDB and vector tiles take (no DECIMAL, no dictionaries, no nesting) and unique names."""
    columns: list[pa.Array | pa.ChunkedArray] = []
    names: list[str] = []
    renamed: dict[str, str] = {}
    taken = {r.casefold() for r in _RESERVED}
    for i, name in enumerate(table.column_names):
        col = table.column(i)  # chunks are joined by `take_rows`, in parallel
        typ = col.type
        if pa.types.is_dictionary(typ):
            col = col.cast(typ.value_type)
            typ = col.type
        if isinstance(typ, pa.ExtensionType):
            col = pa.chunked_array([c.storage for c in col.chunks], typ.storage_type)
            typ = col.type
        if pa.types.is_decimal(typ):
            col = col.cast(pa.float64())
        elif pa.types.is_float16(typ):  # DuckDB has no half float
            col = col.cast(pa.float32())
        elif pa.types.is_null(typ):
            col = col.cast(pa.string())
        elif pa.types.is_nested(typ):
            col = pa.array([None if v is None else json.dumps(v, ensure_ascii=False, default=str)
                            for v in col.to_pylist()], pa.string())
        elif pa.types.is_large_string(typ) or pa.types.is_string_view(typ):
            col = col.cast(pa.string())
        elif pa.types.is_large_binary(typ) or pa.types.is_fixed_size_binary(typ) or pa.types.is_binary_view(typ):
            col = col.cast(pa.binary())
        elif not _STORABLE(typ):  # durations, intervals, ...: kept as their text
            col = pa.array([None if v is None else str(v) for v in col.to_pylist()], pa.string())
        new = (name or f"field_{i + 1}").strip() or f"field_{i + 1}"
        base, k = new, 1
        while new.casefold() in taken:
            new = f"{base}_{k}"
            k += 1
        taken.add(new.casefold())
        if new != name:
            renamed[name] = new
        columns.append(col)
        names.append(new)
    if not columns:
        return table.select([]), renamed  # keeps the row count
    return pa.table(columns, names=names), renamed


__all__ = ["FID", "Staged", "crs_label", "hilbert_keys", "hilbert_order", "is_store_crs", "stage", "take_rows", "wkb_types"]
