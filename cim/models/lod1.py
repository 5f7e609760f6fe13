"""LOD1 buildings: footprints extruded from the terrain to their height, tiled as 3D Tiles with per-building metadata.

Data flow: footprints prepared by `cim.models.footprints` (cleaned, with base and height per building) ->
quadtree of tiles (`cim.tiling`; ADD refinement: the most prominent buildings in the coarse tiles) -> one glb per
tile: roof, walls and floor as triangles in a local east-north-up frame (`lod1_primitive`), a `_FEATURE_ID_0` per
vertex and the building's attributes as an EXT_structural_metadata property table.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mapbox_earcut
import numpy as np
import shapely
from pyproj import CRS

from cim.geodesy import LocalFrame, enu_frame
from cim.models.footprints import ROWS_FOLDER, BuildingOptions
from cim.models.partitioned import arrange_rows, prepare_partitions
from cim.partitions import PolygonColumn, RowStore
from cim.sources import crs as crsmod
from cim.sources.footprints import Skipped
from cim.sources.vertical import ELLIPSOIDAL, VerticalDatum
from cim.tiling import ImplicitNode, Progress, Runner, nest_tiles, runner_scope
from tiles.gltf import Material, MeshContent, Primitive, PropertyTable
from tiles.implicit import SUBTREE_URI, ImplicitTile, write_quadtree
from tiles.tileset import BoundingVolume, Content, Tile, write_atomic


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
    footprints: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    schema: dict[str, Any] | None = None  # the metadata schema of an implicit root (its tileset.json `schema`)

    @property
    def implicit(self) -> bool:
        return self.root.implicit_tiling is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "buildings": self.buildings,
            "implicit": self.implicit,
            "skipped": {"count": self.skipped.count, "reasons": self.skipped.to_dict()},
            "height_sources": self.height_sources,
            "default_height_ids": self.default_height_ids[:20],
            "tiles": self.tiles,
            "triangles": self.triangles,
            "crs": self.crs.name,
            "footprints": self.footprints,
            "bounds": list(self.bounds),
            "seconds": round(self.seconds, 3),
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
        }


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


def _rings(geoms: np.ndarray | PolygonColumn) -> _Rings:
    if isinstance(geoms, PolygonColumn):  # the same arrays straight from the coordinates and offsets
        n_parts, n_rings = len(geoms.part_offsets) - 1, len(geoms.ring_offsets) - 1
        part_bld = np.repeat(np.arange(len(geoms)), np.diff(geoms.geom_offsets))
        ring_part = np.repeat(np.arange(n_parts), np.diff(geoms.part_offsets))
        coords = geoms.coords
        coord_ring = np.repeat(np.arange(n_rings), np.diff(geoms.ring_offsets))
    else:
        parts, part_bld = shapely.get_parts(geoms, return_index=True)
        rings, ring_part = shapely.get_rings(parts, return_index=True)
        coords, coord_ring = shapely.get_coordinates(rings, return_index=True)
        n_parts, n_rings = len(parts), len(rings)
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
    part_counts = np.bincount(ring_part, weights=open_counts, minlength=n_parts).astype(np.int64)
    part_end = np.cumsum(part_counts)
    part_start = part_end - part_counts
    return _Rings(xy=xy, bld=part_bld[ring_part[ring_of]], nxt=nxt, part_start=part_start, part_end=part_end,
                  ring_end=open_ends, ring_part=ring_part)


# earcut's triangles of a strictly convex quadrilateral ring (vertices 0-3): it cuts the ear at vertex 3, then at 0
_QUAD_CCW = np.array([2, 3, 0, 2, 0, 1], np.int64)  # the ring counter-clockwise
_QUAD_CW = np.array([1, 0, 3, 1, 3, 2], np.int64)  # the ring clockwise
_CONVEX_SINE = 1e-9  # turns sharper than this (sine of the angle) count as strictly convex


def _convex_quads(rel_xy: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which of the 4-vertex rings starting at `starts` are strictly convex, and which of those run
    counter-clockwise. A corner turning by less than `_CONVEX_SINE` (or a repeated vertex) is not strict: such a
    ring is left to earcut, whose collinear-point filter decides it.

    Returns:
        ((q,) bool strictly convex, (q,) bool counter-clockwise).
    """
    p = rel_xy[starts[:, None] + np.arange(4)]  # (q, 4, 2)
    e = np.roll(p, -1, axis=1) - p  # edge i: vertex i -> i + 1
    f = np.roll(e, -1, axis=1)  # edge i + 1
    cross = e[..., 0] * f[..., 1] - e[..., 1] * f[..., 0]
    length = np.hypot(e[..., 0], e[..., 1])
    tol = _CONVEX_SINE * length * np.roll(length, -1, axis=1)
    ccw = (cross > tol).all(axis=1)
    cw = (cross < -tol).all(axis=1)
    return ccw | cw, ccw


def _roof_triangles(r: _Rings) -> np.ndarray:
    """(t, 3) vertex indices of each footprint's triangulation, counter-clockwise seen from above.

    Every part is triangulated as earcut triangulates it; a strictly convex quadrilateral without holes (most
    building footprints) gets earcut's two triangles without the call (`_QUAD_CCW`, `_QUAD_CW`: the same
    indices, checked against earcut in tests/cim/models/test_lod1.py).
    """
    n_parts = len(r.part_start)
    if n_parts == 0:
        return np.zeros((0, 3), np.int64)
    # everything earcut needs, prepared in bulk: coordinates relative to each part's first vertex (precision),
    # and each part's ring ends relative to its start
    part_of_ring = r.ring_part
    rel_ends = (r.ring_end - r.part_start[part_of_ring]).astype(np.uint32)
    ring_lo = np.searchsorted(part_of_ring, np.arange(n_parts), side="left")
    ring_hi = np.searchsorted(part_of_ring, np.arange(n_parts), side="right")
    part_size = r.part_end - r.part_start
    part_of_vertex = np.repeat(np.arange(n_parts), part_size)
    rel_xy = r.xy - r.xy[r.part_start[part_of_vertex]]
    quad = np.flatnonzero((part_size == 4) & (ring_hi - ring_lo == 1))
    convex, ccw = _convex_quads(rel_xy, r.part_start[quad])
    fast = np.zeros(n_parts, bool)
    fast[quad[convex]] = True
    counts = np.zeros(n_parts, np.int64)  # indices (3 a triangle) of each part
    counts[fast] = 6
    slow = np.flatnonzero(~fast & (part_size >= 3))
    earcut = mapbox_earcut.triangulate_float64
    tris = []
    starts, ends, lo, hi = (r.part_start[slow].tolist(), r.part_end[slow].tolist(), ring_lo[slow].tolist(),
                            ring_hi[slow].tolist())
    for k, (s, e, a, b) in enumerate(zip(starts, ends, lo, hi)):
        t = earcut(rel_xy[s:e], rel_ends[a:b])
        tris.append(t)
        counts[slow[k]] = len(t)
    if not counts.any():
        return np.zeros((0, 3), np.int64)
    at = np.cumsum(counts) - counts  # where each part's indices go, in part order
    flat = np.empty(int(counts.sum()), np.int64)
    f = np.flatnonzero(fast)
    flat[at[f][:, None] + np.arange(6)] = np.where(ccw[convex][:, None], _QUAD_CCW, _QUAD_CW)
    if tris:
        got = np.concatenate(tris).astype(np.int64)
        flat[np.repeat(at[slow] - np.cumsum(counts[slow]) + counts[slow], counts[slow]) + np.arange(len(got))] = got
    tri = (flat + np.repeat(r.part_start, counts)).reshape(-1, 3)
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
    color: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0), vertical: VerticalDatum = ELLIPSOIDAL,
) -> tuple[Primitive, LocalFrame, list[float]]:
    """Closed LOD1 prisms (roof, walls, floor) of a batch of footprints.

    Args:
        geoms: (k,) (Multi)Polygons in `crs`, rings in any orientation, or their `PolygonColumn`.
        bottom, top: (k,) float64 heights of floor and roof in the CRS's vertical sense (ellipsoidal metres).
        crs: the footprints' projected CRS.
        frame: the local frame; by default an east-north-up frame at the batch's centre.
        color: the material's base colour.
        vertical: the datum of `bottom`/`top`; each footprint vertex's heights become ellipsoidal (+ N there).

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
    h0 = np.asarray(h0, np.float64) + vertical.undulation(lon, lat)
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



def _write_tile(job: tuple[str, int, int, int, float], j: dict[str, Any]) -> tuple[str, Tile, int]:
    """Mesh, encode and write one tile's buildings (a Dask task); returns its Tile (absolute transform) and
    triangle count.

    `job` is the tile's path, its group and row range in that group's `cim.partitions.RowStore` (rows in tile
    order: `cim.models.partitioned.arrange_rows`) and its geometric error; `j` is what every tile shares (a few
    small values: the stores' folder, the CRS, options)."""
    path, group, start, stop, error = job
    rows = RowStore(Path(j["rows"]) / f"g{group:05d}").read(start, stop, raw=True)
    prim, frame, region = lod1_primitive(rows.pop("geometry"), rows.pop("bottom"), rows.pop("top"), j["crs"],
                                         color=j["color"], vertical=j["vertical"])
    props = PropertyTable("building", {name[7:]: v for name, v in rows.items() if name.startswith("column/")})
    uri = f"buildings/{path}.glb"
    implicit = j.get("implicit", False)  # a tile of an implicit tree has no transform: the glb places itself
    content = MeshContent([prim], props, placement=frame.matrix if implicit else None)
    write_atomic(j["out"] / uri, content.to_glb(j["glb"]))
    tile = Tile(
        bounding_volume=BoundingVolume(region=region),
        geometric_error=error,
        refine="ADD",
        content=Content(uri=uri, bounding_volume=BoundingVolume(region=region)),
        transform=None if implicit else frame.column_major(),
    )
    return path, tile, len(prim.indices)


def implicit_root(out: Path, nodes: list[ImplicitNode], tiles: dict[str, Tile], root_cell: list[float],
                  ) -> tuple[Tile, dict[str, Any] | None]:
    """Write the subtree files of a building layer's implicit quadtree under `out/buildings/subtrees/`; its root.

    Tiles carry no volume of their own: each holds buildings that lie whole in its cell (`implicit_quadtree`),
    so the subdivision of the root region (the cells, between the lowest and highest point of any building)
    bounds them; contents carry their regions as content metadata. A tile's geometric error is the root's
    halved per level, so the root's is the least for which no tile's error is below the size of the largest
    building it leaves to its descendants.
    """
    regions = {path: tile.content.bounding_volume.region for path, tile in tiles.items()}  # type: ignore[union-attr]
    low = min(r[4] for r in regions.values())
    high = max(r[5] for r in regions.values())
    error = max(n.error * 2.0**n.level for n in nodes)
    itiles = [ImplicitTile(n.level, n.x, n.y, content_region=regions[f"{n.level}/{n.x}/{n.y}"]) for n in nodes]
    return write_quadtree(out, itiles, root_region=[*root_cell, low, high], geometric_error=error,
                          content_uri="buildings/{level}/{x}/{y}.glb", refine="ADD",
                          subtree_uri="buildings/" + SUBTREE_URI)


@contextlib.contextmanager
def scratch_rows(folder: Path, run: Runner) -> Iterator[None]:
    """The build's row stores, removed when the tiles are written; kept when it fails inside a resumable build
    (the manifest lists the waves that wrote them, which a resumed build does not run again)."""
    try:
        yield
    except BaseException:
        if run.manifest is None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)


def build_buildings(
    footprints: str | os.PathLike[str],
    dem: str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
    *,
    dsm: str | os.PathLike[str] | None = None,
    options: BuildingOptions | None = None,
    crs: crsmod.CRSLike | None = None,
    progress: Progress | None = None,
    runner: Runner | None = None,
) -> BuildingsResult:
    """Build LOD1 buildings as 3D Tiles content under `out_dir/buildings/`, one Dask task per tile.

    Args:
        footprints: footprints file (any GDAL vector format or GeoParquet), projected CRS.
        dem: terrain raster for the buildings' bases; None puts every base at height 0.
        out_dir: the tileset folder; glb files go to `out_dir/buildings/`.
        dsm: surface raster for heights of buildings with no height or floors attribute.
        options: see BuildingOptions.
        crs: the footprints' CRS when the file declares none.
        progress: called as progress(stage, done, total) (when no `runner` is given).
        runner: the `cim.tiling.Runner` the tile tasks run on; by default a local Dask cluster of
            `options.workers` processes (one per core).

    Returns:
        BuildingsResult with the subtree root (absolute tile transforms) and the report.
    """
    options = options or BuildingOptions()
    t0 = time.perf_counter()
    out = Path(out_dir)
    scratch = out / ROWS_FOLDER
    with runner_scope(runner, options.workers, progress) as run, scratch_rows(scratch, run):
        fp = prepare_partitions(footprints, dem, runner=run, scratch=scratch / "footprints", dsm=dsm,
                                options=options, crs=crs)
        stages = dict(fp.seconds)
        tick = time.perf_counter()
        plan = fp.plan_tiles(options)
        implicit, nodes = plan.implicit, plan.nodes
        stages["tiling"] = time.perf_counter() - tick
        tick = time.perf_counter()
        (out / "buildings").mkdir(parents=True, exist_ok=True)
        # every tile's rows side by side on disk, in tile order: a task reads its own rows, nothing else
        spans = arrange_rows(fp, nodes, run, scratch / "lod1")
        stages["partition"] = time.perf_counter() - tick
        tick = time.perf_counter()
        state = dict(rows=str(scratch / "lod1"), crs=fp.crs, color=options.color, out=out, glb=options.glb,
                     vertical=options.vertical_datum, implicit=implicit)
        jobs = [(path, *span, node.error) for (node, path), span in zip(nodes, spans)]
        results = run.map(_write_tile, jobs, state, stage="lod1", cost=[j[3] - j[2] for j in jobs])
    tiles = {path: tile for path, tile, _ in results}
    triangles = sum(n for _, _, n in results)
    stages["tiles"] = time.perf_counter() - tick
    schema = None
    if implicit:
        root, schema = implicit_root(out, plan.inodes, tiles, plan.root_cell)  # type: ignore[arg-type]
    else:
        root = nest_tiles(nodes, tiles)  # type: ignore[arg-type]
    return BuildingsResult(
        root=root,
        buildings=len(fp),
        skipped=fp.skipped,
        height_sources=fp.height_sources,
        default_height_ids=fp.default_ids,
        tiles=len(nodes),
        triangles=triangles,
        crs=fp.crs,
        bounds=tuple(float(v) for v in fp.bounds),
        seconds=time.perf_counter() - t0,
        stage_seconds=stages,
        footprints=fp.describe(),
        notes=fp.notes,
        schema=schema,
    )

