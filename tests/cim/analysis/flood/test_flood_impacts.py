"""Impacts of a flood run against hand-placed water: buildings, road pieces, people, shelters, exports."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from pyproj import CRS

from cim.analysis.flood.impacts import ImpactParams, flood_impacts
from cim.analysis.flood.outputs import write_cog
from cim.analysis.flood.run import FloodResult

X0, Y0 = 439300.0, 4440800.0
CRS_ = CRS.from_epsg(4547)


def _xy(col: float, row: float) -> tuple[float, float]:
    return X0 + col, Y0 - row


def _box(c0, r0, c1, r1):
    (x0, y0), (x1, y1) = _xy(c0, r1), _xy(c1, r0)
    return shapely.box(x0, y0, x1, y1)


@pytest.fixture()
def flooded(tmp_path):
    """1 m cells: a 0.5 m pond (cols 20-40, rows 20-40), a 0.2 m pond (cols 60-70), dry elsewhere."""
    depth = np.zeros((100, 100), np.float32)
    depth[20:40, 20:40] = 0.5
    depth[20:40, 60:70] = 0.2
    run = tmp_path / "run"
    run.mkdir()
    write_cog(run / "max_depth.tif", depth, Affine(1.0, 0, X0, 0, -1.0, Y0), CRS_)
    arrival = np.where(depth >= 0.15, 600.0, np.nan)
    write_cog(run / "time_to_0.15m.tif", arrival, Affine(1.0, 0, X0, 0, -1.0, Y0), CRS_)
    (run / "run.json").write_text(json.dumps({"params": {"depth_classes": [0.15, 0.3, 0.5, 1.0]}}))
    files = {}
    layers = {
        "buildings": gpd.GeoDataFrame({"code": ["A", "B", "C"], "name": ["a", "b", "c"], "use": ["住宅"] * 3,
                                       "address": ["东街1号", "东街2号", "东街3号"]},
                                      geometry=[_box(40, 25, 50, 35), _box(80, 80, 90, 90), _box(70, 25, 78, 35)]),
        "roads": gpd.GeoDataFrame({"name": ["主路"], "class": ["主干路"]},
                                  geometry=[shapely.LineString([_xy(0, 30.5), _xy(100, 30.5)])]),
        "shelters": gpd.GeoDataFrame({"shelter_id": ["S1", "S2"], "name": ["池中", "高地"], "capacity": [100, 200]},
                                     geometry=[shapely.Point(_xy(30, 30)), shapely.Point(_xy(95, 95))]),
        "population": gpd.GeoDataFrame({"name": ["一社区"], "code": ["1"], "population": [900]},
                                       geometry=[_box(0, 0, 100, 100)]),
    }
    for name, gdf in layers.items():
        files[name] = tmp_path / f"{name}.gpkg"
        gdf.set_crs(CRS_).to_file(files[name])
    return FloodResult.open(run), files


def test_impacts_on_hand_placed_water(flooded):
    result, files = flooded
    imp = flood_impacts(result, files=files)
    b = imp.buildings.set_index("id")
    assert set(b.index) == {"A", "C"}                      # B stays dry: not listed
    assert b.loc["A", "max_depth_m"] == pytest.approx(0.5) and b.loc["A", "depth_class"] == "0.50-1.00 m"
    assert b.loc["C", "max_depth_m"] == pytest.approx(0.2) and b.loc["C", "depth_class"] == "0.15-0.30 m"
    assert b.loc["A", "time_to_0_15m_s"] == pytest.approx(600.0)
    assert b["affected"].all() and (b["nearest_dry_shelter"] == "S2").all()
    a_centre = shapely.centroid(_box(40, 25, 50, 35))
    assert b.loc["A", "shelter_distance_m"] == pytest.approx(a_centre.distance(shapely.Point(_xy(95, 95))), abs=0.1)
    roads = imp.roads.sort_values("max_depth_m")
    assert roads["max_depth_m"].tolist() == pytest.approx([0.2, 0.5])
    assert roads["impassable"].tolist() == [False, True] and roads["length_m"].tolist() == pytest.approx([50, 50])
    s = imp.shelters.set_index("id")
    assert not s.loc["S1", "dry"] and s.loc["S2", "dry"] and s.loc["S2", "assigned_buildings"] == 2
    c = imp.communities.iloc[0]
    assert c["buildings"] == 3 and c["affected_buildings"] == 2 and c["affected_population"] == 600
    assert imp.summary["buildings_affected"] == 2 and imp.summary["road_pieces_impassable"] == 1
    assert imp.summary["shelters_dry"] == 1 and imp.summary["affected_population"] == 600


def test_thresholds_change_what_counts(flooded):
    result, files = flooded
    imp = flood_impacts(result, files=files, params=ImpactParams(building_threshold_m=0.3, road_threshold_m=0.1))
    assert imp.buildings.set_index("id")["affected"].to_dict() == {"A": True, "C": False}
    assert imp.roads["impassable"].all()


def test_exports_csv_json_and_store_layers(flooded, tmp_path):
    from layers import LayerStore

    result, files = flooded
    imp = flood_impacts(result, files=files)
    out = imp.write(tmp_path / "impacts")
    doc = json.loads((out / "impacts.json").read_text(encoding="utf-8"))
    assert doc["summary"]["buildings_affected"] == 2 and len(doc["buildings"]) == 2
    text = (out / "buildings.csv").read_text(encoding="utf-8-sig")
    assert text.splitlines()[0].startswith("id,name,address") and "东街1号" in text and "POLYGON" in text
    with LayerStore(tmp_path / "city.duckdb") as store:
        first = imp.to_layer(store)
        again = imp.to_layer(store)
        assert set(first) == {"flood_buildings", "flood_roads", "flood_communities", "flood_shelters"}
        info = store.info("flood_buildings")
        assert info.version == 2 and info.feature_count == 2 and again
        assert store.query("flood_buildings")["address"].tolist() == ["东街1号", "东街3号"]


def test_missing_layer_is_named(flooded, tmp_path):
    from cim.analysis.flood.errors import FloodInputError
    from layers import LayerStore

    result, _ = flooded
    with LayerStore(tmp_path / "empty.duckdb") as store, pytest.raises(FloodInputError, match="no layer 'buildings'"):
        flood_impacts(result, store)
