"""How much of the build extent each input covers, so that an input of another place is refused, not used silently.

The build extent is the DEM's valid area, sampled on a grid of at most `GRID` x `GRID` cell centres (a decimated
read). A raster input (orthophoto, DSM) covers the share of those samples that fall on its own valid data (its
mask, read decimated too, in its own CRS); vector inputs (footprints, a city model, an oblique production) are
measured the other way round: the share of their extent (or of their features) that lies on the DEM.

`check_coverage` turns a measure into the build's decision: none -> `CoverageError` naming both places in lon/lat
and what to check; partial -> a `warning` line with the covered share.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors
from affine import Affine
from pyproj import CRS

from cim.errors import InputError
from cim.sources.crs import parse_crs, transformer

GRID = 128  # samples per side of the build extent and of a raster's mask
FULL = 0.999  # a share at least this is "covered" (grid sampling cannot tell the last edge cells apart)


class CoverageError(InputError):
    """An input does not overlap the build extent at all."""


@dataclass
class Extent:
    """The build extent: sample points of the DEM's valid area.

    Attributes:
        path: the DEM.
        crs: its CRS (horizontal part).
        x, y: (m,) float64 sample points (valid DEM cell centres of a decimated grid).
        mask: (r, c) bool valid cells of the decimated grid; `transform` maps (col, row) to the DEM's CRS.
        lonlat: (west, south, east, north) of the samples in degrees.
    """

    path: Path
    crs: CRS
    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    transform: Affine
    lonlat: tuple[float, float, float, float]

    def contains(self, x: np.ndarray, y: np.ndarray, crs: CRS) -> np.ndarray:
        """(n,) bool: points (in `crs`) that fall on the DEM's valid area."""
        px, py = transformer(crs, self.crs).transform(np.asarray(x, np.float64), np.asarray(y, np.float64))
        return _on_mask(self.mask, self.transform, np.asarray(px), np.asarray(py))


def _on_mask(mask: np.ndarray, tf: Affine, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    col, row = ~tf @ (x, y)
    ok = np.isfinite(col) & np.isfinite(row)
    c = np.floor(np.where(ok, col, -1)).astype(np.int64)
    r = np.floor(np.where(ok, row, -1)).astype(np.int64)
    inside = ok & (c >= 0) & (r >= 0) & (c < mask.shape[1]) & (r < mask.shape[0])
    out = np.zeros(len(c), bool)
    out[inside] = mask[r[inside], c[inside]]
    return out


def _decimated_mask(src: rasterio.io.DatasetReader, what: str) -> tuple[np.ndarray, Affine]:
    """The valid-data mask on a grid of at most GRID x GRID cells, and that grid's transform.

    Raises:
        InputError: the pixels cannot be read (a truncated or corrupt file; the message names it).
    """
    from cim.sources.raster import _read_failed

    rows, cols = min(src.height, GRID), min(src.width, GRID)
    try:
        mask = src.dataset_mask(out_shape=(rows, cols)) > 0
        if src.count >= 1 and src.nodata is None and not any(np.issubdtype(np.dtype(d), np.integer)
                                                             for d in src.dtypes):
            # float rasters often mark holes with NaN without declaring nodata
            band = src.read(1, out_shape=(rows, cols))
            mask &= np.isfinite(band)
    except rasterio.errors.RasterioError as exc:
        raise _read_failed(what, src.name, exc) from exc
    tf = src.transform * Affine.scale(src.width / cols, src.height / rows)
    return mask, tf


def _open(path: str | os.PathLike[str], what: str) -> rasterio.io.DatasetReader:
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"{what} {path} is not a raster GDAL can read: {exc}") from exc


def build_extent(dem: str | os.PathLike[str], crs: CRS | str | None = None) -> Extent:
    """The build extent of a DEM (its valid area), sampled for coverage measures.

    Args:
        dem: the DEM file.
        crs: the DEM's CRS when the file declares none (or a wrong one).
    """
    with _open(dem, "DEM") as src:
        dem_crs = parse_crs(crs if crs is not None else src.crs.to_wkt(), what=str(dem))
        mask, tf = _decimated_mask(src, "DEM")
    if dem_crs.is_compound:
        dem_crs = dem_crs.sub_crs_list[0]
    r, c = np.nonzero(mask)
    x, y = tf @ (c + 0.5, r + 0.5)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    lon, lat = transformer(dem_crs, "EPSG:4326").transform(x, y) if len(x) else (np.zeros(1), np.zeros(1))
    return Extent(Path(dem), dem_crs, x, y, mask, tf,
                  (float(np.min(lon)), float(np.min(lat)), float(np.max(lon)), float(np.max(lat))))


def raster_coverage(path: str | os.PathLike[str], extent: Extent, what: str = "raster") -> tuple[float, tuple]:
    """The share of the build extent on which a raster has valid data, and the raster's lon/lat bounds.

    Returns:
        (fraction in [0, 1], (west, south, east, north) degrees of the raster).
    """
    with _open(path, what) as src:
        if src.crs is None:
            return 1.0, extent.lonlat  # a CRS-less raster is refused with its own message when it is read
        crs = parse_crs(src.crs.to_wkt(), what=str(path))
        if crs.is_compound:
            crs = crs.sub_crs_list[0]
        mask, tf = _decimated_mask(src, what)
        b = src.bounds
    bounds = lonlat_bounds(crs, (b.left, b.bottom, b.right, b.top))
    if not len(extent.x):
        return 0.0, bounds
    x, y = transformer(extent.crs, crs).transform(extent.x, extent.y)
    return float(_on_mask(mask, tf, np.asarray(x), np.asarray(y)).mean()), bounds


def bounds_coverage(bounds: tuple[float, float, float, float], crs: CRS, extent: Extent) -> float:
    """The share of a rectangle (in `crs`) that lies on the build extent, on a 32 x 32 grid of points."""
    gx, gy = np.meshgrid(np.linspace(bounds[0], bounds[2], 32), np.linspace(bounds[1], bounds[3], 32))
    return float(extent.contains(gx.ravel(), gy.ravel(), crs).mean())


def lonlat_bounds(crs: CRS, bounds: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """(west, south, east, north) degrees of a rectangle in `crs` (its edges sampled, so rotation is covered)."""
    t = np.linspace(0.0, 1.0, 21)
    x0, y0, x1, y1 = bounds
    xs = np.concatenate([x0 + (x1 - x0) * t, np.full(21, x1), x1 - (x1 - x0) * t, np.full(21, x0)])
    ys = np.concatenate([np.full(21, y0), y0 + (y1 - y0) * t, np.full(21, y1), y1 - (y1 - y0) * t])
    lon, lat = transformer(crs, "EPSG:4326").transform(xs, ys)
    lon, lat = np.asarray(lon), np.asarray(lat)
    ok = np.isfinite(lon) & np.isfinite(lat)
    if not ok.any():
        return (float("nan"),) * 4  # type: ignore[return-value]
    return (float(lon[ok].min()), float(lat[ok].min()), float(lon[ok].max()), float(lat[ok].max()))


def describe(bounds: tuple[float, float, float, float]) -> str:
    w, s, e, n = bounds
    if not np.isfinite([w, s, e, n]).all():
        return "outside its CRS's area of use"
    return f"lon {w:.5f}..{e:.5f}, lat {s:.5f}..{n:.5f}"


def check_coverage(option: str, path: str | os.PathLike[str], fraction: float, input_bounds: tuple,
                   extent: Extent, *, measure: str, partial: str) -> str | None:
    """Refuse an input that misses the build extent; describe one that covers it partly.

    Args:
        option: the CLI option that named the input ("--ortho").
        path: the input.
        fraction: the covered share (see `raster_coverage`, `bounds_coverage`).
        input_bounds: the input's lon/lat bounds (for the message).
        extent: the build extent.
        measure: what the share is of ("of the DEM's area", "of the footprints").
        partial: what happens to the rest, said in the warning.

    Returns:
        A warning line when the coverage is partial, else None.

    Raises:
        CoverageError: the input does not overlap the build extent.
    """
    if fraction <= 0.0:
        raise CoverageError(
            f"{option} {path} does not overlap the DEM {extent.path.name}: it lies at {describe(input_bounds)}, the "
            f"DEM at {describe(extent.lonlat)}; use inputs of the same place, and check that each file declares "
            f"the CRS it was made in (pass --crs EPSG:n for a file that declares none)")
    if fraction < FULL:
        return f"{option} {Path(path).name} covers {fraction:.0%} {measure}; {partial}"
    return None


__all__ = ["CoverageError", "Extent", "bounds_coverage", "build_extent", "check_coverage",
           "lonlat_bounds", "raster_coverage"]
