"""A build's per-building arrays laid out on disk in task order, so each Dask task reads its own rows only.

The driver writes the arrays a wave of tasks needs (footprints as WKB, heights, metadata columns) once, with the
rows in the order of the tasks (the first task's rows, then the second's, ...), one `.npy` file per array in a
folder of the build's work folder. A task maps the files (`numpy.load(mmap_mode="r")`) and copies its row range
`[start, stop)`. A worker's memory is then set by its task (a tile, a chunk of footprints), not by the city, and no
array of the whole city is sent to any worker: a task's job is its row range, and the folder is read by path (on
a cluster, a file system every machine sees, like the output folder).

Rows come back as the types they were written as (numpy arrays, pandas masked arrays such as `Int64`,
`tiles.gltf.StringColumn`, shapely geometries through WKB), value for value, so a tile built from its rows is the
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
    (`RowStore.take(..., wkb=True)`, `concat_rows`, `RowStore.write`).

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


class RowStore:
    """Named arrays of equal length in a folder, read back by row range.

    Use `RowStore.write(folder, arrays, order)` in the driver and `RowStore(folder).read(start, stop)` in a task.
    Supported values, each (n,) long: numpy arrays (any dtype but object; 2-D ones by rows), pandas masked arrays
    (`Int64`, `boolean`, `Float64`), `StringColumn`s, and object arrays of shapely geometries (stored as WKB) or
    their WKB as a `WkbColumn`.
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
        for k, (name, values) in enumerate(arrays.items()):
            stem = f"a{k:04d}"
            kind, parts = _split(values, order)
            layout = {}
            for part, arr in parts.items():
                # C order (a Fortran-ordered 2-D array is saved as such: rows could not be read at an offset)
                np.save(folder / f"{stem}.{part}.npy", np.ascontiguousarray(arr), allow_pickle=False)
                layout[part] = _layout(folder / f"{stem}.{part}.npy")
            rows = len(parts["offsets"]) - 1 if "offsets" in parts else len(parts["values"])
            if n is not None and rows != n:
                raise ValueError(f"array {name!r} has {rows} rows, the others {n}")
            n = rows
            extra = {"dtype": str(values.dtype)} if kind == "masked" else {}
            columns.append({"name": name, "file": stem, "kind": kind, "parts": sorted(parts), "layout": layout,
                            **extra})
        (folder / _INDEX).write_text(json.dumps({"rows": n or 0, "columns": columns}))
        return cls(folder)

    def read(self, start: int, stop: int, names: Collection[str] | None = None) -> dict[str, Any]:
        """Rows `start` to `stop` (excluded) of every array (or of those in `names` that the store has), as the
        types they were written as, in written order.

        Each array's rows are read from its file at their offset (a seek and a read): a tile's task reads a few
        hundred rows of some forty files, and mapping each file (`numpy.load`) cost more than reading the rows.
        """
        out: dict[str, Any] = {}
        for col in self.index["columns"]:
            if names is not None and col["name"] not in names:
                continue
            if "layout" not in col:  # a store of an earlier version (a resumed build's)
                parts = {p: np.load(self._path(col, p), mmap_mode="r") for p in col["parts"]}
                out[col["name"]] = _join(col, parts, start, stop)
                continue
            out[col["name"]] = _join(col, _Ranges(self, col), start, stop)
        return out

    def _path(self, col: dict[str, Any], part: str) -> Path:
        return self.folder / f"{col['file']}.{part}.npy"

    def take(self, index: np.ndarray, wkb: bool = False) -> dict[str, Any]:
        """The rows at `index` ((m,) int, any order) of every array, as the types they were written as (geometries
        as a `WkbColumn` of their WKB with `wkb`: rows going on to another store need not be parsed)."""
        index = np.asarray(index, np.int64)
        out: dict[str, Any] = {}
        for col in self.index["columns"]:
            parts = {p: np.load(self.folder / f"{col['file']}.{p}.npy", mmap_mode="r") for p in col["parts"]}
            out[col["name"]] = _gather(col, parts, index, wkb)
        return out


def concat_rows(pieces: list[dict[str, Any]]) -> dict[str, Any]:
    """Row sets with the same arrays (`RowStore.read`/`take` results) one after the other, types kept."""
    out: dict[str, Any] = {}
    for name in pieces[0]:
        values = [p[name] for p in pieces]
        first = values[0]
        if len(values) == 1:
            out[name] = first
        elif isinstance(first, WkbColumn):
            sizes = np.cumsum([0] + [len(v.data) for v in values[:-1]])
            out[name] = WkbColumn(np.concatenate([v.data for v in values]),
                                  np.concatenate([values[0].offsets[:1]] + [v.offsets[1:] + s
                                                                            for v, s in zip(values, sizes)]))
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


def _layout(path: Path) -> list[Any]:
    """[data offset, dtype descr, shape] of an .npy file (C order), to read rows of it at their offset."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(fh)
        if fortran:
            raise ValueError(f"{path}: a Fortran-ordered array cannot be read by rows")
        return [fh.tell(), np.lib.format.dtype_to_descr(dtype), list(shape)]


class _Ranges:
    """The parts of one stored array, read by row range (`parts[part][a:b]` reads rows a..b of that file)."""

    def __init__(self, store: RowStore, col: dict[str, Any]) -> None:
        self.store, self.col = store, col

    def __getitem__(self, part: str) -> _RangeReader:
        return _RangeReader(self.store._path(self.col, part), *self.col["layout"][part])


class _RangeReader:
    def __init__(self, path: Path, offset: int, descr: Any, shape: list[int]) -> None:
        self.path, self.offset, self.shape = path, offset, shape
        self.dtype = np.lib.format.descr_to_dtype(descr)

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, step = rows.indices(self.shape[0])
        if step != 1:
            raise ValueError("rows are read as a contiguous range")
        tail = self.shape[1:]
        out = np.empty((max(stop - start, 0), *tail), self.dtype)
        if out.nbytes:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset + start * (out.nbytes // len(out)))
                if fh.readinto(memoryview(out).cast("B")) != out.nbytes:
                    raise ValueError(f"{self.path} is shorter than its header says (cut short?)")
        return out


def _split(values: Any, order: np.ndarray | None) -> tuple[str, dict[str, np.ndarray]]:
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


def _gather(col: dict[str, Any], parts: dict[str, np.ndarray], index: np.ndarray, wkb: bool = False) -> Any:
    kind = col["kind"]
    if kind in ("strings", "geometry"):
        data, offsets = take_binary(parts["data"], parts["offsets"], index)
        if kind == "strings":
            return StringColumn(data, offsets, np.asarray(parts["missing"][index]))
        if wkb:
            return WkbColumn(data, offsets)
        raw = data.tobytes()
        return shapely.from_wkb(np.array([raw[offsets[i]:offsets[i + 1]] for i in range(len(index))], object))
    if kind == "masked":
        dtype = pd.api.types.pandas_dtype(col["dtype"])
        return dtype.construct_array_type()(np.asarray(parts["values"][index]), np.asarray(parts["mask"][index]))
    return np.asarray(parts["values"][index])


def _join(col: dict[str, Any], parts: dict[str, np.ndarray], start: int, stop: int) -> Any:
    kind = col["kind"]
    if kind in ("strings", "geometry"):
        offsets = np.array(parts["offsets"][start:stop + 1], np.int64)
        data = np.array(parts["data"][offsets[0]:offsets[-1]])
        offsets -= offsets[0]
        if kind == "strings":
            return StringColumn(data, offsets, np.array(parts["missing"][start:stop]))
        raw = data.tobytes()
        return shapely.from_wkb(np.array([raw[offsets[i]:offsets[i + 1]] for i in range(stop - start)], object))
    if kind == "masked":
        dtype = pd.api.types.pandas_dtype(col["dtype"])
        return dtype.construct_array_type()(np.array(parts["values"][start:stop]),
                                            np.array(parts["mask"][start:stop]))
    return np.array(parts["values"][start:stop])


__all__ = ["RowStore", "WindowPart", "WkbColumn", "concat_rows", "spatial_order"]
