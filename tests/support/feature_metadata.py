"""Check the `EXT_mesh_features` and `EXT_structural_metadata` content of a glTF asset against the specifications.

The Khronos glTF validator does not know these two extensions: it reports `UNSUPPORTED_EXTENSION` (severity info)
for each and `UNUSED_OBJECT` (info) for the buffer views that only a property table uses, and looks no further.
CesiumGS' 3d-tiles-validator, which does check them, is not on the npm registry we can reach. This module fills the
gap with the rules a client relies on when it picks a feature and reads its properties: feature ID sets that point at
existing attributes and property tables and hold ids inside the table, a schema whose classes and types are valid,
property columns whose buffer views have exactly the length their rows need (as CesiumGS' validator demands) and are
aligned, string and array offsets that are sorted and end where the values end, strings that are UTF-8, floats that
are finite and enum values that the enum defines.

Spec references: glTF extensions `EXT_mesh_features` and `EXT_structural_metadata` (3D Tiles 1.1), and the 3D
Metadata Specification's binary table format.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np

_ID = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_GLB_MAGIC = 0x46546C67

_COMPONENT = {  # metadata componentType -> numpy dtype
    "INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "UINT16": np.uint16, "INT32": np.int32,
    "UINT32": np.uint32, "INT64": np.int64, "UINT64": np.uint64, "FLOAT32": np.float32, "FLOAT64": np.float64,
}
_COUNT = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_TYPES = {*_COUNT, "STRING", "BOOLEAN", "ENUM"}
_ENUM_VALUE_TYPES = {"INT8", "UINT8", "INT16", "UINT16", "INT32", "UINT32", "INT64", "UINT64"}
_OFFSET_TYPES = {"UINT8", "UINT16", "UINT32", "UINT64"}
_GL_COMPONENT = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_GL_COUNT = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}


def load_gltf(path: str | Path) -> tuple[dict[str, Any], list[bytes | None]]:
    """Read a .glb or .gltf file.

    Returns:
        (the glTF JSON, the bytes of each buffer in order; None for a buffer that cannot be read).
    """
    path = Path(path)
    data = path.read_bytes()
    bin_chunk = b""
    if len(data) >= 12 and struct.unpack_from("<I", data, 0)[0] == _GLB_MAGIC:
        pos, gltf = 12, None
        while pos + 8 <= len(data):
            length, kind = struct.unpack_from("<II", data, pos)
            chunk = data[pos + 8 : pos + 8 + length]
            if kind == 0x4E4F534A:
                gltf = json.loads(chunk)
            elif kind == 0x004E4942:
                bin_chunk = chunk
            pos += 8 + length
        if gltf is None:
            raise ValueError(f"{path}: GLB has no JSON chunk")
    else:
        gltf = json.loads(data)
    buffers: list[bytes | None] = []
    for i, buf in enumerate(gltf.get("buffers", [])):
        uri = buf.get("uri")
        if uri is None:
            buffers.append(bin_chunk if i == 0 else None)
        elif uri.startswith("data:"):
            buffers.append(base64.b64decode(uri.split(",", 1)[1]))
        else:
            target = path.parent / urllib.parse.unquote(uri)
            buffers.append(target.read_bytes() if target.is_file() else None)
    return gltf, buffers


class _Asset:
    def __init__(self, gltf: dict[str, Any], buffers: list[bytes | None]) -> None:
        self.gltf, self.buffers = gltf, buffers
        self.problems: list[str] = []

    def fail(self, pointer: str, message: str) -> None:
        self.problems.append(f"{pointer}: {message}")

    def view_bytes(self, index: Any, pointer: str) -> bytes | None:
        views = self.gltf.get("bufferViews", [])
        if not isinstance(index, int) or not 0 <= index < len(views):
            self.fail(pointer, f"bufferView {index!r} does not exist ({len(views)} buffer views)")
            return None
        view = views[index]
        b = view.get("buffer", 0)
        buf = self.buffers[b] if isinstance(b, int) and 0 <= b < len(self.buffers) else None
        if buf is None:
            self.fail(pointer, f"buffer {b!r} of bufferView {index} cannot be read")
            return None
        start = view.get("byteOffset", 0)
        raw = buf[start : start + view["byteLength"]]
        if len(raw) < view["byteLength"]:
            self.fail(pointer, f"bufferView {index} runs past the end of its buffer")
            return None
        return raw

    def view_offset(self, index: int) -> int:
        return int(self.gltf["bufferViews"][index].get("byteOffset", 0))

    def accessor_values(self, index: Any, pointer: str) -> np.ndarray | None:
        """(count, n) values of a non-sparse accessor, or None when unreadable (already reported)."""
        accessors = self.gltf.get("accessors", [])
        if not isinstance(index, int) or not 0 <= index < len(accessors):
            self.fail(pointer, f"accessor {index!r} does not exist")
            return None
        acc = accessors[index]
        dtype = np.dtype(_GL_COMPONENT[acc["componentType"]]).newbyteorder("<")
        n = _GL_COUNT[acc["type"]]
        if "bufferView" not in acc or "sparse" in acc:
            return None  # zero-filled or sparse: the Khronos validator covers these
        raw = self.view_bytes(acc["bufferView"], pointer)
        if raw is None:
            return None
        stride = self.gltf["bufferViews"][acc["bufferView"]].get("byteStride") or dtype.itemsize * n
        start = acc.get("byteOffset", 0)
        count = acc["count"]
        if count and start + (count - 1) * stride + n * dtype.itemsize > len(raw):
            self.fail(pointer, f"accessor {index} runs past the end of bufferView {acc['bufferView']}")
            return None
        return np.ndarray((count, n), dtype, raw, start, (stride, dtype.itemsize)).copy()


def check_feature_metadata(path: str | Path) -> list[str]:
    """Problems in the `EXT_mesh_features` / `EXT_structural_metadata` content of a .glb or .gltf file.

    Returns:
        One message per problem, each starting with a JSON pointer; empty when the content is valid (or the asset
        uses neither extension).
    """
    gltf, buffers = load_gltf(path)
    asset = _Asset(gltf, buffers)
    used = set(gltf.get("extensionsUsed", []))
    root = gltf.get("extensions", {}).get("EXT_structural_metadata")
    if root is not None:
        if "EXT_structural_metadata" not in used:
            asset.fail("/extensionsUsed", "EXT_structural_metadata is used but not declared")
        _check_structural_metadata(asset, root)
    for m, mesh in enumerate(gltf.get("meshes", [])):
        for p, prim in enumerate(mesh.get("primitives", [])):
            ext = prim.get("extensions", {}).get("EXT_mesh_features")
            if ext is None:
                continue
            pointer = f"/meshes/{m}/primitives/{p}/extensions/EXT_mesh_features"
            if "EXT_mesh_features" not in used:
                asset.fail("/extensionsUsed", "EXT_mesh_features is used but not declared")
            _check_mesh_features(asset, prim, ext, root, pointer)
    return asset.problems


def _check_structural_metadata(asset: _Asset, root: dict[str, Any]) -> None:
    base = "/extensions/EXT_structural_metadata"
    schema = root.get("schema")
    if (schema is None) == ("schemaUri" not in root):
        asset.fail(base, "needs exactly one of 'schema' and 'schemaUri'")
    if schema is None:
        if root.get("propertyTables"):
            asset.fail(base, "property tables with an external schemaUri are not checked here")
        return
    if not _ID.match(str(schema.get("id", ""))):
        asset.fail(f"{base}/schema/id", f"schema id {schema.get('id')!r} is missing or not an identifier")
    enums = schema.get("enums", {})
    for enum_id, enum in enums.items():
        values = enum.get("values", [])
        if not _ID.match(enum_id) or not values:
            asset.fail(f"{base}/schema/enums/{enum_id}", "enum needs an identifier and at least one value")
        if enum.get("valueType", "UINT16") not in _ENUM_VALUE_TYPES:
            asset.fail(f"{base}/schema/enums/{enum_id}/valueType", f"{enum.get('valueType')!r} is not an integer")
        if len({v["name"] for v in values}) != len(values) or len({v["value"] for v in values}) != len(values):
            asset.fail(f"{base}/schema/enums/{enum_id}/values", "enum names and values must be unique")
    classes = schema.get("classes", {})
    for class_id, cls in classes.items():
        if not _ID.match(class_id):
            asset.fail(f"{base}/schema/classes/{class_id}", "class id is not an identifier")
        for prop_id, prop in cls.get("properties", {}).items():
            _check_class_property(asset, prop, enums, f"{base}/schema/classes/{class_id}/properties/{prop_id}")
    for t, table in enumerate(root.get("propertyTables", [])):
        _check_property_table(asset, table, classes, enums, f"{base}/propertyTables/{t}")


def _check_class_property(asset: _Asset, prop: dict[str, Any], enums: dict[str, Any], pointer: str) -> None:
    kind = prop.get("type")
    if kind not in _TYPES:
        asset.fail(pointer, f"type {kind!r} is not one of {sorted(_TYPES)}")
    if kind in _COUNT and prop.get("componentType") not in _COMPONENT:
        asset.fail(pointer, f"type {kind} needs a componentType, got {prop.get('componentType')!r}")
    if kind == "ENUM" and prop.get("enumType") not in enums:
        asset.fail(pointer, f"enumType {prop.get('enumType')!r} is not an enum of the schema")
    if prop.get("normalized") and not str(prop.get("componentType", "")).startswith(("INT", "UINT")):
        asset.fail(pointer, "only integer component types can be normalized")
    if "count" in prop and (not prop.get("array") or not isinstance(prop["count"], int) or prop["count"] < 2):
        asset.fail(pointer, "'count' needs 'array': true and a value of at least 2")


def _check_property_table(asset: _Asset, table: dict[str, Any], classes: dict[str, Any],
                          enums: dict[str, Any], pointer: str) -> None:
    cls = classes.get(table.get("class"))
    count = table.get("count")
    if cls is None:
        asset.fail(pointer, f"class {table.get('class')!r} is not in the schema")
        return
    if not isinstance(count, int) or count < 1:
        asset.fail(pointer, f"count {count!r} must be a positive integer")
        return
    definitions = cls.get("properties", {})
    for prop_id, definition in definitions.items():
        if definition.get("required") and prop_id not in table.get("properties", {}):
            asset.fail(f"{pointer}/properties", f"required property {prop_id!r} is missing")
    for prop_id, column in table.get("properties", {}).items():
        where = f"{pointer}/properties/{prop_id}"
        if prop_id not in definitions:
            asset.fail(where, f"property {prop_id!r} is not defined by class {table['class']!r}")
            continue
        _check_column(asset, column, definitions[prop_id], enums, count, where)


def _offsets(asset: _Asset, column: dict[str, Any], key: str, type_key: str, n: int, limit: int,
             pointer: str) -> np.ndarray | None:
    """The n+1 offsets of a string or variable-length array column, checked against `limit`."""
    offset_type = column.get(type_key, "UINT32")
    if offset_type not in _OFFSET_TYPES:
        asset.fail(f"{pointer}/{type_key}", f"{offset_type!r} is not one of {sorted(_OFFSET_TYPES)}")
        return None
    if key not in column:
        asset.fail(pointer, f"'{key}' is required for this property")
        return None
    raw = asset.view_bytes(column[key], f"{pointer}/{key}")
    if raw is None:
        return None
    dtype = np.dtype(_COMPONENT[offset_type]).newbyteorder("<")
    if asset.view_offset(column[key]) % dtype.itemsize:
        asset.fail(f"{pointer}/{key}", f"bufferView byteOffset is not a multiple of {dtype.itemsize}")
    if len(raw) != (n + 1) * dtype.itemsize:  # exactly: CesiumGS' validator reports METADATA_INVALID_LENGTH
        asset.fail(f"{pointer}/{key}", f"needs {n + 1} {offset_type} offsets, bufferView holds {len(raw)} bytes")
        return None
    offsets = np.frombuffer(raw, dtype, n + 1).astype(np.int64)
    if np.any(np.diff(offsets) < 0):
        asset.fail(f"{pointer}/{key}", "offsets are not sorted")
        return None
    if offsets[-1] > limit:
        asset.fail(f"{pointer}/{key}", f"last offset {offsets[-1]} is past the end of the values ({limit})")
        return None
    return offsets


def _check_column(asset: _Asset, column: dict[str, Any], prop: dict[str, Any], enums: dict[str, Any],
                  count: int, pointer: str) -> None:
    kind = prop.get("type")
    if "values" not in column:
        asset.fail(pointer, "'values' is required")
        return
    if (kind not in _TYPES or (kind == "ENUM" and prop.get("enumType") not in enums)
            or (kind in _COUNT and prop.get("componentType") not in _COMPONENT)):
        return  # the class property is invalid, which the schema check reported
    values = asset.view_bytes(column["values"], f"{pointer}/values")
    if values is None:
        return
    variable = bool(prop.get("array")) and "count" not in prop
    per_row = prop.get("count", 1) if prop.get("array") else 1
    if kind == "STRING":
        n_strings = count * per_row
        if variable:  # array offsets index the string offsets
            arr = _offsets(asset, column, "arrayOffsets", "arrayOffsetType", count, 1 << 62, pointer)
            if arr is None:
                return
            n_strings = int(arr[-1])
        offsets = _offsets(asset, column, "stringOffsets", "stringOffsetType", n_strings, len(values), pointer)
        if offsets is not None and offsets[-1] != len(values):
            asset.fail(f"{pointer}/values", f"the last string offset says {offsets[-1]} bytes of strings, the "
                                            f"bufferView holds {len(values)}")
        elif offsets is not None:
            for i in range(n_strings):
                try:
                    values[offsets[i] : offsets[i + 1]].decode("utf-8")
                except UnicodeDecodeError:
                    asset.fail(f"{pointer}/values", f"string {i} is not UTF-8")
                    break
        return
    if kind == "BOOLEAN":
        if variable:
            _offsets(asset, column, "arrayOffsets", "arrayOffsetType", count, len(values) * 8, pointer)
        elif len(values) != -(-count * per_row // 8):
            asset.fail(f"{pointer}/values", f"{count * per_row} booleans need {-(-count * per_row // 8)} bytes, "
                                            f"bufferView holds {len(values)}")
        return
    if kind == "ENUM":
        dtype = np.dtype(_COMPONENT[enums[prop["enumType"]].get("valueType", "UINT16")])
    else:
        dtype = np.dtype(_COMPONENT[prop["componentType"]])
    dtype = dtype.newbyteorder("<")
    width = _COUNT.get(kind, 1)
    if asset.view_offset(column["values"]) % dtype.itemsize:
        asset.fail(f"{pointer}/values", f"bufferView byteOffset is not a multiple of {dtype.itemsize} "
                                        f"(component size of {prop.get('componentType', kind)})")
    if variable:  # array offsets are element indices, not byte offsets (3D Metadata, binary table format)
        arr = _offsets(asset, column, "arrayOffsets", "arrayOffsetType", count,
                       len(values) // (dtype.itemsize * width), pointer)
        if arr is None:
            return
        n_items = int(arr[-1]) * width
    else:
        n_items = count * width * per_row
    if len(values) != n_items * dtype.itemsize:
        asset.fail(f"{pointer}/values", f"needs {n_items * dtype.itemsize} bytes for {count} rows of "
                                        f"{prop.get('componentType', kind)}, bufferView holds {len(values)}")
        return
    data = np.frombuffer(values, dtype, n_items)
    if dtype.kind == "f" and not np.all(np.isfinite(data)):
        asset.fail(f"{pointer}/values", "NaN or infinite values are not allowed")
    if kind == "ENUM":
        allowed = {v["value"] for v in enums[prop["enumType"]].get("values", [])}
        unknown = set(data.tolist()) - allowed
        if unknown:
            asset.fail(f"{pointer}/values", f"values {sorted(unknown)[:5]} are not in enum {prop['enumType']!r}")


def _check_mesh_features(asset: _Asset, prim: dict[str, Any], ext: dict[str, Any], root: dict[str, Any] | None,
                         pointer: str) -> None:
    feature_ids = ext.get("featureIds")
    if not isinstance(feature_ids, list) or not feature_ids:
        asset.fail(pointer, "featureIds must be a non-empty array")
        return
    tables = (root or {}).get("propertyTables", [])
    for i, fid in enumerate(feature_ids):
        where = f"{pointer}/featureIds/{i}"
        feature_count = fid.get("featureCount")
        if not isinstance(feature_count, int) or feature_count < 1:
            asset.fail(where, f"featureCount {feature_count!r} must be a positive integer")
            continue
        if "label" in fid and not _ID.match(str(fid["label"])):
            asset.fail(f"{where}/label", f"label {fid['label']!r} is not an identifier")
        if "attribute" in fid and "texture" in fid:
            asset.fail(where, "'attribute' and 'texture' are mutually exclusive")
        table_count = None
        if "propertyTable" in fid:
            t = fid["propertyTable"]
            if root is None:
                asset.fail(f"{where}/propertyTable", "refers to a property table but the asset has no "
                                                     "EXT_structural_metadata extension")
            elif not isinstance(t, int) or not 0 <= t < len(tables):
                asset.fail(f"{where}/propertyTable", f"property table {t!r} does not exist ({len(tables)} tables)")
            else:
                table_count = tables[t].get("count")
        ids = None
        if "attribute" in fid:
            semantic = f"_FEATURE_ID_{fid['attribute']}"
            if semantic not in prim.get("attributes", {}):
                asset.fail(f"{where}/attribute", f"primitive has no {semantic} attribute")
                continue
            acc = asset.gltf["accessors"][prim["attributes"][semantic]]
            if acc.get("type") != "SCALAR" or acc.get("normalized"):
                asset.fail(f"{where}/attribute", f"{semantic} accessor must be SCALAR and not normalized")
                continue
            values = asset.accessor_values(prim["attributes"][semantic], f"{where}/attribute")
            ids = None if values is None else values[:, 0]
        elif "texture" in fid:
            textures = asset.gltf.get("textures", [])
            if not 0 <= fid["texture"].get("index", -1) < len(textures):
                asset.fail(f"{where}/texture", f"texture {fid['texture'].get('index')!r} does not exist")
        else:
            position = prim.get("attributes", {}).get("POSITION")
            if position is not None:
                ids = np.arange(asset.gltf["accessors"][position]["count"])
        if ids is None:
            continue
        if np.any(ids != np.round(ids)) or np.any(ids < 0):
            asset.fail(where, "feature ids must be non-negative integers")
            continue
        distinct = set(np.unique(ids).astype(np.int64).tolist()) - {fid.get("nullFeatureId")}
        if len(distinct) != feature_count:
            asset.fail(f"{where}/featureCount", f"featureCount is {feature_count} but the ids hold "
                                                f"{len(distinct)} distinct features")
        if table_count is not None and distinct and max(distinct) >= table_count:
            asset.fail(where, f"feature id {max(distinct)} is outside property table "
                              f"{fid['propertyTable']} ({table_count} rows)")
