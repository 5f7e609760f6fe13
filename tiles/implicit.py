"""3D Tiles 1.1 implicit tiling: a quadtree described by binary subtree files instead of a tileset.json listing
every tile.

An explicit tileset of a million buildings lists every tile in `tileset.json` (a megabyte a client parses before it
draws anything). Implicit tiling puts only the root in `tileset.json`; per subtree of `subtree_levels` levels a
`.subtree` file holds bitstreams of tile, content and child-subtree availability in Morton order (a constant where
every bit is equal) and, optionally, property tables of tile and content metadata.

Every descendant's bounding volume is the root `region` halved in longitude and latitude (heights unchanged) and
its geometric error the root's halved per level, unless tile metadata overrides them (`TILE_BOUNDING_REGION`):
our building trees assign each building to a cell that contains it whole, so the implied volumes hold; terrain
tiles are cells of the DEM's projected grid, which are not longitude/latitude cells, so they carry their own
regions. Content regions (`CONTENT_BOUNDING_REGION`) give clients tight culling. Tiles cannot carry a `transform`
in an implicit tree: each glb places itself by its node matrix (`tiles.gltf.MeshContent.placement`).

Spec: 3D Tiles 1.1, "Implicit Tiling" (subdivision rules, availability, subtree binary format, Appendix A) and the
3D Metadata Semantic Reference.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tiles.errors import TilesError
from tiles.tileset import BoundingVolume, Content, ImplicitTiling, Subtrees, Tile, write_atomic

SUBTREE_MAGIC = 0x74627573  # "subt" read as a little-endian uint32
SUBTREE_URI = "subtrees/{level}/{x}/{y}.subtree"
TILE_CLASS = "tile"
CONTENT_CLASS = "content"
_REGION = {"type": "SCALAR", "componentType": "FLOAT64", "array": True, "count": 6}


def metadata_schema(tile_regions: bool, content_regions: bool) -> dict[str, Any] | None:
    """The tileset.json `schema` an implicit tileset of ours declares (None when it stores no metadata)."""
    classes: dict[str, Any] = {}
    if tile_regions:
        classes[TILE_CLASS] = {"properties": {"boundingRegion": {"semantic": "TILE_BOUNDING_REGION", **_REGION}}}
    if content_regions:
        classes[CONTENT_CLASS] = {"properties": {
            "boundingRegion": {"semantic": "CONTENT_BOUNDING_REGION", **_REGION}}}
    return {"id": "cim_implicit", "classes": classes} if classes else None


@dataclass
class ImplicitTile:
    """An available tile of a quadtree.

    Attributes:
        level, x, y: tile coordinates (x from west to east, y from south to north; the root is (0, 0, 0)).
        content_region: the content's region ([w, s, e, n, hmin, hmax], radians and metres); None: no content.
        region: the tile's own region (`TILE_BOUNDING_REGION`); None: the implied one (all tiles or none).
    """

    level: int
    x: int
    y: int
    content_region: list[float] | None = None
    region: list[float] | None = None


def morton(x: int, y: int) -> int:
    """The Morton (Z-order) index of (x, y): the bits of x at even positions, those of y at odd ones."""
    out = 0
    bit = 0
    while x or y:
        out |= (x & 1) << (2 * bit) | (y & 1) << (2 * bit + 1)
        x >>= 1
        y >>= 1
        bit += 1
    return out


def implied_region(root: list[float], level: int, x: int, y: int) -> list[float]:
    """The region of tile (level, x, y) implied by the subdivision of the root region (spec: computed directly
    for the level, not by halving repeatedly)."""
    w, s, e, n, h0, h1 = root
    cells = 1 << level
    dx, dy = (e - w) / cells, (n - s) / cells
    return [w + dx * x, s + dy * y, w + dx * (x + 1), s + dy * (y + 1), h0, h1]


def write_quadtree(folder: str | os.PathLike[str], tiles: Iterable[ImplicitTile], *, root_region: list[float],
                   geometric_error: float, content_uri: str | None, refine: str, subtree_levels: int = 6,
                   subtree_uri: str = SUBTREE_URI) -> tuple[Tile, dict[str, Any] | None]:
    """Write the subtree files of a quadtree under `folder`; return its implicit root tile and metadata schema.

    Args:
        folder: the folder of the tileset.json the root goes into (template URIs are relative to it).
        tiles: every available tile; each tile's parent must be available and the root (0, 0, 0) must be.
        root_region: the root's bounding region; descendants' regions are its subdivision.
        geometric_error: the root's geometric error; a tile at level l has `geometric_error / 2**l`.
        content_uri: the content template URI ("{level}/{x}/{y}.glb"), or None when no tile has content.
        refine: "ADD" or "REPLACE" (the same for every tile).
        subtree_levels: levels per subtree file.
        subtree_uri: the subtree template URI.

    Returns:
        (the root tile with `implicit_tiling`, the `schema` its tileset.json must declare or None).

    Raises:
        TilesError: the tiles do not form a quadtree, or some but not all carry their own region.
    """
    out = Path(folder)
    by_key = {(t.level, t.x, t.y): t for t in tiles}
    if (0, 0, 0) not in by_key:
        raise TilesError("an implicit quadtree needs its root tile (0, 0, 0)")
    for lv, x, y in by_key:
        if not (0 <= x < (1 << lv) and 0 <= y < (1 << lv)):
            raise TilesError(f"tile ({lv}, {x}, {y}) is outside its level")
        if lv and (lv - 1, x >> 1, y >> 1) not in by_key:
            raise TilesError(f"tile ({lv}, {x}, {y}) is available but its parent is not")
    if subtree_levels < 1:
        raise TilesError(f"subtree_levels={subtree_levels} must be at least 1")
    own = {t.region is not None for t in by_key.values()}
    if len(own) > 1:
        raise TilesError("either every tile of an implicit quadtree carries its own region or none does")
    tile_regions = own == {True}
    content_regions = any(t.content_region is not None for t in by_key.values())
    if content_uri is None and content_regions:
        raise TilesError("tiles have content but no content template URI was given")
    available_levels = max(lv for lv, _, _ in by_key) + 1
    levels = min(subtree_levels, available_levels)
    for key in sorted(k for k in by_key if k[0] % levels == 0):
        data = _subtree(key, by_key, levels, tile_regions)
        write_atomic(out / subtree_uri.format(level=key[0], x=key[1], y=key[2]), data)
    implicit = ImplicitTiling(subdivision_scheme="QUADTREE", subtree_levels=levels,
                              available_levels=available_levels, subtrees=Subtrees(uri=subtree_uri))
    region = by_key[(0, 0, 0)].region if tile_regions else root_region
    tile = Tile(bounding_volume=BoundingVolume(region=list(region)), geometric_error=geometric_error,
                refine=refine, content=Content(uri=content_uri) if content_uri else None, implicit_tiling=implicit)
    return tile, metadata_schema(tile_regions, content_regions)


def _subtree(key: tuple[int, int, int], by_key: dict[tuple[int, int, int], ImplicitTile], levels: int,
             tile_regions: bool) -> bytes:
    """One subtree file (the binary format: header, JSON chunk, binary chunk) rooted at `key`."""
    l0, x0, y0 = key
    n_tiles = (4**levels - 1) // 3
    at_bit: dict[int, ImplicitTile] = {}
    child_bits: list[int] = []
    for (lv, x, y), t in by_key.items():
        d = lv - l0
        if d < 0 or d > levels or (x >> d, y >> d) != (x0, y0):
            continue
        m = morton(x - (x0 << d), y - (y0 << d))
        if d < levels:
            at_bit[(4**d - 1) // 3 + m] = t
        else:
            child_bits.append(m)
    order = sorted(at_bit)
    with_content = [b for b in order if at_bit[b].content_region is not None]
    views: list[bytes] = []

    def view(data: bytes) -> int:
        views.append(data)
        return len(views) - 1

    def availability(bits: list[int], n: int) -> dict[str, int]:
        if len(bits) == n:
            return {"constant": 1}
        if not bits:
            return {"constant": 0}
        mask = np.zeros(n, bool)
        mask[np.asarray(bits, np.int64)] = True
        return {"bitstream": view(np.packbits(mask, bitorder="little").tobytes()), "availableCount": len(bits)}

    doc: dict[str, Any] = {"tileAvailability": availability(order, n_tiles)}
    if any(t.content_region is not None for t in by_key.values()):
        doc["contentAvailability"] = [availability(with_content, n_tiles)]
    doc["childSubtreeAvailability"] = availability(sorted(child_bits), 4**levels)
    tables = []
    if tile_regions:
        regions = np.array([at_bit[b].region for b in order], "<f8")
        doc["tileMetadata"] = len(tables)
        tables.append({"class": TILE_CLASS, "count": len(order),
                       "properties": {"boundingRegion": {"values": view(regions.tobytes())}}})
    if with_content:
        cregions = np.array([at_bit[b].content_region for b in with_content], "<f8")
        doc["contentMetadata"] = [len(tables)]
        tables.append({"class": CONTENT_CLASS, "count": len(with_content),
                       "properties": {"boundingRegion": {"values": view(cregions.tobytes())}}})
    if tables:
        doc["propertyTables"] = tables
    blob = b""
    buffer_views = []
    for data in views:
        blob += b"\0" * (-len(blob) % 8)  # every buffer view starts on an 8-byte boundary
        buffer_views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(data)})
        blob += data
    blob += b"\0" * (-len(blob) % 8)
    if views:
        doc["buffers"] = [{"byteLength": len(blob)}]
        doc["bufferViews"] = buffer_views
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 8)  # the binary chunk starts on an 8-byte boundary
    return struct.pack("<IIQQ", SUBTREE_MAGIC, 1, len(js), len(blob)) + js + blob


def read_subtree(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Split a binary subtree file into its JSON and its binary chunk.

    Raises:
        TilesError: not a version-1 subtree file, its lengths do not add up, or a chunk is not 8-byte padded.
    """
    if len(data) < 24:
        raise TilesError(f"subtree file of {len(data)} bytes is shorter than its 24-byte header")
    magic, version, jlen, blen = struct.unpack_from("<IIQQ", data)
    if magic != SUBTREE_MAGIC or version != 1:
        raise TilesError(f"not a version-1 subtree file (magic {magic:#x}, version {version})")
    if 24 + jlen + blen != len(data):
        raise TilesError(f"subtree header says {24 + jlen + blen} bytes, the file has {len(data)}")
    if jlen % 8 or blen % 8:
        raise TilesError(f"subtree JSON ({jlen} bytes) or binary chunk ({blen} bytes) is not padded to 8 bytes")
    return json.loads(data[24:24 + jlen]), data[24 + jlen:]


def _availability(spec: dict[str, Any], doc: dict[str, Any], blob: bytes, n: int, what: str) -> np.ndarray:
    """(n,) bool of one availability object (a constant or a bitstream of the internal buffer)."""
    if "constant" in spec:
        return np.full(n, bool(spec["constant"]))
    bv = _view(doc, blob, spec["bitstream"], what)
    if bv[1] < (n + 7) // 8:
        raise TilesError(f"{what}: bitstream of {bv[1]} bytes, needs {(n + 7) // 8}")
    bits = np.unpackbits(np.frombuffer(blob, np.uint8, count=bv[1], offset=bv[0]), bitorder="little")[:n]
    if "availableCount" in spec and int(spec["availableCount"]) != int(bits.sum()):
        raise TilesError(f"{what}: availableCount {spec['availableCount']} but {int(bits.sum())} bits are set")
    return bits.astype(bool)


def _view(doc: dict[str, Any], blob: bytes, index: int, what: str) -> tuple[int, int]:
    views = doc.get("bufferViews") or []
    if not 0 <= index < len(views):
        raise TilesError(f"{what}: buffer view {index} does not exist")
    bv = views[index]
    offset, length = int(bv.get("byteOffset", 0)), int(bv["byteLength"])
    if bv.get("buffer", 0) != 0 or offset + length > len(blob):
        raise TilesError(f"{what}: buffer view {index} is not inside the subtree's binary chunk")
    if offset % 8:
        raise TilesError(f"{what}: buffer view {index} starts at byte {offset}, not on an 8-byte boundary")
    return offset, length


def _regions(doc: dict[str, Any], blob: bytes, table: int, count: int, what: str) -> np.ndarray:
    """(count, 6) float64 `boundingRegion` values of a subtree property table."""
    tables = doc.get("propertyTables") or []
    if not 0 <= table < len(tables):
        raise TilesError(f"{what}: property table {table} does not exist")
    t = tables[table]
    if int(t["count"]) != count:
        raise TilesError(f"{what}: property table has {t['count']} rows for {count} available entries")
    offset, length = _view(doc, blob, t["properties"]["boundingRegion"]["values"], what)
    if length != count * 48:
        raise TilesError(f"{what}: {length} bytes of regions for {count} rows of 6 FLOAT64")
    return np.frombuffer(blob, "<f8", count=count * 6, offset=offset).reshape(count, 6)


@dataclass
class _Subtree:
    tiles: np.ndarray
    contents: np.ndarray
    children: np.ndarray
    regions: np.ndarray | None
    cregions: np.ndarray | None
    tile_row: np.ndarray
    content_row: np.ndarray


def expand(tileset_dir: str | os.PathLike[str], root: dict[str, Any]) -> dict[str, Any]:
    """The explicit tile tree an implicit root tile stands for (for checks and tests).

    Every available tile becomes a tile dict with its implied (or metadata) region, halved geometric error,
    content URI and content region (from content metadata), children in Morton order, plus `implicit`: its
    (level, x, y) and `subtree`: the path of its subtree file. Every subtree file is read and checked: header,
    8-byte alignment, availability (counts, content only where a tile is, the subtree root available, nothing
    below `availableLevels`), metadata table sizes.

    Raises:
        TilesError: a subtree file is missing or malformed, or its availability contradicts itself.
    """
    base = Path(tileset_dir)
    imp = root["implicitTiling"]
    if imp.get("subdivisionScheme") != "QUADTREE":
        raise TilesError(f"subdivision scheme {imp.get('subdivisionScheme')!r}: only QUADTREE is read")
    levels = int(imp["subtreeLevels"])
    available = int(imp["availableLevels"])
    template = imp["subtrees"]["uri"]
    content_uri = (root.get("content") or {}).get("uri")
    refine = root.get("refine")
    root_region = (root.get("boundingVolume") or {}).get("region")
    if root_region is None:
        raise TilesError("implicit root tile: only a `region` bounding volume is subdivided here")
    n_tiles = (4**levels - 1) // 3

    def load(lv: int, x: int, y: int) -> tuple[_Subtree, str]:
        path = base / template.format(level=lv, x=x, y=y)
        what = f"subtree {template.format(level=lv, x=x, y=y)}"
        if not path.is_file():
            raise TilesError(f"{what} of tile ({lv}, {x}, {y}) is available but its file is missing")
        doc, blob = read_subtree(path.read_bytes())
        tiles = _availability(doc["tileAvailability"], doc, blob, n_tiles, f"{what} tileAvailability")
        contents = np.zeros(n_tiles, bool)
        for k, spec in enumerate(doc.get("contentAvailability") or []):
            contents |= _availability(spec, doc, blob, n_tiles, f"{what} contentAvailability[{k}]")
        children = _availability(doc["childSubtreeAvailability"], doc, blob, 4**levels,
                                 f"{what} childSubtreeAvailability")
        if not tiles[0]:
            raise TilesError(f"{what}: its root tile is not available")
        if (contents & ~tiles).any():
            raise TilesError(f"{what}: content is available where the tile is not")
        if content_uri is None and contents.any():
            raise TilesError(f"{what}: content is available but the implicit root has no content URI")
        regions = cregions = None
        if "tileMetadata" in doc:
            regions = _regions(doc, blob, int(doc["tileMetadata"]), int(tiles.sum()), f"{what} tileMetadata")
        if doc.get("contentMetadata"):
            cregions = _regions(doc, blob, int(doc["contentMetadata"][0]), int(contents.sum()),
                                f"{what} contentMetadata")
        return _Subtree(tiles, contents, children, regions, cregions, np.cumsum(tiles) - 1,
                        np.cumsum(contents) - 1), what

    def tile(sub: _Subtree, what: str, key: tuple[int, int, int], d: int, lx: int, ly: int) -> dict[str, Any]:
        l0, x0, y0 = key
        lv, x, y = l0 + d, (x0 << d) + lx, (y0 << d) + ly
        if lv >= available:
            raise TilesError(f"tile ({lv}, {x}, {y}) is available below availableLevels {available}")
        bit = (4**d - 1) // 3 + morton(lx, ly)
        region = (implied_region(root_region, lv, x, y) if sub.regions is None
                  else [float(v) for v in sub.regions[sub.tile_row[bit]]])
        out: dict[str, Any] = {"implicit": [lv, x, y], "subtree": what, "refine": refine,
                               "geometricError": float(root["geometricError"]) / 2**lv,
                               "boundingVolume": {"region": region}}
        if sub.contents[bit]:
            out["content"] = {"uri": content_uri.format(level=lv, x=x, y=y)}
            if sub.cregions is not None:
                out["content"]["boundingVolume"] = {
                    "region": [float(v) for v in sub.cregions[sub.content_row[bit]]]}
        kids = []
        for k in range(4):
            cx, cy = 2 * lx + (k & 1), 2 * ly + (k >> 1)
            if d + 1 < levels:
                if sub.tiles[(4**(d + 1) - 1) // 3 + morton(cx, cy)]:
                    kids.append(tile(sub, what, key, d + 1, cx, cy))
            elif sub.children[morton(cx, cy)]:
                ckey = (lv + 1, 2 * x + (k & 1), 2 * y + (k >> 1))
                child, child_what = load(*ckey)
                kids.append(tile(child, child_what, ckey, 0, 0, 0))
        if kids:
            out["children"] = kids
        return out

    first, what = load(0, 0, 0)
    return tile(first, what, (0, 0, 0), 0, 0, 0)


__all__ = ["SUBTREE_URI", "ImplicitTile", "expand", "implied_region", "metadata_schema", "morton", "read_subtree",
           "write_quadtree"]
