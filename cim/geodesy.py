"""Local east-north-up frames for placing tile content on the globe, in float64.

Tile content is stored in float32 relative to a local frame; the frame's origin and axes travel in the tile's
`transform` (float64), so centimetre accuracy survives anywhere on Earth.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from cim.sources.crs import transformer

# WGS 84 ellipsoid (CGCS2000 differs by 0.1 mm in the semi-minor axis: negligible here).
_A = 6378137.0
_F = 1.0 / 298.257223563
_E2 = _F * (2.0 - _F)


class LocalFrame(NamedTuple):
    """An east-north-up frame: `matrix` (4, 4) float64 maps local metres (e, n, u, 1) to ECEF."""

    matrix: np.ndarray

    @property
    def origin(self) -> np.ndarray:
        """(3,) float64 ECEF origin."""
        return self.matrix[:3, 3]

    def to_local(self, ecef: np.ndarray) -> np.ndarray:
        """(n, 3) ECEF metres to (n, 3) float64 local east/north/up metres."""
        rot = self.matrix[:3, :3]
        return (np.asarray(ecef, np.float64) - self.origin) @ rot

    def to_ecef(self, local: np.ndarray) -> np.ndarray:
        """(n, 3) local metres to (n, 3) float64 ECEF."""
        return np.asarray(local, np.float64) @ self.matrix[:3, :3].T + self.origin

    def column_major(self) -> list[float]:
        """The 16 numbers of a 3D Tiles `transform` (column-major)."""
        return [float(v) for v in self.matrix.T.reshape(-1)]


def enu_frame(origin_ecef: np.ndarray) -> LocalFrame:
    """The east-north-up frame whose origin is an ECEF point (axes from the geodetic normal there)."""
    x, y, z = (float(v) for v in origin_ecef)
    lon, lat, _ = ecef_to_geodetic(np.array([[x, y, z]]))[0]
    lam, phi = np.radians(lon), np.radians(lat)
    east = np.array([-np.sin(lam), np.cos(lam), 0.0])
    north = np.array([-np.sin(phi) * np.cos(lam), -np.sin(phi) * np.sin(lam), np.cos(phi)])
    up = np.array([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)])
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = east, north, up, (x, y, z)
    return LocalFrame(m)


def ecef_to_geodetic(xyz: np.ndarray) -> np.ndarray:
    """(n, 3) ECEF metres to (n, 3) WGS 84 longitude, latitude (degrees) and ellipsoidal height (metres)."""
    t = transformer("EPSG:4978", "EPSG:4979")
    xyz = np.asarray(xyz, np.float64)
    lon, lat, h = t.transform(xyz[:, 0], xyz[:, 1], xyz[:, 2])
    return np.column_stack([lon, lat, h])


def region_of(ecef: np.ndarray, pad_m: float = 0.0) -> list[float]:
    """A 3D Tiles `region` [west, south, east, north (radians), min height, max height] around ECEF points.

    Args:
        ecef: (n, 3) float64 points.
        pad_m: margin in metres added on every side (covers float32 storage rounding).
    """
    g = ecef_to_geodetic(ecef)
    lon, lat, h = np.radians(g[:, 0]), np.radians(g[:, 1]), g[:, 2]
    dlat = pad_m / _A
    dlon = pad_m / (_A * max(np.cos(np.max(np.abs(lat))), 1e-6))
    return [
        float(lon.min() - dlon),
        float(lat.min() - dlat),
        float(lon.max() + dlon),
        float(lat.max() + dlat),
        float(h.min() - pad_m),
        float(h.max() + pad_m),
    ]


def union_regions(regions: list[list[float]]) -> list[float]:
    """The smallest region holding all given regions (same hemisphere, no antimeridian crossing)."""
    r = np.asarray(regions, np.float64)
    return [float(r[:, 0].min()), float(r[:, 1].min()), float(r[:, 2].max()), float(r[:, 3].max()),
            float(r[:, 4].min()), float(r[:, 5].max())]
