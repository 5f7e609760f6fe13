"""A native reader of OpenSceneGraph binary (`.osgb`) files: struct and numpy over the bytes, no osgconv.

The format is OSG's serializer stream (osgDB::InputStream in binary mode): a header (two magic words, the file type,
the file version, attribute bits: 0x1 custom domains, 0x2 schema, 0x4 sized brackets), a compressor name, then one
object written as `class name, [bracket], unique id, fields`. There are no field names: every wrapper (osg::Object,
osg::Node, osg::Geometry ...) reads its serializers in a fixed order, some only from or until a file version, and a
class reads the wrappers of its associates (`osg::Object osg::Node osg::Group`) in turn. An object met again is
written as its id alone. Versions seen: 80 (ContextCapture's OSG, no brackets, arrays and primitive sets in the old
inline form) and 161 (osgconv 3.6.5, 8-byte brackets, arrays and primitive sets as objects).

The scene graph is flattened the way `cim.sources.osgb.parse_osg` flattens osgconv's `.osg` text, so both readers give the
same `OsgFile`. What this reader does not know (another class, a compressed stream, a schema) raises
`OsgbFormatError` naming the file, the class, the property and the byte offset; `cim.sources.osgb.read_osgb` then falls back
to osgconv.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cim.errors import InputError

MAGIC = (0x6C910EA1, 0x1AFB4545)

# osgDB/DataTypes: array type ids of the old inline form (file versions < 112)
_OLD_ARRAYS: dict[int, tuple[str, int]] = {
    0: ("i1", 1), 1: ("u1", 1), 2: ("i2", 1), 3: ("u2", 1), 4: ("i4", 1), 5: ("u4", 1), 6: ("f4", 1), 7: ("f8", 1),
    8: ("i1", 2), 9: ("i1", 3), 10: ("i1", 4), 11: ("u1", 4), 12: ("i2", 2), 13: ("i2", 3), 14: ("i2", 4),
    15: ("f4", 2), 16: ("f4", 3), 17: ("f4", 4), 18: ("f8", 2), 19: ("f8", 3), 20: ("f8", 4), 21: ("u1", 2),
    22: ("u1", 3), 23: ("u2", 2), 24: ("u2", 3), 25: ("u2", 4), 26: ("i4", 2), 27: ("i4", 3), 28: ("i4", 4),
    29: ("u4", 2), 30: ("u4", 3), 31: ("u4", 4),
}
_ARRAY_CLASSES: dict[str, tuple[str, int]] = {}
for _name, _code in (("Byte", "i1"), ("UByte", "u1"), ("Short", "i2"), ("UShort", "u2"), ("Int", "i4"),
                     ("UInt", "u4"), ("Float", "f4"), ("Double", "f8")):
    _ARRAY_CLASSES[f"osg::{_name}Array"] = (_code, 1)
for _suffix, _code in (("b", "i1"), ("ub", "u1"), ("s", "i2"), ("us", "u2"), ("i", "i4"), ("ui", "u4"), ("", "f4"),
                       ("d", "f8")):
    for _w in (2, 3, 4):
        _ARRAY_CLASSES[f"osg::Vec{_w}{_suffix}Array"] = (_code, _w)
_ELEMENTS = {"osg::DrawElementsUByte": "u1", "osg::DrawElementsUShort": "u2", "osg::DrawElementsUInt": "u4"}
_OLD_ELEMENTS = {52: "u1", 53: "u2", 54: "u4"}
_MODES = ("POINTS", "LINES", "LINE_LOOP", "LINE_STRIP", "TRIANGLES", "TRIANGLE_STRIP", "TRIANGLE_FAN", "QUADS",
          "QUAD_STRIP", "POLYGON")


class OsgbFormatError(InputError):
    """An `.osgb` file holds something the native reader does not understand (class, property, byte offset)."""


class Obj(dict):
    """One deserialised OSG object: its class name under "class" and the fields the flattening needs."""


class _Stream:
    """A cursor over the bytes of one `.osgb` file, with its version, brackets and shared-object table."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.path = path
        self.pos = 0
        self.version = 0
        self.brackets = False
        self.end = "<"
        self.ids: dict[int, Any] = {}
        self.arrays: dict[int, np.ndarray] = {}
        self.blocks: list[tuple[int, int]] = []
        self.where = ["header", ""]
        self._u32 = struct.Struct("<I")
        self._i32 = struct.Struct("<i")

    # ---------------------------------------------------------------------------------------------- errors
    def fail(self, reason: str, at: int | None = None) -> OsgbFormatError:
        cls, prop = self.where
        what = f"{cls}.{prop}" if prop else cls
        return OsgbFormatError(
            f"{self.path}: native .osgb reader cannot read {what} at byte {self.pos if at is None else at} "
            f"(file version {self.version}): {reason}; read it through osgconv (CIM_OSGB_READER=osgconv)")

    def field(self, prop: str) -> None:
        self.where[1] = prop

    # ---------------------------------------------------------------------------------------------- scalars
    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"needs {n} bytes, the file ends at byte {len(self.data)}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def u32(self) -> int:
        if self.pos + 4 > len(self.data):
            raise self.fail("unexpected end of file")
        v = self._u32.unpack_from(self.data, self.pos)[0]
        self.pos += 4
        return v

    def i32(self) -> int:
        if self.pos + 4 > len(self.data):
            raise self.fail("unexpected end of file")
        v = self._i32.unpack_from(self.data, self.pos)[0]
        self.pos += 4
        return v

    def boolean(self) -> bool:
        return self.take(1) != b"\0"

    def values(self, fmt: str) -> tuple:
        s = struct.Struct(self.end + fmt)
        if self.pos + s.size > len(self.data):
            raise self.fail("unexpected end of file")
        v = s.unpack_from(self.data, self.pos)
        self.pos += s.size
        return v

    def string(self) -> str:
        n = self.i32()
        if n < 0 or n > len(self.data) - self.pos:
            raise self.fail(f"string of {n} bytes", self.pos - 4)
        return self.take(n).decode("utf-8", errors="replace")

    def array(self, code: str, count: int, width: int) -> np.ndarray:
        """(count, width) values of numpy type `code` (byte order of the file), as a read-only view."""
        dt = np.dtype(code).newbyteorder(self.end)
        n = count * width * dt.itemsize
        if count < 0 or self.pos + n > len(self.data):
            raise self.fail(f"array of {count} x {width} {code} runs past the end of the file")
        a = np.frombuffer(self.data, dt, count * width, self.pos).reshape(count, width)
        self.pos += n
        return a

    # --------------------------------------------------------------------------------------------- brackets
    def begin(self) -> None:
        if self.brackets:
            at = self.pos
            size = self.values("Q")[0] if self.version > 148 else self.i32()
            self.blocks.append((at, size))

    def close(self) -> None:
        if self.brackets and self.blocks:
            self.blocks.pop()

    def skip_to_block_end(self, check: bool) -> None:
        if self.brackets and self.blocks:
            at, size = self.blocks.pop()
            if check and self.pos != at + size:
                raise self.fail(f"fields end at byte {self.pos}, the object's block at {at + size}")
            self.pos = at + size

    # ---------------------------------------------------------------------------------------------- objects
    def obj(self) -> Obj | None:
        """osgDB::InputStream::readObject: class name, bracket, unique id, the fields of every associate."""
        start = self.pos
        cls = self.string()
        if cls == "NULL":
            return None
        outer = list(self.where)
        self.begin()
        uid = self.u32()
        if uid in self.ids:
            self.skip_to_block_end(check=False)
            return self.ids[uid]
        readers = _associates(cls, self.version)
        if readers is None:
            self.where = [cls, ""]
            raise self.fail("class not supported", start)
        o = Obj({"class": cls})
        self.ids[uid] = o
        for name, read in readers:
            self.where = [cls, name]
            read(self, o)
        self.where = [cls, "end of object"]
        self.skip_to_block_end(check=True)
        self.where = outer
        return o

    def opt_obj(self) -> Obj | None:
        """An object serializer: a bool, then the object when true."""
        return self.obj() if self.boolean() else None

    def image(self) -> Obj | None:
        """osgDB::InputStream::readImage (an image serializer after its bool)."""
        outer = list(self.where)
        self.where = ["osg::Image", "header"]
        if self.version > 94:
            self.string()
        uid = self.u32()
        if uid in self.ids:
            self.where = outer
            return self.ids[uid]
        img = Obj({"class": "osg::Image"})
        self.ids[uid] = img
        self.field("FileName")
        img["file_name"] = self.string()
        self.field("WriteHint")
        self.i32()
        decision = self.i32()
        img["decision"] = decision
        if decision == 0:  # IMAGE_INLINE_DATA: raw pixels
            self.field("inline pixel data")
            hdr = self.values("9i")
            size = self.u32()
            img["pixels"] = (hdr, self.take(size))
            levels = self.u32()
            self.take(4 * levels)
        elif decision == 1:  # IMAGE_INLINE_FILE: the image file's bytes
            self.field("inline image file")
            size = self.u32()
            img["file_bytes"] = self.take(size)
        elif decision not in (2, 3):
            raise self.fail(f"unknown image storage {decision}")
        for name, read in _WRAPPERS["osg::Object"]:
            self.where = ["osg::Image", name]
            read(self, img)
        self.where = outer
        return img

    def old_array(self) -> np.ndarray:
        """osgDB::InputStream::readArray (versions < 112): id, type, size, bracket, packed values."""
        uid = self.u32()
        if uid in self.arrays:
            return self.arrays[uid]
        at = self.pos
        kind = self.i32()
        if kind not in _OLD_ARRAYS:
            raise self.fail(f"array type {kind} not supported", at)
        code, width = _OLD_ARRAYS[kind]
        n = self.i32()
        self.begin()
        a = self.array(code, n, width)
        self.close()
        self.arrays[uid] = a
        return a

    def old_primitive(self) -> tuple[str, np.ndarray | None]:
        """osgDB::InputStream::readPrimitiveSet (versions < 112): (mode, indices or None for unread kinds)."""
        at = self.pos
        kind = self.i32()
        mode = self.i32()
        if self.version > 96:
            self.u32()
        name = _mode_name(self, mode)
        if kind == 50:
            first, count = self.values("ii")
            return name, np.arange(first, first + count, dtype=np.int64)
        if kind == 51:
            self.i32()
            n = self.u32()
            self.begin()
            self.array("i4", n, 1)
            self.close()
            return "DrawArrayLengths", None
        if kind in _OLD_ELEMENTS:
            n = self.u32()
            self.begin()
            idx = self.array(_OLD_ELEMENTS[kind], n, 1).reshape(-1)
            self.close()
            return name, idx
        raise self.fail(f"primitive set type {kind} not supported", at)


def _mode_name(s: _Stream, mode: int) -> str:
    if not 0 <= mode < len(_MODES):
        raise s.fail(f"primitive mode {mode} not supported")
    return _MODES[mode]


# ------------------------------------------------------------------------------------------------------ wrappers
# Each wrapper is a list of (property, reader) in the serializer order of OSG 3.6's src/osgWrappers/serializers/osg;
# `_v(lo, hi, reader)` keeps a property only for file versions lo..hi.
Reader = Callable[[_Stream, Obj], None]


def _v(lo: int, hi: int, read: Reader) -> Reader:
    def gated(s: _Stream, o: Obj) -> None:
        if lo <= s.version <= hi:
            read(s, o)
    return gated


def _skip_obj(s: _Stream, o: Obj) -> None:
    s.opt_obj()


def _skip_i32(s: _Stream, o: Obj) -> None:
    s.take(4)


def _skip_bool(s: _Stream, o: Obj) -> None:
    s.take(1)


def _skip_string(s: _Stream, o: Obj) -> None:
    s.string()


def _skip_fmt(fmt: str) -> Reader:
    size = struct.calcsize("<" + fmt)

    def read(s: _Stream, o: Obj) -> None:
        s.take(size)
    return read


def _user(body: Reader) -> Reader:
    """A user serializer: a bool, then its own reading when true."""
    def read(s: _Stream, o: Obj) -> None:
        if s.boolean():
            body(s, o)
    return read


def _strings(s: _Stream) -> list[str]:
    n = s.u32()
    s.begin()
    out = [s.string() for _ in range(n)]
    s.close()
    return out


def _objects(s: _Stream, bracket_if_empty: bool = True) -> list[Obj | None]:
    n = s.u32()
    if not n and not bracket_if_empty:
        return []
    s.begin()
    out = [s.obj() for _ in range(n)]
    s.close()
    return out


def _object_user_data(s: _Stream, o: Obj) -> None:
    s.begin()
    s.obj()
    s.close()


def _initial_bound(fmt: str) -> Reader:
    def read(s: _Stream, o: Obj) -> None:
        s.begin()
        s.values(fmt)
        s.close()
    return read


def _node_stateset(s: _Stream, o: Obj) -> None:
    o["stateset"] = s.opt_obj()


def _children(s: _Stream, o: Obj) -> None:
    o["children"] = [c for c in _objects(s) if c is not None]


def _lod_center_mode(s: _Stream, o: Obj) -> None:
    o["center_mode"] = s.i32()


def _lod_user_center(s: _Stream, o: Obj) -> None:
    *c, r = s.values("4d")
    o["center"], o["radius"] = c, r


def _lod_range_mode(s: _Stream, o: Obj) -> None:
    o["range_mode"] = s.i32()


def _lod_ranges(s: _Stream, o: Obj) -> None:
    n = s.u32()
    s.begin()
    o["ranges"] = s.array("f4", n, 2).astype(np.float64)
    s.close()


def _database_path(s: _Stream, o: Obj) -> None:
    if s.boolean():
        s.string()


def _range_data(s: _Stream, o: Obj) -> None:
    o["file_names"] = _strings(s)
    n = s.u32()
    s.begin()
    s.array("f4", n, 2)
    s.close()


def _paged_children(s: _Stream, o: Obj) -> None:
    o["children"] = [c for c in _objects(s, bracket_if_empty=False) if c is not None]


def _drawables(s: _Stream, o: Obj) -> None:
    o["children"] = [c for c in _objects(s) if c is not None]


def _matrix(s: _Stream, o: Obj) -> None:
    s.begin()
    o["matrix"] = np.array(s.values("16d"), np.float64).reshape(4, 4)
    s.close()


def _primitive_list(s: _Stream, o: Obj) -> None:
    n = s.u32()
    if s.version >= 112:
        prims = []
        for _ in range(n):
            p = s.obj()
            if p is not None:
                prims.append((p.get("mode_name", "POINTS"), p.get("indices")))
        o["primitives"] = prims
    else:
        o["primitives"] = [s.old_primitive() for _ in range(n)]


def _old_array_data(s: _Stream) -> np.ndarray | None:
    a = s.old_array() if s.boolean() else None
    if s.boolean():
        s.old_array()
    s.take(8)  # binding, normalize
    return a


def _old_array_user(key: str) -> Reader:
    def read(s: _Stream, o: Obj) -> None:
        s.begin()
        o[key] = _old_array_data(s)
        s.close()
    return _user(read)


def _old_array_list(key: str) -> Reader:
    def read(s: _Stream, o: Obj) -> None:
        n = s.u32()
        s.begin()
        arrays = []
        for _ in range(n):
            s.begin()
            arrays.append(_old_array_data(s))
            s.close()
        s.close()
        o[key] = arrays
    return _user(read)


def _array_obj(key: str) -> Reader:
    def read(s: _Stream, o: Obj) -> None:
        a = s.opt_obj()
        o[key] = None if a is None else a.get("values")
    return read


def _array_list(key: str) -> Reader:
    def read(s: _Stream, o: Obj) -> None:
        n = s.u32()
        arrays = []
        for _ in range(n):
            a = s.obj()
            arrays.append(None if a is None else a.get("values"))
        o[key] = arrays
    return read


def _mode_list(s: _Stream) -> None:
    n = s.u32()
    if n:
        s.begin()
        s.take(8 * n)
        s.close()


def _attribute_list(s: _Stream) -> list[Obj]:
    n = s.u32()
    out = []
    if n:
        s.begin()
        for _ in range(n):
            a = s.obj()
            s.take(4)
            if a is not None:
                out.append(a)
        s.close()
    return out


def _stateset_modes(s: _Stream, o: Obj) -> None:
    _mode_list(s)


def _stateset_attributes(s: _Stream, o: Obj) -> None:
    _attribute_list(s)


def _stateset_texture_modes(s: _Stream, o: Obj) -> None:
    n = s.u32()
    s.begin()
    for _ in range(n):
        _mode_list(s)
    s.close()


def _stateset_texture_attributes(s: _Stream, o: Obj) -> None:
    n = s.u32()
    s.begin()
    o["texture_units"] = [_attribute_list(s) for _ in range(n)]
    s.close()


def _stateset_uniforms(s: _Stream, o: Obj) -> None:
    n = s.u32()
    s.begin()
    for _ in range(n):
        s.obj()
        s.take(4)
    s.close()


def _stateset_defines(s: _Stream, o: Obj) -> None:
    n = s.u32()
    s.begin()
    for _ in range(n):
        s.string()
        s.string()
        s.take(4)
    s.close()


def _texture_image(s: _Stream, o: Obj) -> None:
    o["image"] = s.image() if s.boolean() else None


def _vector(code: str, width: int) -> Reader:
    def read(s: _Stream, o: Obj) -> None:
        n = s.u32()
        o["values"] = s.array(code, n, width)
    return read


def _primitive_mode(s: _Stream, o: Obj) -> None:
    o["mode_name"] = _mode_name(s, s.i32())


def _draw_arrays(s: _Stream, o: Obj) -> None:
    first, count = s.values("ii")
    o["indices"] = np.arange(first, first + count, dtype=np.int64)


def _draw_array_lengths(s: _Stream, o: Obj) -> None:
    s.i32()
    n = s.u32()
    s.array("i4", n, 1)
    o["mode_name"] = "DrawArrayLengths"


def _elements(code: str) -> Reader:
    def read(s: _Stream, o: Obj) -> None:
        n = s.u32()
        o["indices"] = s.array(code, n, 1).reshape(-1)
    return read


def _udc_strings(s: _Stream, o: Obj) -> None:
    _strings(s)


def _udc_objects(s: _Stream, o: Obj) -> None:
    _objects(s)


_WRAPPERS: dict[str, list[tuple[str, Reader]]] = {
    "osg::Object": [
        ("Name", _skip_string), ("DataVariance", _skip_i32),
        ("UserData", _v(0, 76, _user(_object_user_data))), ("UserDataContainer", _v(77, 1 << 30, _skip_obj))],
    "osg::Node": [
        ("InitialBound", _user(_initial_bound("4d"))), ("ComputeBoundingSphereCallback", _skip_obj),
        ("UpdateCallback", _skip_obj), ("EventCallback", _skip_obj), ("CullCallback", _skip_obj),
        ("CullingActive", _skip_bool), ("NodeMask", _skip_i32),
        ("Descriptions", _v(0, 76, _user(_udc_strings))), ("StateSet", _node_stateset)],
    "osg::Group": [("Children", _user(_children))],
    "osg::Geode": [("Drawables", _user(_drawables))],
    "osg::LOD": [
        ("CenterMode", _lod_center_mode), ("UserCenter", _user(_lod_user_center)), ("RangeMode", _lod_range_mode),
        ("RangeList", _user(_lod_ranges))],
    "osg::PagedLOD": [
        ("DatabasePath", _user(_database_path)), ("FrameNumberOfLastTraversal", _v(0, 69, _skip_i32)),
        ("NumChildrenThatCannotBeExpired", _skip_i32), ("DisableExternalChildrenPaging", _skip_bool),
        ("RangeDataList", _user(_range_data)), ("Children", _user(_paged_children))],
    "osg::Transform": [("ReferenceFrame", _skip_i32)],
    "osg::MatrixTransform": [("Matrix", _matrix)],
    "osg::Drawable": [
        ("StateSet", _v(0, 155, _node_stateset)), ("InitialBound", _user(_initial_bound("6d"))),
        ("ComputeBoundingBoxCallback", _skip_obj), ("Shape", _skip_obj), ("SupportsDisplayList", _skip_bool),
        ("UseDisplayList", _skip_bool), ("UseVertexBufferObjects", _skip_bool),
        ("UpdateCallback", _v(0, 155, _skip_obj)), ("EventCallback", _v(0, 155, _skip_obj)),
        ("CullCallback", _v(0, 155, _skip_obj)), ("DrawCallback", _v(0, 155, _skip_obj)),
        ("NodeMask", _v(142, 1 << 30, _skip_i32)), ("CullingActive", _v(145, 1 << 30, _skip_bool))],
    "osg::Geometry": [
        ("PrimitiveSetList", _primitive_list),
        ("VertexData", _v(0, 111, _old_array_user("vertices"))), ("NormalData", _v(0, 111, _old_array_user("_n"))),
        ("ColorData", _v(0, 111, _old_array_user("_c"))), ("SecondaryColorData", _v(0, 111, _old_array_user("_s"))),
        ("FogCoordData", _v(0, 111, _old_array_user("_f"))),
        ("TexCoordData", _v(0, 111, _old_array_list("texcoords"))),
        ("VertexAttribData", _v(0, 111, _old_array_list("_a"))), ("FastPathHint", _v(0, 111, _user(lambda s, o: None))),
        ("VertexArray", _v(112, 1 << 30, _array_obj("vertices"))), ("NormalArray", _v(112, 1 << 30, _skip_obj)),
        ("ColorArray", _v(112, 1 << 30, _skip_obj)), ("SecondaryColorArray", _v(112, 1 << 30, _skip_obj)),
        ("FogCoordArray", _v(112, 1 << 30, _skip_obj)),
        ("TexCoordArrayList", _v(112, 1 << 30, _array_list("texcoords"))),
        ("VertexAttribArrayList", _v(112, 1 << 30, _array_list("_a")))],
    "osg::StateSet": [
        ("ModeList", _user(_stateset_modes)), ("AttributeList", _user(_stateset_attributes)),
        ("TextureModeList", _user(_stateset_texture_modes)),
        ("TextureAttributeList", _user(_stateset_texture_attributes)), ("UniformList", _user(_stateset_uniforms)),
        ("RenderingHint", _skip_i32), ("RenderBinMode", _skip_i32), ("BinNumber", _skip_i32),
        ("BinName", _skip_string), ("NestRenderBins", _skip_bool), ("UpdateCallback", _skip_obj),
        ("EventCallback", _skip_obj), ("DefineList", _v(151, 1 << 30, _user(_stateset_defines)))],
    "osg::StateAttribute": [("UpdateCallback", _skip_obj), ("EventCallback", _skip_obj)],
    "osg::Material": [
        ("ColorMode", _skip_i32), ("Ambient", _user(_skip_fmt("?8f"))), ("Diffuse", _user(_skip_fmt("?8f"))),
        ("Specular", _user(_skip_fmt("?8f"))), ("Emission", _user(_skip_fmt("?8f"))),
        ("Shininess", _user(_skip_fmt("?2f")))],
    "osg::Texture": [
        ("WRAP_S", _user(_skip_i32)), ("WRAP_T", _user(_skip_i32)), ("WRAP_R", _user(_skip_i32)),
        ("MIN_FILTER", _user(_skip_i32)), ("MAG_FILTER", _user(_skip_i32)), ("MaxAnisotropy", _skip_i32),
        ("UseHardwareMipMapGeneration", _skip_bool), ("UnRefImageDataAfterApply", _skip_bool),
        ("ClientStorageHint", _skip_bool), ("ResizeNonPowerOfTwoHint", _skip_bool),
        ("BorderColor", _skip_fmt("4d")), ("BorderWidth", _skip_i32), ("InternalFormatMode", _skip_i32),
        ("InternalFormat", _user(_skip_i32)), ("SourceFormat", _user(_skip_i32)), ("SourceType", _user(_skip_i32)),
        ("ShadowComparison", _skip_bool), ("ShadowCompareFunc", _skip_i32), ("ShadowTextureMode", _skip_i32),
        ("ShadowAmbient", _skip_i32), ("ImageAttachment", _v(95, 153, _user(_skip_fmt("Ii?iII")))),
        ("Swizzle", _v(98, 1 << 30, _user(_skip_string))), ("MinLOD", _v(155, 1 << 30, _skip_i32)),
        ("MaxLOD", _v(155, 1 << 30, _skip_i32)), ("LODBias", _v(155, 1 << 30, _skip_i32))],
    "osg::Texture2D": [("Image", _texture_image), ("TextureWidth", _skip_i32), ("TextureHeight", _skip_i32)],
    "osg::BufferData": [("BufferObject", _v(147, 1 << 30, _skip_obj))],
    "osg::Array": [("Binding", _skip_i32), ("Normalize", _skip_bool), ("PreserveDataType", _skip_bool)],
    "osg::PrimitiveSet": [("NumInstances", _skip_i32), ("Mode", _primitive_mode)],
    "osg::DrawArrays": [("First, Count", _draw_arrays)],
    "osg::DrawArrayLengths": [("First, vector", _draw_array_lengths)],
    "osg::BufferObject": [
        ("Target", _skip_i32), ("Usage", _skip_i32), ("CopyDataAndReleaseGLBufferObject", _skip_bool)],
    "osg::ElementBufferObject": [],
    "osg::VertexBufferObject": [],
    "osg::UserDataContainer": [],
    "osg::DefaultUserDataContainer": [
        ("UDC_UserData", _user(_object_user_data)), ("UDC_Descriptions", _user(_udc_strings)),
        ("UDC_UserObjects", _user(_udc_objects))],
}
for _cls, (_code, _w) in _ARRAY_CLASSES.items():
    _WRAPPERS[_cls] = [("vector", _vector(_code, _w))]
for _cls, _code in _ELEMENTS.items():
    _WRAPPERS[_cls] = [("vector", _elements(_code))]

# class -> associates (name, first version, last version), as in the REGISTER_OBJECT_WRAPPER lines
_NEVER = 1 << 30
_CLASSES: dict[str, list[tuple[str, int, int]]] = {
    "osg::Node": [("osg::Object", 0, _NEVER), ("osg::Node", 0, _NEVER)],
    "osg::Group": [("osg::Object", 0, _NEVER), ("osg::Node", 0, _NEVER), ("osg::Group", 0, _NEVER)],
    "osg::Geode": [("osg::Object", 0, _NEVER), ("osg::Node", 0, _NEVER), ("osg::Geode", 0, _NEVER)],
    "osg::LOD": [("osg::Object", 0, _NEVER), ("osg::Node", 0, _NEVER), ("osg::Group", 0, _NEVER),
                 ("osg::LOD", 0, _NEVER)],
    "osg::PagedLOD": [("osg::Object", 0, _NEVER), ("osg::Node", 0, _NEVER), ("osg::LOD", 0, _NEVER),
                      ("osg::PagedLOD", 0, _NEVER)],
    "osg::MatrixTransform": [("osg::Object", 0, _NEVER), ("osg::Node", 0, _NEVER), ("osg::Group", 0, _NEVER),
                             ("osg::Transform", 0, _NEVER), ("osg::MatrixTransform", 0, _NEVER)],
    "osg::Geometry": [("osg::Object", 0, _NEVER), ("osg::Node", 154, _NEVER), ("osg::Drawable", 0, _NEVER),
                      ("osg::Geometry", 0, _NEVER)],
    "osg::StateSet": [("osg::Object", 0, _NEVER), ("osg::StateSet", 0, _NEVER)],
    "osg::Material": [("osg::Object", 0, _NEVER), ("osg::StateAttribute", 0, _NEVER), ("osg::Material", 0, _NEVER)],
    "osg::Texture2D": [("osg::Object", 0, _NEVER), ("osg::StateAttribute", 0, _NEVER), ("osg::Texture", 0, _NEVER),
                       ("osg::Texture2D", 0, _NEVER)],
    "osg::ElementBufferObject": [("osg::Object", 0, _NEVER), ("osg::BufferObject", 0, _NEVER),
                                 ("osg::ElementBufferObject", 0, _NEVER)],
    "osg::VertexBufferObject": [("osg::Object", 0, _NEVER), ("osg::BufferObject", 0, _NEVER),
                                ("osg::VertexBufferObject", 0, _NEVER)],
    "osg::DefaultUserDataContainer": [("osg::Object", 0, _NEVER), ("osg::UserDataContainer", 0, _NEVER),
                                      ("osg::DefaultUserDataContainer", 0, _NEVER)],
}
for _cls in _ARRAY_CLASSES:
    _CLASSES[_cls] = [("osg::Object", 0, _NEVER), ("osg::BufferData", 147, _NEVER), ("osg::Array", 0, _NEVER),
                      (_cls, 0, _NEVER)]
for _cls in (*_ELEMENTS, "osg::DrawArrays", "osg::DrawArrayLengths"):
    _CLASSES[_cls] = [("osg::Object", 0, _NEVER), ("osg::BufferData", 147, _NEVER), ("osg::PrimitiveSet", 0, _NEVER),
                      (_cls, 0, _NEVER)]


def _associates(cls: str, version: int) -> list[tuple[str, Reader]] | None:
    assoc = _CLASSES.get(cls)
    if assoc is None:
        return None
    return [(f"{name.removeprefix('osg::')}::{prop}" if name != cls else prop, read)
            for name, lo, hi in assoc if lo <= version <= hi for prop, read in _WRAPPERS[name]]


# ---------------------------------------------------------------------------------------------------------- file
def read_scene(data: bytes, path: Path) -> Obj:
    """Deserialise the object tree of one `.osgb` file.

    Raises:
        OsgbFormatError: not an OSG binary file, or something this reader does not understand.
    """
    s = _Stream(data, path)
    if len(data) < 20:
        raise s.fail("shorter than an OSG binary header", 0)
    lo, hi = struct.unpack_from("<II", data, 0)
    if (lo, hi) == MAGIC:
        s.end = "<"
    elif struct.unpack_from(">II", data, 0) == MAGIC:
        s.end = ">"
        s._u32, s._i32 = struct.Struct(">I"), struct.Struct(">i")
    else:
        raise s.fail("no OpenSceneGraph binary magic number (not an .osgb file)", 0)
    s.pos = 8
    kind, s.version, attributes = s.u32(), s.u32(), s.u32()
    if kind not in (1, 3):  # READ_SCENE, READ_OBJECT
        raise s.fail(f"file type {kind} is not a scene", 8)
    s.brackets = bool(attributes & 0x4)
    if attributes & 0x1:
        for _ in range(s.u32()):
            s.string()
            s.i32()
    s.field("compressor")
    compressor = s.string()
    if compressor != "0":
        raise s.fail(f"compressed stream ({compressor!r})")
    if attributes & 0x2:
        s.field("schema")
        raise s.fail("streams with an embedded schema are not supported")
    s.where = ["scene", ""]
    root = s.obj()
    if root is None:
        raise s.fail("the scene is empty")
    return root


__all__ = ["MAGIC", "Obj", "OsgbFormatError", "read_scene"]
