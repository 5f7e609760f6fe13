"""Mesh-to-mesh distances (the measured geometric error of simplified levels) against brute-force sampling."""

from __future__ import annotations

import numpy as np
import pytest

from cim.models.deviation import closest_on_triangles, hausdorff, surface_distance


def _sampled_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray, steps: int = 120) -> float:
    s = np.linspace(0.0, 1.0, steps + 1)
    u, v = np.meshgrid(s, s)
    keep = u + v <= 1.0
    pts = a + np.outer(u[keep], b - a) + np.outer(v[keep], c - a)
    return float(np.linalg.norm(pts - p, axis=1).min())


def test_closest_point_on_a_triangle_matches_dense_sampling_in_every_region():
    rng = np.random.default_rng(1)
    n = 400
    a, b, c = (rng.normal(size=(n, 3)) for _ in range(3))
    p = rng.normal(size=(n, 3)) * 2.0  # points beyond vertices, edges and the face
    d = np.linalg.norm(p - closest_on_triangles(p, a, b, c), axis=1)
    sampled = np.array([_sampled_distance(p[i], a[i], b[i], c[i]) for i in range(n)])
    # exact: never above the sampled minimum, and below it by at most the sampling step
    assert (d <= sampled + 1e-12).all() and (sampled - d).max() < 0.03


def test_distances_between_a_plane_and_a_lifted_copy_are_the_lift():
    xs, ys = np.meshgrid(np.arange(11.0), np.arange(11.0))
    v = np.column_stack([xs.ravel(), ys.ravel(), np.zeros(121)]) + 6_378_137.0  # ECEF-sized coordinates
    t = np.array([[i * 11 + j, i * 11 + j + 1, (i + 1) * 11 + j] for i in range(10) for j in range(10)]
                 + [[i * 11 + j + 1, (i + 1) * 11 + j + 1, (i + 1) * 11 + j] for i in range(10) for j in range(10)])
    lifted = v + [0.0, 0.0, 0.37]
    assert np.allclose(surface_distance(lifted, v, t), 0.37, atol=1e-6)
    bent = lifted.copy()
    bent[60, 2] += 2.0  # one vertex 2.37 m above the plane
    assert abs(hausdorff(v, t, bent, t) - 2.37) < 1e-6


@pytest.mark.parametrize("first_chunk", [256, 1])
def test_hausdorff_is_the_largest_distance_of_every_vertex(monkeypatch, first_chunk):
    # a bumpy surface against a coarse copy of it (and the other way round): the pruned measure gives exactly the
    # largest of every vertex's distance both ways, whichever side is larger or holds the far point
    from scipy.spatial import Delaunay

    import cim.models.deviation as deviation

    monkeypatch.setattr(deviation, "_FIRST_CHUNK", first_chunk)  # 1: many rounds
    rng = np.random.default_rng(2)
    for case in range(6):
        xy = rng.uniform(0, 100, (1500, 2))
        z = np.sin(xy[:, 0] / 7) * 3 + rng.normal(size=len(xy)) * 0.2
        if case % 2:
            z[rng.integers(len(z))] += 40.0  # one spike: the far point
        fine = np.column_stack([xy, z]) + [4.0e6, 3.0e6, 2.0e6]
        ft = Delaunay(xy).simplices
        sub = rng.choice(len(xy), 120, replace=False)
        coarse = fine[sub] + rng.normal(size=(120, 3)) * 0.5
        ct = Delaunay(xy[sub]).simplices
        want = max(surface_distance(fine, coarse, ct).max(), surface_distance(coarse, fine, ft).max())
        assert hausdorff(fine, ft, coarse, ct) == want
        assert hausdorff(coarse, ct, fine, ft) == want
