"""Sample points on facades: the window sills where GB 50180-2018 counts sunlight.

A facade is a straight run of a footprint's outline (exterior ring or courtyard ring; consecutive edges that turn by
less than `merge_angle` are one facade). Along a facade of length L, `max(1, floor(L / spacing))` points sit at the
centres of equal bays; on every floor they are raised to the sill height (0.9 m above the floor, GB 50180's 窗台面),
the floors being `floors` (the attribute) equal storeys up to the eave, or storeys of `storey_height` when the
attribute is missing. Points are set `offset` metres out of the wall along its outward normal so a ray leaving them
never touches their own wall. Facades against a neighbouring building (party walls, terraced courtyard houses) have
no windows: a point whose probe 0.3 m outside the wall lies inside another footprint is dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely

from cim.analysis.planning.scene import BuildingSet

PROBE = 0.3  # metres outside the wall where a party wall is detected


@dataclass
class WindowPoints:
    """Window sample points (arrays of length n).

    Attributes:
        xyz: (n, 3) float64 absolute positions (already `offset` out of the wall).
        normal: (n, 2) float64 outward unit normal of the facade (grid frame).
        building: (n,) int64 index into the BuildingSet.
        facade: (n,) int64 facade number within its building.
        floor: (n,) int64 floor number, 1 = ground floor.
        azimuth: (n,) float64 grid azimuth the facade faces, degrees.
    """

    xyz: np.ndarray
    normal: np.ndarray
    building: np.ndarray
    facade: np.ndarray
    floor: np.ndarray
    azimuth: np.ndarray

    def __len__(self) -> int:
        return len(self.xyz)

    def take(self, idx: np.ndarray) -> WindowPoints:
        return WindowPoints(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


def _facades(geom: shapely.Geometry, merge_angle: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Straight facades of a (Multi)Polygon: list of (start (2,), end (2,)) with the building on their left."""
    out = []
    cos_merge = math.cos(math.radians(merge_angle))
    for part in shapely.get_parts(shapely.orient_polygons(geom)):
        for ring in [part.exterior, *part.interiors]:
            c = np.asarray(ring.coords)[:-1, :2]
            if len(c) < 3:
                continue
            d = np.roll(c, -1, axis=0) - c
            length = np.linalg.norm(d, axis=1)
            keep = length > 1e-6
            c, d, length = c[keep], d[keep], length[keep]
            u = d / length[:, None]
            turn = np.einsum("ij,ij->i", u, np.roll(u, 1, axis=0)) < cos_merge  # a facade starts at vertex i
            if not turn.any():
                continue
            starts = np.flatnonzero(turn)
            n = len(c)
            for a, b in zip(starts, np.r_[starts[1:], starts[0] + n]):
                out.append((c[a % n], c[b % n]))
    return out


def window_points(buildings: BuildingSet, which: np.ndarray, *, spacing: float = 3.0, sill: float = 0.9,
                  storey_height: float = 3.0, min_facade: float = 1.0, offset: float = 0.02,
                  merge_angle: float = 1.0) -> WindowPoints:
    """Window sill points of the buildings `which` (indices into `buildings`).

    Args:
        buildings: every building of the scene (neighbours are needed for party walls).
        which: (m,) int indices of the buildings under test.
        spacing: metres between points along a facade (one point per bay of about this width).
        sill: sill height above each floor (GB 50180-2018: 0.9 m).
        storey_height: metres per floor when the building has no `floors`.
        min_facade: facades shorter than this have no window.
        offset: metres out of the wall.
        merge_angle: consecutive outline edges turning less than this (degrees) are one facade.
    """
    tree = shapely.STRtree(buildings.geoms)
    rows: list[np.ndarray] = []
    for b in np.asarray(which, np.int64).tolist():
        top = float(min(buildings.eave[b], buildings.height[b]))
        floors = buildings.floors[b]
        n_floor = int(floors) if np.isfinite(floors) and floors >= 1 else max(1, int(round(top / storey_height)))
        storey = top / n_floor if np.isfinite(floors) and floors >= 1 else storey_height
        levels = np.arange(n_floor) * storey + sill
        levels = levels[levels < top]
        if len(levels) == 0:
            continue
        for f_i, (p, q) in enumerate(_facades(buildings.geoms[b], merge_angle)):
            v = q - p
            length = float(np.hypot(*v))
            if length < min_facade:
                continue
            u = v / length
            normal = np.array([u[1], -u[0]])  # building on the left: outward is to the right
            k = max(1, int(length // spacing))
            t = (np.arange(k) + 0.5) * (length / k)
            xy = p + t[:, None] * u
            probe = shapely.points(xy + normal * PROBE)
            hits = tree.query(probe, predicate="within")
            blocked = np.zeros(k, bool)
            blocked[hits[0][hits[1] != b]] = True
            xy = xy[~blocked] + normal * offset
            if len(xy) == 0:
                continue
            m = len(xy)
            az = math.degrees(math.atan2(normal[0], normal[1])) % 360.0
            for fl, z in enumerate(levels, start=1):
                rows.append(np.column_stack([xy, np.full(m, buildings.base[b] + z), np.tile(normal, (m, 1)),
                                             np.full(m, b), np.full(m, f_i), np.full(m, fl), np.full(m, az)]))
    if not rows:
        return WindowPoints(np.zeros((0, 3)), np.zeros((0, 2)), np.zeros(0, np.int64), np.zeros(0, np.int64),
                            np.zeros(0, np.int64), np.zeros(0))
    a = np.vstack(rows)
    return WindowPoints(a[:, 0:3], a[:, 3:5], a[:, 5].astype(np.int64), a[:, 6].astype(np.int64),
                        a[:, 7].astype(np.int64), a[:, 8])


__all__ = ["WindowPoints", "window_points"]
