"""Readers: any supported vector file to one Arrow table of attributes plus a WKB `geom` column, and its CRS.

Formats: GeoJSON, GeoPackage, Shapefile (plain or zipped; the `.cpg` codepage is honoured, `encoding` overrides),
FlatGeobuf, OGR SQLite, GeoParquet (WKB encoding), CSV with lon/lat or WKT columns, and CityJSON buildings
(footprints). OGR formats go through `pyogrio.read_arrow` (GDAL's Arrow stream, no per-feature Python objects).
"""

from __future__ import annotations

import json
import os
import re
import struct
import warnings
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

from cim.errors import CimError, CRSError, InputError, InputNotFoundError
from cim.sources.cityjson import document_crs, document_vertices
from cim.sources.crs import horizontal_crs, parse_crs
from cim.sources.geoparquet import plain_binary, read_geoparquet
from cim.sources.limits import check_encoding, check_wkt, load_json
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
        missing: features the file holds that could not become rows at all (label, reason), e.g. shapes of a
            shapefile without an attribute record; they count as read and rejected.
    """

    path: Path
    format: str
    table: pa.Table
    feature_ids: np.ndarray | None
    crs: CRS | None
    key_field: str | None = None
    row_errors: dict[int, str] = field(default_factory=dict)
    missing: list[tuple[str, str]] = field(default_factory=list)

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

    Everything in the file is untrusted: the content must match the extension, a declared CRS must resolve to a
    geographic or projected CRS, and a reader failure of any kind becomes a `LayerInputError` that names the file.
    Geometries are left as WKB for `layers.ingest.stage`, which walks them (`cim.sources.limits.check_wkb`) before any
    native parser sees them.

    Args:
        path: the file.
        crs: the CRS of the coordinates when the file declares none (or declares a wrong one); EPSG:n or WKT. When
            given, the file's own declaration is not read at all.
        encoding: text encoding of attributes (Shapefile without `.cpg`, CSV); e.g. "gbk".
        layer: the layer to read from a multi-layer GeoPackage/SQLite file.

    Returns:
        The file's features.

    Raises:
        InputNotFoundError: the file does not exist.
        LayerInputError: unknown format, content that is not that format, empty or corrupt file, undecodable text,
            unknown encoding, several layers and none chosen.
        CRSError: no CRS declared and none given, a declared CRS that does not resolve, or a CRS that is not
            geographic or projected (geocentric, vertical, engineering).
    """
    p = Path(path)
    try:
        encoding = check_encoding(encoding)
    except InputError as exc:
        raise LayerInputError(str(exc)) from exc
    if not p.exists():
        raise InputNotFoundError(f"{p}: no such file")
    if p.is_dir():
        raise LayerInputError(f"{p}: is a folder; pass one of its files")
    if p.stat().st_size == 0:
        raise LayerInputError(f"{p}: the file is empty")
    fmt = detect_format(p)
    check_content(p, fmt)
    given = horizontal_crs(parse_crs(crs, what="--crs"), "--crs") if crs is not None else None
    try:
        if fmt == "GeoParquet":
            src = _read_geoparquet(p, read_crs=given is None)
        elif fmt == "CSV":
            src = _read_csv(p, encoding, read_crs=given is None)
        elif fmt == "CityJSON":
            src = _read_cityjson(p, read_crs=given is None)
        else:
            src = _read_ogr(p, fmt, encoding, layer)
    except CimError:
        raise
    except MemoryError as exc:
        raise LayerInputError(f"{p}: does not fit in memory as {fmt}; split it into smaller files") from exc
    except Exception as exc:  # a third-party parser failed on untrusted bytes: say so, never leak a traceback
        raise LayerInputError(f"{p}: cannot read as {fmt} ({type(exc).__name__}: {_first_line(exc)}); is the file "
                              f"complete and of that format?") from exc
    if given is not None:
        src.crs = given
    elif src.crs is None:
        raise CRSError(f"{p}: the file declares no CRS; pass --crs (e.g. --crs EPSG:4490 or --crs EPSG:4547)")
    else:
        src.crs = horizontal_crs(src.crs, str(p))
    if src.table.num_rows == 0 and not src.missing:
        raise LayerInputError(f"{p}: the file has no features")
    return src


def with_geometry(attrs: pa.Table, wkb: pa.Array | pa.ChunkedArray) -> pa.Table:
    """The attributes with the geometry appended as `geom`; an attribute of that very name becomes `geom_1`
    (`geom_2`, ...), the suffix the store gives every name that clashes with its own columns."""
    names = attrs.column_names
    if GEOM in names:
        taken = {n.casefold() for n in names} | {GEOM}
        renamed = []
        for n in names:
            if n == GEOM:
                k = 1
                while f"{GEOM}_{k}".casefold() in taken:
                    k += 1
                n = f"{GEOM}_{k}"
                taken.add(n.casefold())
            renamed.append(n)
        attrs = attrs.rename_columns(renamed)
    return attrs.append_column(GEOM, wkb)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


_MAGIC = {"SQLite": b"SQLite format 3\x00", "FlatGeobuf": b"fgb\x03", "Parquet": b"PAR1", "zip": b"PK\x03\x04",
          "Shapefile": b"\x00\x00\x27\x0a"}
_EXPECTED = {"GPKG": "SQLite", "SQLite": "SQLite", "FlatGeobuf": "FlatGeobuf", "GeoParquet": "Parquet",
             "GeoJSON": "JSON", "GeoJSONSeq": "JSON", "CityJSON": "JSON", "CSV": "text"}
_EXTENSIONS = {"SQLite": ".gpkg or .sqlite", "FlatGeobuf": ".fgb", "Parquet": ".parquet", "zip": ".zip",
               "Shapefile": ".shp", "JSON": ".geojson (or .city.json)", "text": ".csv"}


def sniff(path: Path) -> str:
    """What a file's first bytes say it is: SQLite, FlatGeobuf, Parquet, zip, Shapefile, JSON, text or binary."""
    with path.open("rb") as f:
        head = f.read(4096)
    for kind, magic in _MAGIC.items():
        if head.startswith(magic):
            return kind
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n\x1e")
    if stripped[:1] in (b"{", b"["):
        return "JSON"
    return "binary" if b"\x00" in head else "text"


def check_content(path: Path, fmt: str) -> None:
    """Refuse a file whose content is not the format its extension names (it would be catalogued wrongly).

    Raises:
        LayerInputError: the first bytes are another format's.
    """
    found = sniff(path)
    expected = "zip" if fmt == "Shapefile" and path.suffix.lower() == ".zip" else _EXPECTED.get(fmt, fmt)
    if found == expected:
        return
    what = {"text": "plain text", "binary": "binary data of no supported format"}.get(found, found)
    fix = f"rename it to {_EXTENSIONS[found]}" if found in _EXTENSIONS else "check that it was exported completely"
    raise LayerInputError(f"{path}: the extension says {fmt}, but the content is {what}; {fix}")


def _read_ogr(path: Path, fmt: str, encoding: str | None, layer: str | None) -> SourceData:
    import pyogrio
    from pyogrio.errors import CRSError as OgrCRSError
    from pyogrio.errors import DataLayerError, DataSourceError

    target = str(path)
    if path.suffix.lower() == ".zip":
        target = _zipped_shapefile(path)
    # GDAL's warnings (pyogrio's RuntimeWarnings) are held back: a file that fails gets one error naming it, not a
    # warning line before it; a file that reads hands them on once it is read
    held: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as held:
            warnings.simplefilter("always")
            layers = pyogrio.list_layers(target)
            if layer is None and len(layers) > 1:
                names = ", ".join(str(n) for n in layers[:, 0])
                raise LayerInputError(f"{path}: holds {len(layers)} layers ({names}); pass --source-layer NAME")
            meta, table = pyogrio.read_arrow(target, layer=layer, encoding=encoding, return_fids=True)
    except OgrCRSError as exc:
        raise CRSError(f"{path}: cannot read the CRS it declares ({_first_line(exc)}); fix or delete its "
                       f"declaration (a .prj next to a shapefile) and pass --crs") from exc
    except (DataSourceError, DataLayerError) as exc:
        raise LayerInputError(f"{path}: cannot read as {fmt}: {_first_line(exc)}; is the file complete and of "
                              f"that format?") from exc
    except UnicodeDecodeError as exc:
        raise LayerInputError(f"{path}: text is not in {encoding or 'the declared encoding'} ({exc.reason}); "
                              f"pass --encoding (e.g. gbk)") from exc
    except pa.ArrowInvalid as exc:
        raise LayerInputError(f"{path}: cannot decode attributes ({_first_line(exc)}); pass --encoding (e.g. gbk)") \
            from exc
    for w in held:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    geometry_name = meta.get("geometry_name") or "wkb_geometry"
    fields = set(meta["fields"])
    fid_col = next((c for c in table.column_names if c not in fields and c != geometry_name), None)
    fids = table.column(fid_col).to_numpy(zero_copy_only=False).astype(np.int64) if fid_col else None
    drop = [i for i, c in enumerate(table.column_names) if c in (fid_col, geometry_name)]
    wkb = table.column(geometry_name) if geometry_name in table.column_names else pa.nulls(table.num_rows, pa.binary())
    attrs = table.select([i for i in range(table.num_columns) if i not in drop])
    table = with_geometry(attrs, plain_binary(wkb))
    declared = meta.get("crs")
    if fmt in ("GeoJSON", "GeoJSONSeq"):
        declared = _geojson_crs(path, declared)
    crs = parse_crs(declared, what=str(path)) if declared else None
    if crs is None and fmt == "Shapefile" and path.suffix.lower() == ".shp" and _has_prj(path):
        raise CRSError(f"{path.with_suffix('.prj')}: the CRS it declares cannot be resolved; fix it (ESRI or OGC "
                       f"WKT) or delete it and pass --crs")
    missing = _shapefile_mismatch(path, table.num_rows) if fmt == "Shapefile" else []
    return SourceData(path, fmt, table, fids, crs, missing=missing)


def _has_prj(path: Path) -> bool:
    prj = next((q for q in path.parent.glob(path.stem + ".*") if q.suffix.lower() == ".prj"), None)
    return prj is not None and prj.stat().st_size > 0


_GEOJSON_CRS = re.compile(rb'"crs"\s*:\s*\{')


def _geojson_crs(path: Path, gdal_crs: str | None) -> str | None:
    """The CRS a GeoJSON file declares in its (2008-style) `crs` member, checked: GDAL takes an unresolvable one
    as WGS84 without a word.

    Raises:
        CRSError: the file names a CRS that cannot be resolved.
    """
    with path.open("rb") as f:
        head = f.read(1 << 20)
    m = _GEOJSON_CRS.search(head)
    if m is None:
        return gdal_crs
    try:
        member, _ = json.JSONDecoder().raw_decode(head[m.end() - 1:].decode("utf-8", errors="replace"))
        props = member.get("properties") or {}
        name = props.get("name") or props.get("href")
    except (ValueError, AttributeError):
        name = None
    if not isinstance(name, str) or not name.strip():
        raise CRSError(f"{path}: its \"crs\" member names no CRS; fix it (e.g. \"urn:ogc:def:crs:EPSG::4490\") or pass "
                       f"--crs")
    try:
        parse_crs(name, what=f"{path} \"crs\" member")
    except CRSError as exc:
        raise CRSError(f"{exc}; the file declares a CRS that cannot be resolved: fix its \"crs\" member or pass "
                       f"--crs") from exc
    return name if gdal_crs is None else gdal_crs


def _shapefile_mismatch(path: Path, rows: int) -> list[tuple[str, str]]:
    """Shapes without an attribute record and records without a shape (GDAL reads the shorter of the two silently).

    Counts come from the `.shx` index (one 8-byte entry per shape after a 100-byte header) and the `.dbf` header.
    """
    def member(suffix: str) -> bytes | None:
        if path.suffix.lower() == ".zip":
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.lower().endswith(suffix)), None)
                return z.open(name).read(100) if name else None
        q = next((q for q in path.parent.glob(path.stem + ".*") if q.suffix.lower() == suffix), None)
        if q is None:
            return None
        with q.open("rb") as f:
            return f.read(100)

    shx, dbf = member(".shx"), member(".dbf")
    if shx is None or dbf is None or len(shx) < 28 or len(dbf) < 8:
        return []
    shapes = (struct.unpack(">i", shx[24:28])[0] * 2 - 100) // 8
    records = struct.unpack("<I", dbf[4:8])[0]
    if shapes == records or rows != min(shapes, records):
        return []
    if shapes > records:
        why = f"shape without an attribute record (the .shp holds {shapes} shapes, the .dbf {records} records)"
    else:
        why = f"attribute record without a shape (the .dbf holds {records} records, the .shp {shapes} shapes)"
    return [(str(i + 1), why) for i in range(min(shapes, records), max(shapes, records))]


def _zipped_shapefile(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            shps = [n for n in z.namelist() if n.lower().endswith(".shp") and not n.startswith("__MACOSX")]
    except zipfile.BadZipFile as exc:
        raise LayerInputError(f"{path}: not a readable zip archive ({exc})") from exc
    if len(shps) != 1:
        raise LayerInputError(f"{path}: the archive must hold exactly one .shp, found {len(shps)}: {shps[:5]}")
    return f"/vsizip/{path.resolve()}/{shps[0]}"


def _read_geoparquet(path: Path, *, read_crs: bool = True) -> SourceData:
    try:
        data = read_geoparquet(path, read_crs=read_crs)
    except CRSError:
        raise
    except InputError as exc:
        raise LayerInputError(str(exc)) from exc
    crs = parse_crs(data.crs, what=f"{path} 'geo' crs") if data.crs is not None else None
    return SourceData(path, "GeoParquet", with_geometry(data.attributes, data.wkb), None, crs)


def _match(names: list[str], wanted: tuple[str, ...]) -> int | None:
    """Index of the first column whose name is one of `wanted` (case and spaces ignored)."""
    lowered: dict[str, int] = {}
    for i, n in enumerate(names):
        lowered.setdefault(n.strip().lower(), i)
    return next((lowered[w] for w in wanted if w in lowered), None)


def _numbers(column: pa.ChunkedArray) -> np.ndarray:
    """A column as float64, NaN where a value is missing or not a number (text such as 'abc' or '1,5')."""
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_decimal(column.type):
        return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
    text = pc.utf8_trim_whitespace(pc.cast(column, pa.string()))
    numeric = pc.match_substring_regex(text, r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
    clean = pc.if_else(pc.fill_null(numeric, False), text, pa.scalar(None, pa.string()))
    return pc.cast(clean, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def _read_csv(path: Path, encoding: str | None, *, read_crs: bool = True) -> SourceData:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        table = pacsv.read_csv(path, read_options=pacsv.ReadOptions(encoding=encoding or "utf8"),
                               parse_options=pacsv.ParseOptions(delimiter=delimiter))
        names = table.column_names  # header names are decoded only here
    except pa.ArrowInvalid as exc:
        hint = "pass --encoding (e.g. gbk)" if "utf8" in str(exc).lower() else "check the file"
        raise LayerInputError(f"{path}: cannot read as CSV ({_first_line(exc)}); {hint}") from exc
    except UnicodeDecodeError as exc:
        raise LayerInputError(f"{path}: text is not {encoding or 'UTF-8'} ({exc.reason} at byte {exc.start}); "
                              f"pass --encoding (e.g. gbk)") from exc
    lon, lat, wkt = _match(names, _LON_NAMES), _match(names, _LAT_NAMES), _match(names, _WKT_NAMES)
    errors: dict[int, str] = {}
    if lon is not None and lat is not None:
        x, y = _numbers(table.column(lon)), _numbers(table.column(lat))
        ok = np.isfinite(x) & np.isfinite(y)
        geoms = np.full(len(x), None, dtype=object)
        geoms[ok] = shapely.points(x[ok], y[ok])
        errors = {int(i): f"no numeric coordinates in {names[lon]!r}/{names[lat]!r}" for i in np.flatnonzero(~ok)}
        drop = {lon, lat}
    elif wkt is not None:
        texts = pc.cast(table.column(wkt), pa.string()).to_numpy(zero_copy_only=False)
        errors = check_wkt(texts)  # GEOS's WKT reader recurses: bound the nesting first
        if errors:
            texts = texts.copy()
            texts[list(errors)] = None
        geoms = shapely.from_wkt(texts, on_invalid="ignore")
        errors.update({int(i): f"unreadable WKT in {names[wkt]!r}" for i in np.flatnonzero(shapely.is_missing(geoms))
                       if int(i) not in errors})
        drop = {wkt}
    else:
        raise LayerInputError(
            f"{path}: no geometry columns; name them lon/lat (or longitude/latitude, x/y, 经度/纬度) "
            f"or wkt/geometry; columns are: {', '.join(names)}"
        )
    wkb = pa.array(shapely.to_wkb(geoms), pa.binary())
    table = with_geometry(table.select([i for i in range(table.num_columns) if i not in drop]), wkb)
    crs = _prj_crs(path) if read_crs else None
    return SourceData(path, "CSV", table, None, crs, row_errors=errors)


def _prj_crs(path: Path) -> CRS | None:
    """The CRS of a `.prj` next to a file, if there is one."""
    prj = path.with_suffix(".prj")
    if not prj.is_file():
        return None
    raw = prj.read_bytes()
    if len(raw) > 1 << 20:
        raise CRSError(f"{prj}: {len(raw):,} bytes is not a CRS definition; replace it with the CRS's WKT or "
                       f"delete it and pass --crs")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CRSError(f"{prj}: not text ({exc.reason} at byte {exc.start}); replace it with the CRS's WKT or "
                       f"delete it and pass --crs") from exc
    return parse_crs(text, what=str(prj))


def _cityjson_crs(doc: dict[str, Any], path: Path) -> CRS | None:
    crs = document_crs(doc, path)
    # A compound CRS (e.g. 7415 = RD New + NAP height): footprints are 2D, so keep the horizontal part.
    return crs.sub_crs_list[0] if crs is not None and crs.is_compound else crs


class _CityJsonShapeError(ValueError):
    """One CityObject's geometry breaks the CityJSON schema (the object is rejected with this reason)."""


def _cityjson_vertices(doc: dict[str, Any], path: Path) -> np.ndarray:
    """(n, 3) float64 real-world vertices (the `transform` applied); non-finite ones reject the objects using them."""
    try:
        return document_vertices(doc, path, finite=False)
    except InputError as exc:
        raise LayerInputError(str(exc)) from exc


def _read_cityjson(path: Path, *, read_crs: bool = True) -> SourceData:
    try:
        doc = load_json(path, what="CityJSON")
    except InputError as exc:
        raise LayerInputError(str(exc)) from exc
    if not isinstance(doc, dict) or doc.get("type") != "CityJSON" or not isinstance(doc.get("CityObjects"), dict):
        raise LayerInputError(f"{path}: not a CityJSON document (an object with type CityJSON and a CityObjects "
                              f"object)")
    verts = _cityjson_vertices(doc, path)
    objects = doc["CityObjects"]
    ids: list[str] = []
    rows: list[dict[str, Any]] = []
    geoms: list[Any] = []
    errors: dict[int, str] = {}
    for oid, obj in objects.items():
        if not isinstance(obj, dict) or obj.get("type") != "Building":
            continue
        row = len(ids)
        ids.append(str(oid))
        attributes = obj.get("attributes")
        attrs = {str(k): (v if isinstance(v, (str, int, float, bool)) or v is None
                          else json.dumps(v, ensure_ascii=False))
                 for k, v in (attributes.items() if isinstance(attributes, dict) else ())}
        children = obj.get("children") if isinstance(obj.get("children"), list) else []
        try:
            rings = _cityjson_rings([obj, *(objects.get(c) for c in children if isinstance(c, str))], len(verts))
        except _CityJsonShapeError as exc:
            rings, errors[row] = [], f"CityObject {oid!r}: {exc}"
        zs = verts[np.unique(np.concatenate(rings)), 2] if rings else np.array([np.nan])
        attrs["min_z"], attrs["max_z"] = float(np.min(zs)), float(np.max(zs))
        rows.append(attrs)
        outline = _outline(verts, rings)
        if isinstance(outline, str):
            errors.setdefault(row, f"CityObject {oid!r}: {outline}" if outline != "building without surfaces"
                              else outline)
            geoms.append(None)
            continue
        geoms.append(outline)
    if not ids:
        raise LayerInputError(f"{path}: CityJSON without Building objects")
    names = list(dict.fromkeys(k for r in rows for k in r))
    columns = {"cityobject_id": pa.array(ids, pa.string())}
    for n in names:
        values = [r.get(n) for r in rows]
        try:
            columns[n] = pa.array(values)
        except (pa.ArrowException, OverflowError, TypeError, ValueError):
            columns[n] = pa.array([None if v is None else str(v) for v in values], pa.string())
    table = with_geometry(pa.table(columns), pa.array(shapely.to_wkb(np.array(geoms, dtype=object)), pa.binary()))
    crs = _cityjson_crs(doc, path) if read_crs else None
    return SourceData(path, "CityJSON", table, None, crs, key_field="cityobject_id", row_errors=errors)


def _outline(verts: np.ndarray, rings: list[np.ndarray]) -> Any:
    """A building's footprint: the union of its surfaces seen from above (outer rings of any length, walls left out
    as they have no area), or the reason there is none."""
    usable = [r for r in rings if len(r) >= 3]
    if not usable:
        return "building without surfaces"
    xy = np.concatenate([verts[r][:, :2] for r in usable])
    if not np.isfinite(xy).all():
        return "non-finite vertex coordinates"
    # rings of different lengths in one call: coordinates plus the ring each belongs to (closed by shapely)
    polys = shapely.polygons(shapely.linearrings(xy, indices=np.repeat(np.arange(len(usable)),
                                                                       [len(r) for r in usable])))
    polys = polys[shapely.area(polys) > 0]
    if not len(polys):
        return "building without surfaces"
    bad = ~shapely.is_valid(polys)
    if bad.any():  # a surface whose outline crosses itself seen from above: repaired, not dropped
        polys[bad] = shapely.make_valid(polys[bad])
    g = shapely.union_all(polys)
    if g.geom_type == "GeometryCollection":
        g = shapely.union_all([p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")])
    return g if not g.is_empty else "building without surfaces"


_CITYJSON_DEPTH = {"MultiSurface": 1, "CompositeSurface": 1, "Solid": 2, "MultiSolid": 3, "CompositeSolid": 3}


def _cityjson_rings(objs: list[Any], nverts: int) -> list[np.ndarray]:
    """Outer rings (vertex indices) of every surface of the objects' geometries (any LoD, any type), walked without
    recursion and checked against the schema: lists at every level, integer indices of existing vertices.

    Raises:
        _CityJsonShapeError: a geometry breaks the schema (the reason names the geometry and the place).
    """
    rings: list[np.ndarray] = []
    for obj in objs:
        if not isinstance(obj, dict):
            continue
        geometries = obj.get("geometry") or []
        if not isinstance(geometries, list):
            raise _CityJsonShapeError("'geometry' is not a list")
        for gi, g in enumerate(geometries):
            if not isinstance(g, dict) or g.get("type") not in _CITYJSON_DEPTH:
                continue
            where = f"geometry {gi} ({g['type']})"
            stack: list[tuple[Any, int, str]] = [(g.get("boundaries"), _CITYJSON_DEPTH[g["type"]], "boundaries")]
            while stack:
                node, depth, at = stack.pop()
                if not isinstance(node, list):
                    raise _CityJsonShapeError(f"{where}: {at} is not a list")
                if depth > 0:
                    stack.extend((item, depth - 1, f"{at}[{i}]") for i, item in enumerate(node))
                    continue
                # a surface: a list of rings, each a list of vertex indices; the first ring is the outer one
                if not node:
                    continue
                outer = node[0]
                if not isinstance(outer, list) or not all(type(v) is int for v in outer):
                    raise _CityJsonShapeError(f"{where}: {at}[0] is not a list of vertex indices")
                try:
                    ring = np.asarray(outer, np.int64)
                except OverflowError as exc:
                    raise _CityJsonShapeError(f"{where}: {at}[0] holds a vertex index beyond int64") from exc
                if len(ring) and (ring.min() < 0 or ring.max() >= nverts):
                    raise _CityJsonShapeError(f"{where}: {at}[0] refers to vertex {int(ring.max() if ring.max() >= nverts else ring.min())}, "
                                              f"but there are {nverts} vertices")
                rings.append(ring)
    return rings


__all__ = ["GEOM", "SUPPORTED", "SourceData", "check_content", "detect_format", "read_source", "sniff"]
