"""The flood grid: the DEM with buildings burned in, losses and roughness per cell.

Buildings come in two ways (`building_mode`):

- `walls`: a cell whose centre lies inside a footprint is a wall: no storage, closed faces. Rain on it is roof
  water and reaches the ground through downpipes: it is added to the nearest open cell (Euclidean distance
  transform), so no rain is lost and roofs shed onto the street beside them.
- `porosity`: each cell keeps the open fraction `phi` of its area (footprint coverage measured on a 4 x 4
  supersampled grid); storage and face widths shrink with it, and the rain on the covered part stays in the cell.
  Cells less than 5 % open become walls.

Losses are capacities in mm/h: `drainage` (the pipe network, over a cell's whole area) and `infiltration` (over its
open part); each is a number, a raster (resampled onto the grid) or a vector layer whose polygons carry the rate in
a field. A drainage given as "3y" is the mean intensity of the 3-year storm over the storm's duration (a network
designed to GB 50014 for that return period).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.features
import rasterio.warp
from affine import Affine
from pyproj import CRS
from rasterio.enums import Resampling
from scipy import ndimage

from cim.analysis.flood.errors import FloodInputError, FloodWarning
from cim.analysis.flood.solver import SolverGrid, solver_grid
from cim.errors import CRSError, InputError
from cim.sources.crs import local_projected_crs
from cim.sources.raster import fill_small_holes, read_dem

#: cells less open than this become walls in porosity mode
MIN_POROSITY = 0.05
#: supersampling of the footprint coverage in porosity mode
_SUPERSAMPLE = 4

LossLike = float | int | str | os.PathLike[str] | None

#: steady infiltration rates (mm/h) by land cover, for a layer with a `landcover` field instead of rates: Musgrave's
#: (1955) final rates by hydrologic soil group (A > 7.6, B 3.8-7.6, C 1.3-3.8, D < 1.3 mm/h), urban soils taken as
#: compacted (group B-C); sealed surfaces and water take none
LANDCOVER_INFILTRATION: dict[str, float] = {
    "forest": 7.6, "林地": 7.6, "grass": 5.0, "草地": 5.0, "绿地": 5.0, "park": 5.0, "公园": 5.0,
    "farmland": 5.0, "耕地": 5.0, "bare": 3.8, "裸地": 3.8, "soil": 3.8, "residential": 1.3, "居住用地": 1.3,
    "paved": 0.0, "硬化": 0.0, "road": 0.0, "道路": 0.0, "square": 0.0, "广场": 0.0, "roof": 0.0, "建筑": 0.0,
    "water": 0.0, "水体": 0.0}


@dataclass
class FloodGrid:
    """A DEM prepared for the flood models.

    Attributes:
        z: (ny, nx) float64 bed elevation, NaN outside the domain (nodata).
        phi: (ny, nx) float64 open fraction of each cell (1 ground, 0 wall).
        walls: (ny, nx) bool, cells that are buildings.
        rain_area: (ny, nx) float64 m² whose rain lands in each cell (its own plus routed roofs).
        roof_target: (nwalls,) flat index of the open cell each wall cell's rain goes to (order of
            `np.flatnonzero(walls)`).
        manning: (ny, nx) float64 Manning's n.
        drainage: (ny, nx) float64 drainage capacity (m/s).
        infiltration: (ny, nx) float64 infiltration capacity (m/s).
        transform: the grid's affine transform (north-up).
        crs: its CRS (projected, metres): the DEM's own, or the local one a geographic DEM was reprojected to.
        buildings: how many footprints were burned in, and skipped by reason.
        dem_path: the DEM file.
        dem_crs: the DEM's CRS when it was reprojected (a geographic DEM), else None.
    """

    z: np.ndarray
    phi: np.ndarray
    walls: np.ndarray
    rain_area: np.ndarray
    roof_target: np.ndarray
    manning: np.ndarray
    drainage: np.ndarray
    infiltration: np.ndarray
    transform: Affine
    crs: CRS
    buildings: dict[str, Any] = field(default_factory=dict)
    dem_path: str = ""
    dem_crs: CRS | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.z.shape  # type: ignore[return-value]

    @property
    def dx(self) -> float:
        return float(abs(self.transform.a))

    @property
    def dy(self) -> float:
        return float(abs(self.transform.e))

    @property
    def cell_area(self) -> float:
        return self.dx * self.dy

    @property
    def active(self) -> np.ndarray:
        """(ny, nx) bool: cells that hold water (valid DEM, not a wall)."""
        return np.isfinite(self.z) & (self.phi > 0)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        ny, nx = self.shape
        left, top = self.transform.c, self.transform.f
        return (left, top - ny * self.dy, left + nx * self.dx, top)

    def route(self, per_cell: np.ndarray) -> np.ndarray:
        """Move a per-cell quantity (rain volume or rate x area) off the walls onto the cells their roofs drain to."""
        out = np.where(self.active, per_cell, 0.0).astype(np.float64)
        if self.roof_target.size:
            np.add.at(out.ravel(), self.roof_target, per_cell.ravel()[np.flatnonzero(self.walls)])
        return out

    def to_solver(self, *, open_boundary: bool, boundary_slope: float | None = None) -> SolverGrid:
        """The padded grid the shallow-water solver runs on."""
        return solver_grid(self.z, self.phi, self.dx, self.dy, manning=self.manning, open_boundary=open_boundary,
                           rain_area=self.rain_area, drainage=self.drainage, infiltration=self.infiltration,
                           boundary_slope=boundary_slope)

    def summary(self) -> dict[str, Any]:
        """Grid facts for run.json."""
        return {"shape": list(self.shape), "cell_size_m": [self.dx, self.dy], "crs": self.crs.to_string(),
                "bounds": list(self.bounds), "active_cells": int(self.active.sum()),
                "wall_cells": int(self.walls.sum()), "porous_cells": int(((self.phi > 0) & (self.phi < 1)).sum()),
                "nodata_cells": int((~np.isfinite(self.z)).sum()), "buildings": self.buildings,
                "dem": self.dem_path, "dem_crs": (self.dem_crs or self.crs).to_string(),
                "reprojected": self.dem_crs is not None}


def _resample_dem(z: np.ndarray, transform: Affine, crs: CRS, resolution: float) -> tuple[np.ndarray, Affine]:
    """Average the DEM onto a coarser grid of `resolution` metres (nodata stays nodata)."""
    ny, nx = z.shape
    width = max(1, int(round(nx * abs(transform.a) / resolution)))
    height = max(1, int(round(ny * abs(transform.e) / resolution)))
    dst_t = Affine(resolution, 0, transform.c, 0, -resolution, transform.f)
    out = np.full((height, width), np.nan)
    rasterio.warp.reproject(z, out, src_transform=transform, src_crs=crs, dst_transform=dst_t, dst_crs=crs,
                            src_nodata=np.nan, dst_nodata=np.nan, resampling=Resampling.average)
    return out, dst_t


def _to_projected(z: np.ndarray, transform: Affine, crs: CRS) -> tuple[np.ndarray, Affine, CRS]:
    """Reproject a DEM in a geographic CRS onto square cells of the local projected CRS of its centre
    (`cim.sources.crs.local_projected_crs`: the CGCS2000 Gauss-Krüger zone for CGCS2000 data, UTM otherwise), bilinear, with
    cells about as large as its own (GDAL's default: as many cells along the diagonal)."""
    ny, nx = z.shape
    left, top = transform.c, transform.f
    right, bottom = left + nx * transform.a, top + ny * transform.e
    dst = local_projected_crs((left + right) / 2, (top + bottom) / 2, like=crs)
    dst_t, width, height = rasterio.warp.calculate_default_transform(crs.to_wkt(), dst.to_wkt(), nx, ny, left,
                                                                     bottom, right, top)
    out = np.full((height, width), np.nan)
    rasterio.warp.reproject(z, out, src_transform=transform, src_crs=crs.to_wkt(), dst_transform=dst_t,
                            dst_crs=dst.to_wkt(), src_nodata=np.nan, dst_nodata=np.nan,
                            resampling=Resampling.bilinear)
    return out, dst_t, dst


def _crop(z: np.ndarray, transform: Affine, bbox: tuple[float, float, float, float], path: str
          ) -> tuple[np.ndarray, Affine]:
    left, bottom, right, top = bbox
    inv = ~transform
    c0, r0 = inv @ (left, top)
    c1, r1 = inv @ (right, bottom)
    c0, c1 = max(0, int(np.floor(min(c0, c1)))), min(z.shape[1], int(np.ceil(max(c0, c1))))
    r0, r1 = max(0, int(np.floor(min(r0, r1)))), min(z.shape[0], int(np.ceil(max(r0, r1))))
    if c1 - c0 < 3 or r1 - r0 < 3:
        raise FloodInputError(f"bbox {list(bbox)} leaves fewer than 3 x 3 cells of DEM {path}; give a bbox inside "
                              f"the DEM, in its CRS")
    return z[r0:r1, c0:c1], transform @ Affine.translation(c0, r0)


def _footprint_geoms(path: str | os.PathLike[str], crs: CRS, bounds: tuple[float, float, float, float],
                     what: str = "buildings") -> tuple[np.ndarray, dict[str, Any]]:
    """Polygons (footprints, outlets) reprojected to the grid's CRS, those that touch the grid, and counts."""
    import shapely

    from cim.sources.footprints import read_footprints

    gdf = read_footprints(path)
    if not CRS.from_user_input(gdf.crs).equals(crs):
        gdf = gdf.to_crs(crs)
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    geoms = shapely.make_valid(geoms)
    ok = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
    poly = ok & np.isin(shapely.get_type_id(geoms), (3, 6, 7))
    box = shapely.box(*bounds)
    inside = poly & shapely.intersects(geoms, box)
    n = len(geoms)
    if n and not inside.any():
        b = gdf.total_bounds
        raise FloodInputError(
            f"{what} file {path}: none of its {n} polygons lies on the DEM (footprints span "
            f"[{b[0]:.1f}, {b[1]:.1f}, {b[2]:.1f}, {b[3]:.1f}], the DEM [{bounds[0]:.1f}, {bounds[1]:.1f}, "
            f"{bounds[2]:.1f}, {bounds[3]:.1f}] in {crs.to_string()}); check the file's CRS or pass the right DEM")
    info = {"file": str(path), "burned": int(inside.sum()),
            "skipped": {"outside_dem": int((poly & ~inside).sum()), "not_polygonal": int((~poly).sum())}}
    if info["skipped"]["outside_dem"] and what == "buildings":
        warnings.warn(f"{info['skipped']['outside_dem']} of {n} footprints in {path} lie outside the DEM and were "
                      f"left out", FloodWarning, stacklevel=3)
    return geoms[inside], info


def _coverage(geoms: np.ndarray, shape: tuple[int, int], transform: Affine, mode: str) -> np.ndarray:
    """Fraction of each cell covered by footprints (walls: 1 where the centre is inside, else 0)."""
    if geoms.size == 0:
        return np.zeros(shape)
    if mode == "walls":
        return rasterio.features.rasterize(((g, 1) for g in geoms), out_shape=shape, transform=transform,
                                           fill=0, dtype="uint8").astype(np.float64)
    k = _SUPERSAMPLE
    fine = rasterio.features.rasterize(((g, 1) for g in geoms), out_shape=(shape[0] * k, shape[1] * k),
                                       transform=transform @ Affine.scale(1 / k), fill=0, dtype="uint8")
    return fine.reshape(shape[0], k, shape[1], k).mean(axis=(1, 3))


def _roof_routing(walls: np.ndarray, open_cells: np.ndarray) -> np.ndarray:
    """For each wall cell (in `flatnonzero` order), the flat index of the nearest open cell."""
    if not walls.any():
        return np.zeros(0, np.int64)
    if not open_cells.any():
        raise FloodInputError("the buildings cover every cell of the DEM; nothing is left for water to stand on")
    _, idx = ndimage.distance_transform_edt(~open_cells, return_indices=True)
    jj, ii = idx[0][walls], idx[1][walls]
    return (jj * walls.shape[1] + ii).astype(np.int64)


def loss_field(value: LossLike, name: str, shape: tuple[int, int], transform: Affine, crs: CRS,
               field_name: str | None = None) -> np.ndarray:
    """A loss rate per cell (mm/h) from a number, a raster, or a vector layer with the rate in `field_name`.

    Raises:
        FloodInputError: a negative rate, an unreadable file, or a layer without the field.
    """
    if value is None:
        return np.zeros(shape)
    if isinstance(value, int | float):
        if not np.isfinite(value) or value < 0:
            raise FloodInputError(f"{name} {value} mm/h must be a number >= 0")
        return np.full(shape, float(value))
    p = Path(value)
    if not p.exists():
        raise FloodInputError(f"{name} file {p} does not exist (give a rate in mm/h, a raster or a vector layer)")
    if p.suffix.lower() in (".tif", ".tiff", ".vrt", ".img", ".asc"):
        out = np.full(shape, np.nan)
        with rasterio.open(p) as src:
            if src.crs is None:
                raise FloodInputError(f"{name} raster {p} declares no CRS")
            rasterio.warp.reproject(rasterio.band(src, 1), out, dst_transform=transform, dst_crs=crs,
                                    dst_nodata=np.nan, resampling=Resampling.average)
    else:
        import geopandas as gpd

        try:
            gdf = gpd.read_file(p)
        except Exception as exc:  # pyogrio raises several kinds; the message names them
            raise FloodInputError(f"cannot read {name} layer {p}: {exc}") from exc
        fname = field_name or f"{name}_mm_h"
        if fname not in gdf.columns and name == "infiltration" and "landcover" in gdf.columns:
            known = gdf["landcover"].astype(str).str.strip().str.lower()
            unknown = sorted(set(known) - set(LANDCOVER_INFILTRATION))
            if unknown:
                raise FloodInputError(f"infiltration layer {p}: land cover {', '.join(unknown[:5])} is not one of "
                                      f"{', '.join(sorted(LANDCOVER_INFILTRATION))}; give `infiltration_mm_h` "
                                      f"per polygon instead")
            gdf = gdf.assign(**{fname: known.map(LANDCOVER_INFILTRATION).astype(float)})
        if fname not in gdf.columns:
            raise FloodInputError(f"{name} layer {p} has no field {fname!r} (the rate in mm/h per polygon); "
                                  f"fields: {', '.join(c for c in gdf.columns if c != gdf.geometry.name)}")
        if gdf.crs is None:
            raise FloodInputError(f"{name} layer {p} declares no CRS")
        gdf = gdf.to_crs(crs)
        out = rasterio.features.rasterize(((g, float(v)) for g, v in zip(gdf.geometry, gdf[fname], strict=True)
                                           if g is not None and np.isfinite(v)),
                                          out_shape=shape, transform=transform, fill=np.nan, dtype="float64")
    out = np.nan_to_num(out, nan=0.0)
    if (out < 0).any():
        raise FloodInputError(f"{name} {p} has negative rates (min {out.min():g} mm/h); rates must be >= 0")
    return out


def prepare_grid(dem: str | os.PathLike[str], *, buildings: str | os.PathLike[str] | None = None,
                 building_mode: str = "walls", resolution: float | None = None,
                 bbox: tuple[float, float, float, float] | None = None, manning: float | str = 0.035,
                 drainage_mm_h: LossLike = 0.0, infiltration_mm_h: LossLike = 0.0, dem_crs: str | None = None,
                 fill_holes_px: int = 16, outlets: str | os.PathLike[str] | None = None) -> FloodGrid:
    """Read a DEM, burn the buildings in and lay out losses and roughness.

    Args:
        dem: the DEM (any GDAL raster). One in a geographic CRS (EPSG:4490, 4326, ...) is reprojected (bilinear,
            square cells about as large as its own) to the local projected CRS of its centre: the CGCS2000 3-degree
            Gauss-Krüger zone in China (EPSG:4534-4554), the UTM zone on its own datum elsewhere
            (`cim.sources.crs.local_projected_crs`); the grid and every output are in that CRS.
        buildings: footprints (any vector format; reprojected to the DEM's CRS).
        building_mode: "walls" or "porosity" (module docstring).
        resolution: average the DEM onto cells of this size (m) first (faster, coarser runs).
        bbox: (left, bottom, right, top) in the DEM's CRS (lon/lat for a geographic DEM): run on this part only.
        manning: Manning's n (s m^-1/3) everywhere, or a raster of it.
        drainage_mm_h: drainage capacity (number, raster, vector layer with `drainage_mm_h`).
        infiltration_mm_h: infiltration capacity (number, raster, vector layer with `infiltration_mm_h`, or with a
            `landcover` class: `LANDCOVER_INFILTRATION`).
        dem_crs: the DEM's CRS when the file declares none.
        fill_holes_px: nodata holes up to this many cells are interpolated (dropouts); larger ones stay outside.
        outlets: polygons of water bodies that take the water reaching them (rivers, lakes: the outfalls of the
            city's drainage): their cells leave the grid and, with open boundaries, water flows out into them.

    Raises:
        FloodInputError / InputError / CRSError: the input named in the message is unusable.
    """
    if building_mode not in ("walls", "porosity"):
        raise FloodInputError(f"building_mode {building_mode!r} must be 'walls' or 'porosity'")
    try:
        g = read_dem(dem, dem_crs)
    except CRSError as exc:
        raise FloodInputError(str(exc)) from exc
    t = g.transform
    if t.b != 0 or t.d != 0 or t.e >= 0:
        raise FloodInputError(f"DEM {dem} is rotated or south-up ({tuple(t)[:6]}); warp it north-up first")
    z, transform, crs = g.heights, t, g.crs
    if bbox is not None:
        z, transform = _crop(z, transform, bbox, str(dem))
    z = fill_small_holes(z, fill_holes_px)
    if crs.is_geographic:  # the solver needs square metres: a local projected CRS (the docstring)
        z, transform, crs = _to_projected(z, transform, crs)
    if resolution is not None:
        if not resolution > 0:
            raise FloodInputError(f"resolution {resolution} m must be > 0")
        if resolution > abs(transform.a) * 1.0001:
            z, transform = _resample_dem(z, transform, crs, float(resolution))
    if not np.isfinite(z).any():
        raise InputError(f"DEM {dem} has no valid height in the area to model")
    shape = z.shape
    info: dict[str, Any] = {}
    outlet_cells = 0
    if outlets is not None:
        ny, nx = shape
        bounds = (transform.c, transform.f + ny * transform.e, transform.c + nx * transform.a, transform.f)
        ogeoms, _ = _footprint_geoms(outlets, crs, bounds, what="outlets")
        mask = _coverage(ogeoms, shape, transform, "walls") > 0
        outlet_cells = int((mask & np.isfinite(z)).sum())
        z = np.where(mask, np.nan, z)
    cover = np.zeros(shape)
    if buildings is not None:
        ny, nx = shape
        bounds = (transform.c, transform.f + ny * transform.e, transform.c + nx * transform.a, transform.f)
        geoms, info = _footprint_geoms(buildings, crs, bounds)
        cover = _coverage(geoms, shape, transform, building_mode)
        info["mode"] = building_mode
    valid = np.isfinite(z)
    phi = np.where(valid, 1.0 - cover, 0.0)
    phi[phi < MIN_POROSITY] = 0.0
    walls = valid & (phi == 0)
    open_cells = valid & ~walls
    roof_target = _roof_routing(walls, open_cells)
    area = abs(transform.a * transform.e)
    rain_area = np.where(open_cells, area, 0.0)
    if roof_target.size:
        np.add.at(rain_area.ravel(), roof_target, area)
    if isinstance(manning, int | float):
        if not manning > 0:
            raise FloodInputError(f"manning {manning} must be > 0 (urban surfaces: 0.013-0.05)")
        n = np.full(shape, float(manning))
    else:
        n = loss_field(manning, "manning", shape, transform, crs)
        if (n[valid] <= 0).any():
            raise FloodInputError(f"manning raster {manning} has cells <= 0 inside the DEM")
    drain = loss_field(drainage_mm_h, "drainage", shape, transform, crs) / 3.6e6
    infil = loss_field(infiltration_mm_h, "infiltration", shape, transform, crs) / 3.6e6
    if outlets is not None:
        info = {**info, "outlets": {"file": str(outlets), "cells": outlet_cells}}
    return FloodGrid(z, phi, walls, rain_area, roof_target, n, drain, infil, transform, crs, info, str(dem),
                     None if crs is g.crs else g.crs)
