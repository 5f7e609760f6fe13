"""Terrain: a DEM as a quadtree of adaptive TIN tiles (glb, 3D Tiles REPLACE refinement), orthophoto-textured
(hillshaded where there is no orthophoto).

Data flow: `read_dem` -> small nodata holes filled -> a pyramid of the DEM (level `l` of `L` has a sample
every `2**(L-l)` DEM samples, a masked [1/4, 1/2, 1/4] average of the level below) -> per tile, a TIN of its
`(tile_px + 1)**2` samples from pydelatin at the level's tolerance -> neighbours' border vertices merged (no
cracks) -> triangles touching nodata removed -> the deviation from the full-resolution DEM measured -> glb
with skirts and the orthophoto as texture (the DEM's hillshade where it has no data, or without one), unlit
(the photo and the hillshade carry their shading already), or the neutral colour with smooth normals when there
is neither; placed by a per-tile ENU transform.

Rules (see docs/architecture.md, "Terrain"):
- A vertex is a DEM sample (pixel centre) of its level; leaf vertices carry the DEM height itself. Heights are
  used as ellipsoidal heights (no geoid); a compound CRS contributes its horizontal part only.
- Same-level neighbours share every border vertex: the border vertex set of an edge is the union of the border
  vertices pydelatin chose on that edge in the two tiles, inserted into both TINs by splitting the boundary
  triangle. Both tiles then carry the same 3D polyline, built from the same samples.
- Between levels, every tile side hangs a vertical skirt of depth `own deviation + largest deviation of the
  tileset + max_error`, which covers the largest possible step to any neighbour at any level.
- A tile's geometric error is the measured maximum vertical distance between its mesh and the full-resolution
  DEM over its area, made non-increasing downward; leaves declare 0 (their tolerance is `max_error`).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from pydelatin import Delatin
from pyproj import CRS

from cim.errors import InputError
from cim.geodesy import LocalFrame, enu_frame, region_of, union_regions
from cim.sources.crs import ECEF, to_3d, transformer
from cim.sources.raster import NEUTRAL_RGB, DemGrid, DemSampler, OrthoReader, fill_small_holes, read_dem
from cim.partitions import WindowPart
from cim.sources.vertical import ELLIPSOIDAL, VerticalDatum
from cim.tiling import Runner, runner_scope
from tiles.compression import GlbOptions
from tiles.gltf import Material, MeshContent, Primitive
from tiles.implicit import SUBTREE_URI, ImplicitTile, write_quadtree
from tiles.textures import WEBP_LADDER, encode_texture, halve_for_bilinear, webp_at_least
from tiles.tileset import BoundingVolume, Content, Tile, write_atomic

Progress = Callable[[str, int, int], None]


@dataclass
class TerrainOptions:
    """Parameters of the terrain build.

    Attributes:
        max_error: metres, the leaf-level TIN tolerance against the DEM (coarser levels double it per level).
        tile_px: DEM samples per tile side at every level (leaves at full DEM resolution).
        texture_px: largest orthophoto (or hillshade) texture size per tile (pixels per side); a tile over which
            the orthophoto has fewer pixels gets that many (`texture_size`).
        jpeg_quality: JPEG quality of JPEG textures (1-100), and of the floor the WebP quality of orthophoto
            textures is chosen against (`ortho_texture`).
        hillshade: shade the terrain by its relief where there is no orthophoto (none given, or outside it and
            under its transparent pixels), so hills and valleys show; False: one neutral colour there.
        crs: the DEM's CRS when the file declares none (overrides the file's otherwise).
        fill_holes_px: nodata holes up to this many DEM cells (not touching the edge) are interpolated.
        glb: how tiles are encoded (compression, textures; `tiles.compression.GlbOptions`).
        vertical_datum: what input heights are measured from (`cim.sources.vertical.VerticalDatum`); they become
            ellipsoidal heights (h = H + N) before anything is placed.
        implicit: write the terrain as a 3D Tiles 1.1 implicit quadtree (subtree files; tileset.json holds only
            the root); False: an explicit tile tree; None: implicit from `IMPLICIT_AUTO_TILES` tiles.
    """

    max_error: float = 0.5
    tile_px: int = 256
    texture_px: int = 512
    jpeg_quality: int = 85
    hillshade: bool = True
    crs: str | None = None
    fill_holes_px: int = 16
    glb: GlbOptions = field(default_factory=GlbOptions)
    vertical_datum: VerticalDatum = ELLIPSOIDAL
    implicit: bool | None = None

    def use_implicit(self, tiles: int) -> bool:
        """Whether a terrain of `tiles` tiles is written as an implicit quadtree."""
        return self.implicit if self.implicit is not None else tiles >= IMPLICIT_AUTO_TILES

    def check(self) -> None:
        """Raise InputError for a value the build cannot use."""
        if not (self.max_error > 0 and math.isfinite(self.max_error)):
            raise InputError(f"max_error={self.max_error} must be a positive number of metres")
        if self.tile_px < 2:
            raise InputError(f"tile_px={self.tile_px} must be at least 2 DEM samples")
        if self.texture_px < 8:
            raise InputError(f"texture_px={self.texture_px} must be at least 8 pixels")
        if not 1 <= self.jpeg_quality <= 100:
            raise InputError(f"jpeg_quality={self.jpeg_quality} must be between 1 and 100")


#: `TerrainOptions.implicit=None` writes an implicit tileset from this many tiles
IMPLICIT_AUTO_TILES = 1000


@dataclass
class TerrainResult:
    """What `build_terrain` made.

    Attributes:
        root: the terrain subtree (REPLACE refinement, region bounding volumes, content URIs relative to the
            tileset folder such as "terrain/3/5/2.glb"). Each tile with content carries the absolute transform
            of its own ENU frame (local -> ECEF); turn them into the spec's parent-relative transforms with
            `tiles.tileset.relative_transforms` before writing the tileset.
        tiles: glb files written.
        triangles: triangles written (surface and skirts).
        levels: quadtree levels (root = level 0).
        seconds: wall time of the build.
        crs: the DEM's CRS.
        bounds: (left, bottom, right, top) of the DEM in its CRS.
        max_error: the leaf tolerance (metres).
        leaf_deviation: the largest measured vertical deviation of a leaf from the DEM (metres).
        level_triangles: surface triangles per level, root first.
    """

    root: Tile
    tiles: int
    triangles: int
    levels: int
    seconds: float
    crs: CRS
    bounds: tuple[float, float, float, float]
    max_error: float = 0.0
    leaf_deviation: float = 0.0
    level_triangles: list[int] = field(default_factory=list)
    schema: dict[str, Any] | None = None  # the metadata schema of an implicit root (its tileset.json `schema`)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (the tile tree itself is left out; it goes into the tileset)."""
        return {
            "tiles": self.tiles,
            "triangles": self.triangles,
            "levels": self.levels,
            "seconds": round(self.seconds, 3),
            "crs": self.crs.to_string(),
            "bounds": list(self.bounds),
            "terrainMaxError": self.max_error,
            "leafDeviation": round(self.leaf_deviation, 4),
            "levelTriangles": list(self.level_triangles),
            "implicit": self.root.implicit_tiling is not None,
            "geometricError": self.root.geometric_error,
        }


@dataclass
class _Tin:
    """A tile's TIN on its level grid: `verts` (k, 2) int64 (col, row) from its corner, `tris` (m, 3)."""

    verts: np.ndarray
    tris: np.ndarray
    deviation: float = 0.0


@dataclass
class _Tiling:
    """The quadtree: `pyramid[m]` is the padded grid with a sample every 2**m DEM samples (NaN = nodata)."""

    grid: DemGrid
    horizontal: CRS
    tile_px: int
    depth: int  # index of the leaf level
    pyramid: list[np.ndarray]
    vertical: VerticalDatum = ELLIPSOIDAL
    _to_ecef: Any = None

    def to_ecef(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """(n, 3) float64 ECEF of source coordinates (cim.sources.crs.to_ecef, cached), heights made ellipsoidal
        by the vertical datum."""
        if self._to_ecef is None:
            self._to_ecef = transformer(to_3d(self.horizontal), ECEF)
        ex, ey, ez = self._to_ecef.transform(
            np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(z, np.float64)
        )
        return self.vertical.apply_ecef(np.column_stack([ex, ey, ez]))

    def step(self, level: int) -> int:
        return 2 ** (self.depth - level)

    def heights(self, level: int) -> np.ndarray:
        return self.pyramid[self.depth - level]

    def tile_block(self, level: int, tx: int, ty: int) -> np.ndarray:
        n = self.tile_px
        return self.heights(level)[ty * n : (ty + 1) * n + 1, tx * n : (tx + 1) * n + 1]


def build_terrain(
    dem: str | Path,
    ortho: str | Path | None,
    out_dir: str | Path,
    options: TerrainOptions | None = None,
    progress: Progress | None = None,
    runner: Runner | None = None,
) -> TerrainResult:
    """Build the terrain tiles of a DEM, textured with an orthophoto.

    The TIN of every tile (per level; the driver stitches a level's tiles) and then the glb of every tile
    (texture, normals, skirts, encoding) are Dask tasks run by `runner`; each task is given its tile's heights,
    not the DEM, and reads the orthophoto window under its tile.

    Args:
        dem: the DEM raster (band 1, heights in metres, used as ellipsoidal heights).
        ortho: the orthophoto raster, or None for an untextured terrain in a neutral colour.
        out_dir: the tileset folder; glbs go to `out_dir/terrain/<level>/<x>/<y>.glb` (replacing old ones).
        options: build parameters.
        progress: called as `progress(stage, done, total)` as tasks finish ("terrain-tins", "terrain"), when no
            `runner` is given (a runner reports to its own progress callback).
        runner: the `cim.tiling.Runner` the tasks run on; by default a local Dask cluster started when a wave has
            more than one task.

    Returns:
        The subtree and statistics.

    Raises:
        InputNotFoundError: a raster does not exist.
        InputError: a raster cannot be read, the DEM has no valid height, or an option is out of range.
        CRSError: the DEM has no CRS and none was given.
    """
    started = time.perf_counter()
    options = options or TerrainOptions()
    options.check()
    out = Path(out_dir)
    grid = read_dem(dem, options.crs)
    grid.heights = fill_small_holes(grid.heights, options.fill_holes_px)
    tiling = _tiling(grid, options.tile_px)
    tiling.vertical = options.vertical_datum

    tins: dict[tuple[int, int, int], _Tin] = {}
    with runner_scope(runner, progress=progress) as run:
        for level in range(tiling.depth, -1, -1):
            tins.update(_level_tins(tiling, level, options.max_error * tiling.step(level), run))
        if not tins:
            raise InputError(f"DEM {grid.path} has no three adjacent valid samples to triangulate")
        largest = max(t.deviation for t in tins.values())
        implicit = options.use_implicit(len(tins))

        # one task per tile: its TIN and the heights under it (one sample of margin, for the normals) go with it
        n = tiling.tile_px
        jobs = []
        for key, tin in sorted(tins.items()):
            level, tx, ty = key
            h = tiling.heights(level)
            r0, c0 = max(ty * n - 1, 0), max(tx * n - 1, 0)
            block = np.ascontiguousarray(h[r0:(ty + 1) * n + 2, c0:(tx + 1) * n + 2])
            jobs.append((key, tin, tin.deviation + largest + options.max_error, block, r0, c0, h.shape))
        state = dict(grid=DemGrid(np.zeros((0, 0)), grid.transform, grid.crs, grid.bounds, grid.path),
                     horizontal=tiling.horizontal, tile_px=n, depth=tiling.depth, vertical=tiling.vertical,
                     ortho=None if ortho is None else str(ortho), options=options, out=out,
                     implicit=_implicit_axes(grid) if implicit else None)
        results = _write_tiles(run, jobs, state, ortho is not None and options.glb.makes_webp
                               and options.glb.texture_quality is None)
    written: dict[tuple[int, int, int], _Written] = {}
    level_triangles = [0] * (tiling.depth + 1)
    for job, w in zip(jobs, results):
        written[job[0]] = w
        level_triangles[job[0][0]] += len(job[1].tris)

    schema = None
    if implicit:
        itiles: list[ImplicitTile] = []
        errors: list[float] = []
        _node((0, 0, 0), tiling.depth, tins, written, (itiles, errors), _implicit_axes(grid))
        # implied errors halve per level: the root's is the least that keeps every tile's at or above its own
        error = max(e * 2.0**t.level for t, e in zip(itiles, errors))
        root, schema = write_quadtree(out, itiles, root_region=list(itiles[0].region or []), geometric_error=error,
                                      content_uri="terrain/{level}/{x}/{y}.glb", refine="REPLACE",
                                      subtree_uri="terrain/" + SUBTREE_URI)
    else:
        root = _node((0, 0, 0), tiling.depth, tins, written)
    if root is None:  # unreachable: a tile with content always has the root as ancestor
        raise InputError(f"DEM {grid.path}: no terrain tile")
    leaf_dev = max((t.deviation for k, t in tins.items() if k[0] == tiling.depth), default=0.0)
    root.extras = {
        **(getattr(root, "extras", None) or {}),
        "terrainMaxError": options.max_error,
        "terrainLeafDeviation": round(leaf_dev, 4),
    }
    return TerrainResult(
        root=root,
        tiles=len(written),
        triangles=sum(w.triangles for w in written.values()),
        levels=tiling.depth + 1,
        seconds=time.perf_counter() - started,
        crs=grid.crs,
        bounds=grid.bounds,
        max_error=options.max_error,
        leaf_deviation=leaf_dev,
        level_triangles=level_triangles,
        schema=schema,
    )


#: Pilot tiles of a level (`_pilots`): one per this many of its tiles, at most `MAX_PILOTS`; a level of one
#: tile has none (its tile chooses from the whole ladder beside the others).
TILES_PER_PILOT, MAX_PILOTS = 16, 3
#: How many qualities above the highest its pilots chose the other tiles of a level try first: fewer searches
#: above the start (each an encoding and a measurement) for a few bytes more (docs/lightweight.md).
START_MARGIN = 4


def _pilots(keys: list[tuple[int, int, int]]) -> list[int]:
    """Indices into `keys` (sorted) of the pilot tiles: per level of more than one tile, one per
    `TILES_PER_PILOT` of its tiles (at least one, at most `MAX_PILOTS`), spread evenly over its tiles in key
    order."""
    by_level: dict[int, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        by_level[key[0]].append(i)
    picked = []
    for idx in by_level.values():
        if len(idx) < 2:
            continue
        k = min(MAX_PILOTS, -(-len(idx) // TILES_PER_PILOT))
        picked += [idx[(2 * j + 1) * len(idx) // (2 * k)] for j in range(k)]
    return sorted(picked)


def _write_tiles(run: Runner, jobs: list[tuple[Any, ...]], state: dict[str, Any], choose: bool) -> list[_Written]:
    """Every tile's glb (`_write_task`), in job order. When terrain textures choose their WebP quality (`choose`),
    the pilot tiles of each level (`_pilots`) are written first, choosing theirs from the whole ladder; the other
    tiles of a level then try the highest quality its pilots chose plus `START_MARGIN` first (one encoding and
    one measurement each when it is good enough) and search above it only when it is not. The start depends on
    the pilots alone, so a build writes the same bytes however its tasks are spread."""
    def cost(js: list[tuple[Any, ...]]) -> list[int]:
        return [len(j[1].tris) for j in js]

    if not choose:
        return run.map(_write_task, jobs, state, stage="terrain", cost=cost(jobs))
    first = _pilots([j[0] for j in jobs])
    rest = sorted(set(range(len(jobs))) - set(first))
    results: list[_Written | None] = [None] * len(jobs)
    for i, w in zip(first, run.map(_write_task, [jobs[i] for i in first], state, stage="terrain-pilots",
                                   cost=cost([jobs[i] for i in first]))):
        results[i] = w
    start: dict[int, int] = {}
    for i in first:
        q = results[i].texture_quality  # type: ignore[union-attr]
        if q is not None:
            start[jobs[i][0][0]] = max(min(q + START_MARGIN, WEBP_LADDER[-1]), start.get(jobs[i][0][0], 0))
    later = run.map(_write_task, [jobs[i] for i in rest], {**state, "start": start}, stage="terrain",
                    cost=cost([jobs[i] for i in rest]))
    for i, w in zip(rest, later):
        results[i] = w
    return results  # type: ignore[return-value]


def _tiling(grid: DemGrid, tile_px: int) -> _Tiling:
    rows, cols = grid.heights.shape
    leaves = max(math.ceil((cols - 1) / tile_px), math.ceil((rows - 1) / tile_px), 1)
    depth = (leaves - 1).bit_length()
    size = tile_px * 2**depth + 1
    padded = np.full((size, size), np.nan)
    padded[:rows, :cols] = grid.heights
    pyramid = [padded]
    for _ in range(depth):
        pyramid.append(_halve(pyramid[-1]))
    crs = grid.crs
    horizontal = crs.sub_crs_list[0] if crs.is_compound else crs
    return _Tiling(grid, horizontal, tile_px, depth, pyramid)


def _halve(heights: np.ndarray) -> np.ndarray:
    """(2k+1, 2k+1) -> (k+1, k+1): masked [1/4, 1/2, 1/4] average; valid iff the centre sample is."""
    valid = np.isfinite(heights)
    num = _smooth_half(_smooth_half(np.where(valid, heights, 0.0), 0), 1)
    den = _smooth_half(_smooth_half(valid.astype(np.float64), 0), 1)
    keep = valid[::2, ::2]
    out = np.full(keep.shape, np.nan)
    out[keep] = num[keep] / den[keep]
    return out


def _smooth_half(a: np.ndarray, axis: int) -> np.ndarray:
    a = np.moveaxis(a, axis, 0)
    out = 0.5 * a[0::2]
    side = 0.25 * a[1::2]
    out[1:] += side
    out[:-1] += side
    return np.moveaxis(out, 0, axis)


def _level_tins(tiling: _Tiling, level: int, tolerance: float, run: Runner) -> dict[tuple[int, int, int], _Tin]:
    """The stitched, nodata-free TINs of one level, keyed (level, x, y); tiles without triangles left out.

    Each tile's TIN is a task (its block of heights goes with it); the stitching of a level's tiles is done here."""
    count = 2**level
    keys = [(tx, ty) for ty in range(count) for tx in range(count)]
    blocks = [np.ascontiguousarray(tiling.tile_block(level, tx, ty)) for tx, ty in keys]
    keep = [i for i, b in enumerate(blocks) if np.isfinite(b).sum() >= 3]  # fewer: no TIN (_delatin)
    found = run.map(_tin_task, [(blocks[i], tolerance) for i in keep], stage="terrain-tins",
                    cost=[blocks[i].size for i in keep])
    tins: dict[tuple[int, int], _Tin] = {keys[i]: tin for i, tin in zip(keep, found) if tin is not None}
    _stitch(tins, tiling.tile_px)
    out = {}
    for (tx, ty), tin in tins.items():
        _drop_nodata_and_measure(tiling, level, tx, ty, tin)
        if len(tin.tris):
            out[(level, tx, ty)] = tin
    return out


def _tin_task(job: tuple[np.ndarray, float], state: Any) -> _Tin | None:
    """A Dask task: the TIN of one tile's block of heights."""
    block, tolerance = job
    return _delatin(block, tolerance)


def _write_task(job: tuple[Any, ...], state: dict[str, Any]) -> _Written:
    """A Dask task: texture, normals, skirts and glb of one terrain tile, from its TIN and the heights under it."""
    key, tin, skirt, block, r0, c0, shape = job
    depth = state["depth"]
    pyramid: list[Any] = [None] * (depth + 1)
    pyramid[depth - key[0]] = WindowPart(block, r0, c0, shape)
    tiling = _Tiling(state["grid"], state["horizontal"], state["tile_px"], depth, pyramid, state["vertical"])
    reader = OrthoReader(state["ortho"]) if state["ortho"] is not None else None
    with reader if reader is not None else nullcontext():
        return _write_tile(tiling, key, tin, skirt, reader, state["options"], state["out"], state.get("implicit"),
                           state.get("start", {}).get(key[0]))


def _delatin(block: np.ndarray, tolerance: float) -> _Tin | None:
    """pydelatin on one tile; nodata samples become a cliff below the valid ones, so that no triangle with
    valid corners can span nodata (its error there would exceed the tolerance)."""
    valid = np.isfinite(block)
    if valid.sum() < 3:
        return None
    base = float(np.min(block[valid]))
    surface = np.where(valid, block - base, -(10.0 * tolerance + 1.0)).astype(np.float32)
    tri = Delatin(surface, max_error=tolerance)
    v = tri.vertices
    n = block.shape[0] - 1
    # pydelatin's y axis points up: row = n - y
    verts = np.column_stack([np.rint(v[:, 0]), n - np.rint(v[:, 1])]).astype(np.int64)
    return _Tin(verts, tri.triangles.astype(np.int64))


def _sides(tx: int, ty: int, n: int) -> Iterator[tuple[tuple[str, int, int], int, int]]:
    """(edge key, fixed axis of `verts` (0 col, 1 row), its value) for the four sides of tile (tx, ty)."""
    yield ("h", tx, ty), 1, 0
    yield ("h", tx, ty + 1), 1, n
    yield ("v", tx, ty), 0, 0
    yield ("v", tx + 1, ty), 0, n


def _stitch(tins: dict[tuple[int, int], _Tin], n: int) -> None:
    """Give both tiles of every shared edge the same border vertices: the union of what each one has there."""
    edges: dict[tuple[str, int, int], set[int]] = defaultdict(set)
    for (tx, ty), tin in tins.items():
        for key, axis, value in _sides(tx, ty, n):
            edges[key].update(tin.verts[tin.verts[:, axis] == value, 1 - axis].tolist())
    for (tx, ty), tin in tins.items():
        for key, axis, value in _sides(tx, ty, n):
            _insert_on_side(tin, axis, value, edges[key])


def _insert_on_side(tin: _Tin, axis: int, value: int, params: set[int]) -> None:
    """Add border vertices on one side, splitting each boundary triangle into a fan from its far corner."""
    along = 1 - axis
    on = tin.verts[:, axis] == value
    new = np.array(sorted(params - set(tin.verts[on, along].tolist())), np.int64)
    if not new.size:
        return
    added = np.zeros((new.size, 2), np.int64)
    added[:, axis] = value
    added[:, along] = new
    first = len(tin.verts)
    verts = np.vstack([tin.verts, added])
    new_ids = np.arange(first, first + new.size)
    on = verts[:, axis] == value
    tris = tin.tris.copy()
    extra: list[tuple[int, int, int]] = []
    for i in range(3):
        hits = np.nonzero(on[tris[:, i]] & on[tris[:, (i + 1) % 3]])[0]
        for t in hits:
            a, b, c = int(tris[t, i]), int(tris[t, (i + 1) % 3]), int(tris[t, (i + 2) % 3])
            pa, pb = verts[a, along], verts[b, along]
            inside = (new > min(pa, pb)) & (new < max(pa, pb))
            if not inside.any():
                continue
            mids = new_ids[inside] if pa < pb else new_ids[inside][::-1]
            chain = [a, *mids.tolist(), b]
            tris[t] = (chain[0], chain[1], c)
            extra.extend((chain[j], chain[j + 1], c) for j in range(1, len(chain) - 1))
    tin.verts = verts
    tin.tris = np.vstack([tris, np.array(extra, np.int64).reshape(-1, 3)])


def _drop_nodata_and_measure(tiling: _Tiling, level: int, tx: int, ty: int, tin: _Tin) -> None:
    """Remove triangles touching nodata samples of the level; measure the deviation from the full-res DEM."""
    n, step = tiling.tile_px, tiling.step(level)
    z = tiling.tile_block(level, tx, ty)[tin.verts[:, 1], tin.verts[:, 0]]
    tris = tin.tris[np.isfinite(z[tin.tris]).all(axis=1)]
    deviation = 0.0
    if len(tris):
        full = tiling.pyramid[0]
        col, row, tri, zi = _rasterize(tin.verts * step, z, tris)
        dem = full[ty * n * step + row, tx * n * step + col]
        gap = ~np.isfinite(dem)
        bad = np.zeros(len(tris), bool)
        bad[tri[gap & (col % step == 0) & (row % step == 0)]] = True
        ok = ~gap & ~bad[tri]
        if ok.any():
            deviation = float(np.max(np.abs(zi[ok] - dem[ok])))
        tris = tris[~bad]
    used = np.unique(tris)
    remap = np.full(len(tin.verts), -1, np.int64)
    remap[used] = np.arange(used.size)
    tin.verts = tin.verts[used]
    tin.tris = remap[tris]
    tin.deviation = deviation


def _rasterize(xy: np.ndarray, z: np.ndarray, tris: np.ndarray) -> tuple[np.ndarray, ...]:
    """The integer grid points inside (or on the border of) each triangle, with the TIN's height there.

    Args:
        xy: (k, 2) int64 vertex (col, row) grid coordinates.
        z: (k,) float64 vertex heights.
        tris: (m, 3) int64 triangles.

    Returns:
        col, row: (p,) int64 grid points (points on shared edges appear once per triangle);
        tri: (p,) int64 index of the triangle; z: (p,) float64 linear interpolation.
    """
    p = xy[tris].astype(np.float64)
    x, y, h = p[..., 0], p[..., 1], z[tris]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    dz1, dz2 = h[:, 1] - h[:, 0], h[:, 2] - h[:, 0]
    area2 = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    live = np.nonzero(area2 != 0)[0]
    x, y, h, area2 = x[live], y[live], h[live], area2[live]
    # plane z = ga * x + gb * y + gc through the three corners
    ga = (dz1[live] * e2[live, 1] - dz2[live] * e1[live, 1]) / area2
    gb = (dz2[live] * e1[live, 0] - dz1[live] * e2[live, 0]) / area2
    gc = h[:, 0] - ga * x[:, 0] - gb * y[:, 0]
    ymin = y.min(axis=1).astype(np.int64)
    rows_per = y.max(axis=1).astype(np.int64) - ymin + 1
    t = np.repeat(np.arange(live.size), rows_per)
    yy = (ymin[t] + np.arange(t.size) - np.repeat(np.cumsum(rows_per) - rows_per, rows_per)).astype(
        np.float64
    )
    xl = np.full(t.size, np.inf)
    xr = np.full(t.size, -np.inf)
    for i, j in ((0, 1), (1, 2), (2, 0)):
        xa, ya, xb, yb = x[t, i], y[t, i], x[t, j], y[t, j]
        flat = ya == yb
        crosses = ~flat & (yy >= np.minimum(ya, yb)) & (yy <= np.maximum(ya, yb))
        xi = xa + (yy - ya) * (xb - xa) / np.where(flat, 1.0, yb - ya)
        on_flat = flat & (yy == ya)
        lo = np.where(on_flat, np.minimum(xa, xb), xi)
        hi = np.where(on_flat, np.maximum(xa, xb), xi)
        use = crosses | on_flat
        xl = np.where(use, np.minimum(xl, lo), xl)
        xr = np.where(use, np.maximum(xr, hi), xr)
    c0 = np.ceil(xl - 1e-9).astype(np.int64)
    cols_per = np.maximum(np.floor(xr + 1e-9).astype(np.int64) - c0 + 1, 0)
    s = np.repeat(np.arange(t.size), cols_per)
    col = c0[s] + np.arange(s.size) - np.repeat(np.cumsum(cols_per) - cols_per, cols_per)
    row = yy[s].astype(np.int64)
    tri = t[s]
    zi = ga[tri] * col + gb[tri] * row + gc[tri]
    return col, row, live[tri], zi


@dataclass
class _Written:
    uri: str
    world: np.ndarray  # (4, 4) float64 local -> ECEF
    region: list[float]
    skirt_depth: float
    triangles: int
    texture_quality: int | None = None  # the WebP quality chosen for the tile's orthophoto texture, if one was


def _write_tile(
    tiling: _Tiling,
    key: tuple[int, int, int],
    tin: _Tin,
    skirt_depth: float,
    reader: OrthoReader | None,
    options: TerrainOptions,
    out: Path,
    implicit: tuple[bool, bool] | None = None,
    start: int | None = None,
) -> _Written:
    """Write one tile's glb; `implicit`: the grid's axes flips of an implicit tree (its tile coordinates name
    the file, and the glb places itself: no tile transform); `start`: the WebP quality to try first for its
    orthophoto texture (`ortho_texture`)."""
    level, tx, ty = key
    n, step, grid = tiling.tile_px, tiling.step(level), tiling.grid
    gcol, grow = tx * n + tin.verts[:, 0], ty * n + tin.verts[:, 1]
    z = tiling.heights(level)[grow, gcol]
    x, y = grid.sample_xy(gcol * step, grow * step)

    cx, cy = grid.sample_xy(np.array([(tx + 0.5) * n * step]), np.array([(ty + 0.5) * n * step]))
    centre = np.array([cx[0], cy[0], 0.5 * (z.min() + z.max())])
    frame = enu_frame(tiling.to_ecef(*centre[:, None])[0])
    jac = _jacobian(tiling, frame, centre, step)

    surface = tiling.to_ecef(x, y, z)
    up = _cross_z(frame.to_local(surface)[tin.tris])
    tris = np.where((up < 0)[:, None], tin.tris[:, ::-1], tin.tris)
    top, skirt_tris = _skirts(tin.verts, tris, n)
    ecef = np.vstack([surface, tiling.to_ecef(x[top], y[top], z[top] - skirt_depth)])
    local = frame.to_local(ecef)
    index = np.concatenate([np.arange(len(z)), top])
    uv = np.column_stack([tin.verts[:, 0] / n, tin.verts[:, 1] / n])[index].astype(np.float32)
    all_tris = np.vstack([tris, skirt_tris])

    crs = grid.crs if not grid.crs.is_compound else tiling.horizontal
    source_px = math.inf if reader is None else n * step * abs(grid.transform.a) / reader.pixel_size(crs)
    size = texture_size(options.texture_px, source_px)
    shade = _Shade(tiling, level, tx, ty, jac) if options.hillshade else None
    if reader is not None:
        corner = grid.transform @ Affine.translation(tx * n * step + 0.5, ty * n * step + 0.5)
        texture, mime, quality = ortho_texture(reader, crs, corner @ Affine.scale(n * step), size, source_px,
                                               shade, options.glb, options.jpeg_quality, start)
        material = Material(texture=texture, mime_type=mime, unlit=True)  # type: ignore[arg-type]
    elif shade is not None:
        quality = None
        texture, mime = encode_texture(shade(size), options.glb, options.jpeg_quality)
        material = Material(texture=texture, mime_type=mime, unlit=True)  # type: ignore[arg-type]
    else:
        quality = None
        material = Material(base_color=(*(c / 255.0 for c in NEUTRAL_RGB), 1.0))
    # A texture is drawn as it is (KHR_materials_unlit, no NORMAL): an orthophoto carries the sun of the day it was
    # flown, a hillshade the light it was computed with; lighting it again by the mesh's normals shades it twice.
    # The neutral colour has no shading of its own: it keeps the normals and the client's lighting.
    prim = Primitive(
        positions=local.astype(np.float32),
        indices=all_tris.astype(np.uint32),
        normals=None if material.unlit else _normals(tiling, level, grow, gcol, jac)[index],
        texcoords=uv if reader is not None or shade is not None else None,
        material=material,
    )
    ix, iy = (tx, ty) if implicit is None else _implicit_xy(level, tx, ty, implicit)
    uri = f"terrain/{level}/{ix}/{iy}.glb"
    content = MeshContent([prim], placement=None if implicit is None else frame.matrix)
    write_atomic(out / uri, content.to_glb(options.glb))
    return _Written(uri, frame.matrix, region_of(ecef, pad_m=0.01), skirt_depth, len(all_tris), quality)


def texture_size(largest: int, source_px: float) -> int:
    """Texels per side of a tile's texture: `largest`, or fewer when the orthophoto has fewer pixels over the tile
    (`source_px`, inf without one): a texel finer than the source's ground sample distance holds no information.
    Rounded up to a multiple of 4 (KHR_texture_basisu needs one), at least 8."""
    if not math.isfinite(source_px):
        return largest
    return int(min(largest, max(8, 4 * math.ceil(source_px / 4 - 1e-9))))


def ortho_texture(reader: OrthoReader, crs: CRS, extent: Affine, size: int, source_px: float,
                  shade: Callable[[int], np.ndarray] | None, glb: GlbOptions, jpeg_quality: int,
                  start: int | None = None) -> tuple[bytes, str, int | None]:
    """One tile's orthophoto texture, encoded.

    Where the orthophoto has at least twice the texture's pixels over the tile, the texture is made from pixels
    read at twice the resolution (from full resolution or the overview that fits that grid), not from the overview
    that fits the texture: an orthophoto's overviews are often lossy copies of it (a JPEG COG's are JPEG again), and
    reading the finer level leaves that second generation out (docs/lightweight.md). Each texel is the mean of its
    2 x 2 finer pixels corrected by what bilinear magnification of those means misses there
    (`tiles.textures.halve_for_bilinear`): drawn magnified, as a GPU does, it is closer to the finer pixels.

    Under `--textures auto|webp` without a set `texture_quality`, the WebP quality is chosen per texture
    (`tiles.textures.webp_at_least`): at least as good, by PSNR and by SSIM against the pixels read at twice the
    resolution, as JPEG at `jpeg_quality` of the texture read from the overview that fits it (what the builds wrote
    before issue 17): `start` (the quality pilot tiles of the level chose) when it is good enough (one encoding),
    else the lowest good one above it; without `start`, the lowest good one. Otherwise the texels are encoded by
    `encode_texture`.

    Args:
        reader: the orthophoto.
        crs: the tile grid's CRS.
        extent: affine from the unit square to the tile's extent (pixel corners) in `crs`.
        size: texels per side.
        source_px: orthophoto pixels per tile side.
        shade: `shade(size)` is the (size, size, 3) uint8 image drawn where the orthophoto has no data (called
            only when some texel has none), or None (the neutral colour).
        glb: the encoding options.
        jpeg_quality: quality of JPEG textures and of the floor the WebP quality is chosen against.
        start: the WebP quality to try first, or None.

    Returns:
        (image bytes, MIME type, the chosen WebP quality or None when none was chosen).
    """
    def fill(k: int) -> Callable[[], np.ndarray] | None:  # at twice the size: every texel of the shade doubled
        if shade is None:
            return None
        return lambda: shade(size) if k == size else np.repeat(np.repeat(shade(size), 2, axis=0), 2, axis=1)

    choose = glb.makes_webp and glb.texture_quality is None
    finer = source_px >= 2 * size
    floor_read = None
    if choose or not finer:  # the texture as read before issue 17: the floor of the choice
        floor_read = reader.texture(extent @ Affine.scale(1.0 / size), crs, size, size, fill=fill(size))
    if finer:
        reference = reader.texture(extent @ Affine.scale(0.5 / size), crs, 2 * size, 2 * size, fill=fill(2 * size))
        pixels = halve_for_bilinear(reference)
    else:
        reference = pixels = floor_read
    if choose:
        floor, _ = encode_texture(floor_read, GlbOptions(textures="original"), jpeg_quality)
        return webp_at_least(pixels, reference, floor, start=start)
    return (*encode_texture(pixels, glb, jpeg_quality), None)


#: Light of the baked hillshade: from the north-west (azimuth 315 degrees), 45 degrees above the horizon, as GDAL's
#: `gdaldem hillshade` and most GIS hillshades, as a unit (east, north, up) vector.
SUN_ENU = np.array([-0.5, 0.5, math.sqrt(0.5)])
#: Share of the light that reaches a slope facing away from the sun (sky light), so shadows are not black.
SKY_LIGHT = 0.3


def hillshade_factor(normals: np.ndarray) -> np.ndarray:
    """How much lighter (> 1) or darker (< 1) than flat ground a surface looks under `SUN_ENU`: (...,) float64.

    Lambert's cosine law against the sun plus `SKY_LIGHT`, scaled so that flat ground is 1 (the neutral colour
    stays itself): `SKY_LIGHT + (1 - SKY_LIGHT) * max(0, n . sun) / sin(45 deg)`.

    Args:
        normals: (..., 3) unit normals in a local east-north-up frame.
    """
    cosine = np.clip(normals @ SUN_ENU, 0.0, 1.0)
    return SKY_LIGHT + (1.0 - SKY_LIGHT) * cosine / SUN_ENU[2]


class _Shade:
    """A tile's hillshade texture (`_hillshade`) of a size, computed when first asked for: a tile the
    orthophoto covers never needs it."""

    def __init__(self, tiling: _Tiling, level: int, tx: int, ty: int, jac: np.ndarray) -> None:
        self.args: tuple[Any, ...] = (tiling, level, tx, ty, jac)
        self.made: dict[int, np.ndarray] = {}

    def __call__(self, size: int) -> np.ndarray:
        if size not in self.made:
            self.made[size] = _hillshade(*self.args, size)
        return self.made[size]


def _hillshade(tiling: _Tiling, level: int, tx: int, ty: int, jac: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 3) uint8 texture of tile (level, tx, ty): the neutral colour shaded by the relief.

    The normals are the mesh's own (`_normals`: the level's height gradient in the tile's ENU frame, so geographic
    and projected DEMs shade alike), at every sample of the tile, interpolated bilinearly to the texture's pixel
    centres (pixel u's centre is sample (u + 0.5) * tile_px / size, as the mesh's texture coordinates say).
    """
    from scipy.ndimage import map_coordinates

    n = tiling.tile_px
    rows, cols = np.mgrid[ty * n: ty * n + n + 1, tx * n: tx * n + n + 1]
    normals = _normals(tiling, level, rows.ravel(), cols.ravel(), jac).astype(np.float64)
    factor = np.nan_to_num(hillshade_factor(normals), nan=1.0).reshape(n + 1, n + 1)  # nodata: flat
    centres = (np.arange(size) + 0.5) * n / size
    rr, cc = np.meshgrid(centres, centres, indexing="ij")
    at_pixels = map_coordinates(factor, [rr.ravel(), cc.ravel()], order=1, mode="nearest").reshape(size, size)
    rgb = np.asarray(NEUTRAL_RGB, np.float64) * at_pixels[..., None]
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def _cross_z(p: np.ndarray) -> np.ndarray:
    """(m,) z component of (p1 - p0) x (p2 - p0) for (m, 3, 3) triangle corners."""
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    return e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]


def _skirts(verts: np.ndarray, tris: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Curtain triangles below every triangle edge that lies on a side of the tile.

    Args:
        verts: (k, 2) int64 (col, row) in the tile.
        tris: (m, 3) triangles, counter-clockwise seen from above.
        n: samples per tile side minus one.

    Returns:
        top: (s,) surface vertices that get a copy at the skirt's foot (copy i becomes vertex k + i);
        tris: (t, 3) skirt triangles over the surface vertices and the foot copies, facing outward.
    """
    a = tris.reshape(-1)
    b = tris[:, [1, 2, 0]].reshape(-1)
    va, vb = verts[a], verts[b]
    side = np.zeros(a.size, bool)
    for axis in (0, 1):
        for value in (0, n):
            side |= (va[:, axis] == value) & (vb[:, axis] == value)
    a, b = a[side], b[side]
    top = np.unique(np.concatenate([a, b]))
    foot = np.full(len(verts), -1, np.int64)
    foot[top] = len(verts) + np.arange(top.size)
    # the interior is on the left of a->b, so (a, a', b) and (b, a', b') face outward
    skirt = np.concatenate([np.column_stack([a, foot[a], b]), np.column_stack([b, foot[a], foot[b]])])
    return top, skirt.reshape(-1, 3)


def _jacobian(tiling: _Tiling, frame: LocalFrame, centre: np.ndarray, step: int) -> np.ndarray:
    """(3, 3) d(local ENU)/d(source x, y, z) at the tile centre, by central differences."""
    t = tiling.grid.transform
    deltas = (float(np.hypot(t.a, t.d)) * step, float(np.hypot(t.b, t.e)) * step, 1.0)
    pts = []
    for i, d in enumerate(deltas):
        for sign in (1.0, -1.0):
            p = centre.copy()
            p[i] += sign * d
            pts.append(p)
    pts_a = np.array(pts)
    local = frame.to_local(tiling.to_ecef(pts_a[:, 0], pts_a[:, 1], pts_a[:, 2]))
    return np.column_stack([(local[2 * i] - local[2 * i + 1]) / (2 * d) for i, d in enumerate(deltas)])


def _normals(tiling: _Tiling, level: int, row: np.ndarray, col: np.ndarray, jac: np.ndarray) -> np.ndarray:
    """(k, 3) float32 unit normals from the level's height gradient, so neighbouring tiles shade alike."""
    h = tiling.heights(level)
    size = h.shape[0]
    z = h[row, col]

    def slope(dr: int, dc: int) -> np.ndarray:
        r1, c1 = np.clip(row + dr, 0, size - 1), np.clip(col + dc, 0, size - 1)
        r0, c0 = np.clip(row - dr, 0, size - 1), np.clip(col - dc, 0, size - 1)
        ahead = np.where((r1 != row) | (c1 != col), h[r1, c1], np.nan)
        behind = np.where((r0 != row) | (c0 != col), h[r0, c0], np.nan)
        both = (ahead - behind) / 2.0
        return np.where(
            np.isfinite(both),
            both,
            np.where(np.isfinite(ahead), ahead - z, np.where(np.isfinite(behind), z - behind, 0.0)),
        )

    step = tiling.step(level)
    t = tiling.grid.transform
    tan_c = np.column_stack([np.full(z.size, t.a * step), np.full(z.size, t.d * step), slope(0, 1)]) @ jac.T
    tan_r = np.column_stack([np.full(z.size, t.b * step), np.full(z.size, t.e * step), slope(1, 0)]) @ jac.T
    nrm = np.cross(tan_c, tan_r)
    nrm *= np.where(nrm[:, 2] < 0, -1.0, 1.0)[:, None]
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    return nrm.astype(np.float32)


def _implicit_axes(grid: DemGrid) -> tuple[bool, bool]:
    """Whether the grid's columns run west and its rows south (flipped against implicit tiling's x east, y north):
    a north-up raster's rows run south."""
    return bool(grid.transform.a < 0), bool(grid.transform.e < 0)


def _implicit_xy(level: int, tx: int, ty: int, flips: tuple[bool, bool]) -> tuple[int, int]:
    last = (1 << level) - 1
    return (last - tx if flips[0] else tx), (last - ty if flips[1] else ty)


def _node(
    key: tuple[int, int, int],
    depth: int,
    tins: dict[tuple[int, int, int], _Tin],
    written: dict[tuple[int, int, int], _Written],
    implicit: tuple[list[ImplicitTile], list[float]] | None = None,
    flips: tuple[bool, bool] = (False, True),
) -> Tile | None:
    """The subtree at `key`, with absolute transforms.

    With `implicit` (two lists), each tile is also appended to the first as an `ImplicitTile` in implicit
    coordinates (`flips`), with its own region (a cell of the DEM grid is no cell of longitude and latitude, so
    the implied regions would not hold it) and its content's, and its geometric error to the second."""
    level, tx, ty = key
    mine = written.get(key)
    children: list[Tile] = []
    at = len(implicit[0]) if implicit is not None else 0
    if implicit is not None:
        implicit[0].append(ImplicitTile(level, *_implicit_xy(level, tx, ty, flips)))
        implicit[1].append(0.0)
    if level < depth:
        for dy in (0, 1):
            for dx in (0, 1):
                child = _node((level + 1, 2 * tx + dx, 2 * ty + dy), depth, tins, written, implicit, flips)
                if child is not None:
                    children.append(child)
    if mine is None and not children:
        if implicit is not None:
            del implicit[0][at], implicit[1][at]
        return None
    regions = [c.bounding_volume.region for c in children if c.bounding_volume.region is not None]
    if mine is not None:
        regions.append(mine.region)
    error = 0.0
    if children:
        error = max(
            [c.geometric_error for c in children] + ([tins[key].deviation] if mine is not None else [])
        )
    extra: dict[str, Any] = {}
    if mine is not None:
        extra = {
            "transform": LocalFrame(mine.world).column_major(),
            "content": Content(uri=mine.uri, bounding_volume=BoundingVolume(region=mine.region)),
            "extras": {"terrainDeviation": round(tins[key].deviation, 4), "skirtDepth": mine.skirt_depth},
        }
    if implicit is not None:
        me = implicit[0][at]
        me.region = union_regions(regions)
        me.content_region = None if mine is None else mine.region
        implicit[1][at] = error
    return Tile(
        bounding_volume=BoundingVolume(region=union_regions(regions)),
        geometric_error=error,
        refine="REPLACE",
        children=children or None,
        **extra,
    )


__all__ = ["SKY_LIGHT", "SUN_ENU", "DemSampler", "TerrainOptions", "TerrainResult", "build_terrain",
           "hillshade_factor"]
