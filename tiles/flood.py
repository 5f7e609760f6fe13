"""Flood runs as tile services: coloured depth / speed / arrival tiles with a time dimension, inundation MVT.

A run's rasters are COGs (`cim.analysis.flood.outputs`), read with rio-tiler like any other map (`tiles.raster`)
and coloured here: depth on a blue ramp (transparent below 1 cm), speed on a yellow-red ramp, arrival of 0.15 m on
a red (early) to yellow (late) ramp. The time dimension is the run's output steps: TileJSON carries them in a `time`
member (values and a `{time}` URL template; `tiles` are the maxima, which every client can show), WMTS 1.0 in a
`Dimension` named `Time` (ISO-8601 instants; the run's start + t) with `{Time}` in the RESTful template.

    tiles = FloodTiles(result)
    png = tiles.tile("depth", 1800.0, "WebMercatorQuad", 16, 53573, 24698).content
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import morecantile
import numpy as np
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.utils import render

from tiles.errors import TileNotFoundError, TileRequestError
from tiles.raster import (TILE_SIZE, TMS_IDS, RasterTile, _el, _Reader, check_tms_tile, get_tms, wmts_document,
                          wmts_layer, wmts_tile_matrix_set, wmts_tile_matrix_set_link, wmts_xml)

#: colour ramps: (value, (r, g, b, a)) stops, linear in between; below the first stop transparent
RAMPS: dict[str, tuple[tuple[float, tuple[int, int, int, int]], ...]] = {
    "depth": ((0.01, (190, 230, 255, 150)), (0.15, (120, 190, 250, 200)), (0.3, (60, 140, 230, 220)),
              (0.5, (30, 90, 200, 235)), (1.0, (15, 45, 150, 245)), (3.0, (10, 20, 90, 255))),
    "velocity": ((0.05, (255, 255, 178, 150)), (0.5, (254, 204, 92, 200)), (1.0, (253, 141, 60, 220)),
                 (2.0, (240, 59, 32, 240)), (4.0, (189, 0, 38, 255))),
    "arrival": ((0.0, (215, 25, 28, 230)), (1800.0, (253, 174, 97, 220)), (3600.0, (255, 255, 191, 210)),
                (7200.0, (171, 217, 233, 200))),
}
VARIABLES = {"depth": ("depth", "max_depth", "m"), "velocity": ("velocity", None, "m/s"),
             "arrival": (None, "time_to_0.15m", "s")}


def colorize(values: np.ndarray, valid: np.ndarray, ramp: str) -> np.ndarray:
    """(4, h, w) uint8 RGBA of `values` on a ramp; transparent where invalid or below the first stop."""
    stops = RAMPS[ramp]
    x = np.array([s for s, _ in stops])
    v = np.nan_to_num(np.asarray(values, np.float64), nan=-np.inf)
    out = np.zeros((4,) + v.shape, np.uint8)
    show = valid & (v >= x[0])
    for k in range(4):
        ch = np.array([c[k] for _, c in stops], np.float64)
        out[k] = np.where(show, np.interp(v, x, ch), 0).astype(np.uint8)
    return out


@dataclass
class FloodTiles:
    """Tiles of one run's rasters (readers kept open per thread and raster, like `tiles.raster.RasterMap`)."""

    root: Path
    times: list[float]
    _local: threading.local = field(default_factory=threading.local, repr=False)

    @classmethod
    def of(cls, result: Any) -> FloodTiles:
        return cls(Path(result.root), list(result.times))

    def path(self, variable: str, t: float | None) -> Path:
        """The COG of a variable at an output time (None: its maximum / the arrival times).

        Raises:
            TileRequestError: unknown variable, or a variable without maxima asked without a time.
            TileNotFoundError: the run has no such raster.
        """
        if variable not in VARIABLES:
            raise TileRequestError(f"variable {variable!r} is not one of {', '.join(VARIABLES)}")
        stepped, whole, _ = VARIABLES[variable]
        if variable == "arrival":
            name = f"{whole}.tif"
        elif t is None:
            if whole is None:
                raise TileRequestError(f"{variable} has no maximum raster; give a time step")
            name = f"{whole}.tif"
        else:
            name = f"{stepped}/{int(round(t)):06d}.tif"
        p = self.root / name
        if not p.is_file():
            raise TileNotFoundError(f"this run has no {variable} raster {name}")
        return p

    def _reader(self, path: Path, tms: morecantile.TileMatrixSet) -> _Reader:
        readers: dict[tuple[str, str], _Reader] | None = getattr(self._local, "readers", None)
        if readers is None:
            readers = self._local.readers = {}
        key = (str(path), tms.id)
        r = readers.get(key)
        if r is None:
            r = readers[key] = _Reader(str(path), tms=tms)
        return r

    def tile(self, variable: str, t: float | None, tms_id: str, z: int, x: int, y: int, fmt: str = "png"
             ) -> RasterTile:
        """One RGBA tile (PNG or lossless WebP).

        Raises:
            TileRequestError: bad variable, format, tile matrix set or tile.
            TileNotFoundError: the tile does not touch the run's grid.
        """
        if fmt not in ("png", "webp"):
            raise TileRequestError(f"flood tiles are png or webp, not {fmt!r}")
        tms = get_tms(tms_id)
        check_tms_tile(tms, z, x, y)
        reader = self._reader(self.path(variable, t), tms)
        try:
            img = reader.tile(x, y, z, tilesize=TILE_SIZE, indexes=1, resampling_method="nearest")
        except TileOutsideBounds as exc:
            raise TileNotFoundError(f"the run has no data in Tile(x={x}, y={y}, z={z}) of {tms.id}") from exc
        valid = img.mask > 0 if img.mask.ndim == 2 else img.mask[0] > 0
        rgba = colorize(np.asarray(img.data[0], np.float64), valid, variable)
        fmt_gdal = {"png": "PNG", "webp": "WEBP"}[fmt]
        content = render(rgba[:3], mask=rgba[3], img_format=fmt_gdal,
                         **({"lossless": True} if fmt == "webp" else {"zlevel": 1}))
        return RasterTile(content, "image/png" if fmt == "png" else "image/webp")

    @functools.cached_property
    def bounds(self) -> tuple[float, float, float, float]:
        """Lon/lat bounds of the run's grid."""
        import pyproj

        r = self._reader(self.root / "max_depth.tif", get_tms("WebMercatorQuad"))
        b = r.get_geographic_bounds(pyproj.CRS.from_epsg(4326))
        return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))

    def zoom_range(self, tms_id: str = "WebMercatorQuad") -> tuple[int, int]:
        r = self._reader(self.root / "max_depth.tif", get_tms(tms_id))
        return int(r.minzoom), int(r.maxzoom)

    def close(self) -> None:
        for r in getattr(self._local, "readers", {}).values():
            r.close()
        self._local.readers = {}


def tilejson(tiles: FloodTiles, base: str, variable: str, instants: list[str], *, tms_id: str = "WebMercatorQuad",
             query: str = "", name: str = "") -> dict[str, Any]:
    """TileJSON 3.0 of a run's variable: `tiles` show the maxima (or arrival); `time` lists the steps.

    The `time` member (this server's extension) holds `values` (ISO instants), `seconds` (since the start),
    `default` and `tiles`: a template with `{time}` (seconds or an instant) beside `{z}/{x}/{y}`.
    """
    q = f"?{query}" if query else ""
    lo, hi = tiles.zoom_range(tms_id)
    b = list(tiles.bounds)
    whole = "max" if variable != "velocity" else str(int(round(tiles.times[-1]))) if tiles.times else "max"
    doc: dict[str, Any] = {
        "tilejson": "3.0.0", "name": name or variable, "scheme": "xyz", "minzoom": max(lo - 6, 0), "maxzoom": hi + 2,
        "tiles": [f"{base}/{variable}/{whole}/{tms_id}/{{z}}/{{x}}/{{y}}.png{q}"], "bounds": b,
        "center": [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, hi],
        "legend": [{"value": v, "color": "#%02x%02x%02x" % c[:3]} for v, c in RAMPS[variable]],
        "unit": VARIABLES[variable][2]}
    if variable != "arrival" and tiles.times:
        doc["time"] = {"values": instants, "seconds": tiles.times, "default": instants[-1],
                       "tiles": [f"{base}/{variable}/{{time}}/{tms_id}/{{z}}/{{x}}/{{y}}.png{q}"]}
    return doc


def wmts_capabilities(tiles: FloodTiles, base: str, instants: list[str], *, title: str, query: str = "") -> str:
    """WMTS 1.0.0 capabilities of one run: layers `depth` and `velocity` with a `Time` dimension, `arrival`.

    RESTful templates: `{base}/{layer}/{Time}/{TileMatrixSet}/{TileMatrix}/{TileCol}/{TileRow}.png`; KVP GetTile at
    `{base}/wmts` takes TIME=. The default time of `depth` is `max` (the maximum), listed among the values.
    GetCapabilities is listed both as KVP (`{base}/wmts`) and RESTful (`{base}/wmts/1.0.0/WMTSCapabilities.xml`,
    also the `ServiceMetadataURL`), as in the maps' document.
    """
    q = ("?" + query) if query else ""
    root, contents = wmts_document(title, base, q)
    b = tiles.bounds
    _, hi = tiles.zoom_range()
    for layer_id, label in (("depth", "Water depth (m)"), ("velocity", "Flow speed (m/s)"),
                            ("arrival", "Time to 0.15 m (s)")):
        if layer_id == "velocity" and not (tiles.root / "velocity").is_dir():
            continue
        layer = wmts_layer(contents, layer_id, label, b)
        _el(layer, "Format", "image/png")
        timed = layer_id != "arrival" and bool(tiles.times)
        if timed:
            dim = _el(layer, "Dimension")
            _el(dim, "ows:Identifier", "Time")
            _el(dim, "UOM", "ISO8601")
            values = (["max"] if layer_id == "depth" else []) + instants
            _el(dim, "Default", values[0])
            _el(dim, "Current", "false")
            for v in values:
                _el(dim, "Value", v)
        for tms_id in TMS_IDS:
            tms = get_tms(tms_id)
            wmts_tile_matrix_set_link(layer, tms_id, b, range(tms.minzoom, min(hi + 2, tms.maxzoom) + 1))
        time_part = "{Time}" if timed else "max"
        _el(layer, "ResourceURL", format="image/png", resourceType="tile",
            template=f"{base}/{layer_id}/{time_part}/{{TileMatrixSet}}/{{TileMatrix}}/{{TileCol}}/{{TileRow}}.png{q}")
    for tms_id in TMS_IDS:
        wmts_tile_matrix_set(contents, tms_id, hi + 2)
    return wmts_xml(root)


@dataclass
class InundationTiles:
    """The run's inundation polygons as Mapbox vector tiles (layer `inundation`), from Web Mercator in memory."""

    path: Path
    _frame: Any = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def frame(self) -> Any:
        with self._lock:
            if self._frame is None:
                import geopandas as gpd

                gdf = gpd.read_file(self.path, layer="inundation")
                self._frame = gdf.to_crs(3857) if len(gdf) else gdf
            return self._frame

    def tile(self, z: int, x: int, y: int) -> bytes:
        """One MVT tile (4096 extent, polygons clipped with a 64-unit buffer); empty bytes when nothing is there."""
        import mapbox_vector_tile
        import shapely

        tms = get_tms("WebMercatorQuad")
        check_tms_tile(tms, z, x, y)
        gdf = self.frame()
        if not len(gdf):
            return b""
        b = tms.xy_bounds(morecantile.Tile(x, y, z))
        pad = (b.right - b.left) * 64 / 4096
        box = shapely.box(b.left - pad, b.bottom - pad, b.right + pad, b.top + pad)
        hit = gdf.sindex.query(box, predicate="intersects")
        if not len(hit):
            return b""
        sub = gdf.iloc[hit]
        geoms = shapely.clip_by_rect(np.asarray(sub.geometry.values, dtype=object), *box.bounds)
        feats = []
        for g, row in zip(geoms, sub.itertuples(index=False), strict=True):
            if g is None or g.is_empty:
                continue
            feats.append({"geometry": g, "properties": {
                "depth_class": row.depth_class, "min_depth_m": float(row.min_depth_m),
                "area_m2": float(row.area_m2), "peak_depth_m": float(row.peak_depth_m)}})
        if not feats:
            return b""
        return mapbox_vector_tile.encode([{"name": "inundation", "features": feats}],
                                         default_options={"quantize_bounds": (b.left, b.bottom, b.right, b.top),
                                                          "extents": 4096, "y_coord_down": False})


__all__ = ["RAMPS", "VARIABLES", "FloodTiles", "InundationTiles", "colorize", "tilejson", "wmts_capabilities"]
