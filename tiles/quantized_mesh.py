"""Cesium quantized-mesh-1.0 terrain: the tiling scheme, `layer.json`, and tile encoding with oct-encoded normals.

The scheme is Cesium's geographic one (EPSG:4326): level z has 2^(z+1) x 2^z tiles of 180/2^z degrees, rows counted
from the south (TMS). A tile is a TIN in longitude, latitude and ellipsoidal height; `quantized-mesh-encoder`
quantizes it (u, v over the tile, heights over the tile's range in 32767 steps), writes the edge lists from which the
client builds its skirts, and the `octvertexnormals` extension. The format: github.com/CesiumGS/quantized-mesh.
"""

from __future__ import annotations

import io
from typing import Any, NamedTuple

import numpy as np

from tiles.errors import TileRequestError

MEDIA_TYPE = "application/vnd.quantized-mesh"
EXTENSIONS = ("octvertexnormals",)


class GeoTile(NamedTuple):
    """A tile of the geographic scheme: level, column (from the west), row (from the south)."""

    z: int
    x: int
    y: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) degrees."""
        size = 180.0 / 2**self.z
        return (-180.0 + self.x * size, -90.0 + self.y * size, -180.0 + (self.x + 1) * size, -90.0 + (self.y + 1) * size)

    def check(self) -> GeoTile:
        if self.z < 0 or not (0 <= self.x < 2 ** (self.z + 1) and 0 <= self.y < 2**self.z):
            raise TileRequestError(f"Tile(z={self.z}, x={self.x}, y={self.y}) is outside the geographic scheme")
        return self


def tiles_over(bounds: tuple[float, float, float, float], z: int) -> tuple[int, int, int, int]:
    """(start x, start y, end x, end y) of the level-z tiles that cover lon/lat `bounds`, ends inclusive."""
    size = 180.0 / 2**z
    west, south, east, north = bounds
    x0 = int(np.clip(np.floor((west + 180.0) / size), 0, 2 ** (z + 1) - 1))
    x1 = int(np.clip(np.ceil((east + 180.0) / size) - 1, x0, 2 ** (z + 1) - 1))
    y0 = int(np.clip(np.floor((south + 90.0) / size), 0, 2**z - 1))
    y1 = int(np.clip(np.ceil((north + 90.0) / size) - 1, y0, 2**z - 1))
    return x0, y0, x1, y1


def layer_json(bounds: tuple[float, float, float, float], max_zoom: int, *, name: str = "terrain",
               description: str = "", attribution: str = "") -> dict[str, Any]:
    """The `layer.json` of a terrain over lon/lat `bounds`: every level-0 tile and, below, the tiles over `bounds`."""
    available: list[list[dict[str, int]]] = [[{"startX": 0, "startY": 0, "endX": 1, "endY": 0}]]
    for z in range(1, max_zoom + 1):
        x0, y0, x1, y1 = tiles_over(bounds, z)
        available.append([{"startX": x0, "startY": y0, "endX": x1, "endY": y1}])
    return {
        "tilejson": "2.1.0", "name": name, "description": description, "version": "1.0.0",
        "format": "quantized-mesh-1.0", "attribution": attribution, "scheme": "tms",
        "tiles": ["{z}/{x}/{y}.terrain?v={version}"], "projection": "EPSG:4326",
        "bounds": [-180.0, -90.0, 180.0, 90.0], "minzoom": 0, "maxzoom": max_zoom,
        "available": available, "extensions": list(EXTENSIONS),
    }


def encode_tile(lonlat_h: np.ndarray, triangles: np.ndarray, tile: GeoTile) -> bytes:
    """One quantized-mesh tile with the `octvertexnormals` extension.

    Args:
        lonlat_h: (n, 3) float64 longitude, latitude (degrees) and ellipsoidal height (metres) of the vertices; the
            tile's corners must be among them (every tile side is an edge of the mesh).
        triangles: (m, 3) int vertex indices, counter-clockwise seen from above.
        tile: the tile, whose bounds quantize u and v.
    """
    from quantized_mesh_encoder import VertexNormalsExtension, encode

    pos = np.ascontiguousarray(lonlat_h, np.float64)
    tris = np.ascontiguousarray(triangles, np.uint32)
    buf = io.BytesIO()
    normals = VertexNormalsExtension(positions=pos, indices=tris)
    encode(buf, pos, tris, bounds=tile.bounds, extensions=[normals])
    return buf.getvalue()


__all__ = ["EXTENSIONS", "GeoTile", "MEDIA_TYPE", "encode_tile", "layer_json", "tiles_over"]
