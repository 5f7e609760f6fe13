"""Sunlight hours: closed-form cases (a slab, a terrain ridge), a brute-force reference on the sample city, the
counting rules and the verdicts, bad input."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from pvlib import spa
from rasterio.transform import from_origin

from cim.analysis.planning.exposure import Segments, SunTable
from cim.analysis.planning.scene import CityScene
from cim.analysis.planning.standards import SunlightRule
from cim.analysis.planning.sun import Site, delta_t, standard_date, true_solar_to_utc
from cim.analysis.planning.sunlight import GroundGrid, SunlightParams, _counted, build_params, sunlight
from cim.sources.crs import transformer
from cim.errors import InputError
from tests.support.planning_reference import Prisms, counted_seconds, lit_seconds

YEAR = 2024


def _declination(site: Site, day) -> float:  # type: ignore[no-untyped-def]
    """The sun's geocentric apparent declination at true noon (pvlib's SPA steps, independent of our code)."""
    t = true_solar_to_utc(site, day, np.array([12.0]))
    dt = delta_t(day.year, day.month)
    jd = spa.julian_day(t)
    jde = spa.julian_ephemeris_day(jd, dt)
    jce = spa.julian_ephemeris_century(jde)
    jme = spa.julian_ephemeris_millennium(jce)
    x = [spa.mean_elongation(jce), spa.mean_anomaly_sun(jce), spa.mean_anomaly_moon(jce),
         spa.moon_argument_latitude(jce), spa.moon_ascending_longitude(jce)]
    nut = np.empty((2, 1))
    spa.longitude_obliquity_nutation(jce, *x, nut)
    eps = spa.true_ecliptic_obliquity(spa.mean_ecliptic_obliquity(jme), nut[1])
    theta = spa.geocentric_longitude(spa.heliocentric_longitude(jme))
    beta = spa.geocentric_latitude(spa.heliocentric_latitude(jme))
    lam = spa.apparent_sun_longitude(theta, nut[0], spa.aberration_correction(spa.heliocentric_radius_vector(jme)))
    return float(spa.geocentric_sun_declination(lam, eps, beta)[0])


def closed_form_minutes(lat: float, decl: float, rise: float, distance: float, half_window_deg: float = 60.0
                        ) -> float:
    """Sunlit minutes of a south-facing window behind an infinitely long east-west obstacle `rise` metres above it
    at `distance` metres: lit while the sun's profile angle exceeds atan(rise / distance), i.e. for hour angles
    |w| < w0 with cos w0 = -tan(decl) tan(lat + atan(rise / distance)) (the day length at latitude lat + alpha),
    within the effective window |w| <= half_window_deg."""
    alpha = math.atan2(rise, distance)
    c = -math.tan(math.radians(decl)) * math.tan(math.radians(lat) + alpha)
    if c >= 1:
        return 0.0
    w0 = math.degrees(math.acos(max(c, -1.0)))
    return 2 * min(w0, half_window_deg) * 4.0  # 4 minutes per degree of hour angle


def _rotated(poly: shapely.Polygon, gamma: float, x0: float, y0: float) -> shapely.Polygon:
    """A polygon drawn in a true east/north frame, placed in the grid (true azimuth + gamma = grid azimuth)."""
    g = math.radians(gamma)
    c = np.asarray(poly.exterior.coords)
    x = x0 + c[:, 0] * math.cos(g) + c[:, 1] * math.sin(g)
    y = y0 - c[:, 0] * math.sin(g) + c[:, 1] * math.cos(g)
    return shapely.Polygon(np.column_stack([x, y]))


def _house_and_obstacle(lon: float, lat: float, distance: float, slab_height: float | None
                        ) -> tuple[gpd.GeoDataFrame, float, float, float]:
    x0, y0 = transformer("EPSG:4326", "EPSG:4547").transform(lon, lat)
    x1, y1 = transformer("EPSG:4326", "EPSG:4547").transform(lon, lat + 1e-4)
    gamma = math.degrees(math.atan2(x1 - x0, y1 - y0))
    house = shapely.box(-5, 0, 5, 8)  # south facade 10 m wide on y = 0, two floors of 3 m
    geoms = [_rotated(house, gamma, x0, y0)]
    rows = [{"code": "house", "use": "住宅", "height": 6.0, "floors": 2}]
    if slab_height is not None:
        slab = shapely.box(-5 * distance, -distance - 10, 5 * distance, -distance)
        geoms.append(_rotated(slab, gamma, x0, y0))
        rows.append({"code": "slab", "use": "商业", "height": slab_height, "floors": 5})
    return gpd.GeoDataFrame(rows, geometry=geoms, crs="EPSG:4547"), gamma, x0, y0


def test_window_behind_a_slab_matches_the_closed_form() -> None:
    lon, lat, distance, height = 113.30, 40.09, 30.0, 16.0
    gdf, _, _, _ = _house_and_obstacle(lon, lat, distance, height)
    scene = CityScene.from_frame(gdf)
    params = SunlightParams(year=YEAR, buildings=["house"], spacing=10.0, refraction=False,
                            rule=SunlightRule(sweep_angle=0.0, min_segment_minutes=0))
    r = sunlight(scene, params)
    w = r.windows.set_index(["facade", "floor"])
    south = w[(w["azimuth"] - 180.0 - scene.site.convergence).abs() < 0.01]
    assert sorted(south.index.get_level_values("floor")) == [1, 2]
    decl = _declination(scene.site, standard_date(YEAR, "dahan"))
    for floor, row in south.droplevel("facade").iterrows():
        z = 0.9 + 3.0 * (floor - 1)
        expected = closed_form_minutes(lat, decl, height - z, distance - 0.02)
        assert 100 < expected < 470
        assert abs(row["total_min"] - expected) <= 1.0, (floor, row["total_min"], expected)
    # the unobstructed north facade never sees the sun on 大寒日; the south facade could get the whole window
    north = w[(w["azimuth"] - scene.site.convergence).abs() < 0.01]
    assert (north["potential_min"] == 0).all() and north["unfavourable"].all()
    assert (south["potential_min"] == 480).all()


def test_window_behind_a_terrain_ridge_matches_the_closed_form(tmp_path: Path) -> None:
    lon, lat, distance, height, res = 114.0, 40.09, 40.0, 14.0, 0.5  # on the central meridian: grid = true north
    gdf, gamma, x0, y0 = _house_and_obstacle(lon, lat, distance, None)
    assert abs(gamma) < 1e-3
    n = 400
    left, top = x0 - 100.0, y0 + 50.0 + res / 2  # a sample row falls on y0 - distance exactly
    yy, xx = np.mgrid[0:n, 0:n]
    yc = top - (yy + 0.5) * res
    dy = y0 - yc  # metres south of the window
    heights = np.where((dy >= distance) & (dy <= distance + 8.0), height, 0.0).astype(np.float32)
    dem = tmp_path / "ridge.tif"
    with rasterio.open(dem, "w", driver="GTiff", width=n, height=n, count=1, dtype="float32", crs="EPSG:4547",
                       transform=from_origin(left, top, res, res)) as dst:
        dst.write(heights[None])
    scene = CityScene.from_frame(gdf, dem)
    r = sunlight(scene, SunlightParams(year=YEAR, buildings=["house"], spacing=10.0, refraction=False,
                                       rule=SunlightRule(sweep_angle=0.0, min_segment_minutes=0)))
    row = r.windows[(r.windows["floor"] == 1) & ((r.windows["azimuth"] - 180).abs() < 0.01)].iloc[0]
    decl = _declination(scene.site, standard_date(YEAR, "dahan"))
    expected = closed_form_minutes(lat, decl, height - 0.9, distance - 0.02)
    assert 100 < expected < 470
    assert abs(row["total_min"] - expected) <= 1.0


@pytest.fixture(scope="module")
def sample_scene() -> CityScene:
    return CityScene.sample()


# a block of the new district with slabs and towers (shaded, partly shaded and fully lit windows)
DISTRICT = (113.308, 40.086, 113.311, 40.089)


def test_sample_city_against_brute_force(sample_scene: CityScene) -> None:
    scene = replace(sample_scene, dem=None, _tracer=None, _terrain=None)  # prisms only, as the reference
    params = SunlightParams(year=YEAR, bbox=DISTRICT, spacing=6.0)
    r = sunlight(scene, params)
    w = r.windows
    assert len(w) > 300
    partial = np.flatnonzero((w["total_min"] > 0) & (w["total_min"] < w["potential_min"]))
    rng = np.random.default_rng(15)
    pick = np.r_[rng.choice(partial, 24, replace=False), rng.choice(len(w), 8, replace=False)]
    sun = SunTable.compute(scene.site, standard_date(YEAR, "dahan"), (8.0, 16.0))
    bs = scene.buildings
    prisms = Prisms(bs.geoms, bs.base, bs.base + bs.height)
    rule = params.rule
    errors = []
    for i in pick:
        row = w.iloc[i]
        normal = np.array([math.sin(math.radians(row["azimuth"])), math.cos(math.radians(row["azimuth"]))])
        lit = lit_seconds(prisms, sun.vectors, sun.elevation, np.array([row["x"], row["y"], row["z"]]), normal,
                          rule.sweep_angle)
        ref = counted_seconds(lit, rule.min_segment_minutes * 60) / 60.0
        errors.append(abs(ref - row["counted_min"]))
        assert abs(lit.sum() / 60.0 - row["total_min"]) <= 1.0
    errors = np.array(errors)
    assert (errors <= 1.0).mean() >= 0.99, errors.max()


def test_counting_rules() -> None:
    # three segments: 4 min, 50 min, 70 min
    seg = Segments(1, np.zeros(3, np.int64), np.array([0, 600, 4000]), np.array([240, 3600, 8200]))
    counted, cumulative, continuous, total = _counted(seg, SunlightRule(min_segment_minutes=5))
    assert total[0] == 240 + 3000 + 4200
    assert cumulative[0] == 3000 + 4200  # the 4-minute segment does not count
    assert continuous[0] == 4200 and counted[0] == cumulative[0]
    counted, *_ = _counted(seg, SunlightRule(counting="continuous", min_segment_minutes=5))
    assert counted[0] == 4200
    counted, *_ = _counted(seg, SunlightRule(counting="continuous", min_segment_minutes=90))
    assert counted[0] == 0


def test_verdicts_and_ground_raster(sample_scene: CityScene, tmp_path: Path) -> None:
    r = sunlight(sample_scene, SunlightParams(year=YEAR, bbox=DISTRICT, spacing=6.0,
                                              ground=GroundGrid(cell=10.0, margin=20.0)))
    w, f, b = r.windows, r.facades, r.buildings
    assert ((w["counted_min"] >= 120) == w["passes"]).all()
    assert (w["unfavourable"] == (w["potential_min"] < 120)).all()
    best = w.groupby(["building", "facade", "floor"])["passes"].any()
    assert (f.set_index(["building", "facade", "floor"])["passes"] == best).all()
    for _, row in b.iterrows():
        mine = f[(f["building"] == row["id"]) & ~f["unfavourable"]]
        assert row["passes"] == bool(mine["passes"].all())
        assert row["floors_failing"] == sorted(set(mine[~mine["passes"]]["floor"]))
    s = r.summary()
    assert s["buildings"] == len(b) and s["windows"] == len(w)
    assert set(r.to_dict()["days"]) == {"dahan"}
    values, _ = r.ground
    assert np.isfinite(values).any() and np.isnan(values).any()  # building cells are nodata
    assert np.nanmax(values) == pytest.approx(480.0)  # open ground sees the whole window
    out = r.to_raster(tmp_path / "ground.tif")
    with rasterio.open(out) as src:
        assert src.crs.to_epsg() == 4547 and src.read(1).shape == values.shape
    with pytest.raises(Exception, match="exists"):
        r.to_raster(tmp_path / "ground.tif")
    gj = r.to_geojson()
    assert gj["features"][0]["geometry"]["type"] == "Point" and len(gj["features"]) == len(w)
    lon, lat, _ = gj["features"][0]["geometry"]["coordinates"]
    assert DISTRICT[0] - 0.01 < lon < DISTRICT[2] + 0.01 and DISTRICT[1] - 0.01 < lat < DISTRICT[3] + 0.01


def test_bad_input(sample_scene: CityScene) -> None:
    with pytest.raises(InputError, match="no building to check"):
        sunlight(sample_scene, SunlightParams(uses=["no-such-use"], elderly_uses=[]))
    with pytest.raises(InputError, match=r"\['nope'\] are not in the model"):
        sunlight(sample_scene, SunlightParams(buildings=["nope"]))
    with pytest.raises(InputError, match="year 7000 is outside"):
        build_params(SunlightParams, year=7000)
    with pytest.raises(InputError, match="window"):
        build_params(SunlightParams, window=(16, 8))
