"""Writers for exports: GeoJSON, GeoPackage, Shapefile and FlatGeobuf (through GDAL's Arrow path), GeoParquet and
CSV."""

from __future__ import annotations

import codecs
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import shapely
from pyproj import CRS

if TYPE_CHECKING:
    import geopandas as gpd

from cim.files import apply_umask
from layers.errors import LayerInputError
from layers.sources import GEOM
from layers.values import json_value

FORMATS = ("geojson", "gpkg", "parquet", "csv", "shp", "fgb")
#: the files of one Shapefile (an export replaces them together)
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx")
_DBF_NAME_BYTES = 10  # dBASE III field names
_DBF_TEXT_BYTES = 254  # dBASE III character fields


class Written(NamedTuple):
    """What a writer changed to fit the format: attribute names renamed (old -> new) and warnings."""

    renamed: dict[str, str]
    warnings: list[str]


def write_table(table: pa.Table, path: Path, fmt: str, crs: CRS, geometry_type: str, *, layer: str,
                overwrite: bool = False, encoding: str | None = None) -> Written:
    """Write features (`fid`, attributes, `geom` WKB) to a file.

    Args:
        table: the features.
        path: output file (replaced when `overwrite`; a Shapefile's .shx, .dbf, .prj and .cpg with it).
        fmt: geojson, gpkg, parquet, csv, shp or fgb.
        crs: the CRS of the coordinates, written into the file's metadata (a Shapefile's .prj).
        geometry_type: the layer's geometry type ("Polygon", "MultiPolygon Z", ...).
        layer: layer name inside a GeoPackage.
        encoding: a Shapefile's text encoding ("UTF-8" by default, "GBK", "GB18030", ...), named in its .cpg;
            every other format is UTF-8 by its specification.

    Returns:
        The attribute names the format made us change (a Shapefile's 10-byte field names) and warnings.

    Raises:
        LayerInputError: an unknown format or encoding; a layer a Shapefile cannot hold (mixed geometry types,
            text the encoding has no character for).
    """
    if fmt not in FORMATS:
        raise LayerInputError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if encoding is not None and fmt != "shp":
        raise LayerInputError(f"--encoding {encoding} applies to Shapefile (.shp) exports; {fmt} is written in "
                              f"UTF-8 (its specification's encoding)")
    if overwrite:
        for target in ([path.with_suffix(p) for p in SHAPEFILE_PARTS] if fmt == "shp" else [path]):
            target.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        _write_geoparquet(table, path, crs)
    elif fmt == "csv":
        wkt = shapely.to_wkt(shapely.from_wkb(table.column(GEOM).to_numpy(zero_copy_only=False)), rounding_precision=-1)
        pacsv.write_csv(table.drop_columns([GEOM]).append_column("wkt", pa.array(wkt, pa.string())), path)
    elif fmt == "shp":
        return _write_shapefile(table, path, crs, geometry_type, layer, encoding or "UTF-8")
    else:
        import pyogrio

        base = geometry_type.replace(" Z", "")
        if fmt in ("gpkg", "fgb") and base.startswith("Multi"):
            table = _promote_to_multi(table, base)
        gtype = geometry_type if base != "Geometry" else "Unknown"
        driver = {"geojson": "GeoJSON", "gpkg": "GPKG", "fgb": "FlatGeobuf"}[fmt]
        options = {"RFC7946": "NO", "WRITE_NAME": "NO"} if fmt == "geojson" else {}
        pyogrio.write_arrow(table.drop_columns(["fid"]) if fmt == "geojson" else table, str(path), layer=layer,
                            driver=driver, geometry_name=GEOM, geometry_type=gtype, crs=crs.to_wkt(),
                            layer_options=options, encoding="UTF-8" if fmt == "geojson" else None)
    return Written({}, [])


def _write_shapefile(table: pa.Table, path: Path, crs: CRS, geometry_type: str, layer: str,
                     encoding: str) -> Written:
    """A Shapefile with its .cpg naming `encoding`: field names cut to 10 bytes in that encoding (at a character
    boundary, kept unique), text checked to be writable in it, files written beside and renamed into place."""
    import pyogrio

    try:
        codec = codecs.lookup(encoding).name
    except LookupError as exc:
        raise LayerInputError(f"--encoding {encoding!r} is not an encoding Python knows; use UTF-8, GBK or "
                              f"GB18030") from exc
    base = geometry_type.replace(" Z", "")
    if base in ("Geometry", "GeometryCollection"):
        raise LayerInputError(f"layer {layer!r} holds {geometry_type} geometries (several types); a Shapefile holds "
                              f"one type: export it as .gpkg or .fgb instead")
    if base.startswith("Multi"):
        table = _promote_to_multi(table, base)
    warnings: list[str] = []
    for name in table.column_names:
        col = table.column(name)
        if name == GEOM or not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            continue
        longest = 0
        for value in pc.unique(col).to_pylist():
            if value is None:
                continue
            try:
                longest = max(longest, len(value.encode(codec)))
            except UnicodeEncodeError as exc:
                bad = value[exc.start:exc.end]
                raise LayerInputError(f"field {name!r}: the value {value!r} has {bad!r}, which {encoding} cannot "
                                      f"write; export with --encoding UTF-8 (or GB18030, which covers all of "
                                      f"Unicode)") from exc
        if longest > _DBF_TEXT_BYTES:
            warnings.append(f"field {name!r}: values up to {longest} bytes in {encoding} are cut to "
                            f"{_DBF_TEXT_BYTES} (the Shapefile limit); export as .gpkg or .fgb to keep them whole")
    renamed = dbf_field_names([c for c in table.column_names if c != GEOM], codec)
    if renamed:
        table = table.rename_columns([renamed.get(c, c) for c in table.column_names])
        warnings.append("field names cut to the Shapefile's 10 bytes: "
                        + ", ".join(f"{old} -> {new}" for old, new in renamed.items()))
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", dir=path.parent))
    try:
        pyogrio.write_arrow(table, str(tmp / path.name), layer=layer, driver="ESRI Shapefile", geometry_name=GEOM,
                            geometry_type=geometry_type, crs=crs.to_wkt(), encoding=encoding)
        for part in sorted(tmp.iterdir()):
            apply_umask(part)
            os.replace(part, path.with_suffix(part.suffix))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Written(renamed, warnings)


def dbf_field_names(names: list[str], codec: str) -> dict[str, str]:
    """Names a dBASE file can hold: at most 10 bytes in `codec`, cut at a character boundary (a UTF-8 Chinese
    name keeps 3 characters, a GBK one 5), unique ignoring case. Returns only the names that change."""
    taken: set[str] = set()
    out: dict[str, str] = {}
    for name in names:
        cut = _cut(name, codec, _DBF_NAME_BYTES)
        new, n = cut, 1
        while new.lower() in taken:
            tail = f"_{n}"
            new = _cut(cut, codec, _DBF_NAME_BYTES - len(tail)) + tail
            n += 1
        taken.add(new.lower())
        if new != name:
            out[name] = new
    return out


def _cut(text: str, codec: str, limit: int) -> str:
    kept, used = [], 0
    for ch in text:
        try:
            size = len(ch.encode(codec))
        except UnicodeEncodeError:
            ch, size = "_", 1
        if used + size > limit:
            break
        kept.append(ch)
        used += size
    return "".join(kept) or "field"


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
                          "properties": {k: json_value(v) for k, v in p.items()}})
        return json.dumps({"type": "FeatureCollection", "features": feats}, ensure_ascii=False, allow_nan=False)
    if fmt == "csv":
        df = gdf.drop(columns=[gdf.geometry.name]).copy()
        df["wkt"] = shapely.to_wkt(gdf.geometry.values, rounding_precision=-1)
        return df.to_csv(index=False)
    raise LayerInputError(f"--format {fmt!r} is not one of geojson, table, csv")


__all__ = ["FORMATS", "SHAPEFILE_PARTS", "Written", "dbf_field_names", "render_features", "write_table"]
