"""LOD1 buildings: footprints extruded from the terrain to their height, tiled as 3D Tiles with per-building metadata.

Data flow: footprints (any projected CRS) -> cleaned (Multi)Polygons -> base and height per building (DEM, attribute,
floors, DSM, default) -> quadtree of tiles (ADD refinement: the most prominent buildings in the coarse tiles) -> one
glb per tile: roof, walls and floor as triangles in a local east-north-up frame, a `_FEATURE_ID_0` per vertex and the
building's attributes as an EXT_structural_metadata property table.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mapbox_earcut
import numpy as np
import pandas as pd
import rasterio
import rasterio.features
import rasterio.windows
import shapely
from pyproj import CRS
from rasterio.vrt import WarpedVRT
from scipy import ndimage

from cim.errors import BuildError, InputError, InputNotFoundError
from cim.geodesy import LocalFrame, enu_frame, union_regions
from cim.sources import crs as crsmod
from cim.sources.footprints import Skipped, building_ids, clean_footprints, numeric_field, read_footprints
from tiles.gltf import Material, MeshContent, Primitive, PropertyTable, StringColumn
from tiles.tileset import BoundingVolume, Content, Tile, write_atomic

Progress = Callable[[str, int, int], None]

HEIGHT_SOURCES = ("attribute", "floors", "dsm", "default")


@dataclass
class BuildingOptions:
    """How footprints become LOD1 buildings.

    Attributes:
        height_field: attribute holding the height in metres; None -> "height" when that column exists.
        floors_field: attribute holding the number of floors; None -> "floors" when that column exists.
        storey_height: metres per floor when the height comes from floors.
        default_height: metres when nothing else gives a height (reported).
        min_dsm_height: DSM - DEM medians below this are not taken as a building height.
        id_field: attribute holding a stable building ID; None -> the first unique known ID column, else row number.
        sink: metres the walls reach below the base so no building floats over a simplified terrain.
        tile_capacity: buildings per tile content.
        color: RGBA of the buildings.
        workers: processes meshing and encoding tiles; None -> one per CPU core.
    """

    height_field: str | None = None
    floors_field: str | None = None
    storey_height: float = 3.0
    default_height: float = 10.0
    min_dsm_height: float = 2.0
    id_field: str | None = None
    sink: float = 0.0
    tile_capacity: int = 1000
    color: tuple[float, float, float, float] = (0.92, 0.90, 0.86, 1.0)
    workers: int | None = None


@dataclass
class BuildingsResult:
    """What the buildings step produced."""

    root: Tile
    buildings: int
    skipped: Skipped
    height_sources: dict[str, int]
    default_height_ids: list[str]
    tiles: int
    triangles: int
    crs: CRS
    bounds: tuple[float, float, float, float]
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "buildings": self.buildings,
            "skipped": {"count": self.skipped.count, "reasons": self.skipped.to_dict()},
            "height_sources": self.height_sources,
            "default_height_ids": self.default_height_ids[:20],
            "tiles": self.tiles,
            "triangles": self.triangles,
            "crs": self.crs.name,
            "bounds": list(self.bounds),
            "seconds": round(self.seconds, 3),
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
        }


# --------------------------------------------------------------------------------------------------------- heights
def _geojson(geoms: np.ndarray) -> list[dict[str, Any]]:
    """GeoJSON-like dicts of (Multi)Polygons, built in bulk (shapely's per-object __geo_interface__ is slow)."""
    parts, part_geom = shapely.get_parts(geoms, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    coords, coord_ring = shapely.get_coordinates(rings, return_index=True)
    ring_coords = np.split(coords, np.cumsum(np.bincount(coord_ring, minlength=len(rings)))[:-1])
    polys: list[list[Any]] = [[] for _ in range(len(parts))]
    for r, c in zip(ring_part.tolist(), ring_coords):
        polys[r].append(c.tolist())
    out: list[list[Any]] = [[] for _ in range(len(geoms))]
    for p, g in zip(polys, part_geom.tolist()):
        out[g].append(p)
    return [{"type": "MultiPolygon", "coordinates": o} for o in out]


def _open_raster(path: str | os.PathLike[str]) -> rasterio.io.DatasetReader:
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"raster {p} does not exist")
    try:
        src = rasterio.open(p)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"cannot read raster {p}: {exc}") from exc
    if src.crs is None:
        src.close()
        raise InputError(f"raster {p} declares no CRS; assign one (e.g. gdal_edit.py -a_srs EPSG:4547 {p})")
    return src


def _window_over(src: rasterio.io.DatasetReader, src_crs: CRS, crs: CRS,
                 bounds: tuple[float, float, float, float]) -> rasterio.windows.Window | None:
    """The raster window (one cell of margin) covering `bounds` given in `crs`; None when they do not meet."""
    if not src_crs.equals(crs):
        t = crsmod.transformer(crs, src_crs)
        gx, gy = np.meshgrid(np.linspace(bounds[0], bounds[2], 21), np.linspace(bounds[1], bounds[3], 21))
        tx, ty = t.transform(gx.ravel(), gy.ravel())
        bounds = (float(np.min(tx)), float(np.min(ty)), float(np.max(tx)), float(np.max(ty)))
    win = rasterio.windows.from_bounds(*bounds, transform=src.transform)
    col0, row0 = max(int(np.floor(win.col_off)) - 1, 0), max(int(np.floor(win.row_off)) - 1, 0)
    col1 = min(int(np.ceil(win.col_off + win.width)) + 1, src.width)
    row1 = min(int(np.ceil(win.row_off + win.height)) + 1, src.height)
    if col1 <= col0 or row1 <= row0:
        return None
    return rasterio.windows.Window(col0, row0, col1 - col0, row1 - row0)


def _read_on_grid(path: str | os.PathLike[str], like: rasterio.io.DatasetReader,
                  window: rasterio.windows.Window) -> np.ndarray:
    """A raster read on `like`'s grid over `window` (resampled when its grid differs), float32 with NaN nodata."""
    with _open_raster(path) as src:
        if src.crs == like.crs and src.transform == like.transform and src.shape == like.shape:
            data = src.read(1, window=window, masked=True)
        else:
            with WarpedVRT(src, crs=like.crs, transform=like.transform, width=like.width, height=like.height,
                           resampling=rasterio.enums.Resampling.bilinear) as vrt:
                data = vrt.read(1, window=window, masked=True)
    return np.ma.filled(data.astype(np.float32), np.nan)


def bilinear(arr: np.ndarray, transform: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of a grid (cell centres) at points; NaN outside or next to nodata."""
    c, r = (~transform) @ (np.asarray(x, np.float64), np.asarray(y, np.float64))
    c, r = c - 0.5, r - 0.5
    out = np.full(len(c), np.nan)
    if arr.size == 0:
        return out
    h, w = arr.shape
    outside = (c < -0.5) | (c > w - 0.5) | (r < -0.5) | (r > h - 0.5)
    c = np.clip(c, 0, w - 1)
    r = np.clip(r, 0, h - 1)
    c0 = np.minimum(np.floor(c).astype(np.int64), max(w - 2, 0))
    r0 = np.minimum(np.floor(r).astype(np.int64), max(h - 2, 0))
    c1, r1 = np.minimum(c0 + 1, w - 1), np.minimum(r0 + 1, h - 1)
    fc, fr = c - c0, r - r0
    out = (arr[r0, c0] * (1 - fc) * (1 - fr) + arr[r0, c1] * fc * (1 - fr)
           + arr[r1, c0] * (1 - fc) * fr + arr[r1, c1] * fc * fr)
    out[outside] = np.nan
    return out


_HEIGHTS: dict[str, Any] = {}  # footprints and DEM shared with forked workers of footprint_heights


def _lowest_terrain(job: tuple[int, int]) -> tuple[int, np.ndarray]:
    """Lowest bilinear DEM value over footprints a..b: at vertices, along edges every half cell, at cell centres."""
    a, b = job
    g, dem_arr, dem_tf = _HEIGHTS["g"][a:b], _HEIGHTS["dem"], _HEIGHTS["tf"]
    k = len(g)
    cell = min(abs(dem_tf.a), abs(dem_tf.e))
    edge_xy, edge_idx = shapely.get_coordinates(shapely.segmentize(g, cell / 2), return_index=True)
    z = bilinear(dem_arr, dem_tf, edge_xy[:, 0], edge_xy[:, 1])
    base = np.full(k, np.inf)
    np.minimum.at(base, edge_idx, np.where(np.isnan(z), np.inf, z))
    # cell centres inside each footprint: candidates from each bounding box, kept if inside
    inv = ~dem_tf
    x0, y0, x1, y1 = shapely.bounds(g).T
    ca, ra = inv * (x0, y1)
    cb, rb = inv * (x1, y0)
    c0 = np.ceil(np.minimum(ca, cb) - 0.5).astype(np.int64)
    c1 = np.floor(np.maximum(ca, cb) - 0.5).astype(np.int64)
    r0 = np.ceil(np.minimum(ra, rb) - 0.5).astype(np.int64)
    r1 = np.floor(np.maximum(ra, rb) - 0.5).astype(np.int64)
    h, w = dem_arr.shape
    c0, r0 = np.maximum(c0, 0), np.maximum(r0, 0)
    c1, r1 = np.minimum(c1, w - 1), np.minimum(r1, h - 1)
    nc, nr = np.maximum(c1 - c0 + 1, 0), np.maximum(r1 - r0 + 1, 0)
    counts = nc * nr
    if counts.sum():
        owner = np.repeat(np.arange(k), counts)
        offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        col = c0[owner] + offset % nc[owner]
        row = r0[owner] + offset // nc[owner]
        cx, cy = dem_tf * (col + 0.5, row + 0.5)
        inside = shapely.contains_xy(g[owner], cx, cy)
        values = dem_arr[row[inside], col[inside]]
        np.minimum.at(base, owner[inside], np.where(np.isnan(values), np.inf, values))
    base[~np.isfinite(base)] = np.nan
    return a, base


def footprint_heights(
    geoms: np.ndarray, crs: CRS, dem: str | os.PathLike[str], dsm: str | os.PathLike[str] | None = None,
    need_dsm: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per footprint: the lowest terrain height under it and the median DSM - DEM inside it.

    The terrain is the DEM's bilinear surface; its minimum over a footprint is taken over the footprint's vertices,
    points along its edges at most half a cell apart, and every DEM cell centre inside it (all in bulk, no
    per-building Python).

    Args:
        geoms: (k,) (Multi)Polygons in `crs`.
        crs: the footprints' CRS.
        dem: terrain raster path.
        dsm: surface raster path, or None.
        need_dsm: (k,) bool, the footprints whose DSM height is wanted (default: all, when `dsm` is given).

    Returns:
        (base, dsm_height): (k,) float64 each; NaN where the footprint misses the raster (or no DSM value).
    """
    k = len(geoms)
    base = np.full(k, np.nan)
    dsm_h = np.full(k, np.nan)
    bounds = tuple(shapely.total_bounds(geoms))
    with _open_raster(dem) as src:
        dem_crs = crsmod.parse_crs(src.crs.to_wkt(), what=str(dem))
        window = _window_over(src, dem_crs, crs, bounds)
        if window is None:
            return base, dsm_h
        dem_arr = _read_on_grid(dem, src, window)
        dem_tf = rasterio.windows.transform(window, src.transform)
        dsm_arr = _read_on_grid(dsm, src, window) if dsm is not None else None
    g = geoms
    if not dem_crs.equals(crs):
        t = crsmod.transformer(crs, dem_crs)
        g = shapely.transform(geoms, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
    _HEIGHTS.update(g=g, dem=dem_arr, tf=dem_tf)
    step = max(20_000, -(-k // (2 * (os.cpu_count() or 1))))
    jobs = [(a, min(a + step, k)) for a in range(0, k, step)]
    # chunks run in forked workers (the DEM array is shared copy-on-write) when there are several
    results = run_tile_jobs(_lowest_terrain, jobs, _HEIGHTS, workers=None if len(jobs) > 1 else 1)
    for a, values in results:
        base[a:a + len(values)] = values
    if dsm_arr is not None:
        want = np.ones(k, bool) if need_dsm is None else np.asarray(need_dsm, bool)
        idx = np.flatnonzero(want)
        if len(idx):
            labels = rasterio.features.rasterize(
                list(zip(_geojson(g[idx]), range(1, len(idx) + 1))), out_shape=dem_arr.shape, transform=dem_tf,
                all_touched=False, fill=0, dtype="int32")
            diff = dsm_arr - dem_arr
            valid = np.isfinite(diff) & (labels > 0)
            if valid.any():
                med = np.asarray(ndimage.median(diff[valid], labels[valid], np.arange(1, len(idx) + 1)), np.float64)
                present = np.bincount(labels[valid], minlength=len(idx) + 1)[1:] > 0
                dsm_h[idx[present]] = med[present]
    return base, dsm_h


def attribute_heights(frame: pd.DataFrame, options: BuildingOptions) -> tuple[np.ndarray, np.ndarray]:
    """Heights from the height attribute and from floors x storey height: (k,) float64 each, NaN where absent."""
    hfield = options.height_field
    if hfield is not None and hfield not in frame.columns:
        raise InputError(f"height field {hfield!r} is not a column of the footprints; columns: {list(frame.columns)}")
    ffield = options.floors_field
    if ffield is not None and ffield not in frame.columns:
        raise InputError(f"floors field {ffield!r} is not a column of the footprints; columns: {list(frame.columns)}")
    hfield = hfield or ("height" if "height" in frame.columns else None)
    ffield = ffield or ("floors" if "floors" in frame.columns else None)
    return numeric_field(frame, hfield), numeric_field(frame, ffield) * options.storey_height


def resolve_heights(
    frame: pd.DataFrame, dsm_height: np.ndarray, options: BuildingOptions, has_dsm: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Height and its source per building: attribute, else floors x storey height, else DSM, else default.

    Returns:
        (height (k,) float64, source (k,) object array of HEIGHT_SOURCES).
    """
    attr, floors = attribute_heights(frame, options)
    dsm_ok = np.where(dsm_height >= options.min_dsm_height, dsm_height, np.nan) if has_dsm else dsm_height * np.nan
    height = np.full(len(frame), options.default_height)
    source = np.full(len(frame), "default", dtype=object)
    for values, name in ((dsm_ok, "dsm"), (floors, "floors"), (attr, "attribute")):
        ok = np.isfinite(values)
        height[ok] = values[ok]
        source[ok] = name
    return height, source


# ----------------------------------------------------------------------------------------------------------- meshes
@dataclass
class _Rings:
    """Footprint vertices of a batch of buildings, ring by ring, without the closing vertex.

    xy: (v, 2) float64; bld: (v,) building index; nxt: (v,) index of the next vertex of the same ring;
    part_ranges: (p, 2) vertex range of each polygon part; part_rings: per part, ring end offsets (earcut's format).
    """

    xy: np.ndarray
    bld: np.ndarray
    nxt: np.ndarray
    part_start: np.ndarray
    part_end: np.ndarray
    ring_end: np.ndarray
    ring_part: np.ndarray


def _rings(geoms: np.ndarray) -> _Rings:
    parts, part_bld = shapely.get_parts(geoms, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    coords, coord_ring = shapely.get_coordinates(rings, return_index=True)
    n_rings = len(rings)
    counts = np.bincount(coord_ring, minlength=n_rings)
    ends = np.cumsum(counts)
    open_mask = np.ones(len(coords), bool)
    open_mask[ends[counts > 0] - 1] = False  # drop each ring's closing vertex
    xy = coords[open_mask]
    ring_of = coord_ring[open_mask]
    open_counts = np.bincount(ring_of, minlength=n_rings)
    open_ends = np.cumsum(open_counts)
    open_starts = open_ends - open_counts
    nxt = np.arange(len(xy)) + 1
    last = open_ends[open_counts > 0] - 1
    nxt[last] = open_starts[open_counts > 0]
    # Walls face outward when exteriors run counter-clockwise and holes clockwise: where a ring runs the other
    # way, walk its edges backwards (cheaper than re-orienting the polygons).
    prv = np.empty_like(nxt)
    prv[nxt] = np.arange(len(xy))
    x, y = xy[:, 0] - xy[open_starts[ring_of], 0], xy[:, 1] - xy[open_starts[ring_of], 1]
    cross = x * y[nxt] - x[nxt] * y
    signed = np.bincount(ring_of, weights=cross, minlength=n_rings)
    first_of_part = np.r_[True, ring_part[1:] != ring_part[:-1]]
    wrong = np.where(first_of_part, signed < 0, signed > 0)
    flip = wrong[ring_of]
    nxt = np.where(flip, prv, nxt)
    part_counts = np.bincount(ring_part, weights=open_counts, minlength=len(parts)).astype(np.int64)
    part_end = np.cumsum(part_counts)
    part_start = part_end - part_counts
    return _Rings(xy=xy, bld=part_bld[ring_part[ring_of]], nxt=nxt, part_start=part_start, part_end=part_end,
                  ring_end=open_ends, ring_part=ring_part)


def _roof_triangles(r: _Rings) -> np.ndarray:
    """(t, 3) vertex indices of each footprint's triangulation, counter-clockwise seen from above."""
    n_parts = len(r.part_start)
    if n_parts == 0:
        return np.zeros((0, 3), np.int64)
    # everything earcut needs, prepared in bulk: coordinates relative to each part's first vertex (precision),
    # and each part's ring ends relative to its start
    part_of_ring = r.ring_part
    rel_ends = (r.ring_end - r.part_start[part_of_ring]).astype(np.uint32)
    ring_lo = np.searchsorted(part_of_ring, np.arange(n_parts), side="left").tolist()
    ring_hi = np.searchsorted(part_of_ring, np.arange(n_parts), side="right").tolist()
    part_of_vertex = np.repeat(np.arange(n_parts), r.part_end - r.part_start)
    rel_xy = r.xy - r.xy[r.part_start[part_of_vertex]]
    starts, ends = r.part_start.tolist(), r.part_end.tolist()
    earcut = mapbox_earcut.triangulate_float64
    tris = []
    counts = [0] * n_parts
    for k in range(n_parts):
        s, e = starts[k], ends[k]
        if e - s >= 3:
            t = earcut(rel_xy[s:e], rel_ends[ring_lo[k]:ring_hi[k]])
            tris.append(t)
            counts[k] = len(t)
    if not tris:
        return np.zeros((0, 3), np.int64)
    tri = (np.concatenate(tris).astype(np.int64) + np.repeat(r.part_start, counts)).reshape(-1, 3)
    a, b, c = r.xy[tri[:, 0]], r.xy[tri[:, 1]], r.xy[tri[:, 2]]
    area2 = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    tri = tri[area2 != 0]
    flip = area2[area2 != 0] < 0
    tri[flip] = tri[flip][:, [0, 2, 1]]
    return tri


@functools.lru_cache(maxsize=8)
def _geodetic_transformer(crs: CRS) -> Any:
    return crsmod.transformer(crsmod.to_3d(crs), crsmod.WGS84_3D)


def lod1_primitive(
    geoms: np.ndarray, bottom: np.ndarray, top: np.ndarray, crs: CRS, frame: LocalFrame | None = None,
    color: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
) -> tuple[Primitive, LocalFrame, list[float]]:
    """Closed LOD1 prisms (roof, walls, floor) of a batch of footprints.

    Args:
        geoms: (k,) (Multi)Polygons in `crs`, rings in any orientation.
        bottom, top: (k,) float64 heights of floor and roof in the CRS's vertical sense (ellipsoidal metres).
        crs: the footprints' projected CRS.
        frame: the local frame; by default an east-north-up frame at the batch's centre.
        color: the material's base colour.

    Returns:
        (primitive with positions in the frame and feature IDs 0..k-1, the frame, the 3D Tiles `region` of the
        prisms with a 1 cm margin, from their geodetic coordinates).
    """
    r = _rings(geoms)
    v = len(r.xy)
    # One exact transform of the footprint vertices; heights then move along the ellipsoid normal, which is
    # exact for ellipsoidal heights (ECEF(lon, lat, h) = ECEF(lon, lat, 0) + h * normal).
    t = _geodetic_transformer(crs)
    lon, lat, h0 = t.transform(r.xy[:, 0], r.xy[:, 1], np.zeros(v))
    lam, phi = np.radians(lon), np.radians(lat)
    normal = np.column_stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)])
    a, e2 = 6378137.0, 6.69437999014e-3
    n_rad = a / np.sqrt(1 - e2 * np.sin(phi) ** 2)
    ground = np.column_stack([n_rad * np.cos(phi) * np.cos(lam), n_rad * np.cos(phi) * np.sin(lam),
                              n_rad * (1 - e2) * np.sin(phi)])
    ecef_bottom = ground + normal * (h0 + bottom[r.bld])[:, None]
    ecef_top = ground + normal * (h0 + top[r.bld])[:, None]
    ecef = np.vstack([ecef_bottom, ecef_top])
    if frame is None:
        centre = ecef.mean(axis=0)
        frame = enu_frame(centre)
    local = frame.to_local(ecef)
    lb, lt = local[:v], local[v:]

    roof = _roof_triangles(r)
    # walls: one quad per ring edge (i -> next); _rings orders edges so that quads face outward.
    i = np.arange(v)
    j = r.nxt
    edge = lb[j] - lb[i]
    keep = np.linalg.norm(edge[:, :2], axis=1) > 1e-6
    i, j = i[keep], j[keep]
    e = len(i)
    wall_pos = np.empty((4 * e, 3))
    wall_pos[0::4], wall_pos[1::4], wall_pos[2::4], wall_pos[3::4] = lb[i], lb[j], lt[j], lt[i]
    wn = np.cross(lb[j] - lb[i], lt[i] - lb[i])
    wn /= np.maximum(np.linalg.norm(wn, axis=1, keepdims=True), 1e-12)
    wall_nrm = np.repeat(wn, 4, axis=0)
    q = np.arange(e)[:, None] * 4
    wall_tri = np.concatenate([q + [0, 1, 2], q + [0, 2, 3]], axis=1).reshape(-1, 3)

    positions = np.vstack([lt, lb, wall_pos])
    up = np.array([0.0, 0.0, 1.0])
    normals = np.vstack([np.broadcast_to(up, (v, 3)), np.broadcast_to(-up, (v, 3)), wall_nrm])
    indices = np.vstack([roof, roof[:, [0, 2, 1]] + v, wall_tri + 2 * v])
    fids = np.concatenate([r.bld, r.bld, np.repeat(r.bld[i], 4)])
    prim = Primitive(
        positions=positions.astype(np.float32),
        indices=indices.astype(np.uint32),
        normals=normals.astype(np.float32),
        feature_ids=fids,
        material=Material(base_color=color),
    )
    # the region straight from the geodetic coordinates (no second transform); heights move along the normal
    pad = 0.01
    dlat = pad / 6378137.0
    dlon = pad / (6378137.0 * max(float(np.cos(np.max(np.abs(phi)))), 1e-6))
    h_lo, h_hi = h0 + bottom[r.bld], h0 + top[r.bld]
    region = [float(lam.min() - dlon), float(phi.min() - dlat), float(lam.max() + dlon), float(phi.max() + dlat),
              float(min(h_lo.min(), h_hi.min()) - pad), float(max(h_lo.max(), h_hi.max()) + pad)]
    return prim, frame, region


# ------------------------------------------------------------------------------------------------------------ tiling
@dataclass
class _Node:
    bounds: tuple[float, float, float, float]
    content: np.ndarray  # building indices shown by this tile
    children: list[_Node]
    error: float  # size of the largest building left to descendants


def _quadtree(cx: np.ndarray, cy: np.ndarray, size: np.ndarray, idx: np.ndarray,
              bounds: tuple[float, float, float, float], capacity: int, depth: int = 0) -> _Node:
    """ADD-refinement quadtree: each node shows its `capacity` largest buildings, children the rest."""
    order = idx[np.argsort(-size[idx], kind="stable")]
    content, rest = order[:capacity], order[capacity:]
    node = _Node(bounds, content, [], float(size[rest].max()) if len(rest) else 0.0)
    if len(rest) == 0:
        return node
    if depth >= 24:  # all centroids coincide: keep the rest here
        node.content, node.error = order, 0.0
        return node
    if len(rest) <= capacity // 2:  # four thin tiles would cost more than they save
        node.children.append(_quadtree(cx, cy, size, rest, bounds, capacity, depth + 1))
        return node
    x0, y0, x1, y1 = bounds
    mx, my = (x0 + x1) / 2, (y0 + y1) / 2
    east = cx[rest] >= mx
    north = cy[rest] >= my
    for qe, qn, qb in ((False, False, (x0, y0, mx, my)), (True, False, (mx, y0, x1, my)),
                       (False, True, (x0, my, mx, y1)), (True, True, (mx, my, x1, y1))):
        sel = rest[(east == qe) & (north == qn)]
        if len(sel):
            node.children.append(_quadtree(cx, cy, size, sel, qb, capacity, depth + 1))
    return node


def _walk(node: _Node, path: str = "0"):
    yield node, path
    for k, child in enumerate(node.children):
        yield from _walk(child, f"{path}{k}")


_INTERNAL_COLUMNS = ("base_height", "height", "height_source")
_JOB: dict[str, Any] = {}  # the build's arrays, shared with forked tile workers


def _take(column: Any, index: np.ndarray) -> Any:
    return column.take(index) if isinstance(column, StringColumn) else column[index]


def _write_tile(job: tuple[str, np.ndarray, float]) -> tuple[str, Tile, int]:
    """Mesh, encode and write one tile's buildings; returns its Tile (absolute transform) and triangle count."""
    path, sel, error = job
    j = _JOB
    prim, frame, region = lod1_primitive(j["geoms"][sel], j["bottom"][sel], j["top"][sel], j["crs"],
                                         color=j["color"])
    props = PropertyTable("building", {c: _take(v, sel) for c, v in j["columns"].items()})
    uri = f"buildings/{path}.glb"
    write_atomic(j["out"] / uri, MeshContent([prim], props).to_glb())
    tile = Tile(
        bounding_volume=BoundingVolume(region=region),
        geometric_error=error,
        refine="ADD",
        content=Content(uri=uri, bounding_volume=BoundingVolume(region=region)),
        transform=frame.column_major(),
    )
    return path, tile, len(prim.indices)


@dataclass
class PreparedFootprints:
    """Footprints ready to model: cleaned geometry, stable IDs, attributes, base and height per building.

    Attributes:
        geoms: (k,) (Multi)Polygons in `crs`.
        ids: (k,) stable building IDs (str).
        attrs: the source attributes of the kept buildings.
        base: (k,) float64 lowest terrain height under each footprint (0 without a DEM).
        height: (k,) float64 building height in metres.
        source: (k,) where each height came from (HEIGHT_SOURCES).
        skipped: the buildings left out and why.
        crs: the footprints' CRS.
        seconds: time spent per stage.
    """

    geoms: np.ndarray
    ids: np.ndarray
    attrs: pd.DataFrame
    base: np.ndarray
    height: np.ndarray
    source: np.ndarray
    skipped: Skipped
    crs: CRS
    seconds: dict[str, float]

    def columns(self) -> dict[str, Any]:
        """The per-building metadata columns (see `attribute_columns`)."""
        return attribute_columns(self.attrs, self.ids, self.base, self.height, self.source)

    def quadtree(self, size: np.ndarray, capacity: int) -> list[tuple[_Node, str]]:
        """ADD-refinement tiles over the footprints' centroids, largest `size` first; (node, path) root first."""
        cent = shapely.centroid(self.geoms)
        b = shapely.total_bounds(self.geoms)
        side = max(b[2] - b[0], b[3] - b[1]) or 1.0
        root = _quadtree(shapely.get_x(cent), shapely.get_y(cent), size, np.arange(len(self.geoms)),
                         (b[0], b[1], b[0] + side, b[1] + side), max(1, capacity))
        return list(_walk(root))


def prepare_footprints(
    footprints: str | os.PathLike[str],
    dem: str | os.PathLike[str] | None,
    *,
    dsm: str | os.PathLike[str] | None = None,
    options: BuildingOptions | None = None,
    crs: crsmod.CRSLike | None = None,
) -> PreparedFootprints:
    """Read, clean and give a base and a height to every footprint (the common first half of LOD1 and LOD2).

    Raises:
        BuildError: no footprint can be built.
    """
    options = options or BuildingOptions()
    t0 = time.perf_counter()
    gdf = read_footprints(footprints, crs=crs)
    src_crs = gdf.crs
    ids = building_ids(gdf, options.id_field)
    skipped = Skipped()
    keep, geoms = clean_footprints(gdf, ids, skipped)
    attrs = gdf.drop(columns=gdf.geometry.name).loc[keep].reset_index(drop=True)
    del gdf
    ids = ids[keep]
    t1 = time.perf_counter()
    attr_h, floors_h = attribute_heights(attrs, options)
    if dem is not None:
        need_dsm = ~(np.isfinite(attr_h) | np.isfinite(floors_h))
        base, dsm_h = footprint_heights(geoms, src_crs, dem, dsm, need_dsm=need_dsm)
        outside = np.isnan(base)
        skipped.add("outside the DEM (no terrain height under the footprint)", ids[outside])
    else:
        base = np.zeros(len(geoms))
        dsm_h = np.full(len(geoms), np.nan)
        outside = np.zeros(len(geoms), bool)
    height, source = resolve_heights(attrs, dsm_h, options, dsm is not None)
    ok = ~outside
    if not ok.all():
        geoms, ids, base, height, source = geoms[ok], ids[ok], base[ok], height[ok], source[ok]
        attrs = attrs.loc[ok].reset_index(drop=True)
    if len(geoms) == 0:
        raise BuildError(f"no building of {footprints} could be built: {skipped.to_dict(5)}")
    return PreparedFootprints(geoms, ids, attrs, base, height, source, skipped, src_crs,
                              {"read": t1 - t0, "heights": time.perf_counter() - t1})


def run_tile_jobs(fn: Callable[[Any], Any], jobs: list[Any], state: dict[str, Any], *, workers: int | None = None,
                  progress: Progress | None = None, stage: str = "tiles") -> list[Any]:
    """Run `fn` over `jobs` in forked worker processes (one per core by default) that inherit `state`.

    `fn` reads the build's arrays from `state` (a module-level dict it knows); forking shares them instead of
    pickling them per job. Results come back in completion order.
    """
    n = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    results: list[Any] = []
    try:
        if n > 1:
            with multiprocessing.get_context("fork").Pool(n) as pool:
                for done, res in enumerate(pool.imap_unordered(fn, jobs)):
                    results.append(res)
                    if progress:
                        progress(stage, done + 1, len(jobs))
        else:
            for done, job in enumerate(jobs):
                results.append(fn(job))
                if progress:
                    progress(stage, done + 1, len(jobs))
    finally:
        state.clear()
    return results


def nest_tiles(nodes: list[tuple[_Node, str]], tiles: dict[str, Tile]) -> Tile:
    """Attach each tile to its parent (paths are quadtree paths) and grow bounding volumes upward; the root."""
    for node, path in reversed(nodes):  # children before parents
        tile = tiles[path]
        kids = [tiles[f"{path}{k}"] for k in range(len(node.children))]
        if kids:
            tile.children = kids
            tile.bounding_volume = BoundingVolume(
                region=union_regions([tile.bounding_volume.region] + [k.bounding_volume.region for k in kids])
            )
    return tiles[nodes[0][1]]


def build_buildings(
    footprints: str | os.PathLike[str],
    dem: str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
    *,
    dsm: str | os.PathLike[str] | None = None,
    options: BuildingOptions | None = None,
    crs: crsmod.CRSLike | None = None,
    progress: Progress | None = None,
) -> BuildingsResult:
    """Build LOD1 buildings as 3D Tiles content under `out_dir/buildings/`.

    Args:
        footprints: footprints file (any GDAL vector format or GeoParquet), projected CRS.
        dem: terrain raster for the buildings' bases; None puts every base at height 0.
        out_dir: the tileset folder; glb files go to `out_dir/buildings/`.
        dsm: surface raster for heights of buildings with no height or floors attribute.
        options: see BuildingOptions.
        crs: the footprints' CRS when the file declares none.
        progress: called as progress(stage, done, total).

    Returns:
        BuildingsResult with the subtree root (absolute tile transforms) and the report.
    """
    options = options or BuildingOptions()
    t0 = time.perf_counter()
    if progress:
        progress("heights", 0, 1)
    fp = prepare_footprints(footprints, dem, dsm=dsm, options=options, crs=crs)
    if progress:
        progress("heights", 1, 1)
    stages = dict(fp.seconds)
    tick = time.perf_counter()
    nodes = fp.quadtree(np.maximum(fp.height, np.sqrt(shapely.area(fp.geoms))), options.tile_capacity)
    columns = fp.columns()
    stages["tiling"] = time.perf_counter() - tick
    tick = time.perf_counter()

    out = Path(out_dir)
    (out / "buildings").mkdir(parents=True, exist_ok=True)
    _JOB.update(geoms=fp.geoms, bottom=fp.base - options.sink, top=fp.base + fp.height, crs=fp.crs,
                color=options.color, columns=columns, out=out)
    _geodetic_transformer(fp.crs)  # build it once, before forking
    jobs = [(path, node.content, node.error) for node, path in nodes]
    results = run_tile_jobs(_write_tile, jobs, _JOB, workers=options.workers, progress=progress)
    tiles = {path: tile for path, tile, _ in results}
    triangles = sum(n for _, _, n in results)
    stages["tiles"] = time.perf_counter() - tick
    root = nest_tiles(nodes, tiles)
    b = shapely.total_bounds(fp.geoms)
    return BuildingsResult(
        root=root,
        buildings=len(fp.geoms),
        skipped=fp.skipped,
        height_sources={s: int(np.sum(fp.source == s)) for s in HEIGHT_SOURCES},
        default_height_ids=[str(i) for i in fp.ids[fp.source == "default"]],
        tiles=len(nodes),
        triangles=triangles,
        crs=fp.crs,
        bounds=tuple(float(v) for v in b),
        seconds=time.perf_counter() - t0,
        stage_seconds=stages,
    )


def attribute_columns(attrs: pd.DataFrame, ids: np.ndarray, base: np.ndarray, height: np.ndarray,
                      source: np.ndarray) -> dict[str, Any]:
    """The per-building metadata: stable `id`, every source attribute, and the model's own heights.

    Numbers stay numpy arrays (NaN for missing); text becomes `StringColumn`s, so slicing per tile and sharing with
    forked workers touches no Python object per value.
    """
    columns: dict[str, Any] = {"id": StringColumn.from_values(np.asarray(ids, dtype=object))}
    for col in attrs.columns:
        if col in ("id", *_INTERNAL_COLUMNS):
            continue
        values = attrs[col]
        if pd.api.types.is_datetime64_any_dtype(values.dtype):
            columns[col] = StringColumn.from_values(values.dt.strftime("%Y-%m-%dT%H:%M:%S"))
        elif pd.api.types.is_bool_dtype(values.dtype):
            columns[col] = values.to_numpy(dtype=bool, na_value=False)
        elif pd.api.types.is_integer_dtype(values.dtype):
            columns[col] = values.astype("Int64").array if values.isna().any() else values.to_numpy(np.int64)
        elif pd.api.types.is_numeric_dtype(values.dtype):
            columns[col] = values.to_numpy(dtype=np.float64, na_value=np.nan)
        elif hasattr(values.array, "__arrow_array__") and pd.api.types.is_string_dtype(values.dtype):
            columns[col] = StringColumn.from_values(values.array)
        else:
            columns[col] = StringColumn.from_values(values.astype(object).where(values.notna(), None).to_numpy())
    columns["height"] = np.round(height, 3)
    columns["base_height"] = np.round(base, 3)
    columns["height_source"] = StringColumn.from_values(np.asarray(source, dtype=object))
    return columns
