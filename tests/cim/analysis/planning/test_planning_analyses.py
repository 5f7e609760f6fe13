"""Height control (hand-computed case), shadow, viewshed (against brute-force line of sight), skyline (analytic
case), scheme comparison (the scheme is reported as the cause) and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

from cim.analysis.planning.compare import ComparisonParams, compare_scheme
from cim.analysis.planning.height import HeightControlParams, height_control
from cim.analysis.planning.scene import CityScene, Scheme
from cim.analysis.planning.shadow import SHADOW_OF, ShadowParams, shadow
from cim.analysis.planning.skyline import SkylineParams, skyline
from cim.analysis.planning.sun import sun_positions, true_solar_to_utc
from cim.analysis.planning.sunlight import SunlightParams
from cim.analysis.planning.viewshed import ViewshedParams, line_of_sight, viewshed
from cim.sources.crs import transformer
from cim.errors import InputError
from tests.support.planning_reference import Prisms, segments_blocked

X0, Y0 = transformer("EPSG:4326", "EPSG:4547").transform(114.0, 40.09)  # on the central meridian: grid = true


def _frame(rows: list[dict], boxes: list[tuple[float, float, float, float]]) -> gpd.GeoDataFrame:
    geoms = [shapely.box(X0 + a, Y0 + b, X0 + c, Y0 + d) for a, b, c, d in boxes]
    return gpd.GeoDataFrame(rows, geometry=geoms, crs="EPSG:4547")


def _lonlat(dx: float, dy: float) -> tuple[float, float]:
    lon, lat = transformer("EPSG:4547", "EPSG:4326").transform(X0 + dx, Y0 + dy)
    return float(lon), float(lat)


# ------------------------------------------------------------------------------------------------ height control
@pytest.fixture(scope="module")
def zoned() -> tuple[CityScene, gpd.GeoDataFrame]:
    scene = CityScene.from_frame(_frame(
        [{"code": "a", "height": 15.0}, {"code": "b", "height": 20.0}, {"code": "c", "height": 10.0},
         {"code": "d", "height": 50.0}],
        [(0, 0, 10, 10), (95, 0, 105, 10), (20, 20, 30, 30), (300, 0, 310, 10)]))
    zones = gpd.GeoDataFrame({"zone_code": ["KG-A", "KG-B"], "name": ["low", "mid"], "max_height_m": [12.0, 24.0]},
                             geometry=[shapely.box(X0 - 50, Y0 - 50, X0 + 100, Y0 + 50),
                                       shapely.box(X0 + 100, Y0 - 50, X0 + 250, Y0 + 50)], crs="EPSG:4547")
    return scene, zones.to_crs("EPSG:4490")  # zones in another CRS than the model


def test_height_control_hand_case(zoned: tuple[CityScene, gpd.GeoDataFrame]) -> None:
    scene, zones = zoned
    r = height_control(scene, zones)
    c = r.checks.set_index(["id", "zone_code"])
    # a: 15 m in a 12 m zone -> 3 m over; b: 20 m across both zones -> 8 m over the 12 m part (5 m x 10 m = 50 m2),
    # 4 m under in the 24 m part; c: 10 m, fine; d: in no zone
    assert c.loc[("a", "KG-A"), ["height", "limit", "excess", "violation"]].tolist() == [15.0, 12.0, 3.0, True]
    assert c.loc[("b", "KG-A"), ["excess", "violation"]].tolist() == [8.0, True]
    assert c.loc[("b", "KG-A"), "part_area"] == pytest.approx(50.0, abs=0.05)
    assert c.loc[("b", "KG-B"), ["excess", "violation"]].tolist() == [-4.0, False]
    assert not c.loc[("c", "KG-A"), "violation"]
    assert r.unzoned == ["d"]
    assert r.violations()["id"].tolist() == ["b", "a"]  # largest excess first
    s = r.summary()
    assert (s["violations"], s["buildings_violating"], s["max_excess"]) == (2, 2, 8.0)
    assert len(height_control(scene, zones, HeightControlParams(tolerance=5.0)).violations()) == 1
    gj = r.to_geojson()
    assert {f["properties"]["id"] for f in gj["features"]} == {"a", "b"}
    with pytest.raises(InputError, match="no 'limit' field"):
        height_control(scene, zones, HeightControlParams(limit_field="limit"))


def test_height_control_of_a_zone_without_a_name_is_valid_json(zoned: tuple[CityScene, gpd.GeoDataFrame]) -> None:
    """A zone whose name is missing: its violations name it null (it was NaN, which JSON cannot hold)."""
    scene, zones = zoned
    zones = zones.assign(name=[np.nan, "mid"])
    r = height_control(scene, zones)
    doc = r.to_dict()
    assert [(v["id"], v["zone_name"]) for v in doc["violations"]] == [("b", None), ("a", None)]
    json.dumps(doc, allow_nan=False)
    json.dumps(r.to_geojson(), allow_nan=False)


def test_height_control_of_a_scheme(zoned: tuple[CityScene, gpd.GeoDataFrame]) -> None:
    scene, zones = zoned
    scheme = Scheme.from_frame(_frame([{"name": "新楼", "floors": 10}], [(150, 0, 170, 20)]))
    r = height_control(scene.with_scheme(scheme), zones)
    v = r.violations()
    row = v[v["scheme"]].iloc[0]
    assert (row["id"], row["height"], row["excess"]) == ("scheme:新楼", 30.0, 6.0)  # 10 floors x 3 m vs 24 m


# ------------------------------------------------------------------------------------------------ shadow
def test_instant_shadow_of_a_box_is_its_projection() -> None:
    scene = CityScene.from_frame(_frame([{"code": "box", "height": 20.0}, {"code": "far", "height": 3.0}],
                                        [(0, 0, 10, 10), (300, 300, 302, 302)]))
    r = shadow(scene, ShadowParams(year=2024, day="dahan", at=10.0, of=["box"], cell=0.5, margin=80))
    t = true_solar_to_utc(scene.site, r.date, np.array([10.0]))
    v = sun_positions(scene.site, t).vectors()[0]
    foot = shapely.box(X0, Y0, X0 + 10, Y0 + 10)
    shift = -20.0 * v[:2] / v[2]
    # the shadow of a prism on flat ground: the union of its footprint swept along the sun's ground direction
    expected = shapely.difference(shapely.convex_hull(shapely.union(
        foot, shapely.affinity.translate(foot, shift[0], shift[1]))), foot)
    got = shapely.union_all(r.polygons()[lambda d: d["kind"] == "of"].geometry)
    iou = shapely.area(shapely.intersection(got, expected)) / shapely.area(shapely.union(got, expected))
    assert iou > 0.97
    cell_area = 0.25
    assert abs((r.values == SHADOW_OF).sum() * cell_area - expected.area) < 0.5 * expected.length * 0.5
    assert r.summary()["sun"]["elevation"] > 0


def test_day_shadow_caused_by_a_building() -> None:
    scene = CityScene.from_frame(_frame([{"code": "box", "height": 20.0}, {"code": "far", "height": 3.0}],
                                        [(0, 0, 10, 10), (300, 300, 302, 302)]))
    r = shadow(scene, ShadowParams(year=2024, of=["box"], cell=4.0, margin=40))
    assert r.caused is not None
    np.testing.assert_allclose(r.caused[np.isfinite(r.caused)], r.values[np.isfinite(r.values)], atol=0.02)
    row, col = rasterio.transform.rowcol(r.transform, X0 + 5, Y0 + 14)  # just north of the box
    assert r.caused[row, col] > 120
    row, col = rasterio.transform.rowcol(r.transform, X0 + 5, Y0 - 14)  # south of it: never in its shadow
    assert r.caused[row, col] == 0
    assert np.isnan(r.values[rasterio.transform.rowcol(r.transform, X0 + 5, Y0 + 5)])  # under the roof


# ------------------------------------------------------------------------------------------------ viewshed
def _ridge_dem(path: Path, res: float = 1.0, n: int = 240) -> tuple[Path, float, float]:
    """A DEM with a tent-shaped east-west ridge (12 m high, 20 m each side) 40 m south of the origin."""
    left, top = X0 - n * res / 2, Y0 + n * res / 2
    yy, xx = np.mgrid[0:n, 0:n]
    yc = top - (yy + 0.5) * res
    h = 12.0 * np.clip(1 - np.abs(yc - (Y0 - 40.0)) / 20.0, 0, None)
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=1, dtype="float32", crs="EPSG:4547",
                       transform=from_origin(left, top, res, res)) as dst:
        dst.write(h.astype(np.float32)[None])
    return path, left, top


def test_viewshed_against_brute_force_line_of_sight(tmp_path: Path) -> None:
    dem, _, _ = _ridge_dem(tmp_path / "dem.tif")
    rng = np.random.default_rng(3)
    boxes, rows = [], []
    for i in range(14):
        cx, cy = rng.uniform(-100, 100, 2)
        if math.hypot(cx, cy) < 15:
            continue
        w, d = rng.uniform(5, 15, 2)
        boxes.append((cx - w / 2, cy - d / 2, cx + w / 2, cy + d / 2))
        rows.append({"code": f"b{i}", "height": float(rng.uniform(4, 30))})
    scene = CityScene.from_frame(_frame(rows, boxes), dem)
    params = ViewshedParams(observer=_lonlat(0.0, 0.0), height=1.6, radius=110.0, cell=2.0)
    r = viewshed(scene, params)
    obs = r.observer
    bs = scene.buildings
    prisms = Prisms(bs.geoms, bs.base, bs.base + bs.height)

    def terrain(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return 12.0 * np.clip(1 - np.abs(y - (Y0 - 40.0)) / 20.0, 0, None)

    # random targets 5 cm above the true surface (terrain or roof) inside the radius
    ang, dist = rng.uniform(0, 2 * np.pi, 600), 110 * np.sqrt(rng.uniform(0.01, 1, 600))
    tx, ty = obs[0] + dist * np.sin(ang), obs[1] + dist * np.cos(ang)
    owner = shapely.STRtree(bs.geoms).query(shapely.points(tx, ty), predicate="within")
    tz = terrain(tx, ty)
    tz[owner[0]] = (bs.base + bs.height)[owner[1]]
    targets = np.column_stack([tx, ty, tz + 0.05])
    engine = line_of_sight(scene, obs, targets)
    blocked = segments_blocked(prisms, obs, targets - (targets - obs) * (0.05 / np.linalg.norm(
        targets - obs, axis=1))[:, None])
    s = np.linspace(0, 1, 4000)[None, :]
    seg = obs[None, None, :] + (targets - obs)[:, None, :] * s[..., None]
    under = (seg[..., 2] < terrain(seg[..., 0], seg[..., 1]) - 1e-6)[:, :-5].any(axis=1)
    reference = ~(blocked | under)
    assert reference.sum() > 50 and (~reference).sum() > 50  # both kinds are tested
    assert (engine == reference).mean() >= 0.99
    # the raster is the same line of sight to the surface of every cell
    assert r.summary()["cells"] == int(np.isfinite(r.values).sum())
    assert 0 < r.summary()["visible_fraction"] < 1
    assert set(r.buildings["id"]) <= set(bs.ids) and len(r.buildings) > 0


def test_observer_outside_the_model_is_refused(tmp_path: Path) -> None:
    dem, _, _ = _ridge_dem(tmp_path / "dem.tif")
    scene = CityScene.from_frame(_frame([{"code": "a", "height": 10.0}], [(0, 0, 10, 10)]), dem)
    with pytest.raises(InputError, match="is outside the model"):
        viewshed(scene, ViewshedParams(observer=_lonlat(5000.0, 0.0)))
    with pytest.raises(InputError, match="below the top of a building"):
        viewshed(scene, ViewshedParams(observer=_lonlat(5.0, 5.0), height=3.0, absolute=True))


# ------------------------------------------------------------------------------------------------ skyline
def test_skyline_of_a_tower() -> None:
    scene = CityScene.from_frame(_frame([{"code": "tower", "height": 60.0}, {"code": "hut", "height": 3.0}],
                                        [(-10, 100, 10, 120), (-150, -150, -148, -148)]))
    r = skyline(scene, SkylineParams(viewpoint=_lonlat(0.0, 0.0), height=1.6, azimuth_step=0.25, precision=0.005))
    p = r.profile.set_index("azimuth")
    # due north the tower's near top edge is 100 m away, 58.4 m above the eye
    assert p.loc[0.0, "elevation"] == pytest.approx(math.degrees(math.atan2(58.4, 100.0)), abs=0.01)
    assert p.loc[0.0, "owner"] == "tower"
    half = math.degrees(math.atan2(10.0, 100.0))  # the tower spans +-5.7 degrees
    # beside it, the flat ground's horizon at the 5 km reach
    assert p.loc[10.0, "owner"] == "terrain"
    assert p.loc[10.0, "elevation"] == pytest.approx(-math.degrees(math.atan2(1.6, 5000.0)), abs=0.01)
    f = r.formers()
    assert f.iloc[0]["id"] == "tower" and abs(f.iloc[0]["degrees"] - 2 * half) <= 0.5
    with pytest.raises(InputError, match="below the top of a building"):
        skyline(scene, SkylineParams(viewpoint=_lonlat(0.0, 110.0), height=1.0, absolute=True))


# ------------------------------------------------------------------------------------------------ comparison
def test_scheme_that_shades_a_window_is_the_cause() -> None:
    scene = CityScene.from_frame(_frame(
        [{"code": "home", "use": "住宅", "height": 6.0, "floors": 2}, {"code": "shop", "use": "商业", "height": 4.0}],
        [(-5, 0, 5, 8), (60, -200, 70, -190)]))
    slab = _frame([{"name": "新楼", "height": 20.0, "use": "商业"}], [(-100, -35, 100, -25)])
    zones = gpd.GeoDataFrame({"zone_code": ["KG"], "max_height_m": [18.0]},
                             geometry=[shapely.box(X0 - 500, Y0 - 500, X0 + 500, Y0 + 500)], crs="EPSG:4547")
    params = ComparisonParams(sunlight=SunlightParams(year=2024, spacing=10.0),
                              skyline=SkylineParams(viewpoint=_lonlat(0.0, 20.0), azimuth_step=1.0),
                              viewshed=ViewshedParams(observer=_lonlat(30.0, 20.0), radius=300.0, cell=4.0))
    cmp = compare_scheme(scene, Scheme.from_frame(slab), params, zones=zones)
    w = cmp.windows
    south = w[w["floor"] == 1].iloc[0]
    assert south["before_min"] == 480 and south["after_min"] < 120
    assert south["status"] == "newly_failing" and south["cause"] == "scheme:新楼"
    assert south["causes"]["scheme:新楼"] == pytest.approx(south["lost_min"], abs=1.0)
    s = cmp.summary()
    assert s["sunlight"]["by_cause"] == {"scheme:新楼": len(w)}
    assert s["height"] == {"new_violations": 1, "max_excess": 2.0}
    assert s["skyline"]["azimuths_raised"] > 0 and set(s["skyline"]["by_building"]) == {"scheme:新楼"}
    v = s["viewshed"]  # the slab hides the ground south of it and the shop behind it, and is itself seen
    assert v["newly_hidden_m2"] > 1000 and v["visible_m2_after"] < v["visible_m2_before"]
    assert v["buildings_hidden"] == ["shop"] and v["scheme_visible"] == ["scheme:新楼"]
    kinds = {f["properties"]["kind"] for f in cmp.to_geojson()["features"]}
    assert kinds == {"scheme", "window", "violation"}


def test_empty_or_bad_schemes_are_refused() -> None:
    with pytest.raises(InputError, match="holds no footprint"):
        Scheme.from_geojson({"type": "FeatureCollection", "features": []})
    with pytest.raises(InputError, match="no positive `height`"):
        Scheme.from_frame(_frame([{"name": "x"}], [(0, 0, 10, 10)]))
    with pytest.raises(InputError, match="must be polygons"):
        Scheme.from_frame(gpd.GeoDataFrame({"height": [3.0]}, geometry=[shapely.Point(X0, Y0)], crs="EPSG:4547"))
    with pytest.raises(InputError, match="declares no CRS"):
        Scheme.from_frame(gpd.GeoDataFrame({"height": [3.0]}, geometry=[shapely.box(0, 0, 1, 1)]))
    s = Scheme.from_geojson({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"height": 30},
        "geometry": {"type": "Polygon", "coordinates": [[[114.0, 40.09], [114.0002, 40.09], [114.0002, 40.0902],
                                                         [114.0, 40.0902], [114.0, 40.09]]]}}]})
    assert len(s.frame) == 1


def test_results_become_layers_of_the_store(zoned: tuple[CityScene, gpd.GeoDataFrame], tmp_path: Path) -> None:
    from layers import LayerStore

    scene, zones = zoned
    r = height_control(scene, zones)
    store = tmp_path / "city.duckdb"
    report = r.to_layer(store, "kg_check")
    with LayerStore(store, read_only=True) as s:
        info = s.info("kg_check")
        assert info.theme.startswith("planning_control") and info.feature_count == len(r.checks)
        got = s.query("kg_check")
        assert sorted(got["id"]) == sorted(r.checks["id"]) and set(got["violation"]) == {True, False}
    assert report is not None


def test_height_control_at_level_3_measures_the_roof_in_each_zone() -> None:
    # a gabled house 10 m x 8 m, eaves at 6 m, ridge at 10 m along its long axis (y = 4); zone A takes its southern
    # 2 m, where the roof reaches 6 + 4 * 2/4 = 8 m; zone B holds the ridge
    gdf = _frame([{"code": "house", "height": 8.0, "roof_type": "gabled", "eave_height": 6.0,
                   "ridge_height": 10.0}], [(0, 0, 10, 8)])
    zones = gpd.GeoDataFrame({"zone_code": ["A", "B"], "max_height_m": [7.0, 12.0]},
                             geometry=[shapely.box(X0 - 50, Y0 - 50, X0 + 50, Y0 + 2),
                                       shapely.box(X0 - 50, Y0 + 2, X0 + 50, Y0 + 50)], crs="EPSG:4547")
    r3 = height_control(CityScene.from_frame(gdf, level=3), zones).checks.set_index("zone_code")
    assert r3.loc["A", "height"] == pytest.approx(8.0, abs=1e-6) and r3.loc["A", "measure"] == "roof"
    assert r3.loc["B", "height"] == pytest.approx(10.0, abs=1e-6)
    assert bool(r3.loc["A", "violation"]) and not bool(r3.loc["B", "violation"])
    r2 = height_control(CityScene.from_frame(gdf, level=2), zones).checks.set_index("zone_code")
    assert r2["height"].tolist() == [8.0, 8.0] and (r2["measure"] == "lod1").all()
