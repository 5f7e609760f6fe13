"""A CityJSON model's surfaces as triangles (`triangulate`): convex single-ring surfaces as fans in bulk, the others
with earcut in the surface's plane, holes kept; with each surface's normal (Newell's method). Used through
`cim.sources.cityjson`, which reads the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from cim.sources.cityjson import CityModel


@dataclass
class Triangles:
    """The model's surfaces as triangles.

    Attributes:
        corners: (m, 3) int64 corner indices (into `CityModel.corner_vertex` / `corner_uv`), counter-clockwise seen
            from the side the surface's normal points to.
        surface: (m,) int64 the surface each triangle belongs to, ascending.
        normals: (s,) x 3 float64 unit normal of every surface in the model's coordinates (Newell's method; zero
            for degenerate surfaces).
        degenerate: (s,) bool surfaces without area (fewer than three distinct corners, or all on a line).
    """

    corners: np.ndarray
    surface: np.ndarray
    normals: np.ndarray
    degenerate: np.ndarray


def triangulate(model: CityModel, vertices: np.ndarray | None = None) -> Triangles:
    """Triangles of every surface: convex single-ring surfaces as fans (in bulk), the others with earcut in the
    surface's plane; holes are kept.

    Args:
        model: the city model.
        vertices: (n, 3) float64 coordinates to use instead of `model.vertices` (the same vertices in a metric CRS,
            when the model's CRS is geographic).
    """
    import mapbox_earcut

    v = model.vertices if vertices is None else vertices
    s = model.surfaces
    rs, cs = model.surface_start, model.ring_start
    outer = rs[:-1]  # the outer ring of every surface
    n_rings = np.diff(rs)
    c0, c1 = cs[outer], cs[outer + 1]
    n = c1 - c0
    # corners of every outer ring, relative to the ring's first corner (precision at large coordinates)
    owner = np.repeat(np.arange(s), n)
    idx = np.repeat(c0 - np.cumsum(n) + n, n) + np.arange(n.sum())
    p = v[model.corner_vertex[idx]]
    p = p - np.repeat(p[np.cumsum(n) - n] if len(n) else p[:0], n, axis=0)
    nxt = np.arange(len(idx)) + 1
    ends = np.cumsum(n) - 1
    nxt[ends] = np.cumsum(n) - n
    q = p[nxt]
    # Newell's normal: twice the area vector of the (possibly non-planar) ring
    cross = np.column_stack([(p[:, 1] - q[:, 1]) * (p[:, 2] + q[:, 2]),
                             (p[:, 2] - q[:, 2]) * (p[:, 0] + q[:, 0]),
                             (p[:, 0] - q[:, 0]) * (p[:, 1] + q[:, 1])])
    normal = np.zeros((s, 3))
    np.add.at(normal, owner, cross) if len(owner) else None
    length = np.linalg.norm(normal, axis=1)
    degenerate = (n < 3) | (length < 1e-9)
    unit = np.where(degenerate[:, None], 0.0, normal / np.maximum(length, 1e-300)[:, None])
    # an in-plane basis per surface: u perpendicular to the normal, w = normal x u
    helper = np.where((np.abs(unit[:, 2]) < 0.9)[:, None], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0])
    u = np.cross(helper, unit)
    u /= np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-300)
    w = np.cross(unit, u)
    x2 = np.einsum("ij,ij->i", p, u[owner])
    y2 = np.einsum("ij,ij->i", p, w[owner])
    # convexity of single-ring outer rings: every turn to the left, turning once around
    ex, ey = x2[nxt] - x2, y2[nxt] - y2
    turn = ex * ey[nxt] - ey * ex[nxt]
    dot = ex * ex[nxt] + ey * ey[nxt]
    angle = np.arctan2(turn, dot)
    left = np.ones(s, bool)
    total = np.zeros(s)
    if len(owner):
        scale = np.maximum(np.hypot(ex, ey) * np.hypot(ex[nxt], ey[nxt]), 1e-300)
        np.logical_and.at(left, owner, turn >= -1e-9 * scale)
        np.add.at(total, owner, angle)
    convex = left & (np.abs(total - 2 * np.pi) < 1e-6) & (n_rings == 1) & ~degenerate
    tri_c: list[np.ndarray] = []
    tri_s: list[np.ndarray] = []
    fan = np.flatnonzero(convex)
    if len(fan):
        k = n[fan] - 2
        surf = np.repeat(fan, k)
        first = np.repeat(c0[fan], k)
        step = np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)
        tri_c.append(np.column_stack([first, first + step + 1, first + step + 2]))
        tri_s.append(surf)
    # the rest: earcut in the plane, holes included
    rest = np.flatnonzero(~convex & ~degenerate)
    corner_pos = np.full(len(model.corner_vertex), -1, np.int64)
    corner_pos[idx] = np.arange(len(idx))
    for si in rest:
        r0, r1 = rs[si], rs[si + 1]
        a, b = cs[r0], cs[r1]
        if r1 - r0 == 1:
            xy = np.column_stack([x2[corner_pos[a:b]], y2[corner_pos[a:b]]])
        else:
            pts = v[model.corner_vertex[a:b]] - v[model.corner_vertex[a]]
            xy = np.column_stack([pts @ u[si], pts @ w[si]])
        ring_ends = (cs[r0 + 1:r1 + 1] - a).astype(np.uint32)
        tri = mapbox_earcut.triangulate_float64(np.ascontiguousarray(xy), ring_ends).astype(np.int64).reshape(-1, 3)
        if not len(tri):
            continue
        # earcut's winding follows its own convention: make every triangle turn like the surface's normal
        t2 = xy[tri]
        area = (t2[:, 1, 0] - t2[:, 0, 0]) * (t2[:, 2, 1] - t2[:, 0, 1]) - \
               (t2[:, 1, 1] - t2[:, 0, 1]) * (t2[:, 2, 0] - t2[:, 0, 0])
        tri = np.where((area < 0)[:, None], tri[:, [0, 2, 1]], tri)
        tri_c.append(tri + a)
        tri_s.append(np.full(len(tri), si))
    if tri_c:
        corners = np.vstack(tri_c)
        surface = np.concatenate(tri_s)
        order = np.argsort(surface, kind="stable")
        corners, surface = corners[order], surface[order]
    else:
        corners, surface = np.zeros((0, 3), np.int64), np.zeros(0, np.int64)
    return Triangles(corners=corners, surface=surface, normals=unit, degenerate=degenerate)


__all__ = ["Triangles", "triangulate"]
