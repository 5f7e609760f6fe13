"""Footprints prepared partition by partition as Dask tasks, so that no process holds the whole city.

The LOD1 builder's first half (`cim.models.lod1.build_buildings`) at city scale. Each arrow is a wave of tasks run
by the build's `cim.tiling.Runner`; the driver keeps a few numbers per building (centroid, size, tile order):

    footprint file -> partitions (GeoParquet row groups or row ranges: `cim.sources.footprints.footprint_partitions`)
      -> "footprints-scan", one task per partition: the columns holding nulls, hashes of the ID candidate
         columns; its extent unless the working CRS is known up front; with a DSM and a known working CRS, also
         the extent of its cleaned footprints (without a DSM no geometry is parsed: bases are taken in the DEM's
         own grid, which needs no extent)
      -> (driver) the working CRS, the ID column (unique over the whole file), with a DSM the DEM window over
         every footprint
      -> "footprints-clean" (with a DSM, when the working CRS depends on the whole extent): the cleaned extents
      -> "footprints-prepare", one task per partition: read, reproject, clean, base on the DEM window, height
         (attribute, floors, DSM median, default), metadata columns -> the partition's rows in a `RowStore`,
         plus each building's centroid and size, and the counts the report needs
      -> (driver) the quadtree over the centroids, the tiles' order
      -> "lod1-rows", one task per run of consecutive tiles (~`GROUP_ROWS` buildings): their rows gathered from
         the partitions, in tile order -> the "lod1" tile tasks read their row ranges.

Every value is computed as `prepare_footprints` computes it over the whole file (same IDs, same column types, same
DEM window and the same arithmetic per footprint), so the tiles are the same bytes. Two things need the whole file
and are decided from the partitions' summaries: the ID column (uniqueness over 64-bit hashes of every value, with
an exact check of the values whose hashes meet) and each column's pandas type (a column with a null in any
partition is read by every partition as the whole file would be: `read_footprints(nulls=)`). The DSM median of a
footprint counts the DSM cells whose centre it holds and no later footprint holds (the rasterisation's rule),
so a partition's task also draws the later partitions' footprints that reach into its area.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio
import rasterio.features
import rasterio.windows
import shapely
from pyproj import CRS
from scipy import ndimage

from cim.errors import BuildError, InputError
from cim.models.footprints import (
    HEIGHT_SOURCES,
    BuildingOptions,
    FootprintReport,
    attribute_columns,
    attribute_heights,
    height_facts,
    height_fields,
    lonlat_boxes,
    lowest_terrain,
    notes_from_facts,
    resolve_heights,
)
from cim.partitions import PolygonColumn, RowStore, concat_rows
from cim.sources import crs as crsmod
from cim.sources.footprints import (
    ID_FIELDS,
    MIN_AREA_M2,
    FootprintPartition,
    Skipped,
    partition_size,
    bounds_centre,
    clean_footprints,
    footprint_partitions,
    read_footprint_attributes,
    read_footprints,
    reproject_footprints,
)
from cim.sources.raster import open_raster, polygons_geojson, raster_crs, read_on_grid, window_over
from cim.tiling import ImplicitNode, QuadNode, Runner, implicit_quadtree, quadtree, walk

GROUP_ROWS = 100_000  # buildings per "lod1-rows" task (whole tiles, consecutive in the tileset's order)
PARTS_PER_WORKER = 3  # partitions (and row groups) a wave wants for each worker, so none waits for long
_STANDARD_REASONS = ("no geometry", "not a polygon", f"footprint smaller than {MIN_AREA_M2:g} m²")  # clean_footprints'

OUTSIDE = "outside the DEM (no terrain height under the footprint)"


@dataclass
class TilePlan:
    """How a building layer is tiled (`PartitionedFootprints.plan_tiles`).

    Attributes:
        implicit: an implicit quadtree (3D Tiles 1.1 implicit tiling) rather than an explicit tree.
        nodes: (node, path) of every tile, root first: `QuadNode`s and quadtree paths, or `ImplicitNode`s and
            `level/x/y`.
        inodes: the implicit tiles (empty for an explicit tree).
        root_cell: the implicit root's cell [west, south, east, north] in radians (None for an explicit tree).
    """

    implicit: bool
    nodes: list[tuple[Any, str]]
    inodes: list[ImplicitNode]
    root_cell: list[float] | None


@dataclass
class PartitionedFootprints(FootprintReport):
    """The prepared footprints of a build as the driver knows them: per building a centroid and a size; the rows
    themselves stay in the partitions' row stores (`stores`, `offsets`).

    Attributes:
        stores: per partition, the folder of its prepared rows (geometry, bottom, top, `column/<name>`).
        offsets: (p + 1,) int64 index of each partition's first building in the build's order.
        cx, cy, size: (n,) float64 centroid and prominence (max of height and the square root of the area).
        box: (n, 4) float64 [x0, y0, x1, y1] of each building (for implicit tiling's whole-footprint cells).
        bounds: (x0, y0, x1, y1) of the buildings, in `crs`.
        crs: the working CRS.
        masked_ints: integer columns with a missing value somewhere (tiles carry them as nullable integers).
        skipped, height_sources, default_ids, notes, seconds: the report's parts (as `PreparedFootprints`).
        source_crs, height_field, floors_field, on_dem: as `PreparedFootprints`.
    """

    stores: list[str]
    offsets: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    size: np.ndarray
    box: np.ndarray
    bounds: tuple[float, float, float, float]
    crs: CRS
    masked_ints: list[str]
    skipped: Skipped
    height_sources: dict[str, int]
    default_ids: list[str]
    notes: list[str]
    source_crs: CRS | None = None
    height_field: str | None = None
    floors_field: str | None = None
    on_dem: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def quadtree(self, capacity: int) -> list[tuple[QuadNode, str]]:
        """ADD-refinement tiles over the centroids, largest first; (node, path) root first (as
        `PreparedFootprints.quadtree`)."""
        b = self.bounds
        side = max(b[2] - b[0], b[3] - b[1]) or 1.0
        root = quadtree(self.cx, self.cy, self.size, np.arange(len(self)), (b[0], b[1], b[0] + side, b[1] + side),
                        max(1, capacity))
        return list(walk(root))

    def plan_tiles(self, options: BuildingOptions) -> TilePlan:
        """The building tiles as the options want them: an implicit quadtree (`options.use_implicit`) or an explicit
        one, as (node, path) root first, paths `level/x/y` or quadtree paths."""
        if options.use_implicit(len(self)):
            inodes, root_cell = self.implicit_quadtree(options.tile_capacity)
            return TilePlan(True, [(n, f"{n.level}/{n.x}/{n.y}") for n in inodes], inodes, root_cell)
        return TilePlan(False, self.quadtree(options.tile_capacity), [], None)  # type: ignore[arg-type]

    def implicit_quadtree(self, capacity: int) -> tuple[list[ImplicitNode], list[float]]:
        """The tiles of an implicit quadtree over longitude and latitude (as
        `PreparedFootprints.implicit_quadtree`): (tiles root first, the root cell in radians)."""
        box, root = lonlat_boxes(self.box, self.crs)
        return implicit_quadtree(box, self.size, tuple(root), max(1, capacity)), root  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ per partition
def _read_clean(part: FootprintPartition, plan: dict[str, Any], ids_too: bool = True, gdf: Any = None
                ) -> tuple[Any, np.ndarray, Skipped, np.ndarray, np.ndarray]:
    """A partition read with the whole file's column types (or `gdf`, read already), put in the working CRS and
    cleaned."""
    if gdf is None:
        gdf = read_footprints(part.path, crs=plan["crs"], part=part, nulls=plan["nulls"])
    gdf = reproject_footprints(gdf, plan["working"])
    if ids_too and plan["id_column"] is not None:
        ids = gdf[plan["id_column"]].astype(str).to_numpy()
    else:  # building_ids' fallback: the row number in the file
        ids = np.array([f"b{part.start + i}" for i in range(len(gdf))], dtype=object)
    skipped = Skipped()
    keep, geoms = clean_footprints(gdf, ids, skipped)
    return gdf, ids, skipped, keep, geoms


def _total_bounds(geoms: np.ndarray) -> list[float]:
    return [float(v) for v in shapely.total_bounds(geoms)] if len(geoms) else [np.nan] * 4


def _clean_extent(part: FootprintPartition, plan: dict[str, Any], gdf: Any = None) -> dict[str, Any]:
    """The extent of a partition's cleaned footprints (working CRS); with a DSM, the footprints that want a DSM
    height are written to the scratch folder, for the tasks of earlier partitions whose area they reach into."""
    gdf, _, _, keep, geoms = _read_clean(part, plan, ids_too=False, gdf=gdf)
    out: dict[str, Any] = {"bounds": _total_bounds(geoms), "need": None}
    if plan["dsm"] is not None and len(geoms):
        attrs = gdf.drop(columns=gdf.geometry.name).loc[keep].reset_index(drop=True)
        attr_h, floors_h = attribute_heights(attrs, plan["options"])
        need = ~(np.isfinite(attr_h) | np.isfinite(floors_h))
        if need.any():
            folder = Path(plan["scratch"]) / "need" / f"p{part.index:05d}"
            RowStore.write(folder, {"geometry": geoms[need]})
            out["need"] = {"folder": str(folder), "bounds": _total_bounds(geoms[need])}
    return out


def _scan(job: tuple[FootprintPartition], plan: dict[str, Any]) -> dict[str, Any]:
    """What the driver must know of a partition before anything is built (a Dask task). With `plan["light"]`
    (the working CRS is known and nothing needs the footprints' extent) no geometry is parsed."""
    (part,) = job
    if plan.get("light"):
        frame = read_footprint_attributes(part.path, part=part)
        gdf = None
    else:
        gdf = read_footprints(part.path, crs=plan["crs"], part=part)
        frame = gdf.drop(columns=gdf.geometry.name)
    ids: dict[str, Any] = {}
    for col in plan["candidates"]:
        values = frame[col]
        present = bool(values.notna().all())
        hashes = _hashes(values) if present else np.zeros(0, np.uint64)
        path = Path(plan["scratch"]) / "ids" / f"p{part.index:05d}.{plan['candidates'].index(col)}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, hashes)
        ids[col] = (present, str(path))
    # the nulls as the Arrow columns hold them (what decides pandas' type of the whole file's column)
    nulls = [c for c in frame.columns if frame[c].isna().any()]
    result = {"rows": len(frame), "bounds": [np.nan] * 4 if gdf is None else [float(v) for v in gdf.total_bounds],
              "columns": list(frame.columns), "nulls": nulls, "ids": ids, "clean": None}
    if plan["working"] is not None and gdf is not None:
        result["clean"] = _clean_extent(part, plan, gdf)
    return result


def _hashes(values: pd.Series) -> np.ndarray:
    """64-bit hashes of a column's values (equal values, equal hashes; -0.0 is 0.0 as for `is_unique`)."""
    if pd.api.types.is_float_dtype(values.dtype):
        values = values + 0.0
    return pd.util.hash_pandas_object(values, index=False).to_numpy(np.uint64)


def _id_values(job: tuple[FootprintPartition, str, str], plan: dict[str, Any]) -> list[Any]:
    """The values of ID column `job[1]` whose hashes are among the repeated ones (`job[2]`, an .npy file)."""
    part, col, repeated = job
    gdf = read_footprints(part.path, crs=plan["crs"], part=part)
    values = gdf[col]
    return values[np.isin(_hashes(values), np.load(repeated))].tolist()


def _clean(job: tuple[FootprintPartition], plan: dict[str, Any]) -> dict[str, Any]:
    (part,) = job
    return _clean_extent(part, plan)


def _prepare(job: tuple[FootprintPartition, str], plan: dict[str, Any]) -> dict[str, Any]:
    """One partition prepared as `prepare_footprints` prepares the whole file; its rows to a `RowStore` (a Dask
    task). `job[1]` names the later partitions' DSM footprints this one must draw (a digest, for resuming)."""
    part = job[0]
    options: BuildingOptions = plan["options"]
    gdf, ids, skipped, keep, geoms = _read_clean(part, plan)
    attrs = gdf.drop(columns=gdf.geometry.name).loc[keep].reset_index(drop=True)
    del gdf
    ids = ids[keep]
    k = len(geoms)
    attr_h, floors_h = attribute_heights(attrs, options)
    base, dsm_h = np.zeros(k), np.full(k, np.nan)
    outside = np.zeros(k, bool)
    if plan["dem"] is not None:
        g = geoms
        if not plan["dem_crs"].equals(plan["working"]):
            t = crsmod.transformer(plan["working"], plan["dem_crs"])
            g = shapely.transform(geoms, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
        base = np.full(k, np.nan)
        if plan["window"] is not None and k:
            base = lowest_terrain(g, plan["dem"], plan["window"], plan["tf"])
            if plan["dsm"] is not None:
                need = ~(np.isfinite(attr_h) | np.isfinite(floors_h))
                dsm_h = _dsm_heights(g, need, plan, part.index)
        outside = np.isnan(base)
    height, source = resolve_heights(attrs, dsm_h, options, plan["dsm"] is not None)
    ok = ~outside
    out_ids = [str(i) for i in ids[outside]]
    clean_bounds = _total_bounds(geoms)
    if not ok.all():
        geoms, ids, base, height, source = geoms[ok], ids[ok], base[ok], height[ok], source[ok]
        attrs = attrs.loc[ok].reset_index(drop=True)
    columns = attribute_columns(attrs, ids, base, height, source)
    masked = [n for n, v in columns.items() if isinstance(v, pd.api.extensions.ExtensionArray)]
    folder = Path(plan["scratch"]) / "prepared" / f"p{part.index:05d}"
    # polygons as coordinates + offsets: the tile tasks mesh them without parsing a geometry
    polygons = PolygonColumn.from_geometries(geoms)
    RowStore.write(folder, {"geometry": geoms if polygons is None else polygons, "bottom": base - options.sink,
                            "top": base + height,
                            **{f"column/{n}": v for n, v in columns.items()}})
    size = np.maximum(height, np.sqrt(shapely.area(geoms)))
    cent = shapely.centroid(geoms)
    np.save(folder / "summary.npy", np.column_stack([shapely.get_x(cent), shapely.get_y(cent), size,
                                                     shapely.bounds(geoms)])
            if len(geoms) else np.zeros((0, 7)))
    np.save(folder / "heights.npy", np.column_stack([base, height]) if len(geoms) else np.zeros((0, 2)))  # LOD2
    return {"store": str(folder), "clean": k, "kept": len(geoms), "skipped": list(skipped.reasons.items()),
            "outside": out_ids, "bounds": _total_bounds(geoms), "clean_bounds": clean_bounds, "masked": masked,
            "sources": {s: int(np.sum(source == s)) for s in HEIGHT_SOURCES},
            "default_ids": [str(i) for i in ids[source == "default"][:20]],
            "facts": height_facts(attrs, (plan["hfield"], plan["ffield"]))}


def _dsm_heights(g: np.ndarray, need: np.ndarray, plan: dict[str, Any], index: int) -> np.ndarray:
    """Median DSM - DEM over the cells each wanted footprint holds (as `footprint_heights` over the whole window:
    a cell belongs to the last footprint in file order whose shape holds its centre)."""
    k = len(g)
    dsm_h = np.full(k, np.nan)
    idx = np.flatnonzero(need)
    if not len(idx):
        return dsm_h
    win, tf = plan["window"], plan["tf"]
    inv = ~tf
    x0, y0, x1, y1 = shapely.total_bounds(g[idx])
    cols, rows = inv @ (np.array([x0, x1, x0, x1]), np.array([y0, y0, y1, y1]))
    c0 = int(np.clip(np.floor(cols.min()) - 1, 0, win.width))
    c1 = int(np.clip(np.ceil(cols.max()) + 1, 0, win.width))
    r0 = int(np.clip(np.floor(rows.min()) - 1, 0, win.height))
    r1 = int(np.clip(np.ceil(rows.max()) + 1, 0, win.height))
    if c1 <= c0 or r1 <= r0:
        return dsm_h
    sub = rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0)
    shapes = list(g[idx])
    area = shapely.box(x0, y0, x1, y1)
    for later in plan["later"].get(index, []):  # footprints of later partitions over this area: they win cells
        lg = RowStore(later).read(0, len(RowStore(later)))["geometry"]
        if not plan["dem_crs"].equals(plan["working"]):
            t = crsmod.transformer(plan["working"], plan["dem_crs"])
            lg = shapely.transform(lg, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
        shapes.extend(lg[shapely.intersects(lg, area)])
    with open_raster(plan["dem"]) as src:
        grid = rasterio.windows.Window(win.col_off + c0, win.row_off + r0, c1 - c0, r1 - r0)
        dem_arr = read_on_grid(plan["dem"], src, grid)
        dsm_arr = read_on_grid(plan["dsm"], src, grid)
    labels = rasterio.features.rasterize(
        list(zip(polygons_geojson(np.array(shapes, dtype=object)), range(1, len(shapes) + 1))),
        out_shape=dem_arr.shape, transform=rasterio.windows.transform(sub, tf), all_touched=False, fill=0,
        dtype="int32")
    labels[labels > len(idx)] = 0  # cells won by later partitions' footprints
    diff = dsm_arr - dem_arr
    valid = np.isfinite(diff) & (labels > 0)
    if valid.any():
        med = np.asarray(ndimage.median(diff[valid], labels[valid], np.arange(1, len(idx) + 1)), np.float64)
        present = np.bincount(labels[valid], minlength=len(idx) + 1)[1:] > 0
        dsm_h[idx[present]] = med[present]
    return dsm_h


# ----------------------------------------------------------------------------------------------------- the driver
def prepare_partitions(
    footprints: str | os.PathLike[str],
    dem: str | os.PathLike[str] | None,
    *,
    runner: Runner,
    scratch: str | os.PathLike[str],
    dsm: str | os.PathLike[str] | None = None,
    options: BuildingOptions | None = None,
    crs: crsmod.CRSLike | None = None,
) -> PartitionedFootprints:
    """Read, clean and give a base and a height to every footprint, partition by partition (see the module).

    Args:
        footprints, dem, dsm, options, crs: as `cim.models.footprints.prepare_footprints`.
        runner: runs the waves' tasks.
        scratch: a folder for the partitions' rows, which every worker sees at the same path (the build's work
            folder); the caller removes it when the tiles are written.

    Raises:
        BuildError: no footprint can be built.
        CoverageError: no footprint lies on the DEM.
        InputError, CRSError: unreadable footprints, an ID or height field that is not a column, ...
    """
    options = options or BuildingOptions()
    scratch = Path(scratch)
    t0 = time.perf_counter()
    parts = footprint_partitions(footprints, rows=options.partition_rows,
                                 min_parts=PARTS_PER_WORKER * runner.worker_count())
    dem_crs = raster_crs(dem) if dem is not None else None
    first = parts[0]  # one row: the columns and the declared CRS
    columns = read_footprints(footprints, crs=crs, part=FootprintPartition(
        first.path, 0, first.start, first.start + 1, first.layer, first.row_group, first.offset))
    names = [c for c in columns.columns if c != columns.geometry.name]
    source_crs = columns.crs
    if options.id_field is not None and options.id_field not in names:
        raise InputError(f"ID field {options.id_field!r} is not a column of the footprints; columns: {names}")
    hfield, ffield = height_fields(pd.DataFrame(columns=names), options)  # a field not a column: refused now
    candidates = [options.id_field] if options.id_field is not None else [c for c in ID_FIELDS if c in names]
    known = _known_working(dem_crs, source_crs)
    # Without a DSM, bases are taken in the DEM's own grid (`lowest_terrain` over the whole raster: the part under
    # each partition's footprints is read), so no wave needs the footprints' extent first, and with a known
    # working CRS the scan parses no geometry.
    whole_grid = dem is not None and dsm is None
    plan: dict[str, Any] = dict(crs=crs, nulls=(), working=known, id_column=None, candidates=candidates,
                                scratch=str(scratch), dsm=None if dsm is None else str(dsm), options=options,
                                dem=None if dem is None else str(dem), light=whole_grid and known is not None)
    scans = runner.map(_scan, [(p,) for p in parts], plan if dem is not None else dict(plan, working=None),
                       stage="footprints-scan", cost=[p.rows for p in parts])
    nulls = sorted({c for s in scans for c in s["nulls"]})
    working = known
    if working is None:
        sb = np.array([s["bounds"] for s in scans], np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN partitions (no readable geometry)
            src_bounds = (np.nanmin(sb[:, 0]), np.nanmin(sb[:, 1]), np.nanmax(sb[:, 2]), np.nanmax(sb[:, 3]))
        centre = bounds_centre(src_bounds, source_crs)
        working = (crsmod.working_crs(dem_crs, source_crs, lon=centre.lon, lat=centre.lat, like=dem_crs or source_crs)
                   if np.isfinite(centre).all() else source_crs)
    id_column = _id_column(parts, scans, candidates, options, plan, runner, scratch)
    plan.update(nulls=tuple(nulls), working=working, id_column=id_column, hfield=hfield, ffield=ffield)
    t1 = time.perf_counter()
    window = tf = None
    later: dict[int, list[str]] = {}
    if whole_grid:
        with open_raster(dem) as src:
            window, tf = rasterio.windows.Window(0, 0, src.width, src.height), src.transform
    elif dem is not None:
        cleans = [s["clean"] for s in scans] if known is not None else runner.map(
            _clean, [(p,) for p in parts], plan, stage="footprints-clean", cost=[p.rows for p in parts])
        cb = np.array([c["bounds"] for c in cleans], np.float64)
        if np.isfinite(cb).any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                bounds = (np.nanmin(cb[:, 0]), np.nanmin(cb[:, 1]), np.nanmax(cb[:, 2]), np.nanmax(cb[:, 3]))
            with open_raster(dem) as src:
                window = window_over(src, dem_crs, working, tuple(float(v) for v in bounds))
                if window is not None:
                    tf = rasterio.windows.transform(window, src.transform)
        later = _later_overlaps([c["need"] for c in cleans])
    plan.update(dem_crs=dem_crs, window=window, tf=tf, later=later)
    jobs = [(p, hashlib.blake2b(repr(later.get(p.index, [])).encode(), digest_size=8).hexdigest()) for p in parts]
    results = runner.map(_prepare, jobs, plan, stage="footprints-prepare", cost=[p.rows for p in parts])
    t2 = time.perf_counter()
    return _merge(footprints, dem, results, working, source_crs, names, hfield, ffield, options,
                  {"scan": t1 - t0, "prepare": t2 - t1})


def _known_working(dem_crs: CRS | None, source_crs: CRS | None) -> CRS | None:
    """The working CRS when it does not depend on where the footprints lie (a projected DEM or file CRS)."""
    for c in (dem_crs, source_crs):
        if c is None:
            continue
        h = c.sub_crs_list[0] if c.is_compound else c
        if h.is_projected:
            return crsmod.working_crs(dem_crs, source_crs, lon=0.0, lat=0.0)
    return None


def _id_column(parts: list[FootprintPartition], scans: list[dict[str, Any]], candidates: list[str],
               options: BuildingOptions, plan: dict[str, Any], runner: Runner, scratch: Path) -> str | None:
    """`building_ids`' choice over the whole file: the first candidate with no missing and no repeated value."""
    for col in candidates:
        ok = all(s["ids"][col][0] for s in scans)
        if ok:
            h = np.concatenate([np.load(s["ids"][col][1]) for s in scans])
            uniq, counts = np.unique(h, return_counts=True)
            repeated = uniq[counts > 1]
            if len(repeated):  # equal hashes: compare the values themselves
                path = scratch / "ids" / f"repeated.{candidates.index(col)}.npy"
                np.save(path, repeated)
                values = runner.map(_id_values, [(p, col, str(path)) for p in parts], plan, stage="footprints-ids")
                ok = pd.Series([v for vs in values for v in vs], dtype=object).is_unique
        if ok:
            return col
        if options.id_field is not None:
            raise InputError(f"ID field {options.id_field!r} has missing or repeated values; pick a unique column")
    return None


def _later_overlaps(needs: list[dict[str, Any] | None]) -> dict[int, list[str]]:
    """Per partition, the DSM footprint folders of later partitions whose extent meets its own."""
    out: dict[int, list[str]] = {}
    boxes = [(i, n["bounds"], n["folder"]) for i, n in enumerate(needs) if n is not None]
    for a, (i, bi, _) in enumerate(boxes):
        hits = [f for j, bj, f in boxes[a + 1:]
                if bj[0] <= bi[2] and bj[2] >= bi[0] and bj[1] <= bi[3] and bj[3] >= bi[1]]
        if hits:
            out[i] = hits
    return out


def _merge(footprints: Any, dem: Any, results: list[dict[str, Any]], working: CRS, source_crs: CRS,
           names: list[str], hfield: str | None, ffield: str | None, options: BuildingOptions,
           seconds: dict[str, float]) -> PartitionedFootprints:
    """The partitions' summaries as the whole file's report (reasons in `prepare_footprints`' order)."""
    skipped = Skipped()
    for r in results:  # unreadable geometries first (their reasons in file order), then clean_footprints' own
        for reason, ids in r["skipped"]:
            if reason not in _STANDARD_REASONS:
                skipped.add(reason, ids)
    for reason in _STANDARD_REASONS:
        for r in results:
            skipped.add(reason, dict(r["skipped"]).get(reason, []))
    clean = sum(r["clean"] for r in results)
    if clean == 0:
        raise BuildError(f"no building of {footprints} could be built: {skipped.to_dict(5)}")
    outside = [i for r in results for i in r["outside"]]
    skipped.add(OUTSIDE, outside)
    notes: list[str] = []
    on_dem = None
    kept = sum(r["kept"] for r in results)
    if dem is not None:
        on_dem = float(1.0 - len(outside) / clean)
        if kept == 0:
            _off_the_dem(footprints, dem, results, working, source_crs, clean)
        if outside:
            notes.append(f"--buildings {os.path.basename(str(footprints))}: {kept} of {clean} "
                         f"footprints ({on_dem:.0%}) lie on the DEM; the others are skipped")
    sources = {s: sum(r["sources"][s] for r in results) for s in HEIGHT_SOURCES}
    facts: dict[str, tuple[bool, list[str]]] = {}
    for f in (hfield, ffield):
        if f is not None:
            facts[f] = (any(r["facts"][f][0] for r in results if r["kept"]),
                        [v for r in results for v in r["facts"][f][1]][:3])
    notes += notes_from_facts(names, hfield, ffield, facts, kept, sources["default"], options)
    summaries = [np.load(Path(r["store"]) / "summary.npy") for r in results]
    allsum = np.concatenate(summaries) if summaries else np.zeros((0, 7))
    b = np.array([r["bounds"] for r in results if r["kept"]], np.float64)
    counts = np.array([r["kept"] for r in results], np.int64)
    return PartitionedFootprints(
        stores=[r["store"] for r in results], offsets=np.concatenate([[0], np.cumsum(counts)]),
        cx=allsum[:, 0].copy(), cy=allsum[:, 1].copy(), size=allsum[:, 2].copy(), box=allsum[:, 3:7].copy(),
        bounds=(float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())),
        crs=working, masked_ints=sorted({m for r in results for m in r["masked"]}), skipped=skipped,
        height_sources=sources, default_ids=[i for r in results for i in r["default_ids"]][:20], notes=notes,
        source_crs=source_crs, height_field=hfield, floors_field=ffield, on_dem=on_dem, seconds=seconds)


def _off_the_dem(footprints: Any, dem: Any, results: list[dict[str, Any]], working: CRS, source_crs: CRS,
                 clean: int) -> None:
    from cim.sources.coverage import CoverageError, describe, lonlat_bounds

    with open_raster(dem) as src:
        dem_crs_h = crsmod.horizontal_crs(crsmod.parse_crs(src.crs.to_wkt()))
        dem_where = lonlat_bounds(dem_crs_h, tuple(src.bounds))
    raise CoverageError(
        f"--buildings {footprints}: none of its {clean} footprints lies on the DEM {dem}: they lie at "
        f"{describe(lonlat_bounds(working, _clean_bounds(results)))}, the DEM at "
        f"{describe(dem_where)}; use inputs of the same place, and check the footprints' CRS "
        f"({source_crs.name}; pass --crs EPSG:n if the file's is wrong)")


def _clean_bounds(results: list[dict[str, Any]]) -> tuple[float, float, float, float]:
    b = np.array([r["clean_bounds"] for r in results if r["clean"]], np.float64)
    return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())


# ------------------------------------------------------------------------------------------ rows in tile order
def _gather(job: tuple[int, int, int, str], state: dict[str, Any]) -> int:
    """Rows `a`..`b` of the tileset's order gathered from the partitions into one `RowStore` (a Dask task)."""
    group, a, b, _ = job
    index = np.load(state["order"], mmap_mode="r")[a:b]
    offsets = state["offsets"]
    part = np.searchsorted(offsets, index, side="right") - 1
    by_part = np.argsort(part, kind="stable")
    pieces = []
    for p in np.unique(part).tolist():
        sel = by_part[part[by_part] == p]
        pieces.append(RowStore(state["stores"][p]).take(np.asarray(index[sel]) - offsets[p], raw=True))
    rows = concat_rows(pieces)
    for name in state["masked"]:  # an integer column with a missing value elsewhere: nullable in every tile
        key = f"column/{name}"
        if not isinstance(rows[key], pd.api.extensions.ExtensionArray):
            rows[key] = pd.arrays.IntegerArray(np.asarray(rows[key], np.int64), np.zeros(len(rows[key]), bool))
    inverse = np.empty(len(by_part), np.int64)
    inverse[by_part] = np.arange(len(by_part))
    RowStore.write(Path(state["folder"]) / f"g{group:05d}", rows, inverse)
    return b - a


def arrange_rows(fp: PartitionedFootprints, nodes: list[tuple[QuadNode, str]], runner: Runner,
                 folder: str | os.PathLike[str], stage: str = "lod1-rows") -> list[tuple[int, int, int]]:
    """Every tile's rows side by side, in tile order, in row stores of whole tiles (`GROUP_ROWS` rows or so;
    fewer when that gives less than `PARTS_PER_WORKER` stores a worker, never under `MIN_PARTITION_ROWS`).

    Returns:
        per tile (in `nodes` order): (group, start, stop) of its rows in `folder/g<group>`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    order = np.concatenate([node.content for node, _ in nodes]).astype(np.int64)
    np.save(folder / "order.npy", order)
    group_rows = partition_size(GROUP_ROWS, len(order), PARTS_PER_WORKER * runner.worker_count())
    spans: list[tuple[int, int, int]] = []
    groups: list[tuple[int, int, int, str]] = []
    start = at = 0
    for node, _ in nodes:
        n = len(node.content)
        if at - start + n > group_rows and at > start:
            groups.append((len(groups), start, at, ""))
            start = at
        spans.append((len(groups), at - start, at - start + n))
        at += n
    groups.append((len(groups), start, at, ""))
    jobs = [(g, a, b, hashlib.blake2b(order[a:b].tobytes(), digest_size=8).hexdigest()) for g, a, b, _ in groups]
    state = dict(order=str(folder / "order.npy"), offsets=fp.offsets, stores=fp.stores, masked=fp.masked_ints,
                 folder=str(folder))
    runner.map(_gather, jobs, state, stage=stage, cost=[b - a for _, a, b, _ in jobs])
    return spans


__all__ = ["GROUP_ROWS", "PartitionedFootprints", "TilePlan", "arrange_rows", "prepare_partitions"]
