"""Readers: any supported vector file to one Arrow table of attributes plus a WKB `geom` column, and its CRS.

Formats: GeoJSON, GeoPackage, Shapefile (plain or zipped; the `.cpg` codepage is honoured, `encoding` overrides),
FlatGeobuf, OGR SQLite, GeoParquet (WKB encoding), CSV with lon/lat or WKT columns, and CityJSON buildings
(footprints). OGR formats go through `pyogrio.read_arrow` (GDAL's Arrow stream, no per-feature Python objects).
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import shapely
from pyproj import CRS

from cim.errors import CRSError, InputNotFoundError
from cim.sources.crs import parse_crs
from layers.errors import LayerInputError

GEOM = "geom"
SUPPORTED = ("GeoJSON (.geojson/.json)", "GeoPackage (.gpkg)", "Shapefile (.shp, .zip)", "FlatGeobuf (.fgb)",
             "SQLite (.sqlite)", "GeoParquet (.parquet)", "CSV (.csv)", "CityJSON (.city.json/.json)")
_OGR_DRIVERS = {".geojson": "GeoJSON", ".geojsonl": "GeoJSONSeq", ".json": "GeoJSON", ".gpkg": "GPKG",
                ".shp": "ESRI Shapefile", ".zip": "ESRI Shapefile", ".fgb": "FlatGeobuf", ".sqlite": "SQLite"}
_LON_NAMES = ("lon", "lng", "long", "longitude", "x", "经度")
_LAT_NAMES = ("lat", "latitude", "y", "纬度")
_WKT_NAMES = ("wkt", "geometry", "geom", "the_geom", "shape", "几何")


@dataclass
class SourceData:
    """A vector file read into memory.

    Attributes:
        path: the file read.
        format: short format name ("GPKG", "GeoJSON", "CSV", ...).
        table: attribute columns plus `geom`: (n,) binary WKB, null where the feature has no geometry.
        feature_ids: (n,) int64 feature ids the source declares (GeoPackage fid, ...), or None.
        crs: the CRS of the coordinates, None when the file declares none.
        key_field: the attribute that identifies features across versions when the format has one (CityJSON id).
        row_errors: reasons for rows whose geometry a reader could not decode (row index -> reason).
    """

    path: Path
    format: str
    table: pa.Table
    feature_ids: np.ndarray | None
    crs: CRS | None
    key_field: str | None = None
    row_errors: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.table.num_rows


def detect_format(path: Path) -> str:
    """Short format name of a file from its name (and, for `.json`, its first bytes).

    Raises:
        LayerInputError: the extension is not a supported format.
    """
    name = path.name.lower()
    if name.endswith((".city.json", ".cityjson", ".city.jsonl")):
        return "CityJSON"
    suffix = path.suffix.lower()
    if suffix == ".json":
        with path.open("rb") as f:
            head = f.read(4096).decode("utf-8", errors="replace").replace(" ", "")
        return "CityJSON" if '"type":"CityJSON"' in head else "GeoJSON"
    if suffix in (".parquet", ".geoparquet"):
        return "GeoParquet"
    if suffix in (".csv", ".tsv", ".txt"):
        return "CSV"
    if suffix in _OGR_DRIVERS:
        return {"ESRI Shapefile": "Shapefile"}.get(_OGR_DRIVERS[suffix], _OGR_DRIVERS[suffix])
    raise LayerInputError(
        f"{path}: unknown format {suffix or '(no extension)'!r}; supported: {', '.join(SUPPORTED)}"
    )


def read_source(
    path: str | os.PathLike[str],
    *,
    crs: str | None = None,
    encoding: str | None = None,
    layer: str | None = None,
) -> SourceData:
    """Read a vector file.

    Args:
        path: the file.
        crs: the CRS of the coordinates when the file declares none (or declares a wrong one); EPSG:n or WKT.
        encoding: text encoding of attributes (Shapefile without `.cpg`, CSV); e.g. "gbk".
        layer: the layer to read from a multi-layer GeoPackage/SQLite file.

    Returns:
        The file's features.

    Raises:
        InputNotFoundError: the file does not exist.
        LayerInputError: unknown format, empty or corrupt file, undecodable text, several layers and none chosen.
        CRSError: no CRS declared and none given, or the CRS cannot be built.
    """
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{p}: no such file")
    if p.is_file() and p.stat().st_size == 0:
        raise LayerInputError(f"{p}: the file is empty")
    fmt = detect_format(p)
    if fmt == "GeoParquet":
        src = _read_geoparquet(p)
    elif fmt == "CSV":
        src = _read_csv(p, encoding)
    elif fmt == "CityJSON":
        src = _read_cityjson(p)
    else:
        src = _read_ogr(p, fmt, encoding, layer)
    if crs is not None:
        src.crs = parse_crs(crs, what="--crs")
    if src.crs is None:
        raise CRSError(f"{p}: the file declares no CRS; pass --crs (e.g. --crs EPSG:4490 or --crs EPSG:4547)")
    if src.table.num_rows == 0:
        raise LayerInputError(f"{p}: the file has no features")
    return src


def _read_ogr(path: Path, fmt: str, encoding: str | None, layer: str | None) -> SourceData:
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError

    target = str(path)
    if path.suffix.lower() == ".zip":
        target = _zipped_shapefile(path)
    try:
        layers = pyogrio.list_layers(target)
        if layer is None and len(layers) > 1:
            names = ", ".join(str(n) for n in layers[:, 0])
            raise LayerInputError(f"{path}: holds {len(layers)} layers ({names}); pass --source-layer NAME")
        meta, table = pyogrio.read_arrow(target, layer=layer, encoding=encoding, return_fids=True)
    except (DataSourceError, DataLayerError) as exc:
        raise LayerInputError(f"{path}: cannot read as {fmt}: {exc}; is the file complete and of that format?") \
            from exc
    except UnicodeDecodeError as exc:
        raise LayerInputError(f"{path}: text is not in {encoding or 'the declared encoding'} ({exc.reason}); "
                              f"pass --encoding (e.g. gbk)") from exc
    except pa.ArrowInvalid as exc:
        raise LayerInputError(f"{path}: cannot decode attributes ({exc}); pass --encoding (e.g. gbk)") from exc
    geometry_name = meta.get("geometry_name") or "wkb_geometry"
    fields = set(meta["fields"])
    fid_col = next((c for c in table.column_names if c not in fields and c != geometry_name), None)
    fids = table.column(fid_col).to_numpy(zero_copy_only=False).astype(np.int64) if fid_col else None
    drop = [c for c in (fid_col, geometry_name) if c is not None and c in table.column_names]
    wkb = table.column(geometry_name) if geometry_name in table.column_names else pa.nulls(table.num_rows, pa.binary())
    attrs = table.drop_columns(drop)
    table = attrs.append_column(GEOM, _plain_binary(wkb))
    crs = parse_crs(meta["crs"], what=str(path)) if meta.get("crs") else None
    return SourceData(path, fmt, table, fids, crs)


def _zipped_shapefile(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            shps = [n for n in z.namelist() if n.lower().endswith(".shp") and not n.startswith("__MACOSX")]
    except zipfile.BadZipFile as exc:
        raise LayerInputError(f"{path}: not a readable zip archive ({exc})") from exc
    if len(shps) != 1:
        raise LayerInputError(f"{path}: the archive must hold exactly one .shp, found {len(shps)}: {shps[:5]}")
    return f"/vsizip/{path.resolve()}/{shps[0]}"


def _plain_binary(arr: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    """Drop a geoarrow extension type: keep the WKB bytes as plain binary."""
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    out = [c.storage if isinstance(c, pa.ExtensionArray) else c for c in chunks]
    out = [c.cast(pa.binary()) if not pa.types.is_binary(c.type) else c for c in out]
    return pa.chunked_array(out, pa.binary())


def _read_geoparquet(path: Path) -> SourceData:
    try:
        pf = pq.ParquetFile(path)
        raw = (pf.schema_arrow.metadata or {}).get(b"geo")
    except (pa.ArrowInvalid, OSError) as exc:
        raise LayerInputError(f"{path}: cannot read as Parquet: {exc}") from exc
    if raw is None:
        raise LayerInputError(f"{path}: Parquet file without GeoParquet 'geo' metadata; write it as GeoParquet")
    geo = json.loads(raw)
    column = geo.get("primary_column", "geometry")
    spec = geo.get("columns", {}).get(column, {})
    if spec.get("encoding", "WKB").upper() != "WKB":
        raise LayerInputError(f"{path}: geometry encoding {spec.get('encoding')!r} is not supported; use WKB")
    table = pf.read()
    crs: CRS | None
    if "crs" not in spec:
        crs = parse_crs("OGC:CRS84", what=str(path))  # GeoParquet 1.x: a missing crs means OGC:CRS84
    elif spec["crs"] is None:
        crs = None
    else:
        crs = parse_crs(json.dumps(spec["crs"]) if isinstance(spec["crs"], dict) else spec["crs"], what=str(path))
    wkb = _plain_binary(table.column(column))
    return SourceData(path, "GeoParquet", table.drop_columns([column]).append_column(GEOM, wkb), None, crs)


def _match(names: list[str], wanted: tuple[str, ...]) -> str | None:
    lowered = {n.strip().lower(): n for n in names}
    return next((lowered[w] for w in wanted if w in lowered), None)


def _read_csv(path: Path, encoding: str | None) -> SourceData:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        table = pacsv.read_csv(path, read_options=pacsv.ReadOptions(encoding=encoding or "utf8"),
                               parse_options=pacsv.ParseOptions(delimiter=delimiter))
        names = table.column_names  # header names are decoded only here
    except pa.ArrowInvalid as exc:
        hint = "pass --encoding (e.g. gbk)" if "UTF8" in str(exc) or "utf8" in str(exc).lower() else "check the file"
        raise LayerInputError(f"{path}: cannot read as CSV ({exc}); {hint}") from exc
    except UnicodeDecodeError as exc:
        raise LayerInputError(f"{path}: text is not {encoding or 'UTF-8'} ({exc.reason} at byte {exc.start}); "
                              f"pass --encoding (e.g. gbk)") from exc
    except LookupError as exc:
        raise LayerInputError(f"{path}: unknown encoding {encoding!r}") from exc
    lon, lat, wkt = _match(names, _LON_NAMES), _match(names, _LAT_NAMES), _match(names, _WKT_NAMES)
    errors: dict[int, str] = {}
    if lon and lat:
        x = pc.cast(table.column(lon), pa.float64(), safe=False).to_numpy(zero_copy_only=False)
        y = pc.cast(table.column(lat), pa.float64(), safe=False).to_numpy(zero_copy_only=False)
        ok = np.isfinite(x) & np.isfinite(y)
        geoms = np.full(len(x), None, dtype=object)
        geoms[ok] = shapely.points(x[ok], y[ok])
        errors = {int(i): f"no coordinates in {lon!r}/{lat!r}" for i in np.flatnonzero(~ok)}
        drop = [lon, lat]
    elif wkt:
        texts = table.column(wkt).to_numpy(zero_copy_only=False)
        geoms = shapely.from_wkt(texts, on_invalid="ignore")
        errors = {int(i): f"unreadable WKT in {wkt!r}" for i in np.flatnonzero(shapely.is_missing(geoms))}
        drop = [wkt]
    else:
        raise LayerInputError(
            f"{path}: no geometry columns; name them lon/lat (or longitude/latitude, x/y, 经度/纬度) "
            f"or wkt/geometry; columns are: {', '.join(names)}"
        )
    wkb = pa.array(shapely.to_wkb(geoms), pa.binary())
    table = table.drop_columns(drop).append_column(GEOM, wkb)
    prj = path.with_suffix(".prj")
    crs = parse_crs(prj.read_text(encoding="utf-8"), what=str(prj)) if prj.is_file() else None
    return SourceData(path, "CSV", table, None, crs, row_errors=errors)


def _cityjson_crs(doc: dict[str, Any], path: Path) -> CRS | None:
    ref = (doc.get("metadata") or {}).get("referenceSystem")
    if not ref:
        return None
    code = str(ref).rstrip("/").rsplit("/", 1)[-1]
    text = f"EPSG:{code}" if code.isdigit() else str(ref)
    crs = parse_crs(text, what=f"{path} metadata.referenceSystem")
    # A compound CRS (e.g. 7415 = RD New + NAP height): footprints are 2D, so keep the horizontal part.
    return crs.sub_crs_list[0] if crs.is_compound else crs


def _read_cityjson(path: Path) -> SourceData:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LayerInputError(f"{path}: not valid CityJSON ({exc})") from exc
    if doc.get("type") != "CityJSON" or "CityObjects" not in doc:
        raise LayerInputError(f"{path}: not a CityJSON document (no type CityJSON / CityObjects)")
    verts = np.asarray(doc.get("vertices", []), np.float64).reshape(-1, 3)
    tr = doc.get("transform")
    if tr:
        verts = verts * np.asarray(tr["scale"]) + np.asarray(tr["translate"])
    objects = doc["CityObjects"]
    ids: list[str] = []
    rows: list[dict[str, Any]] = []
    geoms: list[Any] = []
    errors: dict[int, str] = {}
    for oid, obj in objects.items():
        if obj.get("type") != "Building":
            continue
        rings = _cityjson_rings([obj, *(objects.get(c, {}) for c in obj.get("children", []))])
        row = len(ids)
        ids.append(oid)
        attrs = {k: (v if isinstance(v, (str, int, float, bool)) or v is None else json.dumps(v, ensure_ascii=False))
                 for k, v in (obj.get("attributes") or {}).items()}
        zs = verts[np.unique(np.concatenate(rings)), 2] if rings else np.array([np.nan])
        attrs["min_z"], attrs["max_z"] = float(np.min(zs)), float(np.max(zs))
        rows.append(attrs)
        polys = shapely.polygons([verts[r][:, :2] for r in rings if len(r) >= 3]) if rings else []
        polys = [g for g in polys if g.area > 0]
        if not polys:
            errors[row] = "building without surfaces"
            geoms.append(None)
            continue
        geoms.append(shapely.union_all(polys))
    if not ids:
        raise LayerInputError(f"{path}: CityJSON without Building objects")
    names = list(dict.fromkeys(k for r in rows for k in r))
    columns = {"cityobject_id": pa.array(ids, pa.string())}
    for n in names:
        values = [r.get(n) for r in rows]
        try:
            columns[n] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            columns[n] = pa.array([None if v is None else str(v) for v in values], pa.string())
    table = pa.table(columns).append_column(GEOM, pa.array(shapely.to_wkb(np.array(geoms, dtype=object)),
                                                           pa.binary()))
    return SourceData(path, "CityJSON", table, None, _cityjson_crs(doc, path), key_field="cityobject_id",
                      row_errors=errors)


def _cityjson_rings(objs: list[dict[str, Any]]) -> list[np.ndarray]:
    """Outer rings (vertex indices) of every surface of the objects' geometries (any LoD, any type)."""
    rings: list[np.ndarray] = []

    def surfaces(b: Any, depth: int) -> None:
        # a surface is a list of rings, a ring a list of ints: descend until the ring level
        if depth == 0:
            if b and isinstance(b[0], list) and b[0] and isinstance(b[0][0], int):
                rings.append(np.asarray(b[0], np.int64))
            return
        for item in b:
            surfaces(item, depth - 1)

    depth_of = {"MultiSurface": 1, "CompositeSurface": 1, "Solid": 2, "MultiSolid": 3, "CompositeSolid": 3}
    for obj in objs:
        for g in obj.get("geometry", []) or []:
            if g.get("type") in depth_of:
                surfaces(g.get("boundaries", []), depth_of[g["type"]])
    return rings


__all__ = ["GEOM", "SUPPORTED", "SourceData", "detect_format", "read_source"]
