"""A corpus of broken files, made by code, for every reader: `cim layers import` formats and `cim build` inputs.

Each `Case` is one file (with its side files) and what the reader must do with it: refuse it with a `CimError`
subclass whose message names the file (or the option) and matches `match`, or import it with counts that add up
(`read` = stored + rejected) and, where given, exactly `rejected` features refused. Classes of breakage, not one
example each: nesting (every container format), truncation and bit flips, metadata that breaks its spec, types the
store cannot hold, text in the wrong encoding, CRSs that do not resolve or are not horizontal, content that is not
what the extension says, counts that do not agree between a format's parts.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import shapely

from cim.errors import CimError, CRSError, InputError

LON, LAT = 113.30, 40.09


@dataclass
class Case:
    """One hostile file and the expected outcome; `make(folder)` writes the file (and its side files) and returns
    its path, so that collecting the cases writes nothing."""

    name: str
    make: Callable[[Path], Path]
    kwargs: dict[str, Any] = field(default_factory=dict)
    error: type[CimError] | None = None  # the error class expected (None: the import succeeds)
    match: str = ""  # a regex the message must contain
    rejected: int | None = None  # features expected to be rejected (None: any)
    names_file: bool = True  # the message names the file (False for option errors such as --crs)
    names: str | None = None  # the file name the message must hold when it is a side file (a .prj)

    def __repr__(self) -> str:  # short ids in pytest's output
        return self.name


def points(n: int = 3) -> gpd.GeoDataFrame:
    x = LON + np.arange(n) * 0.001
    return gpd.GeoDataFrame({"name": [f"点{i}" for i in range(n)], "capacity": np.arange(n) * 10},
                            geometry=shapely.points(x, np.full(n, LAT)), crs="EPSG:4490")


def nested_wkb(depth: int, inner: bytes | None = None) -> bytes:
    """A GeometryCollection nested `depth` times around a point (little-endian ISO WKB)."""
    w = inner if inner is not None else struct.pack("<BIdd", 1, 1, LON, LAT)
    for _ in range(depth):
        w = struct.pack("<BII", 1, 7, 1) + w
    return w


class RawJson(str):
    """JSON text placed as it is by `fc` (a document too deep for `json.dumps` to write)."""


def nested_geojson(depth: int) -> RawJson:
    text = json.dumps({"type": "Point", "coordinates": [LON, LAT]})
    return RawJson('{"type":"GeometryCollection","geometries":[' * depth + text + "]}" * depth)


def fc(*geometries: Any, **extra: Any) -> str:
    feats = [
        '{"type":"Feature","properties":{"i":%d},"geometry":%s}' % (i, g if isinstance(g, RawJson) else json.dumps(g))
        for i, g in enumerate(geometries)]
    head = json.dumps({"type": "FeatureCollection", **extra})[:-1]
    return head + ', "features": [' + ",".join(feats) + "]}"


POINT = {"type": "Point", "coordinates": [LON, LAT]}


def _gpkg_with_blobs(path: Path, blobs: list[bytes]) -> Path:
    """A GeoPackage of points whose geometry blobs are replaced by `blobs` (GPKG header + the given WKB)."""
    points(len(blobs)).to_file(path, driver="GPKG", layer="pts")
    con = sqlite3.connect(path)
    for (trigger,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        con.execute(f'DROP TRIGGER "{trigger}"')  # GDAL's R-tree triggers call ST_ functions sqlite lacks
    header = b"GP\x00\x01" + struct.pack("<i", 4490)  # magic, version 0, flags: little-endian, no envelope
    for fid, wkb in enumerate(blobs, start=1):
        con.execute("UPDATE pts SET geom = ? WHERE fid = ?", (header + wkb, fid))
    con.commit()
    con.close()
    return path


def _geoparquet(path: Path, table: pa.Table | None = None, geo: Any = None, wkb: list[bytes | None] | None = None,
                extra: dict[str, pa.Array] | None = None) -> Path:
    p = path
    base = points(len(wkb) if wkb else 3)
    base.to_parquet(p)
    t = pq.read_table(p)
    meta = dict(t.schema.metadata)
    if wkb is not None:
        t = t.set_column(t.column_names.index("geometry"), "geometry", pa.array(wkb, pa.binary()))
    for name, arr in (extra or {}).items():
        t = t.append_column(name, arr)
    if geo is not None:
        meta[b"geo"] = geo if isinstance(geo, bytes) else json.dumps(geo).encode()
    pq.write_table(t.replace_schema_metadata(meta), p)
    return p


def _shapefile(folder: Path, name: str, shapes: int, records: int) -> Path:
    """A shapefile whose .shp holds `shapes` points and whose .dbf holds `records` rows."""
    a = folder / f"{name}_a.shp"
    b = folder / f"{name}_b.shp"
    points(shapes).to_file(a)
    points(records).to_file(b)
    out = folder / f"{name}.shp"
    for ext in (".shp", ".shx", ".prj", ".cpg"):
        if a.with_suffix(ext).exists():
            shutil.copy(a.with_suffix(ext), out.with_suffix(ext))
    shutil.copy(b.with_suffix(".dbf"), out.with_suffix(".dbf"))
    return out


def cityjson(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": "CityJSON", "version": "2.0",
        "transform": {"scale": [0.001, 0.001, 0.001], "translate": [500000.0, 4400000.0, 0.0]},
        "metadata": {"referenceSystem": "https://www.opengis.net/def/crs/EPSG/0/4547"},
        "CityObjects": {"b1": {"type": "Building", "attributes": {"h": 10},
                               "geometry": [{"type": "MultiSurface", "lod": "1",
                                             "boundaries": [[[0, 1, 2, 3]]]}]}},
        "vertices": [[0, 0, 0], [10000, 0, 0], [10000, 10000, 0], [0, 10000, 0]],
    }
    doc.update(over)
    return doc


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def layer_corpus() -> list[Case]:
    """Broken files for `LayerStore.import_file` / `cim layers import`."""
    cases: list[Case] = []

    def add(name: str, make: Callable[[Path], Path], **kw: Any) -> None:
        cases.append(Case(name, make, **kw))

    nesting = "nested deeper than"
    # -- nesting: every container format, just past the limit and far past it
    for depth in (9, 30, 3000):
        if depth < 1000:  # GDAL's JSON parser stops at a nesting of about 1000 by itself
            add(f"geojson_nested_{depth}", lambda f, n=depth: _write(f / "n.geojson", fc(nested_geojson(n), POINT)),
                rejected=1, match=nesting)
        else:
            add(f"geojson_nested_{depth}", lambda f, n=depth: _write(f / "n.geojson", fc(nested_geojson(n), POINT)),
                error=InputError, match="cannot read as GeoJSON")
        add(f"gpkg_nested_{depth}", lambda f, n=depth: _gpkg_with_blobs(f / "n.gpkg", [nested_wkb(n), nested_wkb(0)]),
            rejected=1)
        add(f"parquet_nested_{depth}", lambda f, n=depth: _geoparquet(f / "n.parquet", wkb=[nested_wkb(n), nested_wkb(0)]),
            rejected=1, match=nesting)
        add(f"csv_wkt_nested_{depth}", lambda f, n=depth: _write(
            f / "n.csv", "wkt,a\n\"" + "GEOMETRYCOLLECTION(" * n + "POINT(113.3 40.09)" + ")" * n + "\",1\n"
            "\"POINT(113.3 40.09)\",2\n"), kwargs={"crs": "EPSG:4490"}, rejected=1)
    add("parquet_multipolygon_holding_a_collection", lambda f: _geoparquet(
        f / "m.parquet", wkb=[struct.pack("<BII", 1, 6, 1) + nested_wkb(3), nested_wkb(0)]), rejected=1,
        match="corrupt WKB")
    add("geojson_nested_and_valid", lambda f: _write(f / "ok.geojson", fc(nested_geojson(3), POINT)), rejected=0)
    # -- sizes: counts that lie about the bytes behind them
    for name, wkb in {"ring_count": struct.pack("<BII", 1, 3, 0x7FFFFFFF) + b"\0" * 20,
                      "point_count": struct.pack("<BII", 1, 2, 0x7FFFFFFF) + b"\0" * 20,
                      "parts": struct.pack("<BII", 1, 7, 0xFFFFFFFF) + nested_wkb(0),
                      "truncated": nested_wkb(2)[:-3], "trailing": nested_wkb(0) + b"\0\0",
                      "type_99": struct.pack("<BI", 1, 99) + b"\0" * 16, "byte_order_7": b"\x07" + nested_wkb(0)[1:],
                      "empty_value": b""}.items():
        add(f"parquet_wkb_{name}", lambda f, w=wkb: _geoparquet(f / "w.parquet", wkb=[w, nested_wkb(0)]), rejected=1)
    # -- truncation and bit flips of binary formats
    def fgb(f: Path, cut: bool) -> Path:
        p = f / "x.fgb"
        points(20).to_file(p)
        raw = p.read_bytes()
        if cut:
            return _write(p, raw[: len(raw) // 2])
        return _write(p, raw[:300] + bytes(b ^ 0x5A for b in raw[300:420]) + raw[420:])
    add("fgb_truncated", lambda f: fgb(f, True), error=InputError, match="cannot read as FlatGeobuf")
    add("fgb_bit_flips", lambda f: fgb(f, False))
    add("gpkg_garbage", lambda f: _write(f / "g.gpkg", b"SQLite format 3\x00" + bytes(range(256)) * 4),
        error=InputError, match="cannot read as GPKG")
    add("parquet_truncated", lambda f: _write(f / "t.parquet", _geoparquet(f / "full.parquet").read_bytes()[:-40]),
        error=InputError, match="cannot read as Parquet")
    add("zip_not_a_zip", lambda f: _write(f / "z.zip", b"PK\x03\x04" + b"\0" * 100), error=InputError,
        match="not a readable zip")
    # -- GeoParquet metadata that breaks the spec, types the store cannot hold
    for name, geo in {"not_json": b"{", "a_list": [1], "columns_list": {"columns": [1]},
                      "no_primary": {"primary_column": "zz", "columns": {}},
                      "encoding_number": {"primary_column": "geometry", "columns": {"geometry": {"encoding": 5}}},
                      "encoding_point": {"primary_column": "geometry", "columns": {"geometry": {"encoding": "point"}}},
                      "primary_not_string": {"primary_column": 5, "columns": {}}}.items():
        add(f"parquet_geo_{name}", lambda f, g=geo: _geoparquet(f / "g.parquet", geo=g), error=InputError,
            match="metadata|encoding")
    for name, crs in {"number": 5, "unknown": "EPSG:999999", "list": [4490]}.items():
        add(f"parquet_crs_{name}", lambda f, c=crs: _geoparquet(
            f / "c.parquet", geo={"primary_column": "geometry", "version": "1.1.0",
                                  "columns": {"geometry": {"encoding": "WKB", "crs": c}}}), error=CRSError)
    add("parquet_float16_duration_fixed_binary", lambda f: _geoparquet(f / "t.parquet", extra={
        "half": pa.array(np.array([1, 2, 3], np.float16)), "dur": pa.array([1, 2, 3], pa.duration("s")),
        "fixed": pa.array([b"ab", b"cd", b"ef"], pa.binary(2))}), rejected=0)
    add("parquet_field_names_clash_with_ours", lambda f: _geoparquet(f / "t.parquet", extra={
        "GEOM": pa.array([1, 2, 3]), "geom": pa.array(["a", "b", "c"]), "FID": pa.array([7, 8, 9])}), rejected=0)
    # -- CSV: numbers that are not, duplicate names, encodings
    add("csv_coordinates_not_numbers", lambda f: _write(f / "c.csv", "lon,lat,a\nabc,40,1\n113.3,40.1,2\n1e999,nan,3\n"
                                                         "113.3,40.1e0,4\n"), kwargs={"crs": "EPSG:4490"}, rejected=2)
    add("csv_duplicate_columns", lambda f: _write(f / "c.csv", "lon,lat,a,a,A,GEOM,fid\n113.3,40,1,2,3,4,5\n"),
        kwargs={"crs": "EPSG:4490"}, rejected=0)
    add("csv_gbk_without_encoding", lambda f: _write(f / "g.csv", "lon,lat,名称\n113.3,40,学校\n".encode("gbk")),
        kwargs={"crs": "EPSG:4490"}, error=InputError, match="--encoding")
    add("csv_unknown_codec", lambda f: _write(f / "u.csv", "lon,lat\n113.3,40\n"),
        kwargs={"crs": "EPSG:4490", "encoding": "no-such-codec"}, error=InputError, match="--encoding",
        names_file=False)
    add("csv_binary_codec", lambda f: _write(f / "u.csv", "lon,lat\n113.3,40\n"),
        kwargs={"crs": "EPSG:4490", "encoding": "base64"}, error=InputError, match="not a text encoding",
        names_file=False)
    add("csv_ragged_rows", lambda f: _write(f / "r.csv", "lon,lat,a\n113.3,40,1\n113.3\n"),
        kwargs={"crs": "EPSG:4490"}, error=InputError, match="cannot read as CSV")
    add("csv_wkt_garbage", lambda f: _write(f / "w.csv", "wkt\nPOINT(1\nPOLYGON((0 0))\nPOINT(113.3 40)\n"),
        kwargs={"crs": "EPSG:4490"}, rejected=2, match="unreadable WKT")
    # -- .prj / CRS declarations
    def csv_with_prj(f: Path, prj: bytes) -> Path:
        _write(f / "p.prj", prj)
        return _write(f / "p.csv", "lon,lat\n113.3,40\n")
    add("prj_undecodable", lambda f: csv_with_prj(f, b"\xff\xfe\x00GEOGCS\x81"), error=CRSError, match="not text",
        names="p.prj")
    add("prj_undecodable_overridden", lambda f: csv_with_prj(f, b"\xff\xfe\x00GEOGCS\x81"),
        kwargs={"crs": "EPSG:4490"}, rejected=0)
    add("prj_not_a_crs", lambda f: csv_with_prj(f, b"PROJCS[\"bogus\"]"), error=CRSError, names="p.prj")
    def shp_with_prj(f: Path, prj: bytes) -> Path:
        points(3).to_file(f / "s.shp")
        _write(f / "s.prj", prj)
        return f / "s.shp"
    add("shp_prj_garbage", lambda f: shp_with_prj(f, b"\xff\xfegarbage\x81"), error=CRSError,
        match="cannot be resolved", names="s.prj")
    add("shp_prj_bogus_projcs", lambda f: shp_with_prj(f, b'PROJCS["b",GEOGCS["x",DATUM["y",SPHEROID["z",1,0]]]]'),
        error=CRSError, match="cannot read the CRS")
    add("geojson_crs_unresolvable", lambda f: _write(f / "c.geojson", fc(POINT, crs={
        "type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::999999"}})), error=CRSError,
        match="cannot be resolved")
    add("geojson_crs_without_name", lambda f: _write(f / "c.geojson", fc(POINT, crs={"type": "name"})),
        error=CRSError, match="names no CRS")
    add("crs_geocentric_for_lonlat", lambda f: _write(f / "g.csv", "lon,lat\n113.3,40\n"),
        kwargs={"crs": "EPSG:4978"}, error=CRSError, match="geocentric", names_file=False)
    add("crs_vertical", lambda f: _write(f / "g.csv", "lon,lat\n113.3,40\n"),
        kwargs={"crs": "EPSG:5773"}, error=CRSError, match="vertical", names_file=False)
    for name, code in {"arabic_indic": "EPSG:٤٤٩٠", "fullwidth": "４４９０", "superscript": "²"}.items():
        add(f"crs_digits_{name}", lambda f: _write(f / "g.csv", "lon,lat\n113.3,40\n"),
            kwargs={"crs": code}, error=CRSError, match="not ASCII", names_file=False)
    # -- content that is not what the extension says
    geojson = fc(POINT)
    add("gpkg_holding_geojson", lambda f: _write(f / "w.gpkg", geojson), error=InputError, match="content is JSON")
    add("geojson_holding_parquet", lambda f: _write(f / "w.geojson", _geoparquet(f / "p.parquet").read_bytes()),
        error=InputError, match="content is Parquet")
    add("parquet_holding_csv", lambda f: _write(f / "w.parquet", "lon,lat\n113.3,40\n"), error=InputError,
        match="content is plain text")
    add("shp_holding_json", lambda f: _write(f / "w.shp", geojson), error=InputError, match="content is JSON")
    add("csv_holding_sqlite", lambda f: _write(f / "w.csv", b"SQLite format 3\x00" + b"\0" * 100),
        error=InputError, match="content is SQLite")
    # -- a shapefile whose parts disagree: counts must still add up
    add("shp_more_shapes_than_records", lambda f: _shapefile(f, "m", 5, 3), rejected=2,
        match="without an attribute record")
    add("shp_more_records_than_shapes", lambda f: _shapefile(f, "r", 3, 5), rejected=2)
    # -- CityJSON that breaks its schema
    for name, doc in {
        "transform_without_translate": cityjson(transform={"scale": [1, 1, 1]}),
        "transform_nan": cityjson(transform={"scale": [1, 1, 1], "translate": [float("nan"), 0, 0]}),
        "vertices_ragged": cityjson(vertices=[[0, 0], [1]]),
        "vertices_not_numbers": cityjson(vertices=[["a", "b", "c"]]),
        "cityobjects_a_list": cityjson(CityObjects=[]),
        "not_cityjson": {"type": "FeatureCollection", "CityObjects": {}},
        "reference_system_a_number": cityjson(metadata={"referenceSystem": 4547}),
        "reference_system_unicode_digits": cityjson(metadata={"referenceSystem":
                                                              "https://www.opengis.net/def/crs/EPSG/0/٤٥٤٧"}),
    }.items():
        add(f"cityjson_{name}", lambda f, d=doc: _write(f / "c.city.json", json.dumps(d)), error=CimError)
    for name, boundaries in {"index_out_of_range": [[[0, 1, 99]]], "negative_index": [[[0, -1, 2]]],
                             "boundaries_a_string": "x", "ring_of_strings": [[["a", "b", "c"]]],
                             "index_beyond_int64": [[[0, 1, 2 ** 70]]], "too_shallow": [0, 1, 2]}.items():
        add(f"cityjson_{name}", lambda f, b=boundaries: _write(f / "c.city.json", json.dumps(cityjson(CityObjects={
            "bad": {"type": "Building", "geometry": [{"type": "MultiSurface", "boundaries": b}]},
            "good": cityjson()["CityObjects"]["b1"]}))), rejected=1)
    add("cityjson_deep_json", lambda f: _write(f / "d.city.json", '{"type":"CityJSON","CityObjects":{},'
                                                                  '"vertices":' + "[" * 100000 + "]" * 100000 + "}"),
        error=InputError, match="nested deeper")
    add("cityjson_not_utf8", lambda f: _write(f / "c.city.json", json.dumps(cityjson(), ensure_ascii=False)
                                              .replace('"h"', '"高度"').encode("gbk")), error=InputError,
        match="not UTF-8")
    # -- files that are empty, folders, junk
    add("empty_file", lambda f: _write(f / "e.geojson", b""), error=InputError, match="empty")
    add("a_folder", lambda f: (f / "dir.geojson").mkdir() or f / "dir.geojson", error=InputError, match="folder")
    add("binary_junk_csv", lambda f: _write(f / "j.csv", bytes(range(256)) * 8), error=InputError)
    return cases


def _build_inputs(d: Path) -> dict[str, Path]:
    """A small valid DEM (EPSG:4547) and two footprints, as GeoPackage and GeoParquet, in `d`."""
    from tests.tiles.server_support import write_dem_cog

    d.mkdir(parents=True, exist_ok=True)
    dem = d / "dem.tif" if (d / "dem.tif").exists() else write_dem_cog(d / "dem.tif", size=128)
    gpd.GeoDataFrame({"height": [10.0, 20.0]}, geometry=_boxes(), crs="EPSG:4547").to_parquet(d / "fp.parquet")
    gpd.GeoDataFrame({"height": [10.0, 20.0]}, geometry=_boxes(), crs="EPSG:4547").to_file(d / "fp.gpkg")
    return {"dem": dem, "fp_parquet": d / "fp.parquet", "fp_gpkg": d / "fp.gpkg"}


def _boxes() -> list[Any]:
    from tests.tiles.server_support import _origin

    x0, y0 = _origin(256.0)
    return [shapely.box(x0 + 50, y0 - 100, x0 + 70, y0 - 80), shapely.box(x0 + 100, y0 - 150, x0 + 130, y0 - 120)]


def _parquet_with(d: Path, name: str, wkb: list[bytes]) -> Path:
    base = _build_inputs(d)["fp_parquet"]
    t = pq.read_table(base)
    t = t.slice(0, len(wkb))
    t2 = t.set_column(t.column_names.index("geometry"), "geometry", pa.array(wkb, pa.binary()))
    pq.write_table(t2.replace_schema_metadata(t.schema.metadata), d / name)
    return d / name


def _huge_dem(d: Path) -> Path:
    """A DEM that declares 400,000 x 400,000 float32 cells in a file of a few KB (sparse tiles)."""
    import rasterio
    from rasterio.transform import from_origin

    from tests.tiles.server_support import _origin

    x0, y0 = _origin(256.0)
    d.mkdir(parents=True, exist_ok=True)
    with rasterio.open(d / "huge.tif", "w", driver="GTiff", width=400_000, height=400_000, count=1, dtype="float32",
                       crs="EPSG:4547", transform=from_origin(x0, y0, 0.001, 0.001), tiled=True, sparse_ok=True,
                       compress="deflate"):
        pass
    return d / "huge.tif"


def _truncated(d: Path) -> Path:
    raw = _build_inputs(d)["dem"].read_bytes()
    return _write(d / "truncated.tif", raw[: len(raw) // 2])


_LAUGHS = ('<?xml version="1.0"?>\n<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
           + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
           + ']>\n<ModelMetadata><SRS>&i;</SRS></ModelMetadata>\n')
SHARED_OSGB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "oblique_osgb" / "zhongshan"


def _production(d: Path, metadata: str, osgb: bytes | None = None) -> Path:
    """A ContextCapture production folder: `metadata.xml` and one tile whose root file holds `osgb`."""
    tile = d / "prod" / "Data" / "Tile_+000_+000"
    tile.mkdir(parents=True, exist_ok=True)
    _write(d / "prod" / "metadata.xml", metadata)
    if osgb is not None:
        _write(tile / "Tile_+000_+000.osgb", osgb)
    return d / "prod"


def _real_osgb_cut(d: Path) -> Path:
    import pytest

    src = SHARED_OSGB / "Data" / "Tile_+000_+012" / "Tile_+000_+012.osgb"
    if not src.is_file():
        pytest.skip(f"real data not found at {src}")
    raw = src.read_bytes()
    meta = (SHARED_OSGB / "metadata.xml").read_text(encoding="utf-8")
    return _production(d, meta, raw[: len(raw) * 2 // 3])


def build_corpus() -> list[Case]:
    """Broken inputs for `cim build` (`cim.build.build_city`): footprints, DEM, orthophoto, CRS option.

    `kwargs` values "{dem}" and "{fp}" name the valid DEM and footprints `make` wrote beside the broken file; the
    broken file itself goes to the option named by `role` in `kwargs["role"]`.
    """
    box = shapely.to_wkb(_boxes()[1])
    return [
        Case("footprints_nested_30", lambda d: _parquet_with(d, "n30.parquet", [nested_wkb(30, box), box]),
             {"role": "buildings"}, rejected=1),
        Case("footprints_nested_100000", lambda d: _parquet_with(d, "n.parquet", [nested_wkb(100_000, box), box]),
             {"role": "buildings"}, rejected=1),
        Case("footprints_only_nested", lambda d: _parquet_with(d, "only.parquet", [nested_wkb(30, box)]),
             {"role": "buildings"}, error=CimError, match="nested deeper"),
        Case("footprints_corrupt_wkb", lambda d: _parquet_with(d, "c.parquet", [box[:-4], box]),
             {"role": "buildings"}, rejected=1),
        Case("footprints_geo_metadata_broken", lambda d: (_build_inputs(d), _geoparquet(d / "g.parquet", geo=[1]))[1],
             {"role": "buildings"}, error=InputError, match="metadata"),
        Case("dem_truncated", _truncated, {"role": "dem"}, error=InputError, match="pixels cannot be read"),
        Case("dem_garbage", lambda d: _write(d / "garbage.tif", b"II*\x00" + bytes(range(256)) * 2),
             {"role": "dem"}, error=InputError, match="not a raster"),
        Case("dem_huge", _huge_dem, {"role": "dem"}, error=InputError, match="GiB"),
        Case("ortho_truncated", _truncated, {"role": "ortho"}, error=InputError, match="pixels cannot be read"),
        Case("crs_geocentric", lambda d: _build_inputs(d)["fp_gpkg"], {"role": "buildings", "crs": "EPSG:4978"},
             error=CRSError, match="geocentric", names_file=False),
        Case("crs_unicode_digits", lambda d: _build_inputs(d)["fp_gpkg"], {"role": "buildings", "crs": "EPSG:４５４７"},
             error=CRSError, match="not ASCII", names_file=False),
        Case("oblique_metadata_entity_expansion", lambda d: _production(d, _LAUGHS), {"role": "oblique"},
             error=InputError, match="not XML", names="metadata.xml"),
        Case("oblique_metadata_origin_nan", lambda d: _production(
            d, "<ModelMetadata><SRS>EPSG:4547</SRS><SRSOrigin>nan,0,inf</SRSOrigin></ModelMetadata>"),
            {"role": "oblique"}, error=InputError, match="not a finite number", names="metadata.xml"),
        Case("oblique_metadata_not_xml", lambda d: _production(d, "<ModelMetadata><SRS>"), {"role": "oblique"},
             error=InputError, match="not XML", names="metadata.xml"),
        Case("oblique_osgb_truncated", _real_osgb_cut, {"role": "oblique"}, error=InputError, match="osgb",
             names="Tile_+000_+000.osgb"),
    ]


__all__ = ["Case", "build_corpus", "layer_corpus", "nested_geojson", "nested_wkb"]
