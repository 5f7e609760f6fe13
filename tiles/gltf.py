"""glTF 2.0 binary (glb) content for 3D Tiles 1.1, with per-feature metadata.

A `MeshContent` holds one or more `Primitive`s in a local east-north-up frame (z up, metres, float32 relative to the
tile's transform) and, optionally, a `PropertyTable` of feature attributes. `to_glb()` writes glTF's y-up axes, a
`_FEATURE_ID_0` vertex attribute described by EXT_mesh_features and the table as EXT_structural_metadata, so a client
(CesiumJS, deck.gl) can pick a feature and read its attributes. Encoding goes through pygltflib.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import pygltflib as gl

from tiles.errors import TilesError

MimeType = Literal["image/jpeg", "image/png", "image/webp"]

# EXT_structural_metadata has no null: missing values take these sentinels, declared as the property's `noData`.
NODATA_INT = -2147483648
NODATA_FLOAT = -3.4028234663852886e38
NODATA_STRING = ""


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
        """The strings at `index` (a gather over bytes, vectorised)."""
        index = np.asarray(index, np.int64)
        starts, ends = self.offsets[index], self.offsets[index + 1]
        lengths = ends - starts
        new = np.zeros(len(index) + 1, np.int64)
        np.cumsum(lengths, out=new[1:])
        gather = np.repeat(starts - new[:-1], lengths) + np.arange(new[-1], dtype=np.int64)
        return StringColumn(self.data[gather], new, self.missing[index])

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
class Primitive:
    """One triangle mesh with one material.

    Attributes:
        positions: (n, 3) float local east/north/up metres (z up).
        indices: (m, 3) int triangle corners, counter-clockwise seen from outside.
        normals: (n, 3) float unit normals (z up) or None.
        texcoords: (n, 2) float UVs, origin at the image's top-left, or None.
        feature_ids: (n,) int feature index of each vertex into the property table, or None.
        material: the material.
    """

    positions: np.ndarray
    indices: np.ndarray
    normals: np.ndarray | None = None
    texcoords: np.ndarray | None = None
    feature_ids: np.ndarray | None = None
    material: Material = field(default_factory=Material)


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
    """The content of one tile: primitives plus an optional feature table."""

    primitives: list[Primitive]
    properties: PropertyTable | None = None
    copyright: str | None = None

    def to_glb(self) -> bytes:
        """Encode as a glb (glTF 2.0 binary) with EXT_mesh_features / EXT_structural_metadata."""
        return _Encoder(self).encode()

    def vertex_count(self) -> int:
        return int(sum(len(p.positions) for p in self.primitives))

    def triangle_count(self) -> int:
        return int(sum(len(p.indices) for p in self.primitives))


def _z_up_to_y_up(a: np.ndarray) -> np.ndarray:
    """(e, n, u) -> glTF (x, y, z) = (e, u, -n); 3D Tiles turns glTF's y-up back to z-up when it loads."""
    out = np.empty_like(a, dtype=np.float32)
    out[:, 0] = a[:, 0]
    out[:, 1] = a[:, 2]
    out[:, 2] = -a[:, 1]
    return out


class _Encoder:
    def __init__(self, content: MeshContent) -> None:
        self.content = content
        self.chunks: list[bytes] = []
        self.offset = 0
        self.gltf = gl.GLTF2(
            asset=gl.Asset(version="2.0", generator="cim-engine", copyright=content.copyright),
            scene=0,
            scenes=[gl.Scene(nodes=[0])],
            nodes=[gl.Node(mesh=0)],
        )
        self.extensions_used: set[str] = set()

    def _view(self, data: bytes, target: int | None = None, stride: int | None = None) -> int:
        if not data:
            data = b"\0"  # glTF forbids empty buffer views (e.g. a text column whose values are all empty)
        pad = (-self.offset) % 8  # 8-byte alignment satisfies both glTF accessors and EXT_structural_metadata
        if pad:
            self.chunks.append(b"\0" * pad)
            self.offset += pad
        self.gltf.bufferViews.append(
            gl.BufferView(buffer=0, byteOffset=self.offset, byteLength=len(data), target=target, byteStride=stride)
        )
        self.chunks.append(data)
        self.offset += len(data)
        return len(self.gltf.bufferViews) - 1

    def _accessor(self, array: np.ndarray, kind: str, target: int | None, with_bounds: bool = False) -> int:
        ctype = {
            np.dtype(np.float32): gl.FLOAT,
            np.dtype(np.uint32): gl.UNSIGNED_INT,
            np.dtype(np.uint16): gl.UNSIGNED_SHORT,
            np.dtype(np.uint8): gl.UNSIGNED_BYTE,
        }[array.dtype]
        view = self._view(np.ascontiguousarray(array).tobytes(), target)
        acc = gl.Accessor(bufferView=view, componentType=ctype, count=len(array), type=kind)
        if with_bounds:
            flat = array.reshape(len(array), -1)
            acc.min = [float(v) for v in flat.min(axis=0)]
            acc.max = [float(v) for v in flat.max(axis=0)]
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1

    def _material(self, m: Material) -> int:
        pbr = gl.PbrMetallicRoughness(
            baseColorFactor=list(m.base_color), metallicFactor=m.metallic, roughnessFactor=m.roughness
        )
        if m.texture is not None:
            view = self._view(m.texture)
            self.gltf.images.append(gl.Image(bufferView=view, mimeType=m.mime_type))
            if not self.gltf.samplers:
                self.gltf.samplers.append(
                    gl.Sampler(magFilter=gl.LINEAR, minFilter=gl.LINEAR_MIPMAP_LINEAR, wrapS=gl.CLAMP_TO_EDGE,
                               wrapT=gl.CLAMP_TO_EDGE)
                )
            tex: dict[str, Any] = {"sampler": 0, "source": len(self.gltf.images) - 1}
            if m.mime_type == "image/webp":
                self.extensions_used.add("EXT_texture_webp")
                tex = {"sampler": 0, "extensions": {"EXT_texture_webp": {"source": tex["source"]}}}
            self.gltf.textures.append(gl.Texture(**tex))
            pbr.baseColorTexture = gl.TextureInfo(index=len(self.gltf.textures) - 1)
        mat = gl.Material(pbrMetallicRoughness=pbr, doubleSided=m.double_sided)
        if m.base_color[3] < 1.0:
            mat.alphaMode = gl.BLEND
        if m.unlit:
            mat.extensions = {"KHR_materials_unlit": {}}
            self.extensions_used.add("KHR_materials_unlit")
        self.gltf.materials.append(mat)
        return len(self.gltf.materials) - 1

    def _primitive(self, p: Primitive) -> gl.Primitive:
        n = len(p.positions)
        if n == 0 or len(p.indices) == 0:
            raise TilesError("cannot encode an empty primitive (no vertices or no triangles)")
        if p.indices.max() >= n:
            raise TilesError(f"primitive index {int(p.indices.max())} out of range for {n} vertices")
        attrs = gl.Attributes(
            POSITION=self._accessor(_z_up_to_y_up(np.asarray(p.positions)), gl.VEC3, gl.ARRAY_BUFFER, True)
        )
        if p.normals is not None:
            attrs.NORMAL = self._accessor(_z_up_to_y_up(np.asarray(p.normals)), gl.VEC3, gl.ARRAY_BUFFER)
        if p.texcoords is not None:
            attrs.TEXCOORD_0 = self._accessor(np.asarray(p.texcoords, np.float32), gl.VEC2, gl.ARRAY_BUFFER)
        extensions: dict[str, Any] = {}
        if p.feature_ids is not None:
            # float32 keeps every vertex attribute 4-byte aligned (glTF core) and is exact up to 2^24 features.
            fid = np.asarray(p.feature_ids).astype(np.float32)
            setattr(attrs, "_FEATURE_ID_0", self._accessor(fid, gl.SCALAR, gl.ARRAY_BUFFER))
            # featureCount is the number of distinct features in this primitive (EXT_mesh_features)
            fid_info: dict[str, Any] = {"featureCount": int(len(np.unique(fid))), "attribute": 0}
            if self.content.properties is not None:
                fid_info["propertyTable"] = 0
            extensions["EXT_mesh_features"] = {"featureIds": [fid_info]}
            self.extensions_used.add("EXT_mesh_features")
        idx = np.asarray(p.indices).reshape(-1)
        idx = idx.astype(np.uint16 if n <= 0xFFFF else np.uint32)
        prim = gl.Primitive(
            attributes=attrs,
            indices=self._accessor(idx, gl.SCALAR, gl.ELEMENT_ARRAY_BUFFER),
            material=self._material(p.material),
            mode=gl.TRIANGLES,
        )
        if extensions:
            prim.extensions = extensions
        return prim

    def _metadata(self, table: PropertyTable) -> dict[str, Any]:
        class_props: dict[str, Any] = {}
        table_props: dict[str, Any] = {}
        for name, raw in table.columns.items():
            schema_prop, views = _encode_column(raw)
            if name in table.descriptions:
                schema_prop["description"] = table.descriptions[name]
            class_props[name] = schema_prop
            entry: dict[str, Any] = {"values": self._view(views["values"])}
            if "stringOffsets" in views:
                entry["stringOffsets"] = self._view(views["stringOffsets"])
                entry["stringOffsetType"] = "UINT32"
            table_props[name] = entry
        self.extensions_used.add("EXT_structural_metadata")
        return {
            "schema": {"id": "cim", "classes": {table.class_name: {"properties": class_props}}},
            "propertyTables": [{"class": table.class_name, "count": table.count, "properties": table_props}],
        }

    def encode(self) -> bytes:
        content = self.content
        prims = [self._primitive(p) for p in content.primitives]
        self.gltf.meshes.append(gl.Mesh(primitives=prims))
        if content.properties is not None and content.properties.columns:
            self.gltf.extensions = {"EXT_structural_metadata": self._metadata(content.properties)}
        pad = (-self.offset) % 4
        if pad:
            self.chunks.append(b"\0" * pad)
            self.offset += pad
        blob = b"".join(self.chunks)
        self.gltf.buffers.append(gl.Buffer(byteLength=len(blob)))
        self.gltf.extensionsUsed = sorted(self.extensions_used)
        self.gltf.set_binary_blob(blob)
        return b"".join(self.gltf.save_to_bytes())


def _encode_column(raw: Any) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Schema property and binary views of one column (EXT_structural_metadata, little-endian)."""
    if isinstance(raw, StringColumn):
        prop = {"type": "STRING"}
        if raw.missing.any():
            prop["noData"] = NODATA_STRING
        if len(raw.data) >= 2**32:
            raise TilesError("a string column of over 4 GiB does not fit UINT32 string offsets")
        return prop, {"values": raw.data.tobytes(), "stringOffsets": raw.offsets.astype("<u4").tobytes()}
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


def read_glb(data: bytes) -> dict[str, Any]:
    """Decode a glb written by this module: its JSON and, per primitive, positions back in z-up frame.

    Returns:
        {"json": dict, "primitives": [{"positions": (n, 3) float64 z-up, "feature_ids": (n,) or None}],
         "properties": {name: list} of the first property table, or {}}
    """
    doc = gl.GLTF2.load_from_bytes(data)
    blob = doc.binary_blob()
    js = json.loads(doc.to_json())

    def accessor(i: int) -> np.ndarray:
        acc = doc.accessors[i]
        view = doc.bufferViews[acc.bufferView]
        dtype = {gl.FLOAT: "<f4", gl.UNSIGNED_INT: "<u4", gl.UNSIGNED_SHORT: "<u2", gl.UNSIGNED_BYTE: "u1"}[
            acc.componentType
        ]
        width = {gl.SCALAR: 1, gl.VEC2: 2, gl.VEC3: 3, gl.VEC4: 4}[acc.type]
        start = (view.byteOffset or 0) + (acc.byteOffset or 0)
        arr = np.frombuffer(blob, dtype=dtype, count=acc.count * width, offset=start)
        return arr.reshape(acc.count, width) if width > 1 else arr

    prims = []
    for mesh in doc.meshes:
        for p in mesh.primitives:
            pos = accessor(p.attributes.POSITION).astype(np.float64)
            zup = np.column_stack([pos[:, 0], -pos[:, 2], pos[:, 1]])
            fid_index = getattr(p.attributes, "_FEATURE_ID_0", None)
            prims.append({"positions": zup, "feature_ids": accessor(fid_index) if fid_index is not None else None,
                          "indices": accessor(p.indices).reshape(-1, 3)})
    props: dict[str, list[Any]] = {}
    meta = (js.get("extensions") or {}).get("EXT_structural_metadata")
    if meta:
        table = meta["propertyTables"][0]
        schema = meta["schema"]["classes"][table["class"]]["properties"]
        for name, entry in table["properties"].items():
            props[name] = _decode_column(blob, js["bufferViews"], schema[name], entry, table["count"])
    return {"json": js, "primitives": prims, "properties": props}


def _decode_column(blob: bytes, views: list[dict[str, Any]], prop: dict[str, Any], entry: dict[str, Any],
                   count: int) -> list[Any]:
    def view_bytes(i: int) -> bytes:
        v = views[i]
        start = v.get("byteOffset", 0)
        return blob[start:start + v["byteLength"]]

    values = view_bytes(entry["values"])
    if prop["type"] == "STRING":
        offs = np.frombuffer(view_bytes(entry["stringOffsets"]), "<u4")
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


__all__ = ["Material", "MeshContent", "Primitive", "PropertyTable", "StringColumn", "read_glb", "vertex_normals"]
