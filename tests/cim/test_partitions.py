"""Inputs read by partition (cim.partitions): the rows a task reads back are the whole city's rows it stands for,
value for value and type for type; footprint heights cut into spatial chunks, each reading the DEM under it only,
equal the heights over the whole DEM window; a tile built from its rows is the same glb as one built from the whole
city's arrays; and no task is sent the city's arrays."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
import rasterio.windows
import shapely

import cim.models.footprints as footprints_mod
from cim.models.footprints import BuildingOptions, prepare_footprints
from cim.models.lod1 import build_buildings
from cim.partitions import PolygonColumn, RowStore, WkbColumn, concat_rows, spatial_order
from cim.sources.raster import bilinear, open_raster, read_on_grid, window_over
from cim.tiling import SYNCHRONOUS, Runner
from tiles.gltf import StringColumn
from tests.support.lod1 import assert_tiles_are_the_whole_file_build

OPTIONS = BuildingOptions(tile_capacity=40)


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    from cim.sample import generate

    return generate(tmp_path_factory.mktemp("sample") / "city", buildings=500, seed=11, ortho=False)


def test_rows_come_back_as_written(tmp_path):
    rng = np.random.default_rng(3)
    n = 57
    geoms = shapely.buffer(shapely.points(rng.uniform(0, 100, (n, 2))), rng.uniform(1, 5, n), quad_segs=3)
    geoms[5] = shapely.MultiPolygon([shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 3)])
    geoms[6] = shapely.Polygon([(0, 0, 1.5), (4, 0, 2.5), (4, 4, 3.5), (0, 0, 1.5)])  # with Z
    ints = pd.array([None if i % 7 == 0 else i * 10 for i in range(n)], dtype="Int64")
    words = StringColumn.from_values([None if i % 5 == 0 else f"楼{i}" * (i % 4) for i in range(n)])
    arrays = {"geometry": geoms, "f": rng.normal(size=n), "b": rng.integers(0, 2, n).astype(bool),
              "xy": rng.normal(size=(n, 2)), "ints": ints, "words": words}
    order = rng.permutation(n)
    store = RowStore.write(tmp_path / "rows", arrays, order)
    assert len(RowStore(tmp_path / "rows")) == n
    for a, b in ((0, n), (0, 1), (10, 31), (56, 57), (20, 20)):
        rows = store.read(a, b)
        sel = order[a:b]
        assert list(rows) == list(arrays)
        assert shapely.to_wkb(rows["geometry"]).tolist() == shapely.to_wkb(geoms[sel]).tolist()
        for name in ("f", "b", "xy"):
            assert rows[name].dtype == arrays[name].dtype
            assert np.array_equal(rows[name], arrays[name][sel])
        assert rows["ints"].dtype == ints.dtype
        assert rows["ints"].equals(ints.take(sel))
        want = words.take(sel)
        assert rows["words"].to_list() == want.to_list()
        assert np.array_equal(rows["words"].offsets, want.offsets)
    # rows by index, in any order, and row sets joined: the same values and types
    index = rng.permutation(n)[:23]
    pieces = [store.take(index[:9]), store.take(index[9:]), store.take(np.zeros(0, np.int64))]
    rows = concat_rows(pieces)
    sel = order[index]
    assert shapely.to_wkb(rows["geometry"]).tolist() == shapely.to_wkb(geoms[sel]).tolist()
    for name in ("f", "b", "xy"):
        assert rows[name].dtype == arrays[name].dtype and np.array_equal(rows[name], arrays[name][sel])
    assert rows["ints"].dtype == ints.dtype and rows["ints"].equals(ints.take(sel))
    assert rows["words"].to_list() == words.take(sel).to_list()
    assert np.array_equal(rows["words"].offsets, words.take(sel).offsets)
    # geometries moved on as their WKB (not parsed) into another store, in another order: the same rows
    raw = concat_rows([store.take(index[:9], raw=True), store.take(index[9:], raw=True)])
    assert isinstance(raw["geometry"], WkbColumn) and len(raw["geometry"]) == len(index)
    back = rng.permutation(len(index))
    again = RowStore.write(tmp_path / "again", raw, back).read(0, len(index))
    assert shapely.to_wkb(again["geometry"]).tolist() == shapely.to_wkb(geoms[sel[back]]).tolist()
    assert again["words"].to_list() == words.take(sel[back]).to_list()
    assert again["ints"].equals(ints.take(sel[back]))


def test_polygons_stored_as_coordinates_come_back_as_written(tmp_path):
    # Polygons with holes, MultiPolygons, rings either way round: read back as the same geometries (type for type,
    # vertex for vertex), as a PolygonColumn the mesher takes, by range, by index, joined and moved on unparsed
    from cim.models.lod1 import _rings

    rng = np.random.default_rng(5)
    n = 41
    geoms = shapely.buffer(shapely.points(rng.uniform(0, 100, (n, 2))), rng.uniform(1, 5, n), quad_segs=2)
    geoms[3] = shapely.box(0, 0, 10, 10).difference(shapely.box(2, 2, 4, 4)).difference(shapely.box(6, 6, 8, 8))
    geoms[4] = shapely.MultiPolygon([shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 3)])
    geoms[5] = shapely.MultiPolygon([shapely.box(5, 5, 6, 6)])  # one part, still a MultiPolygon
    geoms[6] = shapely.Polygon([(0, 0), (0, 4), (4, 4), (4, 0)])  # clockwise
    polys = PolygonColumn.from_geometries(geoms)
    assert polys is not None and len(polys) == n and polys.multi.sum() == 2
    kind, coords, (rings, parts, geom) = shapely.to_ragged_array(geoms)  # shapely's own arrays
    for mine, theirs in ((polys.coords, coords), (polys.ring_offsets, rings), (polys.part_offsets, parts),
                         (polys.geom_offsets, geom)):
        assert np.array_equal(mine, theirs)
    assert PolygonColumn.from_geometries(np.array([shapely.Point(0, 0)], object)) is None
    assert PolygonColumn.from_geometries(np.array([shapely.Polygon([(0, 0, 1), (1, 0, 1), (1, 1, 1)])])) is None
    order = rng.permutation(n)
    store = RowStore.write(tmp_path / "rows", {"geometry": polys, "f": rng.normal(size=n)}, order)
    for a, b in ((0, n), (0, 1), (7, 30), (40, 41), (9, 9)):
        got = store.read(a, b)["geometry"]
        assert shapely.to_wkb(got).tolist() == shapely.to_wkb(geoms[order[a:b]]).tolist()
        raw = store.read(a, b, raw=True)["geometry"]
        assert isinstance(raw, PolygonColumn)
        ref, mine = _rings(geoms[order[a:b]]), _rings(raw)
        for field in ("xy", "bld", "nxt", "part_start", "part_end", "ring_end", "ring_part"):
            assert np.array_equal(getattr(ref, field), getattr(mine, field)), field
    index = rng.permutation(n)[:17]
    joined = concat_rows([store.take(index[:5], raw=True), store.take(index[5:], raw=True)])
    assert isinstance(joined["geometry"], PolygonColumn)
    back = rng.permutation(len(index))
    again = RowStore.write(tmp_path / "again", joined, back).read(0, len(index))
    assert shapely.to_wkb(again["geometry"]).tolist() == shapely.to_wkb(geoms[order[index][back]]).tolist()
    # a store of WKB and one of coordinates joined: WKB
    wkb = RowStore.write(tmp_path / "wkb", {"geometry": geoms, "f": np.zeros(n)}).take(index[:3], raw=True)
    mixed = concat_rows([wkb, store.take(index[3:], raw=True)])
    assert isinstance(mixed["geometry"], WkbColumn)
    want = np.concatenate([geoms[index[:3]], geoms[order[index[3:]]]])
    assert shapely.to_wkb(RowStore.write(tmp_path / "m", mixed).read(0, len(index))["geometry"]).tolist() == \
        shapely.to_wkb(want).tolist()


def _write_earlier(folder, arrays, layout):
    """A store as earlier versions wrote it: an .npy file per part, with (`layout`) or without row offsets."""
    from cim.partitions import _split

    folder.mkdir(parents=True)
    columns = []
    for k, (name, values) in enumerate(arrays.items()):
        kind, parts = _split(values, None)
        col = {"name": name, "file": f"a{k:04d}", "kind": kind, "parts": sorted(parts)}
        if layout:
            col["layout"] = {}
        for part, arr in parts.items():
            path = folder / f"a{k:04d}.{part}.npy"
            np.save(path, np.ascontiguousarray(arr))
            if layout:
                with open(path, "rb") as fh:
                    np.lib.format.read_magic(fh)
                    shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                    col["layout"][part] = [fh.tell(), np.lib.format.dtype_to_descr(dtype), list(shape)]
        columns.append(col)
    (folder / "rows.json").write_text(json.dumps({"rows": len(next(iter(arrays.values()))), "columns": columns}))


def test_rows_read_at_their_offsets_from_one_file(tmp_path):
    rng = np.random.default_rng(4)
    n = 40
    arrays = {"f": rng.normal(size=n), "xy": np.asfortranarray(rng.normal(size=(n, 3)).astype(np.float32)),
              "words": StringColumn.from_values([f"门牌{i}号" * (i % 3) for i in range(n)]),
              "geometry": shapely.buffer(shapely.points(rng.uniform(0, 50, (n, 2))), 2.0, quad_segs=2)}
    store = RowStore.write(tmp_path / "rows", arrays)
    assert sorted(p.name for p in (tmp_path / "rows").iterdir()) == ["rows.bin", "rows.json"]
    # stores written by earlier versions (a resumed build's): a file per part, read at offsets or mapped
    for layout in (True, False):
        old = tmp_path / f"old-{layout}"
        _write_earlier(old, arrays, layout)
        for a, b in ((0, n), (3, 17), (39, 40), (8, 8)):
            new_rows, old_rows = store.read(a, b), RowStore(old).read(a, b)
            for name in ("f", "xy"):
                assert new_rows[name].dtype == old_rows[name].dtype
                assert np.array_equal(new_rows[name], old_rows[name])
                assert np.array_equal(new_rows[name], arrays[name][a:b])
                assert new_rows[name].flags.writeable
            assert new_rows["words"].to_list() == old_rows["words"].to_list() == arrays["words"].to_list()[a:b]
            assert shapely.to_wkb(new_rows["geometry"]).tolist() == shapely.to_wkb(old_rows["geometry"]).tolist()
        index = np.array([5, 1, 33])
        assert np.array_equal(RowStore(old).take(index)["xy"], store.take(index)["xy"])
    path = tmp_path / "rows" / "rows.bin"
    path.write_bytes(path.read_bytes()[:-8])  # the last row of the last array cut off
    assert len(store.read(0, n - 1)["geometry"]) == n - 1
    with pytest.raises(ValueError, match="shorter than its index"):
        store.read(0, n)


def test_spatial_order_keeps_neighbours_together():
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [1000, 0], [0, 1000], [1000, 1000]], float)
    which = rng.integers(0, 4, 400)
    xy = centres[which] + rng.uniform(0, 50, (400, 2))
    order = spatial_order(xy[:, 0], xy[:, 1])
    assert sorted(order.tolist()) == list(range(400))
    # each cluster is one run of the order: three changes of cluster along it, not hundreds
    assert int(np.sum(np.diff(which[order]) != 0)) == 3


def _lowest_one_by_one(geoms, crs, dem):
    """The reference: per footprint, over the whole DEM window, the lowest of the bilinear terrain along its edges
    (every half cell) and of the cell centres inside it."""
    with open_raster(dem) as src:
        window = window_over(src, crs, crs, tuple(shapely.total_bounds(geoms)))
        arr = read_on_grid(dem, src, window)
        tf = rasterio.windows.transform(window, src.transform)
    cell = min(abs(tf.a), abs(tf.e))
    out = np.full(len(geoms), np.nan)
    for i, g in enumerate(geoms):
        xy = shapely.get_coordinates(shapely.segmentize(g, cell / 2))
        values = [bilinear(arr, tf, xy[:, 0], xy[:, 1])]
        x0, y0, x1, y1 = g.bounds
        (ca, ra), (cb, rb) = ~tf * (x0, y1), ~tf * (x1, y0)
        cols = np.arange(max(int(min(ca, cb)) - 1, 0), min(int(max(ca, cb)) + 2, arr.shape[1]))
        rows = np.arange(max(int(min(ra, rb)) - 1, 0), min(int(max(ra, rb)) + 2, arr.shape[0]))
        cc, rr = np.meshgrid(cols, rows)
        cx, cy = tf * (cc.ravel() + 0.5, rr.ravel() + 0.5)
        inside = shapely.contains_xy(g, cx, cy)
        values.append(arr[rr.ravel()[inside], cc.ravel()[inside]])
        v = np.concatenate(values)
        v = v[np.isfinite(v)]
        if len(v):
            out[i] = v.min()
    return out


def test_heights_in_spatial_chunks_equal_the_whole_window(city, monkeypatch, tmp_path):
    fp = prepare_footprints(city.buildings, None)
    runner = Runner(scheduler=SYNCHRONOUS)
    reads = []
    real = footprints_mod.read_on_grid

    def spy(path, like, window):
        reads.append(window.width * window.height)
        return real(path, like, window)

    monkeypatch.setattr(footprints_mod, "read_on_grid", spy)
    whole = footprints_mod.footprint_heights(fp.geoms, fp.crs, city.dem, runner=runner)
    assert runner.counts["heights"] == 1 and len(reads) == 1
    monkeypatch.setattr(footprints_mod, "HEIGHT_CHUNK", 60)
    chunked = footprints_mod.footprint_heights(fp.geoms, fp.crs, city.dem, runner=runner, scratch=tmp_path)
    assert np.isfinite(whole[0]).sum() > 400
    assert np.array_equal(whole[0], chunked[0], equal_nan=True)
    assert np.array_equal(whole[0], _lowest_one_by_one(fp.geoms, fp.crs, city.dem), equal_nan=True)
    chunks = -(-len(fp.geoms) // 60)
    assert runner.counts["heights"] == 1 + chunks
    # each chunk read the DEM under its footprints, a fraction of the window under the whole city
    whole_area, areas = reads[0], reads[1:]
    assert len(areas) == chunks
    assert max(areas) < whole_area and sum(areas) < 0.6 * chunks * whole_area / 2, (whole_area, areas)
    assert not (tmp_path / "heights").exists()  # the chunks' footprints are removed


def test_a_tile_from_its_rows_is_the_tile_from_the_whole_city(city, tmp_path, monkeypatch):
    states = []
    real_map = Runner.map

    def spy(self, fn, jobs, state=None, **kw):
        states.append((kw.get("stage"), len(pickle.dumps(state))))
        return real_map(self, fn, jobs, state, **kw)

    monkeypatch.setattr(Runner, "map", spy)
    with Runner(scheduler=SYNCHRONOUS) as runner:
        res = build_buildings(city.buildings, city.dem, tmp_path / "out", options=OPTIONS, runner=runner)
    assert res.tiles >= 10
    assert not (tmp_path / "out" / ".rows").exists()
    monkeypatch.setattr(Runner, "map", real_map)
    # no stage is sent the city's arrays: what every task shares is a few small values
    fp = prepare_footprints(city.buildings, city.dem, options=OPTIONS)
    city_bytes = len(pickle.dumps((fp.geoms, fp.base, fp.columns())))
    assert {s for s, _ in states} == {"footprints-scan", "footprints-prepare", "lod1-rows", "lod1"}
    assert city_bytes > 50_000
    assert all(size < 10_000 for _, size in states), states
    # the reference: each tile meshed from the whole city's arrays, as the builder did before partitions
    assert assert_tiles_are_the_whole_file_build(fp, fp.columns(), OPTIONS, tmp_path / "out") == res.tiles


def test_lod2_tiles_read_their_rows(city, tmp_path, monkeypatch):
    from cim.models.lod2 import build_lod2_buildings

    states = []
    real_map = Runner.map

    def spy(self, fn, jobs, state=None, **kw):
        states.append((kw.get("stage"), len(pickle.dumps(state)), len(jobs)))
        return real_map(self, fn, jobs, state, **kw)

    monkeypatch.setattr(Runner, "map", spy)
    with Runner(scheduler=SYNCHRONOUS) as runner:
        res = build_lod2_buildings(city.buildings, city.dem, tmp_path / "out", options=OPTIONS, runner=runner)
    assert res.tiles >= 10 and len(list((tmp_path / "out" / "buildings").glob("*.glb"))) == res.tiles
    assert not (tmp_path / "out" / ".rows").exists()
    # footprints prepared and roofs made partition by partition, like LOD1's (tests/cim/models/test_partitioned.py)
    assert {s for s, _, _ in states} == {"footprints-scan", "footprints-prepare", "roofs", "lod2-rows", "lod2"}
    assert all(size < 10_000 for _, size, _ in states), states
