"""Whole runs on the sample city (coarsened so they take seconds): outputs, report, mass balance; bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine

from cim.analysis.flood import FloodInputError, FloodParams, FloodResult, run_flood
from cim.analysis.flood.rain import ChicagoStorm
from cim.errors import InputError, OutputExistsError
from cim.sample import default_sample


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    """The default storm (50-year, 60 min, Chicago) on the sample city at 16 m, 30 min after the rain."""
    out = tmp_path_factory.mktemp("flood") / "run"
    stages: list[tuple[str, int, int]] = []
    params = FloodParams(resolution=16.0, output_interval_min=15.0)
    result = run_flood(params, out, progress=lambda s, d, t: stages.append((s, d, t)))
    return result, stages


def test_mass_balance_of_the_sample_city_storm(sample_run):
    """|rain in - (stored + out + losses)| < 0.1 % of rain in (it is at rounding level)."""
    result, _ = sample_run
    mb = result.report["mass_balance"]
    grid = result.report["grid"]
    on_land = (grid["shape"][0] * grid["shape"][1] - grid["nodata_cells"]) * 16.0 * 16.0  # not on the river
    assert grid["buildings"]["outlets"]["cells"] == grid["nodata_cells"] > 0
    assert mb["rain_m3"] == pytest.approx(result.report["rain"]["depth_mm"] / 1000 * on_land, rel=1e-9)
    assert mb["relative_error"] < 1e-3
    assert mb["relative_error"] < 1e-9
    assert mb["stored_m3"] > 0 and mb["outflow_m3"] > 0


def test_outputs_are_cogs_with_steps_and_maxima(sample_run):
    result, stages = sample_run
    rep = result.report
    assert [s["t_s"] for s in rep["steps"]] == [900.0, 1800.0, 2700.0, 3600.0, 4500.0, 5400.0]
    for step in rep["steps"]:
        for key in ("depth", "velocity"):
            with rasterio.open(result.root / step[key]) as src:
                assert src.crs.to_epsg() == 4547 and src.res == (16.0, 16.0)
                assert src.profile["tiled"]  # (overviews only above one 256 px block)
                assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    hmax = result.read("max_depth")
    last = result.read("depth", 5400.0)
    assert np.nanmin(hmax - last) >= -1e-3             # the maximum is never below a later depth
    t15 = result.read("time_to_0.15m")
    assert (np.isfinite(t15) == (hmax >= 0.15 - 1e-3)).mean() > 0.999
    assert np.nanmax(t15) <= 5400.0
    assert rep["statistics"]["max_depth_m"] == pytest.approx(float(np.nanmax(hmax)), abs=1e-3)
    assert stages[-1] == ("outputs", 1, 1) and ("flood", 5400, 5400) in stages
    assert json.loads((result.root / "run.json").read_text())["solver"]["steps"] > 100


def test_inundation_polygons_follow_the_depth_classes(sample_run):
    result, _ = sample_run
    gdf = result.inundation()
    assert set(gdf["depth_class"]) <= {"0.15-0.30 m", "0.30-0.50 m", "0.50-1.00 m", ">= 1.00 m"}
    by_class = gdf.groupby("depth_class")["area_m2"].sum()
    stats = result.report["statistics"]["area_by_class_m2"]
    for label, area in by_class.items():
        assert area == pytest.approx(stats[label])
        assert gdf[gdf.depth_class == label].geometry.area.sum() == pytest.approx(area)
    assert (gdf["peak_depth_m"] >= gdf["min_depth_m"]).all()


def test_result_reopens_and_exports(sample_run, tmp_path):
    result, _ = sample_run
    again = FloodResult.open(result.root)
    assert again.times == result.times and again.to_dict()["kind"] == "dynamic"
    copy = again.to_raster(tmp_path / "hmax.tif")
    with rasterio.open(copy) as src:
        assert np.array_equal(src.read(1), result.read("max_depth"), equal_nan=True)
    with pytest.raises(FloodInputError, match="no depth raster at t=7"):
        again.raster_path("depth", 7.0)


def test_static_run_is_fast_and_balanced(tmp_path):
    result = run_flood(FloodParams(static=True, resolution=8.0, drainage="2y"), tmp_path / "static")
    rep = result.report
    assert rep["kind"] == "static" and rep["steps"] == []
    assert rep["mass_balance"]["relative_error"] < 1e-9
    assert rep["inputs"]["drainage_mm_h"] == pytest.approx(ChicagoStorm().formula.intensity(2, 60) * 60)
    assert rep["mass_balance"]["losses_m3"] > 0
    hmax = result.read("max_depth")
    assert np.nanmax(hmax) > 0.15 and result.inundation().shape[0] > 0


def _left_behind(parent, name):
    return [p.name for p in parent.iterdir() if p.name.startswith(f".{name}.tmp") or p.name == name]


def _dem(path, data, crs="EPSG:4547", nodata=-9999.0):
    profile = {"driver": "GTiff", "width": data.shape[1], "height": data.shape[0], "count": 1, "dtype": "float32",
               "transform": Affine(2.0, 0, 439300.0, 0, -2.0, 4440800.0), "nodata": nodata}
    if crs:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(np.float32), 1)
    return path


@pytest.mark.parametrize("case", ["no_crs", "all_nodata", "negative_rain", "buildings_outside", "bad_storm"])
def test_bad_input_gives_a_clear_error_and_no_output(tmp_path, case):
    z = np.random.default_rng(0).uniform(1040, 1041, (20, 20))
    dem = _dem(tmp_path / "dem.tif", z)
    kwargs: dict = {"dem": dem, "buildings": ""}
    expect: tuple = (FloodInputError, "")
    if case == "no_crs":
        kwargs["dem"] = _dem(tmp_path / "nocrs.tif", z, crs=None)
        expect = (FloodInputError, "declares no CRS")
    elif case == "all_nodata":
        kwargs["dem"] = _dem(tmp_path / "empty.tif", np.full((20, 20), -9999.0))
        expect = (InputError, "no valid height")
    elif case == "negative_rain":
        rain = tmp_path / "rain.csv"
        rain.write_text("minutes,mm_h\n0,20\n5,-10\n")
        kwargs["rain_file"] = rain
        expect = (FloodInputError, "-10.0 mm/h at 5 min is negative")
    elif case == "buildings_outside":
        kwargs["buildings"] = default_sample().buildings
        kwargs["dem"] = _dem(tmp_path / "far.tif", z, crs="EPSG:4548")
        expect = (FloodInputError, "buildings file .* none of its 2500 polygons lies on the DEM")
    elif case == "bad_storm":
        kwargs["storm"] = {"return_period": 10, "peak_ratio": 0.0}
        expect = (FloodInputError, "peak_ratio=0.0 is out of range")
    with pytest.raises(expect[0], match=expect[1]):
        run_flood(FloodParams.build(**kwargs), tmp_path / "out")
    assert _left_behind(tmp_path, "out") == []


@pytest.mark.parametrize("fails", ["velocity/000600.tif", "velocity/001200.tif", "max_depth.tif"])
def test_a_failed_write_fails_the_run_and_leaves_no_output(tmp_path, monkeypatch, fails):
    """Step rasters are written on a thread while the solver runs on: a write failing there (at a middle step,
    at the last step) or on the run's own thread (the maximum depth) fails the run with its error, and nothing is
    left behind, not even the rasters written before it."""
    import cim.analysis.flood.run as run_module

    written = []

    def write_cog(path, *args, **kwargs):
        if str(path).endswith(fails):
            raise OSError(f"disk full writing {path.name}")
        run_module.write_cog.__wrapped__(path, *args, **kwargs)
        written.append(f"{path.parent.name}/{path.name}")

    write_cog.__wrapped__ = run_module.write_cog
    monkeypatch.setattr(run_module, "write_cog", write_cog)
    dem = _dem(tmp_path / "dem.tif", np.random.default_rng(0).uniform(1040, 1041, (20, 20)))
    params = FloodParams(dem=dem, buildings="", duration_min=20.0, output_interval_min=5.0)
    with pytest.raises(OSError, match="disk full writing " + fails.split("/")[-1]):
        run_flood(params, tmp_path / "out")
    assert "depth/000300.tif" in written and "velocity/000300.tif" in written
    assert _left_behind(tmp_path, "out") == []


def test_a_dem_in_lon_lat_runs_in_its_gauss_krueger_zone(tmp_path):
    """A DEM in CGCS2000 lon/lat (EPSG:4490) is reprojected to the Gauss-Krüger zone of its centre (EPSG:4547 at
    113.3E) on square cells; heights and places match the projected DEM it was warped from (GDAL, checked with
    pyproj), and the run's outputs are in that zone."""
    from pyproj import Transformer
    from rasterio.enums import Resampling
    from rasterio.warp import calculate_default_transform, reproject

    from cim.analysis.flood import prepare_grid

    def plane(x, y):
        return 1040.0 + 0.01 * (x - 439300.0) - 0.004 * (y - 4440800.0)

    cols, rows = np.meshgrid(np.arange(60) + 0.5, np.arange(50) + 0.5)
    gk = _dem(tmp_path / "gk.tif", plane(439300.0 + 2 * cols, 4440800.0 - 2 * rows))
    geo = tmp_path / "lonlat.tif"
    with rasterio.open(gk) as src:
        t, w, h = calculate_default_transform(src.crs, "EPSG:4490", src.width, src.height, *src.bounds)
        data = np.full((h, w), np.nan, np.float32)
        reproject(rasterio.band(src, 1), data, dst_transform=t, dst_crs="EPSG:4490", dst_nodata=np.nan,
                  resampling=Resampling.bilinear)
        profile = {**src.profile, "crs": "EPSG:4490", "transform": t, "width": w, "height": h, "nodata": np.nan}
    with rasterio.open(geo, "w", **profile) as dst:
        dst.write(data, 1)
    grid = prepare_grid(geo)
    assert grid.crs.to_epsg() == 4547 and grid.dem_crs.to_epsg() == 4490
    assert grid.dx == pytest.approx(grid.dy) and 1.5 < grid.dx < 2.5
    to_gk = Transformer.from_crs(4490, 4547, always_xy=True)
    corners = to_gk.transform(np.array([t.c, t.c + w * t.a]), np.array([t.f + h * t.e, t.f]))
    left, bottom, right, top = grid.bounds
    assert abs(left - corners[0][0]) < 3 and abs(right - corners[0][1]) < 3
    assert abs(bottom - corners[1][0]) < 3 and abs(top - corners[1][1]) < 3
    jj, ii = np.nonzero(np.isfinite(grid.z))
    x = grid.transform.c + (ii + 0.5) * grid.dx
    y = grid.transform.f - (jj + 0.5) * grid.dy
    inner = (x > 439304) & (x < 439416) & (y < 4440796) & (y > 4440704)  # two cells inside the source DEM
    assert inner.sum() > 1500
    assert np.abs(grid.z[jj, ii][inner] - plane(x[inner], y[inner])).max() < 0.01
    result = run_flood(FloodParams.build(dem=geo, buildings="", static=True), tmp_path / "run")
    with rasterio.open(result.root / "max_depth.tif") as src:
        assert src.crs.to_epsg() == 4547 and src.transform == grid.transform
    assert result.report["grid"]["dem_crs"] == "EPSG:4490" and result.report["grid"]["reprojected"] is True


def test_existing_output_is_kept_without_overwrite(tmp_path):
    dem = _dem(tmp_path / "dem.tif", np.random.default_rng(0).uniform(1040, 1041, (20, 20)))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    params = FloodParams(dem=dem, buildings="", storm=ChicagoStorm(duration_min=10), after_min=0)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        run_flood(params, out)
    assert (out / "keep.txt").exists()
    run_flood(params, out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "run.json").exists()


def test_losses_from_layers_and_land_cover(tmp_path):
    """Drainage from polygons with a rate, infiltration from land-cover classes, laid out cell by cell."""
    import geopandas as gpd
    import shapely

    from cim.analysis.flood.grid import LANDCOVER_INFILTRATION, prepare_grid

    dem = _dem(tmp_path / "dem.tif", np.full((20, 20), 1040.0))
    x0, y0 = 439300.0, 4440800.0
    west, east = shapely.box(x0, y0 - 40, x0 + 20, y0), shapely.box(x0 + 20, y0 - 40, x0 + 40, y0)
    gpd.GeoDataFrame({"drainage_mm_h": [30.0, 10.0]}, geometry=[west, east], crs="EPSG:4547").to_file(
        tmp_path / "drain.gpkg")
    gpd.GeoDataFrame({"landcover": ["绿地", "paved"]}, geometry=[west, east], crs="EPSG:4547").to_file(
        tmp_path / "cover.gpkg")
    g = prepare_grid(dem, drainage_mm_h=tmp_path / "drain.gpkg", infiltration_mm_h=tmp_path / "cover.gpkg")
    assert g.drainage[5, 2] * 3.6e6 == pytest.approx(30.0) and g.drainage[5, 15] * 3.6e6 == pytest.approx(10.0)
    assert g.infiltration[5, 2] * 3.6e6 == pytest.approx(LANDCOVER_INFILTRATION["绿地"])
    assert g.infiltration[5, 15] == 0.0
    gpd.GeoDataFrame({"landcover": ["lava"]}, geometry=[west], crs="EPSG:4547").to_file(tmp_path / "bad.gpkg")
    with pytest.raises(FloodInputError, match="land cover lava is not one of"):
        prepare_grid(dem, infiltration_mm_h=tmp_path / "bad.gpkg")
