"""The standard-address model (GB/T 35639-2017, 地址模型) and its home in the layer store.

A standard address is one row of components 省 / 市 / 区县 / 乡镇街道 / 社区村 / 街路巷 / 门牌号 / 小区 / 楼栋, with a code,
a point and the building it belongs to. 单元 / 楼层 / 户室 below the building are carried by the 一标三实 records
that link to it (`layers.addresses.links`). A city's standard addresses are the layer `addresses` of the store
(theme 公共专题/地名地址), versioned like any layer: built from the building footprints' address attributes
(`addresses_from_footprints`, `addresses_from_layer`) or read from a registry file (`read_address_file`), then
written with `save_addresses` and read back with `load_addresses`.

The code: the 12-digit code of the community (社区/村, else the town's 9 digits or the county's 6, padded with
zeros) followed by a 6-digit serial within it, in the order road, door number, building; 18 digits.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import shapely
from pydantic import BaseModel

from layers.addresses.errors import AddressInputError
from layers.addresses.gazetteer import Gazetteer
from layers.addresses.parser import AddressParser
from layers.addresses.text import normalise

LAYER = "addresses"
THEME = "public_topics/place_names"
FIELDS = ("code", "address", "province", "city", "district", "town", "community", "road", "number", "estate",
          "building", "estate_building", "building_code", "district_code", "town_code", "community_code")
# the standard's component names (GB/T 35639) and the headers registries use for them
COMPONENT_TITLES = {"province": "省", "city": "市", "district": "区县", "town": "乡镇街道", "community": "社区村",
                    "road": "街路巷", "number": "门牌号", "estate": "小区", "building": "楼栋", "unit": "单元",
                    "floor": "楼层", "room": "户室"}
_HEADERS = {**{v: k for k, v in COMPONENT_TITLES.items()}, "区": "district", "县": "district", "街道": "town",
            "乡镇": "town", "社区": "community", "村": "community", "道路": "road", "街路": "road", "门牌": "number",
            "楼号": "building", "地址编码": "code", "编码": "code", "标准地址": "address", "地址": "address",
            "建筑编码": "building_code", "楼栋编码": "building_code"}
_NAME_FORMS = re.compile(r"^(?P<estate>.+?)(?P<n>\d+|[A-Z])(?:号楼|号教学楼|号厂房|号民居|号|栋|幢|座)$")
ProgressFn = Callable[[str, int, int], None]


@dataclass
class AddressTable:
    """Standard addresses in memory.

    Attributes:
        table: the FIELDS as string columns, plus `lon`, `lat` (float64, CGCS2000 degrees).
    """

    table: pa.Table

    def __len__(self) -> int:
        return self.table.num_rows

    def column(self, name: str) -> list[Any]:
        return self.table.column(name).to_pylist()

    def to_geodataframe(self) -> Any:
        import geopandas as gpd

        df = self.table.drop_columns(["lon", "lat"]).to_pandas()
        pts = shapely.points(self.table.column("lon").to_numpy(), self.table.column("lat").to_numpy())
        return gpd.GeoDataFrame(df, geometry=pts, crs="EPSG:4490")


def compose(row: dict[str, Any], *, community: bool = True) -> str:
    """The standard address text of a row of components: 山西省大同市平城区东街街道(华严社区)友谊街108号(1号楼)."""
    parts = [row.get(k) or "" for k in ("province", "city", "district", "town")]
    if community:
        parts.append(row.get("community") or "")
    if row.get("road"):
        parts.append(row["road"])
        if row.get("number"):
            parts.append(f"{row['number']}号")
        if row.get("building"):
            parts.append(f"{row['building']}号楼")
    elif row.get("estate"):
        parts.append(row["estate"])
        if row.get("estate_building"):
            parts.append(f"{row['estate_building']}号楼")
    return "".join(parts)


def _codes(rows: list[dict[str, Any]]) -> list[str]:
    """18-digit codes: the most specific division code (padded to 12) + a serial in road, number, building order."""
    def key(i: int) -> tuple[Any, ...]:
        r = rows[i]
        num = r.get("number") or ""
        parts = [int(p) if p.isdigit() else 0 for p in num.split("-")]
        return (r.get("road") or "", parts, r.get("building") or "", r.get("estate") or "",
                r.get("estate_building") or "", i)

    serial: dict[str, int] = {}
    codes = [""] * len(rows)
    for i in sorted(range(len(rows)), key=key):
        r = rows[i]
        div = (r.get("community_code") or r.get("town_code") or r.get("district_code") or "").ljust(12, "0")[:12]
        div = div if div.strip("0") else "0" * 12
        serial[div] = serial.get(div, 0) + 1
        codes[i] = f"{div}{serial[div]:06d}"
    return codes


def _table(rows: list[dict[str, Any]], lon: np.ndarray, lat: np.ndarray) -> AddressTable:
    cols = {f: pa.array([r.get(f) for r in rows], pa.string()) for f in FIELDS}
    cols["lon"] = pa.array(np.asarray(lon, np.float64))
    cols["lat"] = pa.array(np.asarray(lat, np.float64))
    return AddressTable(pa.table(cols))


def _fill_divisions(rows: list[dict[str, Any]], lon: np.ndarray, lat: np.ndarray, gaz: Gazetteer) -> None:
    """Town and community from the store's polygons where the text names none (or names another: the polygon
    containing the building is the standard's answer), with their codes and the county above them."""
    for level in ("town", "community"):
        codes = gaz.locate_many(lon, lat, level)
        for r, code in zip(rows, codes, strict=True):
            if code is not None:
                d = gaz.division(code)
                r[level], r[f"{level}_code"] = d.name if d else r.get(level), code
    for r in rows:
        code = r.get("community_code") or r.get("town_code")
        if code and not r.get("district_code"):
            r["district_code"] = code[:6]
        dcode = r.get("district_code")
        if dcode:
            chain = {d.level: d.name for d in (gaz.division(c) for c in (dcode, dcode[:4] + "00", dcode[:2] + "0000"))
                     if d is not None}
            for level in ("province", "city", "district"):
                if not r.get(level) and chain.get(level):
                    r[level] = chain[level]


def addresses_from_footprints(
    footprints: Any,
    gazetteer: Gazetteer,
    *,
    address_field: str = "address",
    name_field: str | None = "name",
    code_field: str | None = "code",
    progress: ProgressFn | None = None,
) -> tuple[AddressTable, list[tuple[str, str]]]:
    """Standard addresses of buildings from their address attributes.

    Each footprint's address text is parsed; its town and community come from the division polygons containing
    its representative point; its estate (小区) and estate building number come from a name of the form
    `<estate><n>号楼` (号教学楼, 号厂房, 号民居, 栋, 幢, 座) or a name that is not the road-and-number form.

    Args:
        footprints: a GeoDataFrame of building footprints (any CRS).
        gazetteer: divisions (with the store's town and community polygons).
        address_field: the attribute holding the address text.
        name_field: the attribute holding the building name (for 小区 and 楼栋), or None.
        code_field: the attribute holding the building's code, or None (then the row number).
        progress: called as progress("addresses", done, total).

    Returns:
        The standard addresses, and the footprints skipped as (building code, reason): no address text, or a
        text without a road and door number or an estate.

    Raises:
        AddressInputError: `address_field` is not a column.
    """
    if address_field not in footprints.columns:
        raise AddressInputError(f"footprints have no address field {address_field!r}; fields: "
                                f"{', '.join(map(str, footprints.columns))}; pass --address-field")
    gdf = footprints.to_crs("EPSG:4490") if footprints.crs is not None else footprints
    pts = shapely.point_on_surface(gdf.geometry.values)
    lon_all, lat_all = shapely.get_x(pts), shapely.get_y(pts)
    texts = gdf[address_field].tolist()
    names = gdf[name_field].tolist() if name_field and name_field in gdf.columns else [None] * len(gdf)
    bcodes = [str(c) for c in gdf[code_field].tolist()] if code_field and code_field in gdf.columns \
        else [str(i + 1) for i in range(len(gdf))]
    parser = AddressParser(gazetteer)
    rows: list[dict[str, Any]] = []
    keep: list[int] = []
    skipped: list[tuple[str, str]] = []
    n = len(texts)
    for i, text in enumerate(texts):
        if progress is not None and i % 5000 == 0:
            progress("addresses", i, n)
        if not isinstance(text, str) or not text.strip():
            skipped.append((bcodes[i], "no address text"))
            continue
        a = parser.parse(text)
        row: dict[str, Any] = {k: getattr(a, k) for k in ("province", "city", "district", "town", "community",
                                                          "road", "number", "building")}
        row["district_code"] = a.codes.get("district")
        name = names[i]
        if isinstance(name, str) and name:
            nm = normalise(name)
            m = _NAME_FORMS.match(nm)
            if m and not (a.road and nm.startswith(a.road)):
                row["estate"], row["estate_building"] = m.group("estate"), m.group("n")
            elif not any(c.isdigit() for c in nm):
                row["estate"] = nm
        if not (a.road and a.number) and not row.get("estate"):
            skipped.append((bcodes[i], f"address {text!r} has no road and door number"))
            continue
        if a.road and not a.number:
            skipped.append((bcodes[i], f"address {text!r} has no door number"))
            continue
        row["building_code"] = bcodes[i]
        rows.append(row)
        keep.append(i)
    if progress is not None:
        progress("addresses", n, n)
    idx = np.asarray(keep, dtype=np.int64)
    lon, lat = lon_all[idx], lat_all[idx]
    _fill_divisions(rows, lon, lat, gazetteer)
    for r, code in zip(rows, _codes(rows), strict=True):
        r["code"] = code
        r["address"] = compose(r, community=False)
    return _table(rows, lon, lat), skipped


def addresses_from_layer(store: Any, layer: str = "buildings", *, gazetteer: Gazetteer | None = None,
                         address_field: str = "address", name_field: str | None = "name",
                         code_field: str | None = "code", progress: ProgressFn | None = None
                         ) -> tuple[AddressTable, list[tuple[str, str]]]:
    """`addresses_from_footprints` over a layer of the store (the gazetteer defaults to the store's divisions)."""
    gaz = gazetteer or Gazetteer.from_store(store)
    info = store.info(layer)
    fields = [f for f in (address_field, name_field, code_field) if f and f in info.field_names()]
    gdf = store.query(layer, fields=fields)
    return addresses_from_footprints(gdf, gaz, address_field=address_field, name_field=name_field,
                                     code_field=code_field, progress=progress)


def read_address_file(path: str | Path, gazetteer: Gazetteer, *, crs: str | None = None,
                      encoding: str | None = None) -> AddressTable:
    """Standard addresses from a registry file (CSV with lon/lat or WKT, GeoPackage, GeoJSON, GeoParquet...).

    Columns are the components by their English names (FIELDS) or the standard's Chinese titles (省, 市, 区县,
    乡镇街道, 社区村, 街路巷, 门牌号, 小区, 楼栋, 地址编码, 建筑编码...); a file with only a full address column
    (`address`/`地址`/`标准地址`) is parsed. Missing codes are assigned as in `addresses_from_footprints`.

    Raises:
        AddressInputError: neither components (街路巷 + 门牌号, or 小区) nor an address column.
    """
    from layers.ingest import stage
    from layers.sources import read_source

    p = Path(path)
    if crs is None and p.suffix.lower() == ".csv" and not p.with_suffix(".prj").exists():
        crs = "EPSG:4490"  # lon/lat columns of a registry without a .prj: CGCS2000
    staged = stage(read_source(p, crs=crs, encoding=encoding))
    t = staged.table  # back into the file's order (staging sorts along a Hilbert curve)
    t = t.take(pa.array(np.argsort(t.column("fid").to_numpy(), kind="stable"))).drop_columns(["fid"])
    cols = {c: _HEADERS.get(c, _HEADERS.get(c.strip(), c)) for c in t.column_names}
    data = {cols[c]: t.column(c).to_pylist() for c in t.column_names if cols[c] in FIELDS}
    n = t.num_rows
    if not ({"road", "number"} <= set(data) or "estate" in data or "address" in data):
        raise AddressInputError(f"{path}: no address components (街路巷/road + 门牌号/number, or 小区/estate) and no "
                                f"address column among {', '.join(t.column_names)}")
    rows: list[dict[str, Any]] = [{k: (None if v[i] is None else str(v[i]).strip() or None) for k, v in data.items()}
                                  for i in range(n)]
    parser = AddressParser(gazetteer)
    for r in rows:
        if not r.get("road") and not r.get("estate") and r.get("address"):
            a = parser.parse(r["address"])
            for k in ("province", "city", "district", "town", "community", "road", "number", "estate", "building"):
                r.setdefault(k, getattr(a, k))
                if r[k] is None:
                    r[k] = getattr(a, k)
        for k in ("road", "estate", "number", "building", "estate_building"):
            if r.get(k):
                r[k] = normalise(r[k]).removesuffix("号楼").removesuffix("号") if k in (
                    "number", "building", "estate_building") else normalise(r[k])
    pts = shapely.from_wkb(t.column("geom").to_numpy(zero_copy_only=False))
    pts = shapely.point_on_surface(pts)
    lon, lat = shapely.get_x(pts), shapely.get_y(pts)
    _fill_divisions(rows, lon, lat, gazetteer)
    missing = [i for i, r in enumerate(rows) if not r.get("code")]
    if missing:
        codes = _codes(rows)
        for i in missing:
            rows[i]["code"] = codes[i]
    for r in rows:
        r["address"] = compose(r, community=False)
    return _table(rows, lon, lat)


def save_addresses(store: Any, addresses: AddressTable, *, name: str = LAYER, security: str | None = None,
                   title: str = "标准地址", department: str | None = None, new_version: bool = False,
                   source: str = "standard addresses") -> Any:
    """Write standard addresses as a layer (a new version with `new_version=True`); returns the ImportReport.

    The layer's key is `code`, so `cim layers diff addresses 1 2` lists addresses added, removed and changed.
    """
    from pyproj import CRS

    from layers.ingest import stage
    from layers.sources import SourceData

    t = addresses.table
    if t.num_rows == 0:
        raise AddressInputError("no standard addresses to save (every footprint was skipped; see the report)")
    wkb = shapely.to_wkb(shapely.points(t.column("lon").to_numpy(), t.column("lat").to_numpy()))
    attrs = t.drop_columns(["lon", "lat"]).append_column("geom", pa.array(wkb, pa.binary()))
    src = SourceData(Path(source), "addresses", attrs, None, CRS.from_epsg(4490))
    t0 = time.perf_counter()
    staged = stage(src, key_field="code")
    return store.commit(staged, name, THEME if not new_version else None, title=title, department=department,
                        security=security or ("public" if not new_version else None), new_version=new_version,
                        started=t0)


class AddressBuild(BaseModel):
    """What `build_address_layer` / `import_address_file` stored."""

    layer: str
    version: int
    addresses: int
    skipped: list[tuple[str, str]]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def build_address_layer(store: Any, source_layer: str = "buildings", *, name: str = LAYER,
                        address_field: str = "address", name_field: str | None = "name",
                        code_field: str | None = "code", security: str | None = None, new_version: bool = False,
                        progress: ProgressFn | None = None) -> AddressBuild:
    """Standard addresses of a footprint layer of the store, written as the layer `name` (the library function
    behind `cim geocode build`)."""
    t0 = time.perf_counter()
    table, skipped = addresses_from_layer(store, source_layer, address_field=address_field, name_field=name_field,
                                          code_field=code_field, progress=progress)
    report = save_addresses(store, table, name=name, security=security, new_version=new_version,
                            source=f"layer {source_layer}")
    return AddressBuild(layer=name, version=report.version, addresses=len(table), skipped=skipped,
                        seconds=round(time.perf_counter() - t0, 3))


def import_address_file(store: Any, path: str | Path, *, name: str = LAYER, crs: str | None = None,
                        encoding: str | None = None, security: str | None = None, new_version: bool = False
                        ) -> AddressBuild:
    """A registry file of standard addresses written as the layer `name`, with the store's divisions as
    gazetteer (the library function behind `cim geocode import`)."""
    t0 = time.perf_counter()
    table = read_address_file(path, Gazetteer.from_store(store), crs=crs, encoding=encoding)
    report = save_addresses(store, table, name=name, security=security, new_version=new_version, source=str(path))
    return AddressBuild(layer=name, version=report.version, addresses=len(table), skipped=[],
                        seconds=round(time.perf_counter() - t0, 3))


def load_addresses(store: Any, name: str = LAYER, version: int | None = None) -> AddressTable:
    """A standard-address layer of the store back in memory.

    Raises:
        AddressesNotFoundError: no such layer visible to the store's clearance.
    """
    from layers.addresses.errors import AddressesNotFoundError
    from layers.errors import LayerNotFoundError

    try:
        info = store.info(name, version)
    except LayerNotFoundError as exc:
        raise AddressesNotFoundError(f"no standard-address layer {name!r} in {store.path}; build one with "
                                     f"`cim geocode build` (from the buildings' addresses) or "
                                     f"`cim geocode import FILE`") from exc
    missing = {"code", "road", "number"} - set(info.field_names())
    if missing:
        raise AddressInputError(f"layer {name!r} is not a standard-address layer: it lacks {sorted(missing)}")
    t = store.query_arrow(name, version=version)
    pts = shapely.from_wkb(t.column("geom").to_numpy(zero_copy_only=False))
    cols = {f: (t.column(f).cast(pa.string()) if f in t.column_names else pa.nulls(t.num_rows, pa.string()))
            for f in FIELDS}
    cols["lon"] = pa.array(shapely.get_x(pts))
    cols["lat"] = pa.array(shapely.get_y(pts))
    return AddressTable(pa.table(cols))


def select(addresses: AddressTable, mask: Sequence[bool] | np.ndarray) -> AddressTable:
    return AddressTable(addresses.table.filter(pa.array(np.asarray(mask, bool))))


__all__ = ["COMPONENT_TITLES", "FIELDS", "LAYER", "THEME", "AddressBuild", "AddressTable",
           "addresses_from_footprints", "addresses_from_layer", "build_address_layer", "import_address_file", "compose", "load_addresses", "read_address_file", "save_addresses", "select"]
