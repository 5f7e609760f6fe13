"""Existing 3D city models (CityJSON) to 3D Tiles: every object with its ID, attributes, semantic surfaces, textures.

Data flow: `cim.sources.cityjson` reads the model (one LoD per object) -> `triangulate` -> the vertices go once to
ECEF (float64, through `cim.sources.crs`; a geographic model is first put in a local projected CRS) -> a quadtree
of tiles over the top-level objects (`cim.tiling`; ADD refinement, the most prominent first; an object's parts stay
in its tile) -> one glb per tile, a Dask task of the build's `cim.tiling.Runner`: one primitive per texture or material, flat
normals per surface, `_FEATURE_ID_0` = the object (its row in the `cityobject` property table: `id`, `type`,
`parent`, `lod` and every attribute) and `_FEATURE_ID_1` = the semantic surface type of each triangle (a row of
the `surface` table: RoofSurface, WallSurface, GroundSurface, ...).
"""

from __future__ import annotations

import functools
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyproj import CRS

from cim.errors import CRSError, InputError
from cim.geodesy import enu_frame
from cim.models.footprints import frame_columns, take_column
from cim.sources import crs as crsmod
from cim.sources.cityjson import CityModel, Texture, Triangles, read_citymodel, triangulate
from cim.sources.footprints import Skipped
from cim.sources.vertical import ELLIPSOIDAL, VerticalDatum
from cim.tiling import Progress, Runner, nest_tiles, quadtree, runner_scope, walk
from tiles.compression import GlbOptions
from tiles.gltf import FeatureIdSet, Material, MeshContent, Primitive, PropertyTable, StringColumn
from tiles.tileset import BoundingVolume, Content, Tile, write_atomic

#: Colours (linear RGBA) of untextured surfaces without a material: by semantic surface type, else by object type.
SEMANTIC_COLORS: dict[str, tuple[float, float, float, float]] = {
    "RoofSurface": (0.62, 0.27, 0.20, 1.0),
    "WallSurface": (0.90, 0.88, 0.83, 1.0),
    "GroundSurface": (0.45, 0.44, 0.42, 1.0),
    "ClosureSurface": (0.80, 0.80, 0.80, 1.0),
    "OuterCeilingSurface": (0.75, 0.74, 0.70, 1.0),
    "OuterFloorSurface": (0.70, 0.69, 0.66, 1.0),
    "Window": (0.35, 0.50, 0.62, 1.0),
    "Door": (0.45, 0.33, 0.22, 1.0),
    "WaterSurface": (0.25, 0.45, 0.70, 1.0),
    "TrafficArea": (0.35, 0.35, 0.37, 1.0),
    "AuxiliaryTrafficArea": (0.55, 0.55, 0.52, 1.0),
}
TYPE_COLORS: dict[str, tuple[float, float, float, float]] = {
    "Building": (0.90, 0.88, 0.83, 1.0),
    "BuildingPart": (0.90, 0.88, 0.83, 1.0),
    "Road": (0.35, 0.35, 0.37, 1.0),
    "Railway": (0.40, 0.36, 0.33, 1.0),
    "TransportSquare": (0.55, 0.55, 0.52, 1.0),
    "WaterBody": (0.25, 0.45, 0.70, 1.0),
    "PlantCover": (0.33, 0.52, 0.27, 1.0),
    "SolitaryVegetationObject": (0.30, 0.50, 0.25, 1.0),
    "LandUse": (0.70, 0.72, 0.55, 1.0),
    "TINRelief": (0.62, 0.58, 0.48, 1.0),
    "Bridge": (0.60, 0.60, 0.58, 1.0),
    "Tunnel": (0.50, 0.50, 0.48, 1.0),
}
DEFAULT_COLOR = (0.80, 0.80, 0.78, 1.0)


@dataclass
class CityModelOptions:
    """How a city model becomes 3D Tiles.

    Attributes:
        lod: the LoD to build ("1", "2", "2.2", ...; "2" takes an object's highest 2.x); None: each object's highest.
        theme: the appearance theme (materials, textures); None: the file's default, else its first.
        types: the CityObject types to build; None: all.
        textures: carry the model's textures into the tiles (off: materials and colours only).
        tile_capacity: top-level objects per tile content.
        workers: Dask worker processes of the local cluster a build starts; None: one per CPU core.
        glb: how tiles are encoded (compression, textures; `tiles.compression.GlbOptions`).
        vertical_datum: what the model's heights are measured from when its CRS does not say
            (`cim.sources.vertical.VerticalDatum`); they become ellipsoidal (+ N) like every other layer's.
    """

    lod: str | None = None
    theme: str | None = None
    types: tuple[str, ...] | None = None
    textures: bool = True
    tile_capacity: int = 400
    workers: int | None = None
    glb: GlbOptions = field(default_factory=GlbOptions)
    vertical_datum: VerticalDatum = ELLIPSOIDAL


@dataclass
class CityModelResult:
    """What the city model step produced."""

    root: Tile
    objects: int
    tiles: int
    triangles: int
    skipped: Skipped
    object_types: dict[str, int]
    lods: dict[str, int]
    semantic_surfaces: dict[str, int]
    textures: int
    textured_triangles: int
    missing_textures: list[str]
    crs: CRS
    working_crs: CRS
    bounds: tuple[float, float, float, float]
    lonlat_bounds: tuple[float, float, float, float]
    height_range: tuple[float, float]
    seconds: float
    degenerate_surfaces: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "objects": self.objects,
            "tiles": self.tiles,
            "triangles": self.triangles,
            "object_types": self.object_types,
            "lods": self.lods,
            "semantic_surfaces": self.semantic_surfaces,
            "textures": self.textures,
            "textured_triangles": self.textured_triangles,
            "missing_textures": self.missing_textures[:20],
            "degenerate_surfaces": self.degenerate_surfaces,
            "skipped": {"count": self.skipped.count, "reasons": self.skipped.to_dict()},
            "crs": self.crs.name,
            "working_crs": self.working_crs.name,
            "bounds": list(self.bounds),
            "lonlat_bounds": list(self.lonlat_bounds),
            "height_range": list(self.height_range),
            "seconds": round(self.seconds, 3),
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
        }


def build_citymodel(
    citymodel: str | os.PathLike[str] | CityModel,
    out_dir: str | os.PathLike[str],
    *,
    options: CityModelOptions | None = None,
    crs: crsmod.CRSLike | None = None,
    progress: Progress | None = None,
    runner: Runner | None = None,
) -> CityModelResult:
    """Build a CityJSON city model as 3D Tiles content under `out_dir/citymodel/`.

    Args:
        citymodel: a CityJSON / CityJSONSeq file, or a model read already.
        out_dir: the tileset folder; glb files go to `out_dir/citymodel/`.
        options: see CityModelOptions.
        crs: the model's CRS when the file declares none (or a wrong one).
        progress: called as progress(stage, done, total) (when no `runner` is given).
        runner: the `cim.tiling.Runner` the tile tasks run on; by default a local Dask cluster of
            `options.workers` processes, started when there is more than one tile.

    Returns:
        The subtree (absolute tile transforms) and the report.

    Raises:
        InputError: the file is not CityJSON.
        CRSError: no CRS declared and none given.
        InputError: no object can be built (none of the types or at the LoD asked for; the reasons are listed).
    """
    options = options or CityModelOptions()
    t0 = time.perf_counter()
    if progress:
        progress("read", 0, 1)
    model = citymodel if isinstance(citymodel, CityModel) else read_citymodel(
        citymodel, lod=options.lod, theme=options.theme, crs=crs)
    if progress:
        progress("read", 1, 1)
    stages = {"read": time.perf_counter() - t0}
    if model.crs is None:
        lo = model.bounds() if len(model) else None
        raise CRSError(f"city model {model.path} declares no CRS (metadata.referenceSystem); "
                       + crsmod.crs_hint(sample_xy=None if lo is None else (lo[0], lo[1])))
    selected = np.ones(len(model), bool) if options.types is None else np.isin(model.types, options.types)
    if not selected.any():
        raise InputError(f"city model {model.path}: no object to build"
                         + (f" of types {', '.join(options.types)}" if options.types else "")
                         + f"; it holds {model.object_types or 'no objects'}"
                         + (f"; left out: {_reasons(model.skipped)}" if model.skipped.count else ""))
    tick = time.perf_counter()
    working, verts = working_vertices(model)
    tris = triangulate(model, verts)
    stages["triangulate"] = time.perf_counter() - tick
    tick = time.perf_counter()
    # every vertex once to ECEF and to geodetic coordinates (heights as ellipsoidal, as for the terrain)
    used = np.zeros(len(verts), bool)
    used[model.corner_vertex] = True
    ecef = np.full((len(verts), 3), np.nan)
    geo = np.full((len(verts), 3), np.nan)
    if used.any():
        w3 = crsmod.to_3d(working)
        ecef[used] = crsmod.to_ecef(w3, verts[used, 0], verts[used, 1], verts[used, 2])
        lon, lat, h = crsmod.transformer(w3, crsmod.WGS84_3D).transform(verts[used, 0], verts[used, 1], verts[used, 2])
        geo[used] = np.column_stack([lon, lat, h])
        if options.vertical_datum.grid is not None:
            ecef[used] = options.vertical_datum.apply_ecef(ecef[used])
            geo[used, 2] += options.vertical_datum.undulation(geo[used, 0], geo[used, 1])
    if not np.isfinite(ecef[used]).all():
        raise CRSError(f"city model {model.path}: its vertices cannot be placed in {model.crs.name} (coordinates "
                       f"outside the CRS's area); " + crsmod.crs_hint(sample_xy=tuple(model.vertices[used][0, :2])))
    stages["place"] = time.perf_counter() - tick
    tick = time.perf_counter()

    # top-level objects (an object with its parts) are the units of tiling
    objects = np.flatnonzero(selected)
    root_names, root_of = np.unique(model.roots[objects], return_inverse=True)
    surfaces = model.surface_range(objects)
    surf_root = np.repeat(root_of, _surface_counts(model, objects))  # aligned with `surfaces`
    c0 = model.ring_start[model.surface_start[surfaces]]
    c1 = model.ring_start[model.surface_start[surfaces + 1]]
    corner_root = np.repeat(surf_root, c1 - c0)
    corner_idx = np.repeat(c0 - np.cumsum(c1 - c0) + (c1 - c0), c1 - c0) + np.arange((c1 - c0).sum())
    xyz = verts[model.corner_vertex[corner_idx]]
    k = len(root_names)
    lo = np.full((k, 3), np.inf)
    hi = np.full((k, 3), -np.inf)
    np.minimum.at(lo, corner_root, xyz)
    np.maximum.at(hi, corner_root, xyz)
    centre = (lo + hi) / 2
    size = np.maximum(hi[:, 2] - lo[:, 2], np.hypot(hi[:, 0] - lo[:, 0], hi[:, 1] - lo[:, 1]))
    b = (lo[:, 0].min(), lo[:, 1].min(), hi[:, 0].max(), hi[:, 1].max())
    side = max(b[2] - b[0], b[3] - b[1]) or 1.0
    qroot = quadtree(centre[:, 0], centre[:, 1], size, np.arange(k), (b[0], b[1], b[0] + side, b[1] + side),
                     max(1, options.tile_capacity))
    nodes = list(walk(qroot))
    objects_of_root = _split_by(objects, root_of, k)
    columns = object_columns(model)
    looks, materials = surface_looks(model, options.textures)
    stages["tiling"] = time.perf_counter() - tick
    tick = time.perf_counter()

    out = Path(out_dir)
    (out / "citymodel").mkdir(parents=True, exist_ok=True)
    tri_start = np.searchsorted(tris.surface, np.arange(model.surfaces + 1))
    state = dict(model=model, tris=tris, tri_start=tri_start, ecef=ecef, geo=geo, columns=columns, looks=looks,
                 materials=materials, out=out, glb=options.glb, textures=model.textures if options.textures else [],
                 semantic=len(model.semantic_types) > 0)
    jobs = [(path, np.sort(np.concatenate([objects_of_root[i] for i in node.content])), node.error)
            for node, path in nodes]
    with runner_scope(runner, options.workers, progress) as run:
        results = run.map(_write_tile, jobs, state, stage="citymodel", cost=[len(j[1]) for j in jobs])
    tiles = {r[0]: r[1] for r in results}
    triangles = sum(r[2] for r in results)
    textured = sum(r[3] for r in results)
    missing = sorted({m for r in results for m in r[4]})
    if options.textures:
        wanted = np.unique(model.surface_texture[surfaces])
        missing = sorted(set(missing) | {model.textures[int(t)].uri for t in wanted[wanted >= 0]
                                         if model.textures[int(t)].path is None})
    stages["tiles"] = time.perf_counter() - tick
    root = nest_tiles(nodes, tiles)
    g = geo[used]
    sem_counts: dict[str, int] = {}
    if model.semantic_types:
        sem = model.surface_semantic[surfaces]
        counts = np.bincount(sem[sem >= 0], minlength=len(model.semantic_types))
        sem_counts = {t: int(c) for t, c in zip(model.semantic_types, counts, strict=True) if c}
    types, tcounts = np.unique(model.types[objects], return_counts=True)
    lods, lcounts = np.unique(model.lods[objects], return_counts=True)
    result = CityModelResult(
        root=root, objects=len(objects), tiles=len(nodes), triangles=int(triangles),
        skipped=model.skipped, object_types={str(t): int(c) for t, c in zip(types, tcounts, strict=True)},
        lods={str(t): int(c) for t, c in zip(lods, lcounts, strict=True)}, semantic_surfaces=sem_counts,
        textures=len(model.textures) if options.textures else 0, textured_triangles=int(textured),
        missing_textures=missing, crs=model.declared_crs or model.crs, working_crs=working,
        bounds=tuple(float(v) for v in b),
        lonlat_bounds=(float(g[:, 0].min()), float(g[:, 1].min()), float(g[:, 0].max()), float(g[:, 1].max())),
        height_range=(float(g[:, 2].min()), float(g[:, 2].max())),
        seconds=time.perf_counter() - t0, degenerate_surfaces=int(tris.degenerate[surfaces].sum()),
        stage_seconds=stages,
    )
    if model.skipped.count:
        result.warnings.append(f"{model.skipped.count} city object(s) left out: {_reasons(model.skipped)}")
    if missing:
        result.warnings.append(f"{len(missing)} texture image(s) not found beside {model.path.name} "
                               f"({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}): those surfaces "
                               f"are drawn with their material or colour")
    return result


def _surface_counts(model: CityModel, objects: np.ndarray) -> np.ndarray:
    return np.searchsorted(model.surface_object, objects, "right") - np.searchsorted(model.surface_object, objects,
                                                                                       "left")


def _split_by(objects: np.ndarray, group: np.ndarray, k: int) -> list[np.ndarray]:
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(k + 1))
    return [objects[order[bounds[i]:bounds[i + 1]]] for i in range(k)]


def _reasons(skipped: Skipped) -> str:
    return "; ".join(f"{r}: {len(ids)} ({', '.join(ids[:3])}{' ...' if len(ids) > 3 else ''})"
                     for r, ids in list(skipped.reasons.items())[:5])


def working_vertices(model: CityModel) -> tuple[CRS, np.ndarray]:
    """The CRS the model is built in and its vertices there: the model's own CRS when it is projected, else a
    local projected CRS chosen from the data (`cim.sources.crs.local_projected_crs`), heights unchanged."""
    assert model.crs is not None
    if not model.crs.is_geographic:
        return model.crs, model.vertices
    v = model.vertices
    used = v[np.unique(model.corner_vertex)] if len(model.corner_vertex) else v
    lon, lat = crsmod.transformer(model.crs, "EPSG:4326").transform(float(np.median(used[:, 0])),
                                                                    float(np.median(used[:, 1])))
    working = crsmod.local_projected_crs(lon, lat, like=model.crs)
    x, y = crsmod.transformer(model.crs, working).transform(v[:, 0], v[:, 1])
    return working, np.column_stack([x, y, v[:, 2]])


def object_columns(model: CityModel) -> dict[str, Any]:
    """The per-object metadata: `id`, `type`, `parent`, `lod`, then every attribute (see `frame_columns`)."""
    columns: dict[str, Any] = {
        "id": StringColumn.from_values(model.ids),
        "type": StringColumn.from_values(model.types),
        "parent": StringColumn.from_values(model.parents),
        "lod": StringColumn.from_values(model.lods),
    }
    attrs = model.attribute_frame()
    for name, values in frame_columns(attrs).items():
        key = name if name not in columns else f"attribute_{name}"
        columns[key] = values
    return columns


def surface_looks(model: CityModel, textures: bool) -> tuple[np.ndarray, list[Material]]:
    """The material each surface is drawn with: (s,) int index into the returned materials.

    A textured surface (when `textures` and its image exists) gets its texture's material (white base colour, the
    image bound when the tile is written); else its appearance material's diffuse colour; else the colour of its
    semantic type; else the colour of its object's type.
    """
    s = model.surfaces
    looks = np.full(s, -1, np.int64)
    materials: list[Material] = []
    keys: dict[tuple[Any, ...], int] = {}

    def look(key: tuple[Any, ...], make: Any) -> int:
        if key not in keys:
            keys[key] = len(materials)
            materials.append(make())
        return keys[key]

    tex = model.surface_texture
    if textures:
        for t in np.unique(tex[tex >= 0]):
            texture = model.textures[int(t)]
            if texture.path is None:
                continue
            li = look(("texture", int(t)), lambda: Material(base_color=(1.0, 1.0, 1.0, 1.0), double_sided=True))
            looks[(tex == t) & (looks < 0)] = li
    mat = model.surface_material
    for m in np.unique(mat[(mat >= 0) & (looks < 0)]):
        spec = model.materials[int(m)]
        rgb = spec.get("diffuseColor") if isinstance(spec.get("diffuseColor"), list) else None
        alpha = 1.0 - float(spec.get("transparency", 0.0) or 0.0)
        colour = tuple(float(c) for c in rgb[:3]) + (alpha,) if rgb and len(rgb) >= 3 else DEFAULT_COLOR
        li = look(("material", int(m)), lambda c=colour: Material(base_color=c, double_sided=True))
        looks[(mat == m) & (looks < 0)] = li
    sem = model.surface_semantic
    for si in np.unique(sem[(sem >= 0) & (looks < 0)]):
        name = model.semantic_types[int(si)]
        colour = SEMANTIC_COLORS.get(name)
        if colour is None:
            continue
        li = look(("semantic", name), lambda c=colour: Material(base_color=c, double_sided=True))
        looks[(sem == si) & (looks < 0)] = li
    rest = looks < 0
    if rest.any():
        obj_type = model.types[model.surface_object]
        for t in np.unique(obj_type[rest]):
            colour = TYPE_COLORS.get(str(t), DEFAULT_COLOR)
            li = look(("colour", colour), lambda c=colour: Material(base_color=c, double_sided=True))
            looks[rest & (obj_type == t)] = li
    return looks, materials


@functools.lru_cache(maxsize=64)
def texture_bytes(path: Path, mime: str) -> tuple[bytes, str]:
    """An image as glTF takes it: PNG and JPEG bytes as they are, any other image converted to PNG."""
    data = path.read_bytes()
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return data, "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return data, "image/jpeg"
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        buf = io.BytesIO()
        im.convert("RGBA" if "A" in im.getbands() else "RGB").save(buf, format="PNG")
    return buf.getvalue(), "image/png"


def _write_tile(job: tuple[str, np.ndarray, float], j: dict[str, Any]) -> tuple[str, Tile, int, int, list[str]]:
    """Mesh, encode and write one tile's objects (a Dask task; `j` holds the model's arrays); returns its Tile
    (absolute transform), triangle counts and the texture images that were missing."""
    path, objs, error = job
    model: CityModel = j["model"]
    tris: Triangles = j["tris"]
    surfaces = model.surface_range(objs)
    ts = j["tri_start"]
    counts = ts[surfaces + 1] - ts[surfaces]
    tri_idx = np.repeat(ts[surfaces] - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    corners = tris.corners[tri_idx]
    tri_surface = tris.surface[tri_idx]
    vert = model.corner_vertex[corners]
    ecef = j["ecef"]
    used = np.unique(vert)
    frame = enu_frame(ecef[used].mean(axis=0))
    local = frame.to_local(ecef[vert.reshape(-1)]).reshape(-1, 3, 3)
    # flat normals: the area-weighted normal of each surface's triangles in the tile frame
    tn = np.cross(local[:, 1] - local[:, 0], local[:, 2] - local[:, 0])
    # per surface of this tile only (an array over the whole model's surfaces per tile is quadratic in the model)
    tile_surfaces, surface_of_tri = np.unique(tri_surface, return_inverse=True)
    snorm = np.zeros((len(tile_surfaces), 3))
    np.add.at(snorm, surface_of_tri, tn)
    length = np.linalg.norm(snorm, axis=1, keepdims=True)
    snorm = np.where(length > 0, snorm / np.maximum(length, 1e-300), [0.0, 0.0, 1.0])
    feature = np.searchsorted(objs, model.surface_object[tri_surface])
    looks = j["looks"][tri_surface]
    prims: list[Primitive] = []
    textured = 0
    missing: list[str] = []
    for li in np.unique(looks):
        sel = looks == li
        c = corners[sel].reshape(-1)
        uniq, inv = np.unique(c, return_inverse=True)
        first = np.zeros(len(uniq), np.int64)
        first[inv] = np.arange(len(c))
        pos = local[sel].reshape(-1, 3)[first]
        surf = np.repeat(tri_surface[sel], 3)[first]
        material = j["materials"][int(li)]
        uv = None
        tex_index = int(model.surface_texture[surf[0]]) if len(surf) else -1
        if j["textures"] and tex_index >= 0 and material.texture is None and model.textures[tex_index].path:
            texture: Texture = model.textures[tex_index]
            try:
                data, mime = texture_bytes(texture.path, texture.mime)
            except (OSError, ValueError):
                missing.append(texture.uri)
                data = None
            if data is not None:
                raw = model.corner_uv[uniq]
                uv = np.where(raw[:, None] >= 0, model.uv[np.maximum(raw, 0)], 0.0)
                uv = np.column_stack([uv[:, 0], 1.0 - uv[:, 1]])  # CityJSON's origin is bottom-left, glTF's top-left
                material = Material(base_color=material.base_color, texture=data, mime_type=mime,
                                    double_sided=True)
                textured += int(sel.sum())
        sets = []
        sem = model.surface_semantic[surf].astype(np.int64) if j["semantic"] else np.zeros(0, np.int64)
        if (sem >= 0).any():  # a set of only "no feature" would have featureCount 1 and no feature
            null = len(model.semantic_types)
            sets.append(FeatureIdSet(np.where(sem >= 0, sem, null), table=1, label="surface", null_id=null))
        prims.append(Primitive(
            positions=pos.astype(np.float32),
            indices=inv.reshape(-1, 3).astype(np.uint32),
            normals=snorm[np.searchsorted(tile_surfaces, surf)].astype(np.float32),
            texcoords=None if uv is None else uv.astype(np.float32),
            feature_ids=feature[np.repeat(np.flatnonzero(sel), 3)][first],
            material=material,
            extra_feature_ids=sets,
        ))
    props = PropertyTable("cityobject", {c: take_column(v, objs) for c, v in j["columns"].items()})
    tables = [PropertyTable("surface", {"type": StringColumn.from_values(np.asarray(model.semantic_types,
                                                                                     dtype=object))})] \
        if j["semantic"] else []
    uri = f"citymodel/{path}.glb"
    write_atomic(j["out"] / uri, MeshContent(prims, props, extra_tables=tables).to_glb(j["glb"]))
    g = j["geo"][used]
    region = _region(g)
    tile = Tile(bounding_volume=BoundingVolume(region=region), geometric_error=error, refine="ADD",
                content=Content(uri=uri, bounding_volume=BoundingVolume(region=region)),
                transform=frame.column_major())
    return path, tile, len(corners), textured, missing


def _region(geo: np.ndarray, pad: float = 0.01) -> list[float]:
    lam, phi, h = np.radians(geo[:, 0]), np.radians(geo[:, 1]), geo[:, 2]
    dlat = pad / 6378137.0
    dlon = pad / (6378137.0 * max(float(np.cos(np.max(np.abs(phi)))), 1e-6))
    return [float(lam.min() - dlon), float(phi.min() - dlat), float(lam.max() + dlon), float(phi.max() + dlat),
            float(h.min() - pad), float(h.max() + pad)]


__all__ = ["CityModelOptions", "CityModelResult", "build_citymodel", "object_columns", "surface_looks",
           "working_vertices"]
