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


def facades(geoms: np.ndarray, merge_angle: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Straight facades of (Multi)Polygons, all at once: (start (f, 2), end (f, 2), owner (f,) index into
    `geoms`), each with its building on the left (exterior rings counter-clockwise, courtyard rings clockwise), in
    the order of the polygons, their parts and rings."""
    polys, owner = shapely.get_parts(shapely.orient_polygons(np.asarray(geoms, dtype=object)), return_index=True)
    rings, ring_poly = shapely.get_rings(polys, return_index=True)
    coords, ring_of = shapely.get_coordinates(rings, return_index=True)
    counts = np.bincount(ring_of, minlength=len(rings))
    first = np.r_[0, np.cumsum(counts)[:-1]]
    # drop the closing vertex of every ring, then edges i -> i + 1 within the ring (cyclically)
    last = first + counts - 1
    keep = np.ones(len(coords), bool)
    keep[last] = False
    c = coords[keep]
    ring = ring_of[keep]
    n = counts - 1
    start = np.r_[0, np.cumsum(n)[:-1]]
    pos = np.arange(len(c)) - start[ring]
    nxt = start[ring] + (pos + 1) % n[ring]
    d = c[nxt] - c
    length = np.hypot(d[:, 0], d[:, 1])
    ok = length > 1e-6
    u = np.zeros_like(d)
    u[ok] = d[ok] / length[ok, None]
    prv = start[ring] + (pos - 1) % n[ring]
    # a facade starts where the outline turns by more than merge_angle (zero-length edges never start one)
    prev_u = u[prv]
    turn = ok & (np.einsum("ij,ij->i", u, prev_u) < np.cos(np.radians(merge_angle)))
    turn |= ok & (np.hypot(prev_u[:, 0], prev_u[:, 1]) == 0)
    idx = np.flatnonzero(turn)
    if len(idx) == 0:
        return np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0, np.int64)
    r = ring[idx]
    same = np.r_[r[1:] == r[:-1], False]
    # the end of a facade is the start of the next facade of the same ring (the ring's first one, cyclically)
    ring_first = np.r_[0, np.flatnonzero(r[1:] != r[:-1]) + 1]
    first_of = np.repeat(ring_first, np.diff(np.r_[ring_first, len(idx)]))
    end_idx = np.where(same, np.r_[idx[1:], 0], idx[first_of])
    return c[idx], c[end_idx], owner[ring_poly[r]]


def window_points(buildings: BuildingSet, which: np.ndarray, *, spacing: float = 3.0, sill: float = 0.9,
                  storey_height: float = 3.0, min_facade: float = 1.0, offset: float = 0.02,
                  merge_angle: float = 1.0) -> WindowPoints:
    """Window sill points of the buildings `which` (indices into `buildings`), in bulk.

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
    which = np.asarray(which, np.int64)
    p, q, local = facades(buildings.geoms[which], merge_angle)
    b = which[local]
    v = q - p
    length = np.hypot(v[:, 0], v[:, 1])
    keep = length >= min_facade
    p, v, length, b = p[keep], v[keep], length[keep], b[keep]
    # facade number within its building (in outline order)
    fac = np.arange(len(b)) - np.searchsorted(b, b, side="left") if len(b) and np.all(np.diff(b) >= 0) else \
        _rank_within(b)
    u = v / length[:, None]
    normal = np.column_stack([u[:, 1], -u[:, 0]])  # building on the left: outward is to the right
    k = np.maximum(1, np.floor(length / spacing)).astype(np.int64)
    f = np.repeat(np.arange(len(b)), k)
    j = np.arange(len(f)) - np.repeat(np.cumsum(k) - k, k)
    t = (j + 0.5) * (length / k)[f]
    xy = p[f] + t[:, None] * u[f]
    probe = shapely.points(xy + normal[f] * PROBE)
    hits = shapely.STRtree(buildings.geoms).query(probe, predicate="within")
    party = np.zeros(len(f), bool)
    party[hits[0][hits[1] != b[f][hits[0]]]] = True
    f, xy = f[~party], xy[~party] + normal[f[~party]] * offset
    # floors: `floors` equal storeys up to the eave, else storeys of `storey_height`
    top = np.minimum(buildings.eave, buildings.height)[b]
    fl = buildings.floors[b]
    known = np.isfinite(fl) & (fl >= 1)
    n_floor = np.where(known, np.floor(np.nan_to_num(fl, nan=1.0)), np.maximum(1, np.round(top / storey_height)))
    storey = np.where(known, top / np.maximum(n_floor, 1), storey_height)
    n_floor = n_floor.astype(np.int64)
    nf = n_floor[f]
    g = np.repeat(np.arange(len(f)), nf)
    level = np.arange(len(g)) - np.repeat(np.cumsum(nf) - nf, nf)
    ff = f[g]
    z = level * storey[ff] + sill
    ok = z < top[ff]
    g, ff, level, z = g[ok], ff[ok], level[ok], z[ok]
    bb = b[ff]
    az = np.degrees(np.arctan2(normal[ff, 0], normal[ff, 1])) % 360.0
    xyz = np.column_stack([xy[g], buildings.base[bb] + z])
    return WindowPoints(xyz, normal[ff], bb, fac[ff], level + 1, az)


def _rank_within(b: np.ndarray) -> np.ndarray:
    order = np.argsort(b, kind="stable")
    sb = b[order]
    starts = np.r_[0, np.flatnonzero(sb[1:] != sb[:-1]) + 1]
    rank = np.arange(len(b)) - np.repeat(starts, np.diff(np.r_[starts, len(b)]))
    out = np.empty(len(b), np.int64)
    out[order] = rank
    return out


__all__ = ["WindowPoints", "facades", "window_points"]
