"""Writing a flood run's outputs: COGs, inundation polygons by depth class, the rain that was used.

Rasters are Cloud-Optimized GeoTIFFs (float32, deflate with the floating-point predictor, 256 px tiles, internal
overviews) so the tile server reads them directly; depths are rounded to the millimetre (which also compresses
them well). NaN is nodata: outside the DEM and on walls; dry cells are 0.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
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


class OutputWriter:
    """Writes files on one background thread while the caller computes on: a dynamic run hands each output step's
    rasters to it and steps on (`cim.analysis.flood.run`).

    At most `backlog` jobs wait (`submit` blocks beyond that), so a slow disk holds the run back instead of filling
    memory. The thread runs at the lowest priority (`nice` 19, on Linux, where nice is per thread): it takes what
    the solver's threads leave idle between their parallel passes instead of taking turns with them. Use it as a
    context manager: leaving the block normally waits for every job and raises the first job's error; leaving it by
    an exception drops the waiting jobs and waits for the running one, so nothing is written after it (the run then
    deletes its temporary folder).

    Args:
        backlog: jobs that may wait.
        nice: the thread's niceness (Linux); None: the caller's.
    """

    def __init__(self, backlog: int = 4, nice: int | None = 19) -> None:
        self._jobs: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.Queue(max(1, backlog))
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._nice = nice
        self._thread = threading.Thread(target=self._work, name="flood-output-writer", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        if self._nice is not None and sys.platform.startswith("linux"):
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._nice)
            except OSError:  # pragma: no cover - a sandbox without setpriority: run at the caller's priority
                pass
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if self._error is not None or self._stop.is_set():
                continue
            fn, args = job
            try:
                fn(*args)
            except BaseException as exc:  # handed to the caller by submit/close
                self._error = exc

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue `fn(*args)`; raises the error of an earlier job, if one failed."""
        self._raise()
        self._jobs.put((fn, args))

    def close(self) -> None:
        """Wait for every queued job; raise the first job's error."""
        self._jobs.put(None)
        self._thread.join()
        self._raise()

    def cancel(self) -> None:
        """Drop the waiting jobs and wait for the running one (its error, if any, is dropped too)."""
        self._stop.set()
        while True:
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                break
        self._jobs.put(None)
        self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def __enter__(self) -> OutputWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self.cancel()


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
