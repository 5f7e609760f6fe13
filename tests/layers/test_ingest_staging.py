"""Staging in pieces: the parallel validity check and row take give what the one-piece versions give."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import shapely

from cim.sources.crs import parse_crs
from layers import ingest
from layers.ingest import simply_valid, stage, take_rows
from layers.sources import GEOM, SourceData


def squares_and_stars(n: int, seed: int = 3) -> pa.Array:
    """n polygons around Beijing: mostly squares (decided in numpy), every 7th a concave star (left to GEOS)."""
    rng = np.random.default_rng(seed)
    cx, cy = rng.uniform(116.3, 116.4, n), rng.uniform(39.9, 40.0, n)
    geoms = shapely.box(cx - 1e-4, cy - 1e-4, cx + 1e-4, cy + 1e-4)
    angles = np.linspace(0, 2 * np.pi, 10, endpoint=False)
    radius = np.where(np.arange(10) % 2 == 0, 1e-4, 4e-5)
    star = np.column_stack([radius * np.cos(angles), radius * np.sin(angles)])
    for i in range(0, n, 7):
        geoms[i] = shapely.Polygon(star + (cx[i], cy[i]))
    return pa.array(shapely.to_wkb(geoms), pa.binary())


def test_parallel_validity_matches_one_piece_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    wkb = squares_and_stars(3 * ingest._PIECE + 123)
    ok, bounds = simply_valid(wkb)
    monkeypatch.setattr(ingest, "_parallel", lambda fn, items: [fn(i) for i in items])
    ok_serial, bounds_serial = simply_valid(wkb)
    np.testing.assert_array_equal(ok, ok_serial)
    np.testing.assert_array_equal(bounds, bounds_serial)
    ok_chunked, bounds_chunked = simply_valid(pa.chunked_array([wkb.slice(0, 1000), wkb.slice(1000, 0),
                                                                wkb.slice(1000)]))
    np.testing.assert_array_equal(ok, ok_chunked)
    np.testing.assert_array_equal(bounds, bounds_chunked)
    assert ok.sum() == len(wkb) - len(range(0, len(wkb), 7))


def test_take_rows_is_a_take_cut_into_row_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "ROW_GROUP_SIZE", 1000)
    n = 4321
    rng = np.random.default_rng(5)
    table = pa.table({
        "fid": pa.chunked_array([np.arange(2000), np.arange(2000, n)]),
        "name": pa.array([None if i % 11 == 0 else f"名称{i}" for i in range(n)]),
        "geom": squares_and_stars(n),
    })
    order = rng.permutation(n)[:4000]
    out = take_rows(table, order)
    assert out.equals(table.take(pa.array(order)))
    assert out.schema == table.schema
    assert [len(c) for c in out.column("geom").chunks] == [1000, 1000, 1000, 1000]
    assert [len(b) for b in out.to_batches()] == [1000, 1000, 1000, 1000]


def test_take_rows_joins_chunks_and_takes_same_size_records_like_arrow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunked text and WKB are joined by copying bytes, same-length values are taken as numpy records."""
    monkeypatch.setattr(ingest, "ROW_GROUP_SIZE", 700)
    n = 3000
    rng = np.random.default_rng(9)
    points = pa.array(shapely.to_wkb(shapely.points(rng.uniform(116, 117, n + 5), rng.uniform(39, 40, n + 5))),
                      pa.binary())
    words = pa.array([f"地块{i:05d}" for i in range(n + 5)])  # all 17 bytes
    mixed = pa.array([f"名称{i}" * (i % 3) for i in range(n)])  # empty strings and several lengths
    table = pa.table({
        "points": pa.chunked_array([points.slice(5, 1000), points.slice(1005, 0), points.slice(1005, n - 1000)]),
        "words": pa.chunked_array([words.slice(0, 1234), words.slice(1239, n - 1234)]),
        "mixed": pa.chunked_array([mixed.slice(0, 10), mixed.slice(10)]),
        "empty": pa.array([""] * n),
        "geom": squares_and_stars(n),
    })
    order = rng.permutation(n)[:2500]
    out = take_rows(table, order)
    assert out.equals(table.take(pa.array(order)))
    assert ingest._records(out.column("points").chunk(0)) is not None  # the record path was there to take
    assert ingest._records(out.column("mixed").chunk(0)) is None


def test_same_size_records_read_in_place_agree_with_geos() -> None:
    """Runs of equal-size WKB records (a layer of squares, of points) are read as a strided view of the buffer."""
    rng = np.random.default_rng(11)
    n = 5000
    cx, cy = rng.uniform(116.3, 116.4, n), rng.uniform(39.9, 40.0, n)
    quads = shapely.box(cx - 1e-4, cy - 1e-4, cx + 1e-4, cy + 1e-4)
    bow_ties = np.arange(0, n, 13)  # as many vertices as a square, so the records keep the same size
    quads[bow_ties] = [shapely.Polygon([(x - 1e-4, y - 1e-4), (x + 1e-4, y + 1e-4), (x + 1e-4, y - 1e-4),
                                        (x - 1e-4, y + 1e-4), (x - 1e-4, y - 1e-4)])
                       for x, y in zip(cx[bow_ties], cy[bow_ties], strict=True)]
    points = shapely.points(cx, cy)
    points[7] = shapely.Point(np.inf, 39.9)
    for geoms in (quads, points):
        wkb = pa.array(shapely.to_wkb(geoms), pa.binary())
        assert len(set(map(len, wkb.to_pylist()))) == 1
        ok, bounds = simply_valid(wkb)
        valid = shapely.is_valid(geoms) & np.isfinite(shapely.bounds(geoms)).all(axis=1)
        np.testing.assert_array_equal(ok, valid)
        np.testing.assert_array_equal(bounds[ok], shapely.bounds(geoms)[ok])
        assert (~ok).sum() == (len(bow_ties) if geoms is quads else 1)


def test_chunked_dictionary_decimal_and_nested_columns_are_staged_plain(tmp_path: Path) -> None:
    n = 6
    geoms = shapely.points(116.3 + np.arange(n) * 1e-3, 39.9 + np.arange(n) * 1e-3)
    halves = [slice(0, 4), slice(4, n)]
    kinds = ["学校", "公园", "学校", "医院", None, "公园"]
    table = pa.table({
        "kind": pa.chunked_array([pa.array(kinds[h]).dictionary_encode() for h in halves]),
        "price": pa.chunked_array([pa.array([Decimal(f"{i}.25") for i in range(n)][h], pa.decimal128(6, 2))
                                   for h in halves]),
        "tags": pa.chunked_array([pa.array([[i, i + 1] for i in range(n)][h]) for h in halves]),
        GEOM: pa.chunked_array([pa.array(shapely.to_wkb(geoms[h]), pa.binary()) for h in halves]),
    })
    staged = stage(SourceData(tmp_path / "x.parquet", "GeoParquet", table, None, parse_crs("EPSG:4490")))
    out = staged.table.sort_by("fid")
    assert out.schema.field("kind").type == pa.string()
    assert out.column("kind").to_pylist() == kinds
    assert out.column("price").to_pylist() == [i + 0.25 for i in range(n)]
    assert out.column("tags").to_pylist() == [f"[{i}, {i + 1}]" for i in range(n)]
    assert out.column(GEOM).to_pylist() == list(shapely.to_wkb(geoms))


def reference_hilbert(gx: int, gy: int, side: int = 1 << 16) -> int:
    """The textbook Hilbert index of a cell, one level at a time with the quadrant turns."""
    key, s = 0, side // 2
    while s > 0:
        rx, ry = int(gx & s > 0), int(gy & s > 0)
        key += s * s * ((3 * rx) ^ ry)
        if ry == 0:
            if rx == 1:
                gx, gy = side - 1 - gx, side - 1 - gy
            gx, gy = gy, gx
        s //= 2
    return key


def test_table_driven_hilbert_keys_match_the_textbook_curve() -> None:
    rng = np.random.default_rng(2)
    cells = np.vstack([rng.integers(0, 1 << 16, (2000, 2)), [[0, 0], [65535, 65535], [0, 65535], [65535, 0]]])
    keys = ingest.hilbert_keys(cells[:, 0] + 0.5, cells[:, 1] + 0.5, (0.0, 0.0, 65536.0, 65536.0))
    assert keys.tolist() == [reference_hilbert(int(x), int(y)) for x, y in cells]
