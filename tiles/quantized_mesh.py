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

    u, v and heights are quantized here in float64 and rounded (u, v over the tile's bounds; heights over the
    header's float32 minimum and maximum, as a decoder reads them). `quantized_mesh_encoder.encode` casts lon/lat to
    float32 first (7.6e-6 degrees of longitude at 113 E: 0.65 m) and truncates: on 12 leaf tiles of a hilly test
    DEM whose TINs are within 0.5 m of their grid, its tiles decoded 0.506 m off at worst, these 0.499 m.
    Vertices are renumbered in order of first use, so the high-water-mark index codes are the canonical ones
    (small and never negative; the library's codes wrapped around 2^16 unless the caller had ordered them so).

    Args:
        lonlat_h: (n, 3) float64 longitude, latitude (degrees) and ellipsoidal height (metres) of the vertices; the
            tile's corners must be among them (every tile side is an edge of the mesh).
        triangles: (m, 3) int vertex indices, counter-clockwise seen from above.
        tile: the tile, whose bounds quantize u and v.
    """
    from quantized_mesh_encoder import VertexNormalsExtension
    from quantized_mesh_encoder.encode import (
        compute_header,
        encode_header,
        write_edge_indices,
        write_indices,
        write_vertices,
    )

    pos = np.ascontiguousarray(lonlat_h, np.float64)
    tris = np.ascontiguousarray(triangles, np.int64).reshape(-1, 3)
    # first-use order of the vertices (high-water-mark encoding assumes it); unused vertices dropped
    flat = tris.reshape(-1)
    _, first = np.unique(flat, return_index=True)
    order = flat[np.sort(first)]
    remap = np.full(len(pos), -1, np.int64)
    remap[order] = np.arange(len(order))
    pos, tris = pos[order], remap[tris]
    west, south, east, north = tile.bounds
    h = pos[:, 2]
    lo, hi = np.float32(h.min()), np.float32(h.max())
    if lo > h.min():
        lo = np.nextafter(lo, np.float32(-np.inf))
    if hi < h.max():
        hi = np.nextafter(hi, np.float32(np.inf))
    span = float(hi) - float(lo)
    q = np.column_stack([
        np.rint((pos[:, 0] - west) / (east - west) * 32767),
        np.rint((pos[:, 1] - south) / (north - south) * 32767),
        np.rint((h - float(lo)) / span * 32767) if span > 0 else np.zeros(len(h)),
    ])
    q = np.clip(q, 0, 32767).astype(np.int16)
    # bounding sphere and horizon occlusion point as the library makes them (float32: finite on level 0 too)
    header = compute_header(pos.astype(np.float32), None)
    header["minimumHeight"], header["maximumHeight"] = float(lo), float(hi)
    buf = io.BytesIO()
    encode_header(buf, header)
    write_vertices(buf, q, len(q))
    write_indices(buf, tris.astype(np.uint32), len(q))
    write_edge_indices(buf, q, len(q))
    buf.write(VertexNormalsExtension(positions=pos, indices=tris.astype(np.uint32)).encode())
    return buf.getvalue()


__all__ = ["EXTENSIONS", "GeoTile", "MEDIA_TYPE", "encode_tile", "layer_json", "tiles_over"]
