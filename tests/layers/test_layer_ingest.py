"""Staging helpers: the GEOS-free validity check of simple shapes and the Hilbert order of stored rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import shapely

from layers.db import connect
from layers.ingest import hilbert_keys, hilbert_order, simply_valid, wkb_types


def ring(angles: np.ndarray, radius: float | np.ndarray = 1.0) -> np.ndarray:
    return np.column_stack([116.3 + 1e-3 * radius * np.cos(angles), 39.9 + 1e-3 * radius * np.sin(angles)])


def shapes_of_every_kind(n: int = 3000, seed: int = 7) -> list[shapely.Geometry | None]:
    """Convex, concave, star-shaped (a pentagram turns the same way at every vertex), self-crossing, collinear and
    repeated-vertex rings, plus points, parts, holes, lines, empties, non-finite coordinates and missing ones."""
    rng = np.random.default_rng(seed)
    out: list[shapely.Geometry | None] = []
    for i in range(n):
        k = int(rng.integers(3, 10))
        kind = i % 6
        if kind == 0:
            xy = ring(np.sort(rng.uniform(0, 2 * np.pi, k)))
        elif kind == 1:
            xy = ring(rng.uniform(0, 2 * np.pi, k))
        elif kind == 2:
            xy = ring(np.sort(rng.uniform(0, 2 * np.pi, k)), rng.uniform(0.3, 1.0, k))
        elif kind == 3:
            xy = ring(np.sort(rng.uniform(0, 4 * np.pi, k)))
        elif kind == 4:
            xy = ring(np.sort(rng.choice([0, np.pi / 2, np.pi, 1.5 * np.pi], k)))
        else:
            xy = ring(np.linspace(0, 2 * np.pi, k, endpoint=False) + rng.uniform(0, 1e-13, k))
        poly = shapely.Polygon(xy.round(5) if i % 10 == 0 else xy)
        out.append(shapely.MultiPolygon([poly]) if i % 5 == 0 else poly)
    box = shapely.box(116.3, 39.9, 116.31, 39.91)
    out += [
        shapely.Polygon(ring(np.arange(5) * 4 * np.pi / 5)),  # pentagram
        shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1)]),  # bow-tie
        shapely.Polygon([(0, 0), (1, 0), (1, 0), (1, 1), (0, 0)]),  # repeated vertex: valid, left to GEOS
        shapely.Polygon(box.exterior.coords, [shapely.box(116.302, 39.902, 116.303, 39.903).exterior.coords]),
        shapely.MultiPolygon([box, shapely.box(116.32, 39.9, 116.33, 39.91)]),
        shapely.Point(116.3, 39.9), shapely.MultiPoint([(116.3, 39.9)]), shapely.MultiPoint([(0, 0), (1, 1)]),
        shapely.Point(116.3, 39.9, 50.0), shapely.Point(np.nan, np.nan), shapely.Point(np.inf, 39.9),
        shapely.Polygon(), shapely.LineString([(0, 0), (1, 1)]), None,
    ]
    return out


def test_simple_shapes_are_only_called_valid_when_geos_agrees():
    geoms = np.array(shapes_of_every_kind(), dtype=object)
    wkb = pa.array(list(shapely.to_wkb(geoms)), pa.binary())
    wkb = pa.concat_arrays([pa.array([b"\x01\x02"], pa.binary()), wkb]).slice(1)  # a sliced array: offset > 0
    ok, bounds = simply_valid(wkb)
    geos = np.array([g is not None and not g.is_empty and bool(g.is_valid) for g in geoms])
    assert not (ok & ~geos).any(), [shapely.to_wkt(g) for g in geoms[ok & ~geos]]
    assert ok.sum() > 0.4 * geos.sum()  # the convex rings and the points, polygons and single parts of both
    assert np.array_equal(bounds[ok], shapely.bounds(geoms[ok]))
    assert np.isnan(bounds[~ok]).all()


def test_simple_validity_leaves_big_endian_and_3d_to_geos():
    square = shapely.box(0, 0, 1, 1)
    cases = [shapely.to_wkb(square, byte_order=0), shapely.to_wkb(shapely.Point(1, 2, 3)),
             shapely.to_wkb(shapely.Polygon([(0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 0, 1)])),
             shapely.to_wkb(square)[:-8], shapely.to_wkb(square)]  # truncated, then a good one
    ok, _ = simply_valid(pa.array(cases, pa.binary()))
    assert ok.tolist() == [False, False, False, False, True]


@pytest.mark.parametrize("cells", [4, 16, 64])
def test_hilbert_order_moves_to_a_neighbouring_cell_at_every_step(cells):
    ix, iy = (a.ravel() for a in np.meshgrid(np.arange(cells), np.arange(cells)))
    keys = hilbert_keys((ix + 0.5) / cells, (iy + 0.5) / cells, (0.0, 0.0, 1.0, 1.0))
    order = np.argsort(keys)
    assert len(np.unique(keys)) == cells * cells
    assert (np.abs(np.diff(ix[order])) + np.abs(np.diff(iy[order])) == 1).all()


def test_hilbert_order_is_the_key_order_with_ties_in_source_order():
    rng = np.random.default_rng(3)
    xy = rng.integers(0, 8, (5000, 2)).astype(np.float64)  # 64 distinct cells: many rows share a key
    box = np.hstack([xy, xy])
    order = hilbert_order(box, (0.0, 0.0, 8.0, 8.0))
    keys = hilbert_keys(xy[:, 0], xy[:, 1], (0.0, 0.0, 8.0, 8.0))
    assert np.array_equal(order, np.argsort(keys, kind="stable"))


def _iso_wkb(code: int, coords: list[float], little: bool = True) -> bytes:
    fmt = "<" if little else ">"
    return bytes([1 if little else 0]) + np.array([code], fmt + "u4").tobytes() + np.array(coords, fmt + "f8").tobytes()


def test_wkb_types_agree_with_duckdb_for_every_flavour_byte_order_and_dimension():
    shapes = [shapely.Point(1, 2), shapely.Point(1, 2, 3), shapely.box(0, 0, 1, 1),
              shapely.LineString([(0, 0, 1), (1, 1, 2)]), shapely.MultiPolygon([shapely.box(0, 0, 1, 1)]),
              shapely.MultiLineString([[(0, 0), (1, 1)]]), shapely.MultiPoint([(0, 0), (1, 1)]),
              shapely.GeometryCollection([shapely.Point(0, 0)])]
    cases = [[shapely.to_wkb(g, byte_order=order, flavor=flavor) for g in shapes[:k]]
             for flavor in ("iso", "extended") for order in (0, 1) for k in range(1, len(shapes) + 1)]
    cases += [[_iso_wkb(2001, [1, 2, 5])], [_iso_wkb(3001, [1, 2, 3, 5], little=False)],  # POINT M, POINT ZM
              [shapely.to_wkb(shapely.box(0, 0, 1, 1))] * 3 + [shapely.to_wkb(shapely.Point(0, 0))]]
    con = connect(None)
    for values in cases:
        wkb = pa.chunked_array([pa.array(values[:2], pa.binary()), pa.array(values[2:], pa.binary())], pa.binary())
        con.register("t", pa.table({"g": wkb}))
        types, has_z = con.execute("SELECT list(DISTINCT ST_GeometryType(g)::VARCHAR), bool_or(ST_HasZ(g)) "
                                   "FROM (SELECT ST_GeomFromWKB(g) AS g FROM t)").fetchone()
        con.unregister("t")
        assert wkb_types(wkb) == (tuple(sorted(types)), has_z), values
