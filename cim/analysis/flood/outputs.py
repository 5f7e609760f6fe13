"""Writing a flood run's outputs: COGs, inundation polygons by depth class, the rain that was used.

Rasters are Cloud-Optimized GeoTIFFs (float32, deflate with the floating-point predictor, 256 px tiles, internal
overviews) so the tile server reads them directly; depths are rounded to the millimetre (which also compresses
them well). NaN is nodata: outside the DEM and on walls; dry cells are 0.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.features
import rasterio.shutil
from affine import Affine
from pyproj import CRS
from rasterio.io import MemoryFile

#: depth classes (m) of the inundation polygons: 0.15 is GB 51222's limit for water on a traffic lane, 0.3 a road
#: closed to traffic, 0.5 and 1.0 the usual steps of Chinese waterlogging maps
DEFAULT_CLASSES = (0.15, 0.3, 0.5, 1.0)


def write_cog(path: str | os.PathLike[str], data: np.ndarray, transform: Affine, crs: CRS, *,
              decimals: int | None = 3) -> None:
    """Write one float32 band as a COG (NaN nodata)."""
    a = np.asarray(data, np.float32)
    if decimals is not None:
        a = np.round(a, decimals)
    profile = {"driver": "GTiff", "width": a.shape[1], "height": a.shape[0], "count": 1, "dtype": "float32",
               "crs": crs, "transform": transform, "nodata": np.nan}
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(a, 1)
        with mem.open() as src:
            rasterio.shutil.copy(src, str(path), driver="COG", compress="DEFLATE", predictor=3, blocksize=256,
                                 overview_resampling="average", num_threads="ALL_CPUS")


def class_labels(classes: Sequence[float]) -> list[tuple[float, float, str]]:
    """(low, high, label) of each depth class; the last is open-ended."""
    c = list(classes)
    out = []
    for k, lo in enumerate(c):
        hi = c[k + 1] if k + 1 < len(c) else float("inf")
        out.append((lo, hi, f"{lo:.2f}-{hi:.2f} m" if np.isfinite(hi) else f">= {lo:.2f} m"))
    return out


def inundation_polygons(depth: np.ndarray, transform: Affine, crs: CRS, classes: Sequence[float]) -> Any:
    """Polygons of the areas in each depth class (a GeoDataFrame; empty when nothing reaches the first class).

    Columns: depth_class (label), min_depth_m, max_depth_m (class bounds; max NaN for the last), area_m2,
    peak_depth_m (the deepest cell inside the polygon).
    """
    import geopandas as gpd
    import shapely
    from scipy import ndimage

    d = np.nan_to_num(np.asarray(depth, np.float64), nan=0.0)
    labels = class_labels(classes)
    klass = np.zeros(d.shape, np.uint8)
    for k, (lo, _, _) in enumerate(labels):
        klass[d >= lo] = k + 1
    rows: list[dict[str, Any]] = []
    geoms = []
    cell = abs(transform.a * transform.e)
    for k, (lo, hi, label) in enumerate(labels):
        mask = klass == k + 1
        if not mask.any():
            continue
        comp, n = ndimage.label(mask)
        peaks = ndimage.maximum(d, comp, index=np.arange(1, n + 1))
        areas = ndimage.sum(mask, comp, index=np.arange(1, n + 1)) * cell
        for geom, value in rasterio.features.shapes(comp.astype(np.int32), mask=mask, transform=transform,
                                                    connectivity=4):
            i = int(value) - 1
            geoms.append(shapely.geometry.shape(geom))
            rows.append({"depth_class": label, "min_depth_m": lo, "max_depth_m": hi if np.isfinite(hi) else None,
                         "area_m2": float(areas[i]), "peak_depth_m": round(float(peaks[i]), 3)})
    gdf = gpd.GeoDataFrame(rows, geometry=geoms, crs=crs) if rows else gpd.GeoDataFrame(
        {"depth_class": [], "min_depth_m": [], "max_depth_m": [], "area_m2": [], "peak_depth_m": []},
        geometry=[], crs=crs)
    return gdf


def write_inundation(path: str | os.PathLike[str], gdf: Any) -> None:
    """Write the polygons as a GeoPackage layer `inundation`."""
    gdf.to_file(str(path), layer="inundation", driver="GPKG")


def write_rain_csv(path: str | os.PathLike[str], rows: Sequence[tuple[float, float, float]]) -> None:
    """The rain actually applied: start_min, end_min, mm_h (grid mean for gauge rain)."""
    with Path(path).open("w", encoding="utf-8") as fh:
        fh.write("start_min,end_min,mm_h\n")
        for a, b, r in rows:
            fh.write(f"{a / 60:.4f},{b / 60:.4f},{r:.4f}\n")
