"""Read OpenSceneGraph binary (`.osgb`) files of an oblique-photography pyramid.

Two readers give the same `OsgFile`:

- `native` (the default): `cim.sources.osgb_binary` deserialises the binary stream itself (struct and numpy over the bytes)
  and this module flattens its scene graph; the embedded JPEG files are taken as they are.
- `osgconv`: `osgconv` (Debian package `openscenegraph`) turns one `.osgb` into the old text format `.osg` with 9
  significant digits (float32 round-trips exactly; the newer `.osgt` writer keeps only 6, about 5 mm at 1 km from
  the origin), which `parse_osg` reads; the textures are taken from the `.osgb` itself, where ContextCapture embeds
  the original JPEG files: no decoding and re-encoding, no quality loss. When a file carries no embedded image
  files, `osgconv` writes the textures out instead.

Neither follows PagedLOD children: every file of a pyramid is read on its own. `read_osgb(path, reader=...)` or the
environment variable `CIM_OSGB_READER=native|osgconv` picks the reader; a file the native reader does not
understand is read through osgconv with an `OsgbReaderWarning`.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import struct
import subprocess
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from cim.errors import CimWarning, InputError, MissingToolError
from cim.sources.osgb_binary import Obj, OsgbFormatError, read_scene

OSGCONV_ENV = "CIM_OSGCONV"
READER_ENV = "CIM_OSGB_READER"
OsgbReader = Literal["native", "osgconv"]

# osgb IncludeFile images: <uint32 size> then the file's bytes; JPEG, PNG and WebP signatures.
_IMAGE_START = re.compile(rb"\xff\xd8\xff|\x89PNG\r\n\x1a\n|RIFF....WEBP", re.DOTALL)


@dataclass
class Geometry:
    """One drawable: a triangle mesh with an optional texture.

    Attributes:
        positions: (n, 3) float64 vertices as stored (local to the production's SRS origin).
        indices: (m, 3) int64 triangles.
        texcoords: (n, 2) float64 UVs with OpenGL's origin (bottom-left), or None.
        texture: index into `OsgFile.images`, or None.
        texture_name: the image's file name as the scene graph names it.
    """

    positions: np.ndarray
    indices: np.ndarray
    texcoords: np.ndarray | None = None
    texture: int | None = None
    texture_name: str | None = None


@dataclass
class LodNode:
    """A PagedLOD (or a bare group of drawables when the file has no PagedLOD).

    Attributes:
        center: (3,) float64 centre of the node's bounding sphere; radius in the same units.
        range_mode: "PIXEL_SIZE_ON_SCREEN" or "DISTANCE_FROM_EYE_POINT".
        ranges: (min, max) per child, as in the file's RangeList.
        child_files: file names of the paged children (the finer level), relative to the file's folder.
        geometries: the drawables shown at this node's own level.
    """

    center: np.ndarray
    radius: float
    range_mode: str = "PIXEL_SIZE_ON_SCREEN"
    ranges: list[tuple[float, float]] = field(default_factory=list)
    child_files: list[str] = field(default_factory=list)
    geometries: list[Geometry] = field(default_factory=list)

    def switch_range(self) -> float | None:
        """The range at which the paged children take over (pixels on screen or metres from the eye)."""
        if not self.child_files or not self.ranges:
            return None
        lo, hi = self.ranges[-1]
        return lo if self.range_mode.startswith("PIXEL") else hi


@dataclass
class OsgFile:
    """The content of one `.osgb` file: its PagedLOD nodes and embedded images (file bytes and MIME types)."""

    path: Path
    nodes: list[LodNode]
    images: list[tuple[bytes, str]]

    def triangle_count(self) -> int:
        return int(sum(len(g.indices) for n in self.nodes for g in n.geometries))


def osgconv_path() -> str:
    """The `osgconv` executable (`$CIM_OSGCONV` or PATH).

    Raises:
        MissingToolError: osgconv is not installed.
    """
    exe = os.environ.get(OSGCONV_ENV) or shutil.which("osgconv")
    if not exe or not Path(exe).exists() and shutil.which(exe) is None:
        raise MissingToolError(
            "osgconv (OpenSceneGraph) is needed to read .osgb files and was not found on PATH; install the Debian "
            "package `openscenegraph` (apt-get install -y openscenegraph) or set CIM_OSGCONV to its path")
    return exe


def has_osgconv() -> bool:
    try:
        osgconv_path()
    except MissingToolError:
        return False
    return True


def run_osgconv(src: Path, dst: Path, options: str = "", timeout: float = 600.0) -> None:
    """Run `osgconv [-O options] src dst` and raise InputError with its output when it fails.

    osgconv runs in `dst`'s folder (it writes side files there), so both paths are handed over absolute: a relative
    path would be resolved against that folder instead of the caller's working directory.
    """
    src, dst = Path(src).absolute(), Path(dst).absolute()
    cmd = [osgconv_path()]
    if options:
        cmd += ["-O", options]
    cmd += [str(src), str(dst)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=dst.parent)
    if proc.returncode != 0 or not dst.is_file():
        msg = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise InputError(f"osgconv could not read {src}: {' / '.join(msg) or 'no output written'}")


class OsgbReaderWarning(CimWarning):
    """The native reader could not read a file, which was read through osgconv instead."""


def osgb_reader(reader: str | None = None) -> OsgbReader:
    """The reader to use: `reader`, else `$CIM_OSGB_READER`, else "native".

    Raises:
        InputError: an unknown reader name.
    """
    name = (reader or os.environ.get(READER_ENV) or "native").strip().lower()
    if name not in ("native", "osgconv"):
        raise InputError(f"OSGB reader {name!r} is unknown; choose 'native' or 'osgconv' ({READER_ENV})")
    return name  # type: ignore[return-value]


def read_osgb(path: str | os.PathLike[str], workdir: str | os.PathLike[str] | None = None, *,
              reader: OsgbReader | None = None) -> OsgFile:
    """Read one `.osgb` file (not its paged children).

    Args:
        path: the `.osgb` file.
        workdir: folder for osgconv's temporary output (a new temporary folder by default).
        reader: "native" (parse the binary stream here) or "osgconv" (through osgconv's `.osg` text); default
            `$CIM_OSGB_READER`, else "native". A file the native reader does not understand is read through
            osgconv, with an OsgbReaderWarning naming what stopped it.

    Raises:
        MissingToolError: the osgconv path is needed and osgconv is not installed.
        InputError: the file cannot be read.
    """
    src = Path(path)
    if not src.is_file():
        raise InputError(f"{src} does not exist")
    if osgb_reader(reader) == "native":
        try:
            return read_osgb_native(src)
        except OsgbFormatError as exc:
            warnings.warn(f"{exc}; reading it through osgconv instead", OsgbReaderWarning, stacklevel=2)
    return _read_osgb_osgconv(src, workdir)


def read_osgb_native(path: str | os.PathLike[str]) -> OsgFile:
    """Read one `.osgb` file with the native binary reader (no osgconv, no fallback).

    Raises:
        OsgbFormatError: a structure the reader does not understand (file, class, property, offset).
    """
    src = Path(path)
    root = read_scene(src.read_bytes(), src)
    loose = LodNode(center=np.zeros(3), radius=0.0)
    nodes: list[LodNode] = []
    tex: dict[int, Obj] = {}
    _walk(root, nodes, loose, np.eye(4), tex, src)
    if loose.geometries:
        pts = np.vstack([g.positions for g in loose.geometries])
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        loose.center, loose.radius = (lo + hi) / 2, float(np.linalg.norm(hi - lo) / 2)
        nodes.insert(0, loose)
    images: list[tuple[bytes, str]] = []
    for n in nodes:
        for g in n.geometries:
            if g.texture_name is not None:
                g.texture = len(images)
                images.append(_native_image(tex[id(g)], src))
    return OsgFile(src, nodes, images)


def _walk(o: Obj, nodes: list[LodNode], owner: LodNode, matrix: np.ndarray, tex: dict[int, Obj], src: Path) -> None:
    """Flatten an object tree as `parse_osg` flattens osgconv's text (same nodes, same order)."""
    cls = o["class"]
    if cls == "osg::PagedLOD":
        nodes.append(_paged_lod(o, matrix, tex, src))
    elif cls == "osg::Geometry":
        owner.geometries.append(_geometry(o, matrix, tex, src))
    elif cls == "osg::MatrixTransform":
        m = matrix @ o["matrix"].T if "matrix" in o else matrix
        for c in o.get("children", []):
            _walk(c, nodes, owner, m, tex, src)
    else:
        for c in o.get("children", []):
            _walk(c, nodes, owner, matrix, tex, src)


def _paged_lod(o: Obj, matrix: np.ndarray, tex: dict[int, Obj], src: Path) -> LodNode:
    node = LodNode(center=np.zeros(3), radius=0.0)
    if o.get("center_mode") == 1 and "center" in o:  # USER_DEFINED_CENTER: the only mode the .osg text writes
        c = np.append(np.asarray(o["center"], np.float32).astype(np.float64), 1.0)
        node.center = (matrix @ c)[:3]
    radius = float(np.float32(o.get("radius", -1.0)))
    node.radius = radius * float(np.cbrt(abs(np.linalg.det(matrix[:3, :3]))))
    node.range_mode = "DISTANCE_FROM_EYE_POINT" if o.get("range_mode", 0) == 0 else "PIXEL_SIZE_ON_SCREEN"
    ranges = o.get("ranges")
    node.ranges = [] if ranges is None else [(float(a), float(b)) for a, b in ranges]
    names = o.get("file_names", [])
    node.child_files = [nm for nm in names if nm]
    if names and len(node.ranges) == len(names):
        node.ranges = [r for r, nm in zip(node.ranges, names) if nm] or node.ranges
    inner: list[LodNode] = []
    for c in o.get("children", []):
        if c["class"] == "osg::Geometry":
            node.geometries.append(_geometry(c, matrix, tex, src))
        elif c["class"] != "osg::PagedLOD":  # the text path drops PagedLODs nested in a PagedLOD
            _walk(c, inner, node, matrix, tex, src)
    return node


def _geometry(o: Obj, matrix: np.ndarray, tex: dict[int, Obj], src: Path) -> Geometry:
    v = o.get("vertices")
    positions = np.zeros((0, 3)) if v is None else v.astype(np.float64)
    texcoords = None
    tcs = o.get("texcoords") or []
    if tcs and tcs[0] is not None:
        texcoords = tcs[0][:, :2].astype(np.float64)
    tris = [_triangles(mode, idx.astype(np.int64)) for mode, idx in o.get("primitives", [])
            if idx is not None and mode != "DrawArrayLengths"]
    if not np.allclose(matrix, np.eye(4)):
        positions = positions @ matrix[:3, :3].T + matrix[:3, 3]
    indices = np.concatenate(tris) if tris else np.zeros((0, 3), np.int64)
    if len(indices) and indices.max() >= len(positions):
        raise OsgbFormatError(f"{src}: triangle index {int(indices.max())} beyond {len(positions)} vertices")
    g = Geometry(positions=positions, indices=indices, texcoords=texcoords)
    image = None
    ss = o.get("stateset")
    for unit in ss.get("texture_units", []) if ss is not None else []:
        for attr in unit:
            img = attr.get("image") if attr["class"] == "osg::Texture2D" else None
            if img is not None and img["file_name"] and _image_loads(img, src):
                image = img
    if image is not None:
        g.texture_name = image["file_name"]
        tex[id(g)] = image
    return g


def _external(img: Obj, src: Path) -> Path:
    name = Path(img["file_name"])
    return name if name.is_absolute() else src.parent / name


def _image_loads(img: Obj, src: Path) -> bool:
    """Whether osgconv would have an image here (an external file it cannot find leaves the texture out)."""
    return img["decision"] in (0, 1) or _external(img, src).is_file()


def _native_image(img: Obj, src: Path) -> tuple[bytes, str]:
    if img["decision"] == 1:
        data = img["file_bytes"]
    elif img["decision"] == 0:
        return _pixels_to_png(img, src), "image/png"
    else:
        data = _external(img, src).read_bytes()
    try:
        return data, _mime(data[:16])
    except InputError as exc:
        raise OsgbFormatError(f"{src}: osg::Image {img['file_name']!r}: {exc}") from exc


# GL pixel formats of 8-bit images -> (channels, Pillow mode, channel order to RGB[A])
_PIXEL_FORMATS = {0x1909: (1, "L", None), 0x190A: (2, "LA", None), 0x1907: (3, "RGB", None),
                  0x1908: (4, "RGBA", None), 0x80E0: (3, "RGB", [2, 1, 0]), 0x80E1: (4, "RGBA", [2, 1, 0, 3])}


def _pixels_to_png(img: Obj, src: Path) -> bytes:
    """An image stored as raw pixels (OSG's IncludeData mode) as a lossless PNG file, top row first."""
    from PIL import Image

    (origin, w, h, depth, _internal, pixel_format, data_type, packing, _mode), data = img["pixels"]
    if data_type != 0x1401 or pixel_format not in _PIXEL_FORMATS or depth != 1:
        raise OsgbFormatError(
            f"{src}: osg::Image {img['file_name']!r} holds raw pixels of GL format {pixel_format:#x}, type "
            f"{data_type:#x}, depth {depth}; only 8-bit 2D L/LA/RGB/RGBA/BGR/BGRA is read natively "
            "(CIM_OSGB_READER=osgconv)")
    channels, mode, order = _PIXEL_FORMATS[pixel_format]
    row = w * channels
    stride = -(-row // max(packing, 1)) * max(packing, 1)
    if len(data) < stride * h:
        raise OsgbFormatError(f"{src}: osg::Image {img['file_name']!r} has {len(data)} bytes of pixels, "
                              f"{w}x{h} needs {stride * h}")
    px = np.frombuffer(data, np.uint8, stride * h).reshape(h, stride)[:, :row].reshape(h, w, channels)
    if order is not None:
        px = px[:, :, order]
    if origin == 0:  # BOTTOM_LEFT: OSG's first row is the bottom one
        px = px[::-1]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(px.squeeze(axis=2) if channels == 1 else px), mode).save(buf, "PNG")
    return buf.getvalue()


def _read_osgb_osgconv(src: Path, workdir: str | os.PathLike[str] | None) -> OsgFile:
    """Read one `.osgb` file through osgconv's `.osg` text."""
    with tempfile.TemporaryDirectory(prefix="cim-osg-", dir=workdir) as tmp:
        out = Path(tmp) / (src.stem + ".osg")
        run_osgconv(src, out, "precision 9")
        text = out.read_text(encoding="utf-8", errors="replace")
        nodes = parse_osg(text, what=str(src))
        images = embedded_images(src.read_bytes())
        names = [g.texture_name for n in nodes for g in n.geometries if g.texture_name is not None]
        if len(images) != len(names):
            images = _written_images(src, Path(tmp), names)
    k = 0
    for n in nodes:
        for g in n.geometries:
            if g.texture_name is not None:
                g.texture = k
                k += 1
    return OsgFile(src, nodes, images)


def _written_images(src: Path, tmp: Path, names: list[str]) -> list[tuple[bytes, str]]:
    """Let osgconv write the textures out (for files whose images are not embedded as files)."""
    out = tmp / (src.stem + "_tex.osgt")
    run_osgconv(src, out, "WriteImageHint=WriteOut")
    images = []
    for name in names:
        f = tmp / Path(name).name
        if not f.is_file():
            raise InputError(f"{src}: texture {name!r} is neither embedded nor written out by osgconv")
        images.append((f.read_bytes(), _mime(f.read_bytes()[:16])))
    return images


def _mime(head: bytes) -> str:
    if head.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    raise InputError(f"unknown image signature {head[:12]!r}")


def embedded_images(data: bytes) -> list[tuple[bytes, str]]:
    """Image files embedded in an `.osgb` (OSG's IncludeFile mode: a uint32 size, then the file), in file order."""
    out = []
    pos = 0
    while True:
        m = _IMAGE_START.search(data, pos)
        if m is None:
            return out
        s = m.start()
        size = struct.unpack_from("<I", data, s - 4)[0] if s >= 4 else 0
        blob = data[s:s + size]
        ok = size > 16 and s + size <= len(data) and (
            (blob[:2] == b"\xff\xd8" and blob[-2:] == b"\xff\xd9") or blob[:4] in (b"\x89PNG", b"RIFF"))
        if ok:
            out.append((blob, _mime(blob[:16])))
            pos = s + size
        else:
            pos = s + 1


# ------------------------------------------------------------------------------------------------ .osg text parser
_ARRAY_HEADER = re.compile(
    r"^(VertexArray|NormalArray|ColorArray|TexCoordArray \d+|SecondaryColorArray|FogCoordArray) "
    r"(Vec[234]Array|Vec[234]dArray|FloatArray|Vec4ubArray) (\d+)$")
_ELEMENTS_HEADER = re.compile(r"^DrawElementsU(?:Int|Short|Byte) (\w+) (\d+)$")
_DRAW_ARRAYS = re.compile(r"^DrawArrays (\w+) (\d+) (\d+)$")


class _Text:
    """A cursor over the lines of an `.osg` file that skips numeric blocks in one step."""

    def __init__(self, text: str, what: str) -> None:
        self.text = text
        self.pos = 0
        self.what = what

    def line(self) -> str | None:
        while self.pos < len(self.text):
            end = self.text.find("\n", self.pos)
            end = len(self.text) if end < 0 else end
            s = self.text[self.pos:end].strip()
            self.pos = end + 1
            if s:
                return s
        return None

    def numbers(self, count: int, opened: bool = False) -> np.ndarray:
        """The numbers of the `{ ... }` block that follows (`opened`: its `{` ended the line just read)."""
        start = self.pos - 1 if opened else self.text.find("{", self.pos)
        end = self.text.find("}", start + 1)
        if start < 0 or end < 0:
            raise InputError(f"{self.what}: unterminated array block")
        values = np.fromstring(self.text[start + 1:end], sep=" ")
        self.pos = end + 1
        if len(values) != count:
            raise InputError(f"{self.what}: array block has {len(values)} numbers, expected {count}")
        return values

    def skip_block(self) -> None:
        depth = 1
        while depth:
            s = self.line()
            if s is None:
                return
            depth += s.count("{") - s.count("}")


def parse_osg(text: str, *, what: str = ".osg") -> list[LodNode]:
    """Parse the text of an `.osg` file into PagedLOD nodes with their own geometry.

    Drawables outside any PagedLOD form one node without children; MatrixTransforms are applied to the vertices.
    """
    cur = _Text(text, what)
    loose = LodNode(center=np.zeros(3), radius=0.0)
    nodes: list[LodNode] = []
    _parse_children(cur, nodes, loose, np.eye(4), depth=0)
    if loose.geometries:
        pts = np.vstack([g.positions for g in loose.geometries])
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        loose.center, loose.radius = (lo + hi) / 2, float(np.linalg.norm(hi - lo) / 2)
        nodes.insert(0, loose)
    return nodes


def _parse_children(cur: _Text, nodes: list[LodNode], owner: LodNode, matrix: np.ndarray, depth: int) -> None:
    """Read lines until the closing brace of the current block, collecting nodes and drawables."""
    while True:
        s = cur.line()
        if s is None or s == "}":
            return
        if s.endswith("{"):
            name = s[:-1].strip()
            if name == "PagedLOD":
                node = _parse_paged_lod(cur, matrix)
                nodes.append(node)
            elif name == "Geometry":
                owner.geometries.append(_parse_geometry(cur, matrix))
            elif name == "MatrixTransform":
                _parse_transform(cur, nodes, owner, matrix, depth)
            elif name in ("Group", "Geode", "LOD", "PositionAttitudeTransform", "ProxyNode", "Node"):
                _parse_children(cur, nodes, owner, matrix, depth + 1)
            else:
                cur.skip_block()


def _parse_transform(cur: _Text, nodes: list[LodNode], owner: LodNode, parent: np.ndarray, depth: int) -> None:
    matrix = parent
    while True:
        s = cur.line()
        if s is None or s == "}":
            return
        if s.startswith("Matrix"):
            if s.endswith("{"):
                vals = cur.numbers(16, opened=True)
            else:
                vals = np.array([float(v) for v in s.split()[1:]])
            # OSG matrices are row-major with row vectors: p' = p @ M
            matrix = parent @ vals.reshape(4, 4).T
        elif s.endswith("{"):
            name = s[:-1].strip()
            if name == "Geometry":
                owner.geometries.append(_parse_geometry(cur, matrix))
            elif name == "PagedLOD":
                nodes.append(_parse_paged_lod(cur, matrix))
            elif name in ("Group", "Geode", "LOD", "MatrixTransform"):
                if name == "MatrixTransform":
                    _parse_transform(cur, nodes, owner, matrix, depth + 1)
                else:
                    _parse_children(cur, nodes, owner, matrix, depth + 1)
            else:
                cur.skip_block()


def _parse_paged_lod(cur: _Text, matrix: np.ndarray) -> LodNode:
    node = LodNode(center=np.zeros(3), radius=0.0)
    inner: list[LodNode] = []
    while True:
        s = cur.line()
        if s is None or s == "}":
            break
        if s.startswith("Center "):
            c = np.array([float(v) for v in s.split()[1:4]] + [1.0])
            node.center = (matrix @ c)[:3]
        elif s.startswith("Radius "):
            node.radius = float(s.split()[1]) * float(np.cbrt(abs(np.linalg.det(matrix[:3, :3]))))
        elif s.startswith("RangeMode "):
            node.range_mode = s.split()[1]
        elif s.startswith("RangeList "):
            n = int(s.split()[1])
            vals = cur.numbers(2 * n, opened=True).reshape(n, 2)
            node.ranges = [(float(a), float(b)) for a, b in vals]
        elif s.startswith("FileNameList "):
            n = int(s.split()[1])
            names = []
            for _ in range(n):
                line = cur.line() or ""
                names.append(line.strip().strip('"'))
            cur.line()  # closing brace
            node.child_files = [nm for nm in names if nm]
            # ranges of paged children only, in the same order as their names
            if len(node.ranges) == n:
                node.ranges = [r for r, nm in zip(node.ranges, names) if nm] or node.ranges
        elif s.endswith("{"):
            name = s[:-1].strip()
            if name == "Geometry":
                node.geometries.append(_parse_geometry(cur, matrix))
            elif name in ("Group", "Geode", "LOD"):
                _parse_children(cur, inner, node, matrix, 1)
            elif name == "MatrixTransform":
                _parse_transform(cur, inner, node, matrix, 1)
            else:
                cur.skip_block()
    return node


def _parse_geometry(cur: _Text, matrix: np.ndarray) -> Geometry:
    positions = None
    texcoords = None
    tris: list[np.ndarray] = []
    texture_name = None
    depth = 1
    while depth:
        s = cur.line()
        if s is None:
            break
        m = _ARRAY_HEADER.match(s)
        if m:
            kind, vtype, n = m.group(1), m.group(2), int(m.group(3))
            width = int(vtype[3]) if vtype.startswith("Vec") else 1
            if vtype == "Vec4ubArray":
                width = 4
            vals = cur.numbers(n * width).reshape(n, width) if n else np.zeros((0, width))
            if kind == "VertexArray":
                positions = vals
            elif kind == "TexCoordArray 0":
                texcoords = vals[:, :2]
            continue
        m = _ELEMENTS_HEADER.match(s)
        if m:
            mode, n = m.group(1), int(m.group(2))
            tris.append(_triangles(mode, cur.numbers(n).astype(np.int64)))
            continue
        m = _DRAW_ARRAYS.match(s)
        if m:
            first, n = int(m.group(2)), int(m.group(3))
            tris.append(_triangles(m.group(1), np.arange(first, first + n, dtype=np.int64)))
            continue
        if s.startswith("file "):
            texture_name = s[5:].strip().strip('"')
            continue
        depth += s.count("{") - s.count("}")
    if positions is None:
        positions = np.zeros((0, 3))
    if not np.allclose(matrix, np.eye(4)):
        positions = positions @ matrix[:3, :3].T + matrix[:3, 3]
    indices = np.concatenate(tris) if tris else np.zeros((0, 3), np.int64)
    if len(indices) and indices.max() >= len(positions):
        raise InputError(f"{cur.what}: triangle index {int(indices.max())} beyond {len(positions)} vertices")
    return Geometry(positions=positions, indices=indices, texcoords=texcoords, texture_name=texture_name)


def _triangles(mode: str, idx: np.ndarray) -> np.ndarray:
    """(m, 3) triangles of an OpenGL primitive set (points and lines give none)."""
    if mode == "TRIANGLES":
        return idx[: len(idx) // 3 * 3].reshape(-1, 3)
    if mode == "TRIANGLE_STRIP" and len(idx) >= 3:
        k = np.arange(len(idx) - 2)
        t = np.column_stack([idx[k], idx[k + 1], idx[k + 2]])
        odd = k % 2 == 1
        t[odd] = t[odd][:, [1, 0, 2]]
        return t[(t[:, 0] != t[:, 1]) & (t[:, 1] != t[:, 2]) & (t[:, 0] != t[:, 2])]
    if mode == "TRIANGLE_FAN" and len(idx) >= 3:
        k = np.arange(1, len(idx) - 1)
        return np.column_stack([np.full(len(k), idx[0]), idx[k], idx[k + 1]])
    if mode in ("QUADS",) and len(idx) >= 4:
        q = idx[: len(idx) // 4 * 4].reshape(-1, 4)
        return np.vstack([q[:, [0, 1, 2]], q[:, [0, 2, 3]]])
    return np.zeros((0, 3), np.int64)


__all__ = ["Geometry", "LodNode", "OsgFile", "OsgbReaderWarning", "embedded_images", "has_osgconv", "osgb_reader",
           "osgconv_path", "parse_osg", "read_osgb", "read_osgb_native", "run_osgconv"]
