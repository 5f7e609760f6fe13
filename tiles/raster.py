"""Raster tiles from Cloud-Optimised GeoTIFFs (orthophotos and DEMs) with rio-tiler and morecantile.

Two tile matrix sets (`get_tms`): `WebMercatorQuad` (XYZ, what web maps use) and `CGCS2000Quad`, the CGCS2000
geographic grid (EPSG:4490) of Tianditu's "c" tiles: level 0 is 2 x 1 tiles of 256 px over the globe (Tianditu
numbers that level 1), each level halving the cell size.

A `RasterMap` is a named COG with a kind: an `image` (orthophoto: its RGB bands, alpha or nodata as transparency)
or a `dem` (elevation band, encoded as Mapbox Terrain-RGB: height = -10000 + (R * 65536 + G * 256 + B) * 0.1 m).

Why tiles read through a kept warped view: GDAL builds a new PROJ transformation for every warped read (rio-tiler's
`calculate_default_transform` of the whole COG, the `WarpedVRT` itself and each of its implicit overviews: five or
six per tile). When the COG's datum differs from the tile matrix set's (a CGCS2000 Gauss-Krueger COG served on
WebMercatorQuad, whose datum is WGS 84), each of them searches PROJ's database for datum transformations, 35-50 ms
apiece, and GDAL does not cache them on that path: 250-290 ms per 256-px tile against 20-30 ms on CGCS2000Quad, which
shares the COG's datum (measured on the sample city's orthophoto; docs/benchmarks.md). So a map keeps, per tile
matrix set, a small pool of views: the COG opened once and, when its CRS is not the set's, one `WarpedVRT` of the
whole COG in the set's CRS at the COG's own resolution, made once (transformations, overviews and all). A tile is
then a read of that view in the same CRS, which needs no new datum search; every tile matrix set costs the same.
A view serves one request at a time (rasterio datasets are not thread-safe); the pool grows to the number of
concurrent requests and its views are reused.

    >>> m = RasterMap("ortho", "city/ortho.tif", "image")
    >>> png = m.tile("WebMercatorQuad", 16, 53573, 24698, "png").content  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import morecantile
import numpy as np
import pyproj
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.utils import has_alpha_band

from tiles.errors import TileNotFoundError, TileRequestError

MapKind = Literal["image", "dem"]
ImageFormat = Literal["png", "jpg", "webp"]

MEDIA_TYPES: dict[str, str] = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
_GDAL_DRIVERS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
TILE_SIZE = 256
MAX_VIEWS = 4  # kept views per map and tile matrix set: concurrent reads beyond this wait for one (2-core machines)
TERRAIN_RGB_BASE = -10000.0
TERRAIN_RGB_STEP = 0.1


def _tile_touches(tms: morecantile.TileMatrixSet, tile: morecantile.Tile, to_dataset: pyproj.Transformer | None,
                  bounds: Sequence[float]) -> bool:
    """True when a tile's bounds, densified (21 points a side) into a dataset's CRS, overlap the dataset's `bounds`
    (rio-tiler's tile-in-dataset rule); non-finite bounds count as overlapping."""
    b = tuple(tms.xy_bounds(tile))
    if to_dataset is not None:
        try:
            b = to_dataset.transform_bounds(*b, densify_pts=21)
        except pyproj.exceptions.ProjError:
            return True
    if not all(np.isfinite(b)):
        return True
    return b[0] < bounds[2] and b[2] > bounds[0] and b[3] > bounds[1] and b[1] < bounds[3]


def _transformer(src: CRS, dst: CRS) -> pyproj.Transformer | None:
    if src == dst:
        return None
    from cim.sources.crs import transformer

    return transformer(src.to_wkt(), dst.to_wkt())


class _Reader(Reader):
    """rio-tiler's `Reader` whose tile-in-dataset test reuses one transformer: the inherited test builds a new
    TMS -> dataset CRS transformation per tile (rasterio `transform_bounds`), 22-28 ms for CGCS2000 Gauss-Krueger
    to Web Mercator on this machine, a quarter of an orthophoto tile. Same rule (`_tile_touches`)."""

    @functools.cached_property
    def _to_dataset(self) -> pyproj.Transformer | None:
        return _transformer(self.tms.rasterio_crs, self.crs)

    def tile_exists(self, tile_x: int, tile_y: int, tile_z: int) -> bool:
        return _tile_touches(self.tms, morecantile.Tile(x=tile_x, y=tile_y, z=tile_z), self._to_dataset, self.bounds)


@dataclass
class _View:
    """A COG opened once, and when its CRS is not the tile matrix set's, a warped view of all of it in that CRS."""

    dataset: rasterio.io.DatasetReader
    vrt: WarpedVRT | None
    reader: _Reader

    def close(self) -> None:
        self.reader.close()
        if self.vrt is not None:
            self.vrt.close()
        self.dataset.close()


class WarpGrid(NamedTuple):
    """The grid of a COG reprojected whole into another CRS at its own resolution (GDAL's suggested output)."""

    transform: object  # affine.Affine
    width: int
    height: int


@functools.cache
def _cgcs2000_quad() -> morecantile.TileMatrixSet:
    return morecantile.TileMatrixSet.custom(
        [-180.0, -90.0, 180.0, 90.0], pyproj.CRS.from_epsg(4490), matrix_scale=[2, 1], id="CGCS2000Quad",
        title="CGCS2000 geographic quad (EPSG:4490, Tianditu 'c' grid)", ordered_axes=["Lat", "Lon"],
        minzoom=0, maxzoom=20)


TMS_IDS = ("WebMercatorQuad", "CGCS2000Quad")
VIEW_CRS = ("EPSG:3857", "EPSG:4490", "EPSG:4326")


def _view_tms(crs: str) -> morecantile.TileMatrixSet:
    """The tile matrix set whose CRS is `crs`, for views in that CRS (EPSG:4326 has no served set: WGS1984Quad)."""
    if crs == "EPSG:3857":
        return get_tms("WebMercatorQuad")
    if crs == "EPSG:4490":
        return get_tms("CGCS2000Quad")
    if crs == "EPSG:4326":
        return morecantile.tms.get("WGS1984Quad")
    raise TileRequestError(f"CRS {crs!r} is not served; use one of {', '.join(VIEW_CRS)}")


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
    _idle: dict[str, list[_View]] = field(default_factory=dict, repr=False)
    _grids: dict[str, WarpGrid] = field(default_factory=dict, repr=False)
    _zooms: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)
    _to_source: dict[str, pyproj.Transformer | None] = field(default_factory=dict, repr=False)
    _made: dict[str, int] = field(default_factory=dict, repr=False)
    _lock: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _opening: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.kind not in ("image", "dem"):
            raise TileRequestError(f"map {self.name!r}: kind {self.kind!r} is not 'image' or 'dem'")

    @property
    def formats(self) -> tuple[ImageFormat, ...]:
        """Tile formats offered: lossy JPEG would corrupt Terrain-RGB heights, so DEMs offer PNG and WebP."""
        return ("png", "webp") if self.kind == "dem" else ("png", "jpg", "webp")

    @property
    def _resampling(self) -> Resampling:
        # heights are interpolated; photographs keep their pixels (rio-tiler's default for images)
        return Resampling.bilinear if self.kind == "dem" else Resampling.nearest

    def warp_grid(self, dataset: rasterio.io.DatasetReader, crs: CRS) -> WarpGrid:
        """The COG's grid in `crs` (computed once per CRS: it is one of the expensive PROJ calls)."""
        key = crs.to_string()
        grid = self._grids.get(key)
        if grid is None:
            tr, w, h = calculate_default_transform(dataset.crs, crs, dataset.width, dataset.height, *dataset.bounds)
            grid = self._grids[key] = WarpGrid(tr, int(w), int(h))
        return grid

    def _open_view(self, tms: morecantile.TileMatrixSet) -> _View:
        dataset = rasterio.open(self.path)
        try:
            crs = tms.rasterio_crs
            if dataset.crs is None or dataset.crs == crs:
                return _View(dataset, None, _Reader(None, dataset=dataset, tms=tms))
            grid = self.warp_grid(dataset, crs)
            # the same warped-VRT options rio-tiler uses for a tile: nodata kept, else an alpha band
            params: dict[str, object] = {"crs": crs, "transform": grid.transform, "width": grid.width,
                                         "height": grid.height, "resampling": self._resampling,
                                         "dtype": dataset.dtypes[0], "add_alpha": not has_alpha_band(dataset)}
            if dataset.nodata is not None:
                params.update(nodata=dataset.nodata, src_nodata=dataset.nodata, add_alpha=False)
            vrt = WarpedVRT(dataset, **params)
            return _View(dataset, vrt, _Reader(None, dataset=vrt, tms=tms))
        except Exception:
            dataset.close()
            raise

    @contextlib.contextmanager
    def _view(self, tms: morecantile.TileMatrixSet) -> Iterator[_View]:
        """An idle view of the map on `tms` for the duration of one read. A new view is made when none is idle and
        fewer than `MAX_VIEWS` exist (views are made one at a time: the first computes the warp grid the others
        reuse); otherwise the read waits for one to come back."""
        key = tms.id
        with self._lock:
            while True:
                pool = self._idle.setdefault(key, [])
                if pool:
                    view: _View | None = pool.pop()
                    break
                if self._made.get(key, 0) < MAX_VIEWS:
                    self._made[key] = self._made.get(key, 0) + 1
                    view = None
                    break
                self._lock.wait()
        if view is None:
            try:
                with self._opening:
                    view = self._open_view(tms)
            except BaseException:
                with self._lock:
                    self._made[key] -= 1
                    self._lock.notify()
                raise
        try:
            yield view
        finally:
            with self._lock:
                self._idle.setdefault(key, []).append(view)
                self._lock.notify()

    @functools.cached_property
    def _footprint(self) -> tuple[CRS, tuple[float, float, float, float], int, str]:
        with rasterio.open(self.path) as ds:
            return ds.crs, tuple(ds.bounds), int(ds.count), str(ds.dtypes[0])  # type: ignore[return-value]

    def tile_exists(self, tms: morecantile.TileMatrixSet, z: int, x: int, y: int) -> bool:
        """True when the tile touches the COG (its bounds in the COG's CRS overlap the COG's bounds)."""
        crs, bounds, _, _ = self._footprint
        if tms.id not in self._to_source:
            self._to_source[tms.id] = _transformer(tms.rasterio_crs, crs) if crs is not None else None
        return _tile_touches(tms, morecantile.Tile(x, y, z), self._to_source[tms.id], bounds)

    @functools.cached_property
    def info(self) -> MapInfo:
        """Bounds in lon/lat, native zoom range on WebMercatorQuad, band count and data type."""
        with rasterio.open(self.path) as ds, Reader(None, dataset=ds) as r:
            b = r.get_geographic_bounds(pyproj.CRS.from_epsg(4326))
            lo, hi = int(r.minzoom), int(r.maxzoom)
        _, _, count, dtype = self._footprint
        return MapInfo((float(b[0]), float(b[1]), float(b[2]), float(b[3])), lo, hi, count, dtype)

    def zoom_range(self, tms: morecantile.TileMatrixSet) -> tuple[int, int]:
        """The map's native zoom range on `tms` (rio-tiler's, from the COG itself)."""
        if tms.id not in self._zooms:
            with rasterio.open(self.path) as ds, Reader(None, dataset=ds, tms=tms) as r:
                self._zooms[tms.id] = (int(r.minzoom), int(r.maxzoom))
        return self._zooms[tms.id]

    def check(self, tms_id: str, z: int, x: int, y: int, fmt: str) -> morecantile.TileMatrixSet:
        """Validate a tile request without rendering it (a server does this before any conditional logic).

        Returns:
            The tile matrix set.

        Raises:
            TileRequestError: unknown tile matrix set or format, tile outside the grid.
        """
        if fmt not in self.formats:
            raise TileRequestError(f"map {self.name!r} ({self.kind}) is served as {', '.join(self.formats)}, "
                                   f"not {fmt!r}")
        tms = get_tms(tms_id)
        check_tms_tile(tms, z, x, y)
        return tms

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
        tms = self.check(tms_id, z, x, y, fmt)
        if not self.tile_exists(tms, z, x, y):
            raise TileNotFoundError(f"map {self.name!r} has no data in Tile(x={x}, y={y}, z={z}) of {tms.id}")
        try:
            with self._view(tms) as view:
                if self.kind == "dem":
                    img = view.reader.tile(x, y, z, tilesize=TILE_SIZE, indexes=1, resampling_method="bilinear",
                                           reproject_method="bilinear")
                else:
                    img = view.reader.tile(x, y, z, tilesize=TILE_SIZE, indexes=self._bands)
        except TileOutsideBounds as exc:
            raise TileNotFoundError(f"map {self.name!r} has no data in Tile(x={x}, y={y}, z={z}) of {tms.id}") from exc
        return RasterTile(self._encode(img, fmt), MEDIA_TYPES[fmt])

    @property
    def _bands(self) -> tuple[int, ...]:
        return (1, 2, 3) if self._footprint[2] >= 3 else (1,)

    def _encode(self, img: object, fmt: str) -> bytes:
        """PNG/JPEG/WebP of a rio-tiler `ImageData` (DEMs as Terrain-RGB)."""
        if self.kind == "dem":
            valid = img.mask > 0 if img.mask.ndim == 2 else img.mask[0] > 0  # type: ignore[attr-defined]
            data = terrain_rgb(np.asarray(img.data[0], dtype=np.float64), valid)  # type: ignore[attr-defined]
            from rio_tiler.utils import render

            return render(data, img_format=_GDAL_DRIVERS[fmt], **({"lossless": True} if fmt == "webp" else {}))
        if fmt == "jpg":
            return img.render(add_mask=False, img_format="JPEG", quality=85)  # type: ignore[attr-defined]
        # PNG of photographs: zlib level 1 is 2.4x faster than the default 6 for +-3% of bytes
        extra = {"lossless": False, "quality": 85} if fmt == "webp" else {"zlevel": 1}
        return img.render(add_mask=True, img_format=_GDAL_DRIVERS[fmt], **extra)  # type: ignore[attr-defined]

    def part(self, bbox: tuple[float, float, float, float], crs: str, width: int, height: int) -> object:
        """A rio-tiler `ImageData` of `bbox` (x/y = east/north in `crs`: EPSG:3857, EPSG:4490 or EPSG:4326) at
        `width` x `height` px, through the same kept views as tiles (WMS GetMap). Outside the data: masked.

        Raises:
            TileRequestError: another CRS.
        """
        tms = _view_tms(crs)
        with self._view(tms) as view:
            kw = {"resampling_method": "bilinear", "reproject_method": "bilinear"} if self.kind == "dem" else {}
            return view.reader.part(bbox, dst_crs=tms.rasterio_crs, bounds_crs=tms.rasterio_crs, width=width,
                                    height=height, indexes=1 if self.kind == "dem" else self._bands, **kw)

    def close(self) -> None:
        """Close every idle view (views in use are closed by the next `close` after they are returned)."""
        with self._lock:
            views = [v for pool in self._idle.values() for v in pool]
            self._idle.clear()
            self._made.clear()
        for v in views:
            v.close()


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


def wmts_document(title: str, base_url: str, q: str = "", *, abstract: str | None = None,
                  restful: bool = True) -> tuple[ET.Element, ET.Element]:
    """The frame of a WMTS 1.0.0 capabilities document, for the caller to fill its `<Contents>`.

    Args:
        title: service title.
        base_url: the service's base URL, no trailing slash; KVP requests go to `{base_url}/wmts`.
        q: the query part carried into every URL, with its `?` (or empty).
        abstract: the service's `ows:Abstract`, when given.
        restful: also list GetCapabilities at `{base_url}/wmts/1.0.0/WMTSCapabilities.xml` (RESTful) and name
            that document as the `<ServiceMetadataURL>`.

    Returns:
        (root, contents): the `<Capabilities>` element, with its service identification and operations metadata,
        and its empty `<Contents>`.
    """
    for prefix, uri in _NS.items():
        ET.register_namespace(prefix, uri)
    root = ET.Element(f"{{{_NS['']}}}Capabilities", {"version": "1.0.0"})
    ident = _el(root, "ows:ServiceIdentification")
    _el(ident, "ows:Title", title)
    if abstract:
        _el(ident, "ows:Abstract", abstract)
    _el(ident, "ows:ServiceType", "OGC WMTS")
    _el(ident, "ows:ServiceTypeVersion", "1.0.0")
    ops = _el(root, "ows:OperationsMetadata")
    for op in ("GetCapabilities", "GetTile"):
        o = _el(ops, "ows:Operation", name=op)
        get = _el(_el(_el(o, "ows:DCP"), "ows:HTTP"), "ows:Get", xlink__href=f"{base_url}/wmts{q}")
        _el(_el(_el(get, "ows:Constraint", name="GetEncoding"), "ows:AllowedValues"), "ows:Value", "KVP")
        if restful and op == "GetCapabilities":
            rest = _el(_el(_el(o, "ows:DCP"), "ows:HTTP"), "ows:Get",
                       xlink__href=f"{base_url}/wmts/1.0.0/WMTSCapabilities.xml{q}")
            _el(_el(_el(rest, "ows:Constraint", name="GetEncoding"), "ows:AllowedValues"), "ows:Value", "RESTful")
    contents = _el(root, "Contents")
    if restful:  # after <Contents>, as the schema orders them; the caller fills <Contents> itself
        _el(root, "ServiceMetadataURL", xlink__href=f"{base_url}/wmts/1.0.0/WMTSCapabilities.xml{q}")
    return root, contents


def wmts_layer(contents: ET.Element, identifier: str, title: str, bounds: Sequence[float]) -> ET.Element:
    """A WMTS `<Layer>` in `contents` with its title, lon/lat bounds, identifier and default style; returns it for
    the caller to add formats, dimensions, tile matrix set links and resource URLs."""
    layer = _el(contents, "Layer")
    _el(layer, "ows:Title", title)
    bb = _el(layer, "ows:WGS84BoundingBox")
    _el(bb, "ows:LowerCorner", f"{bounds[0]} {bounds[1]}")
    _el(bb, "ows:UpperCorner", f"{bounds[2]} {bounds[3]}")
    _el(layer, "ows:Identifier", identifier)
    style = _el(layer, "Style", isDefault="true")
    _el(style, "ows:Identifier", "default")
    return layer


def wmts_xml(root: ET.Element) -> str:
    """A capabilities document's text, with its XML declaration."""
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def wmts_tile_matrix_set_link(layer: ET.Element, tms_id: str, bounds: Sequence[float], zooms: range) -> None:
    """A WMTS layer's `<TileMatrixSetLink>` to `tms_id` with the tile limits of `bounds` (lon/lat) at `zooms`."""
    tms = get_tms(tms_id)
    link = _el(layer, "TileMatrixSetLink")
    _el(link, "TileMatrixSet", tms_id)
    limits = _el(link, "TileMatrixSetLimits")
    for z in zooms:
        ul = tms.tile(bounds[0], bounds[3], z, truncate=True)
        lr = tms.tile(bounds[2], bounds[1], z, truncate=True)
        lim = _el(limits, "TileMatrixLimits")
        _el(lim, "TileMatrix", str(z))
        _el(lim, "MinTileRow", str(ul.y))
        _el(lim, "MaxTileRow", str(lr.y))
        _el(lim, "MinTileCol", str(ul.x))
        _el(lim, "MaxTileCol", str(lr.x))


def wmts_tile_matrix_set(contents: ET.Element, tms_id: str, top_zoom: int | None = None) -> None:
    """A WMTS `<TileMatrixSet>` of `tms_id` (its matrices from its first zoom to `top_zoom`, default its last)."""
    tms = get_tms(tms_id)
    s = _el(contents, "TileMatrixSet")
    _el(s, "ows:Identifier", tms_id)
    _el(s, "ows:SupportedCRS", _crs_urn(tms))
    if tms_id == "WebMercatorQuad":
        _el(s, "WellKnownScaleSet", "urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible")
    last = tms.maxzoom if top_zoom is None else min(top_zoom, tms.maxzoom)
    for z in range(tms.minzoom, last + 1):
        mtx = tms.matrix(z)
        e = _el(s, "TileMatrix")
        _el(e, "ows:Identifier", str(z))
        _el(e, "ScaleDenominator", repr(float(mtx.scaleDenominator)))
        _el(e, "TopLeftCorner", " ".join(repr(float(v)) for v in mtx.pointOfOrigin))
        _el(e, "TileWidth", str(mtx.tileWidth))
        _el(e, "TileHeight", str(mtx.tileHeight))
        _el(e, "MatrixWidth", str(mtx.matrixWidth))
        _el(e, "MatrixHeight", str(mtx.matrixHeight))


def wmts_capabilities(maps: Sequence[RasterMap], base_url: str, *, title: str = "cim tile services",
                      query: str = "", abstract: str | None = None) -> str:
    """A WMTS 1.0.0 GetCapabilities document (KVP and RESTful) for `maps` on both tile matrix sets.

    Args:
        maps: the maps the caller may see.
        base_url: the server's public base URL, no trailing slash.
        title: service title.
        query: a query string appended to every URL (e.g. `api_key=...` for clients that cannot send headers).
        abstract: the service's `ows:Abstract` (what a client shows about the service, e.g. how to add a key).
    """
    q = ("?" + query) if query else ""
    root, contents = wmts_document(title, base_url, q, abstract=abstract)
    for m in maps:
        info = m.info
        layer = wmts_layer(contents, m.name, m.title or m.name, info.bounds)
        for fmt in m.formats:
            _el(layer, "Format", MEDIA_TYPES[fmt])
        for tms_id in TMS_IDS:
            tms = get_tms(tms_id)
            _, hi = m.zoom_range(tms)
            wmts_tile_matrix_set_link(layer, tms_id, info.bounds, range(tms.minzoom, min(hi, tms.maxzoom) + 1))
        for fmt in m.formats:
            _el(layer, "ResourceURL", format=MEDIA_TYPES[fmt], resourceType="tile",
                template=f"{base_url}/maps/{m.name}/{{TileMatrixSet}}/{{TileMatrix}}/{{TileCol}}/{{TileRow}}.{fmt}{q}")
    for tms_id in TMS_IDS:
        wmts_tile_matrix_set(contents, tms_id)
    return wmts_xml(root)


__all__ = ["MEDIA_TYPES", "TMS_IDS", "VIEW_CRS", "WarpGrid", "MapInfo", "RasterMap", "RasterTile", "check_tms_tile", "decode_terrain_rgb",
           "get_tms", "guess_kind", "terrain_rgb", "wmts_capabilities", "wmts_document", "wmts_layer",
           "wmts_tile_matrix_set", "wmts_tile_matrix_set_link", "wmts_xml"]
