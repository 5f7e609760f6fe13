"""Geometry compression for glb content: EXT_meshopt_compression + KHR_mesh_quantization, or KHR_draco_mesh_compression.

Every function here is a pure function of its arrays (no global state), so a tile is encoded the same in any worker
process. `tiles.gltf` calls them while it writes a glb; `read_glb` calls the decoders.

Quantization (KHR_mesh_quantization) stores positions as unsigned 16-bit integers on a grid of one uniform step `s`
per node, dequantized by the node's `scale` (s) and `translation` (the grid's origin); normals as normalized signed
bytes; texture coordinates in [0, 1] as normalized unsigned shorts; feature IDs as unsigned shorts (exact). A vertex
moves at most s/2 per axis. The step is chosen so that s/2 <= `position_tolerance` (5 mm by default: a vertex stays
within 5 mm x sqrt(3) < 1 cm of where the builder put it); content wider than 65535 steps is cut into parts along a
grid, each part a node of its own with its own origin, or put on one grid of the same step whose integers are held
in float32 (`Grid.wide`), whichever file is smaller (`tiles.gltf.MeshContent.to_glb`). The meshopt codec
(meshoptimizer, through the `meshopt` binding) is lossless on the quantized bytes; vertices are put in vertex-cache
order first, which is what makes the index codec small.

Draco quantizes positions with as many bits as the same tolerance needs over the primitive's extent (up to 30) and
keeps feature IDs as a lossless generic attribute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from tiles.errors import EncodingOptionError, TilesError

Compression = Literal["none", "meshopt", "draco"]
TextureFormat = Literal["auto", "original", "webp", "ktx2"]
TEXTURE_FORMATS: tuple[str, ...] = ("auto", "original", "webp", "ktx2")
# Default qualities of re-encoded textures. WebP 80 against JPEG 85 (the builders' JPEG quality) on the real
# orthophotos of ../shared/data: PSNR 34.1 vs 32.1 dB at 81 % of the bytes (Bali drone), 30.0 vs 29.6 dB at 69 %
# (Colorado HRO); on the sample city's synthetic orthophoto 37.3 dB at 59 %.
WEBP_QUALITY = 80
# WebP quality of a texture whose unsampled texels were filled (`tiles.textures.fill_unsampled`: LOD2 roof textures).
# At 80 the roof texels came out 0.3-2.1 dB below WebP 80 of the whole window (the encoder spends its bits by
# segment, and the flat fill changes the segments); at 90 they are 1.4-2.6 dB above that and 1.4-3.1 dB above JPEG 85
# (the builders' JPEG before the lightweight work), SSIM higher too, on the sample city's five LOD2 tiles, at 0.34
# of the whole window's WebP 80 bytes (docs/lightweight.md).
WEBP_QUALITY_FILLED = 90
KTX2_QUALITY = 85
COMPRESSIONS: tuple[str, ...] = ("none", "meshopt", "draco")

# glTF component types
BYTE, UNSIGNED_BYTE, SHORT, UNSIGNED_SHORT, UNSIGNED_INT, FLOAT = 5120, 5121, 5122, 5123, 5125, 5126
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
_QMAX = 65535
_FMAX = 2**24 - 1  # the largest integer range float32 holds exactly


@dataclass(frozen=True)
class GlbOptions:
    """How `MeshContent.to_glb` encodes a tile.

    Attributes:
        compression: "meshopt" (EXT_meshopt_compression + KHR_mesh_quantization, the default), "draco"
            (KHR_draco_mesh_compression, smallest geometry, slower to decode) or "none" (float32 attributes).
        position_tolerance: largest quantization error of a vertex coordinate, metres (meshopt and draco).
        textures: "auto" (the default): textures the engine makes itself (terrain and LOD2 textures from the
            orthophoto, oblique atlases of merged levels) are encoded straight to WebP (EXT_texture_webp), JPEGs
            a production holds keep their pixels, re-coded losslessly to fewer bytes (no second lossy generation,
            `tiles.textures.optimize_jpeg`); "original" keeps JPEG/PNG/WebP byte for byte as the builders made or
            the production holds them; "webp" re-encodes every photo as WebP; "ktx2" as
            KTX2/Basis Universal (KHR_texture_basisu), see `tiles.textures`.
        ktx2_mode: "etc1s" (small, for photos) or "uastc" (higher quality, larger).
        texture_fallback: with "auto"/"ktx2"/"webp", keep a JPEG/PNG image as the fallback a client without the
            extension uses (the extension is then used, not required; the file holds both images).
        texture_quality: quality of encoded textures (WebP quality; ETC1S quality level 1-255 is derived); None:
            WebP 80 (`WEBP_QUALITY`), KTX2 85.
        draco_level: Draco compression level (0-10).
    """

    compression: Compression = "meshopt"
    position_tolerance: float = 0.005
    textures: TextureFormat = "auto"
    ktx2_mode: Literal["etc1s", "uastc"] = "etc1s"
    texture_fallback: bool = False
    texture_quality: int | None = None
    draco_level: int = 7

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise EncodingOptionError(f"compression {self.compression!r} is not one of {', '.join(COMPRESSIONS)}")
        if self.textures not in TEXTURE_FORMATS:
            raise EncodingOptionError(f"textures {self.textures!r} is not one of {', '.join(TEXTURE_FORMATS)}")
        if self.ktx2_mode not in ("etc1s", "uastc"):
            raise EncodingOptionError(f"ktx2_mode {self.ktx2_mode!r} is not one of etc1s, uastc")
        if not 0.0001 <= self.position_tolerance <= 1.0:
            raise EncodingOptionError(f"position_tolerance {self.position_tolerance} m must be between 0.0001 and 1")
        if self.texture_quality is not None and not 1 <= self.texture_quality <= 100:
            raise EncodingOptionError(f"texture_quality {self.texture_quality} must be between 1 and 100")
        if not 0 <= self.draco_level <= 10:
            raise EncodingOptionError(f"draco_level {self.draco_level} must be between 0 and 10")

    @property
    def webp_quality(self) -> int:
        return WEBP_QUALITY if self.texture_quality is None else self.texture_quality

    @property
    def ktx2_quality(self) -> int:
        return KTX2_QUALITY if self.texture_quality is None else self.texture_quality

    @property
    def makes_webp(self) -> bool:
        """Whether textures the engine makes itself are encoded as WebP (rather than JPEG, to be converted later)."""
        return self.textures in ("auto", "webp")


# --------------------------------------------------------------------------------------------- quantization
def max_part_extent(tolerance: float) -> float:
    """The widest extent (metres) one 16-bit grid covers with an error of at most `tolerance` per axis."""
    return 2.0 * tolerance * _QMAX


def split_parts(positions: list[np.ndarray], indices: list[np.ndarray], tolerance: float) -> list[list[np.ndarray]]:
    """Triangles of each primitive grouped into parts whose vertices fit one 16-bit grid within `tolerance`.

    Args:
        positions: per primitive, (n, 3) float glTF coordinates.
        indices: per primitive, (m, 3) int triangles.
        tolerance: largest error per axis, metres.

    Returns:
        per part, per primitive, the (k,) indices of the triangles of that primitive in the part (k may be 0).
        One part when everything fits; else a grid of cells of 3/4 of the largest extent, by triangle centroid (a
        part that still comes out too wide, through a large triangle, keeps float positions: see `Grid.fit`).
    """
    limit = max_part_extent(tolerance)
    lo = np.min([p.min(axis=0) for p in positions if len(p)], axis=0)
    hi = np.max([p.max(axis=0) for p in positions if len(p)], axis=0)
    if float((hi - lo).max()) <= limit:
        return [[np.arange(len(t)) for t in indices]]
    cell = 0.75 * limit
    keys = []
    for p, t in zip(positions, indices):
        c = p[t].mean(axis=1) if len(t) else np.zeros((0, 3))
        keys.append(np.floor((c - lo) / cell).astype(np.int64))
    allkeys = np.unique(np.concatenate([k for k in keys if len(k)]), axis=0)
    parts = []
    for key in allkeys:
        parts.append([np.nonzero(np.all(k == key, axis=1))[0] for k in keys])
    return parts


@dataclass
class Grid:
    """A position grid: glTF position = origin + step * q, q unsigned 16-bit integers, or (`wide`) integers held
    exactly in float32 (any q below 2^24: one grid over up to 167 km at a 1 cm step, for content that one 16-bit
    grid does not cover)."""

    origin: np.ndarray  # (3,) float64
    step: float
    wide: bool = False

    @classmethod
    def fit(cls, positions: np.ndarray, tolerance: float, wide: bool = False) -> Grid | None:
        """The grid over `positions` (n, 3), or None when they are too wide for `tolerance` (kept as floats): wider
        than 65535 steps without `wide`, than 2^24 - 1 steps with it."""
        lo = positions.min(axis=0).astype(np.float64)
        extent = float((positions.max(axis=0) - lo).max())
        # the coarsest step within tolerance: a rounding error of at most step / 2 = tolerance per axis
        step = 2.0 * tolerance
        if extent <= max_part_extent(tolerance):
            return cls(lo, step)
        if wide and extent / step < _FMAX:
            return cls(lo, step, wide=True)
        return None

    def quantize(self, positions: np.ndarray) -> np.ndarray:
        """(n, 3) grid coordinates: uint16, or float32 integers when `wide`."""
        q = np.rint((positions.astype(np.float64) - self.origin) / self.step)
        if q.min() < 0 or q.max() > (_FMAX if self.wide else _QMAX):
            raise TilesError("position outside its quantization grid (internal error)")
        return q.astype(np.float32 if self.wide else np.uint16)


def quantize_normals(normals: np.ndarray) -> np.ndarray:
    """(n, 3) unit normals -> (n, 4) int8 rows (x, y, z normalized, 0 padding)."""
    out = np.zeros((len(normals), 4), np.int8)
    out[:, :3] = np.clip(np.rint(np.asarray(normals, np.float64) * 127.0), -127, 127)
    return out


def quantize_uv(uv: np.ndarray) -> np.ndarray | None:
    """(n, 2) texture coordinates in [0, 1] -> (n, 2) normalized uint16, or None when any is outside [0, 1]."""
    uv = np.asarray(uv, np.float64)
    if len(uv) and (uv.min() < 0.0 or uv.max() > 1.0 or not np.isfinite(uv).all()):
        return None
    return np.rint(uv * _QMAX).astype(np.uint16)


def pad_rows(a: np.ndarray) -> np.ndarray:
    """Rows of `a` as bytes padded with zeros to a multiple of 4 (glTF vertex alignment, meshopt's vertex size)."""
    a = np.ascontiguousarray(a)
    rows = a.reshape(len(a), -1).view(np.uint8).reshape(len(a), -1)
    width = rows.shape[1]
    padded = -(-width // 4) * 4
    if padded == width:
        return rows
    out = np.zeros((len(a), padded), np.uint8)
    out[:, :width] = rows
    return out


# ---------------------------------------------------------------------------------------------------- meshopt
def _meshopt():
    try:
        import meshopt
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise TilesError("EXT_meshopt_compression needs the `meshopt` package: pip install meshopt") from exc
    return meshopt


def vertex_cache_order(indices: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Triangles in vertex-cache order and vertices in first-use order (meshoptimizer), unused vertices dropped.

    Args:
        indices: (m, 3) int triangles.
        n: vertex count.

    Returns:
        (new (m, 3) uint32 triangles, (k,) int64 old vertex index of each new vertex).
    """
    mo = _meshopt()
    new, remap, unique = mo.reorder_mesh(np.ascontiguousarray(indices, np.uint32).reshape(-1), triangles=True,
                                         optsize=False)
    remap = np.asarray(remap[:n], np.int64)
    used = remap != 0xFFFFFFFF
    order = np.empty(int(unique), np.int64)
    order[remap[used]] = np.nonzero(used)[0]
    return np.asarray(new, np.uint32).reshape(-1, 3), order


def meshopt_encode_attribute(rows: np.ndarray) -> bytes:
    """(n, k) uint8 rows (k a multiple of 4, at most 256) -> EXT_meshopt_compression ATTRIBUTES data (codec v0)."""
    return _meshopt().encode_gltf_buffer(np.ascontiguousarray(rows), "ATTRIBUTES", 0)


def meshopt_encode_triangles(indices: np.ndarray, n: int) -> tuple[bytes, int]:
    """Triangle indices -> (TRIANGLES data, index size 2 or 4)."""
    data = _meshopt().encode_gltf_buffer(np.ascontiguousarray(indices, np.uint32).reshape(-1), "TRIANGLES")
    return data, 2 if n <= 0xFFFF else 4


def meshopt_decode(data: bytes, count: int, stride: int, mode: str, filter: str | None = None) -> bytes:
    """Decode one EXT_meshopt_compression bufferView (meshoptimizer's own decoder) to its plain bytes."""
    out = _meshopt().decode_gltf_buffer(data, count, stride, mode, None if filter in (None, "NONE") else filter)
    return np.ascontiguousarray(out).tobytes()


# ------------------------------------------------------------------------------------------------------ draco
def _draco():
    try:
        import DracoPy
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise TilesError("KHR_draco_mesh_compression needs the `DracoPy` package: pip install DracoPy") from exc
    return DracoPy


@dataclass
class DracoPrimitive:
    """A primitive encoded by Draco and decoded again (glTF needs the decoded counts and bounds)."""

    data: bytes
    attribute_ids: dict[str, int]  # glTF semantic -> Draco unique id
    count: int  # decoded vertices
    index_count: int
    position_min: list[float]
    position_max: list[float]
    fid_max: int | None


_DRACO_TYPES = {0: "POSITION", 1: "NORMAL", 3: "TEXCOORD_0"}


def draco_bits(positions: np.ndarray, tolerance: float) -> int:
    """Position quantization bits so that Draco's step over the primitive's extent keeps `tolerance`."""
    extent = float((positions.max(axis=0) - positions.min(axis=0)).max()) if len(positions) else 0.0
    if extent <= 0:
        return 11
    return int(min(30, max(11, math.ceil(math.log2(extent / (2.0 * tolerance) + 1.0)))))


def draco_encode(positions: np.ndarray, indices: np.ndarray, normals: np.ndarray | None, uv: np.ndarray | None,
                 feature_ids: np.ndarray | None, tolerance: float, level: int,
                 extra_ids: list[np.ndarray] | tuple[np.ndarray, ...] = ()) -> DracoPrimitive:
    """Encode one primitive with Draco (glTF coordinates) and read back what a client will decode.

    Feature IDs travel as generic uint16 attributes (lossless), `extra_ids` as `_FEATURE_ID_1`, ...; the decode
    checks they came back exact.
    """
    dp = _draco()
    kwargs: dict[str, Any] = {}
    if normals is not None:
        kwargs.update(normals=np.asarray(normals, np.float64), normal_quantization_bits=10)
    if uv is not None:
        kwargs.update(tex_coord=np.asarray(uv, np.float64), tex_coord_quantization_bits=14)
    if feature_ids is not None:
        if feature_ids.max() >= 0xFFFF:
            raise TilesError("Draco feature IDs are stored as uint16: a tile holds at most 65535 features")
        kwargs["generic_attributes"] = {"_FEATURE_ID_0": np.asarray(feature_ids, np.uint16).reshape(-1, 1)}
    for k, ids in enumerate(extra_ids, start=1):
        if feature_ids is None or ids.max() >= 0xFFFF:
            raise TilesError("Draco: extra feature ID sets need set 0 and IDs below 65535")
        kwargs["generic_attributes"][f"_FEATURE_ID_{k}"] = np.asarray(ids, np.uint16).reshape(-1, 1)
    data = dp.encode(np.asarray(positions, np.float64), np.asarray(indices, np.uint32).reshape(-1, 3),
                     quantization_bits=draco_bits(positions, tolerance), compression_level=level,
                     create_metadata=feature_ids is not None, **kwargs)
    mesh = dp.decode(data)
    ids: dict[str, int] = {}
    fid_max = None
    for attr in mesh.attributes:
        kind = attr["attribute_type"]
        if kind in _DRACO_TYPES:
            ids[_DRACO_TYPES[kind]] = int(attr["unique_id"])
        elif attr.get("name") == "_FEATURE_ID_0":
            ids["_FEATURE_ID_0"] = int(attr["unique_id"])
            decoded = np.asarray(attr["data"]).reshape(-1)
            fid_max = int(decoded.max()) if len(decoded) else 0
            if feature_ids is not None and not set(np.unique(decoded)) <= set(np.unique(feature_ids).tolist()):
                raise TilesError("Draco changed feature IDs (internal error)")
        elif str(attr.get("name", "")).startswith("_FEATURE_ID_"):
            name = str(attr["name"])
            ids[name] = int(attr["unique_id"])
            decoded = np.asarray(attr["data"]).reshape(-1)
            if not set(np.unique(decoded)) <= set(np.unique(extra_ids[int(name.rsplit("_", 1)[1]) - 1]).tolist()):
                raise TilesError("Draco changed feature IDs (internal error)")
    pts = np.asarray(mesh.points, np.float32).reshape(-1, 3)
    return DracoPrimitive(bytes(data), ids, len(pts), int(np.asarray(mesh.faces).size),
                          [float(v) for v in pts.min(axis=0)], [float(v) for v in pts.max(axis=0)], fid_max)


def draco_decode(data: bytes) -> dict[int, np.ndarray]:
    """Draco unique id -> decoded attribute values, plus key -1 for the (m, 3) triangles."""
    mesh = _draco().decode(data)
    out: dict[int, np.ndarray] = {-1: np.asarray(mesh.faces).reshape(-1, 3)}
    for attr in mesh.attributes:
        out[int(attr["unique_id"])] = np.asarray(attr["data"])
    return out


__all__ = ["COMPRESSIONS", "Compression", "DracoPrimitive", "GlbOptions", "Grid", "TEXTURE_FORMATS", "TextureFormat",
           "draco_decode", "draco_encode", "max_part_extent", "meshopt_decode", "meshopt_encode_attribute",
           "meshopt_encode_triangles", "pad_rows", "quantize_normals", "quantize_uv", "split_parts",
           "vertex_cache_order"]
