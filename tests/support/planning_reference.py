"""Brute-force references for the planning analyses: exact ray/prism intersection, every second.

Independent of Embree and of the scene's triangles: a LOD1 building is the prism {(x, y, z): (x, y) in its
footprint, base <= z <= top}; a ray P + t d (t > 0, d rising) is inside the prism's height range for
t in [max(0, (base - Pz) / dz), (top - Pz) / dz], and hits the prism iff the 2D segment it draws over that range
meets the footprint polygon: an end of it lies inside the polygon, or it crosses one of the polygon's edges
(orientation tests in float64).
"""

from __future__ import annotations

import math

import numpy as np
import shapely


def _orient(ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray, cx: np.ndarray, cy: np.ndarray
            ) -> np.ndarray:
    return np.sign((bx - ax) * (cy - ay) - (by - ay) * (cx - ax))


class Prisms:
    """LOD1 buildings for brute-force ray tests."""

    def __init__(self, geoms: np.ndarray, base: np.ndarray, top: np.ndarray) -> None:
        self.geoms = np.asarray(geoms, dtype=object)
        self.base = np.asarray(base, np.float64)
        self.top = np.asarray(top, np.float64)
        self.tree = shapely.STRtree(self.geoms)
        self.max_top = float(self.top.max())
        self.edges = []
        for g in self.geoms:
            rings = [r for p in shapely.get_parts(g) for r in (p.exterior, *p.interiors)]
            e = [np.column_stack([np.asarray(r.coords)[:-1, :2], np.asarray(r.coords)[1:, :2]]) for r in rings]
            self.edges.append(np.vstack(e))

    def blocked(self, p: np.ndarray, d: np.ndarray) -> np.ndarray:
        """(m,) bool: rays from point p (3,) along rising unit directions d (m, 3) hit a prism."""
        m = len(d)
        out = np.zeros(m, bool)
        if m == 0:
            return out
        reach = np.maximum(self.max_top - p[2], 0.0) / d[:, 2]
        ends = p[None, :2] + d[:, :2] * reach[:, None]
        fan = shapely.convex_hull(shapely.multipoints(np.vstack([p[None, :2], ends])))
        az = np.arctan2(d[:, 0], d[:, 1])
        horizontal = np.hypot(d[:, 0], d[:, 1])
        for j in self.tree.query(fan, predicate="intersects"):
            if self.top[j] <= p[2]:
                continue
            # necessary conditions only (exact filter): the ray's azimuth within the footprint's angular span seen
            # from p, and the footprint within the horizontal distance at which the ray is still below its top
            v = self.edges[j][:, :2] - p[:2]
            ang = np.arctan2(v[:, 0], v[:, 1])
            mid = math.atan2(v[:, 0].mean(), v[:, 1].mean())
            rel = (ang - mid + np.pi) % (2 * np.pi) - np.pi
            dist = shapely.distance(shapely.Point(p[0], p[1]), self.geoms[j])
            rel_az = (az - mid + np.pi) % (2 * np.pi) - np.pi
            near = (rel_az >= rel.min() - 1e-9) & (rel_az <= rel.max() + 1e-9) \
                & (dist * d[:, 2] <= (self.top[j] - p[2]) * horizontal + 1e-9)
            if rel.max() - rel.min() > np.pi * 0.999 or dist < 1e-6:
                near[:] = True
            t_lo = np.maximum(0.0, (self.base[j] - p[2]) / d[:, 2])
            t_hi = (self.top[j] - p[2]) / d[:, 2]
            ok = np.flatnonzero((t_hi > t_lo) & ~out & near)
            if len(ok) == 0:
                continue
            ax, ay = p[0] + d[ok, 0] * t_lo[ok], p[1] + d[ok, 1] * t_lo[ok]
            bx, by = p[0] + d[ok, 0] * t_hi[ok], p[1] + d[ok, 1] * t_hi[ok]
            hit = shapely.contains_xy(self.geoms[j], ax, ay) | shapely.contains_xy(self.geoms[j], bx, by)
            e = self.edges[j]
            cx, cy, ex, ey = (e[:, k][None, :] for k in range(4))
            axc, ayc, bxc, byc = ax[:, None], ay[:, None], bx[:, None], by[:, None]
            cross = ((_orient(axc, ayc, bxc, byc, cx, cy) != _orient(axc, ayc, bxc, byc, ex, ey))
                     & (_orient(cx, cy, ex, ey, axc, ayc) != _orient(cx, cy, ex, ey, bxc, byc)))
            hit |= cross.any(axis=1)
            out[ok[hit]] = True
        return out


def lit_seconds(prisms: Prisms, sun_vectors: np.ndarray, sun_elevation: np.ndarray, p: np.ndarray,
                normal: np.ndarray | None, sweep_angle: float) -> np.ndarray:
    """(T - 1,) bool: the point sees the sun at each second of the window (the last instant ends the window)."""
    v = sun_vectors[:-1]
    up = sun_elevation[:-1] > 0
    if normal is not None:
        h = v[:, :2]
        hn = np.linalg.norm(h, axis=1)
        up &= (h @ normal) >= math.sin(math.radians(sweep_angle)) * hn
    lit = up.copy()
    idx = np.flatnonzero(up)
    lit[idx[prisms.blocked(p, v[idx])]] = False
    return lit


def counted_seconds(lit: np.ndarray, min_segment_seconds: float, counting: str = "cumulative") -> float:
    """Sunlit seconds under a counting rule from a per-second series."""
    edges = np.diff(np.r_[0, lit.astype(np.int8), 0])
    runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    runs = runs[runs >= min_segment_seconds]
    if counting == "continuous":
        return float(runs.max()) if len(runs) else 0.0
    return float(runs.sum())


def segments_blocked(prisms: Prisms, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(m,) bool: the segments from p (3,) to each q (m, 3) pass through a prism (any direction; exact)."""
    m = len(q)
    out = np.zeros(m, bool)
    d = q - p[None, :]
    box = shapely.box(*np.r_[np.minimum(p[:2], q[:, :2].min(0)), np.maximum(p[:2], q[:, :2].max(0))])
    for j in prisms.tree.query(box, predicate="intersects"):
        with np.errstate(divide="ignore", invalid="ignore"):
            ta = (prisms.base[j] - p[2]) / d[:, 2]
            tb = (prisms.top[j] - p[2]) / d[:, 2]
        lo = np.where(d[:, 2] > 0, ta, tb)
        hi = np.where(d[:, 2] > 0, tb, ta)
        flat = d[:, 2] == 0
        inside_z = (prisms.base[j] <= p[2]) & (p[2] <= prisms.top[j])
        lo = np.where(flat, 0.0 if inside_z else 1.0, lo)
        hi = np.where(flat, 1.0 if inside_z else 0.0, hi)
        lo, hi = np.maximum(lo, 0.0), np.minimum(hi, 1.0)
        ok = np.flatnonzero((hi > lo) & ~out)
        if len(ok) == 0:
            continue
        a = p[None, :2] + d[ok, :2] * lo[ok, None]
        b = p[None, :2] + d[ok, :2] * hi[ok, None]
        hit = shapely.intersects(shapely.linestrings(np.stack([a, b], axis=1)), prisms.geoms[j])
        out[ok[hit]] = True
    return out
