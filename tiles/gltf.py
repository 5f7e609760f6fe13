"""glTF 2.0 binary (glb) content for 3D Tiles 1.1, with per-feature metadata.

A `MeshContent` holds one or more `Primitive`s in a local east-north-up frame (z up, metres, float32 relative to the
tile's transform, or to `placement`, a parent node's matrix, for tiles of implicit trees) and, optionally, a
`PropertyTable` of feature attributes. `to_glb()` writes glTF's y-up axes, a `_FEATURE_ID_0` vertex attribute (exact
unsigned integers) described by EXT_mesh_features and the table as EXT_structural_metadata (8-byte aligned;
meshopt-compressed where that pays, equal columns stored once), so a client (CesiumJS, deck.gl) can pick a feature
and read its attributes. `to_glb(GlbOptions)` compresses the geometry (`tiles.compression`: meshopt + quantization
by default, Draco, or none) and encodes textures (`tiles.textures`); equal textures and materials are written once.
`read_glb` decodes any of them. The JSON and binary chunks are written here directly (no glTF object model in
between).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from tiles.compression import (
    ARRAY_BUFFER, BYTE, ELEMENT_ARRAY_BUFFER, FLOAT, SHORT, UNSIGNED_BYTE, UNSIGNED_INT, UNSIGNED_SHORT, GlbOptions,
    Grid, draco_decode, draco_encode, meshopt_decode, meshopt_encode_attribute, meshopt_encode_triangles, pad_rows,
    quantize_normals, quantize_uv, split_parts, vertex_cache_order,
)
from tiles.errors import TilesError

MimeType = Literal["image/jpeg", "image/png", "image/webp"]

# EXT_structural_metadata has no null: missing values take these sentinels, declared as the property's `noData`.
NODATA_INT = -2147483648
NODATA_FLOAT = -3.4028234663852886e38
NODATA_STRING = ""
# bytes an EXT_meshopt_compression object adds to a buffer view's JSON (about 120): below that saving, stay plain
_MESHOPT_VIEW_JSON = 128


def take_binary(data: Any, offsets: Any, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values `index` of a variable-length binary column held as bytes + offsets (Arrow's large-binary layout).

    Args:
        data: (b,) uint8 bytes (any buffer: an array, a memory map).
        offsets: (n + 1,) int64 start of each value in `data`.
        index: (m,) int64 the values wanted, in any order.

    Returns:
        ((b',) uint8 their bytes, (m + 1,) int64 their offsets from 0).
    """
    import pyarrow as pa

    offsets = np.ascontiguousarray(offsets, np.int64)
    arr = pa.Array.from_buffers(pa.large_binary(), len(offsets) - 1,
                                [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data, np.uint8))])
    out = arr.take(pa.array(np.asarray(index, np.int64)))
    _, offs, buf = out.buffers()
    new = np.frombuffer(offs, np.int64)[out.offset:out.offset + len(out) + 1]
    got = np.frombuffer(buf, np.uint8)[new[0]:new[-1]] if buf is not None else np.zeros(0, np.uint8)
    return got.copy(), new - new[0]


@dataclass(frozen=True)
class StringColumn:
    """Strings as one UTF-8 buffer plus offsets (the layout EXT_structural_metadata and Arrow share).

    Cheap to slice with `take` (no Python object per value) and to share with forked worker processes.

    Attributes:
        data: (b,) uint8 concatenated UTF-8 bytes.
        offsets: (n + 1,) int64 start of each string in `data`; string i is data[offsets[i]:offsets[i + 1]].
        missing: (n,) bool, True where the value is null (stored as an empty string and declared noData).
    """

    data: np.ndarray
    offsets: np.ndarray
    missing: np.ndarray

    @classmethod
    def from_values(cls, values: Any) -> StringColumn:
        """From any sequence of str/None (or a pandas/Arrow string column), converted in bulk by Arrow."""
        import pyarrow as pa

        if isinstance(values, (pa.Array, pa.ChunkedArray)):
            arr = values
        elif hasattr(values, "__arrow_array__"):  # Arrow-backed pandas arrays: no Python object per value
            arr = pa.array(values)
        else:
            arr = pa.array(pd.Series(values, dtype=object).where(pd.notna(values), None), type=pa.large_string(),
                           from_pandas=True)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        arr = arr.cast(pa.large_string())
        missing = arr.is_null().to_numpy(zero_copy_only=False)
        arr = arr.fill_null("")
        _, offs, data = arr.buffers()
        offsets = np.frombuffer(offs, np.int64)[arr.offset:arr.offset + len(arr) + 1].copy()
        buf = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
        buf = buf[offsets[0]:offsets[-1]].copy()
        return cls(buf, offsets - offsets[0], np.asarray(missing, bool))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def take(self, index: np.ndarray) -> StringColumn:
        """The strings at `index` (Arrow's take over the bytes: no Python object, no index per byte)."""
        index = np.asarray(index, np.int64)
        data, offsets = take_binary(self.data, self.offsets, index)
        return StringColumn(data, offsets, np.asarray(self.missing)[index])

    def to_list(self) -> list[str | None]:
        raw = self.data.tobytes()
        o = self.offsets
        return [None if m else raw[o[i]:o[i + 1]].decode("utf-8") for i, m in enumerate(self.missing)]


@dataclass
class Material:
    """A PBR metallic-roughness material: a base colour, optionally multiplied by a texture."""

    base_color: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    texture: bytes | None = None
    mime_type: MimeType = "image/jpeg"
    metallic: float = 0.0
    roughness: float = 1.0
    double_sided: bool = False
    unlit: bool = False


@dataclass
class FeatureIdSet:
    """A further feature ID set of a primitive (EXT_mesh_features), after the first (`Primitive.feature_ids`).

    Attributes:
        ids: (n,) int per-vertex feature IDs (constant over each triangle for a per-triangle property).
        table: index of the property table the IDs address: 0 is `MeshContent.properties`, 1.. the
            `MeshContent.extra_tables`; None for IDs without a table.
        label: the set's label (e.g. "surface").
        null_id: the ID that means "no feature" (EXT_mesh_features `nullFeatureId`), or None.
    """

    ids: np.ndarray
    table: int | None = None
    label: str | None = None
    null_id: int | None = None


@dataclass
class Primitive:
    """One triangle mesh with one material.

    Attributes:
        positions: (n, 3) float local east/north/up metres (z up).
        indices: (m, 3) int triangle corners, counter-clockwise seen from outside.
        normals: (n, 3) float unit normals (z up) or None.
        texcoords: (n, 2) float UVs, origin at the image's top-left, or None.
        feature_ids: (n,) int feature index of each vertex into the property table, or None.
        material: the material.
        extra_feature_ids: further feature ID sets (`_FEATURE_ID_1`, ...), e.g. a per-triangle surface type.
    """

    positions: np.ndarray
    indices: np.ndarray
    normals: np.ndarray | None = None
    texcoords: np.ndarray | None = None
    feature_ids: np.ndarray | None = None
    material: Material = field(default_factory=Material)
    extra_feature_ids: list[FeatureIdSet] = field(default_factory=list)


@dataclass
class PropertyTable:
    """Feature attributes for EXT_structural_metadata: one row per feature ID.

    Attributes:
        class_name: the metadata class (e.g. "building").
        columns: column name -> values; numbers, booleans, strings (None/NaN allowed: stored as noData).
        descriptions: optional column descriptions for the schema.
    """

    class_name: str
    columns: dict[str, Any]
    descriptions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, class_name: str) -> PropertyTable:
        """A table from a DataFrame's non-geometry columns."""
        cols = {c: frame[c].to_numpy() for c in frame.columns if c != "geometry"}
        return cls(class_name=class_name, columns=cols)

    @property
    def count(self) -> int:
        lengths = {len(v) for v in self.columns.values()}
        if len(lengths) > 1:
            raise TilesError(f"property table {self.class_name!r}: columns have different lengths {sorted(lengths)}")
        return lengths.pop() if lengths else 0


@dataclass
class MeshContent:
    """The content of one tile: primitives plus an optional feature table (and further tables that
    `FeatureIdSet`s address)."""

    primitives: list[Primitive]
    properties: PropertyTable | None = None
    copyright: str | None = None
    extra_tables: list[PropertyTable] = field(default_factory=list)
    placement: np.ndarray | None = None  # (4, 4) float64 local (z-up) -> ECEF: tiles of implicit trees

    def to_glb(self, options: GlbOptions | None = None) -> bytes:
        """Encode as a glb (glTF 2.0 binary) with EXT_mesh_features / EXT_structural_metadata.

        Args:
            options: compression and texture encoding; None -> `GlbOptions()` (meshopt + quantization).
        """
        options = options or GlbOptions()
        encoder = _Encoder(self, options)
        glb = encoder.encode()
        if encoder.parts > 1:
            # cut into parts for 16-bit grids: one part on a float32 grid of the same step may take fewer bytes
            # (coarse terrain: few vertices, large triangles, so each part's JSON outweighs its geometry)
            one = _Encoder(self, options, one_grid=True, textures=encoder.texture_cache)
            wide = one.encode()
            if one.parts == 1 and len(wide) < len(glb):
                return wide
        return glb

    def vertex_count(self) -> int:
        return int(sum(len(p.positions) for p in self.primitives))

    def triangle_count(self) -> int:
        return int(sum(len(p.indices) for p in self.primitives))


_Y_UP_TO_Z_UP = np.array([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])


def node_matrix(placement: np.ndarray) -> list[float]:
    """The glTF node matrix (column-major) that puts its children's positions where `placement` says.

    3D Tiles turns glTF's y-up into z-up before tile transforms apply, so a local z-up -> ECEF matrix P becomes
    Y2Z^-1 @ P @ Y2Z on the node (float64); the children keep KHR_mesh_quantization's translation and scale. A
    tile of an implicit tree has no `transform`, so its frame lives here.
    """
    m = np.linalg.inv(_Y_UP_TO_Z_UP) @ np.asarray(placement, np.float64) @ _Y_UP_TO_Z_UP
    m[3] = (0.0, 0.0, 0.0, 1.0)
    return [float(v) for v in m.T.ravel()]


def _z_up_to_y_up(a: np.ndarray) -> np.ndarray:
    """(e, n, u) -> glTF (x, y, z) = (e, u, -n) in float64; 3D Tiles turns glTF's y-up back to z-up when it loads."""
    a = np.asarray(a, np.float64)
    return np.column_stack([a[:, 0], a[:, 2], -a[:, 1]]) if len(a) else np.zeros((0, 3))


def _y_up_to_z_up(a: np.ndarray) -> np.ndarray:
    return np.column_stack([a[:, 0], -a[:, 2], a[:, 1]]) if len(a) else np.zeros((0, 3))


_GLB_MAGIC, _JSON_CHUNK, _BIN_CHUNK = 0x46546C67, 0x4E4F534A, 0x004E4942
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}
_NUMPY = {BYTE: "<i1", UNSIGNED_BYTE: "<u1", SHORT: "<i2", UNSIGNED_SHORT: "<u2", UNSIGNED_INT: "<u4", FLOAT: "<f4"}
_NORMALIZE = {BYTE: 127.0, UNSIGNED_BYTE: 255.0, SHORT: 32767.0, UNSIGNED_SHORT: 65535.0}


@dataclass
class _Source:
    """One primitive in glTF axes, ready to encode: float64 positions, optional normals, UVs, feature IDs."""

    positions: np.ndarray
    indices: np.ndarray
    normals: np.ndarray | None
    texcoords: np.ndarray | None
    feature_ids: np.ndarray | None
    material: int
    extra: list[tuple[FeatureIdSet, np.ndarray]] = field(default_factory=list)

    def reordered(self, indices: np.ndarray, order: np.ndarray) -> _Source:
        """The same mesh with its vertices in `order` and the triangles `indices` (already renumbered)."""
        return _Source(self.positions[order], indices, None if self.normals is None else self.normals[order],
                       None if self.texcoords is None else self.texcoords[order],
                       None if self.feature_ids is None else self.feature_ids[order], self.material,
                       [(fs, ids[order]) for fs, ids in self.extra])

    def take(self, triangles: np.ndarray) -> _Source:
        """The sub-mesh of some triangles, with only the vertices they use."""
        tris = self.indices[triangles]
        used, inv = np.unique(tris.reshape(-1), return_inverse=True)

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[used]

        return _Source(self.positions[used], inv.reshape(-1, 3), pick(self.normals), pick(self.texcoords),
                       pick(self.feature_ids), self.material, [(fs, ids[used]) for fs, ids in self.extra])


def _welded(s: _Source, grid: Grid | None) -> _Source:
    """`s` with the vertices that the quantized encoding stores identically (grid position, int8 normal, 16-bit UV,
    feature IDs) merged into one, the triangles renumbered: a client decodes the same vertices as without it.
    Builders write a vertex per face corner where shading needs it; faces that share a plane (roof triangles) then
    repeat vertices whose every stored value agrees. Triangles are kept as they are."""
    n = len(s.positions)
    if grid is not None:
        pos = grid.quantize(s.positions)
    else:
        pos = s.positions.astype("<f4")
    cols = [np.ascontiguousarray(pos).view(np.uint8).reshape(n, -1)]
    if s.normals is not None:
        cols.append(quantize_normals(s.normals).view(np.uint8))
    if s.texcoords is not None:
        quv = quantize_uv(s.texcoords)
        uv = quv if quv is not None else s.texcoords.astype("<f4")
        cols.append(np.ascontiguousarray(uv).view(np.uint8).reshape(n, -1))
    for ids in ([s.feature_ids] if s.feature_ids is not None else []) + [ids for _, ids in s.extra]:
        cols.append(np.ascontiguousarray(ids.astype("<i8")).view(np.uint8).reshape(n, -1))
    rows = np.ascontiguousarray(np.concatenate(cols, axis=1))
    keys = rows.view(np.dtype((np.void, rows.shape[1]))).reshape(n)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    if len(first) == n:
        return s
    # keep the vertices in their first-use order (vertex_cache_order reorders them anyway)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return s.reordered(rank[inverse.reshape(-1)][s.indices], first[order])


class _Encoder:
    """Writes one glb: JSON dicts and one binary buffer (plus meshopt's fallback buffer, which holds no bytes)."""

    def __init__(self, content: MeshContent, options: GlbOptions, one_grid: bool = False,
                 textures: dict[tuple[bytes, str], list[tuple[bytes, str]]] | None = None) -> None:
        self.content = content
        self.options = options
        self.one_grid = one_grid  # meshopt: one part on a float32 grid instead of 16-bit parts (`Grid.wide`)
        self.parts = 0
        self.texture_cache = {} if textures is None else textures  # encoded texture variants, by source image
        self.table_views: dict[bytes, int] = {}
        self.chunks: list[bytes] = []
        self.offset = 0
        self.fallback = 0
        asset: dict[str, Any] = {"version": "2.0", "generator": "cim-engine"}
        if content.copyright:
            asset["copyright"] = content.copyright
        self.js: dict[str, Any] = {"asset": asset, "scene": 0, "scenes": [{"nodes": []}], "nodes": [], "meshes": [],
                                   "accessors": [], "bufferViews": []}
        self.used: set[str] = set()
        self.required: set[str] = set()
        self.materials: dict[tuple[Any, ...], int] = {}
        self.images: dict[tuple[bytes, str], int] = {}

    # ------------------------------------------------------------------ buffers
    def _append(self, data: bytes) -> int:
        pad = (-self.offset) % 8  # 8-byte alignment satisfies glTF accessors, meshopt and EXT_structural_metadata
        if pad:
            self.chunks.append(b"\0" * pad)
            self.offset += pad
        start = self.offset
        self.chunks.append(data)
        self.offset += len(data)
        return start

    def _view(self, data: bytes, target: int | None = None, stride: int | None = None) -> int:
        if not data:
            data = b"\0"  # glTF forbids empty buffer views
        view: dict[str, Any] = {"buffer": 0, "byteOffset": self._append(data), "byteLength": len(data)}
        if stride is not None:
            view["byteStride"] = stride
        if target is not None:
            view["target"] = target
        self.js["bufferViews"].append(view)
        return len(self.js["bufferViews"]) - 1

    def _vertex_view(self, rows: np.ndarray) -> int:
        """A vertex attribute's view from (n, k) uint8 rows (k a multiple of 4): meshopt-compressed or plain."""
        n, k = rows.shape
        if self.options.compression != "meshopt":
            return self._view(rows.tobytes(), ARRAY_BUFFER, k)
        return self._meshopt_view(meshopt_encode_attribute(rows), n * k, ARRAY_BUFFER,
                                  {"byteStride": k, "count": n, "mode": "ATTRIBUTES"}, stride=k)

    def _meshopt_view(self, encoded: bytes, length: int, target: int | None, ext: dict[str, Any],
                      stride: int | None = None) -> int:
        self.fallback += (-self.fallback) % 8
        view: dict[str, Any] = {"buffer": 1, "byteOffset": self.fallback, "byteLength": length}
        self.fallback += length
        if stride is not None:
            view["byteStride"] = stride
        if target is not None:
            view["target"] = target
        start = self._append(encoded)
        view["extensions"] = {"EXT_meshopt_compression": {"buffer": 0, "byteOffset": start,
                                                          "byteLength": len(encoded), **ext}}
        self.used.add("EXT_meshopt_compression")
        self.required.add("EXT_meshopt_compression")
        self.js["bufferViews"].append(view)
        return len(self.js["bufferViews"]) - 1

    def _table_view(self, data: bytes) -> int:
        """The buffer view of a property-table column's values or offsets.

        Equal bytes share one view (a column that repeats another, such as `id` and `code`). Under meshopt the
        bytes are compressed with the ATTRIBUTES codec when their length is a multiple of a stride it takes (16, 8
        or 4 bytes; the view must keep exactly the length its rows need) and that saves more than the extension's
        JSON; the view's offset in the fallback buffer is 8-byte aligned like every other view.
        """
        key = hashlib.blake2b(data, digest_size=16).digest()
        if key in self.table_views:
            return self.table_views[key]
        best: tuple[bytes, int] | None = None
        if self.options.compression == "meshopt":
            for stride in (16, 8, 4):
                if data and len(data) % stride == 0:
                    encoded = meshopt_encode_attribute(np.frombuffer(data, np.uint8).reshape(-1, stride))
                    if best is None or len(encoded) < len(best[0]):
                        best = (encoded, stride)
        if best is not None and len(best[0]) + _MESHOPT_VIEW_JSON < len(data):
            encoded, stride = best
            index = self._meshopt_view(encoded, len(data), None, {"byteStride": stride, "count": len(data) // stride,
                                                                  "mode": "ATTRIBUTES"})
        else:
            index = self._view(data)
        self.table_views[key] = index
        return index

    def _accessor(self, view: int | None, ctype: int, count: int, kind: str, *, normalized: bool = False,
                  bounds: np.ndarray | None = None, lo: list[float] | None = None,
                  hi: list[float] | None = None) -> int:
        acc: dict[str, Any] = {"componentType": ctype, "count": int(count), "type": kind}
        if view is not None:
            acc["bufferView"] = view
        if normalized:
            acc["normalized"] = True
        if bounds is not None:
            # per component along contiguous rows: numpy's min(axis=0) over (n, 3) rows is ~10x slower
            cols = np.ascontiguousarray(bounds.reshape(len(bounds), -1).T)
            cast = float if ctype == FLOAT else int
            lo, hi = [cast(v) for v in cols.min(axis=1)], [cast(v) for v in cols.max(axis=1)]
        if lo is not None:
            acc["min"], acc["max"] = lo, hi
        self.js["accessors"].append(acc)
        return len(self.js["accessors"]) - 1

    # ---------------------------------------------------------------- materials
    def _image(self, data: bytes, mime: str) -> int:
        key = (hashlib.blake2b(data, digest_size=16).digest(), mime)
        if key not in self.images:
            self.js.setdefault("images", []).append({"bufferView": self._view(data), "mimeType": mime})
            self.images[key] = len(self.js["images"]) - 1
        return self.images[key]

    def _texture(self, m: Material) -> int:
        from tiles.textures import texture_variants

        key = (hashlib.blake2b(m.texture, digest_size=16).digest(), m.mime_type)  # type: ignore[arg-type]
        if key not in self.texture_cache:
            self.texture_cache[key] = texture_variants(m.texture, m.mime_type, self.options)  # type: ignore[arg-type]
        variants = self.texture_cache[key]
        if not self.js.get("samplers"):
            self.js["samplers"] = [{"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071}]
        tex: dict[str, Any] = {"sampler": 0}
        ext: dict[str, Any] = {}
        for data, mime in variants:
            index = self._image(data, mime)
            if mime == "image/ktx2":
                ext["KHR_texture_basisu"] = {"source": index}
            elif mime == "image/webp":
                ext["EXT_texture_webp"] = {"source": index}
            else:
                tex["source"] = index
        for name in ext:
            self.used.add(name)
            if "source" not in tex:  # no fallback image a client could use instead
                self.required.add(name)
        if ext:
            tex["extensions"] = ext
        textures = self.js.setdefault("textures", [])
        if tex in textures:
            return textures.index(tex)
        textures.append(tex)
        return len(textures) - 1

    def _material(self, m: Material) -> int:
        digest = hashlib.blake2b(m.texture, digest_size=16).digest() if m.texture is not None else None
        key = (tuple(m.base_color), digest, m.mime_type, m.metallic, m.roughness, m.double_sided, m.unlit)
        if key in self.materials:
            return self.materials[key]
        # glTF's defaults (baseColorFactor [1, 1, 1, 1], metallicFactor 1, roughnessFactor 1) are left out
        pbr: dict[str, Any] = {"metallicFactor": m.metallic}
        if tuple(m.base_color) != (1.0, 1.0, 1.0, 1.0):
            pbr["baseColorFactor"] = [float(v) for v in m.base_color]
        if m.metallic == 1.0:
            del pbr["metallicFactor"]
        if m.roughness != 1.0:
            pbr["roughnessFactor"] = m.roughness
        if m.texture is not None:
            pbr["baseColorTexture"] = {"index": self._texture(m)}
        mat: dict[str, Any] = {"pbrMetallicRoughness": pbr}
        if m.double_sided:
            mat["doubleSided"] = True
        if m.base_color[3] < 1.0:
            mat["alphaMode"] = "BLEND"
        if m.unlit:
            mat["extensions"] = {"KHR_materials_unlit": {}}
            self.used.add("KHR_materials_unlit")
        self.js.setdefault("materials", []).append(mat)
        self.materials[key] = len(self.js["materials"]) - 1
        return self.materials[key]

    # --------------------------------------------------------------- primitives
    def _source(self, p: Primitive) -> _Source:
        n = len(p.positions)
        if n == 0 or len(p.indices) == 0:
            raise TilesError("cannot encode an empty primitive (no vertices or no triangles)")
        indices = np.asarray(p.indices, np.int64).reshape(-1, 3)
        if indices.max() >= n or indices.min() < 0:
            raise TilesError(f"primitive index {int(indices.max())} out of range for {n} vertices")
        fids = None
        if p.feature_ids is not None:
            fids = np.asarray(p.feature_ids)
            if len(fids) != n or (len(fids) and (fids.min() < 0 or np.any(fids != np.round(fids)))):
                raise TilesError("feature IDs must be one non-negative integer per vertex")
            fids = fids.astype(np.int64)
        extra = []
        for fs in p.extra_feature_ids:
            if fids is None:
                raise TilesError("a primitive with extra feature ID sets needs feature_ids (set 0) too")
            ids = np.asarray(fs.ids)
            if len(ids) != n or (len(ids) and (ids.min() < 0 or np.any(ids != np.round(ids)))):
                raise TilesError("feature IDs must be one non-negative integer per vertex")
            if fs.table is not None:
                self._table_index(fs.table)  # raises for a table the content does not have
            extra.append((fs, ids.astype(np.int64)))
        return _Source(_z_up_to_y_up(p.positions), indices,
                       None if p.normals is None else _z_up_to_y_up(p.normals),
                       None if p.texcoords is None else np.asarray(p.texcoords, np.float64), fids,
                       self._material(p.material), extra)

    def _feature_ids(self, s: _Source, attrs: dict[str, int]) -> dict[str, Any] | None:
        if s.feature_ids is None:
            return None
        fids = s.feature_ids
        if fids.max() < 0xFFFF:
            # exact unsigned integers; padded to 4 bytes (glTF aligns every vertex attribute element to 4)
            view = self._vertex_view(pad_rows(fids.astype("<u2")))
            ctype = UNSIGNED_SHORT
        else:
            # glTF forbids UNSIGNED_INT for application attributes; float32 is exact below 2^24
            if fids.max() >= 2**24:
                raise TilesError(f"feature ID {int(fids.max())} exceeds 2^24, the largest a float32 holds exactly")
            view = self._vertex_view(pad_rows(fids.astype("<f4")))
            ctype = FLOAT
        attrs["_FEATURE_ID_0"] = self._accessor(view, ctype, len(fids), "SCALAR")
        infos = self._feature_id_infos(s)
        for k, (_, ids) in enumerate(s.extra, start=1):
            if ids.max() < 0xFFFF:
                view, ctype = self._vertex_view(pad_rows(ids.astype("<u2"))), UNSIGNED_SHORT
            else:
                view, ctype = self._vertex_view(pad_rows(ids.astype("<f4"))), FLOAT
            attrs[f"_FEATURE_ID_{k}"] = self._accessor(view, ctype, len(ids), "SCALAR")
        return {"EXT_mesh_features": {"featureIds": infos}}

    def _feature_id_infos(self, s: _Source) -> list[dict[str, Any]]:
        """The EXT_mesh_features entries of a primitive's feature ID sets (attribute k = `_FEATURE_ID_k`)."""
        assert s.feature_ids is not None
        # featureCount is the number of distinct features in this primitive (EXT_mesh_features)
        info: dict[str, Any] = {"featureCount": _distinct(s.feature_ids), "attribute": 0}
        if self.content.properties is not None and self.content.properties.columns:
            info["propertyTable"] = 0
        infos = [info]
        for k, (fs, ids) in enumerate(s.extra, start=1):
            real = np.unique(ids[ids != fs.null_id]) if fs.null_id is not None else np.unique(ids)
            extra: dict[str, Any] = {"featureCount": max(1, int(len(real))), "attribute": k}
            if fs.null_id is not None:
                extra["nullFeatureId"] = int(fs.null_id)
            if fs.label:
                extra["label"] = fs.label
            if fs.table is not None:
                extra["propertyTable"] = self._table_index(fs.table)
            infos.append(extra)
        self.used.add("EXT_mesh_features")
        return infos

    def _plain_primitive(self, s: _Source, grid: Grid | None) -> dict[str, Any]:
        """A primitive with plain (or meshopt-compressed) attribute views; quantized when `grid` is given."""
        if self.options.compression == "meshopt":
            s = _welded(s, grid)
        n = len(s.positions)
        indices = s.indices
        if self.options.compression == "meshopt":
            indices, order = vertex_cache_order(indices, n)
            s = s.reordered(indices, order)
            n = len(order)
        attrs: dict[str, int] = {}
        if grid is not None and grid.wide:
            q = grid.quantize(s.positions).astype("<f4")  # integers, exact in float32
            attrs["POSITION"] = self._accessor(self._vertex_view(pad_rows(q)), FLOAT, n, "VEC3", bounds=q)
        elif grid is not None:
            q = grid.quantize(s.positions)
            attrs["POSITION"] = self._accessor(self._vertex_view(pad_rows(q.astype("<u2"))), UNSIGNED_SHORT, n,
                                               "VEC3", bounds=q)
        else:
            pos = s.positions.astype("<f4")
            attrs["POSITION"] = self._accessor(self._vertex_view(pad_rows(pos)), FLOAT, n, "VEC3", bounds=pos)
        if s.normals is not None:
            if self.options.compression == "meshopt":
                attrs["NORMAL"] = self._accessor(self._vertex_view(quantize_normals(s.normals)), BYTE, n, "VEC3",
                                                 normalized=True)
                self.used.add("KHR_mesh_quantization")
            else:
                attrs["NORMAL"] = self._accessor(self._vertex_view(pad_rows(s.normals.astype("<f4"))), FLOAT, n,
                                                 "VEC3")
        if s.texcoords is not None:
            quv = quantize_uv(s.texcoords) if self.options.compression == "meshopt" else None
            if quv is not None:
                attrs["TEXCOORD_0"] = self._accessor(self._vertex_view(pad_rows(quv.astype("<u2"))),
                                                     UNSIGNED_SHORT, n, "VEC2", normalized=True)
                self.used.add("KHR_mesh_quantization")
            else:
                attrs["TEXCOORD_0"] = self._accessor(self._vertex_view(pad_rows(s.texcoords.astype("<f4"))), FLOAT,
                                                     n, "VEC2")
        ext = self._feature_ids(s, attrs)
        flat = indices.reshape(-1)
        small = n <= 0xFFFF
        if self.options.compression == "meshopt":
            data, size = meshopt_encode_triangles(flat, n)
            view = self._meshopt_view(data, len(flat) * size, ELEMENT_ARRAY_BUFFER,
                                      {"byteStride": size, "count": len(flat), "mode": "TRIANGLES"})
        else:
            view = self._view(flat.astype("<u2" if small else "<u4").tobytes(), ELEMENT_ARRAY_BUFFER)
        prim: dict[str, Any] = {"attributes": attrs, "material": s.material,  # mode: glTF's default, triangles
                                "indices": self._accessor(view, UNSIGNED_SHORT if small else UNSIGNED_INT,
                                                          len(flat), "SCALAR")}
        if ext:
            prim["extensions"] = ext
        return prim

    def _draco_primitive(self, s: _Source) -> dict[str, Any]:
        d = draco_encode(s.positions, s.indices, s.normals, s.texcoords, s.feature_ids,
                         self.options.position_tolerance, self.options.draco_level,
                         extra_ids=[ids for _, ids in s.extra])
        attrs = {"POSITION": self._accessor(None, FLOAT, d.count, "VEC3", lo=d.position_min, hi=d.position_max)}
        if s.normals is not None:
            attrs["NORMAL"] = self._accessor(None, FLOAT, d.count, "VEC3")
        if s.texcoords is not None:
            attrs["TEXCOORD_0"] = self._accessor(None, FLOAT, d.count, "VEC2")
        ext: dict[str, Any] = {}
        if s.feature_ids is not None:
            attrs["_FEATURE_ID_0"] = self._accessor(None, UNSIGNED_SHORT, d.count, "SCALAR")
            for k in range(1, len(s.extra) + 1):
                attrs[f"_FEATURE_ID_{k}"] = self._accessor(None, UNSIGNED_SHORT, d.count, "SCALAR")
            ext["EXT_mesh_features"] = {"featureIds": self._feature_id_infos(s)}
        ext["KHR_draco_mesh_compression"] = {"bufferView": self._view(d.data),
                                             "attributes": {k: v for k, v in d.attribute_ids.items() if k in attrs}}
        self.used.add("KHR_draco_mesh_compression")
        self.required.add("KHR_draco_mesh_compression")
        indices = self._accessor(None, UNSIGNED_SHORT if d.count <= 0xFFFF else UNSIGNED_INT, d.index_count,
                                 "SCALAR")
        return {"attributes": attrs, "indices": indices, "material": s.material, "extensions": ext}

    def _meshes(self, sources: list[_Source]) -> None:
        opts = self.options
        if opts.compression != "meshopt":
            build = self._draco_primitive if opts.compression == "draco" else (lambda s: self._plain_primitive(s, None))
            self.js["meshes"].append({"primitives": [build(s) for s in sources]})
            self.js["nodes"].append({"mesh": 0})
            self.js["scenes"][0]["nodes"].append(0)
            self._place()
            return
        if self.one_grid:
            parts = [[np.arange(len(s.indices)) for s in sources]]
        else:
            parts = split_parts([s.positions for s in sources], [s.indices for s in sources], opts.position_tolerance)
        self.parts = len(parts)
        for part in parts:
            pieces = [(i, s if len(part) == 1 and len(tris) == len(s.indices) else s.take(tris))
                      for i, (s, tris) in enumerate(zip(sources, part)) if len(tris)]
            grid = Grid.fit(np.concatenate([p.positions for _, p in pieces]), opts.position_tolerance,
                            wide=self.one_grid)
            if self.one_grid and grid is None:
                self.parts = 0  # wider than a float32 grid holds: not an alternative (`MeshContent.to_glb`)
            prims = []
            for i, piece in pieces:
                prim = self._plain_primitive(piece, grid)
                if len(parts) > 1:
                    prim["extras"] = {"source": i}  # read_glb joins the parts of one source primitive
                prims.append(prim)
            node: dict[str, Any] = {"mesh": len(self.js["meshes"])}
            if grid is not None:
                node["translation"] = [float(v) for v in grid.origin]
                node["scale"] = [grid.step] * 3
                self.used.add("KHR_mesh_quantization")
            self.js["meshes"].append({"primitives": prims})
            self.js["nodes"].append(node)
            self.js["scenes"][0]["nodes"].append(len(self.js["nodes"]) - 1)
        if "KHR_mesh_quantization" in self.used:
            self.required.add("KHR_mesh_quantization")
        self._place()

    def _place(self) -> None:
        """With a placement: one parent node carries the tile's frame (its matrix), the mesh nodes (each with its
        quantization grid's translation and scale) become its children. Clients that take a large first-node
        matrix into their own model matrix for precision (loaders.gl) then place every part."""
        if self.content.placement is None:
            return
        scene = self.js["scenes"][0]
        self.js["nodes"].append({"matrix": node_matrix(self.content.placement), "children": scene["nodes"]})
        scene["nodes"] = [len(self.js["nodes"]) - 1]

    def _tables(self) -> list[PropertyTable]:
        c = self.content
        first = [c.properties] if c.properties is not None and c.properties.columns else []
        return first + [t for t in c.extra_tables if t.columns]

    def _table_index(self, table: int) -> int:
        """Index in the written propertyTables of table `table` (0 = properties, 1.. = extra_tables)."""
        c = self.content
        has_first = c.properties is not None and bool(c.properties.columns)
        if table == 0:
            return 0
        if not 0 < table <= len(c.extra_tables):
            raise TilesError(f"feature ID set addresses property table {table}, but the content has "
                             f"{len(c.extra_tables)} extra table(s)")
        return table - (0 if has_first else 1)

    def _metadata(self, tables: list[PropertyTable]) -> dict[str, Any]:
        classes: dict[str, Any] = {}
        enums: dict[str, Any] = {}
        out_tables: list[dict[str, Any]] = []
        for table in tables:
            class_props: dict[str, Any] = {}
            table_props: dict[str, Any] = {}
            for pid, (name, raw) in zip(property_ids(list(table.columns)), table.columns.items(), strict=True):
                schema_prop, views = _encode_column(raw)
                if schema_prop["type"] == "ENUM":
                    enum_id, k = f"{table.class_name}_{pid}", 2  # one namespace for the schema's enums
                    while enum_id in enums:
                        enum_id, k = f"{table.class_name}_{pid}_{k}", k + 1
                    enums[enum_id] = schema_prop.pop("enum")
                    schema_prop["enumType"] = enum_id
                if pid != name:
                    schema_prop["name"] = name  # the ID must be an identifier; the name keeps the column's own
                if name in table.descriptions:
                    schema_prop["description"] = table.descriptions[name]
                class_props[pid] = schema_prop
                if "stringOffsets" in views and not views["values"]:
                    # every string is empty: a values buffer view would have to hold 0 bytes, which glTF forbids
                    # (byteLength >= 1) and a padded one breaks the offsets (EXT_structural_metadata: the last offset
                    # is the values' length). The column is left out of the table and the class gives its default.
                    schema_prop["default"] = ""
                    continue
                entry: dict[str, Any] = {"values": self._table_view(views["values"])}
                if "stringOffsets" in views:
                    entry["stringOffsets"] = self._table_view(views["stringOffsets"])
                    entry["stringOffsetType"] = _string_offset_type(len(views["values"]))
                table_props[pid] = entry
            if table.class_name in classes:
                raise TilesError(f"two property tables of class {table.class_name!r} in one content")
            classes[table.class_name] = {"properties": class_props}
            out_tables.append({"class": table.class_name, "count": table.count, "properties": table_props})
        self.used.add("EXT_structural_metadata")
        schema: dict[str, Any] = {"id": "cim", "classes": classes}
        if enums:
            schema["enums"] = enums
        return {"schema": schema, "propertyTables": out_tables}

    def encode(self) -> bytes:
        content = self.content
        sources = [self._source(p) for p in content.primitives]
        if not sources:
            raise TilesError("cannot encode a tile without primitives")
        self._meshes(sources)
        tables = self._tables()
        if tables:
            self.js["extensions"] = {"EXT_structural_metadata": self._metadata(tables)}
        self.chunks.append(b"\0" * ((-self.offset) % 4))
        blob = b"".join(self.chunks)
        self.js["buffers"] = [{"byteLength": len(blob)}]
        if self.fallback:
            self.js["buffers"].append({"byteLength": self.fallback,
                                       "extensions": {"EXT_meshopt_compression": {"fallback": True}}})
        if self.used:
            self.js["extensionsUsed"] = sorted(self.used)
        if self.required:
            self.js["extensionsRequired"] = sorted(self.required)
        return write_glb(self.js, blob)


def write_glb(doc: dict[str, Any], blob: bytes) -> bytes:
    """A glb from its JSON and binary chunk (the JSON padded with spaces, the binary chunk with zeros, to 4 bytes)."""
    text = json.dumps({k: v for k, v in doc.items() if v != []}, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")
    text += b" " * ((-len(text)) % 4)
    blob += b"\0" * ((-len(blob)) % 4)
    total = 12 + 8 + len(text) + (8 + len(blob) if blob else 0)
    out = [struct.pack("<III", _GLB_MAGIC, 2, total), struct.pack("<II", len(text), _JSON_CHUNK), text]
    if blob:
        out += [struct.pack("<II", len(blob), _BIN_CHUNK), blob]
    return b"".join(out)


def parse_glb(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The JSON and binary chunk of a glb."""
    if len(data) < 20 or struct.unpack_from("<I", data, 0)[0] != _GLB_MAGIC:
        raise TilesError("not a glb (bad magic)")
    pos, doc, blob = 12, None, b""
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from("<II", data, pos)
        chunk = data[pos + 8:pos + 8 + length]
        if kind == _JSON_CHUNK:
            doc = json.loads(chunk)
        elif kind == _BIN_CHUNK:
            blob = bytes(chunk)
        pos += 8 + length
    if doc is None:
        raise TilesError("glb has no JSON chunk")
    return doc, blob


def _distinct(ids: np.ndarray) -> int:
    """How many distinct values `ids` holds (feature IDs: small non-negative integers counted by bincount)."""
    if len(ids) and ids.dtype.kind in "iu" and ids.min() >= 0 and ids.max() < 4 * len(ids) + 1024:
        return int(np.count_nonzero(np.bincount(ids)))
    return int(len(np.unique(ids)))


def _string_offset_type(nbytes: int) -> str:
    """The narrowest string offset type (EXT_structural_metadata `stringOffsetType`) we write for a column of
    `nbytes` bytes: UINT16 below 64 KiB (half the bytes of UINT32), else UINT32."""
    return "UINT16" if nbytes < 2**16 else "UINT32"


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def property_ids(names: list[str]) -> list[str]:
    """Metadata property IDs for column names: EXT_structural_metadata IDs must match ^[a-zA-Z_][a-zA-Z0-9_]*$, so
    other characters become `_` and a name with no ASCII letter or digit (高度) becomes `property_<n>`; IDs stay
    unique. The column's own name is written as the property's `name`."""
    out: list[str] = []
    seen: set[str] = set()
    for i, name in enumerate(names):
        pid = name
        if not _IDENTIFIER.match(pid):
            pid = re.sub(r"[^A-Za-z0-9_]", "_", name)
            if not re.search(r"[A-Za-z0-9]", pid):
                pid = f"property_{i}"
            elif pid[0].isdigit():
                pid = f"_{pid}"
        base, k = pid, 2
        while pid in seen:
            pid, k = f"{base}_{k}", k + 1
        seen.add(pid)
        out.append(pid)
    return out


def _enum_column(raw: StringColumn) -> tuple[dict[str, Any], dict[str, bytes]] | None:
    """A string column as an ENUM property when that takes fewer bytes, else None.

    Category columns (use, roof type, street, community) repeat a few strings over thousands of rows: as an enum each
    row is one UINT8 (up to 256 distinct strings) or UINT16 index into the schema's list of names, which CesiumJS and
    loaders.gl give back as the strings. Columns with a null or an empty string stay STRING (an enum's noData would
    have to be one of its names, and a name is never empty).

    Returns:
        ({"type": "ENUM", "enum": <the enum definition>}, {"values": bytes}) or None.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(raw)
    if n == 0 or raw.missing.any() or np.any(np.diff(raw.offsets) == 0):
        return None
    arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(raw.offsets.astype(np.int64)), pa.py_buffer(raw.data))
    names = pc.unique(arr)
    k = len(names)
    if k > 2**16:
        return None
    width = 1 if k <= 2**8 else 2
    string_bytes = len(raw.data) + (n + 1) * (2 if _string_offset_type(len(raw.data)) == "UINT16" else 4)
    # The enum's JSON holds each name once as {"name":"<name>","value":<i>}, at least 21 bytes more than the name's
    # own UTF-8 bytes (escapes only add), plus a comma each and the brackets: a bound on the bytes below that needs
    # no Python object per name, so a column of mostly distinct strings (names, addresses, IDs) is let go early.
    ends = np.frombuffer(names.buffers()[1], np.int64)[names.offset:names.offset + k + 1]
    if n * width + int(ends[-1] - ends[0]) + 22 * k + 41 >= string_bytes:
        return None
    names = names.sort()
    values = [{"name": name, "value": i} for i, name in enumerate(names.to_pylist())]
    enum_bytes = n * width + len(json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode()) + 40
    if enum_bytes >= string_bytes:
        return None
    index = pc.index_in(arr, value_set=names).to_numpy(zero_copy_only=False)
    dtype = "<u1" if width == 1 else "<u2"
    enum = {"valueType": "UINT8" if width == 1 else "UINT16", "values": values}
    return {"type": "ENUM", "enum": enum}, {"values": index.astype(dtype).tobytes()}


def _encode_column(raw: Any) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Schema property and binary views of one column (EXT_structural_metadata, little-endian). An ENUM property
    carries its enum definition under "enum" (the caller moves it into the schema's `enums`)."""
    if isinstance(raw, StringColumn):
        as_enum = _enum_column(raw)
        if as_enum is not None:
            return as_enum
        prop = {"type": "STRING"}
        if raw.missing.any():
            prop["noData"] = NODATA_STRING
        if len(raw.data) >= 2**32:
            raise TilesError("a string column of over 4 GiB does not fit UINT32 string offsets")
        offsets = raw.offsets.astype("<u2" if _string_offset_type(len(raw.data)) == "UINT16" else "<u4")
        return prop, {"values": raw.data.tobytes(), "stringOffsets": offsets.tobytes()}
    if type(raw) is np.ndarray and raw.ndim == 1 and raw.dtype.kind in "fiu":
        plain = _encode_numbers(raw)
        if plain is not None:
            return plain
    values = pd.Series(raw)
    missing = values.isna().to_numpy()
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        bits = np.packbits(values.fillna(False).to_numpy(bool), bitorder="little")
        return {"type": "BOOLEAN"}, {"values": bits.tobytes()}
    if pd.api.types.is_integer_dtype(dtype):
        ints = values.to_numpy(dtype="float64", na_value=np.nan)
        finite = ints[~np.isnan(ints)]
        if finite.size == 0 or (finite.min() > NODATA_INT and finite.max() < 2**31):
            arr = np.where(np.isnan(ints), NODATA_INT, ints).astype("<i4")
            prop: dict[str, Any] = {"type": "SCALAR", "componentType": "INT32"}
            if missing.any():
                prop["noData"] = NODATA_INT
            return prop, {"values": arr.tobytes()}
    if pd.api.types.is_numeric_dtype(dtype):
        arr = values.to_numpy(dtype="float64", na_value=np.nan)
        prop = {"type": "SCALAR", "componentType": "FLOAT64"}
        if missing.any():
            arr = np.where(np.isnan(arr), NODATA_FLOAT, arr)
            prop["noData"] = NODATA_FLOAT
        return prop, {"values": arr.astype("<f8").tobytes()}
    if pd.api.types.is_datetime64_any_dtype(dtype):
        values = values.dt.strftime("%Y-%m-%dT%H:%M:%S")
    strings = [None if m else str(v) for v, m in zip(values.tolist(), missing)]
    return _encode_column(StringColumn.from_values(strings))


def _encode_numbers(raw: np.ndarray) -> tuple[dict[str, Any], dict[str, bytes]] | None:
    """`_encode_column` of a plain numpy float or integer array without a pandas Series (a tile has a dozen such
    columns and a Series costs more than encoding them): the same property and bytes, NaN as missing. None for
    integers outside INT32, which take the general path."""
    floats = raw.astype(np.float64)
    if raw.dtype.kind in "iu":
        if raw.size == 0 or (floats.min() > NODATA_INT and floats.max() < 2**31):
            return {"type": "SCALAR", "componentType": "INT32"}, {"values": floats.astype("<i4").tobytes()}
        return None
    prop: dict[str, Any] = {"type": "SCALAR", "componentType": "FLOAT64"}
    missing = np.isnan(floats)
    if missing.any():
        floats = np.where(missing, NODATA_FLOAT, floats)
        prop["noData"] = NODATA_FLOAT
    return prop, {"values": floats.astype("<f8").tobytes()}


def read_glb(data: bytes, join_parts: bool = True) -> dict[str, Any]:
    """Decode a glb written by this module (any compression): its JSON and its primitives back in the z-up frame.

    Meshopt views are decoded with meshoptimizer's decoder and Draco primitives with Draco's; quantized values are
    dequantized (normalized components and the node's translation/scale, or its matrix), as a client does: a glb
    placed by a node matrix (`MeshContent.placement`) comes back in ECEF.

    Returns:
        {"json": dict, "primitives": [{"positions": (n, 3) float64 z-up, "normals": (n, 3) z-up or None,
         "texcoords": (n, 2) or None, "feature_ids": (n,) int64 or None, "indices": (m, 3), "material": int}],
         "properties": {name: list} of the first property table, or {}, "tables": {class: {name: list}} of every
         table}; each primitive also has "extra_feature_ids": [(n,) int64 ...] (`_FEATURE_ID_1`, ...). The parts of one source primitive that the
        writer cut for quantization (primitive `extras.source`) come back joined, in order, unless `join_parts` is
        False (then one entry per glTF primitive, in node order).
    """
    doc, blob = parse_glb(data)
    dec = _Decoder(doc, blob)
    prims: list[dict[str, Any]] = []
    joined: dict[int, int] = {}
    scene = doc.get("scenes", [{}])[doc.get("scene", 0)] if doc.get("scenes") else {"nodes": []}
    for node, m in _mesh_nodes(doc, scene.get("nodes", [])):
        linear, shift = m[:3, :3], m[:3, 3]
        for p in doc["meshes"][node["mesh"]]["primitives"]:
            out = dec.primitive(p)
            out["positions"] = _y_up_to_z_up(out["positions"] @ linear.T + shift)
            if out["normals"] is not None:
                n = out["normals"] @ np.linalg.inv(linear)
                n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
                out["normals"] = _y_up_to_z_up(n)
            source = (p.get("extras") or {}).get("source") if join_parts else None
            if source is not None and source in joined:
                _join(prims[joined[source]], out)
                continue
            if source is not None:
                joined[source] = len(prims)
            prims.append(out)
    tables: dict[str, dict[str, list[Any]]] = {}
    meta = (doc.get("extensions") or {}).get("EXT_structural_metadata")
    for table in (meta or {}).get("propertyTables", []):
        schema = meta["schema"]["classes"][table["class"]]["properties"]
        enums = meta["schema"].get("enums", {})
        columns: dict[str, list[Any]] = {}
        for pid, prop in schema.items():
            entry = table["properties"].get(pid)
            if entry is not None:
                columns[prop.get("name", pid)] = _decode_column(dec.view, prop, entry, table["count"], enums)
            elif "default" in prop:  # a column left out of this table: every row has the class's default
                columns[prop.get("name", pid)] = [prop["default"]] * table["count"]
        tables[table["class"]] = columns
    props = next(iter(tables.values())) if tables else {}
    return {"json": doc, "primitives": prims, "properties": props, "tables": tables}


def _mesh_nodes(doc: dict[str, Any], roots: list[int]) -> list[tuple[dict[str, Any], np.ndarray]]:
    """The nodes with a mesh under `roots`, depth first, each with its global matrix (float64; `matrix` or
    translation x scale: our writer uses no rotations)."""
    out: list[tuple[dict[str, Any], np.ndarray]] = []

    def walk(index: int, parent: np.ndarray) -> None:
        node = doc["nodes"][index]
        if "matrix" in node:
            local = np.asarray(node["matrix"], np.float64).reshape(4, 4).T
        else:
            local = np.eye(4)
            local[:3, :3] = np.diag(np.asarray(node.get("scale", [1.0, 1.0, 1.0]), np.float64))
            local[:3, 3] = np.asarray(node.get("translation", [0.0, 0.0, 0.0]), np.float64)
        m = parent @ local
        if "mesh" in node:
            out.append((node, m))
        for child in node.get("children", []):
            walk(child, m)

    for index in roots:
        walk(index, np.eye(4))
    return out


def _join(into: dict[str, Any], part: dict[str, Any]) -> None:
    offset = len(into["positions"])
    into["indices"] = np.concatenate([into["indices"], part["indices"] + offset])
    for key in ("positions", "normals", "texcoords", "feature_ids"):
        if into[key] is not None and part[key] is not None:
            into[key] = np.concatenate([into[key], part[key]])
    into["extra_feature_ids"] = [np.concatenate([a, b]) for a, b in
                                 zip(into["extra_feature_ids"], part["extra_feature_ids"], strict=True)]


class _Decoder:
    """Buffer views (meshopt decoded on first use) and accessors of one glb."""

    def __init__(self, doc: dict[str, Any], blob: bytes) -> None:
        self.doc, self.blob = doc, blob
        self.cache: dict[int, bytes] = {}

    def view(self, i: int) -> bytes:
        if i not in self.cache:
            v = self.doc["bufferViews"][i]
            ext = (v.get("extensions") or {}).get("EXT_meshopt_compression")
            if ext is not None:
                if ext.get("buffer", 0) != 0:
                    raise TilesError("meshopt data outside the glb's binary chunk is not supported")
                start = ext.get("byteOffset", 0)
                raw = self.blob[start:start + ext["byteLength"]]
                self.cache[i] = meshopt_decode(raw, ext["count"], ext["byteStride"], ext["mode"], ext.get("filter"))
            else:
                if v.get("buffer", 0) != 0:
                    raise TilesError(f"bufferView {i} is in buffer {v.get('buffer')}, not the glb's binary chunk")
                start = v.get("byteOffset", 0)
                self.cache[i] = self.blob[start:start + v["byteLength"]]
        return self.cache[i]

    def accessor(self, i: int, dequantize: bool = True) -> np.ndarray:
        """(count, width) values (width 1 squeezed); normalized integers as floats when `dequantize`."""
        acc = self.doc["accessors"][i]
        dtype = np.dtype(_NUMPY[acc["componentType"]])
        width = _WIDTH[acc["type"]]
        raw = self.view(acc["bufferView"])
        stride = self.doc["bufferViews"][acc["bufferView"]].get("byteStride") or dtype.itemsize * width
        arr = np.ndarray((acc["count"], width), dtype, raw, acc.get("byteOffset", 0), (stride, dtype.itemsize)).copy()
        if dequantize and acc.get("normalized"):
            arr = np.maximum(arr.astype(np.float64) / _NORMALIZE[acc["componentType"]], -1.0)
        return arr[:, 0] if width == 1 else arr

    def primitive(self, p: dict[str, Any]) -> dict[str, Any]:
        attrs = p["attributes"]
        draco = (p.get("extensions") or {}).get("KHR_draco_mesh_compression")
        if draco is not None:
            decoded = draco_decode(self.view(draco["bufferView"]))
            ids = draco["attributes"]

            def get(name: str) -> np.ndarray | None:
                return decoded[ids[name]] if name in ids else None

            fids = get("_FEATURE_ID_0")
            normals = get("NORMAL")
            extra, k = [], 1
            while f"_FEATURE_ID_{k}" in ids:
                extra.append(np.asarray(get(f"_FEATURE_ID_{k}")).reshape(-1).astype(np.int64))
                k += 1
            return {"positions": np.asarray(get("POSITION"), np.float64),
                    "normals": None if normals is None else np.asarray(normals, np.float64),
                    "texcoords": get("TEXCOORD_0"), "feature_ids": None if fids is None else
                    np.asarray(fids).reshape(-1).astype(np.int64),
                    "indices": decoded[-1].astype(np.int64), "material": p.get("material"),
                    "extra_feature_ids": extra}
        fid = attrs.get("_FEATURE_ID_0")
        extra, k = [], 1
        while f"_FEATURE_ID_{k}" in attrs:
            extra.append(self.accessor(attrs[f"_FEATURE_ID_{k}"]).astype(np.int64))
            k += 1
        return {
            "positions": self.accessor(attrs["POSITION"]).astype(np.float64),
            "normals": self.accessor(attrs["NORMAL"]).astype(np.float64) if "NORMAL" in attrs else None,
            "texcoords": self.accessor(attrs["TEXCOORD_0"]).astype(np.float64) if "TEXCOORD_0" in attrs else None,
            "feature_ids": None if fid is None else self.accessor(fid).astype(np.int64),
            "indices": self.accessor(p["indices"]).astype(np.int64).reshape(-1, 3),
            "material": p.get("material"),
            "extra_feature_ids": extra,
        }


def _decode_column(view_bytes: Any, prop: dict[str, Any], entry: dict[str, Any], count: int,
                   enums: dict[str, Any]) -> list[Any]:
    values = view_bytes(entry["values"])
    if prop["type"] == "ENUM":  # the names, as clients give them
        enum = enums[prop["enumType"]]
        names = {v["value"]: v["name"] for v in enum["values"]}
        kind = {"UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "INT8": "i1", "INT16": "<i2",
                "INT32": "<i4"}[enum.get("valueType", "UINT16")]
        return [names[int(v)] for v in np.frombuffer(values, kind, count=count)]
    if prop["type"] == "STRING":
        kind = {"UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8"}[entry.get("stringOffsetType",
                                                                                        "UINT32")]
        offs = np.frombuffer(view_bytes(entry["stringOffsets"]), kind)
        return [values[offs[i]:offs[i + 1]].decode("utf-8") for i in range(count)]
    if prop["type"] == "BOOLEAN":
        return np.unpackbits(np.frombuffer(values, "u1"), bitorder="little")[:count].astype(bool).tolist()
    dtype = {"INT32": "<i4", "FLOAT64": "<f8", "UINT32": "<u4", "FLOAT32": "<f4"}[prop["componentType"]]
    arr = np.frombuffer(values, dtype, count=count).tolist()
    nodata = prop.get("noData")
    return [None if (nodata is not None and v == nodata) else v for v in arr]


def vertex_normals(positions: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """(n, 3) float32 smooth unit normals: area-weighted average of the faces around each vertex."""
    p = np.asarray(positions, np.float64)
    f = np.asarray(indices).reshape(-1, 3)
    fn = np.cross(p[f[:, 1]] - p[f[:, 0]], p[f[:, 2]] - p[f[:, 0]])
    acc = np.zeros_like(p)
    for k in range(3):
        np.add.at(acc, f[:, k], fn)
    length = np.linalg.norm(acc, axis=1, keepdims=True)
    length[length == 0] = 1.0
    out = acc / length
    out[np.all(acc == 0, axis=1)] = (0.0, 0.0, 1.0)
    return out.astype(np.float32)


__all__ = ["FeatureIdSet", "GlbOptions", "Material", "MeshContent", "Primitive", "PropertyTable", "StringColumn",
           "parse_glb", "property_ids", "read_glb", "vertex_normals", "write_glb"]
