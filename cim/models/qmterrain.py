"""Quantized-mesh terrain (Cesium's `layer.json` + `{z}/{x}/{y}.terrain`) from any DEM the engine reads.

`QuantizedMeshTerrain(dem)` makes one tile on request (`cim serve` answers `/terrain/{map}/...` with it) or writes
them all ahead (`write`, behind `cim build --quantized-mesh`). Other systems (CesiumJS's `CesiumTerrainProvider`,
anything that reads the format) then drape their data on our terrain, and ours on it.

A tile of level z samples the DEM (bilinear, in the DEM's own CRS) on a (tile_px + 1)^2 grid of longitudes and
latitudes over the tile, makes the heights ellipsoidal with the vertical datum, and keeps a TIN (pydelatin) within
`max_error * 2^(max_zoom - z)` of that grid; the finest level is the first whose grid spacing is at most the DEM's
cell size, so its TIN is within `max_error` of the DEM's own surface at every grid sample (the measured value is in
`QuantizedTile.error`). A tile over the DEM's edge (or nodata) takes the nearest valid height outside it; a tile
wholly outside the DEM is flat at height 0, the ellipsoid, as Cesium's default terrain.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pydelatin import Delatin

from cim.errors import InputError
from cim.sources.crs import transformer
from cim.sources.raster import DemGrid, bilinear, read_dem
from cim.sources.vertical import ELLIPSOIDAL, VerticalDatum
from tiles.quantized_mesh import GeoTile, encode_tile, layer_json, tiles_over
from tiles.tileset import write_atomic

_R = 6378137.0


@dataclass(frozen=True)
class QuantizedMeshOptions:
    """How a DEM becomes quantized-mesh tiles.

    Attributes:
        max_error: metres, the TIN tolerance at the finest level (doubled per coarser level).
        tile_px: grid intervals per tile side.
        max_zoom: the finest level; None -> the first whose grid spacing is at most the DEM's cell size.
        vertical_datum: what the DEM's heights are measured from (heights become ellipsoidal).
        crs: the DEM's CRS when the file declares none.
    """

    max_error: float = 0.5
    tile_px: int = 64
    max_zoom: int | None = None
    vertical_datum: VerticalDatum = ELLIPSOIDAL
    crs: str | None = None

    def check(self) -> None:
        if not (self.max_error > 0 and math.isfinite(self.max_error)):
            raise InputError(f"max_error={self.max_error} must be a positive number of metres")
        if not 2 <= self.tile_px <= 1024:
            raise InputError(f"tile_px={self.tile_px} must be between 2 and 1024")
        if self.max_zoom is not None and not 0 <= self.max_zoom <= 24:
            raise InputError(f"max_zoom={self.max_zoom} must be between 0 and 24")


class QuantizedTile(NamedTuple):
    """One encoded tile: its bytes, vertex and triangle counts, and the TIN's largest height error on its grid."""

    data: bytes
    vertices: int
    triangles: int
    error: float
    tolerance: float


@dataclass
class QuantizedMeshTerrain:
    """Quantized-mesh tiles of one DEM. Cheap to construct; the DEM is read on first use.

    Args:
        dem: the DEM raster (band 1).
        options: see `QuantizedMeshOptions`.
    """

    dem: str | os.PathLike[str]
    options: QuantizedMeshOptions = field(default_factory=QuantizedMeshOptions)

    def __post_init__(self) -> None:
        self.options.check()

    @functools.cached_property
    def grid(self) -> DemGrid:
        return read_dem(self.dem, self.options.crs)

    @functools.cached_property
    def _to_dem(self) -> Any:
        return transformer("EPSG:4326", self.grid.crs if not self.grid.crs.is_compound
                           else self.grid.crs.sub_crs_list[0])

    @functools.cached_property
    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) degrees of the DEM's valid extent (edges densified)."""
        left, bottom, right, top = self.grid.bounds
        t = np.linspace(0.0, 1.0, 33)
        xs = np.concatenate([left + (right - left) * t, np.full(33, right), right - (right - left) * t,
                             np.full(33, left)])
        ys = np.concatenate([np.full(33, bottom), bottom + (top - bottom) * t, np.full(33, top),
                             top - (top - bottom) * t])
        lon, lat = self._to_dem.transform(xs, ys, direction="INVERSE")
        return float(np.min(lon)), float(np.min(lat)), float(np.max(lon)), float(np.max(lat))

    @functools.cached_property
    def max_zoom(self) -> int:
        if self.options.max_zoom is not None:
            return self.options.max_zoom
        t = self.grid.transform
        cell = min(math.hypot(t.a, t.d), math.hypot(t.b, t.e))
        west, south, east, north = self.bounds
        metres_per_degree = math.radians(1.0) * _R * math.cos(math.radians(max(abs(south), abs(north))))
        # the tile spacing 180 / 2^z / tile_px degrees must not exceed the cell size
        z = math.ceil(math.log2(180.0 * metres_per_degree / (self.options.tile_px * cell)))
        return int(min(max(z, 0), 24))

    def layer(self, name: str = "terrain") -> dict[str, Any]:
        """The `layer.json` document."""
        return layer_json(self.bounds, self.max_zoom, name=name,
                          description=f"quantized-mesh terrain of {Path(self.dem).name} "
                                      f"(max error {self.options.max_error} m, vertical datum "
                                      f"{self.options.vertical_datum.label})")

    def tolerance(self, z: int) -> float:
        return self.options.max_error * 2.0 ** max(0, self.max_zoom - z)

    def heights(self, tile: GeoTile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The tile's sample grid: (rows, cols) longitudes, latitudes and ellipsoidal heights (0 outside the DEM)."""
        n = self.options.tile_px + 1
        west, south, east, north = tile.bounds
        lon, lat = np.meshgrid(np.linspace(west, east, n), np.linspace(north, south, n))
        h = np.full(n * n, np.nan)
        bw, bs, be, bn = self.bounds
        near = (lon.ravel() >= bw) & (lon.ravel() <= be) & (lat.ravel() >= bs) & (lat.ravel() <= bn)
        if near.any():  # only points over the DEM are projected (far ones may not even have a projection)
            x, y = self._to_dem.transform(lon.ravel()[near], lat.ravel()[near])
            h[near] = bilinear(self.grid.heights, self.grid.transform, np.asarray(x), np.asarray(y))
        valid = np.isfinite(h)
        if valid.any() and not self.options.vertical_datum.is_ellipsoidal:
            h[valid] += self.options.vertical_datum.undulation(lon.ravel()[valid], lat.ravel()[valid])
        h = h.reshape(n, n)
        valid = valid.reshape(n, n)
        if valid.any() and not valid.all():
            # a tile over the DEM's edge (or nodata) takes the nearest valid height there: no cliff inside a tile,
            # whose triangles would slope across the DEM's own area
            from scipy import ndimage

            _, (rows, cols) = ndimage.distance_transform_edt(~valid, return_indices=True)
            h = h[rows, cols]
        elif not valid.any():
            h[:] = 0.0
        return lon, lat, h

    def tile(self, z: int, x: int, y: int) -> QuantizedTile:
        """Tile (z, x, y) of the geographic scheme (rows from the south), encoded.

        Raises:
            TileRequestError: the tile is outside the scheme.
        """
        tile = GeoTile(z, x, y).check()
        lon, lat, h = self.heights(tile)
        n = self.options.tile_px + 1
        tol = self.tolerance(z)
        tin = Delatin(h.astype(np.float64), width=n, height=n, max_error=tol)
        verts = np.asarray(tin.vertices, np.float64)
        tris = np.asarray(tin.triangles, np.int64).reshape(-1, 3)
        # pydelatin's y axis points up (north): row = n - 1 - y. Reading y as the row (as this did before) made a
        # TIN for the terrain mirrored north-south, its vertices then lifted to our heights: 1.25 m off where the
        # tolerance was 0.5 m (CesiumJS sampled it so)
        col, row = np.rint(verts[:, 0]).astype(np.int64), n - 1 - np.rint(verts[:, 1]).astype(np.int64)
        pos = np.column_stack([lon[row, col], lat[row, col], h[row, col]])
        return QuantizedTile(encode_tile(pos, tris, tile), len(pos), len(tris), float(tin.error), tol)

    def available(self) -> list[GeoTile]:
        """Every tile `layer.json` declares, coarse to fine."""
        out = [GeoTile(0, 0, 0), GeoTile(0, 1, 0)]
        for z in range(1, self.max_zoom + 1):
            x0, y0, x1, y1 = tiles_over(self.bounds, z)
            out += [GeoTile(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]
        return out

    def write(self, out_dir: str | os.PathLike[str],
              progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
        """Write `layer.json` and every tile under `out_dir`; returns a report (tiles, bytes, errors by level)."""
        t0 = time.perf_counter()
        out = Path(out_dir)
        tiles = self.available()
        errors: dict[int, float] = {}
        size = 0
        for i, t in enumerate(tiles):
            q = self.tile(*t)
            write_atomic(out / str(t.z) / str(t.x) / f"{t.y}.terrain", q.data)
            errors[t.z] = max(errors.get(t.z, 0.0), q.error)
            size += len(q.data)
            if progress is not None:
                progress("quantized-mesh", i + 1, len(tiles))
        write_atomic(out / "layer.json", json.dumps(self.layer(), separators=(",", ":")).encode())
        return {"tiles": len(tiles), "bytes": size, "maxZoom": self.max_zoom, "maxError": self.options.max_error,
                "leafError": errors.get(self.max_zoom, 0.0), "levelErrors": [errors[z] for z in sorted(errors)],
                "bounds": list(self.bounds), "seconds": round(time.perf_counter() - t0, 3)}


__all__ = ["QuantizedMeshOptions", "QuantizedMeshTerrain", "QuantizedTile"]
