"""A build's per-building arrays laid out on disk in task order, so each Dask task reads its own rows only.

The driver writes the arrays a wave of tasks needs (footprints, heights, metadata columns) once, with the
rows in the order of the tasks (the first task's rows, then the second's, ...), all of them in one file of a
folder of the build's work folder (`rows.bin`, each array's parts at an offset the index `rows.json` gives). A
task opens the file once and reads its row range `[start, stop)` of each array at its offset. Polygons are stored
as their coordinates plus ring, part and geometry offsets (`PolygonColumn`): a mesher reads them without parsing
any geometry. A worker's memory is then set by its task (a tile, a chunk of footprints), not by the city, and no
array of the whole city is sent to any worker: a task's job is its row range, and the folder is read by path (on
a cluster, a file system every machine sees, like the output folder).

Rows come back as the types they were written as (numpy arrays, pandas masked arrays such as `Int64`,
`tiles.gltf.StringColumn`, shapely geometries through WKB or their coordinates), value for value, so a tile built from its rows is the
same bytes as one built from the whole city's arrays.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely

from tiles.gltf import StringColumn, take_binary

_INDEX = "rows.json"
_DATA = "rows.bin"
_ALIGN = 64  # each part starts at a multiple of this in the file


def spatial_order(x: np.ndarray, y: np.ndarray, bits: int = 16) -> np.ndarray:
    """A permutation that puts points close on the ground close in the order (Z-order / Morton curve).

    Args:
        x, y: (n,) float64 coordinates.
        bits: cells per axis are 2**bits over the points' extent.

    Returns:
        (n,) int64 indices, stable for points in the same cell.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if len(x) == 0:
        return np.zeros(0, np.int64)
    span = max(float(np.ptp(x)), float(np.ptp(y))) or 1.0
    scale = (2**bits - 1) / span
    ix = ((x - x.min()) * scale).astype(np.uint64)
    iy = ((y - y.min()) * scale).astype(np.uint64)
    code = np.zeros(len(x), np.uint64)
    for b in range(bits):
        code |= ((ix >> np.uint64(b)) & np.uint64(1)) << np.uint64(2 * b)
        code |= ((iy >> np.uint64(b)) & np.uint64(1)) << np.uint64(2 * b + 1)
    return np.argsort(code, kind="stable")


@dataclass(frozen=True)
class WkbColumn:
    """Geometries as their WKB bytes plus offsets, moved from row store to row store without being parsed
    (`RowStore.take(..., raw=True)`, `concat_rows`, `RowStore.write`).

    Attributes:
        data: (b,) uint8 the geometries' WKB, one after the other.
        offsets: (n + 1,) int64 start of each geometry's WKB in `data`.
    """

    data: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def take(self, index: np.ndarray) -> WkbColumn:
        return WkbColumn(*take_binary(self.data, self.offsets, np.asarray(index, np.int64)))


@dataclass(frozen=True)
class PolygonColumn:
    """(Multi)polygons as flat arrays (GeoArrow's layout): coordinates, then the offsets of each ring, part and
    geometry. Moved from row store to row store and read by a mesher without any geometry object
    (`cim.models.lod1.lod1_primitive` takes it as it is); `to_geometries` gives the shapely ones back, type for type.

    Attributes:
        coords: (v, 2) float64 every ring's vertices, each ring closed (its first vertex repeated at its end).
        ring_offsets: (r + 1,) int64 first vertex of each ring (exterior first, then its holes).
        part_offsets: (p + 1,) int64 first ring of each polygon part.
        geom_offsets: (n + 1,) int64 first part of each geometry.
        multi: (n,) bool the geometry is a MultiPolygon (else a Polygon, one part).
    """

    coords: np.ndarray
    ring_offsets: np.ndarray
    part_offsets: np.ndarray
    geom_offsets: np.ndarray
    multi: np.ndarray

    def __len__(self) -> int:
        return len(self.geom_offsets) - 1

    @classmethod
    def from_geometries(cls, geoms: np.ndarray) -> PolygonColumn | None:
        """The column of an object array of shapely Polygons and MultiPolygons; None when it holds anything else
        (an empty or missing geometry, another type, z coordinates)."""
        geoms = np.asarray(geoms, dtype=object)
        types = shapely.get_type_id(geoms)
        if len(geoms) == 0 or not np.isin(types, (3, 6)).all() or shapely.is_empty(geoms).any() or \
                shapely.has_z(geoms).any():
            return None
        # shapely.to_ragged_array's arrays, counted without a geometry object per part and ring where there is
        # one part (Polygons) and one ring (no hole): three times faster on footprints
        multi = types == 6
        geom = _offsets(np.where(multi, shapely.get_num_geometries(geoms), 1))
        parts = np.empty(geom[-1], dtype=object)
        parts[geom[:-1][~multi]] = geoms[~multi]
        if multi.any():
            parts[_ranges(geom, np.flatnonzero(multi))[0]] = shapely.get_parts(geoms[multi])
        holes = shapely.get_num_interior_rings(parts)
        part = _offsets(holes + 1)
        counts = np.empty(part[-1], np.int64)
        plain = holes == 0
        counts[part[:-1][plain]] = shapely.get_num_coordinates(parts[plain])
        if not plain.all():
            rings = shapely.get_rings(parts[~plain])
            counts[_ranges(part, np.flatnonzero(~plain))[0]] = shapely.get_num_coordinates(rings)
        coords = shapely.get_coordinates(geoms)
        return cls(np.ascontiguousarray(coords, np.float64), _offsets(counts), part, geom, multi)

    def to_geometries(self) -> np.ndarray:
        """(n,) object array of shapely Polygons and MultiPolygons, as they were."""
        out = shapely.from_ragged_array(shapely.GeometryType.MULTIPOLYGON, self.coords,
                                        (self.ring_offsets, self.part_offsets, self.geom_offsets))
        single = ~self.multi
        if single.any():
            out[single] = shapely.get_geometry(out[single], 0)
        return out

    def take(self, index: np.ndarray) -> PolygonColumn:
        """The geometries at `index` ((m,) int, any order)."""
        index = np.asarray(index, np.int64)
        parts, geom = _ranges(self.geom_offsets, index)
        rings, part = _ranges(self.part_offsets, parts)
        verts, ring = _ranges(self.ring_offsets, rings)
        return PolygonColumn(np.asarray(self.coords[verts]), ring, part, geom, np.asarray(self.multi[index]))


def _offsets(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _ranges(offsets: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The items of groups `index` of a ragged array with `offsets`: ((k,) their positions, group after group;
    (m + 1,) the groups' offsets in that list)."""
    lo = np.asarray(offsets[index], np.int64)
    count = np.asarray(offsets[index + 1], np.int64) - lo
    new = np.zeros(len(index) + 1, np.int64)
    np.cumsum(count, out=new[1:])
    return np.repeat(lo - new[:-1], count) + np.arange(new[-1]), new


class RowStore:
    """Named arrays of equal length in a folder, read back by row range.

    Use `RowStore.write(folder, arrays, order)` in the driver and `RowStore(folder).read(start, stop)` in a task.
    Supported values, each (n,) long: numpy arrays (any dtype but object; 2-D ones by rows), pandas masked arrays
    (`Int64`, `boolean`, `Float64`), `StringColumn`s, object arrays of shapely geometries (stored as WKB) or
    their WKB as a `WkbColumn`, and `PolygonColumn`s (read back as shapely geometries, or as they are with
    `raw`).
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._index: dict[str, Any] | None = None

    @property
    def index(self) -> dict[str, Any]:
        if self._index is None:
            self._index = json.loads((self.folder / _INDEX).read_text())
        return self._index

    def __len__(self) -> int:
        return int(self.index["rows"])

    @classmethod
    def write(cls, folder: str | os.PathLike[str], arrays: Mapping[str, Any],
              order: np.ndarray | None = None) -> RowStore:
        """Write `arrays` (each taken in `order` first, when given) into `folder`, replacing what was there.

        The index is written last: a folder without one was cut short and is written again.
        """
        folder = Path(folder)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        columns = []
        n = None
        at = 0
        with open(folder / _DATA, "wb") as fh:
            for name, values in arrays.items():
                kind, parts = _split(values, order)
                layout = {}
                for part, arr in parts.items():
                    arr = np.ascontiguousarray(arr)  # C order: rows are read at an offset
                    pad = (-at) % _ALIGN
                    fh.write(b"\0" * pad)
                    at += pad
                    layout[part] = [at, np.lib.format.dtype_to_descr(arr.dtype), list(arr.shape)]
                    fh.write(memoryview(arr).cast("B") if arr.nbytes else b"")
                    at += arr.nbytes
                rows = _rows(kind, parts)
                if n is not None and rows != n:
                    raise ValueError(f"array {name!r} has {rows} rows, the others {n}")
                n = rows
                extra = {"dtype": str(values.dtype)} if kind == "masked" else {}
                columns.append({"name": name, "kind": kind, "parts": sorted(parts), "layout": layout, **extra})
        (folder / _INDEX).write_text(json.dumps({"rows": n or 0, "data": _DATA, "columns": columns}))
        return cls(folder)

    def read(self, start: int, stop: int, names: Collection[str] | None = None, raw: bool = False
             ) -> dict[str, Any]:
        """Rows `start` to `stop` (excluded) of every array (or of those in `names` that the store has), as the
        types they were written as, in written order; polygons as a `PolygonColumn` with `raw`.

        The store's file is opened once and each array's rows are read at their offset (a seek and a read): a
        tile's task reads a few hundred rows of some forty arrays, and mapping a file per array cost more than
        reading the rows.
        """
        out: dict[str, Any] = {}
        cols = [c for c in self.index["columns"] if names is None or c["name"] in names]
        if "data" not in self.index:  # a store of an earlier version (a resumed build's): a file per array
            for col in cols:
                if "layout" not in col:
                    parts = {p: np.load(self._path(col, p), mmap_mode="r") for p in col["parts"]}
                else:
                    parts = {p: _RangeReader(self._path(col, p), *col["layout"][p]) for p in col["parts"]}
                out[col["name"]] = _join(col, parts, start, stop, raw)
            return out
        with open(self.folder / self.index["data"], "rb") as fh:
            for col in cols:
                parts = {p: _RangeReader(fh, *col["layout"][p]) for p in col["parts"]}
                out[col["name"]] = _join(col, parts, start, stop, raw)
        return out

    def _path(self, col: dict[str, Any], part: str) -> Path:
        return self.folder / f"{col['file']}.{part}.npy"

    def _mapped(self, col: dict[str, Any]) -> dict[str, np.ndarray]:
        """An array's parts mapped from the store's file(s)."""
        if "data" not in self.index:
            return {p: np.load(self._path(col, p), mmap_mode="r") for p in col["parts"]}
        out = {}
        for part in col["parts"]:
            offset, descr, shape = col["layout"][part]
            dtype = np.lib.format.descr_to_dtype(descr)
            out[part] = (np.memmap(self.folder / self.index["data"], dtype, "r", offset, tuple(shape))
                         if np.prod(shape) else np.zeros(shape, dtype))
        return out

    def take(self, index: np.ndarray, raw: bool = False) -> dict[str, Any]:
        """The rows at `index` ((m,) int, any order) of every array, as the types they were written as (geometries
        as a `WkbColumn` of their WKB, or a `PolygonColumn`, with `raw`: rows going on to another store need not be
        parsed)."""
        index = np.asarray(index, np.int64)
        return {col["name"]: _gather(col, self._mapped(col), index, raw) for col in self.index["columns"]}


def concat_rows(pieces: list[dict[str, Any]]) -> dict[str, Any]:
    """Row sets with the same arrays (`RowStore.read`/`take` results) one after the other, types kept."""
    out: dict[str, Any] = {}
    for name in pieces[0]:
        values = [p[name] for p in pieces]
        if any(isinstance(v, WkbColumn) for v in values):  # stores that hold WKB and coordinates: all as WKB
            values = [_wkb_column(v.to_geometries()) if isinstance(v, PolygonColumn) else v for v in values]
        first = values[0]
        if len(values) == 1:
            out[name] = first
        elif isinstance(first, WkbColumn):
            sizes = np.cumsum([0] + [len(v.data) for v in values[:-1]])
            out[name] = WkbColumn(np.concatenate([v.data for v in values]),
                                  np.concatenate([values[0].offsets[:1]] + [v.offsets[1:] + s
                                                                            for v, s in zip(values, sizes)]))
        elif isinstance(first, PolygonColumn):
            out[name] = PolygonColumn(np.concatenate([v.coords for v in values]),
                                      _concat_offsets([v.ring_offsets for v in values]),
                                      _concat_offsets([v.part_offsets for v in values]),
                                      _concat_offsets([v.geom_offsets for v in values]),
                                      np.concatenate([v.multi for v in values]))
        elif isinstance(first, StringColumn):
            sizes = np.cumsum([0] + [len(v.data) for v in values[:-1]])
            offsets = np.concatenate([values[0].offsets[:1]] + [v.offsets[1:] + s for v, s in zip(values, sizes)])
            out[name] = StringColumn(np.concatenate([v.data for v in values]), offsets,
                                     np.concatenate([v.missing for v in values]))
        elif isinstance(first, pd.api.extensions.ExtensionArray):
            out[name] = type(first)._concat_same_type(values)
        else:
            out[name] = np.concatenate(values)
    return out


def _wkb_column(geoms: np.ndarray) -> WkbColumn:
    parts = _split(geoms, None)[1]
    return WkbColumn(parts["data"], parts["offsets"])


def _concat_offsets(offsets: list[np.ndarray]) -> np.ndarray:
    """Offsets of ragged arrays one after the other (each starting at 0)."""
    ends = np.cumsum([0] + [int(o[-1]) for o in offsets[:-1]])
    return np.concatenate([offsets[0][:1]] + [o[1:] + e for o, e in zip(offsets, ends)])


class WindowPart:
    """Rows r0.. and columns c0.. of a raster (or any 2-D grid), indexed in the whole grid's rows and columns.

    A task that reads only the part of a grid under its work hands this to code written for the whole grid: the
    same indices, the same `shape`, the same values, so the same arithmetic and the same bytes out. Indexing
    outside the part is an error of the caller (it must read every row and column it touches).
    """

    def __init__(self, part: np.ndarray, r0: int, c0: int, shape: tuple[int, int]) -> None:
        self.part, self.r0, self.c0, self.shape, self.size = part, r0, c0, shape, shape[0] * shape[1]

    def __getitem__(self, index: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        return self.part[np.asarray(index[0]) - self.r0, np.asarray(index[1]) - self.c0]


class _RangeReader:
    """One stored part read by row range (`reader[a:b]` reads rows a..b): from an open file (a store's
    `rows.bin`) or a file of its own (an .npy file of an earlier version's store), at the part's offset."""

    def __init__(self, source: Any, offset: int, descr: Any, shape: list[int]) -> None:
        self.source, self.offset, self.shape = source, offset, shape
        self.dtype = np.lib.format.descr_to_dtype(descr)

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, step = rows.indices(self.shape[0])
        if step != 1:
            raise ValueError("rows are read as a contiguous range")
        tail = self.shape[1:]
        out = np.empty((max(stop - start, 0), *tail), self.dtype)
        if out.nbytes:
            if isinstance(self.source, Path):
                with open(self.source, "rb") as fh:
                    self._read(fh, start, out)
            else:
                self._read(self.source, start, out)
        return out

    def _read(self, fh: Any, start: int, out: np.ndarray) -> None:
        fh.seek(self.offset + start * (out.nbytes // len(out)))
        if fh.readinto(memoryview(out).cast("B")) != out.nbytes:
            raise ValueError(f"{fh.name} is shorter than its index says (cut short?)")


def _rows(kind: str, parts: dict[str, np.ndarray]) -> int:
    if kind == "polygons":
        return len(parts["geom_offsets"]) - 1
    return len(parts["offsets"]) - 1 if "offsets" in parts else len(parts["values"])


def _split(values: Any, order: np.ndarray | None) -> tuple[str, dict[str, np.ndarray]]:
    if isinstance(values, PolygonColumn):
        col = values.take(order) if order is not None else values
        return "polygons", {"coords": col.coords, "ring_offsets": col.ring_offsets, "part_offsets": col.part_offsets,
                            "geom_offsets": col.geom_offsets, "multi": col.multi}
    if isinstance(values, WkbColumn):
        col = values.take(order) if order is not None else values
        return "geometry", {"data": col.data, "offsets": col.offsets}
    if isinstance(values, StringColumn):
        col = values.take(order) if order is not None else values
        return "strings", {"data": col.data, "offsets": col.offsets, "missing": col.missing}
    if isinstance(values, pd.api.extensions.ExtensionArray):
        if not hasattr(values, "_mask"):
            raise TypeError(f"cannot store a {type(values).__name__}; convert it to numpy or a masked array")
        col = values.take(order) if order is not None else values
        return "masked", {"values": np.asarray(col._data), "mask": np.asarray(col._mask)}
    values = np.asarray(values)
    if order is not None:
        values = values[order]
    if values.dtype == object:
        wkb = shapely.to_wkb(values)
        lengths = np.fromiter((len(b) for b in wkb), np.int64, len(wkb))
        offsets = np.zeros(len(wkb) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        data = np.frombuffer(b"".join(wkb.tolist()), np.uint8)
        return "geometry", {"data": data, "offsets": offsets}
    return "array", {"values": values}


def _gather(col: dict[str, Any], parts: dict[str, np.ndarray], index: np.ndarray, raw: bool = False) -> Any:
    kind = col["kind"]
    if kind == "polygons":
        polys = PolygonColumn(parts["coords"], parts["ring_offsets"], parts["part_offsets"], parts["geom_offsets"],
                              parts["multi"]).take(index)
        return polys if raw else polys.to_geometries()
    if kind in ("strings", "geometry"):
        data, offsets = take_binary(parts["data"], parts["offsets"], index)
        if kind == "strings":
            return StringColumn(data, offsets, np.asarray(parts["missing"][index]))
        if raw:
            return WkbColumn(data, offsets)
        buf = data.tobytes()
        return shapely.from_wkb(np.array([buf[offsets[i]:offsets[i + 1]] for i in range(len(index))], object))
    if kind == "masked":
        dtype = pd.api.types.pandas_dtype(col["dtype"])
        return dtype.construct_array_type()(np.asarray(parts["values"][index]), np.asarray(parts["mask"][index]))
    return np.asarray(parts["values"][index])


def _join(col: dict[str, Any], parts: dict[str, Any], start: int, stop: int, raw: bool = False) -> Any:
    kind = col["kind"]
    if kind == "polygons":
        geom = np.array(parts["geom_offsets"][start:stop + 1], np.int64)
        part = np.array(parts["part_offsets"][geom[0]:geom[-1] + 1], np.int64)
        ring = np.array(parts["ring_offsets"][part[0]:part[-1] + 1], np.int64)
        polys = PolygonColumn(parts["coords"][ring[0]:ring[-1]], ring - ring[0], part - part[0], geom - geom[0],
                              parts["multi"][start:stop])
        return polys if raw else polys.to_geometries()
    if kind in ("strings", "geometry"):
        offsets = np.array(parts["offsets"][start:stop + 1], np.int64)
        data = np.array(parts["data"][offsets[0]:offsets[-1]])
        offsets -= offsets[0]
        if kind == "strings":
            return StringColumn(data, offsets, np.array(parts["missing"][start:stop]))
        buf = data.tobytes()
        return shapely.from_wkb(np.array([buf[offsets[i]:offsets[i + 1]] for i in range(stop - start)], object))
    if kind == "masked":
        dtype = pd.api.types.pandas_dtype(col["dtype"])
        return dtype.construct_array_type()(np.array(parts["values"][start:stop]),
                                            np.array(parts["mask"][start:stop]))
    return np.array(parts["values"][start:stop])


__all__ = ["PolygonColumn", "RowStore", "WindowPart", "WkbColumn", "concat_rows", "spatial_order"]
