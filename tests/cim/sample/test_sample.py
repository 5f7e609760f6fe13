"""The embedded sample city: determinism, attributes, geometry rules, rasters, manifest, CLI and the committed copy."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio
import rasterio.features
import shapely
from typer.testing import CliRunner

import cim
from cim import sample
from cim.errors import InputNotFoundError, OutputExistsError
from cim.sources.crs import lonlat, parse_crs

SMALL = 300
ATTRIBUTES = ("code", "name", "use", "floors", "height", "roof_type", "eave_height", "ridge_height", "year_built",
              "address")


@pytest.fixture(scope="session")
def small_city(tmp_path_factory: pytest.TempPathFactory) -> sample.SampleCity:
    """A 300-building city with every layer and raster."""
    return sample.generate(tmp_path_factory.mktemp("small") / "city", buildings=SMALL)


@pytest.fixture(scope="session")
def default_city(tmp_path_factory: pytest.TempPathFactory) -> sample.SampleCity:
    """The default city generated now, laid out as the cache of `default_sample()` would hold it."""
    cache = tmp_path_factory.mktemp("cim-cache")
    return sample.generate(cache / f"sample-{cim.__version__}-{sample.DEFAULT_SEED}")


def _frame(city: sample.SampleCity, layer: str) -> pd.DataFrame:
    return pyogrio.read_dataframe(city.layers[layer])


def test_same_seed_same_content_other_seed_other_content(small_city: sample.SampleCity, tmp_path: Path) -> None:
    again = sample.generate(tmp_path / "again", buildings=SMALL)
    assert sample.content_digest(again.root) == sample.content_digest(small_city.root)
    other = sample.generate(tmp_path / "other", buildings=SMALL, seed=8, rasters=False)
    a, b = sample.content_digest(other.root), sample.content_digest(small_city.root)
    assert a["buildings.gpkg"] != b["buildings.gpkg"]


def test_default_city_counts_and_attributes(default_city: sample.SampleCity) -> None:
    df = _frame(default_city, "buildings")
    assert default_city.n_buildings == len(df) == sample.DEFAULT_BUILDINGS >= 2000
    for name in ATTRIBUTES:
        assert name in df.columns
    assert df["code"].is_unique and df["code"].str.fullmatch(r"140213\d{11}").all()
    assert df["address"].str.match(r"山西省大同市平城区\S+街道\S+(路|街|巷|大道|大街)\d+(-\d+)?号").all()
    assert set(df["use"]) >= {"住宅", "商业", "办公", "教育", "医疗", "工业", "文物"}
    assert set(df["roof_type"]) == set(sample.ROOF_TYPES)
    no_height = df["height"].isna()
    no_floors = df["floors"].isna()
    assert 0.02 <= (no_height & ~no_floors).mean() <= 0.04
    assert 0.005 <= (no_height & no_floors).mean() <= 0.015
    assert not (no_floors & ~no_height).any()
    ok = ~no_height
    assert (df.loc[ok, "ridge_height"] >= df.loc[ok, "height"]).all()
    assert (df.loc[ok, "height"] >= df.loc[ok, "eave_height"]).all()
    flat = ok & (df["roof_type"] == "flat")
    assert (df.loc[flat, "ridge_height"] == df.loc[flat, "eave_height"]).all()
    assert df["year_built"].between(1000, 2024).all()
    kinds = shapely.get_type_id(df.geometry.values)
    assert (kinds == 6).sum() > 20  # buildings in two parts
    polys = df.geometry.values[kinds == 3]
    assert (shapely.get_num_interior_rings(polys) > 0).sum() > 50  # courtyards


def test_geometries_valid_and_clear_of_each_other_roads_and_river(default_city: sample.SampleCity) -> None:
    for layer in default_city.layers:
        geoms = _frame(default_city, layer).geometry.values
        assert shapely.is_valid(geoms).all(), layer
    b = _frame(default_city, "buildings").geometry.values
    left, right = shapely.STRtree(b).query(b, predicate="intersects")
    assert (left == right).all()
    roads = _frame(default_city, "roads")
    surfaces = shapely.buffer(roads.geometry.values, roads["width"].to_numpy() / 2, cap_style="flat")
    assert len(shapely.STRtree(surfaces).query(b, predicate="intersects")[0]) == 0
    river = _frame(default_city, "river").geometry.values[0]
    assert not shapely.intersects(b, river).any()


def test_communities_and_streets_tile_the_city(default_city: sample.SampleCity) -> None:
    box = shapely.box(*default_city.bounds)
    for layer, lo, hi in (("communities", 10, 20), ("streets", 2, 4)):
        df = _frame(default_city, layer)
        assert lo <= len(df) <= hi, layer
        g = df.geometry.values
        assert shapely.area(g).sum() == pytest.approx(box.area, rel=1e-9)
        assert shapely.union_all(g).area == pytest.approx(box.area, rel=1e-9)
        assert df["code"].is_unique
    comm = _frame(default_city, "communities")
    assert set(comm["street"]) == set(_frame(default_city, "streets")["name"])
    assert comm["name"].str.endswith("社区").all()
    pop = _frame(default_city, "population")
    assert (pop["population"] >= 0).all() and pop["population"].sum() > 10_000
    assert (pop["households"] <= pop["population"]).all()


def test_crs_and_location(small_city: sample.SampleCity) -> None:
    assert small_city.crs == "EPSG:4547"
    for path in small_city.layers.values():
        assert parse_crs(pyogrio.read_info(path)["crs"]).to_epsg() == 4547
    with rasterio.open(small_city.dem) as src:
        assert src.crs.to_epsg() == 4547
    minx, miny, maxx, maxy = small_city.bounds
    lon, lat = lonlat("EPSG:4547", np.array([(minx + maxx) / 2]), np.array([(miny + maxy) / 2]))
    assert lon[0] == pytest.approx(113.30, abs=0.01) and lat[0] == pytest.approx(40.09, abs=0.01)
    assert 1900 <= maxx - minx <= 2100 and 1900 <= maxy - miny <= 2100


def test_business_layers(default_city: sample.SampleCity) -> None:
    sensors = _frame(default_city, "sensors")
    assert len(sensors) >= 5 and sensors["sensor_id"].is_unique
    assert (sensors["warning_level_m"] > 1000).all() and (sensors["status"] == "超警戒").sum() >= 1
    river = _frame(default_city, "river").geometry.values[0]
    assert shapely.contains(river, sensors.geometry.values).all()
    assert pd.to_datetime(sensors["updated_at"]).notna().all()
    hazards = _frame(default_city, "hazards")
    assert {"加油站", "危化品仓库"} <= set(hazards["kind"]) and hazards["level"].notna().all()
    shelters = _frame(default_city, "shelters")
    assert len(shelters) >= 3 and (shelters["capacity"] > 0).all() and (shelters["area"] > 0).all()
    zones = _frame(default_city, "height_zones")
    assert zones["max_height_m"].min() == 12.0 and zones["name"].is_unique
    wall = _frame(default_city, "wall")
    assert len(wall) == 4


def test_dem_dsm(small_city: sample.SampleCity) -> None:
    with rasterio.open(small_city.dem) as d, rasterio.open(small_city.dsm) as s:
        assert d.profile["dtype"] == "float32" and d.nodata is not None and d.res == (2.0, 2.0)
        assert d.profile["compress"] == "deflate" and d.profile["tiled"]
        assert d.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "3"
        assert (s.transform, s.shape, s.crs) == (d.transform, d.shape, d.crs)
        dem, dsm, transform = d.read(1), s.read(1), d.transform
    assert (dsm >= dem).all()
    assert 5 < float(dem.max() - dem.min()) < 150  # hills and a valley, no spikes
    df = pyogrio.read_dataframe(small_city.buildings)
    ids = rasterio.features.rasterize(zip(df.geometry.values, range(1, len(df) + 1)), out_shape=dem.shape,
                                      transform=transform, fill=0, dtype="int32")
    inside = ids > 0
    diff = pd.Series((dsm - dem)[inside]).groupby(ids[inside] - 1)
    med, count = diff.median(), diff.size()
    height = df["height"].to_numpy()[med.index]
    ok = ~np.isnan(height) & (count.to_numpy() >= 12)
    rel = np.abs(med.to_numpy()[ok] - height[ok]) / height[ok]
    assert ok.sum() > 100
    assert np.median(rel) < 0.03 and (rel <= 0.10).mean() > 0.9
    # buildings without any height attribute still stand in the DSM
    none = df["height"].isna().to_numpy()[med.index] & (count.to_numpy() >= 12)
    assert (med.to_numpy()[none] > 2.5).all()


def test_ortho_is_a_cog_with_recognisable_roofs(small_city: sample.SampleCity) -> None:
    assert small_city.ortho is not None
    with rasterio.open(small_city.ortho) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.count == 3 and src.dtypes[0] == "uint8" and src.res == (0.5, 0.5)
        assert src.profile["compress"] in ("jpeg", "webp") and src.overviews(1)
        with rasterio.open(small_city.dem) as dem:
            assert tuple(src.bounds) == tuple(dem.bounds)
        df = pyogrio.read_dataframe(small_city.buildings)
        roads = pyogrio.read_dataframe(small_city.layers["roads"])

        def rgb(points: np.ndarray) -> np.ndarray:
            return np.array(list(src.sample(zip(shapely.get_x(points), shapely.get_y(points)))), float)

        def lanes_of(classes: list[str]) -> np.ndarray:  # a quarter width off the centre line (no markings)
            r = roads[roads["class"].isin(classes)]
            off = shapely.offset_curve(r.geometry.values, r["width"].to_numpy() / 4)
            return shapely.line_interpolate_point(off, np.linspace(0.1, 0.9, 9)[:, None], normalized=True).ravel()

        flat = rgb(shapely.point_on_surface(df.geometry.values[df["roof_type"] == "flat"]))
        tiles = df["name"].str.endswith("号院") & (df["roof_type"] != "flat")
        courtyard = rgb(shapely.point_on_surface(df.geometry.values[tiles]))
        asphalt, lanes = rgb(lanes_of(["主干路", "次干路"])), rgb(lanes_of(["街巷"]))
    assert flat.std(axis=0).mean() > 10  # varied roofs, not one flat colour
    assert np.abs(np.median(flat, axis=0) - np.median(asphalt, axis=0)).sum() > 150
    assert np.abs(np.median(courtyard, axis=0) - np.median(lanes, axis=0)).sum() > 60


def test_manifest_lists_every_file(small_city: sample.SampleCity) -> None:
    doc = json.loads(small_city.manifest.read_text(encoding="utf-8"))
    assert doc["generator"] == "cim.sample" and doc["crs"] == "EPSG:4547" and doc["n_buildings"] == SMALL
    listed = {e["path"] for e in doc["files"]}
    on_disk = {p.name for p in small_city.root.iterdir()} - {sample.MANIFEST}
    assert listed == on_disk
    kinds = {e["kind"] for e in doc["files"]}
    assert kinds == {"dem", "dsm", "ortho", "vector"}
    security = {}
    for e in doc["files"]:
        assert (small_city.root / e["path"]).is_file()
        assert re.fullmatch(r"[a-z][a-z0-9_]*", e["layer"])
        assert e["security"] in ("public", "internal", "confidential")
        assert e["title_zh"] and e["title_en"] and e["department"] and "/" in e["theme"]
        assert e["crs"] == "EPSG:4547" and len(e["bounds"]) == 4
        security[e["layer"]] = e["security"]
        if e["kind"] == "vector":
            assert e["feature_count"] == len(pyogrio.read_dataframe(small_city.root / e["path"]))
            assert all(re.fullmatch(r"[a-z][a-z0-9_]*", f) for f in e["fields"])
    assert security["hazards"] == "confidential" and security["sensors"] == "internal"
    themes = {e["layer"]: e["theme"] for e in doc["files"]}
    assert themes["communities"] == "时空基础/行政区划" and themes["height_zones"] == "规划管控/控高分区"
    assert themes["sensors"] == "物联感知/水位监测" and themes["shelters"] == "公共专题/应急避难"
    assert sample.load(small_city.root) == small_city


def test_refuses_existing_output_and_non_sample_folders(small_city: sample.SampleCity, tmp_path: Path) -> None:
    with pytest.raises(OutputExistsError, match=re.escape(str(small_city.root)) + ".*--overwrite"):
        sample.generate(small_city.root, buildings=SMALL)
    with pytest.raises(InputNotFoundError, match="not a sample city"):
        sample.load(tmp_path)
    assert not sample.is_complete(tmp_path)
    assert [p.name for p in small_city.root.parent.iterdir()] == ["city"]  # no temp folders left behind


def test_overwrite_replaces(tmp_path: Path) -> None:
    out = tmp_path / "c"
    sample.generate(out, buildings=40, rasters=False, layers=("buildings", "roads"))
    city = sample.generate(out, buildings=60, rasters=False, overwrite=True, layers=("buildings",))
    assert city.n_buildings == 60 and set(city.layers) == {"buildings"} and not (out / "roads.gpkg").exists()
    assert city.dem is None and city.ortho is None


def test_larger_city_grows_and_writes_geoparquet(tmp_path: Path) -> None:
    import geopandas as gpd

    city = sample.generate(tmp_path / "big", buildings=6000, rasters=False, layers=("buildings",),
                           footprint_format="parquet")
    assert city.buildings.suffix == ".parquet"
    gdf = gpd.read_parquet(city.buildings)
    assert len(gdf) == 6000 and gdf.crs.to_epsg() == 4547 and gdf["code"].is_unique
    assert city.bounds[2] - city.bounds[0] > 2000


def test_cli_json(tmp_path: Path) -> None:
    from cli import app

    result = CliRunner().invoke(app, ["sample", str(tmp_path / "c"), "--buildings", "50", "--no-rasters", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["n_buildings"] == 50 and doc["crs"] == "EPSG:4547" and doc["dem"] is None
    assert Path(doc["manifest"]).is_file()
    again = CliRunner().invoke(app, ["sample", str(tmp_path / "c"), "--buildings", "50", "--json"])
    assert isinstance(again.exception, OutputExistsError)


def test_committed_copy_is_current(default_city: sample.SampleCity) -> None:
    committed = sample.committed_sample_dir()
    if not (committed / sample.MANIFEST).is_file():
        pytest.fail(f"{committed} is missing; regenerate it (see docs/sample-city.md)")
    got = sample.content_digest(committed, missing_ok=True)
    want = sample.content_digest(default_city.root)
    assert set(want) - set(got) <= {"ortho.tif"}, "only the orthophoto may be left out of the committed copy"
    stale = sorted(k for k in got if got[k] != want[k])
    assert not stale, f"committed sample city is stale in {stale}; regenerate it (see docs/sample-city.md)"
    size = sum(p.stat().st_size for p in committed.iterdir())
    assert size <= 6_000_000


def test_default_sample_uses_committed_copy_or_cache(default_city: sample.SampleCity,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIM_CACHE", str(default_city.root.parent))
    assert sample.cache_dir() == default_city.root
    city = sample.default_sample()
    if sample.is_complete(sample.committed_sample_dir()):
        assert city.root == sample.committed_sample_dir()
    else:
        assert city.root == default_city.root  # found in the cache, not generated again
    assert city.ortho is not None and city.ortho.is_file() and city.n_buildings == sample.DEFAULT_BUILDINGS


def test_oblique_production_goes_into_the_city_and_its_manifest(small_city: sample.SampleCity,
                                                                tmp_path: Path) -> None:
    import shutil

    from cim.sources.contextcapture import find_tiles, read_metadata

    shutil.copytree(small_city.root, tmp_path / "city")
    city = sample.add_oblique(small_city.relocated(tmp_path / "city"), tile_size=1000, fmt="obj")
    assert city.oblique == tmp_path / "city" / "oblique" / "metadata.xml" and city.oblique.is_file()
    assert sample.load(city.root) == city and sample.is_complete(city.root)
    doc = json.loads(city.manifest.read_text(encoding="utf-8"))
    entry = next(e for e in doc["files"] if e["kind"] == "oblique")
    assert entry["path"] == "oblique/metadata.xml" and entry["format"] == "obj" and entry["tile_size"] == 1000
    assert entry["tiles"] == len(find_tiles(city.oblique.parent)) == 4
    assert entry["security"] == "internal" and entry["title_zh"] and "/" in entry["theme"]
    assert {e["path"].split("/")[0] for e in doc["files"]} == {p.name for p in city.root.iterdir()} - {
        sample.MANIFEST}
    assert read_metadata(city.oblique).crs.to_epsg() == 4547
    digest = sample.content_digest(city.root)
    assert "oblique/metadata.xml" in digest
    assert {k: v for k, v in digest.items() if k not in ("oblique/metadata.xml", sample.MANIFEST)} == {
        k: v for k, v in sample.content_digest(small_city.root).items() if k != sample.MANIFEST}
    again = sample.add_oblique(city, tile_size=1000, fmt="obj")  # replaces, never lists twice
    assert [e["kind"] for e in json.loads(again.manifest.read_text())["files"]].count("oblique") == 1


def test_oblique_needs_the_rasters(tmp_path: Path) -> None:
    from cim.errors import InputError

    with pytest.raises(InputError, match="--no-oblique"):
        sample.generate(tmp_path / "c", buildings=20, rasters=False, oblique=True)


@pytest.mark.parametrize(("flags", "oblique"), [([], True), (["--no-oblique"], False), (["--no-ortho"], False),
                                                (["--no-rasters"], False)])
def test_cli_writes_the_oblique_production_unless_told_not_to(small_city: sample.SampleCity, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch, flags: list[str],
                                                             oblique: bool) -> None:
    from cli import app

    calls = []
    monkeypatch.setattr(sample, "generate", lambda out, **kw: calls.append(kw) or small_city)
    result = CliRunner().invoke(app, ["sample", str(tmp_path / "c"), "--buildings", "50", *flags, "--json"])
    assert result.exit_code == 0, result.output
    assert calls[0]["oblique"] is oblique and calls[0]["buildings"] == 50
