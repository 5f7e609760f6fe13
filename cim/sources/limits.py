"""Limits on untrusted input: what every reader checks before a byte of it reaches native code.

GDAL, GEOS, DuckDB spatial and CPython's `json` parse nested structures recursively, and the native ones do not
bound their depth: measured on this machine, DuckDB 1.4.4 spatial ends the process with a segmentation fault on a
GeometryCollection nested 19 deep (about 180 bytes of WKB, or a 400-byte GeoJSON feature), GEOS on one nested
100,000 deep (WKB or WKT), and `json.loads` raises `RecursionError` on a few thousand nested arrays. A city
platform takes files from dozens of departments, so every reader of this project calls these helpers first:

- `check_wkb(values)`: walks WKB values without recursion (vectorised over many values, with a scalar walk for the
  few long ones) and returns the rows that are corrupt, nested deeper than `MAX_NESTING`, or larger than
  `MAX_PARTS` / `MAX_VERTICES`, each with a reason. A value it passes is complete, well-formed WKB (every count
  agrees with the bytes, no trailing bytes) of the seven OGC types in 2D, Z, M or ZM.
- `check_wkt(texts)`: the same bound on WKT text (parenthesis depth, length), vectorised.
- `load_json(path)`: a JSON document of bounded size; too deep, not UTF-8 or not JSON is an `InputError` that names
  the file and the place.
- `check_finite(name, value)`: numeric options (`--default-height`, `--bbox` numbers ...) must be finite.
- `check_encoding(name)`: a text encoding option must name a codec Python knows, checked before any reading.
- `check_raster_size(path, width, height, bands, itemsize)`: a raster must fit in the memory there is.

A reader that adds a format (CityJSON, IFC, ...) calls the matching helper on what it read before building any
geometry from it; `docs/security.md` lists the limits.
"""

from __future__ import annotations

import codecs
import json
import math
import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from cim.errors import InputError

MAX_NESTING = 8  # geometry levels: Point 1, MultiPolygon 2 (+1 for its rings), a collection of those 3, ...
MAX_PARTS = 1_000_000  # parts and rings of one geometry
MAX_VERTICES = 50_000_000  # coordinates of one geometry
MAX_JSON_BYTES = 1 << 30  # a JSON document read whole (CityJSON): about 10x that in Python objects
MAX_WKT_BYTES = 256 << 20  # one WKT value

_ISO_DIMS = {0: 2, 1: 3, 2: 3, 3: 4}  # ISO WKB type // 1000 -> coordinates per vertex
_RING = 0  # frame kind: the children are rings of a polygon
_ANY = 8  # frame kind: the children are any geometry (the root, a GeometryCollection)
_SCALAR_BELOW = 256  # finish with the scalar walk once fewer values than this are still being read


def _reason_depth() -> str:
    return f"geometry nested deeper than {MAX_NESTING} levels (a collection inside a collection ...)"


def _reason_parts() -> str:
    return f"geometry with more than {MAX_PARTS:,} parts and rings"


def _reason_vertices() -> str:
    return f"geometry with more than {MAX_VERTICES:,} vertices"


_CORRUPT = "unreadable geometry (corrupt WKB)"


def _type_info(code: int) -> tuple[int, int, int] | None:
    """(base type 1..7, coordinates per vertex, header bytes) of a WKB type word, None when it is not one."""
    flags = code & 0xE0000000
    if flags:  # extended WKB (PostGIS, GEOS): Z/M/SRID flags with a plain OGC code
        base = code & 0x1FFFFFFF
        if not 1 <= base <= 7:
            return None
        return base, 2 + bool(code & 0x80000000) + bool(code & 0x40000000), 9 if code & 0x20000000 else 5
    base, dims = code % 1000, code // 1000
    if not 1 <= base <= 7 or dims not in _ISO_DIMS:
        return None
    return base, _ISO_DIMS[dims], 5


def _walk_one(data: memoryview | bytes, pos: int, end: int) -> str | None:
    """The scalar walk of one WKB value in data[pos:end]: None when it is well-formed and within the limits."""
    stack: list[list[int]] = [[1, _ANY, 0, 0]]  # per level: children left, their kind, little-endian, dims
    parts = vertices = 0
    while stack:
        top = stack[-1]
        if top[0] == 0:
            stack.pop()
            continue
        top[0] -= 1
        if top[1] == _RING:
            if pos + 4 > end:
                return _CORRUPT
            (n,) = struct.unpack_from("<I" if top[2] else ">I", data, pos)
            need = 4 + n * 8 * top[3]
            if pos + need > end:
                return _CORRUPT
            vertices += n
            if vertices > MAX_VERTICES:
                return _reason_vertices()
            pos += need
            continue
        if pos + 5 > end or data[pos] > 1:
            return _CORRUPT
        little = data[pos]
        (code,) = struct.unpack_from("<I" if little else ">I", data, pos + 1)
        info = _type_info(code)
        if info is None or (top[1] != _ANY and info[0] != top[1]):
            return _CORRUPT
        base, dims, head = info
        pos += head
        if base == 1:
            pos += 8 * dims
            if pos > end:
                return _CORRUPT
            vertices += 1
            continue
        if pos + 4 > end:
            return _CORRUPT
        (n,) = struct.unpack_from("<I" if little else ">I", data, pos)
        pos += 4
        if base == 2:
            pos += n * 8 * dims
            if pos > end:
                return _CORRUPT
            vertices += n
            if vertices > MAX_VERTICES:
                return _reason_vertices()
            continue
        if n * (4 if base == 3 else 9) > end - pos:  # each ring takes >= 4 bytes, each geometry >= 9
            return _CORRUPT
        parts += n
        if parts > MAX_PARTS:
            return _reason_parts()
        if base != 3 and len(stack) >= MAX_NESTING:
            return _reason_depth()
        # children: rings (polygon), the simple type (Multi*: 4 -> 1, 5 -> 2, 6 -> 3), or anything (collection)
        kind = _RING if base == 3 else (base - 3 if base < 7 else _ANY)
        stack.append([n, kind, little, dims])
    return None if pos == end else _CORRUPT


def _walk_scalar(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> list[str | None]:
    view = memoryview(data.tobytes()) if not data.flags.c_contiguous else memoryview(data)
    return [_walk_one(view, int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


def _u32(data: np.ndarray, at: np.ndarray, little: np.ndarray) -> np.ndarray:
    """(m,) uint32 at byte offsets `at`, little- or big-endian per value; offsets past the end read as 0 (callers
    check the bounds themselves)."""
    if len(data) < 4:
        return np.zeros(len(at), np.uint32)
    at = np.clip(at, 0, len(data) - 4)
    b0, b1, b2, b3 = (data[at + i].astype(np.uint32) for i in range(4))
    return np.where(little, b0 | b1 << 8 | b2 << 16 | b3 << 24, b3 | b2 << 8 | b1 << 16 | b0 << 24)


def _headers(data: np.ndarray, at: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, ...]:
    """Geometry headers at offsets `at` (values ending at `end`), vectorised.

    Returns:
        ok, little, base type (1..7), coordinates per vertex, header bytes, each (m,); where `ok` is False the
        others are meaningless.
    """
    ok = at + 5 <= end
    order = data[np.clip(at, 0, max(len(data) - 1, 0))] if len(data) else np.zeros(len(at), np.uint8)
    ok &= order <= 1
    little = order == 1
    code = _u32(data, at + 1, little)
    ext = (code & 0xE0000000) != 0
    base = np.where(ext, code & 0x1FFFFFFF, code % 1000).astype(np.int64)
    iso = np.where(ext, 0, code // 1000).astype(np.int64)
    ok &= (base >= 1) & (base <= 7) & (iso <= 3)
    dims = np.where(ext, 2 + ((code & 0x80000000) != 0) + ((code & 0x40000000) != 0),
                    np.array([2, 3, 3, 4])[np.minimum(iso, 3)]).astype(np.int64)
    head = np.where(ext & ((code & 0x20000000) != 0), 9, 5).astype(np.int64)
    return ok, little, base, dims, head


def _flat(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """(m,) bool: the values that are one well-formed Point, LineString or one-ring Polygon, or a Multi* of one
    such part, within the vertex limit; checked in one vectorised pass (most features of a city's layers)."""
    ok, little, base, dims, head = _headers(data, starts, ends)
    at = starts + head
    multi = ok & (base >= 4) & (base <= 6)
    count = _u32(data, at, little).astype(np.int64)
    multi &= (count == 1) & (at + 4 <= ends)
    p_ok, p_little, p_base, p_dims, p_head = _headers(data, at + 4, ends)
    multi &= p_ok & (p_base == base - 3)
    little = np.where(multi, p_little, little)
    base = np.where(multi, p_base, base)
    dims = np.where(multi, p_dims, dims)
    at = np.where(multi, at + 4 + p_head, at)
    ok &= (base <= 3) & (multi | (np.where(multi, 0, base) <= 3))
    n = _u32(data, at, little).astype(np.int64)  # vertices (LineString) or rings (Polygon)
    ring_n = _u32(data, at + 4, little).astype(np.int64)
    size = np.where(base == 1, 8 * dims,
                    np.where(base == 2, 4 + 8 * dims * n, 8 + 8 * dims * ring_n))
    vertices = np.where(base == 1, 1, np.where(base == 2, n, ring_n))
    ok &= (base != 3) | (n == 1)
    ok &= at + size == ends
    ok &= vertices <= MAX_VERTICES
    return ok


def _walk_vector(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> list[str | None]:
    """`_walk_one` of many values in lock-step: each round reads one header or ring of every value still open."""
    m = len(starts)
    reasons: list[str | None] = [None] * m
    depth_cap = MAX_NESTING + 1
    left = np.zeros((m, depth_cap), np.int64)  # children left per level
    kind = np.zeros((m, depth_cap), np.int8)
    little = np.zeros((m, depth_cap), bool)
    dims = np.zeros((m, depth_cap), np.int64)
    left[:, 0], kind[:, 0] = 1, _ANY
    depth = np.ones(m, np.int64)
    pos = starts.astype(np.int64).copy()
    end = ends.astype(np.int64)
    parts = np.zeros(m, np.int64)
    vertices = np.zeros(m, np.int64)
    active = np.arange(m)

    def fail(rows: np.ndarray, reason: str) -> None:
        for r in rows.tolist():
            reasons[r] = reason
        depth[rows] = -1

    while len(active):
        if len(active) < _SCALAR_BELOW:  # a few long values: numpy's per-call cost would dominate
            # restart them from their beginning with the scalar walk (exactly the same rules)
            for r, reason in zip(active.tolist(), _walk_scalar(data, starts[active], ends[active]), strict=True):
                reasons[r] = reason
            break
        top = depth[active] - 1
        done_level = left[active, top] == 0
        if done_level.any():
            popped = active[done_level]
            depth[popped] -= 1
            finished = popped[depth[popped] == 0]
            fail(finished[pos[finished] != end[finished]], _CORRUPT)
            depth[finished] = -1
        rows = active[~done_level]
        top = depth[rows] - 1
        left[rows, top] -= 1
        k = kind[rows, top]
        ring = k == _RING
        if ring.any():
            r = rows[ring]
            t = top[ring]
            short = pos[r] + 4 > end[r]
            fail(r[short], _CORRUPT)
            r, t = r[~short], t[~short]
            n = _u32(data, pos[r], little[r, t]).astype(np.int64)
            nxt = pos[r] + 4 + n * 8 * dims[r, t]
            bad = nxt > end[r]
            fail(r[bad], _CORRUPT)
            ok = ~bad
            r, n, nxt = r[ok], n[ok], nxt[ok]
            pos[r] = nxt
            vertices[r] += n
            fail(r[vertices[r] > MAX_VERTICES], _reason_vertices())
        g = rows[~ring]
        if len(g):
            gk = k[~ring]
            gt = top[~ring]
            short = pos[g] + 5 > end[g]
            fail(g[short], _CORRUPT)
            g, gk, gt = g[~short], gk[~short], gt[~short]
            order = data[pos[g]]
            bad = order > 1
            fail(g[bad], _CORRUPT)
            g, gk, gt, order = g[~bad], gk[~bad], gt[~bad], order[~bad] == 1
            code = _u32(data, pos[g] + 1, order)
            flags = code & 0xE0000000
            ext = flags != 0
            base = np.where(ext, code & 0x1FFFFFFF, code % 1000).astype(np.int64)
            iso_dims = np.where(ext, 0, code // 1000).astype(np.int64)
            known = (base >= 1) & (base <= 7) & (iso_dims <= 3)
            d = np.where(ext, 2 + ((code & 0x80000000) != 0) + ((code & 0x40000000) != 0),
                         np.array([2, 3, 3, 4])[np.minimum(iso_dims, 3)]).astype(np.int64)
            head = np.where(ext & ((code & 0x20000000) != 0), 9, 5)
            bad = ~known | ((gk != _ANY) & (base != gk))
            fail(g[bad], _CORRUPT)
            keep = ~bad
            g, base, d, head, order, gt = g[keep], base[keep], d[keep], head[keep], order[keep], gt[keep]
            pos[g] += head
            pt = base == 1
            p = g[pt]
            pos[p] += 8 * d[pt]
            vertices[p] += 1
            fail(p[pos[p] > end[p]], _CORRUPT)
            rest = ~pt
            g, base, d, order, gt = g[rest], base[rest], d[rest], order[rest], gt[rest]
            short = pos[g] + 4 > end[g]
            fail(g[short], _CORRUPT)
            g, base, d, order, gt = g[~short], base[~short], d[~short], order[~short], gt[~short]
            n = _u32(data, pos[g], order).astype(np.int64)
            pos[g] += 4
            line = base == 2
            ln = g[line]
            pos[ln] += n[line] * 8 * d[line]
            vertices[ln] += n[line]
            fail(ln[pos[ln] > end[ln]], _CORRUPT)
            fail(ln[vertices[ln] > MAX_VERTICES], _reason_vertices())
            coll = ~line
            g, base, d, order, n = g[coll], base[coll], d[coll], order[coll], n[coll]
            lying = n * np.where(base == 3, 4, 9) > end[g] - pos[g]
            fail(g[lying], _CORRUPT)
            g, base, d, order, n = g[~lying], base[~lying], d[~lying], order[~lying], n[~lying]
            parts[g] += n
            too_many = parts[g] > MAX_PARTS
            fail(g[too_many], _reason_parts())
            g, base, d, order, n = g[~too_many], base[~too_many], d[~too_many], order[~too_many], n[~too_many]
            deep = (base != 3) & (depth[g] >= MAX_NESTING)
            fail(g[deep], _reason_depth())
            g, base, d, order, n = g[~deep], base[~deep], d[~deep], order[~deep], n[~deep]
            lvl = depth[g]
            left[g, lvl] = n
            kind[g, lvl] = np.where(base == 3, _RING, np.where(base < 7, base - 3, _ANY))
            little[g, lvl] = order
            dims[g, lvl] = d
            depth[g] += 1
        active = active[depth[active] > 0]
    return reasons


def check_wkb(values: pa.Array | pa.ChunkedArray, rows: np.ndarray | None = None) -> dict[int, str]:
    """Rows whose WKB is corrupt or beyond the limits, with the reason; run it before any parser sees the values.

    Args:
        values: (n,) binary WKB; nulls are left alone (a reader reports them as "no geometry").
        rows: (m,) int64 positions to check (default all).

    Returns:
        Reason by row position, for the rows that must not be parsed: corrupt (a count that runs past the value,
        an unknown type or byte order, a Multi* part of another type, trailing bytes), nested deeper than
        `MAX_NESTING`, more than `MAX_PARTS` parts and rings, or more than `MAX_VERTICES` vertices.
    """
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    out: dict[int, str] = {}
    at = 0
    for chunk in chunks:
        n = len(chunk)
        if n:
            if not (pa.types.is_binary(chunk.type) or pa.types.is_large_binary(chunk.type)):
                raise InputError(f"geometry values are {chunk.type}, not WKB binary")
            wide = pa.types.is_large_binary(chunk.type)
            _, off_buf, data_buf = chunk.buffers()
            offsets = np.frombuffer(off_buf, np.int64 if wide else np.int32, n + 1, chunk.offset * (8 if wide else 4))
            data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
            mine = np.arange(n) if rows is None else rows[(rows >= at) & (rows < at + n)] - at
            if chunk.null_count:
                mine = mine[chunk.is_valid().to_numpy(zero_copy_only=False)[mine]]
            starts, ends = offsets[mine].astype(np.int64), offsets[mine + 1].astype(np.int64)
            rest = ~_flat(data, starts, ends)
            mine, starts, ends = mine[rest], starts[rest], ends[rest]
            for r, reason in zip(mine.tolist(), _walk_vector(data, starts, ends), strict=True):
                if reason is not None:
                    out[at + r] = reason
        at += n
    return out


def check_wkt(texts: Iterable[Any] | np.ndarray) -> dict[int, str]:
    """Rows of WKT text that must not reach a WKT parser: longer than `MAX_WKT_BYTES`, or with parentheses
    nested deeper than `MAX_NESTING` + 1 (a polygon's rings are one level).

    Args:
        texts: (n,) str or None.

    Returns:
        Reason by row.
    """
    arr = pa.array(np.asarray(texts, dtype=object) if not isinstance(texts, pa.Array) else texts, pa.large_string())
    n = len(arr)
    out: dict[int, str] = {}
    if n == 0:
        return out
    _, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, np.int64, n + 1, arr.offset * 8)
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    for r in np.flatnonzero(lengths > MAX_WKT_BYTES).tolist():
        out[r] = f"WKT longer than {MAX_WKT_BYTES >> 20} MB"
    step = np.zeros(len(data) + 1, np.int64)
    step[1:] = (data == 0x28).astype(np.int64) - (data == 0x29)  # '(' and ')'
    level = np.cumsum(step)[: offsets[-1] + 1]
    base = level[offsets[:-1]]
    nonempty = np.flatnonzero(lengths > 0)
    if len(nonempty):
        deepest = np.maximum.reduceat(level[1:], offsets[:-1][nonempty]) if len(data) else np.zeros(0, np.int64)
        too_deep = nonempty[(deepest - base[nonempty]) > MAX_NESTING + 1]
        for r in too_deep.tolist():
            out.setdefault(r, _reason_depth())
    return out


def load_json(path: str | os.PathLike[str], *, what: str = "JSON", max_bytes: int = MAX_JSON_BYTES) -> Any:
    """A whole JSON document of at most `max_bytes`; nesting beyond the interpreter's recursion limit is an error.

    Raises:
        InputError: too large, too deep, not UTF-8, or not JSON (the message names the file and the place).
    """
    p = Path(path)
    size = p.stat().st_size
    if size > max_bytes:
        raise InputError(f"{p}: {size:,} bytes is more than the {max_bytes:,} a {what} document may have; "
                         f"split it into smaller files")
    raw = p.read_bytes()
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start}); {what} is UTF-8: convert the "
                         f"file (e.g. iconv -f gbk -t utf-8)") from exc
    except ValueError as exc:  # JSONDecodeError, and numbers too long to convert
        raise InputError(f"{p}: not valid {what} ({exc})") from exc
    except RecursionError as exc:  # CPython's scanner counts its depth and stops at the recursion limit
        raise InputError(f"{p}: JSON nested deeper than Python's recursion limit; is it really {what}?") from exc


def check_finite(name: str, value: float | None, *, low: float = -math.inf, high: float = math.inf) -> float | None:
    """`value` when it is None or a finite number in [low, high].

    Raises:
        InputError: NaN, infinite, or out of range.
    """
    if value is None:
        return None
    v = float(value)
    if not math.isfinite(v):
        raise InputError(f"{name} {value!r} is not a finite number")
    if not low <= v <= high:
        raise InputError(f"{name} {value!r} is outside {low:g}..{high:g}")
    return v


def check_encoding(name: str | None, *, what: str = "--encoding") -> str | None:
    """The canonical codec name of an encoding option (None stays None), before any file is read.

    Raises:
        InputError: Python knows no such codec, or it is not a text encoding.
    """
    if name is None:
        return None
    try:
        info = codecs.lookup(name.strip())
    except (LookupError, ValueError, TypeError) as exc:
        raise InputError(f"{what} {name!r} is not a text encoding Python knows; use e.g. utf-8, gbk, gb18030, "
                         f"big5, latin-1") from exc
    if not getattr(info, "_is_text_encoding", True):
        raise InputError(f"{what} {name!r} is not a text encoding; use e.g. utf-8, gbk, gb18030")
    return info.name


def check_raster_size(path: str | os.PathLike[str], width: int, height: int, bands: int = 1,
                      itemsize: int = 8, *, available: int | None = None) -> None:
    """Refuse a raster whose full read would need more memory than the machine has available.

    Args:
        path: the file (for the message).
        width, height, bands: its size.
        itemsize: bytes per sample once read (8 for float64).
        available: bytes available (default: what the operating system reports).

    Raises:
        InputError: the read would not fit.
    """
    need = int(width) * int(height) * int(bands) * int(itemsize)
    if available is None:
        import psutil

        available = int(psutil.virtual_memory().available)
    if width <= 0 or height <= 0 or need > available // 2:
        raise InputError(f"{path}: {width} x {height} x {bands} samples need {need / 2**30:.1f} GiB to read, "
                         f"more than half the {available / 2**30:.1f} GiB available; cut it into tiles or lower "
                         f"its resolution (gdal_translate -outsize / gdalwarp -tr)")


__all__ = ["MAX_JSON_BYTES", "MAX_NESTING", "MAX_PARTS", "MAX_VERTICES", "MAX_WKT_BYTES",
           "check_encoding", "check_finite", "check_raster_size", "check_wkb", "check_wkt", "load_json"]
