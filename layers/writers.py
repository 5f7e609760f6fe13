"""Writers for exports: GeoJSON, GeoPackage (through GDAL's Arrow path), GeoParquet and CSV."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import shapely
from pyproj import CRS

if TYPE_CHECKING:
    import geopandas as gpd

from layers.errors import LayerInputError
from layers.sources import GEOM

FORMATS = ("geojson", "gpkg", "parquet", "csv")


def write_table(table: pa.Table, path: Path, fmt: str, crs: CRS, geometry_type: str, *, layer: str,
                overwrite: bool = False) -> None:
    """Write features (`fid`, attributes, `geom` WKB) to a file.

    Args:
        table: the features.
        path: output file (replaced when `overwrite`).
        fmt: geojson, gpkg, parquet or csv.
        crs: the CRS of the coordinates, written into the file's metadata.
        geometry_type: the layer's geometry type ("Polygon", "MultiPolygon Z", ...).
        layer: layer name inside a GeoPackage.
    """
    if fmt not in FORMATS:
        raise LayerInputError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if overwrite and path.exists():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        _write_geoparquet(table, path, crs)
    elif fmt == "csv":
        wkt = shapely.to_wkt(shapely.from_wkb(table.column(GEOM).to_numpy(zero_copy_only=False)), rounding_precision=-1)
        pacsv.write_csv(table.drop_columns([GEOM]).append_column("wkt", pa.array(wkt, pa.string())), path)
    else:
        import pyogrio

        base = geometry_type.replace(" Z", "")
        if fmt == "gpkg" and base.startswith("Multi"):
            table = _promote_to_multi(table, base)
        gtype = geometry_type if base != "Geometry" else "Unknown"
        driver = {"geojson": "GeoJSON", "gpkg": "GPKG"}[fmt]
        options = {"RFC7946": "NO", "WRITE_NAME": "NO"} if fmt == "geojson" else {}
        pyogrio.write_arrow(table.drop_columns(["fid"]) if fmt == "geojson" else table, str(path), layer=layer,
                            driver=driver, geometry_name=GEOM, geometry_type=gtype, crs=crs.to_wkt(),
                            layer_options=options, encoding="UTF-8" if fmt == "geojson" else None)


def _promote_to_multi(table: pa.Table, multi: str) -> pa.Table:
    geoms = shapely.from_wkb(table.column(GEOM).to_numpy(zero_copy_only=False))
    single = shapely.get_type_id(geoms) == {"MultiPoint": 0, "MultiLineString": 1, "MultiPolygon": 3}[multi]
    if single.any():
        make = {"MultiPoint": shapely.multipoints, "MultiLineString": shapely.multilinestrings,
                "MultiPolygon": shapely.multipolygons}[multi]
        idx = np.flatnonzero(single)
        geoms[idx] = make(geoms[idx], indices=np.arange(len(idx)))
    return table.set_column(table.column_names.index(GEOM), GEOM, pa.array(shapely.to_wkb(geoms), pa.binary()))


def _write_geoparquet(table: pa.Table, path: Path, crs: CRS) -> None:
    """GeoParquet 1.1 with the CRS as PROJJSON in the `geo` metadata (DuckDB's COPY would leave it out)."""
    geoms = shapely.from_wkb(table.column(GEOM).to_numpy(zero_copy_only=False))
    ids, zs = shapely.get_type_id(geoms).tolist(), shapely.has_z(geoms).tolist()
    types = sorted({_GEO_TYPES[t] + (" Z" if z else "") for t, z in zip(ids, zs, strict=True)})
    bounds = shapely.total_bounds(geoms)
    geo = {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {"geometry": {
            "encoding": "WKB",
            "geometry_types": types,
            "crs": crs.to_json_dict(),
            "bbox": [float(b) for b in bounds],
        }},
    }
    out = table.rename_columns(["geometry" if c == GEOM else c for c in table.column_names])
    out = out.replace_schema_metadata({**(out.schema.metadata or {}), b"geo": json.dumps(geo).encode()})
    pq.write_table(out, path, compression="zstd")


_GEO_TYPES = {0: "Point", 1: "LineString", 2: "LineString", 3: "Polygon", 4: "MultiPoint", 5: "MultiLineString",
              6: "MultiPolygon", 7: "GeometryCollection"}



def render_features(gdf: gpd.GeoDataFrame, fmt: str) -> str:
    """Query results as text: a GeoJSON FeatureCollection (`id` = fid) or CSV with a WKT column."""
    if fmt == "geojson":
        feats = []
        props = gdf.drop(columns=[gdf.geometry.name]).to_dict("records")
        for p, g in zip(props, shapely.to_geojson(gdf.geometry.values), strict=True):
            fid = p.pop("fid", None)
            feats.append({"type": "Feature", "id": fid, "geometry": None if g is None else json.loads(g),
                          "properties": {k: _plain(v) for k, v in p.items()}})
        return json.dumps({"type": "FeatureCollection", "features": feats}, ensure_ascii=False, default=str)
    if fmt == "csv":
        df = gdf.drop(columns=[gdf.geometry.name]).copy()
        df["wkt"] = shapely.to_wkt(gdf.geometry.values, rounding_precision=-1)
        return df.to_csv(index=False)
    raise LayerInputError(f"--format {fmt!r} is not one of geojson, table, csv")


def _plain(v: object) -> object:
    if v is None:
        return None
    if isinstance(v, float) and not np.isfinite(v):
        return None
    if isinstance(v, np.generic):
        return v.item()
    if hasattr(v, "isoformat"):
        return v.isoformat()  # type: ignore[union-attr]
    try:
        import pandas as pd

        if pd.isna(v):  # type: ignore[arg-type]
            return None
    except (TypeError, ValueError):
        pass
    return v


__all__ = ["FORMATS", "render_features", "write_table"]
