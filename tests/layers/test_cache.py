"""The hot-layer cache answers bbox queries exactly as DuckDB does, follows new versions, and keeps to its budget."""

from __future__ import annotations

import threading
from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import shapely
from geopandas.testing import assert_geodataframe_equal

from layers import LayerStore
from layers.cache import PackedBoxIndex, budget_mb_from_env
from layers.errors import LayerInputError

THEME = "spatiotemporal_base/model_3d"
EXTENT = (116.30, 39.90, 116.34, 39.93)


def _attributes(rng: np.random.Generator, n: int) -> dict[str, object]:
    name = np.char.add("名称", np.arange(n).astype(str)).astype(object)
    name[::17] = None
    height = rng.uniform(3, 90, n)
    height[::23] = np.nan
    # integer and boolean fields with a few nulls: pandas makes them float / object only when a null is selected
    basements = pd.array(rng.integers(0, 3, n), dtype="Int64")
    basements[::97] = pd.NA
    lit = pd.array(rng.random(n) < 0.5, dtype="boolean")
    lit[::89] = pd.NA
    return {"Name": name, "floors": rng.integers(1, 40, n).astype(np.int32), "height": height,
            "public": rng.random(n) < 0.3, "built": [date(1950 + i % 70, 1 + i % 12, 1) for i in range(n)],
            "basements": basements, "lit": lit}


def l_shaped_polygons(n: int = 3000, seed: int = 7) -> gpd.GeoDataFrame:
    """L-shaped buildings (concave: their box holds a corner they do not cover) and rotated squares."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = EXTENT
    cx, cy = rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)
    s = rng.uniform(5e-5, 4e-4, n)
    geoms = []
    for i in range(n):
        x, y, d = cx[i], cy[i], s[i]
        if i % 2:
            geoms.append(shapely.Polygon([(x, y), (x + d, y), (x + d, y + d / 3), (x + d / 3, y + d / 3),
                                          (x + d / 3, y + d), (x, y + d)]))
        else:
            geoms.append(shapely.Polygon([(x, y - d), (x + d, y), (x, y + d), (x - d, y)]))
    return gpd.GeoDataFrame(_attributes(rng, n), geometry=geoms, crs="EPSG:4490")


def scattered_points(n: int = 4000, seed: int = 8) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = EXTENT
    return gpd.GeoDataFrame(_attributes(rng, n), geometry=shapely.points(rng.uniform(x0, x1, n),
                                                                         rng.uniform(y0, y1, n)), crs="EPSG:4490")


def diagonal_lines(n: int = 2000, seed: int = 9) -> gpd.GeoDataFrame:
    """Diagonal three-vertex roads: their boxes are mostly empty."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = EXTENT
    cx, cy = rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)
    d = rng.uniform(1e-4, 2e-3, n)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    geoms = [shapely.LineString([(cx[i], cy[i]), (cx[i] + d[i] / 2, cy[i] + sign[i] * d[i] / 2),
                                 (cx[i] + d[i], cy[i] + sign[i] * d[i])]) for i in range(n)]
    return gpd.GeoDataFrame(_attributes(rng, n), geometry=geoms, crs="EPSG:4490")


LAYERS = {"polygons": l_shaped_polygons, "points": scattered_points, "lines": diagonal_lines}


def random_windows(count: int, seed: int) -> list[tuple[float, float, float, float]]:
    """Windows from a few metres to the whole extent, some partly or wholly outside it."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = EXTENT
    out = []
    for size in np.geomspace(2e-5, 0.05, count):
        x, y = rng.uniform(x0 - size / 2, x1), rng.uniform(y0 - size / 2, y1)
        out.append((float(x), float(y), float(x + size * rng.uniform(0.5, 1.5)), float(y + size)))
    out.append((x1 + 1, y1 + 1, x1 + 2, y1 + 2))
    return out


@pytest.fixture(scope="module")
def store_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cache")
    path = d / "city.duckdb"
    with LayerStore(path, cache_mb=0) as store:
        for name, make in LAYERS.items():
            make().to_parquet(d / f"{name}.parquet")
            store.import_file(d / f"{name}.parquet", name, THEME)
    return path


@pytest.fixture
def stores(store_file: Path):
    """The same file through a cached store and an uncached one (one DuckDB database in this process)."""
    with LayerStore(store_file, cache_mb=100) as hot, LayerStore(store_file, cache_mb=0) as cold:
        yield hot, cold


def hot_query(store: LayerStore, name: str, bbox, **kw) -> pa.Table:
    """A bbox query asked twice (the second query of a layer version loads it), both answers checked equal."""
    first = store.query_arrow(name, bbox=bbox, **kw)
    second = store.query_arrow(name, bbox=bbox, **kw)
    assert first.equals(second)
    return second


def test_a_layer_is_loaded_by_its_second_bbox_query(stores):
    hot, cold = stores
    w = (116.31, 39.91, 116.32, 39.92)
    assert hot.query_arrow("lines", bbox=w).equals(cold.query_arrow("lines", bbox=w))
    assert hot.cache.stats().loads == 0  # a one-shot process (`cim layers query`) never loads a whole layer
    assert hot.query_arrow("lines", bbox=w).equals(cold.query_arrow("lines", bbox=w))
    assert hot.cache.stats()[2:5] == (1, 0, 2)  # layers, hits, misses
    assert hot.query_arrow("lines", bbox=w).equals(cold.query_arrow("lines", bbox=w))
    assert hot.cache.stats().hits == 1


@pytest.mark.parametrize("name", list(LAYERS))
def test_bbox_queries_equal_the_duckdb_path(stores, name):
    hot, cold = stores
    variants = [{}, {"fields": ["floors", "NAME"]}, {"fields": []}, {"fields": ["fid", "built", "height"]},
                {"limit": 7}, {"limit": 5, "offset": 3}, {"offset": 4}, {"limit": 0}, {"order": True},
                {"order": False, "limit": 6}]
    nonempty = 0
    for i, window in enumerate(random_windows(40, seed=len(name))):
        for kw in variants if i % 4 == 0 else variants[:2]:
            got, want = hot.query_arrow(name, bbox=window, **kw), cold.query_arrow(name, bbox=window, **kw)
            assert got.schema == want.schema, (window, kw)
            assert got.equals(want), (window, kw, got.column("fid").to_pylist(), want.column("fid").to_pylist())
        matched = hot.query_arrow(name, bbox=window).num_rows
        assert hot.count(name, bbox=window) == cold.count(name, bbox=window) == matched
        nonempty += matched > 0
    assert nonempty > 20
    assert_geodataframe_equal(hot.query(name, bbox=window), cold.query(name, bbox=window))
    stats = hot.cache.stats()
    assert (stats.layers, stats.loads) == (1, 1) and stats.hits > 100
    assert cold.cache.stats().loads == 0


@pytest.mark.parametrize("name", list(LAYERS))
def test_geodataframe_answers_equal_the_duckdb_path(stores, name):
    hot, cold = stores
    variants = [{}, {"fields": ["floors", "NAME"]}, {"fields": []}, {"fields": ["basements", "fid", "lit"]},
                {"fields": ["lit", "height", "public"]}, {"limit": 7}, {"limit": 5, "offset": 3}, {"limit": 0},
                {"order": True}, {"order": False, "limit": 6}]
    hot_query(hot, name, EXTENT)
    layer = hot.cache.get(hot.cache.cached()[0])
    assert layer.frame is None  # built by the first GeoDataFrame answer from the cache, not by the Arrow ones
    nulls_selected = set()
    for i, window in enumerate(random_windows(24, seed=len(name) + 1)):
        for kw in variants if i % 3 == 0 else variants[:2]:
            got, want = hot.query(name, bbox=window, **kw), cold.query(name, bbox=window, **kw)
            assert_geodataframe_equal(got, want, check_index_type=True)
            assert list(got.columns) == list(want.columns) and got.crs == want.crs == "EPSG:4490"
            for col in {"basements", "lit"} & set(got.columns):
                nulls_selected.add((col, bool(got[col].isna().any())))
    assert layer.frame is not None and layer.frame.per_query == {"basements", "lit"}
    assert len(nulls_selected) == 4  # both per-query columns, with and without a null in the answer
    stats = hot.cache.stats()
    assert (stats.layers, stats.loads, stats.frames) == (1, 1, 1)
    assert stats.bytes == layer.nbytes > layer.table.nbytes + layer.frame.nbytes - 1


def test_a_geodataframe_answer_is_a_copy(stores):
    hot, cold = stores
    w = (116.31, 39.91, 116.32, 39.92)
    first = hot.query("polygons", bbox=w)
    for _ in range(2):
        got = hot.query("polygons", bbox=w)
        got.loc[0, "floors"] = -1
        got["height"] = 0.0
        got.geometry = got.geometry.envelope
    assert hot.cache.stats().frames == 1
    assert_geodataframe_equal(hot.query("polygons", bbox=w), cold.query("polygons", bbox=w))
    assert_geodataframe_equal(hot.query("polygons", bbox=w), first)


def test_a_frame_that_does_not_fit_beside_its_layer_is_not_built(store_file, stores):
    hot, _ = stores
    hot_query(hot, "lines", EXTENT)
    arrow_bytes = hot.cache.stats().bytes
    hot.query("lines", bbox=EXTENT)
    frame_bytes = hot.cache.stats().bytes - arrow_bytes
    assert frame_bytes > arrow_bytes  # shapely geometries are larger than WKB
    with LayerStore(store_file, cache_mb=arrow_bytes * 1.5 / 1e6) as small, LayerStore(store_file, cache_mb=0) as cold:
        for w in random_windows(8, seed=4):
            assert_geodataframe_equal(small.query("lines", bbox=w), cold.query("lines", bbox=w))
        stats = small.cache.stats()
        assert (stats.layers, stats.loads, stats.frames, stats.bytes) == (1, 1, 0, arrow_bytes)


def test_building_a_frame_evicts_the_least_recently_used_layers(store_file, stores):
    hot, _ = stores
    hot_query(hot, "points", EXTENT)
    points_bytes = hot.cache.stats().bytes
    hot_query(hot, "lines", EXTENT)
    lines_bytes = hot.cache.stats().bytes - points_bytes
    hot.query("lines", bbox=EXTENT)
    frame_bytes = hot.cache.stats().bytes - points_bytes - lines_bytes
    budget = lines_bytes + frame_bytes + points_bytes / 2
    with LayerStore(store_file, cache_mb=budget / 1e6) as small, LayerStore(store_file, cache_mb=0) as cold:
        hot_query(small, "points", EXTENT)
        hot_query(small, "lines", EXTENT)
        assert small.cache.stats().layers == 2
        assert_geodataframe_equal(small.query("lines", bbox=EXTENT), cold.query("lines", bbox=EXTENT))
        stats = small.cache.stats()
        assert [k.split("__")[0] for k in small.cache.cached()] == ["lines"]
        assert (stats.evictions, stats.frames) == (1, 1) and stats.bytes <= stats.budget_bytes


@pytest.mark.parametrize("name", ["polygons", "lines"])
def test_features_whose_box_meets_the_window_but_not_their_geometry_are_left_out(stores, name):
    hot, cold = stores
    hot_query(hot, name, EXTENT)
    layer = hot.cache.get(hot.cache.cached()[0])
    windows = random_windows(60, seed=3)
    box_only = sum(len(layer.index.query(*w)) - len(layer.select(w)) for w in windows)
    assert box_only > 0  # the exact test is exercised, and it agrees with DuckDB's ST_Intersects
    for w in windows:
        assert hot.query_arrow(name, bbox=w).equals(cold.query_arrow(name, bbox=w))


def test_filters_other_than_bbox_stay_with_duckdb(stores):
    hot, cold = stores
    w = (116.31, 39.91, 116.32, 39.92)
    assert hot.query_arrow("points", bbox=w, where="floors > 10").equals(
        cold.query_arrow("points", bbox=w, where="floors > 10"))
    assert hot.query_arrow("points", intersects=shapely.box(*w)).equals(cold.query_arrow("points", bbox=w))
    assert hot.query_arrow("points", bbox=(w[0], w[1], w[0], w[3])).equals(  # zero width: DuckDB's envelope
        cold.query_arrow("points", bbox=(w[0], w[1], w[0], w[3])))
    near = hot.query("points", near=(116.315, 39.915), k=5, bbox=w)
    assert_geodataframe_equal(near, cold.query("points", near=(116.315, 39.915), k=5, bbox=w))
    assert hot.cache.stats().loads == 0
    with pytest.raises(LayerInputError, match="not a field"):
        hot.query_arrow("points", bbox=w, fields=["nope"])


def test_another_store_object_imports_and_the_first_sees_it_on_its_next_query(tmp_path):
    path = tmp_path / "c.duckdb"
    w = (116.31, 39.91, 116.33, 39.92)
    first, second = scattered_points(500, seed=1), scattered_points(700, seed=2)
    first.to_parquet(tmp_path / "a.parquet")
    second.to_parquet(tmp_path / "b.parquet")
    with LayerStore(path) as reader:
        reader.import_file(tmp_path / "a.parquet", "pts", THEME)
        v1 = hot_query(reader, "pts", w)
        assert v1.num_rows == first.intersects(shapely.box(*w)).sum()
        with LayerStore(path) as writer:  # shares this process's DuckDB database; writes behind reader's back
            writer.import_file(tmp_path / "b.parquet", "pts", new_version=True)
        assert reader.info("pts").version == 2
        assert hot_query(reader, "pts", w).num_rows == second.intersects(shapely.box(*w)).sum()
        with LayerStore(path) as writer:  # purge and re-import: the same table name pts__v1, new features
            writer.drop("pts", purge=True)
            writer.import_file(tmp_path / "b.parquet", "pts", THEME)
        again = hot_query(reader, "pts", w)
        assert reader.info("pts").version == 1 and not again.equals(v1)
        with LayerStore(path, cache_mb=0) as cold:
            assert again.equals(cold.query_arrow("pts", bbox=w))
        reader.rollback("pts", 1)  # a write of its own: a new version row, the same table
        assert reader.info("pts").version == 2 and hot_query(reader, "pts", w).equals(again)
        assert hot_query(reader, "pts", w, version=1).equals(again)
        assert reader.cache.stats().loads == 3  # v1, v2, the re-imported v1; the rollback reuses its table


def test_budget_evicts_the_least_recently_used_layer(store_file, stores):
    hot, _ = stores
    sizes = {}
    for name in ("points", "lines"):
        hot_query(hot, name, EXTENT)
        sizes[name] = hot.cache.stats().bytes - sum(sizes.values())
    budget_mb = max(sizes.values()) * 1.2 / 1e6
    assert budget_mb * 1e6 < sum(sizes.values())
    with LayerStore(store_file, cache_mb=budget_mb) as small, LayerStore(store_file, cache_mb=0) as cold:
        for name in ("points", "lines", "points"):
            assert hot_query(small, name, EXTENT).equals(cold.query_arrow(name, bbox=EXTENT))
            assert [k.split("__")[0] for k in small.cache.cached()] == [name]
        stats = small.cache.stats()
        assert (stats.loads, stats.evictions, stats.layers) == (3, 2, 1)
        assert stats.bytes <= stats.budget_bytes


def test_a_layer_larger_than_the_budget_is_never_cached(store_file):
    with LayerStore(store_file, cache_mb=0.05) as small, LayerStore(store_file, cache_mb=0) as cold:
        for w in random_windows(5, seed=1):
            assert small.query_arrow("polygons", bbox=w).equals(cold.query_arrow("polygons", bbox=w))
        stats = small.cache.stats()
        assert (stats.layers, stats.loads, stats.too_large) == (0, 0, 1)  # judged from a sample, never loaded


def test_cache_disabled_by_argument_or_environment(store_file, monkeypatch):
    monkeypatch.setenv("CIM_LAYER_CACHE_MB", "0")
    with LayerStore(store_file) as store:
        assert not store.cache.enabled
        assert store.query_arrow("points", bbox=EXTENT).num_rows == 4000
        assert store.cache.stats().loads == 0
    monkeypatch.setenv("CIM_LAYER_CACHE_MB", "64")
    assert budget_mb_from_env() == 64
    with LayerStore(store_file) as store:
        assert store.cache.budget_bytes == 64_000_000
    monkeypatch.delenv("CIM_LAYER_CACHE_MB")
    assert budget_mb_from_env() == 1024
    monkeypatch.setenv("CIM_LAYER_CACHE_MB", "lots")
    with pytest.raises(LayerInputError, match="CIM_LAYER_CACHE_MB='lots'"):
        LayerStore(store_file)


def _on_four_threads(check, count: int, step: int) -> list[BaseException]:
    """Run check(0..count-1) on four threads at once, each starting `step` further round; the errors they raised."""
    errors: list[BaseException] = []

    def run(shift: int) -> None:
        try:
            for i in range(count):
                check((i + shift) % count)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k * step,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


def test_threads_share_one_load_and_get_the_duckdb_answer(store_file):
    windows = random_windows(30, seed=5)
    with LayerStore(store_file, cache_mb=100) as hot, LayerStore(store_file, cache_mb=0) as cold:
        want = [cold.query_arrow("lines", bbox=w) for w in windows]

        def check(j: int) -> None:
            assert hot.query_arrow("lines", bbox=windows[j]).equals(want[j])

        assert not _on_four_threads(check, len(windows), step=7)
        assert hot.cache.stats().loads == 1


def test_threads_share_one_frame_and_get_the_duckdb_geodataframe(store_file):
    windows = random_windows(16, seed=6)
    with LayerStore(store_file, cache_mb=100) as hot, LayerStore(store_file, cache_mb=0) as cold:
        want = [cold.query("polygons", bbox=w) for w in windows]
        hot_query(hot, "polygons", EXTENT)

        def check(j: int) -> None:
            assert_geodataframe_equal(hot.query("polygons", bbox=windows[j]), want[j])

        assert not _on_four_threads(check, len(windows), step=5)
        assert hot.cache.stats().frames == 1  # the others were answered by conversion while it was built


def test_packed_index_matches_brute_force_on_boxes_in_any_order():
    rng = np.random.default_rng(11)
    n = 5000
    lo = rng.uniform(0, 100, (n, 2))
    bounds = np.column_stack([lo, lo + rng.uniform(0, 5, (n, 2))])
    bounds[::97] = np.nan  # empty geometries
    index = PackedBoxIndex.build(bounds)
    assert [lv.shape[1] for lv in index.levels] == [5, 157, 5000]
    for _ in range(200):
        x0, y0 = rng.uniform(-10, 100, 2)
        x1, y1 = x0 + rng.uniform(0, 30), y0 + rng.uniform(0, 30)
        brute = np.flatnonzero((bounds[:, 0] <= x1) & (bounds[:, 2] >= x0) & (bounds[:, 1] <= y1)
                               & (bounds[:, 3] >= y0))
        assert np.array_equal(index.query(x0, y0, x1, y1), brute)
    edge = bounds[1]
    assert 1 in index.query(edge[2], edge[3], edge[2] + 1, edge[3] + 1)  # touching corners meet
    assert index.query(0, 0, 100, 100).dtype == np.int64
    assert pa.array(index.query(200, 200, 300, 300)).to_pylist() == []
