"""LOD2 buildings: footprints with roof shapes (cim.models.roofs), walls from the terrain up, roofs textured with the
orthophoto, tiled as 3D Tiles with per-building metadata (the same tiling and attributes as LOD1).

Heights per building: base = lowest terrain under the footprint; eave and ridge from the `eave_height` and
`ridge_height` attributes (metres above the base); when they are missing, the LOD1 height (attribute, floors x
storey height, DSM - DEM median, default; see cim.models.footprints) is taken as the roof's median height and a pitched
roof spans 1.5 m either side of it. Roof type from the `roof_type` attribute (flat/shed/gabled/hipped/pyramidal),
flat when absent or unknown.

Footprints with none of the three roof attributes, given a DSM and a DEM, get their roof from the DSM instead
(`detect_roofs`): the DSM cells inside the footprint, read window by window, are fitted with every candidate roof
(cim.models.roofs.fit_roofs), which gives the roof type, eave and ridge heights above the base and the ridge direction;
footprints with fewer than MIN_ROOF_SAMPLES cells get a flat roof at their median DSM height above the base.
Attribute values, when present, win.

Rectangles are meshed in bulk per roof type (gabled ridges and shed slopes turned to the detected direction);
other shapes one by one (straight skeleton); MultiPolygons get one solid per part under one feature ID.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely

from cim.geodesy import enu_frame, region_of
from cim.models.footprints import ROWS_FOLDER, BuildingOptions, prepare_footprints, take_column
from cim.models.lod1 import implicit_root
from cim.models.roofs import (
    MIN_ROOF_SAMPLES,
    ROOF_TYPES,
    RoofFit,
    as_rectangle,
    building_solid,
    fit_roofs,
    flat_solids,
    orient_rectangles,
    rectangle_solids,
    roof_frames,
)
from cim.partitions import RowStore
from cim.sources import crs as crsmod
from cim.sources.footprints import Skipped, numeric_field
from cim.sources.raster import open_raster, polygons_geojson, window_over
from cim.tiling import Runner, nest_tiles, runner_scope
from tiles.gltf import Material, MeshContent, Primitive, PropertyTable, StringColumn
from tiles.textures import encode_texture
from tiles.tileset import BoundingVolume, Content, Tile, write_atomic

Progress = Callable[[str, int, int], None]

DEFAULT_HALF_PITCH = 1.5


@dataclass
class Lod2Result:
    """What the LOD2 step produced (the root tile carries absolute transforms)."""

    root: Tile
    buildings: int
    skipped: Skipped
    roof_types: dict[str, int]
    fallbacks: dict[str, int]
    fallback_ids: list[str]
    height_sources: dict[str, int]
    roof_sources: dict[str, int]
    roof_detection: dict[str, Any] | None
    tiles: int
    triangles: int
    textured: bool
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    footprints: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    schema: dict[str, Any] | None = None  # the metadata schema of an implicit root (its tileset.json `schema`)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lod": 2,
            "implicit": self.root.implicit_tiling is not None,
            "buildings": self.buildings,
            "skipped": {"count": self.skipped.count, "reasons": self.skipped.to_dict()},
            "roof_types": self.roof_types,
            "fallbacks": self.fallbacks,
            "fallback_ids": self.fallback_ids[:20],
            "height_sources": self.height_sources,
            "roof_sources": self.roof_sources,
            "roof_detection": self.roof_detection,
            "tiles": self.tiles,
            "triangles": self.triangles,
            "textured": self.textured,
            "footprints": self.footprints,
            "seconds": round(self.seconds, 3),
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
        }


def roof_heights(attrs: pd.DataFrame, lod1_height: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per building: roof type (object array of ROOF_TYPES), eave and ridge heights above the base (float64)."""
    n = len(attrs)
    kinds = np.full(n, "flat", dtype=object)
    if "roof_type" in attrs.columns:
        raw = attrs["roof_type"].astype(object).where(attrs["roof_type"].notna(), "flat").to_numpy()
        raw = np.array([str(r).strip().lower() for r in raw], dtype=object)
        kinds = np.where(np.isin(raw, ROOF_TYPES), raw, "flat")
    eave = numeric_field(attrs, "eave_height")
    ridge = numeric_field(attrs, "ridge_height")
    pitched = kinds != "flat"
    half = np.where(pitched, DEFAULT_HALF_PITCH, 0.0)
    eave_missing = ~np.isfinite(eave)
    ridge_missing = ~np.isfinite(ridge)
    both = eave_missing & ridge_missing
    eave = np.where(both, np.maximum(lod1_height - half, 0.5 * lod1_height), eave)
    ridge = np.where(both, lod1_height + half, ridge)
    eave = np.where(eave_missing & ~both, np.maximum(2 * lod1_height - ridge, 0.5 * ridge), eave)
    ridge = np.where(ridge_missing & ~both, np.maximum(2 * lod1_height - eave, eave), ridge)
    ridge = np.maximum(ridge, eave)
    ridge = np.where(pitched, ridge, eave)
    return kinds, eave, ridge


def roof_attributes_present(attrs: pd.DataFrame) -> np.ndarray:
    """(k,) bool: the footprint has a `roof_type`, `eave_height` or `ridge_height` value."""
    present = np.isfinite(numeric_field(attrs, "eave_height")) | np.isfinite(numeric_field(attrs, "ridge_height"))
    if "roof_type" in attrs.columns:
        text = attrs["roof_type"].astype(object).where(attrs["roof_type"].notna(), "").astype(str).str.strip()
        present |= (text != "").to_numpy()
    return present


def _detect_block(idx: np.ndarray, d: dict[str, Any]) -> tuple[np.ndarray, RoofFit]:
    """Roofs of the footprints `idx` (one block of the DSM): their cells read in one window, fitted in bulk (a Dask
    task; `d` holds the footprints, bases and the DSM's path)."""
    import rasterio.features
    import rasterio.windows

    g = d["geoms"][idx]
    frames = roof_frames(g)
    with open_raster(d["dsm"]) as src:
        window = window_over(src, d["crs"], d["crs"], tuple(shapely.total_bounds(g)))
        if window is None:
            return idx, RoofFit.empty(len(idx))
        z = np.ma.filled(src.read(1, window=window, masked=True).astype(np.float64), np.nan)
        tf = rasterio.windows.transform(window, src.transform)
    labels = rasterio.features.rasterize(list(zip(polygons_geojson(frames.parts), range(1, len(frames.parts) + 1))),
                                         out_shape=z.shape, transform=tf, all_touched=False, fill=0,
                                         dtype="int32")
    rows, cols = np.nonzero(labels)
    values = z[rows, cols]
    ok = np.isfinite(values)
    rows, cols, values = rows[ok], cols[ok], values[ok]
    part = labels[rows, cols].astype(np.int64) - 1
    x, y = tf * (cols + 0.5, rows + 0.5)
    h = values - d["base"][idx][frames.owner[part]]
    return idx, fit_roofs(frames, part, np.asarray(x, np.float64), np.asarray(y, np.float64), h,
                          min_samples=d["min_samples"])


def detect_roofs(geoms: np.ndarray, crs: crsmod.CRSLike, base: np.ndarray, dsm: str | os.PathLike[str], *,
                 min_samples: int = MIN_ROOF_SAMPLES, block_px: int = 1024, runner: Runner | None = None
                 ) -> RoofFit:
    """Roof type, eave and ridge heights and ridge direction of footprints from a DSM (see cim.models.roofs.fit_roofs).

    The footprints are grouped by the `block_px` x `block_px` block of the DSM their centroid falls in; each group
    reads one DSM window and rasterises its footprint parts once (cells whose centre is inside), so no Python
    runs per cell or per building. Groups run as Dask tasks.

    Args:
        geoms: (k,) (Multi)Polygons in `crs`.
        crs: the footprints' CRS.
        base: (k,) float64 base height of each building (the lowest terrain under it); roof heights are above it.
        dsm: surface raster path.
        min_samples: fewest DSM cells for a fit (fewer: flat at the median height).
        block_px: side of the DSM blocks footprints are grouped by.
        runner: the `cim.tiling.Runner` the groups run on (default: a local Dask cluster when there are several
            groups, this process otherwise).

    Returns:
        One row per footprint; "no_samples" where the DSM has no valid cell inside it.
    """
    geoms = np.asarray(geoms, dtype=object)
    k = len(geoms)
    out = RoofFit.empty(k)
    if k == 0:
        return out
    with open_raster(dsm) as src:
        dsm_crs = crsmod.parse_crs(src.crs.to_wkt(), what=str(dsm))
        inv = ~src.transform
    fp_crs = crsmod.parse_crs(crs)
    g = geoms
    if not dsm_crs.equals(fp_crs):
        t = crsmod.transformer(fp_crs, dsm_crs)
        g = shapely.transform(geoms, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
    c = shapely.centroid(g)
    col, row = inv * (shapely.get_x(c), shapely.get_y(c))
    key = np.floor(np.asarray(row) / block_px).astype(np.int64) * 1_000_003 + np.floor(
        np.asarray(col) / block_px).astype(np.int64)
    order = np.argsort(key, kind="stable")
    cuts = np.flatnonzero(np.diff(key[order])) + 1
    jobs = np.split(order, cuts)
    state = dict(geoms=g, base=np.asarray(base, np.float64), dsm=dsm, crs=dsm_crs, min_samples=min_samples)
    with runner_scope(runner) as run:
        for idx, fit in run.map(_detect_block, jobs, state, stage="roofs"):
            out.put(idx, fit)
    return out


def _mesh_tile(sel: np.ndarray, j: dict[str, Any]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str], list[str]]:
    """Solids of the buildings `sel` of the build (see `lod2_solids`)."""
    return lod2_solids(j["geoms"][sel], j["kinds"][sel], j["base"][sel], j["eave"][sel], j["ridge"][sel],
                       j["ridge_dir"][sel], j["up_dir"][sel])


def lod2_solids(geoms: np.ndarray, kinds: np.ndarray, base: np.ndarray, eave: np.ndarray, ridge: np.ndarray,
                ridge_dir: np.ndarray | None = None, up_dir: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str], list[str]]:
    """Closed LOD2 buildings, as `cim build --level 3` makes them (also used by the planning analyses).

    Args:
        geoms: (k,) (Multi)Polygons; kinds: (k,) roof types (ROOF_TYPES); base: (k,) absolute ground heights;
            eave, ridge: (k,) roof heights above the base.
        ridge_dir, up_dir: (k, 2) detected gable and shed directions (NaN rows or None: along the long side).

    Returns:
        (positions (v, 3) float64 absolute, roof triangles (r, 3), wall and floor triangles (w, 3), building of each
        vertex (v,) (index into the inputs), the roof type built per building, fallback reasons (one per
        fallback)).
    """
    k_all = len(geoms)
    if ridge_dir is None:
        ridge_dir = np.full((k_all, 2), np.nan)
    if up_dir is None:
        up_dir = np.full((k_all, 2), np.nan)
    pos_parts, roof_parts, wall_parts, owner_parts = [], [], [], []
    n = 0
    built = ["flat"] * k_all
    reasons: list[str] = []
    rect_groups: dict[str, list[tuple[int, np.ndarray]]] = {}
    others: list[tuple[int, Any]] = []
    flat = (kinds == "flat") | (ridge <= eave)
    if flat.any():
        fb = np.flatnonzero(flat)
        pos, roof, walls, owner = flat_solids(geoms[fb], base[fb], base[fb] + eave[fb])
        pos_parts.append(pos)
        roof_parts.append(roof)
        wall_parts.append(walls)
        owner_parts.append(fb[owner])
        n += len(pos)
    for b in range(k_all):
        if flat[b]:
            continue
        for part in shapely.get_parts(geoms[b]):
            corners = as_rectangle(part)
            kind = kinds[b]
            if corners is not None:
                lengths = np.linalg.norm(corners[[1, 2]] - corners[[0, 1]], axis=1)
                if kind == "hipped" and lengths[0] - lengths[1] < 1e-3:
                    kind = "pyramidal"
                rect_groups.setdefault(kind, []).append((b, corners))
            else:
                others.append((b, part))
    for kind, items in rect_groups.items():
        locs = np.array([i for i, _ in items])
        corners = orient_rectangles(np.stack([c for _, c in items]), kind, ridge_dir[locs], up_dir[locs])
        bb = base[locs]
        pos, roof, walls, floor = rectangle_solids(corners, bb, bb + eave[locs], bb + ridge[locs], kind)
        k, nv = pos.shape[:2]
        offs = (n + np.arange(k) * nv)[:, None, None]
        pos_parts.append(pos.reshape(-1, 3))
        roof_parts.append((roof[None] + offs).reshape(-1, 3))
        wall_parts.append((np.vstack([walls, floor])[None] + offs).reshape(-1, 3))
        owner_parts.append(np.repeat(locs, nv))
        n += k * nv
        for i in locs.tolist():
            built[i] = "flat" if ridge[i] <= eave[i] else kinds[i]
    for b, part in others:
        b0 = float(base[b])
        s = building_solid(part, b0, b0 + float(eave[b]), b0 + float(ridge[b]), kinds[b])
        pos_parts.append(s.positions)
        roof_parts.append(s.roof + n)
        wall_parts.append(np.vstack([s.walls, s.floor]) + n)
        owner_parts.append(np.full(len(s.positions), b))
        n += len(s.positions)
        built[b] = s.roof_type
        if s.fallback:
            reasons.append(s.fallback.split(";")[0].split(" (")[0])
    return (np.vstack(pos_parts), np.vstack(roof_parts), np.vstack(wall_parts), np.concatenate(owner_parts),
            built, reasons)


def _unindexed(pos: np.ndarray, tris: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                                np.ndarray]:
    """Flat-shaded triangles: three own vertices each, face normals, feature IDs."""
    corners = pos[tris.reshape(-1)]
    tri = corners.reshape(-1, 3, 3)
    nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    return corners, np.repeat(nrm, 3, axis=0), owner[tris.reshape(-1)], np.arange(len(corners)).reshape(-1, 3)


def _ortho_texture(bounds: tuple[float, float, float, float], j: dict[str, Any]) -> tuple[bytes, str] | None:
    path = j.get("ortho")
    if path is None:
        return None
    import rasterio
    import rasterio.windows

    with rasterio.open(path) as src:
        if src.crs is None or not crsmod.parse_crs(src.crs.to_wkt()).equals(j["crs"]):
            return None
        win = rasterio.windows.from_bounds(*bounds, transform=src.transform)
        res = abs(src.transform.a)
        w = int(min(j["texture_px"], max(8, (bounds[2] - bounds[0]) / res)))
        h = int(min(j["texture_px"], max(8, (bounds[3] - bounds[1]) / res)))
        img = src.read([1, 2, 3], window=win, out_shape=(3, h, w), boundless=True, fill_value=160)
    return encode_texture(np.moveaxis(img, 0, -1).astype(np.uint8), j["glb"], 85)


def _write_tile(job: tuple[str, int, int, float], shared: dict[str, Any]
                ) -> tuple[str, Tile, int, list[str], list[str]]:
    """Mesh, texture, encode and write one tile (a Dask task): its buildings are rows `start` to `stop` of the
    build's `cim.partitions.RowStore` (rows in tile order); `shared` holds a few small values (the store's folder,
    the CRS, options)."""
    path, start, stop, error = job
    rows = RowStore(shared["rows"]).read(start, stop)
    j = {**shared, "geoms": rows.pop("geometry"), "kinds": np.asarray(rows.pop("kinds").to_list(), dtype=object),
         "ids": np.asarray(rows.pop("ids").to_list(), dtype=object), "base": rows.pop("base"),
         "eave": rows.pop("eave"), "ridge": rows.pop("ridge"), "ridge_dir": rows.pop("ridge_dir"),
         "up_dir": rows.pop("up_dir"), "columns": {name[7:]: v for name, v in rows.items()}}
    sel = np.arange(stop - start)
    pos, roof, walls, owner, built, reasons = _mesh_tile(sel, j)
    ecef = j["vertical"].apply_ecef(crsmod.to_ecef(j["crs"], pos[:, 0], pos[:, 1], pos[:, 2]))
    frame = enu_frame((ecef.min(axis=0) + ecef.max(axis=0)) / 2)
    local = frame.to_local(ecef)
    prims = []
    rp, rn, rf, rt = _unindexed(local, roof, owner)
    x0, y0, x1, y1 = (float(pos[:, 0].min()), float(pos[:, 1].min()), float(pos[:, 0].max()),
                      float(pos[:, 1].max()))
    tex = _ortho_texture((x0, y0, x1, y1), j)
    uv = None
    if tex is not None:
        src_xy = pos[roof.reshape(-1), :2]
        uv = np.column_stack([(src_xy[:, 0] - x0) / max(x1 - x0, 1e-9), (y1 - src_xy[:, 1]) / max(y1 - y0, 1e-9)])
    prims.append(Primitive(positions=rp.astype(np.float32), indices=rt.astype(np.uint32), normals=rn,
                           texcoords=uv, feature_ids=rf,
                           material=Material(texture=tex[0], mime_type=tex[1],  # type: ignore[arg-type]
                                             base_color=(1, 1, 1, 1)) if tex else Material(base_color=j["roof_color"])))
    wp, wn, wf, wt = _unindexed(local, walls, owner)
    prims.append(Primitive(positions=wp.astype(np.float32), indices=wt.astype(np.uint32), normals=wn,
                           feature_ids=wf, material=Material(base_color=j["color"])))
    cols = {c: take_column(v, sel) for c, v in j["columns"].items()}
    cols["roof_type_built"] = np.asarray(built, dtype=object)
    uri = f"buildings/{path}.glb"
    implicit = j.get("implicit", False)  # a tile of an implicit tree has no transform: the glb places itself
    content = MeshContent(prims, PropertyTable("building", cols), placement=frame.matrix if implicit else None)
    write_atomic(j["out"] / uri, content.to_glb(j["glb"]))
    region = region_of(ecef, pad_m=0.01)
    tile = Tile(bounding_volume=BoundingVolume(region=region), geometric_error=error, refine="ADD",
                content=Content(uri=uri, bounding_volume=BoundingVolume(region=region)),
                transform=None if implicit else frame.column_major())
    fallback_ids = [str(j["ids"][sel[i]]) for i, b in enumerate(built) if b != j["kinds"][sel[i]]]
    return path, tile, len(rt) + len(wt), reasons, fallback_ids


def build_lod2_buildings(
    footprints: str | os.PathLike[str],
    dem: str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
    *,
    ortho: str | os.PathLike[str] | None = None,
    dsm: str | os.PathLike[str] | None = None,
    options: BuildingOptions | None = None,
    crs: crsmod.CRSLike | None = None,
    texture_px: int = 1024,
    progress: Progress | None = None,
    runner: Runner | None = None,
) -> Lod2Result:
    """Build LOD2 buildings as 3D Tiles content under `out_dir/buildings/`, one Dask task per tile (see the module
    docstring).

    Args:
        footprints: footprints file with optional `roof_type`, `eave_height`, `ridge_height` attributes.
        dem: terrain raster for the buildings' bases; None puts every base at height 0.
        out_dir: the tileset folder.
        ortho: orthophoto for the roof textures (same CRS as the footprints), or None for plain roofs.
        dsm: surface raster for the roofs of footprints without roof attributes (with a DEM; see the module
            docstring) and for the heights of buildings without height attributes.
        options: see cim.models.footprints.BuildingOptions (heights, tile capacity, colours, workers).
        crs: the footprints' CRS when the file declares none.
        texture_px: largest side of a tile's roof texture.
        progress: called as progress(stage, done, total) (when no `runner` is given).
        runner: the `cim.tiling.Runner` the roof detection and tile tasks run on; by default a local Dask cluster
            of `options.workers` processes (one per core).
    """
    options = options or BuildingOptions()
    t0 = time.perf_counter()
    fp = prepare_footprints(footprints, dem, dsm=dsm, options=options, crs=crs, runner=runner,
                            scratch=Path(out_dir) / ROWS_FOLDER)
    stages = dict(fp.seconds)
    geoms, ids, base, height, source = fp.geoms, fp.ids, fp.base, fp.height, fp.source
    kinds, eave, ridge = roof_heights(fp.attrs, height)
    n = len(geoms)
    ridge_dir, up_dir = np.full((n, 2), np.nan), np.full((n, 2), np.nan)
    azimuth = np.full(n, np.nan)
    has_roof = roof_attributes_present(fp.attrs)
    roof_source = np.where(has_roof, "attribute", "default").astype(object)
    detection = None
    if dsm is not None and dem is not None and not has_roof.all():
        tick = time.perf_counter()
        need = np.flatnonzero(~has_roof)
        fit = detect_roofs(geoms[need], fp.crs, base[need], dsm, runner=runner)
        got = fit.status != "no_samples"
        at = need[got]
        kinds[at] = fit.roof_type[got]
        eave[at] = np.maximum(fit.eave[got], 0.5)
        ridge[at] = np.maximum(fit.ridge[got], eave[at])
        ridge_dir[at], up_dir[at], azimuth[at] = fit.ridge_dir[got], fit.up_dir[got], fit.ridge_azimuth[got]
        roof_source[at] = np.where(fit.status[got] == "detected", "dsm", "dsm_median")
        detection = {"footprints": len(need), "min_samples": MIN_ROOF_SAMPLES, **fit.counts()}
        stages["roofs"] = time.perf_counter() - tick
    tick = time.perf_counter()
    size = np.maximum(ridge, np.sqrt(shapely.area(geoms)))
    implicit = options.use_implicit(n)
    if implicit:
        inodes, root_cell = fp.implicit_quadtree(size, options.tile_capacity)
        nodes = [(node, f"{node.level}/{node.x}/{node.y}") for node in inodes]
    else:
        nodes = fp.quadtree(size, options.tile_capacity)  # type: ignore[assignment]
    out = Path(out_dir)
    (out / "buildings").mkdir(parents=True, exist_ok=True)
    columns = fp.columns()
    columns.update(roof_source=StringColumn.from_values(roof_source), eave_height_built=np.round(eave, 3),
                   ridge_height_built=np.round(ridge, 3), ridge_azimuth=np.round(azimuth, 1))
    stages["tiling"] = time.perf_counter() - tick
    tick = time.perf_counter()
    # every tile's rows side by side on disk, in tile order: a task reads its own rows, nothing else
    order = np.concatenate([node.content for node, _ in nodes])
    ends = np.cumsum([len(node.content) for node, _ in nodes])
    scratch = out / ROWS_FOLDER
    RowStore.write(scratch / "lod2", {
        "geometry": geoms, "kinds": StringColumn.from_values(kinds), "ids": StringColumn.from_values(ids),
        "base": base, "eave": eave, "ridge": ridge, "ridge_dir": ridge_dir, "up_dir": up_dir,
        **{f"column/{name}": v for name, v in columns.items()}}, order)
    del order, columns
    stages["partition"] = time.perf_counter() - tick
    tick = time.perf_counter()
    state = dict(rows=str(scratch / "lod2"), crs=fp.crs, out=out, ortho=None if ortho is None else str(ortho),
                 texture_px=texture_px, color=options.color, roof_color=(0.62, 0.36, 0.30, 1.0),
                 glb=options.glb, vertical=options.vertical_datum, implicit=implicit)
    jobs = [(path, int(end - len(node.content)), int(end), node.error) for (node, path), end in zip(nodes, ends)]
    try:
        with runner_scope(runner, options.workers, progress) as run:
            results = run.map(_write_tile, jobs, state, stage="lod2", cost=[j[2] - j[1] for j in jobs])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    tiles = {path: tile for path, tile, _, _, _ in results}
    triangles = sum(r[2] for r in results)
    reasons: Counter[str] = Counter()
    fallback_ids: list[str] = []
    for r in results:
        reasons.update(r[3])
        fallback_ids += r[4]
    stages["tiles"] = time.perf_counter() - tick
    schema = None
    if implicit:
        root, schema = implicit_root(out, inodes, tiles, root_cell)
    else:
        root = nest_tiles(nodes, tiles)  # type: ignore[arg-type]
    skipped = fp.skipped
    return Lod2Result(
        root=root, buildings=len(geoms), skipped=skipped,
        roof_types={k: int(v) for k, v in Counter(kinds.tolist()).items()},
        fallbacks=dict(reasons), fallback_ids=fallback_ids,
        height_sources={s: int(np.sum(source == s)) for s in ("attribute", "floors", "dsm", "default")},
        roof_sources={s: int(np.sum(roof_source == s)) for s in ("attribute", "dsm", "dsm_median", "default")},
        roof_detection=detection,
        tiles=len(nodes), triangles=triangles, textured=ortho is not None,
        seconds=time.perf_counter() - t0, stage_seconds=stages, footprints=fp.describe(), notes=fp.notes,
        schema=schema)


__all__ = ["Lod2Result", "build_lod2_buildings", "detect_roofs", "lod2_solids", "roof_attributes_present",
           "roof_heights"]
