"""How far one mesh is from another: the measured geometric error of a simplified level.

`surface_distance(points, vertices, triangles)` is the distance of each point to the nearest triangle of a mesh
(closest point on a triangle: Ericson, *Real-Time Collision Detection*, 5.1.5). The triangles tried for each point
are the `k` whose centroids are nearest, so the result can only be too large, never too small: a safe bound for a
3D Tiles geometric error. `hausdorff` is the larger of both one-sided distances over the two meshes' vertices.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def closest_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Closest points on triangles (a, b, c) to points p; all (n, 3) float64, row by row."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = np.einsum("ij,ij->i", ab, ap), np.einsum("ij,ij->i", ac, ap)
    bp = p - b
    d3, d4 = np.einsum("ij,ij->i", ab, bp), np.einsum("ij,ij->i", ac, bp)
    cp = p - c
    d5, d6 = np.einsum("ij,ij->i", ab, cp), np.einsum("ij,ij->i", ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = va + vb + vc
        v = np.where(denom != 0, vb / denom, 0.0)
        w = np.where(denom != 0, vc / denom, 0.0)
        out = a + ab * v[:, None] + ac * w[:, None]  # inside the face
        # edge regions (later assignments are the more specific regions, which exclude each other)
        bc_t = np.where((d4 - d3) + (d5 - d6) != 0, (d4 - d3) / ((d4 - d3) + (d5 - d6)), 0.0)
        on_bc = (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0)
        out[on_bc] = (b + (c - b) * bc_t[:, None])[on_bc]
        ac_t = np.where(d2 - d6 != 0, d2 / (d2 - d6), 0.0)
        on_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
        out[on_ac] = (a + ac * ac_t[:, None])[on_ac]
        ab_t = np.where(d1 - d3 != 0, d1 / (d1 - d3), 0.0)
        on_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
        out[on_ab] = (a + ab * ab_t[:, None])[on_ab]
    at_a = (d1 <= 0) & (d2 <= 0)
    at_b = (d3 >= 0) & (d4 <= d3)
    at_c = (d6 >= 0) & (d5 <= d6)
    out[at_a], out[at_b], out[at_c] = a[at_a], b[at_b], c[at_c]
    return out


def _prepared(points: np.ndarray, vertices: np.ndarray, triangles: np.ndarray, k: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Points and vertices moved near the origin (ECEF magnitudes), the triangles, and for each point the `k`
    triangles with the nearest centroids ((len(points), k) int64, nearest first)."""
    p = np.asarray(points, np.float64)
    v = np.asarray(vertices, np.float64)
    t = np.asarray(triangles, np.int64).reshape(-1, 3)
    origin = v.mean(axis=0)
    p, v = p - origin, v - origin
    k = int(min(k, len(t)))
    _, near = cKDTree(v[t].mean(axis=1)).query(p, k=k)
    return p, v, t, near.reshape(len(p), k)


def _nearest_of(p: np.ndarray, v: np.ndarray, t: np.ndarray, near: np.ndarray) -> np.ndarray:
    """(len(p),) distance of each point to the nearest of its triangles `near` ((len(p), k))."""
    best = np.full(len(p), np.inf)
    for j in range(near.shape[1]):
        tri = t[near[:, j]]
        q = closest_on_triangles(p, v[tri[:, 0]], v[tri[:, 1]], v[tri[:, 2]])
        best = np.minimum(best, np.linalg.norm(p - q, axis=1))
    return best


def surface_distance(points: np.ndarray, vertices: np.ndarray, triangles: np.ndarray, k: int = 16) -> np.ndarray:
    """Distance of each point to the mesh (vertices (n, 3), triangles (m, 3)), over the `k` triangles with the
    nearest centroids (an upper bound of the exact distance).

    Returns:
        (len(points),) float64 metres.
    """
    if len(points) == 0:
        return np.zeros(0)
    return _nearest_of(*_prepared(points, vertices, triangles, k))


_FIRST_CHUNK = 256  # points measured in full in the first round (then twice as many each round)


def _max_surface_distance(points: np.ndarray, vertices: np.ndarray, triangles: np.ndarray, floor: float,
                          k: int = 16) -> float:
    """max(floor, surface_distance(points, vertices, triangles, k).max()), the same value, measuring only the
    points that can exceed it.

    A point's distance is at most its distance to the first of its `k` triangles (one pass over all points): the
    points are measured in full in the order of that bound, largest first, until the bound of the next is no more
    than the largest distance found (or `floor`). A simplified mesh's distance is set by a few far points.
    """
    if len(points) == 0:
        return floor
    p, v, t, near = _prepared(points, vertices, triangles, k)
    bound = _nearest_of(p, v, t, near[:, :1])
    order = np.argsort(-bound, kind="stable")
    best, at, chunk = floor, 0, _FIRST_CHUNK
    while at < len(order) and bound[order[at]] > best:
        sel = order[at:at + chunk]
        best = max(best, float(_nearest_of(p[sel], v, t, near[sel]).max()))
        at += len(sel)
        chunk *= 2
    return best


def hausdorff(va: np.ndarray, ta: np.ndarray, vb: np.ndarray, tb: np.ndarray) -> float:
    """Two-sided distance between meshes A and B measured at their vertices: max over A's vertices of the distance to
    B, and of B's to A (metres; each an upper bound, see `surface_distance`). The side with fewer vertices is
    measured first; its largest distance lets the other side skip the points that cannot exceed it
    (`_max_surface_distance`): the value is that of measuring every vertex."""
    sides = sorted([(len(va), va, vb, tb), (len(vb), vb, va, ta)], key=lambda s: s[0])
    best = 0.0
    for _, points, vertices, triangles in sides:
        best = _max_surface_distance(points, vertices, triangles, best)
    return float(best)


__all__ = ["closest_on_triangles", "hausdorff", "surface_distance"]
