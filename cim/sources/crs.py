"""Coordinate reference systems: read them from what the data says, compute in east/north order and float64.

Every transformation in the project goes through `transformer()` (always_xy, cached) so that no axis-order trap
(EPSG:4490 and EPSG:4547 are declared north/east) can slip in. A CRS given as WKT is built from its parameters: when
the WKT also carries an authority code that the parameters contradict (a ContextCapture `metadata.xml` labelled
EPSG:4547 whose central meridian is 113.37), the code is dropped and the parameters win.
"""

from __future__ import annotations

import functools
import math
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError as _PyprojCRSError

from cim.errors import CimWarning, CRSError

CGCS2000 = "EPSG:4490"
ECEF = "EPSG:4978"  # WGS 84 geocentric, the frame of 3D Tiles
WGS84_3D = "EPSG:4979"

CRSLike = CRS | str | int


class CRSLabelWarning(CimWarning):
    """A WKT's authority code disagrees with its own parameters; the parameters were used."""


_ASCII_CODE = re.compile(r"[0-9]{1,9}")
_WKT_START = re.compile(r"^\s*(PROJCS|GEOGCS|GEOCCS|COMPD_CS|VERT_CS|LOCAL_CS|PROJCRS|GEOGCRS|GEODCRS|COMPOUNDCRS|"
                        r"VERTCRS|BOUNDCRS|ENGCRS|PROJECTEDCRS|GEODETICCRS)\s*\[", re.I)


def parse_crs(value: CRSLike | os.PathLike[str], *, what: str = "CRS") -> CRS:
    """Build a CRS from an EPSG code, `EPSG:n`, WKT 1/2, PROJJSON, a PROJ string or a `.prj`/`.wkt` file.

    Args:
        value: the CRS as given by the data or the user.
        what: how to name the value in an error message (e.g. "--crs" or the file it came from).

    Returns:
        The CRS; for WKT whose authority code contradicts its parameters, the CRS without that code.

    Raises:
        CRSError: the value is not a CRS pyproj can build.
    """
    if isinstance(value, CRS):
        return value
    if isinstance(value, os.PathLike) or (isinstance(value, str) and value.lower().endswith((".prj", ".wkt"))):
        path = Path(value)
        if not path.is_file():
            raise CRSError(f"{what}: CRS file {path} does not exist")
        value = path.read_text(encoding="utf-8", errors="replace")
    if isinstance(value, int) or (isinstance(value, str) and _ASCII_CODE.fullmatch(value.strip())):
        value = f"EPSG:{int(value)}"
    text = str(value).strip()
    if "[" not in text and "{" not in text and any(c.isdigit() and not c.isascii() for c in text):
        # '٤٥٤٧', '４５４７' or '²' look like codes to a reader and to str.isdigit, and PROJ does not take them
        raise CRSError(f"{what}: {text[:80]!r} has digits that are not ASCII 0-9; write the code with 0-9 "
                       f"(e.g. EPSG:4547)")
    if not text:
        raise CRSError(f"{what}: empty CRS; pass an EPSG code (e.g. EPSG:4547) or WKT")
    try:
        crs = CRS.from_user_input(text)
    except _PyprojCRSError as exc:
        raise CRSError(f"{what}: cannot build a CRS from {text[:80]!r}: {exc}; pass EPSG:n or WKT") from exc
    if _WKT_START.match(text):
        crs = _trust_parameters(crs, what)
    return crs


def horizontal_crs(crs: CRS, what: str = "CRS") -> CRS:
    """The CRS that 2D coordinates of a map layer are in: a geographic or projected CRS, or the horizontal part of
    a compound one.

    Raises:
        CRSError: a geocentric, vertical or engineering CRS: its coordinates are not lon/lat or east/north, and
            taking them as such would put every feature in the wrong place without a word.
    """
    if crs.is_compound:
        crs = crs.sub_crs_list[0]
    if crs.is_geographic or crs.is_projected:
        return crs
    kind = ("geocentric (X, Y, Z from the Earth's centre)" if crs.is_geocentric
            else "vertical" if crs.is_vertical else f"a {crs.type_name}")
    raise CRSError(f"{what}: {crs.name} is {kind}, not a CRS of lon/lat or east/north coordinates; pass a "
                   f"geographic or projected CRS (e.g. EPSG:4490 or EPSG:4547)")


def _trust_parameters(crs: CRS, what: str) -> CRS:
    """Drop the root authority code of a WKT CRS when the code's own definition differs from the parameters."""
    auth = _root_id(crs)
    if auth is None:
        return crs
    try:
        labelled = CRS.from_authority(*auth)
    except _PyprojCRSError:
        labelled = None
    if labelled is not None and _same_definition(crs, labelled):
        return labelled
    stripped = _strip_root_id(crs)
    warnings.warn(
        f"{what}: the WKT says {auth[0]}:{auth[1]} but its parameters define another CRS "
        f"({stripped.name!r}); using the parameters",
        CRSLabelWarning,
        stacklevel=3,
    )
    return stripped


def _root_id(crs: CRS) -> tuple[str, str] | None:
    ids = crs.to_json_dict().get("id")
    if isinstance(ids, dict) and "authority" in ids:
        return str(ids["authority"]), str(ids["code"])
    return None


def _strip_root_id(crs: CRS) -> CRS:
    data: dict[str, Any] = crs.to_json_dict()
    data.pop("id", None)
    data.pop("ids", None)
    return CRS.from_json_dict(data)


def _same_definition(a: CRS, b: CRS) -> bool:
    """True when two CRSs define the same coordinates (ignoring names and authority codes)."""
    if a.is_exact_same(b) or a.equals(b, ignore_axis_order=True):
        return True
    # WKT1 spells names differently ("China_2000") and has no axis order, so compare what defines the
    # coordinates: the projection and ellipsoid parameters of the PROJ form.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            pa, pb = a.to_proj4(), b.to_proj4()
        except _PyprojCRSError:
            return False
    return bool(pa) and pa == pb and a.datum is not None and b.datum is not None and (
        a.ellipsoid == b.ellipsoid if a.ellipsoid is not None and b.ellipsoid is not None else True)


def crs_from_file(path: str | os.PathLike[str]) -> CRS | None:
    """The CRS a raster or vector file declares, or None when it declares none."""
    import pyogrio
    import rasterio

    p = str(path)
    try:
        with rasterio.open(p) as src:
            return parse_crs(src.crs.to_wkt(), what=p) if src.crs else None
    except rasterio.errors.RasterioIOError:
        pass
    info = pyogrio.read_info(p)
    return parse_crs(info["crs"], what=p) if info.get("crs") else None


@functools.lru_cache(maxsize=64)
def _cached_transformer(src_wkt: str, dst_wkt: str) -> Transformer:
    return Transformer.from_crs(CRS.from_wkt(src_wkt), CRS.from_wkt(dst_wkt), always_xy=True)


class _ByObject:
    """The last `size` values remembered by the identity of the objects they were made from (the objects are held,
    so their ids are not reused); safe to share between threads."""

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._items: dict[tuple[int, ...], tuple[tuple[Any, ...], Any]] = {}
        self._lock = threading.Lock()

    def get(self, *objects: Any) -> Any | None:
        hit = self._items.get(tuple(map(id, objects)))
        if hit is not None and all(a is b for a, b in zip(hit[0], objects, strict=True)):
            return hit[1]
        return None

    def put(self, value: Any, *objects: Any) -> None:
        with self._lock:
            if len(self._items) >= self._size:
                self._items.pop(next(iter(self._items)), None)
            self._items[tuple(map(id, objects))] = (objects, value)


_PAIRS = _ByObject()  # (src, dst) CRS objects -> their transformer


def transformer(src: CRSLike, dst: CRSLike) -> Transformer:
    """A cached transformer from `src` to `dst` with x/y = east/north (lon/lat) order on both sides.

    Cached by the two CRSs' WKT, and for CRS objects also by the objects themselves (the last 64 pairs): a build
    asks for the same pair once per tile or node, and writing two WKTs costs more than the transform of a small mesh.
    """
    objects = isinstance(src, CRS) and isinstance(dst, CRS)
    hit = _PAIRS.get(src, dst) if objects else None
    if hit is not None:
        return hit
    out = _cached_transformer(parse_crs(src).to_wkt(), parse_crs(dst).to_wkt())
    if objects:
        _PAIRS.put(out, src, dst)
    return out


_3D = _ByObject()  # CRS object -> crs.to_3d()


def to_3d(crs: CRSLike) -> CRS:
    """The 3D form of a CRS (a projected CRS with an ellipsoidal height axis) so z passes through transforms.

    Remembered for the last 64 CRS objects: PROJ takes about a millisecond to build it, and an oblique production
    converts every node's vertices to ECEF through it (122 nodes in the Zhongshan sample). Kept per object, not per
    WKT: two CRSs with the same WKT can have 3D forms that differ in their identifiers.
    """
    crs = parse_crs(crs)
    if len(crs.axis_info) >= 3 or crs.is_geocentric:
        return crs
    hit = _3D.get(crs)
    if hit is not None:
        return hit
    out = crs.to_3d()
    _3D.put(out, crs)
    return out


def to_ecef(crs: CRSLike, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Transform source coordinates to Earth-centred Earth-fixed metres (EPSG:4978), float64.

    Heights are taken as heights above the ellipsoid of the source datum (no geoid model is applied).

    Returns:
        (n, 3) float64 ECEF coordinates.
    """
    t = transformer(to_3d(crs), ECEF)
    ex, ey, ez = t.transform(np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(z, np.float64))
    return np.column_stack([ex, ey, ez])


def from_ecef(crs: CRSLike, xyz: np.ndarray) -> np.ndarray:
    """Inverse of `to_ecef`: (n, 3) ECEF metres to (n, 3) source coordinates, float64."""
    t = transformer(ECEF, to_3d(crs))
    xyz = np.asarray(xyz, np.float64)
    x, y, z = t.transform(xyz[:, 0], xyz[:, 1], xyz[:, 2])
    return np.column_stack([x, y, z])


def lonlat(crs: CRSLike, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Source coordinates to longitude/latitude degrees in the source's own geographic CRS (east/north)."""
    crs = parse_crs(crs)
    geo = crs.geodetic_crs or CRS.from_user_input(CGCS2000)
    return transformer(crs, geo).transform(np.asarray(x, np.float64), np.asarray(y, np.float64))


def utm_crs(lon: float, lat: float) -> CRS:
    """The WGS 84 / UTM zone holding (lon, lat): EPSG:326zz north of the equator, EPSG:327zz south."""
    zone = min(60, max(1, int(math.floor((lon + 180.0) / 6.0)) + 1))
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def gauss_kruger_crs(lon: float) -> CRS | None:
    """The CGCS2000 3-degree Gauss-Krüger CRS (central meridian in the name, no zone prefix in x: EPSG:4534-4554)
    whose central meridian is nearest to `lon`; None outside China's zones (central meridians 75-135 E)."""
    cm = 3 * math.floor((lon + 1.5) / 3.0)  # zones meet at the meridian +- 1.5 degrees; the edge goes east
    if not 75 <= cm <= 135:
        return None
    return CRS.from_epsg(4534 + (cm - 75) // 3)


def is_cgcs2000(crs: CRSLike) -> bool:
    """True when the CRS's datum is CGCS2000 (China Geodetic Coordinate System 2000)."""
    geo = parse_crs(crs).geodetic_crs
    return geo is not None and geo.datum is not None and "2000" in geo.datum.name and "China" in geo.datum.name


def local_projected_crs(lon: float, lat: float, like: CRSLike | None = None) -> CRS:
    """A projected CRS in metres for data around (lon, lat), chosen from what the data says.

    Data on the CGCS2000 datum (EPSG:4490 and its projections) gets the 3-degree Gauss-Krüger zone of CGCS2000
    whose central meridian is nearest (EPSG:4534-4554, easting 500 km on the meridian, no zone prefix: the CRS of
    Chinese city surveys), as Chinese surveying does; other data gets the UTM zone of the place on the data's own
    datum (EPSG:326zz/327zz for WGS 84 or no CRS given; ETRS89 / UTM zone 31N is EPSG:25831), so no datum shift
    enters. CGCS2000 data outside China's zones gets its UTM zone.

    Args:
        lon, lat: the data's centre in degrees (east, north).
        like: the data's own CRS (its datum decides between Gauss-Krüger and UTM).
    """
    if like is not None and is_cgcs2000(like):
        gk = gauss_kruger_crs(lon)
        if gk is not None:
            return gk
    geo = parse_crs(like).geodetic_crs if like is not None else None
    if geo is None or geo.to_epsg() == 4326 or geo.equals(CRS.from_epsg(4326), ignore_axis_order=True) \
            or is_cgcs2000(geo):
        return utm_crs(lon, lat)
    from pyproj.crs import ProjectedCRS
    from pyproj.crs.coordinate_operation import UTMConversion

    zone = min(60, max(1, int(math.floor((lon + 180.0) / 6.0)) + 1))
    south = lat < 0
    utm = ProjectedCRS(UTMConversion(zone, "S" if south else "N"),
                       name=f"{geo.name} / UTM zone {zone}{'S' if south else 'N'}", geodetic_crs=geo)
    code = utm.to_epsg()  # name it by its EPSG code when it has one
    return CRS.from_epsg(code) if code else utm


def working_crs(*candidates: CRSLike | None, lon: float, lat: float, like: CRSLike | None = None) -> CRS:
    """The projected CRS a build computes in: the first projected candidate (pass the DEM's CRS first, then the
    data's), else a local projected CRS for (lon, lat) chosen from the data (`local_projected_crs`).

    Args:
        candidates: CRSs in order of preference; None and geographic ones are passed over.
        lon, lat: the data's centre in degrees (used only when no candidate is projected).
        like: the data's own CRS, whose datum picks Gauss-Krüger (CGCS2000) or UTM.
    """
    for c in candidates:
        if c is None:
            continue
        h = parse_crs(c)
        h = h.sub_crs_list[0] if h.is_compound else h  # RD New of RD New + NAP height
        if h.is_projected:
            return h
    return local_projected_crs(lon, lat, like=like)


def crs_hint(lon: float | None = None, lat: float | None = None, *, sample_xy: tuple[float, float] | None = None,
             option: str = "--crs") -> str:
    """A hint naming the CLI option and CRSs that fit where the data is, e.g.
    "pass --crs EPSG:4547 (CGCS2000 / 3-degree Gauss-Kruger CM 114E) or --crs EPSG:32649 (WGS 84 / UTM zone 49N)".

    Args:
        lon, lat: where the data (or the other inputs of the build) lie, when known.
        sample_xy: one coordinate pair of the data without a CRS: lon/lat-like numbers and Gauss-Krüger x values
            with a zone prefix (e.g. 38 500 000) are recognised.
        option: the option to name.
    """
    choices: list[CRS] = []
    if sample_xy is not None:
        x, y = sample_xy
        if -180 <= x <= 180 and -90 <= y <= 90:
            choices = [CRS.from_epsg(4326), CRS.from_epsg(4490)] if _in_china(x, y) else [CRS.from_epsg(4326)]
            lon = lat = None  # lon/lat numbers: only geographic CRSs fit
        elif 25_000_000 <= x < 46_000_000 and 0 < y < 10_000_000:
            zone = int(x // 1_000_000)
            choices = [CRS.from_epsg(4513 + zone - 25)]  # CGCS2000 3-degree GK zones 25-45, with the zone prefix
    if lon is not None and lat is not None and math.isfinite(lon) and math.isfinite(lat):
        gk = gauss_kruger_crs(lon) if _in_china(lon, lat) else None
        for c in (gk, utm_crs(lon, lat)):
            if c is not None and c not in choices:
                choices.append(c)
    if not choices:
        return f"pass {option} EPSG:n, the CRS the data was made in (e.g. {option} EPSG:4547 for CGCS2000 / " \
               f"3-degree Gauss-Kruger CM 114E)"
    names = [f"{option} EPSG:{c.to_epsg()} ({c.name})" for c in choices[:3]]
    return "pass " + " or ".join(names)


def _in_china(lon: float, lat: float) -> bool:
    """Roughly within China's extent (the box of its Gauss-Krüger zones); good enough to order hints."""
    return 73.0 <= lon <= 136.0 and 17.0 <= lat <= 54.0


__all__ = [
    "horizontal_crs",
    "CGCS2000",
    "CRSLabelWarning",
    "ECEF",
    "crs_from_file",
    "crs_hint",
    "gauss_kruger_crs",
    "is_cgcs2000",
    "local_projected_crs",
    "utm_crs",
    "working_crs",
    "from_ecef",
    "lonlat",
    "parse_crs",
    "to_3d",
    "to_ecef",
    "transformer",
    "pyproj",
]
