"""Raster tiles from Cloud-Optimised GeoTIFFs (orthophotos and DEMs) with rio-tiler and morecantile.

Two tile matrix sets (`get_tms`): `WebMercatorQuad` (XYZ, what web maps use) and `CGCS2000Quad`, the CGCS2000
geographic grid (EPSG:4490) of Tianditu's "c" tiles: level 0 is 2 x 1 tiles of 256 px over the globe (Tianditu
numbers that level 1), each level halving the cell size.

A `RasterMap` is a named COG with a kind: an `image` (orthophoto: its RGB bands, alpha or nodata as transparency)
or a `dem` (elevation band, encoded as Mapbox Terrain-RGB: height = -10000 + (R * 65536 + G * 256 + B) * 0.1 m).
Readers are kept open per thread (rasterio datasets are not thread-safe), so a tile costs one windowed read.

    >>> m = RasterMap("ortho", "city/ortho.tif", "image")
    >>> png = m.tile("WebMercatorQuad", 16, 53573, 24698, "png").content  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import os
import threading
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import morecantile
import numpy as np
import pyproj
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader

from tiles.errors import TileNotFoundError, TileRequestError

MapKind = Literal["image", "dem"]
ImageFormat = Literal["png", "jpg", "webp"]

MEDIA_TYPES: dict[str, str] = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
_GDAL_DRIVERS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
TILE_SIZE = 256
TERRAIN_RGB_BASE = -10000.0
TERRAIN_RGB_STEP = 0.1


class _Reader(Reader):
    """rio-tiler's `Reader` whose tile-in-dataset test reuses one transformer: the inherited test builds a new
    TMS -> dataset CRS transformation per tile (rasterio `transform_bounds`), 22-28 ms for CGCS2000 Gauss-Krueger
    to Web Mercator on this machine, a quarter of an orthophoto tile. Same rule: the tile's bounds, densified (21
    points a side) into the dataset's CRS, must overlap the dataset's bounds; non-finite bounds count as overlapping.
    """

    @functools.cached_property
    def _to_dataset(self) -> pyproj.Transformer | None:
        if self.tms.rasterio_crs == self.crs:
            return None
        from cim.sources.crs import transformer

        return transformer(self.tms.rasterio_crs.to_wkt(), self.crs.to_wkt())

    def tile_exists(self, tile_x: int, tile_y: int, tile_z: int) -> bool:
        b = tuple(self.tms.xy_bounds(morecantile.Tile(x=tile_x, y=tile_y, z=tile_z)))
        if self._to_dataset is not None:
            try:
                b = self._to_dataset.transform_bounds(*b, densify_pts=21)
            except pyproj.exceptions.ProjError:
                return True
        if not all(np.isfinite(b)):
            return True
        d = self.bounds
        return b[0] < d[2] and b[2] > d[0] and b[3] > d[1] and b[1] < d[3]


@functools.cache
def _cgcs2000_quad() -> morecantile.TileMatrixSet:
    return morecantile.TileMatrixSet.custom(
        [-180.0, -90.0, 180.0, 90.0], pyproj.CRS.from_epsg(4490), matrix_scale=[2, 1], id="CGCS2000Quad",
        title="CGCS2000 geographic quad (EPSG:4490, Tianditu 'c' grid)", ordered_axes=["Lat", "Lon"],
        minzoom=0, maxzoom=20)


TMS_IDS = ("WebMercatorQuad", "CGCS2000Quad")


def get_tms(tms_id: str) -> morecantile.TileMatrixSet:
    """A tile matrix set of this server by id (`WebMercatorQuad` or `CGCS2000Quad`).

    Raises:
        TileRequestError: an unknown id.
    """
    if tms_id == "WebMercatorQuad":
        return morecantile.tms.get("WebMercatorQuad")
    if tms_id == "CGCS2000Quad":
        return _cgcs2000_quad()
    raise TileRequestError(f"tile matrix set {tms_id!r} is not served; use one of {', '.join(TMS_IDS)}")


def check_tms_tile(tms: morecantile.TileMatrixSet, z: int, x: int, y: int) -> morecantile.Tile:
    """A tile of `tms`, checked against the matrix of its zoom.

    Raises:
        TileRequestError: zoom outside the set, or x/y outside the matrix.
    """
    if not tms.minzoom <= z <= tms.maxzoom:
        raise TileRequestError(f"zoom {z} is outside {tms.minzoom}..{tms.maxzoom} for {tms.id}")
    m = tms.matrix(z)
    if not (0 <= x < m.matrixWidth and 0 <= y < m.matrixHeight):
        raise TileRequestError(f"Tile(x={x}, y={y}, z={z}) is outside {tms.id}: x must be in 0..{m.matrixWidth - 1} "
                               f"and y in 0..{m.matrixHeight - 1}")
    return morecantile.Tile(x, y, z)


def terrain_rgb(heights: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Encode heights as Mapbox Terrain-RGB.

    Args:
        heights: (h, w) float, metres.
        mask: (h, w) bool, True where valid; invalid cells encode 0 m.

    Returns:
        (3, h, w) uint8.
    """
    h = np.where(mask, heights, 0.0) if mask is not None else heights
    h = np.nan_to_num(h.astype(np.float64), nan=0.0)
    v = np.clip(np.round((h - TERRAIN_RGB_BASE) / TERRAIN_RGB_STEP), 0, 256**3 - 1).astype(np.uint32)
    return np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255]).astype(np.uint8)


def decode_terrain_rgb(rgb: np.ndarray) -> np.ndarray:
    """Heights (h, w) float64 in metres from a (3, h, w) uint8 Terrain-RGB array (the inverse of `terrain_rgb`)."""
    r, g, b = (rgb[i].astype(np.float64) for i in range(3))
    return TERRAIN_RGB_BASE + (r * 65536 + g * 256 + b) * TERRAIN_RGB_STEP


class RasterTile(NamedTuple):
    """An encoded raster tile."""

    content: bytes
    media_type: str


class MapInfo(NamedTuple):
    """What TileJSON and WMTS documents say about a map."""

    bounds: tuple[float, float, float, float]  # lon/lat
    minzoom: int
    maxzoom: int
    count: int
    dtype: str


@dataclass
class RasterMap:
    """A named COG served as raster tiles.

    Cheap to construct: the file is opened on first use, once per thread.

    Args:
        name: the map's public name (URLs, WMTS layer identifier).
        path: the COG (set by the operator, never from a request).
        kind: `image` (orthophoto) or `dem` (Terrain-RGB).
        title: display title.
    """

    name: str
    path: Path
    kind: MapKind
    title: str = ""
    _local: threading.local = field(default_factory=threading.local, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.kind not in ("image", "dem"):
            raise TileRequestError(f"map {self.name!r}: kind {self.kind!r} is not 'image' or 'dem'")

    @property
    def formats(self) -> tuple[ImageFormat, ...]:
        """Tile formats offered: lossy JPEG would corrupt Terrain-RGB heights, so DEMs offer PNG and WebP."""
        return ("png", "webp") if self.kind == "dem" else ("png", "jpg", "webp")

    def _reader(self, tms: morecantile.TileMatrixSet) -> Reader:
        readers: dict[str, Reader] | None = getattr(self._local, "readers", None)
        if readers is None:
            readers = self._local.readers = {}
        r = readers.get(tms.id)
        if r is None:
            r = readers[tms.id] = _Reader(str(self.path), tms=tms)
        return r

    @functools.cached_property
    def info(self) -> MapInfo:
        """Bounds in lon/lat, native zoom range on WebMercatorQuad, band count and data type."""
        r = self._reader(get_tms("WebMercatorQuad"))
        b = r.get_geographic_bounds(pyproj.CRS.from_epsg(4326))
        return MapInfo((float(b[0]), float(b[1]), float(b[2]), float(b[3])), int(r.minzoom), int(r.maxzoom),
                       int(r.dataset.count), str(r.dataset.dtypes[0]))

    def zoom_range(self, tms: morecantile.TileMatrixSet) -> tuple[int, int]:
        """The map's native zoom range on `tms`."""
        r = self._reader(tms)
        return int(r.minzoom), int(r.maxzoom)

    def tile(self, tms_id: str, z: int, x: int, y: int, fmt: str) -> RasterTile:
        """Render one tile.

        Args:
            tms_id: `WebMercatorQuad` or `CGCS2000Quad`.
            z, x, y: the tile (y from the top).
            fmt: png, jpg or webp.

        Raises:
            TileRequestError: unknown tile matrix set or format, tile outside the grid.
            TileNotFoundError: the tile does not touch the map's data.
        """
        if fmt not in self.formats:
            raise TileRequestError(f"map {self.name!r} ({self.kind}) is served as {', '.join(self.formats)}, "
                                   f"not {fmt!r}")
        tms = get_tms(tms_id)
        check_tms_tile(tms, z, x, y)
        reader = self._reader(tms)
        try:
            if self.kind == "dem":
                img = reader.tile(x, y, z, tilesize=TILE_SIZE, indexes=1, resampling_method="bilinear",
                                  reproject_method="bilinear")
                valid = img.mask > 0 if img.mask.ndim == 2 else img.mask[0] > 0
                data = terrain_rgb(np.asarray(img.data[0], dtype=np.float64), valid)
                from rio_tiler.utils import render

                content = render(data, img_format=_GDAL_DRIVERS[fmt], **({"lossless": True} if fmt == "webp" else {}))
            else:
                indexes = (1, 2, 3) if self.info.count >= 3 else (1,)
                img = reader.tile(x, y, z, tilesize=TILE_SIZE, indexes=indexes)
                if fmt == "jpg":
                    content = img.render(add_mask=False, img_format="JPEG", quality=85)
                else:
                    # PNG of photographs: zlib level 1 is 2.4x faster than the default 6 for +-3% of bytes
                    extra = {"lossless": False, "quality": 85} if fmt == "webp" else {"zlevel": 1}
                    content = img.render(add_mask=True, img_format=_GDAL_DRIVERS[fmt], **extra)
        except TileOutsideBounds as exc:
            raise TileNotFoundError(f"map {self.name!r} has no data in Tile(x={x}, y={y}, z={z}) of {tms.id}") from exc
        return RasterTile(content, MEDIA_TYPES[fmt])

    def close(self) -> None:
        """Close the readers of the calling thread."""
        for r in getattr(self._local, "readers", {}).values():
            r.close()
        self._local.readers = {}


def guess_kind(path: str | os.PathLike[str]) -> MapKind:
    """`dem` for a one-band non-byte raster, else `image`."""
    with Reader(str(path)) as r:
        ds = r.dataset
        return "dem" if ds.count == 1 and ds.dtypes[0] != "uint8" else "image"


# ---------------------------------------------------------------------------------------------------- WMTS 1.0
_NS = {"": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1",
       "xlink": "http://www.w3.org/1999/xlink"}


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    prefix, _, local = tag.rpartition(":")
    e = ET.SubElement(parent, f"{{{_NS[prefix]}}}{local}", {_qname(k): v for k, v in attrs.items()})
    if text is not None:
        e.text = text
    return e


def _qname(attr: str) -> str:
    prefix, _, local = attr.rpartition("__")
    return f"{{{_NS[prefix]}}}{local}" if prefix else local


def _crs_urn(tms: morecantile.TileMatrixSet) -> str:
    code = str(tms.crs.root).rstrip("/").rsplit("/", 1)[-1]
    return f"urn:ogc:def:crs:EPSG::{code}"


def wmts_capabilities(maps: Sequence[RasterMap], base_url: str, *, title: str = "cim tile services",
                      query: str = "") -> str:
    """A WMTS 1.0.0 GetCapabilities document (KVP and RESTful) for `maps` on both tile matrix sets.

    Args:
        maps: the maps the caller may see.
        base_url: the server's public base URL, no trailing slash.
        title: service title.
        query: a query string appended to every URL (e.g. `api_key=...` for clients that cannot send headers).
    """
    for prefix, uri in _NS.items():
        ET.register_namespace(prefix, uri)
    q = ("?" + query) if query else ""
    root = ET.Element(f"{{{_NS['']}}}Capabilities", {"version": "1.0.0"})
    ident = _el(root, "ows:ServiceIdentification")
    _el(ident, "ows:Title", title)
    _el(ident, "ows:ServiceType", "OGC WMTS")
    _el(ident, "ows:ServiceTypeVersion", "1.0.0")
    ops = _el(root, "ows:OperationsMetadata")
    for op in ("GetCapabilities", "GetTile"):
        o = _el(ops, "ows:Operation", name=op)
        get = _el(_el(_el(o, "ows:DCP"), "ows:HTTP"), "ows:Get", xlink__href=f"{base_url}/wmts{q}")
        _el(_el(_el(get, "ows:Constraint", name="GetEncoding"), "ows:AllowedValues"), "ows:Value", "KVP")
        if op == "GetCapabilities":
            rest = _el(_el(_el(o, "ows:DCP"), "ows:HTTP"), "ows:Get",
                       xlink__href=f"{base_url}/wmts/1.0.0/WMTSCapabilities.xml{q}")
            _el(_el(_el(rest, "ows:Constraint", name="GetEncoding"), "ows:AllowedValues"), "ows:Value", "RESTful")
    contents = _el(root, "Contents")
    for m in maps:
        info = m.info
        layer = _el(contents, "Layer")
        _el(layer, "ows:Title", m.title or m.name)
        bb = _el(layer, "ows:WGS84BoundingBox")
        _el(bb, "ows:LowerCorner", f"{info.bounds[0]} {info.bounds[1]}")
        _el(bb, "ows:UpperCorner", f"{info.bounds[2]} {info.bounds[3]}")
        _el(layer, "ows:Identifier", m.name)
        style = _el(layer, "Style", isDefault="true")
        _el(style, "ows:Identifier", "default")
        for fmt in m.formats:
            _el(layer, "Format", MEDIA_TYPES[fmt])
        for tms_id in TMS_IDS:
            tms = get_tms(tms_id)
            link = _el(layer, "TileMatrixSetLink")
            _el(link, "TileMatrixSet", tms_id)
            _, hi = m.zoom_range(tms)
            limits = _el(link, "TileMatrixSetLimits")
            for z in range(tms.minzoom, min(hi, tms.maxzoom) + 1):
                ul = tms.tile(info.bounds[0], info.bounds[3], z, truncate=True)
                lr = tms.tile(info.bounds[2], info.bounds[1], z, truncate=True)
                lim = _el(limits, "TileMatrixLimits")
                _el(lim, "TileMatrix", str(z))
                _el(lim, "MinTileRow", str(ul.y))
                _el(lim, "MaxTileRow", str(lr.y))
                _el(lim, "MinTileCol", str(ul.x))
                _el(lim, "MaxTileCol", str(lr.x))
        for fmt in m.formats:
            _el(layer, "ResourceURL", format=MEDIA_TYPES[fmt], resourceType="tile",
                template=f"{base_url}/maps/{m.name}/{{TileMatrixSet}}/{{TileMatrix}}/{{TileCol}}/{{TileRow}}.{fmt}{q}")
    for tms_id in TMS_IDS:
        tms = get_tms(tms_id)
        s = _el(contents, "TileMatrixSet")
        _el(s, "ows:Identifier", tms_id)
        _el(s, "ows:SupportedCRS", _crs_urn(tms))
        if tms_id == "WebMercatorQuad":
            _el(s, "WellKnownScaleSet", "urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible")
        for z in range(tms.minzoom, tms.maxzoom + 1):
            mtx = tms.matrix(z)
            e = _el(s, "TileMatrix")
            _el(e, "ows:Identifier", str(z))
            _el(e, "ScaleDenominator", repr(float(mtx.scaleDenominator)))
            _el(e, "TopLeftCorner", " ".join(repr(float(v)) for v in mtx.pointOfOrigin))
            _el(e, "TileWidth", str(mtx.tileWidth))
            _el(e, "TileHeight", str(mtx.tileHeight))
            _el(e, "MatrixWidth", str(mtx.matrixWidth))
            _el(e, "MatrixHeight", str(mtx.matrixHeight))
    _el(root, "ServiceMetadataURL", xlink__href=f"{base_url}/wmts/1.0.0/WMTSCapabilities.xml{q}")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


__all__ = ["MEDIA_TYPES", "TMS_IDS", "MapInfo", "RasterMap", "RasterTile", "check_tms_tile", "decode_terrain_rgb",
           "get_tms", "guess_kind", "terrain_rgb", "wmts_capabilities"]
