"""Oblique photography (ContextCapture productions) to 3D Tiles 1.1, with optional singulation by footprints.

Data flow: `metadata.xml` -> Georeference; every mesh file of every tile (`.osgb` through `cim.sources.osgb`, or OBJ/PLY/glTF
through trimesh) is read on its own, in parallel -> one glb per PagedLOD node: vertices placed exactly (per-vertex
pyproj transform to ECEF, then float32 in an east-north-up frame at the node), the original JPEG as texture, unlit
(the photos carry their light) -> the pyramid becomes a REPLACE tree whose geometric errors come from the PagedLOD
ranges -> merged coarse levels on top (a quadtree of tiles whose content is the children's coarsest meshes, vertex-
clustered, on one downscaled texture atlas) so the whole production draws from afar.

Geometric error from a PagedLOD range: OSG switches to the children when the node's bounding sphere (radius r)
covers more than P pixels on screen (PIXEL_SIZE_ON_SCREEN), i.e. at about 2r/P metres per pixel; a 3D Tiles client
refines when geometricError / (metres per pixel) exceeds its maximum screen-space error (16 px by default), so the
node's geometric error is 16 * 2r / P. For DISTANCE_FROM_EYE_POINT (children within D metres) it is 16 * D / K with
K = 935 px, the focal length of a 1080-px-high view with a 60-degree field of view. Nodes whose children are absent
from the production are leaves (error 0).

Singulation (单体化): with footprints, a triangle belongs to a building when its centroid lies inside the
footprint (the vertical prism above it); triangles straddling a wall go wholly to the side of their centroid. Each
glb then has two primitives per texture: the unassigned part and the buildings' part with `_FEATURE_ID_0` (vertices
duplicated where triangles of two features met) and the buildings' attributes as EXT_structural_metadata.
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
from PIL import Image

from cim.errors import BuildError, InputError, InputNotFoundError
from cim.files import replace_dir
from cim.geodesy import ecef_to_geodetic, region_of, union_regions
from cim.models.deviation import hausdorff
from cim.sources import crs as crsmod
from cim.sources.contextcapture import (
    Georeference,
    ProductionTile,
    enu_at,
    find_tiles,
    level_of,
    read_metadata,
)
from cim.sources.osgb import Geometry, LodNode, OsgFile, read_osgb
from cim.sources.vertical import ELLIPSOIDAL, VerticalDatum
from cim.tiling import Ref, Runner, Wave, runner_scope
from tiles.compression import GlbOptions
from tiles.gltf import Material, MeshContent, Primitive, PropertyTable
from tiles.textures import encode_texture
from tiles.tileset import BoundingVolume, Content, Tile, Tileset, relative_transforms, write_atomic

Progress = Callable[[str, int, int], None]

# input bytes a conversion task should carry at least (about 0.1 s of work): a small production runs as a few tasks a
# worker, not eight (the 31 MB Zhongshan production on 2 workers: 0.55 s instead of 0.63, docs/benchmarks.md)
MIN_TASK_BYTES = 6_000_000
MAX_SSE_PX = 16.0
FOCAL_PX = 935.0  # 1080 px high, 60 degree vertical field of view


@dataclass
class ObliqueOptions:
    """How a production becomes 3D Tiles.

    Attributes:
        workers: Dask worker processes of the local cluster the build starts; None -> one per CPU core.
        merge_fanout: production tiles (or merged nodes) grouped under one merged coarse node.
        atlas_size: largest side in pixels of a merged node's texture atlas.
        jpeg_quality: quality of re-encoded atlas textures (source textures are copied unchanged).
        id_field: footprint attribute holding building IDs (singulation); None -> first known ID column.
        prefix: folder of the glb files inside the output.
        glb: how tiles are encoded (compression, textures; `tiles.compression.GlbOptions`).
        vertical_datum: what input heights are measured from (`cim.sources.vertical.VerticalDatum`); they become
            ellipsoidal heights (h = H + N) before anything is placed.
    """

    workers: int | None = None
    merge_fanout: int = 4
    atlas_size: int = 2048
    jpeg_quality: int = 85
    id_field: str | None = None
    prefix: str = "oblique"
    glb: GlbOptions = field(default_factory=GlbOptions)
    vertical_datum: VerticalDatum = ELLIPSOIDAL


@dataclass
class ObliqueResult:
    """What `build_oblique` produced (the root tile carries absolute transforms)."""

    root: Tile
    georeference: str
    tiles: int
    files: int
    levels: list[int]
    contents: int
    merged_contents: int
    triangles: int
    textures: int
    input_bytes: int
    buildings: int
    singulated_triangles: int
    lonlat_bounds: tuple[float, float, float, float]
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "georeference": self.georeference,
            "tiles": self.tiles,
            "files": self.files,
            "levels": self.levels,
            "contents": self.contents,
            "merged_contents": self.merged_contents,
            "triangles": self.triangles,
            "textures": self.textures,
            "input_bytes": self.input_bytes,
            "buildings": self.buildings,
            "singulated_triangles": self.singulated_triangles,
            "lonlat_bounds": list(self.lonlat_bounds),
            "seconds": round(self.seconds, 3),
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "warnings": self.warnings,
        }


@dataclass
class _NodeOut:
    """One converted PagedLOD node: its glb, placement, error and the files of its children."""

    uri: str
    region: list[float]
    transform: list[float]
    error: float
    child_files: list[str]
    triangles: int
    singulated: int


@dataclass
class _Coarse:
    """A coarse mesh handed up for merging: (n, 3) float64 ECEF, (n, 2) UVs (top-left origin), (m, 3) triangles,
    and one image per primitive group (`group`: (m,) index into images)."""

    ecef: np.ndarray
    uv: np.ndarray
    tris: np.ndarray
    group: np.ndarray
    images: list[bytes]


@dataclass
class _FileOut:
    path: str
    nodes: list[_NodeOut]
    coarse: _Coarse | None
    level: int | None
    textures: int
    size: int


# ----------------------------------------------------------------------------------------------------- geometric error
def geometric_error(node: LodNode) -> float | None:
    """The 3D Tiles geometric error equivalent to a PagedLOD's switch range (see the module docstring)."""
    rng = node.switch_range()
    if rng is None or not math.isfinite(rng) or rng <= 0:
        return None
    if node.range_mode.startswith("PIXEL"):
        return MAX_SSE_PX * 2.0 * node.radius / rng
    return MAX_SSE_PX * rng / FOCAL_PX


# ------------------------------------------------------------------------------------------------------- mesh files
def read_mesh_file(path: Path) -> OsgFile:
    """An OBJ/PLY/glTF mesh tile as one node without paged children (textures re-encoded only when not JPEG/PNG)."""
    import trimesh

    try:
        loaded = trimesh.load(str(path), process=False, maintain_order=True)
    except Exception as exc:  # noqa: BLE001 - trimesh raises many types for unreadable files
        raise InputError(f"cannot read mesh {path}: {exc}") from exc
    meshes = list(loaded.geometry.values()) if isinstance(loaded, trimesh.Scene) else [loaded]
    geoms: list[Geometry] = []
    images: list[tuple[bytes, str]] = []
    for mesh in meshes:
        if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
            continue
        g = Geometry(positions=np.asarray(mesh.vertices, np.float64), indices=np.asarray(mesh.faces, np.int64))
        visual = mesh.visual
        uv = getattr(visual, "uv", None)
        image = getattr(getattr(visual, "material", None), "image", None)
        if image is None:
            image = getattr(getattr(visual, "material", None), "baseColorTexture", None)
        if uv is not None and image is not None and len(uv) == len(g.positions):
            g.texcoords = np.asarray(uv, np.float64)
            g.texture = len(images)
            g.texture_name = getattr(image, "filename", None) or f"texture{len(images)}"
            images.append(_image_bytes(image))
        geoms.append(g)
    if not geoms:
        raise InputError(f"mesh {path} has no triangles")
    pts = np.vstack([g.positions for g in geoms])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    node = LodNode(center=(lo + hi) / 2, radius=float(np.linalg.norm(hi - lo) / 2), geometries=geoms)
    return OsgFile(path, [node], images)


def _image_bytes(image: Image.Image) -> tuple[bytes, str]:
    fmt = (image.format or "").upper()
    name = getattr(image, "filename", "")
    if fmt in ("JPEG", "PNG", "WEBP") and name and Path(name).is_file():
        return Path(name).read_bytes(), f"image/{fmt.lower()}"
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue(), "image/jpeg"


def _mesh_children(tile: ProductionTile) -> dict[str, list[str]]:
    """Parent -> child file names of a mesh export, from ContextCapture names (`..._L17_0uu` -> `..._L18_0uu*`)."""
    out: dict[str, list[str]] = {}
    by_level: dict[int, list[Path]] = {}
    for f in tile.files:
        lv = level_of(f.stem)
        if lv is not None:
            by_level.setdefault(lv, []).append(f)
    for lv, files in by_level.items():
        for f in files:
            code = f.stem.split(f"_L{lv}_", 1)[1]
            kids = [c.name for c in by_level.get(lv + 1, []) if c.stem.split(f"_L{lv + 1}_", 1)[1].startswith(code)]
            out[f.name] = kids
    if tile.root_file.name not in out or level_of(tile.root_file.stem) is None:
        levels = sorted(by_level)
        if levels and level_of(tile.root_file.stem) is None:
            out[tile.root_file.name] = [f.name for f in by_level[levels[0]]]
    return out


# -------------------------------------------------------------------------------------------------- conversion
def _convert_file(job: tuple[str, str, list[str] | None, bool], state: dict[str, Any]) -> _FileOut:
    """Read one mesh file and write one glb per node; returns placement, errors and (for tile roots) a coarse mesh.

    A Dask task; `state` holds the georeference, the output folder and the singulation data."""
    path_s, uri_base, mesh_children, is_root = job
    path = Path(path_s)
    geo: Georeference = state["geo"]
    out: Path = state["out"]
    src = read_osgb(path) if path.suffix.lower() == ".osgb" else read_mesh_file(path)
    if mesh_children is not None:
        for node in src.nodes:
            node.child_files = list(mesh_children)
    nodes: list[_NodeOut] = []
    coarse_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, bytes | None]] = []
    usable = [n for n in src.nodes if any(len(g.indices) for g in n.geometries)]
    for k, node in enumerate(usable):
        present = [c for c in node.child_files if (path.parent / c).is_file()]
        error = geometric_error(node) if present else 0.0
        if error is None:
            error = _error_from_mesh(node)
        uri = f"{uri_base}.glb" if len(usable) == 1 else f"{uri_base}_{k}.glb"
        prims, ecef_all, singulated, table = _node_primitives(node, src, geo, coarse_parts if is_root else None,
                                                              state)
        frame = enu_at(ecef_all)
        for p, e in prims:
            p.positions = frame.to_local(e).astype(np.float32)
        content = MeshContent([p for p, _ in prims], table)
        write_atomic(out / uri, content.to_glb(state["glb"]))
        nodes.append(_NodeOut(uri=uri, region=region_of(ecef_all, pad_m=0.01), transform=frame.column_major(),
                              error=float(error), child_files=present, triangles=content.triangle_count(),
                              singulated=singulated))
    coarse = None
    if is_root and coarse_parts:
        coarse = _stack_coarse(coarse_parts)
    return _FileOut(path=str(path), nodes=nodes, coarse=coarse, level=level_of(path.stem),
                    textures=len(src.images), size=path.stat().st_size)


def _error_from_mesh(node: LodNode) -> float:
    """A geometric error for a node with children but no usable range: twice its median edge length."""
    edges = []
    for g in node.geometries:
        if len(g.indices):
            p = g.positions
            t = g.indices
            edges.append(np.linalg.norm(p[t[:, 1]] - p[t[:, 0]], axis=1))
    return float(2 * np.median(np.concatenate(edges))) if edges else 1.0


def _node_primitives(node: LodNode, src: OsgFile, geo: Georeference,
                     coarse: list[tuple[np.ndarray, np.ndarray, np.ndarray, bytes | None]] | None,
                     state: dict[str, Any]) -> tuple[list[tuple[Primitive, np.ndarray]], np.ndarray, int, PropertyTable | None]:
    """Primitives of one node (positions still ECEF, paired), all ECEF vertices, singulated triangles, table."""
    sing = state.get("singulation")
    out: list[tuple[Primitive, np.ndarray, np.ndarray | None]] = []
    all_ecef = []
    singulated = 0
    used_buildings: list[np.ndarray] = []
    for g in node.geometries:
        if len(g.indices) == 0:
            continue
        # keep only the vertices the triangles use (ContextCapture files carry none unused, others may)
        used, inv = np.unique(g.indices.reshape(-1), return_inverse=True)
        tris = inv.reshape(-1, 3)
        ecef = state["vertical"].apply_ecef(geo.to_ecef(g.positions[used]))
        uv = None
        image = None
        if g.texcoords is not None and g.texture is not None:
            uv = g.texcoords[used].copy()
            uv[:, 1] = 1.0 - uv[:, 1]  # OpenGL's bottom-left origin to glTF's top-left
            image = src.images[g.texture]
        all_ecef.append(ecef)
        if coarse is not None:
            coarse.append((ecef, uv if uv is not None else np.zeros((len(ecef), 2)), tris,
                           image[0] if image is not None else None))
        material = Material(texture=image[0] if image else None, mime_type=image[1] if image else "image/jpeg",
                            unlit=True, double_sided=False,
                            base_color=(1.0, 1.0, 1.0, 1.0) if image else (0.8, 0.8, 0.8, 1.0))
        owner = _assign(ecef, tris, sing) if sing is not None else None
        if owner is None or not (owner >= 0).any():
            out.append((Primitive(positions=ecef, indices=tris.astype(np.uint32), texcoords=uv, material=material),
                        ecef, None))
            continue
        rest = tris[owner < 0]
        if len(rest):
            p, e = _sub_mesh(ecef, uv, rest, None)
            out.append((Primitive(positions=e, indices=p["tris"], texcoords=p["uv"], material=material), e, None))
        mine = owner >= 0
        singulated += int(mine.sum())
        p, e = _sub_mesh(ecef, uv, tris[mine], owner[mine])
        used_buildings.append(owner[mine])
        out.append((Primitive(positions=e, indices=p["tris"], texcoords=p["uv"], material=material), e, p["fid"]))
    table = None
    if used_buildings:
        present = np.unique(np.concatenate(used_buildings))
        lookup = np.full(len(sing["ids"]), -1, np.int64)
        lookup[present] = np.arange(len(present))
        for prim, _, fid in out:
            if fid is not None:
                prim.feature_ids = lookup[fid].astype(np.uint32)
        table = PropertyTable("building", {c: v[present] for c, v in sing["columns"].items()})
    prims = [(p, e) for p, e, _ in out]
    return prims, np.vstack(all_ecef), singulated, table


def _sub_mesh(ecef: np.ndarray, uv: np.ndarray | None, tris: np.ndarray,
              owner: np.ndarray | None) -> tuple[dict[str, Any], np.ndarray]:
    """The vertices a subset of triangles uses; with `owner` (per triangle), vertices are split per feature."""
    corners = tris.reshape(-1)
    if owner is None:
        used, inv = np.unique(corners, return_inverse=True)
        return {"tris": inv.reshape(-1, 3).astype(np.uint32), "uv": None if uv is None else uv[used], "fid": None}, \
            ecef[used]
    feat = np.repeat(owner, 3)
    key = corners.astype(np.int64) * (int(owner.max()) + 1) + feat
    ukey, inv = np.unique(key, return_inverse=True)
    vert = ukey // (int(owner.max()) + 1)
    fid = ukey % (int(owner.max()) + 1)
    return {"tris": inv.reshape(-1, 3).astype(np.uint32), "uv": None if uv is None else uv[vert], "fid": fid}, \
        ecef[vert]


def _assign(ecef: np.ndarray, tris: np.ndarray, sing: dict[str, Any]) -> np.ndarray:
    """(m,) building index of each triangle whose centroid lies in a footprint, else -1."""
    cent = ecef[tris].mean(axis=1)
    t = crsmod.transformer(crsmod.ECEF, crsmod.to_3d(sing["crs"]))
    x, y, _ = t.transform(cent[:, 0], cent[:, 1], cent[:, 2])
    owner = np.full(len(tris), -1, np.int64)
    b = sing["bounds"]
    near = np.nonzero((x >= b[0]) & (x <= b[2]) & (y >= b[1]) & (y <= b[3]))[0]
    if len(near) == 0:
        return owner
    pts = shapely.points(x[near], y[near])
    tri_i, poly_i = sing["tree"].query(pts, predicate="within")
    owner[near[tri_i]] = poly_i  # a point inside two overlapping footprints goes to the later one
    return owner


def _stack_coarse(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, bytes | None]]) -> _Coarse:
    ecef, uv, tris, group, images = [], [], [], [], []
    n = 0
    for e, u, t, img in parts:
        ecef.append(e)
        uv.append(u)
        tris.append(t + n)
        n += len(e)
        if img is None:
            img = _blank_jpeg()
        group.append(np.full(len(t), len(images)))
        images.append(img)
    return _Coarse(np.vstack(ecef), np.vstack(uv), np.vstack(tris), np.concatenate(group), images)


def _blank_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 200, 200)).save(buf, "JPEG")
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------- merged levels
def _merge(coarse: list[_Coarse], cell: float, atlas_size: int, quality: int, glb: GlbOptions
           ) -> tuple[_Coarse, bytes, str]:
    """Children's coarse meshes as one mesh: vertex-clustered on a `cell`-metre grid, one texture atlas.

    Returns:
        (the merged mesh, with one image: the atlas; the atlas bytes (WebP under the default `textures="auto"`,
        else JPEG at `quality`, see `tiles.textures.encode_texture`); its MIME type).
    """
    images = [img for c in coarse for img in c.images]
    k = len(images)
    grid = math.ceil(math.sqrt(k))
    side = max(16, atlas_size // grid)
    decoded = [Image.open(io.BytesIO(b)).convert("RGB") for b in images]
    side = min(side, max(max(im.size) for im in decoded))
    atlas = Image.new("RGB", (side * grid, side * grid), (128, 128, 128))
    for i, im in enumerate(decoded):
        atlas.paste(im.resize((side, side), Image.Resampling.BILINEAR), ((i % grid) * side, (i // grid) * side))
    atlas_bytes, atlas_mime = encode_texture(atlas, glb, quality)
    ecef, uv, tris = [], [], []
    n = 0
    g0 = 0
    for c in coarse:
        u = np.clip(c.uv, 0.0, 1.0)
        # each vertex takes its triangle group's atlas cell; a vertex shared by two groups does not occur
        vgroup = np.zeros(len(c.ecef), np.int64)
        vgroup[c.tris.reshape(-1)] = np.repeat(c.group, 3)
        cellx = (vgroup + g0) % grid
        celly = (vgroup + g0) // grid
        uv.append(np.column_stack([(cellx + u[:, 0]) / grid, (celly + u[:, 1]) / grid]))
        ecef.append(c.ecef)
        tris.append(c.tris + n)
        n += len(c.ecef)
        g0 += len(c.images)
    e = np.vstack(ecef)
    t = np.vstack(tris)
    frame = enu_at(e)
    local = frame.to_local(e)
    cluster, counts = _grid_cells(np.floor(local / cell).astype(np.int64))
    sums = np.zeros((len(counts), 3))
    np.add.at(sums, cluster, local)
    snapped = sums[cluster] / counts[cluster][:, None]
    c = cluster[t]
    keep = (c[:, 0] != c[:, 1]) & (c[:, 1] != c[:, 2]) & (c[:, 0] != c[:, 2])
    t = t[keep]
    used, inv = np.unique(t.reshape(-1), return_inverse=True)
    merged = _Coarse(ecef=frame.to_ecef(snapped[used]), uv=np.vstack(uv)[used], tris=inv.reshape(-1, 3),
                     group=np.zeros(len(t), np.int64), images=[atlas_bytes])
    return merged, atlas_bytes, atlas_mime


def _grid_cells(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) int64 grid cells -> ((n,) each row's cell number, (m,) rows per cell), cells numbered in the
    lexicographic order of (x, y, z): what `np.unique(key, axis=0, return_inverse=True, return_counts=True)` gives,
    from one int64 a row (np.unique of rows sorts them as records: 14 ms for a 20,000-vertex merged node, 0.5 ms)."""
    if len(key):
        lo = key.min(axis=0)
        span = key.max(axis=0) - lo + 1
        if float(span[0]) * float(span[1]) * float(span[2]) < 2.0**62:
            k = key - lo
            _, cluster, counts = np.unique((k[:, 0] * span[1] + k[:, 1]) * span[2] + k[:, 2], return_inverse=True,
                                           return_counts=True)
            return cluster.reshape(-1), counts
    _, cluster, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    return cluster.reshape(-1), counts


@dataclass
class _MergePlan:
    """One merged node: its name and its children (indices of production roots, or merged nodes)."""

    name: str
    children: list[int | _MergePlan]
    depth: int


def _plan_merge(idx: list[int], centers: np.ndarray, fanout: int, name: str, depth: int = 0) -> _MergePlan:
    """The merged quadtree over production roots `idx` (split into quadrants while there are more than `fanout`)."""
    children: list[int | _MergePlan] = list(idx)
    if len(idx) > fanout:
        lo, hi = centers.min(axis=0), centers.max(axis=0)
        mid = (lo + hi) / 2
        quad = (centers[:, 0] > mid[0]).astype(int) + 2 * (centers[:, 1] > mid[1]).astype(int)
        if len(np.unique(quad)) == 1:  # all centres in one quadrant (coincident): split by order
            quad = np.arange(len(idx)) * 4 // len(idx)
        children = []
        for q in range(4):
            sel = np.nonzero(quad == q)[0]
            if len(sel) > 1:
                children.append(_plan_merge([idx[i] for i in sel], centers[sel], fanout, f"{name}{q}", depth + 1))
            elif len(sel):
                children.append(idx[sel[0]])
    return _MergePlan(name, children, depth)


def _merge_task(job: tuple[str, list[_Coarse], float], state: dict[str, Any]
                ) -> tuple[_Coarse, list[float], list[float], str, float, float]:
    """A Dask task: one merged node's mesh and atlas from its children's coarsest meshes (clustered on a grid of
    half `child_error`, their largest geometric error), written as its glb.

    Returns:
        (the merged mesh, its content region, its transform, its uri, its geometric error: `child_error` plus the
        measured two-way distance between the merged mesh and the children's, rounded up to the centimetre; that
        distance so rounded).
    """
    name, coarse, child_error = job
    options = state["options"]
    merged, atlas, mime = _merge(coarse, cell=max(child_error, 1.0) / 2.0, atlas_size=options.atlas_size,
                                 quality=options.jpeg_quality, glb=options.glb)
    # the error of drawing this instead of the children: theirs plus how far the clustered mesh is from their
    # meshes, measured both ways (cim.models.deviation), rounded up to the centimetre
    offsets = np.cumsum([0] + [len(c.ecef) for c in coarse])
    deviation = hausdorff(np.vstack([c.ecef for c in coarse]),
                          np.vstack([c.tris + o for c, o in zip(coarse, offsets)]), merged.ecef, merged.tris)
    deviation_cm = math.ceil(deviation * 100.0) / 100.0
    error = child_error + deviation_cm
    frame = enu_at(merged.ecef)
    prim = Primitive(positions=frame.to_local(merged.ecef).astype(np.float32), indices=merged.tris.astype(np.uint32),
                     texcoords=merged.uv, material=Material(texture=atlas, mime_type=mime, unlit=True))
    uri = f"{options.prefix}/merged/{name}.glb"
    write_atomic(state["out"] / uri, MeshContent([prim]).to_glb(options.glb))
    return merged, region_of(merged.ecef, pad_m=0.01), frame.column_major(), uri, error, deviation_cm


def _describe(geo: Georeference, state: Any) -> str:
    """A Dask task: `geo.describe()`."""
    return geo.describe()


def _merge_node(job: tuple[str, list[tuple[int, float | None]]], inputs: list[Any], state: dict[str, Any]
                ) -> tuple[_Coarse, list[float], list[float], str, float, float]:
    """A Dask task of the merged tree (`Runner.start_graph`): one merged node from its children in order, each
    `(k, error)`: `inputs[k]` is a tile root file's conversion (`_FileOut`, its coarse mesh) and `error` its root
    nodes' geometric error (`_root_of`), or (error None) a merged child's result."""
    name, kids = job
    parts = [(inputs[k].coarse, e) if e is not None else (inputs[k][0], inputs[k][4]) for k, e in kids]
    return _merge_task((name, [c for c, _ in parts], max(e for _, e in parts)), state)


@dataclass
class _TileRoot:
    """What the merged levels take from a production tile: its root file's job and that file's own geometric error
    and region (its root nodes': known as soon as the file is converted, before the tile's other files)."""

    job: int
    error: float
    region: list[float]


def _root_of(res: _FileOut, job: int, files: set[str]) -> _TileRoot:
    """A tile's root file's error and region: the error its nodes have as tiles with children (`_file_tiles`: 0 for
    a node without child files among `files`), their regions' union."""
    folder = Path(res.path).parent
    errors = [n.error if any(str(folder / c) in files and str(folder / c) != res.path for c in n.child_files)
              else 0.0 for n in res.nodes]
    return _TileRoot(job, max(errors), union_regions([n.region for n in res.nodes]))


def _merge_plan(roots: list[_TileRoot], fanout: int) -> tuple[_MergePlan, list[_MergePlan]]:
    """The merged quadtree over the tile roots (by their regions' centres) and its nodes, deepest level first and by
    name within a level: every node comes after its merged children."""
    centers = np.array([[(r.region[0] + r.region[2]) / 2, (r.region[1] + r.region[3]) / 2] for r in roots])
    plan = _plan_merge(list(range(len(roots))), centers, fanout, "m")
    levels: dict[int, list[_MergePlan]] = {}
    stack = [plan]
    while stack:
        node = stack.pop()
        levels.setdefault(node.depth, []).append(node)
        stack.extend(c for c in node.children if isinstance(c, _MergePlan))
    return plan, [n for depth in sorted(levels, reverse=True) for n in sorted(levels[depth], key=lambda n: n.name)]


def _start_merged(run: Runner, files: Wave, roots: list[_TileRoot], nodes: list[_MergePlan], state: dict[str, Any]
                  ) -> Wave:
    """The merged nodes' tasks started as one graph (`Runner.start_graph`), each as soon as its own children are
    done: tile roots' files of the `files` wave, or merged children of this graph."""
    at = {n.name: i for i, n in enumerate(nodes)}
    jobs, deps, cost = [], [], []
    for node in nodes:
        kids: list[tuple[int, float | None]] = []
        need: list[int | Ref] = []
        size = 0
        for c in node.children:
            if isinstance(c, int):
                kids.append((len(need), roots[c].error))
                need.append(files.ref(roots[c].job))
                coarse = files.values[roots[c].job].coarse
                size += len(coarse.tris) if coarse is not None else 0
            else:
                kids.append((len(need), None))
                need.append(at[c.name])
        jobs.append((node.name, kids))
        deps.append(need)
        cost.append(size)  # merged children's: not known yet
    # above the files still to convert: a node starts as soon as its children are done
    return run.start_graph(_merge_node, jobs, deps, state, stage="oblique-merge", cost=cost, priority=1)


def _merged_tree(graph: Wave, plan: _MergePlan, nodes: list[_MergePlan], tiles: list[Tile], counter: list[int]
                 ) -> Tile:
    """The tiles of the merged quadtree (`plan`, `nodes` as `_merge_plan` gives them, over `tiles`: the production
    tiles' root tiles in the order of the plan's roots) from its graph's results. A merged tile's geometric error is
    its children's largest (as the tile tree has them: a tile's error covers its child files') plus the deviation its
    node measured, so every merged level declares at least its children's error."""
    done: dict[str, Tile] = {}
    for node, (_, region, transform, uri, _, deviation_cm) in zip(nodes, graph.results()):
        kids = [tiles[c] if isinstance(c, int) else done[c.name] for c in node.children]
        done[node.name] = Tile(bounding_volume=BoundingVolume(region=union_regions([region] + [
            t.bounding_volume.region for t in kids])), geometric_error=max(t.geometric_error for t in kids)
            + deviation_cm, refine="REPLACE", content=Content(uri=uri, bounding_volume=BoundingVolume(region=region)),
            children=kids, transform=transform)
        counter[0] += 1
    return done[plan.name]


# ------------------------------------------------------------------------------------------------------- the build
def _singulation(buildings: str | os.PathLike[str], id_field: str | None) -> dict[str, Any]:
    from cim.sources.footprints import (
        Skipped,
        building_ids,
        clean_footprints,
        lonlat_centre,
        read_footprints,
        reproject_footprints,
    )

    gdf = read_footprints(buildings)
    centre = lonlat_centre(gdf)
    if gdf.crs.is_geographic and np.isfinite(centre).all():
        # areas and the 1 m² rule need metres: a local projected CRS chosen from the data
        gdf = reproject_footprints(gdf, crsmod.working_crs(gdf.crs, lon=centre.lon, lat=centre.lat, like=gdf.crs))
    ids = building_ids(gdf, id_field)
    keep, geoms = clean_footprints(gdf, ids, Skipped())
    attrs = gdf.drop(columns=gdf.geometry.name).loc[keep].reset_index(drop=True)
    columns: dict[str, np.ndarray] = {"id": np.asarray(ids[keep], dtype=object)}
    for col in attrs.columns:
        if col == "id":
            continue
        values = attrs[col]
        if pd.api.types.is_datetime64_any_dtype(values.dtype):
            values = values.dt.strftime("%Y-%m-%dT%H:%M:%S")
        elif values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
            values = values.astype(object).where(values.notna(), None)
        columns[col] = values.to_numpy()
    return {"crs": gdf.crs, "tree": shapely.STRtree(geoms), "bounds": shapely.total_bounds(geoms),
            "ids": columns["id"], "columns": columns}


def build_oblique(
    production: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    buildings: str | os.PathLike[str] | None = None,
    options: ObliqueOptions | None = None,
    progress: Progress | None = None,
    runner: Runner | None = None,
) -> ObliqueResult:
    """Convert a ContextCapture production into 3D Tiles content under `out_dir/<prefix>/`, one Dask task per file.

    Args:
        production: the production folder (with `metadata.xml` and `Data/`).
        out_dir: the tileset folder; glb files go to `out_dir/<options.prefix>/`.
        buildings: footprints for singulation (any vector format; their own CRS), or None.
        options: see ObliqueOptions.
        progress: called as progress(stage, done, total) (when no `runner` is given).
        runner: the `cim.tiling.Runner` the file tasks run on; by default a local Dask cluster of
            `options.workers` processes (one per core).

    Returns:
        ObliqueResult whose `root` carries absolute transforms (call `relative_transforms` before writing).

    Raises:
        InputNotFoundError: the production or metadata.xml is missing.
        MissingToolError: `.osgb` files, the osgconv reader (CIM_OSGB_READER=osgconv) and no osgconv.
        InputError, CRSError: unreadable inputs.
    """
    options = options or ObliqueOptions()
    t0 = time.perf_counter()
    stages: dict[str, float] = {}
    prod = Path(production)
    if not prod.exists():
        raise InputNotFoundError(f"oblique production {prod} does not exist")
    geo = read_metadata(prod)
    tiles = find_tiles(prod)
    if any(f.suffix.lower() == ".osgb" for t in tiles for f in t.files):
        from cim.sources.osgb import osgb_reader, osgconv_path

        if osgb_reader() == "osgconv":
            osgconv_path()
    out = Path(out_dir)
    jobs = []
    data_root = prod / "Data" if (prod / "Data").is_dir() else prod
    for t in tiles:
        mesh_kids = None if t.root_file.suffix.lower() == ".osgb" else _mesh_children(t)
        for f in t.files:
            rel = f.relative_to(data_root).with_suffix("")
            uri_base = f"{options.prefix}/Data/{rel.as_posix()}"
            kids = None if mesh_kids is None else mesh_kids.get(f.name, [])
            jobs.append((str(f), uri_base, kids, f == t.root_file))
    state: dict[str, Any] = dict(geo=geo, out=out, glb=options.glb, vertical=options.vertical_datum)
    n_buildings = 0
    if buildings is not None:
        state["singulation"] = _singulation(buildings, options.id_field)
        n_buildings = len(state["singulation"]["ids"])
    stages["prepare"] = time.perf_counter() - t0
    # biggest files first so the workers do not end waiting on one large file; the tiles' root files before them,
    # in tasks of their own: the merged levels need only their coarse meshes
    sizes = [Path(j[0]).stat().st_size for j in jobs]
    firsts = [i for i, j in enumerate(jobs) if j[3]]
    with runner_scope(runner, options.workers, progress) as run:
        wave = run.start(_convert_file, jobs, state, stage="oblique", cost=sizes, min_task_cost=MIN_TASK_BYTES,
                         first=firsts)
        # naming the SRS searches PROJ's database (~0.1 s holding the GIL): a task of its own, after all others
        georeference = run.submit(_describe, geo, stage="oblique-describe", priority=-1)
        # the merged levels are planned on the tiles' root files (their regions' centres, their nodes' errors for
        # the clustering): they start as soon as those are converted, while the other files convert
        names = {j[0] for j in jobs}
        for i in firsts:
            wave.result(i)
        roots = [_root_of(wave.values[i], i, names) for i in firsts
                 if wave.values[i].nodes and wave.values[i].coarse is not None]
        if not roots:
            wave.results()  # a file's error before the production's
            raise BuildError(f"oblique production {prod}: no tile could be converted")
        plan, nodes = _merge_plan(roots, options.merge_fanout)
        graph = _start_merged(run, wave, roots, nodes, dict(out=out, options=options))
        results: dict[str, _FileOut] = {res.path: res for res in wave.results()}
        stages["convert"] = time.perf_counter() - t0 - stages["prepare"]

        root_tiles: dict[int, Tile] = {}
        warnings: list[str] = []
        for i, t in zip(firsts, tiles):
            res = results[str(t.root_file)]
            subtrees = _file_tiles(res, t.root_file.parent, results, set())
            if not subtrees or res.coarse is None:
                warnings.append(f"tile {t.name}: root file {t.root_file.name} has no triangles; left out")
                continue
            if len(subtrees) == 1:
                root_tiles[i] = subtrees[0]
            else:
                root_tiles[i] = Tile(bounding_volume=BoundingVolume(region=union_regions(
                    [s.bounding_volume.region for s in subtrees])), geometric_error=max(
                    s.geometric_error for s in subtrees), refine="REPLACE", children=subtrees)
        tile_roots = [root_tiles[r.job] for r in roots]
        merged_count = [0]
        root = _merged_tree(graph, plan, nodes, tile_roots, merged_count)
        described = georeference()
    stages["merge"] = time.perf_counter() - t0 - stages["prepare"] - stages["convert"]

    reg = root.bounding_volume.region
    levels = sorted({r.level for r in results.values() if r.level is not None})
    return ObliqueResult(
        root=root,
        georeference=described,
        tiles=len(tile_roots),
        files=len(results),
        levels=levels,
        contents=sum(len(r.nodes) for r in results.values()),
        merged_contents=merged_count[0],
        triangles=sum(n.triangles for r in results.values() for n in r.nodes),
        textures=sum(r.textures for r in results.values()),
        input_bytes=sum(r.size for r in results.values()),
        buildings=n_buildings,
        singulated_triangles=sum(n.singulated for r in results.values() for n in r.nodes),
        lonlat_bounds=(math.degrees(reg[0]), math.degrees(reg[1]), math.degrees(reg[2]), math.degrees(reg[3])),
        seconds=time.perf_counter() - t0,
        stage_seconds=stages,
        warnings=warnings,
    )


def _file_tiles(res: _FileOut, folder: Path, results: dict[str, _FileOut], seen: set[str]) -> list[Tile]:
    """The tiles of one converted file, each with the tiles of its child files below it."""
    seen = seen | {res.path}
    out = []
    for node in res.nodes:
        children: list[Tile] = []
        for name in node.child_files:
            key = str(folder / name)
            if key in results and key not in seen:
                children.extend(_file_tiles(results[key], folder, results, seen))
        error = node.error if children else 0.0
        if children:
            error = max(error, max(c.geometric_error for c in children))
        region = node.region
        if children:
            region = union_regions([region] + [c.bounding_volume.region for c in children])
        out.append(Tile(bounding_volume=BoundingVolume(region=region), geometric_error=error,
                        refine="REPLACE" if children else None,
                        content=Content(uri=node.uri, bounding_volume=BoundingVolume(region=node.region)),
                        children=children or None, transform=node.transform))
    return out


def convert_production(
    production: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    buildings: str | os.PathLike[str] | None = None,
    options: ObliqueOptions | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    runner: Runner | None = None,
) -> ObliqueResult:
    """Convert a production into a standalone 3D Tiles 1.1 tileset: `out/tileset.json` and `out/<prefix>/`.

    `runner` as in `build_oblique` (a notebook's client, or the synchronous scheduler).

    Raises:
        OutputExistsError: `out` exists and is not empty, without `overwrite`.
    """
    import shutil
    import tempfile

    from cim.errors import OutputExistsError

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(f"output folder {out} exists and is not empty; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        res = build_oblique(production, work, buildings=buildings, options=options, progress=progress,
                           runner=runner)
        root = relative_transforms(res.root)
        Tileset(geometric_error=2 * root.geometric_error, root=root,
                extras={"cim": {"layer": "oblique", "georeference": res.georeference}}).write(work / "tileset.json")
        replace_dir(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return res


def lonlat_of(ecef: np.ndarray) -> np.ndarray:
    """(n, 3) ECEF to (n, 3) lon, lat (degrees), height: a shortcut for reports and tests."""
    return ecef_to_geodetic(ecef)


__all__ = ["ObliqueOptions", "ObliqueResult", "build_oblique", "convert_production", "geometric_error",
           "read_mesh_file"]
