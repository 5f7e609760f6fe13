"""LOD1 footprints prepared partition by partition (cim.models.partitioned): the tiles and the report are those of
the whole file prepared in one process (`prepare_footprints`, the reference), for a file whose partitions disagree
on everything a partition cannot see alone: an ID column repeated across partitions, integer columns with
nulls in some partitions only, DSM footprints overlapping across partitions, unreadable, invalid, tiny and
off-DEM footprints, a height column of text."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
from pyproj import CRS
from rasterio.transform import from_origin

import cim.models.partitioned as partitioned
from cim.models.footprints import BuildingOptions, prepare_footprints
from cim.models.lod1 import build_buildings
from cim.sources.footprints import footprint_partitions
from cim.tiling import SYNCHRONOUS, Runner
from tests.support.lod1 import assert_tiles_are_the_whole_file_build

X0, Y1, RES, PX = 500_000.0, 4_000_400.0, 2.0, 200  # DEM: 400 m square, 2 m cells, EPSG:4547
N = 240


def _rasters(folder, origin=(X0, Y1), res=RES, px=PX, prefix=""):
    rows, cols = np.mgrid[0:px, 0:px]
    dem = (1000 + 0.05 * cols + 0.03 * rows + 2 * np.sin(rows / 9.0)).astype(np.float32)
    dsm = dem + (8 + (cols % 7) + 0.5 * (rows % 5)).astype(np.float32)  # varies cell by cell: medians see the cells
    paths = []
    for name, arr in (("dem", dem), ("dsm", dsm)):
        path = folder / f"{prefix}{name}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=px, height=px, count=1, dtype="float32",
                           crs="EPSG:4547", transform=from_origin(*origin, res, res)) as dst:
            dst.write(arr, 1)
        paths.append(path)
    return paths


def _footprints(folder, kind):
    rng = np.random.default_rng(7)
    x = X0 + rng.uniform(10, 390, N)
    y = Y1 - 400 + rng.uniform(10, 390, N)
    w, h = rng.uniform(4, 18, N), rng.uniform(4, 18, N)
    geoms = shapely.box(x, y, x + w, y + h)
    # overlapping pairs wanting a DSM height, one footprint early in the file, its neighbour late
    for a, b in ((3, 200), (10, 230), (40, 120)):
        geoms[a] = shapely.box(X0 + 100 + a, Y1 - 200, X0 + 120 + a, Y1 - 180)
        geoms[b] = shapely.box(X0 + 110 + a, Y1 - 195, X0 + 135 + a, Y1 - 170)
    geoms[20] = shapely.Polygon([(X0 + 50, Y1 - 50), (X0 + 60, Y1 - 40), (X0 + 60, Y1 - 50), (X0 + 50, Y1 - 40)])
    geoms[21] = shapely.Point(X0 + 70, Y1 - 70)
    geoms[22] = shapely.box(X0 + 80, Y1 - 80, X0 + 80.5, Y1 - 79.5)  # 0.25 m²
    geoms[23] = None
    geoms[150] = shapely.box(X0 - 500, Y1 - 100, X0 - 480, Y1 - 80)  # off the DEM
    geoms[151] = shapely.box(X0 + 900, Y1 - 100, X0 + 920, Y1 - 80)
    wkb = shapely.to_wkb(geoms).astype(object)
    if kind == "parquet":  # (GDAL would not write it)
        wkb[24] = b"\x01\x03\x00\x00\x00\xff\xff\xff\x7f"  # a polygon claiming 2**31 rings: unreadable
    height = np.round(rng.uniform(6, 60, N), 1).astype(object)
    height[::5] = None
    height[7] = "25.5 m"
    floors = pa.array([None if i % 5 else int(rng.integers(2, 30)) for i in range(N)], pa.int64())
    wanted = [3, 200, 10, 230, 40, 120, 60, 61, 62]
    for i in wanted:  # neither height nor floors: DSM
        height[i] = None
    floors = pa.array([None if i in wanted else v for i, v in enumerate(floors.to_pylist())], pa.int64())
    code = [f"C{i}" for i in range(N)]
    code[230] = "C5"  # a repeated code, far apart in the file: the IDs come from `id`
    table = pa.table({
        "code": code,
        "id": [f"楼-{i:04d}" for i in range(N)],
        "height": pa.array([None if v is None else str(v) for v in height], pa.string()),
        "floors": floors,
        "storeys_late": pa.array([i if i < 200 else (None if i == 210 else i) for i in range(N)], pa.int64()),
        "heritage": pa.array([None if i == 215 else bool(i % 3) for i in range(N)], pa.bool_()),  # a late null
        "year": pa.array(rng.integers(1950, 2024, N), pa.int32()),
    })
    table = table.append_column("geometry", pa.array(list(wkb), pa.binary()))
    path = folder / f"footprints.{kind}"
    if kind == "parquet":
        meta = {"version": "1.1.0", "primary_column": "geometry",
                "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"],
                                         "crs": CRS.from_epsg(4547).to_json_dict()}}}
        pq.write_table(table.replace_schema_metadata({b"geo": json.dumps(meta).encode()}), path, row_group_size=100)
    else:
        import pyogrio

        pyogrio.write_arrow(table, path, layer="buildings", driver="GPKG", geometry_name="geometry",
                            geometry_type="Unknown", crs="EPSG:4547")
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("partitioned")
    dem, dsm = _rasters(folder)
    # cells of an odd size at an odd origin: a cell's centre computed from another window's corner differs in the
    # last bits (roof fits see them)
    odd_dem, odd_dsm = _rasters(folder, origin=(X0 - 3.37, Y1 + 2.71), res=1.37, px=300, prefix="odd-")
    return {"dem": dem, "dsm": dsm, "parquet": _footprints(folder, "parquet"), "gpkg": _footprints(folder, "gpkg"),
            "odd_dem": odd_dem, "odd_dsm": odd_dsm}


@pytest.mark.parametrize("kind", ["parquet", "gpkg"])
def test_partitions_build_the_tiles_and_report_of_the_whole_file(inputs, tmp_path, kind, monkeypatch):
    options = BuildingOptions(tile_capacity=25, partition_rows=37)
    parts = footprint_partitions(inputs[kind], rows=37)
    assert len(parts) == (8 if kind == "parquet" else 7)  # parquet: 37-row slices of 100-row groups
    states = []
    real_map = Runner.map

    def spy(self, fn, jobs, state=None, **kw):
        states.append((kw.get("stage"), len(jobs), len(pickle.dumps(state))))
        return real_map(self, fn, jobs, state, **kw)

    monkeypatch.setattr(Runner, "map", spy)
    with Runner(scheduler=SYNCHRONOUS) as runner:
        res = build_buildings(inputs[kind], inputs["dem"], tmp_path / "out", dsm=inputs["dsm"], options=options,
                              runner=runner)
    assert not (tmp_path / "out" / ".rows").exists()
    # `code` repeats a value: its repeated hashes are checked value by value ("footprints-ids")
    assert [s for s, _, _ in states] == ["footprints-scan", "footprints-ids", "footprints-prepare", "lod1-rows",
                                         "lod1"]
    assert all(size < 10_000 for _, _, size in states), states
    monkeypatch.setattr(Runner, "map", real_map)

    fp = prepare_footprints(inputs[kind], inputs["dem"], dsm=inputs["dsm"], options=options)
    assert res.buildings == len(fp.geoms)
    assert list(res.skipped.to_dict().items()) == list(fp.skipped.to_dict().items())
    assert {"not a polygon", "no geometry", "outside the DEM (no terrain height under the footprint)"} <= set(
        fp.skipped.reasons)
    assert res.notes == fp.notes
    assert res.footprints == fp.describe()
    assert res.height_sources == {s: int(np.sum(fp.source == s)) for s in ("attribute", "floors", "dsm", "default")}
    assert res.height_sources["dsm"] == 9 and res.skipped.count >= 5  # the bow tie is repaired
    assert list(fp.ids[:2]) == ["楼-0000", "楼-0001"]  # `code` repeats a value: IDs from `id`
    columns = fp.columns()
    assert str(columns["floors"].dtype) == "float64"  # nulls in the file: float64 in every tile
    # booleans with a null (an object column in pandas) are booleans, the null false
    rows = [int(i.split("-")[1]) for i in fp.ids]
    assert 215 in rows and columns["heritage"].dtype == bool
    assert columns["heritage"].tolist() == [i % 3 != 0 and i != 215 for i in rows]
    assert assert_tiles_are_the_whole_file_build(fp, columns, options, tmp_path / "out") == res.tiles >= 8


@pytest.mark.parametrize("kind", ["parquet", "gpkg"])
def test_without_a_dsm_the_scan_parses_no_geometry_and_bases_are_the_whole_files(inputs, tmp_path, kind,
                                                                                  monkeypatch):
    # the odd DEM: a base taken from another window's corner differs in the last bits, which the glbs would show
    options = BuildingOptions(tile_capacity=25, partition_rows=37)
    parsed = []
    real_read = partitioned.read_footprints

    def counted(path, **kw):
        parsed.append(kw["part"].index)
        return real_read(path, **kw)

    monkeypatch.setattr(partitioned, "read_footprints", counted)
    stages = []
    real_map = Runner.map

    def spy(self, fn, jobs, state=None, **kw):
        stages.append((kw.get("stage"), len(parsed)))
        return real_map(self, fn, jobs, state, **kw)

    monkeypatch.setattr(Runner, "map", spy)
    with Runner(scheduler=SYNCHRONOUS) as runner:
        res = build_buildings(inputs[kind], inputs["odd_dem"], tmp_path / "out", options=options, runner=runner)
    monkeypatch.setattr(Runner, "map", real_map)
    names = [s for s, _ in stages]
    assert names == ["footprints-scan", "footprints-ids", "footprints-prepare", "lod1-rows", "lod1"]
    n_parts = len(footprint_partitions(inputs[kind], rows=37))
    # the driver reads one row (the columns); scan: attributes only; ids (`code` repeats a value): a read a
    # partition; prepare: a read a partition
    at = dict(stages)
    assert at["footprints-scan"] == at["footprints-ids"] == 1
    assert at["footprints-prepare"] == 1 + n_parts and at["lod1-rows"] == 1 + 2 * n_parts
    fp = prepare_footprints(inputs[kind], inputs["odd_dem"], options=options)
    assert res.buildings == len(fp.geoms) and res.skipped.to_dict() == fp.skipped.to_dict()
    assert_tiles_are_the_whole_file_build(fp, fp.columns(), options, tmp_path / "out")


def test_ids_are_checked_value_by_value_when_hashes_meet(inputs, tmp_path, monkeypatch):
    # every value hashes alike: only the exact check can tell `code` (a repeat) from `id` (unique)
    monkeypatch.setattr(partitioned, "_hashes", lambda values: np.zeros(len(values), np.uint64))
    with Runner(scheduler=SYNCHRONOUS) as runner:
        prep = partitioned.prepare_partitions(inputs["parquet"], None, runner=runner, scratch=tmp_path / "s",
                                              options=BuildingOptions(partition_rows=50))
        assert runner.counts["footprints-ids"] == 2 * 5  # `code` and `id`, each partition
    first = partitioned.RowStore(prep.stores[0]).read(0, 2)["column/id"].to_list()
    assert first == ["楼-0000", "楼-0001"]
    # one null in the file (row 210): every partition's column has the whole file's type
    assert [partitioned.RowStore(s).read(0, 1)["column/storeys_late"].dtype for s in prep.stores] == [
        np.float64] * len(prep.stores)
    with Runner(scheduler=SYNCHRONOUS) as runner:
        prep = partitioned.prepare_partitions(inputs["parquet"], None, runner=runner, scratch=tmp_path / "t",
                                              options=BuildingOptions(partition_rows=50, id_field="id"))
    assert partitioned.RowStore(prep.stores[0]).read(0, 1)["column/id"].to_list() == ["楼-0000"]
    with Runner(scheduler=SYNCHRONOUS) as runner, pytest.raises(Exception, match="repeated values"):
        partitioned.prepare_partitions(inputs["parquet"], None, runner=runner, scratch=tmp_path / "u",
                                       options=BuildingOptions(partition_rows=50, id_field="code"))


def test_partitions_shrink_to_give_every_worker_several(inputs, monkeypatch):
    import cim.sources.footprints as sources
    from cim.sources.footprints import partition_size

    assert partition_size(100_000, 10_000_000, 3 * 128) == 26_042  # 10M on 128 workers
    assert partition_size(100_000, 1_000_000, 3 * 2) == 100_000  # 1M on 2 workers: 10 already
    assert partition_size(100_000, 20_000, 3 * 16) == sources.MIN_PARTITION_ROWS  # never tiny
    assert partition_size(37, 10**6, 6) == 37  # never larger than asked
    monkeypatch.setattr(sources, "MIN_PARTITION_ROWS", 10)
    parts = footprint_partitions(inputs["parquet"], min_parts=6)  # 240 rows in row groups of 100: slices of 40
    assert [p.rows for p in parts] == [40, 40, 20, 40, 40, 20, 40]
    assert [p.rows for p in footprint_partitions(inputs["gpkg"], min_parts=6)] == [40] * 6


@pytest.mark.parametrize("kind", ["parquet", "gpkg"])
def test_lod2_partitions_build_what_one_partition_builds(inputs, tmp_path, kind):
    """LOD2 with every roof from the DSM (no roof attributes), overlapping footprints in different partitions and
    the same DSM blocks: the roof waves ("roofs-need", "roofs") give every partition the block's window and the
    later partitions' footprints, so the tiles and the report are those of a single partition."""
    from cim.models.lod2 import build_lod2_buildings

    out = {}
    for rows in (37, 10**6):
        with Runner(scheduler=SYNCHRONOUS) as runner:
            res = build_lod2_buildings(inputs[kind], inputs["odd_dem"], tmp_path / str(rows), dsm=inputs["odd_dsm"],
                                       options=BuildingOptions(tile_capacity=25, partition_rows=rows), runner=runner)
            out[rows] = res, dict(runner.counts)
    (many, counts), (one, _) = out[37], out[10**6]
    assert counts["roofs"] == len(footprint_partitions(inputs[kind], rows=37)) > 1
    a, b = many.to_dict(), one.to_dict()
    for r in (a, b):
        r.pop("seconds"), r.pop("stage_seconds")
    assert a == b and many.roof_detection["footprints"] == many.buildings >= 200
    assert many.roof_sources["dsm"] + many.roof_sources["dsm_median"] == many.buildings - many.roof_detection["no_samples"]
    assert many.root.model_dump() == one.root.model_dump()
    fa = {p.relative_to(tmp_path / "37"): p.read_bytes() for p in (tmp_path / "37").rglob("*.glb")}
    fb = {p.relative_to(tmp_path / str(10**6)): p.read_bytes() for p in (tmp_path / str(10**6)).rglob("*.glb")}
    assert fa == fb and len(fa) == many.tiles >= 8

