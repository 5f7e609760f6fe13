"""Encoders shared by the planning results: GeoJSON in lon/lat, layers in the store, GeoTIFF rasters.

Results hold coordinates in the scene's projected CRS; they are encoded at the edge: GeoJSON (RFC 7946, CRS84
lon/lat) for the HTTP API and the viewer, a layer in the DuckDB store (written through `LayerStore.import_file`, so
the import rules, versions and catalogue apply), or a GeoTIFF in the scene's CRS.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from rasterio.transform import from_origin

from cim.errors import InputError, OutputExistsError
from cim.files import apply_umask
from layers.values import json_value

DEFAULT_THEME = "planning_control/development_evaluation"  # 规划管控 / 开发评价


def json_data(value: Any) -> Any:
    """A result's value as JSON data: lists, tuples, arrays and dicts stay JSON arrays and objects (a building's
    failing floors, a window's causes) with their items converted alike; every other value goes through
    `layers.values.json_value`, the store's rule (None/NaN/NaT/NA -> null, numpy scalars -> Python, dates ISO 8601)."""
    if isinstance(value, dict):
        return {str(k): json_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_data(v) for v in value]
    return json_value(value)


def json_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of a frame as JSON objects (`json_data` of every value)."""
    return [{str(k): json_data(v) for k, v in rec.items()} for rec in df.to_dict("records")]


def geojson(gdf: gpd.GeoDataFrame, precision: int = 7) -> dict[str, Any]:
    """A GeoJSON FeatureCollection in lon/lat of a GeoDataFrame (any CRS)."""
    ll = gdf.to_crs("OGC:CRS84") if gdf.crs is not None else gdf
    geoms = shapely.set_precision(ll.geometry.to_numpy(), 10.0 ** -precision) if precision else ll.geometry
    cols = [c for c in ll.columns if c != ll.geometry.name]
    records = ll[cols].to_dict("records")
    feats = []
    for g, rec in zip(geoms, records):
        feats.append({"type": "Feature", "geometry": shapely.geometry.mapping(g) if g is not None else None,
                      "properties": {str(k): json_data(v) for k, v in rec.items()}})
    return {"type": "FeatureCollection", "features": feats}


def write_layer(gdf: gpd.GeoDataFrame, store: Any, name: str, *, theme: str = DEFAULT_THEME,
                title: str | None = None, security: str = "internal", new_version: bool = False) -> Any:
    """Import a result as a layer of a store (an open `layers.LayerStore`, or a path to one).

    Returns the import report. Raises the store's errors (`LayerExistsError` when the layer exists and
    `new_version` is False).
    """
    from layers import LayerStore

    if len(gdf) == 0:
        raise InputError(f"the result for layer {name!r} is empty: nothing to store")
    with tempfile.TemporaryDirectory(prefix="cim-planning-") as tmp:
        path = Path(tmp) / f"{name}.parquet"
        out = gdf.copy()
        for c in out.columns:
            if c != out.geometry.name and out[c].dtype == object:
                out[c] = out[c].map(lambda v: None if v is None else str(v))
        out.to_parquet(path)
        if isinstance(store, (str, os.PathLike)):
            with LayerStore(store) as s:
                return s.import_file(path, name, theme=theme, title=title, security=security,
                                     new_version=new_version)
        return store.import_file(path, name, theme=theme, title=title, security=security, new_version=new_version)


def write_raster(path: str | os.PathLike[str], values: np.ndarray, transform: Any, crs: Any, *,
                 nodata: float = -9999.0, overwrite: bool = False, description: str = "") -> Path:
    """A float32 single-band GeoTIFF (deflate), NaN written as `nodata`; written to a temp name and renamed."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise OutputExistsError(f"{p} exists; pass overwrite=True (--overwrite) to replace it")
    arr = np.where(np.isfinite(values), values, nodata).astype(np.float32)
    profile = {"driver": "GTiff", "width": arr.shape[1], "height": arr.shape[0], "count": 1, "dtype": "float32",
               "crs": crs, "transform": transform, "nodata": nodata, "compress": "deflate"}
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=p.name + ".", suffix=".tmp", dir=p.parent)
    apply_umask(fd)  # mkstemp makes 0600: the raster gets the mode the user's umask gives new files
    os.close(fd)
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(arr[None])
            if description:
                dst.set_band_description(1, description)
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p


def grid(bounds: tuple[float, float, float, float], cell: float) -> tuple[np.ndarray, np.ndarray, Any]:
    """Cell centres of a north-up grid over `bounds` (x (rows, cols), y (rows, cols), affine transform)."""
    if not cell > 0:
        raise InputError(f"cell size {cell!r} must be positive (metres)")
    minx, miny, maxx, maxy = bounds
    cols = max(1, int(math.ceil((maxx - minx) / cell)))
    rows = max(1, int(math.ceil((maxy - miny) / cell)))
    if rows * cols > 25_000_000:
        raise InputError(f"a {cols} x {rows} grid at {cell} m is too large (more than 25 million cells); "
                         f"use a larger cell or a smaller area")
    transform = from_origin(minx, maxy, cell, cell)
    cc, rr = np.meshgrid(np.arange(cols), np.arange(rows))
    x = minx + (cc + 0.5) * cell
    y = maxy - (rr + 0.5) * cell
    return x, y, transform


__all__ = ["DEFAULT_THEME", "geojson", "grid", "write_layer", "write_raster"]
