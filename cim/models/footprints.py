"""Footprints prepared for any building model: IDs, clean geometry, base on the terrain, heights, attributes.

Shared by LOD1 (`cim.models.lod1`), LOD2 (`cim.models.lod2`) and oblique singulation: footprints (any CRS, put in
the build's working CRS) -> cleaned (Multi)Polygons with stable IDs -> the lowest terrain under each (DEM) -> a height per
building (attribute, floors, DSM, default) -> the per-building metadata columns written into the tiles.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
import time
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
from cim.partitions import RowStore, WindowPart, spatial_order
from cim.sources import crs as crsmod
from cim.sources.limits import check_finite
from cim.sources.attributes import FLOOR_NAMES, HEIGHT_NAMES, find_field, likely_fields, numeric_values
from cim.sources.footprints import (
    Skipped,
    building_ids,
    clean_footprints,
    lonlat_centre,
    read_footprints,
    reproject_footprints,
)
from cim.sources.raster import bilinear, open_raster, polygons_geojson, raster_crs, read_on_grid, window_over
from cim.tiling import ImplicitNode, QuadNode, Runner, implicit_quadtree, quadtree, runner_scope, walk
from cim.sources.vertical import ELLIPSOIDAL, VerticalDatum
from tiles.compression import GlbOptions
from tiles.gltf import StringColumn

HEIGHT_SOURCES = ("attribute", "floors", "dsm", "default")
HEIGHT_CHUNK = 20_000  # footprints per terrain-height task (a compact patch of the city, in Z-order)
ROWS_FOLDER = ".rows"  # a build's per-task rows (`cim.partitions.RowStore`), inside its work folder
#: `BuildingOptions.implicit=None` writes an implicit tileset (3D Tiles 1.1 implicit tiling) from this many buildings
IMPLICIT_AUTO_BUILDINGS = 500_000
#: metres each building's longitude/latitude box is grown by when it is placed in an implicit quadtree's cells
IMPLICIT_PAD_M = 0.05


@dataclass
class BuildingOptions:
    """How footprints become LOD1 buildings.

    Attributes:
        height_field: attribute holding the height in metres; None -> the first column with a known height name
            (height, HEIGHT, 高度, 建筑高度, JZGD, ...: `cim.sources.attributes.HEIGHT_NAMES`).
        floors_field: attribute holding the number of floors; None -> the first column with a known floors name
            (floors, storeys, 层数, 楼层数, CS, ...: `cim.sources.attributes.FLOOR_NAMES`).
        storey_height: metres per floor when the height comes from floors.
        default_height: metres when nothing else gives a height (reported).
        min_dsm_height: DSM - DEM medians below this are not taken as a building height.
        id_field: attribute holding a stable building ID; None -> the first unique known ID column, else row number.
        sink: metres the walls reach below the base so no building floats over a simplified terrain.
        tile_capacity: buildings per tile content.
        color: RGBA of the buildings.
        workers: Dask worker processes of the local cluster a build starts; None -> one per CPU core.
        glb: how tiles are encoded (compression, textures; `tiles.compression.GlbOptions`).
        vertical_datum: what input heights are measured from (`cim.sources.vertical.VerticalDatum`); they become
            ellipsoidal heights (h = H + N) before anything is placed.
        partition_rows: footprints per partition of the file, one task each, when LOD1 buildings are prepared
            (`cim.models.partitioned`): a task's memory follows it, the output does not.
        implicit: write the buildings as a 3D Tiles 1.1 implicit quadtree (subtree files; tileset.json holds only
            the root); False: an explicit tile tree; None: implicit from `IMPLICIT_AUTO_BUILDINGS` buildings.
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
    glb: GlbOptions = field(default_factory=GlbOptions)
    vertical_datum: VerticalDatum = ELLIPSOIDAL
    partition_rows: int = 100_000
    implicit: bool | None = None

    def use_implicit(self, buildings: int) -> bool:
        """Whether a layer of `buildings` buildings is written as an implicit quadtree."""
        return self.implicit if self.implicit is not None else buildings >= IMPLICIT_AUTO_BUILDINGS

    def __post_init__(self) -> None:
        """Refuse values no build can use (NaN, infinite, not positive), before any input is read.

        Raises:
            InputError: names the option and the value.
        """
        for name, low in (("storey_height", 0.0), ("default_height", 0.0), ("min_dsm_height", 0.0),
                          ("sink", 0.0)):
            value = getattr(self, name)
            check_finite(f"--{name.replace('_', '-')}", value, low=low)
            if name in ("storey_height", "default_height") and value <= 0:
                raise InputError(f"--{name.replace('_', '-')} {value!r} must be more than 0 metres")
        if int(self.tile_capacity) < 1:
            raise InputError(f"tile_capacity={self.tile_capacity} must be at least 1")
        if len(self.color) != 4 or not all(math.isfinite(c) and 0 <= c <= 1 for c in self.color):
            raise InputError(f"color={self.color!r} must be four numbers in 0..1 (RGBA)")
        if int(self.partition_rows) < 1:
            raise InputError(f"partition_rows={self.partition_rows} must be at least 1")
        if self.workers is not None and int(self.workers) < 1:
            raise InputError(f"workers={self.workers} must be at least 1")


def _lowest_terrain(job: tuple[int, int, str], state: dict[str, Any]) -> tuple[int, np.ndarray]:
    """Lowest terrain under footprints a..b (a Dask task): they come from the build's `RowStore`
    (`state["rows"]`, in spatial order); see `lowest_terrain`."""
    a, b, _ = job
    g = RowStore(state["rows"]).read(a, b)["geometry"]
    return a, lowest_terrain(g, state["dem"], state["window"], state["tf"])


def lowest_terrain(g: np.ndarray, dem: str | os.PathLike[str], window: rasterio.windows.Window,
                   dem_tf: Any) -> np.ndarray:
    """Lowest bilinear DEM value over each footprint: at vertices, along edges every half cell, at cell centres.

    Reads the part of the DEM `window` (whose transform is `dem_tf`) under the footprints, nothing more; the values
    are those over the whole window, whatever part of it is read.

    Args:
        g: (k,) (Multi)Polygons in the DEM's CRS.

    Returns:
        (k,) float64; NaN where the footprint misses the DEM.
    """
    h, w = window.height, window.width
    k = len(g)
    cell = min(abs(dem_tf.a), abs(dem_tf.e))
    edge_xy, edge_idx = shapely.get_coordinates(shapely.segmentize(g, cell / 2), return_index=True)
    inv = ~dem_tf
    # cell centres inside each footprint: candidates from each bounding box, kept if inside
    x0, y0, x1, y1 = shapely.bounds(g).T
    ca, ra = inv * (x0, y1)
    cb, rb = inv * (x1, y0)
    c0 = np.ceil(np.minimum(ca, cb) - 0.5).astype(np.int64)
    c1 = np.floor(np.maximum(ca, cb) - 0.5).astype(np.int64)
    r0 = np.ceil(np.minimum(ra, rb) - 0.5).astype(np.int64)
    r1 = np.floor(np.maximum(ra, rb) - 0.5).astype(np.int64)
    # the rows and columns any of this reads (bilinear reads floor(.) and floor(.) + 1 of the clipped position)
    ec, er = inv * (edge_xy[:, 0], edge_xy[:, 1])
    rows = np.concatenate([np.asarray(er, np.float64) - 0.5, r0, r1]) if k else np.zeros(1)
    cols = np.concatenate([np.asarray(ec, np.float64) - 0.5, c0, c1]) if k else np.zeros(1)
    lo_r = int(np.clip(np.floor(np.nanmin(rows)) - 1, 0, h - 1))
    hi_r = int(np.clip(np.floor(np.nanmax(rows)) + 2, 0, h - 1))
    lo_c = int(np.clip(np.floor(np.nanmin(cols)) - 1, 0, w - 1))
    hi_c = int(np.clip(np.floor(np.nanmax(cols)) + 2, 0, w - 1))
    win = window
    with open_raster(dem) as src:
        part = read_on_grid(dem, src, rasterio.windows.Window(
            win.col_off + lo_c, win.row_off + lo_r, hi_c - lo_c + 1, hi_r - lo_r + 1))
    dem_arr = WindowPart(part, lo_r, lo_c, (h, w))
    z = bilinear(dem_arr, dem_tf, edge_xy[:, 0], edge_xy[:, 1])
    base = np.full(k, np.inf)
    np.minimum.at(base, edge_idx, np.where(np.isnan(z), np.inf, z))
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
    return base


def footprint_heights(
    geoms: np.ndarray, crs: CRS, dem: str | os.PathLike[str], dsm: str | os.PathLike[str] | None = None,
    need_dsm: np.ndarray | None = None, runner: Runner | None = None,
    scratch: str | os.PathLike[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per footprint: the lowest terrain height under it and the median DSM - DEM inside it.

    The terrain is the DEM's bilinear surface; its minimum over a footprint is taken over the footprint's vertices,
    points along its edges at most half a cell apart, and every DEM cell centre inside it (all in bulk, no
    per-building Python). The footprints are cut into chunks in spatial order (`cim.partitions.spatial_order`),
    one task each, and each task reads its footprints from a `RowStore` in `scratch` and the DEM under them: no
    task holds the whole city or the whole DEM.

    Args:
        geoms: (k,) (Multi)Polygons in `crs`.
        crs: the footprints' CRS.
        dem: terrain raster path.
        dsm: surface raster path, or None.
        need_dsm: (k,) bool, the footprints whose DSM height is wanted (default: all, when `dsm` is given).
        runner: the `cim.tiling.Runner` that runs chunks of footprints as tasks (default: a local Dask cluster
            when there are several chunks, this process otherwise).
        scratch: a folder for the chunks' footprints (removed afterwards), which every worker must see at the
            same path; None: a temporary folder on this machine.

    Returns:
        (base, dsm_height): (k,) float64 each; NaN where the footprint misses the raster (or no DSM value).
    """
    k = len(geoms)
    base = np.full(k, np.nan)
    dsm_h = np.full(k, np.nan)
    bounds = tuple(shapely.total_bounds(geoms))
    with open_raster(dem) as src:
        dem_crs = crsmod.parse_crs(src.crs.to_wkt(), what=str(dem))
        # without a DSM the bases are taken in the DEM's own grid (as `cim.models.partitioned`, which then needs
        # no extent of the footprints before their bases): each task reads the part under its footprints only
        window = (window_over(src, dem_crs, crs, bounds) if dsm is not None
                  else rasterio.windows.Window(0, 0, src.width, src.height))
        if window is None:
            return base, dsm_h
        dem_tf = rasterio.windows.transform(window, src.transform)
        dem_arr = read_on_grid(dem, src, window) if dsm is not None else None
        dsm_arr = read_on_grid(dsm, src, window) if dsm is not None else None
    g = geoms
    if not dem_crs.equals(crs):
        t = crsmod.transformer(crs, dem_crs)
        g = shapely.transform(geoms, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
    step = HEIGHT_CHUNK  # fixed: a task's memory must not grow with the city
    x0, y0, x1, y1 = shapely.bounds(g).T
    order = spatial_order((x0 + x1) / 2, (y0 + y1) / 2)
    # a job names its footprints (a digest of their rows), so a resumed build never takes another chunk's result
    jobs = [(a, min(a + step, k), hashlib.blake2b(order[a:a + step].tobytes(), digest_size=8).hexdigest())
            for a in range(0, k, step)]
    folder = Path(scratch) / "heights" if scratch is not None else Path(tempfile.mkdtemp(prefix="cim-heights-"))
    try:
        RowStore.write(folder, {"geometry": g}, order)
        state = dict(rows=str(folder), dem=str(dem), window=window, tf=dem_tf)
        with runner_scope(runner) as run:
            results = run.map(_lowest_terrain, jobs, state, stage="heights")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for a, values in results:
        base[order[a:a + len(values)]] = values
    if dsm_arr is not None:
        want = np.ones(k, bool) if need_dsm is None else np.asarray(need_dsm, bool)
        idx = np.flatnonzero(want)
        if len(idx):
            labels = rasterio.features.rasterize(
                list(zip(polygons_geojson(g[idx]), range(1, len(idx) + 1))), out_shape=dem_arr.shape, transform=dem_tf,
                all_touched=False, fill=0, dtype="int32")
            diff = dsm_arr - dem_arr
            valid = np.isfinite(diff) & (labels > 0)
            if valid.any():
                med = np.asarray(ndimage.median(diff[valid], labels[valid], np.arange(1, len(idx) + 1)), np.float64)
                present = np.bincount(labels[valid], minlength=len(idx) + 1)[1:] > 0
                dsm_h[idx[present]] = med[present]
    return base, dsm_h


def height_fields(frame: pd.DataFrame, options: BuildingOptions) -> tuple[str | None, str | None]:
    """The columns that give heights and floor counts: the ones named in the options (matched
    case-insensitively when not spelt exactly), else the first known name (`cim.sources.attributes`).

    Raises:
        InputError: a field named in the options is not a column.
    """
    out: list[str | None] = []
    for given, names, what, option in ((options.height_field, HEIGHT_NAMES, "height", "--height-field"),
                                       (options.floors_field, FLOOR_NAMES, "floors", "--floors-field")):
        if given is None:
            out.append(find_field(frame.columns, names))
            continue
        hit = given if given in frame.columns else find_field(frame.columns, [given])
        if hit is None:
            raise InputError(f"{what} field {given!r} is not a column of the footprints; pass {option} with one of "
                             f"the columns: {list(frame.columns)}")
        out.append(hit)
    return out[0], out[1]


def attribute_heights(frame: pd.DataFrame, options: BuildingOptions) -> tuple[np.ndarray, np.ndarray]:
    """Heights from the height attribute and from floors x storey height: (k,) float64 each, NaN where absent."""
    hfield, ffield = height_fields(frame, options)
    h = numeric_values(frame[hfield]) if hfield is not None else np.full(len(frame), np.nan)
    f = numeric_values(frame[ffield]) if ffield is not None else np.full(len(frame), np.nan)
    return h, f * options.storey_height


def height_notes(frame: pd.DataFrame, options: BuildingOptions, source: np.ndarray) -> list[str]:
    """Warnings about where heights came from: a height or floors column that gave no number, and columns that
    look like heights but were not used while buildings fell back to the default height."""
    hfield, ffield = height_fields(frame, options)
    return notes_from_facts(list(frame.columns), hfield, ffield, height_facts(frame, (hfield, ffield)), len(frame),
                            int(np.sum(source == "default")), options)


def height_facts(frame: pd.DataFrame, fields: tuple[str | None, ...]) -> dict[str, tuple[bool, list[str]]]:
    """Per height or floors column: whether any value is a positive number, and its first three values as text
    (what `notes_from_facts` needs; a partition's facts merge with the next's in file order)."""
    return {f: (bool(np.isfinite(numeric_values(frame[f])).any()), frame[f].dropna().head(3).astype(str).tolist())
            for f in fields if f is not None}


def notes_from_facts(columns: list[str], hfield: str | None, ffield: str | None,
                     facts: dict[str, tuple[bool, list[str]]], rows: int, defaults: int,
                     options: BuildingOptions) -> list[str]:
    """`height_notes` from the facts of the whole file (`height_facts`), the row count and the default count."""
    notes = []
    for field_name in (hfield, ffield):
        if field_name is not None and rows and not facts[field_name][0]:
            sample = facts[field_name][1][:3]
            notes.append(f"column {field_name!r} holds no positive number (e.g. {sample}); no height was taken "
                         f"from it")
    if defaults:
        likely = likely_fields(columns, (hfield, ffield))
        if likely:
            notes.append(f"{defaults} building(s) got the default height {options.default_height:g} m although "
                         f"column(s) {', '.join(repr(c) for c in likely[:4])} look like heights or floor counts: "
                         f"pass --height-field NAME (metres) or --floors-field NAME")
    return notes


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


_INTERNAL_COLUMNS = ("base_height", "height", "height_source")


def take_column(column: Any, index: np.ndarray) -> Any:
    return column.take(index) if isinstance(column, StringColumn) else column[index]



class FootprintReport:
    """Where prepared footprints and their heights came from (`describe`), for the prepared footprints of a whole
    file (`PreparedFootprints`) and of its partitions (`cim.models.partitioned.PartitionedFootprints`), which carry
    `crs`, `source_crs`, `height_field`, `floors_field` and `on_dem`."""

    crs: CRS
    source_crs: CRS | None
    height_field: str | None
    floors_field: str | None
    on_dem: float | None

    @property
    def reprojected(self) -> bool:
        return self.source_crs is not None and not self.source_crs.equals(self.crs)

    def describe(self) -> dict[str, Any]:
        """Where the footprints and their heights came from, for build reports."""
        return {"source_crs": None if self.source_crs is None else self.source_crs.name,
                "working_crs": self.crs.name, "reprojected": self.reprojected,
                "height_field": self.height_field, "floors_field": self.floors_field,
                "on_dem": None if self.on_dem is None else round(self.on_dem, 4)}


@dataclass
class PreparedFootprints(FootprintReport):
    """Footprints ready to model: cleaned geometry, stable IDs, attributes, base and height per building.

    Attributes:
        geoms: (k,) (Multi)Polygons in `crs`.
        ids: (k,) stable building IDs (str).
        attrs: the source attributes of the kept buildings.
        base: (k,) float64 lowest terrain height under each footprint (0 without a DEM).
        height: (k,) float64 building height in metres.
        source: (k,) where each height came from (HEIGHT_SOURCES).
        skipped: the buildings left out and why.
        crs: the CRS the footprints are in here: the build's working CRS (the DEM's when it is projected, else the
            file's when it is projected, else a local projected CRS chosen from the data).
        seconds: time spent per stage.
        source_crs: the footprint file's own CRS.
        height_field, floors_field: the columns heights and floor counts were read from (None: no such column).
        notes: warnings about the footprints (some off the DEM) and their heights (a likely height column not used, a
            column without numbers).
        on_dem: the share of footprints on the DEM (None without a DEM).
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
    source_crs: CRS | None = None
    height_field: str | None = None
    floors_field: str | None = None
    notes: list[str] = field(default_factory=list)
    on_dem: float | None = None

    def columns(self) -> dict[str, Any]:
        """The per-building metadata columns (see `attribute_columns`)."""
        return attribute_columns(self.attrs, self.ids, self.base, self.height, self.source)

    def quadtree(self, size: np.ndarray, capacity: int) -> list[tuple[QuadNode, str]]:
        """ADD-refinement tiles over the footprints' centroids, largest `size` first; (node, path) root first."""
        cent = shapely.centroid(self.geoms)
        b = shapely.total_bounds(self.geoms)
        side = max(b[2] - b[0], b[3] - b[1]) or 1.0
        root = quadtree(shapely.get_x(cent), shapely.get_y(cent), size, np.arange(len(self.geoms)),
                         (b[0], b[1], b[0] + side, b[1] + side), max(1, capacity))
        return list(walk(root))

    def implicit_quadtree(self, size: np.ndarray, capacity: int) -> tuple[list[ImplicitNode], list[float]]:
        """ADD-refinement tiles of an implicit quadtree over longitude and latitude (radians), largest `size`
        first: each building in the deepest cell that holds its whole footprint (`cim.tiling.implicit_quadtree`).

        Returns:
            (tiles root first, the root cell [west, south, east, north] in radians).
        """
        box, root = lonlat_boxes(shapely.bounds(self.geoms), self.crs)
        return implicit_quadtree(box, size, tuple(root), max(1, capacity)), root  # type: ignore[arg-type]


def lonlat_boxes(bounds: np.ndarray, crs: CRS) -> tuple[np.ndarray, list[float]]:
    """Each building's longitude/latitude box (radians) from its projected bounds, and the box of them all.

    Args:
        bounds: (k, 4) float64 [x0, y0, x1, y1] of each footprint in `crs`.

    Returns:
        ((k, 4) [west, south, east, north] grown by `IMPLICIT_PAD_M`, [west, south, east, north] of all).
    """
    b = np.asarray(bounds, np.float64)
    t = crsmod.transformer(crs, "EPSG:4326")
    corners = [t.transform(b[:, i], b[:, j]) for i, j in ((0, 1), (2, 1), (0, 3), (2, 3))]
    lon = np.radians(np.column_stack([c[0] for c in corners]))
    lat = np.radians(np.column_stack([c[1] for c in corners]))
    # The footprint's vertices lie inside the corners' box up to the curvature of a projected edge in
    # longitude/latitude (micrometres over a building); the pad (5 cm) is larger than the 1 cm content regions
    # are padded by, so a tile's content region lies inside its cell.
    pad = IMPLICIT_PAD_M / 6378137.0
    pad_lon = pad / max(float(np.cos(np.max(np.abs(lat)))), 1e-6)
    box = np.column_stack([lon.min(axis=1) - pad_lon, lat.min(axis=1) - pad,
                           lon.max(axis=1) + pad_lon, lat.max(axis=1) + pad])
    root = [float(box[:, 0].min()), float(box[:, 1].min()), float(box[:, 2].max()), float(box[:, 3].max())]
    return box, root


def prepare_footprints(
    footprints: str | os.PathLike[str],
    dem: str | os.PathLike[str] | None,
    *,
    dsm: str | os.PathLike[str] | None = None,
    options: BuildingOptions | None = None,
    crs: crsmod.CRSLike | None = None,
    runner: Runner | None = None,
    scratch: str | os.PathLike[str] | None = None,
) -> PreparedFootprints:
    """Read, clean and give a base and a height to every footprint (the common first half of LOD1 and LOD2).

    `runner` runs the terrain heights as tasks, which read their footprints from `scratch` (see
    `footprint_heights`).

    Raises:
        BuildError: no footprint can be built.
    """
    options = options or BuildingOptions()
    t0 = time.perf_counter()
    gdf = read_footprints(footprints, crs=crs)
    source_crs = gdf.crs
    dem_crs = raster_crs(dem) if dem is not None else None
    centre = lonlat_centre(gdf)
    # no usable geometry at all: clean_footprints below says why, in the file's own CRS
    src_crs = crsmod.working_crs(dem_crs, source_crs, lon=centre.lon, lat=centre.lat, like=dem_crs or source_crs) \
        if np.isfinite(centre).all() else source_crs
    gdf = reproject_footprints(gdf, src_crs)
    ids = building_ids(gdf, options.id_field)
    skipped = Skipped()
    keep, geoms = clean_footprints(gdf, ids, skipped)
    attrs = gdf.drop(columns=gdf.geometry.name).loc[keep].reset_index(drop=True)
    del gdf
    ids = ids[keep]
    if len(geoms) == 0:
        raise BuildError(f"no building of {footprints} could be built: {skipped.to_dict(5)}")
    t1 = time.perf_counter()
    attr_h, floors_h = attribute_heights(attrs, options)
    if dem is not None:
        need_dsm = ~(np.isfinite(attr_h) | np.isfinite(floors_h))
        base, dsm_h = footprint_heights(geoms, src_crs, dem, dsm, need_dsm=need_dsm, runner=runner,
                                        scratch=scratch)
        outside = np.isnan(base)
        skipped.add("outside the DEM (no terrain height under the footprint)", ids[outside])
    else:
        base = np.zeros(len(geoms))
        dsm_h = np.full(len(geoms), np.nan)
        outside = np.zeros(len(geoms), bool)
    notes: list[str] = []
    on_dem = None
    if dem is not None and len(geoms):
        on_dem = float(1.0 - outside.mean())
        if outside.all():
            from cim.sources.coverage import CoverageError, describe, lonlat_bounds

            with open_raster(dem) as src:
                dem_crs_h = crsmod.horizontal_crs(crsmod.parse_crs(src.crs.to_wkt()))
                dem_where = lonlat_bounds(dem_crs_h, tuple(src.bounds))
            raise CoverageError(
                f"--buildings {footprints}: none of its {len(geoms)} footprints lies on the DEM {dem}: they lie at "
                f"{describe(lonlat_bounds(src_crs, tuple(shapely.total_bounds(geoms))))}, the DEM at "
                f"{describe(dem_where)}; use inputs of the same place, and check the footprints' CRS "
                f"({source_crs.name}; pass --crs EPSG:n if the file's is wrong)")
        if outside.any():
            notes.append(f"--buildings {os.path.basename(str(footprints))}: {int((~outside).sum())} of {len(geoms)} "
                         f"footprints ({on_dem:.0%}) lie on the DEM; the others are skipped")
    height, source = resolve_heights(attrs, dsm_h, options, dsm is not None)
    ok = ~outside
    if not ok.all():
        geoms, ids, base, height, source = geoms[ok], ids[ok], base[ok], height[ok], source[ok]
        attrs = attrs.loc[ok].reset_index(drop=True)
    if len(geoms) == 0:
        raise BuildError(f"no building of {footprints} could be built: {skipped.to_dict(5)}")
    hfield, ffield = height_fields(attrs, options)
    return PreparedFootprints(geoms, ids, attrs, base, height, source, skipped, src_crs,
                              {"read": t1 - t0, "heights": time.perf_counter() - t1}, source_crs=source_crs,
                              height_field=hfield, floors_field=ffield,
                              notes=notes + height_notes(attrs, options, source), on_dem=on_dem)



def frame_columns(frame: pd.DataFrame, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A frame's columns as tile metadata: numbers as numpy arrays (NaN or a nullable integer array for missing),
    booleans (missing: false), dates as ISO text, text as `StringColumn`s; columns named in `skip` are left out."""
    columns: dict[str, Any] = {}
    for col in frame.columns:
        if col in skip:
            continue
        values = frame[col]
        if pd.api.types.is_datetime64_any_dtype(values.dtype):
            columns[col] = StringColumn.from_values(values.dt.strftime("%Y-%m-%dT%H:%M:%S"))
        elif pd.api.types.is_bool_dtype(values.dtype) or (
                values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) == "boolean"):
            # booleans with a null come from Arrow and GDAL as objects; EXT_structural_metadata has no noData for
            # BOOLEAN, so a missing value is written false (as pandas' nullable booleans are)
            columns[col] = values.astype("boolean").to_numpy(dtype=bool, na_value=False)
        elif pd.api.types.is_integer_dtype(values.dtype):
            columns[col] = values.astype("Int64").array if values.isna().any() else values.to_numpy(np.int64)
        elif pd.api.types.is_numeric_dtype(values.dtype):
            columns[col] = values.to_numpy(dtype=np.float64, na_value=np.nan)
        elif hasattr(values.array, "__arrow_array__") and pd.api.types.is_string_dtype(values.dtype):
            columns[col] = StringColumn.from_values(values.array)
        else:
            columns[col] = StringColumn.from_values(values.astype(object).where(values.notna(), None).to_numpy())
    return columns


def attribute_columns(attrs: pd.DataFrame, ids: np.ndarray, base: np.ndarray, height: np.ndarray,
                      source: np.ndarray) -> dict[str, Any]:
    """The per-building metadata: stable `id`, every source attribute, and the model's own heights.

    Numbers stay numpy arrays (NaN for missing); text becomes `StringColumn`s, so slicing per tile and sharing with
    Dask workers touches no Python object per value.
    """
    columns: dict[str, Any] = {"id": StringColumn.from_values(np.asarray(ids, dtype=object))}
    columns.update(frame_columns(attrs, skip=("id", *_INTERNAL_COLUMNS)))
    columns["height"] = np.round(height, 3)
    columns["base_height"] = np.round(base, 3)
    columns["height_source"] = StringColumn.from_values(np.asarray(source, dtype=object))
    return columns

