"""Raster sources of the build steps: DEM grids (heights, nodata, sampling) and orthophoto textures.

A DEM sample is a pixel centre: sample (col, row) sits at `transform @ (col + 0.5, row + 0.5)` and carries the
pixel's value. Nodata (the declared nodata value, NaN, an internal mask) is NaN in every array handed out.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import rasterio
import rasterio.features
import rasterio.fill
import rasterio.warp
import rasterio.windows
import shapely
from affine import Affine
from pyproj import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.vrt import WarpedVRT
from scipy import ndimage

from cim.errors import CimWarning, CRSError, InputError, InputNotFoundError
from cim.sources.crs import crs_hint, horizontal_crs, parse_crs, transformer
from cim.sources.limits import check_raster_size

#: Colour of terrain without orthophoto coverage (RGB, 0-255): a neutral, slightly warm grey.
NEUTRAL_RGB = (158, 154, 140)


@dataclass
class DemGrid:
    """A DEM read into memory.

    Attributes:
        heights: (rows, cols) float64 heights, NaN where nodata.
        transform: pixel-corner affine transform (pixel -> CRS).
        crs: the CRS of the DEM (declared or given).
        bounds: (left, bottom, right, top) of the raster in its CRS.
        path: the file it came from.
    """

    heights: np.ndarray
    transform: Affine
    crs: CRS
    bounds: tuple[float, float, float, float]
    path: str

    def sample_xy(self, col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CRS coordinates of samples (pixel centres) given by float64 column/row indices of any shape."""
        c = np.asarray(col, np.float64) + 0.5
        r = np.asarray(row, np.float64) + 0.5
        t = self.transform
        return t.a * c + t.b * r + t.c, t.d * c + t.e * r + t.f


def _open(path: str | os.PathLike[str], what: str) -> Any:
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{what} {p} does not exist")
    try:
        return rasterio.open(p)
    except rasterio.errors.RasterioError as exc:
        raise InputError(f"{what} {p} is not a raster GDAL can read: {exc}") from exc


def _read_failed(what: str, path: str | os.PathLike[str], exc: BaseException) -> InputError:
    """The error of a raster whose header opened but whose pixels cannot be read (a truncated or corrupt file)."""
    return InputError(f"{what} {path}: its pixels cannot be read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                      f"is the file complete? (gdalinfo -checksum {path})")


def _dem_crs(src: Any, override: str | CRS | None, path: str) -> CRS:
    if override is not None:
        return horizontal_crs(parse_crs(override, what="crs option"), "crs option")
    if src.crs is None:
        b = src.bounds
        raise CRSError(f"DEM {path} declares no CRS; "
                       + crs_hint(sample_xy=((b.left + b.right) / 2, (b.bottom + b.top) / 2)))
    return horizontal_crs(parse_crs(src.crs.to_wkt(), what=path), path)


def read_dem(path: str | os.PathLike[str], crs: str | CRS | None = None) -> DemGrid:
    """Read band 1 of a DEM as float64 heights with NaN for nodata.

    Args:
        path: the DEM file.
        crs: the CRS to use instead of the file's (required when the file declares none).

    Raises:
        InputNotFoundError: the file does not exist.
        InputError: the file is not a readable raster or has no valid height.
        CRSError: neither the file nor `crs` gives a CRS.
    """
    with _open(path, "DEM") as src:
        dem_crs = _dem_crs(src, crs, str(path))
        # the band, its mask and the float64 copy are in memory at once
        check_raster_size(path, src.width, src.height, 1, np.dtype(src.dtypes[0]).itemsize + 1 + 8)
        try:
            band = src.read(1, masked=True)
        except rasterio.errors.RasterioError as exc:
            raise _read_failed("DEM", path, exc) from exc
        heights = np.ma.filled(band.astype(np.float64), np.nan)
        heights[~np.isfinite(heights)] = np.nan
        grid = DemGrid(heights, src.transform, dem_crs, tuple(src.bounds), str(path))
    if not np.isfinite(grid.heights).any():
        raise InputError(f"DEM {path} has no valid height (every cell is nodata)")
    return grid


def fill_small_holes(heights: np.ndarray, max_pixels: int) -> np.ndarray:
    """Fill nodata holes of at most `max_pixels` cells that do not touch the raster's edge.

    Larger holes and nodata along the edge stay NaN: they are real gaps, not dropouts.

    Args:
        heights: (rows, cols) float64, NaN where nodata.
        max_pixels: the largest hole (8-connected cells) to fill.

    Returns:
        (rows, cols) float64, a copy with the small holes filled by inverse-distance interpolation.
    """
    out = heights.copy()
    nodata = ~np.isfinite(out)
    if max_pixels <= 0 or not nodata.any():
        return out
    labels, count = ndimage.label(nodata, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    small = sizes <= max_pixels
    small[0] = False
    small[edge] = False
    to_fill = small[labels]
    if not to_fill.any():
        return out
    reach = int(np.ceil(np.sqrt(max_pixels))) + 2
    filled = rasterio.fill.fillnodata(
        np.where(nodata, 0.0, out),
        mask=(~to_fill & ~nodata).astype(np.uint8),
        max_search_distance=reach,
        smoothing_iterations=0,
    )
    out[to_fill] = filled[to_fill]
    return out


class DemSampler:
    """Heights of a DEM at arbitrary points and under footprints (for the buildings step).

    Cheap to construct: the DEM is read on first use. Use as a context manager or call `close()`.

    Args:
        dem_path: the DEM file.
        crs: the CRS to use instead of the file's (required when the file declares none).
    """

    def __init__(self, dem_path: str | os.PathLike[str], crs: str | CRS | None = None) -> None:
        self.path = Path(dem_path)
        self._crs_override = crs
        self._grid: DemGrid | None = None

    def __enter__(self) -> DemSampler:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the heights held in memory."""
        self._grid = None

    @property
    def grid(self) -> DemGrid:
        """The DEM, read on first access."""
        if self._grid is None:
            self._grid = read_dem(self.path, self._crs_override)
        return self._grid

    @property
    def crs(self) -> CRS:
        return self.grid.crs

    def heights(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Bilinear heights between sample centres (edge cells extend to the raster's border).

        Args:
            x: (n,) float64 coordinates in the DEM's CRS.
            y: (n,) float64 coordinates in the DEM's CRS.

        Returns:
            (n,) float64 heights; NaN outside the raster or where a sample that carries weight is nodata.
        """
        g = self.grid
        h = g.heights
        rows, cols = h.shape
        col, row = ~g.transform @ (np.asarray(x, np.float64), np.asarray(y, np.float64))
        col = np.atleast_1d(np.asarray(col, np.float64)) - 0.5
        row = np.atleast_1d(np.asarray(row, np.float64)) - 0.5
        inside = (col >= -0.5) & (col <= cols - 0.5) & (row >= -0.5) & (row <= rows - 0.5)
        col = np.clip(np.nan_to_num(col), 0.0, cols - 1.0)
        row = np.clip(np.nan_to_num(row), 0.0, rows - 1.0)
        c0 = np.minimum(np.floor(col).astype(np.int64), max(cols - 2, 0))
        r0 = np.minimum(np.floor(row).astype(np.int64), max(rows - 2, 0))
        c1 = np.minimum(c0 + 1, cols - 1)
        r1 = np.minimum(r0 + 1, rows - 1)
        fc, fr = col - c0, row - r0
        out = np.zeros(col.shape)
        bad = ~inside
        for rr, cc, w in (
            (r0, c0, (1 - fc) * (1 - fr)),
            (r0, c1, fc * (1 - fr)),
            (r1, c0, (1 - fc) * fr),
            (r1, c1, fc * fr),
        ):
            v = h[rr, cc]
            used = w > 0
            bad |= used & ~np.isfinite(v)
            out += np.where(used & np.isfinite(v), v * w, 0.0)
        out[bad] = np.nan
        return out

    def samples_in(self, geometry: Any) -> np.ndarray:
        """The valid DEM values of the samples whose centres fall inside a polygon (else of touched cells).

        Args:
            geometry: a shapely (multi)polygon in the DEM's CRS.

        Returns:
            (k,) float64 heights, possibly empty (outside the DEM or all nodata).
        """
        g = self.grid
        rows, cols = g.heights.shape
        left, bottom, right, top = geometry.bounds
        cs, rs = ~g.transform @ (np.array([left, right, left, right]), np.array([bottom, bottom, top, top]))
        c0, r0 = max(int(np.floor(cs.min())) - 1, 0), max(int(np.floor(rs.min())) - 1, 0)
        c1, r1 = min(int(np.ceil(cs.max())) + 1, cols), min(int(np.ceil(rs.max())) + 1, rows)
        if c1 <= c0 or r1 <= r0:
            return np.empty(0)
        sub = g.heights[r0:r1, c0:c1]
        sub_t = g.transform @ Affine.translation(c0, r0)
        for all_touched in (False, True):
            inside = rasterio.features.geometry_mask(
                [geometry], out_shape=sub.shape, transform=sub_t, invert=True, all_touched=all_touched
            )
            values = sub[inside & np.isfinite(sub)]
            if values.size:
                return values
        return values


class OrthoReader:
    """Orthophoto textures resampled onto any grid (reprojected when the CRSs differ).

    Alpha and nodata become the neutral colour `NEUTRAL_RGB` (or what the caller fills them with). 8-bit RGB(A) or
    grey; 16-bit is scaled down.

    Args:
        path: the orthophoto file.
        crs: the CRS to assume when the file declares none (default: the target grid's CRS, with a warning).
    """

    def __init__(self, path: str | os.PathLike[str], crs: str | CRS | None = None) -> None:
        self.path = Path(path)
        self._crs_override = crs
        self._src: Any = None
        self._overviews: dict[int, Any] = {}
        self._pixel_in: dict[str, float] = {}

    def __enter__(self) -> OrthoReader:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        if self._src is None:
            self._src = _open(self.path, "orthophoto")

    def close(self) -> None:
        for ds in [self._src, *self._overviews.values()]:
            if ds is not None:
                ds.close()
        self._src = None
        self._overviews = {}

    def _bands(self) -> tuple[list[int], int | None]:
        src = self._src
        interp = list(src.colorinterp)
        alpha = next((i + 1 for i, ci in enumerate(interp) if ci == ColorInterp.alpha), None)
        colour = [i + 1 for i in range(src.count) if i + 1 != alpha]
        if not colour:
            raise InputError(f"orthophoto {self.path} has no colour band")
        return (colour[:3] if len(colour) >= 3 else [colour[0]] * 3), alpha

    def _src_crs(self, target: CRS) -> CRS:
        if self._crs_override is not None:
            return horizontal_crs(parse_crs(self._crs_override, what="orthophoto crs"), "orthophoto crs")
        if self._src.crs is None:
            warnings.warn(
                f"orthophoto {self.path} declares no CRS; assuming the DEM's ({target.name})",
                CimWarning,
                stacklevel=3,
            )
            return target
        return horizontal_crs(parse_crs(self._src.crs.to_wkt(), what=str(self.path)), str(self.path))

    def _pixel_size_in(self, src_crs: CRS, crs: CRS) -> float:
        """The ortho's pixel size expressed in the target CRS's units (from its bounds; nan when unknown)."""
        key = src_crs.to_wkt() + "|" + crs.to_wkt()
        if key not in self._pixel_in:
            src = self._src
            try:
                left, _, right, _ = rasterio.warp.transform_bounds(src_crs, crs, *src.bounds)
                self._pixel_in[key] = abs(right - left) / max(src.width, 1)
            except Exception:  # noqa: BLE001 - a CRS pair without a bounds transform: no overview, bilinear
                self._pixel_in[key] = float("nan")
        return self._pixel_in[key]

    def _level(self, factor: float, band: int) -> tuple[Any, float]:
        """The overview (or full-resolution) dataset with the largest pixels not coarser than the target's."""
        usable = [f for f in self._src.overviews(band) if f <= factor]
        if not usable:
            return self._src, 1.0
        best = max(usable)
        if best not in self._overviews:
            level = self._src.overviews(band).index(best)
            self._overviews[best] = rasterio.open(self.path, overview_level=level)
        return self._overviews[best], float(best)

    def pixel_size(self, crs: CRS) -> float:
        """The orthophoto's pixel size (at full resolution) in the units of `crs`; nan when it cannot be told."""
        self.open()
        return self._pixel_size_in(self._src_crs(crs), crs)

    def texture(self, transform: Affine, crs: CRS, width: int, height: int,
                fill: np.ndarray | Callable[[], np.ndarray] | None = None) -> np.ndarray:
        """The orthophoto on a target grid, read from the overview that fits the target's resolution.

        Args:
            transform: pixel-corner affine of the target grid (in `crs`).
            crs: the target CRS.
            width: target columns.
            height: target rows.
            fill: (height, width, 3) uint8 drawn where the ortho has no data (the terrain's hillshade), or a
                function returning it (called only when some pixel has no data); None: `NEUTRAL_RGB` there.

        Returns:
            (height, width, 3) uint8 RGB, row 0 at the grid's first row; `fill` (or `NEUTRAL_RGB`) where the ortho
            has no data.
        """
        self.open()
        colour, alpha = self._bands()
        src_crs = self._src_crs(crs)
        factor = float(np.hypot(transform.a, transform.d)) / self._pixel_size_in(src_crs, crs)
        src, used = self._level(factor if np.isfinite(factor) else 1.0, colour[0])
        indexes = sorted(set(colour)) + ([alpha] if alpha else [])
        dst = np.full((len(indexes), height, width), np.nan, np.float32)
        # average when the target is much coarser than the source (no aliasing), bilinear otherwise
        resampling = Resampling.average if factor / used > 1.5 else Resampling.bilinear
        try:
            rasterio.warp.reproject(
                source=rasterio.band(src, indexes),
                destination=dst,
                src_transform=src.transform,
                src_crs=src_crs,
                src_nodata=src.nodata,
                dst_transform=transform,
                dst_crs=crs,
                dst_nodata=np.nan,
                resampling=resampling,
            )
        except rasterio.errors.RasterioError as exc:
            raise _read_failed("orthophoto", self.path, exc) from exc
        planes = {b: dst[i] for i, b in enumerate(indexes)}
        finite = {b: np.isfinite(planes[b]) for b in set(colour)}
        missing = ~np.logical_and.reduce([finite[b] for b in colour])
        if alpha:
            missing |= ~(planes[alpha] >= 128)
        scale = 1.0 / 257.0 if np.dtype(src.dtypes[colour[0] - 1]).itemsize == 2 else 1.0
        out = np.empty((height, width, 3), np.uint8)
        for i, b in enumerate(colour):  # plane by plane (contiguous); a texel without data is drawn over below
            v = (planes[b] * scale if scale != 1.0 else planes[b]) + np.float32(0.5)
            v[~finite[b]] = 0.0
            out[..., i] = np.clip(v, 0, 255, out=v)
        if missing.any():
            drawn = fill() if callable(fill) else fill
            out[missing] = NEUTRAL_RGB if drawn is None else drawn[missing]
        return out


__all__ = ["NEUTRAL_RGB", "DemGrid", "DemSampler", "OrthoReader", "fill_small_holes", "read_dem"]


# ------------------------------------------------------------------- raster windows under footprints
def polygons_geojson(geoms: np.ndarray) -> list[dict[str, Any]]:
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


def open_raster(path: str | os.PathLike[str]) -> rasterio.io.DatasetReader:
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"raster {p} does not exist")
    try:
        src = rasterio.open(p)
    except rasterio.errors.RasterioError as exc:
        raise InputError(f"cannot read raster {p}: {exc}") from exc
    if src.crs is None:
        b = src.bounds
        src.close()
        hint = crs_hint(sample_xy=((b.left + b.right) / 2, (b.bottom + b.top) / 2), option="-a_srs")
        raise CRSError(f"raster {p} declares no CRS; assign the one it was made in with gdal_edit.py -a_srs EPSG:n "
                       f"{p} ({hint.replace('pass ', '')})")
    return src


def raster_crs(path: str | os.PathLike[str]) -> CRS:
    """The CRS a raster declares (its horizontal part when compound).

    Raises:
        InputNotFoundError, InputError: no such file, not a raster.
        CRSError: the raster declares no CRS.
    """
    with open_raster(path) as src:
        return parse_crs(src.crs.to_wkt(), what=str(path))


def window_over(src: rasterio.io.DatasetReader, src_crs: CRS, crs: CRS,
                 bounds: tuple[float, float, float, float]) -> rasterio.windows.Window | None:
    """The raster window (one cell of margin) covering `bounds` given in `crs`; None when they do not meet."""
    if not src_crs.equals(crs):
        t = transformer(crs, src_crs)
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


def read_on_grid(path: str | os.PathLike[str], like: rasterio.io.DatasetReader,
                  window: rasterio.windows.Window) -> np.ndarray:
    """A raster read on `like`'s grid over `window` (resampled when its grid differs), float32 with NaN nodata."""
    with open_raster(path) as src:
        try:
            if src.crs == like.crs and src.transform == like.transform and src.shape == like.shape:
                data = src.read(1, window=window, masked=True)
            else:
                with WarpedVRT(src, crs=like.crs, transform=like.transform, width=like.width, height=like.height,
                               resampling=rasterio.enums.Resampling.bilinear) as vrt:
                    data = vrt.read(1, window=window, masked=True)
        except rasterio.errors.RasterioError as exc:
            raise _read_failed("raster", path, exc) from exc
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

