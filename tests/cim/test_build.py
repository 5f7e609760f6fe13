"""The level-2 build end to end: sample city in, a valid 3D Tiles 1.1 tileset out, loaded and picked in CesiumJS."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from PIL import Image
from typer.testing import CliRunner

from cim.build import build_city
from cim.errors import InputError, OutputExistsError
from cim.sources.crs import from_ecef, transformer
from tests.support.paths import SHARED_DATA
from tiles.check import check_tileset
from tiles.gltf import parse_glb, read_glb


@pytest.fixture(scope="module")
def small_city(tmp_path_factory):
    from cim.sample import generate

    return generate(tmp_path_factory.mktemp("sample") / "city", buildings=300, seed=3)


@pytest.fixture(scope="module")
def built(small_city, tmp_path_factory):
    out = tmp_path_factory.mktemp("build") / "model"
    report = build_city(out, dem=small_city.dem, ortho=small_city.ortho, buildings=small_city.buildings,
                        dsm=small_city.dsm)
    return out, report


def _contents(tileset: Path, parent: np.ndarray | None = None) -> list[tuple[Path, np.ndarray]]:
    """Every glb of a tileset (following external tilesets) with its absolute transform."""
    out: list[tuple[Path, np.ndarray]] = []

    def walk(tile: dict, base: Path, m: np.ndarray) -> None:
        if "transform" in tile:
            m = m @ np.asarray(tile["transform"], np.float64).reshape(4, 4).T
        uri = (tile.get("content") or {}).get("uri")
        if uri and uri.endswith(".json"):
            walk(json.loads((base / uri).read_text())["root"], (base / uri).parent, m)
        elif uri:
            out.append((base / uri, m))
        for child in tile.get("children") or []:
            walk(child, base, m)

    walk(json.loads(tileset.read_text())["root"], tileset.parent, np.eye(4) if parent is None else parent)
    return out


def test_report_counts_and_location(built, small_city):
    out, report = built
    assert report.tileset == out / "tileset.json" and report.tileset.is_file()
    b = report.buildings
    footprints = gpd.read_file(small_city.buildings)
    assert b["buildings"] + b["skipped"]["count"] == len(footprints)
    assert b["buildings"] >= 0.95 * len(footprints)
    assert b["height_sources"]["attribute"] > 0 and b["height_sources"]["floors"] > 0
    assert report.terrain["tiles"] > 1
    west, south, east, north = report.lonlat_bounds
    assert 113.2 < west < east < 113.45 and 40.0 < south < north < 40.2
    assert json.loads((out / "build.json").read_text())["buildings"]["buildings"] == b["buildings"]


def test_tileset_structure_passes_our_checks(built):
    out, _ = built
    report = check_tileset(out / "tileset.json")
    assert report.ok, report.to_dict()["problems"][:10]
    assert report.contents > 5 and report.vertices_checked > 10_000
    doc = json.loads((out / "tileset.json").read_text())
    assert doc["asset"]["version"] == "1.1"
    assert {c["content"]["uri"] for c in doc["root"]["children"]} == {"terrain/tileset.json", "buildings/tileset.json"}


def test_every_glb_passes_the_khronos_validator(built):
    from tests.support.gltf_validator import validate

    out, _ = built
    glbs = sorted(out.rglob("*.glb"))
    reports = validate(glbs)
    assert len(reports) == len(glbs) > 5
    bad = [r.describe() for r in reports if not r.ok]
    assert not bad, "\n".join(bad[:5])


def test_building_vertices_within_1cm_of_the_footprints(built, small_city):
    out, _ = built
    footprints = gpd.read_file(small_city.buildings)
    xy = shapely.get_coordinates(footprints.geometry.to_numpy())
    tree = shapely.STRtree(shapely.points(xy))
    rng = np.random.default_rng(0)
    checked = 0
    for glb_path, m in _contents(out / "buildings" / "tileset.json"):
        pos = read_glb(glb_path.read_bytes())["primitives"][0]["positions"]
        sample = pos[rng.choice(len(pos), size=min(len(pos), 2000), replace=False)]
        src = from_ecef("EPSG:4547", sample @ m[:3, :3].T + m[:3, 3])
        _, dist = tree.query_nearest(shapely.points(src[:, :2]), return_distance=True)
        assert dist.max() < 0.01, f"{glb_path.name}: {dist.max():.4f} m"
        checked += len(sample)
    assert checked > 1000


@pytest.mark.browser
def test_cesium_loads_the_city_and_picks_a_building(built, small_city, tmp_path):
    from tests.support.browser import CesiumClient

    out, _ = built
    footprints = gpd.read_file(small_city.buildings)
    tallest = footprints.loc[footprints["height"].idxmax()]
    c = tallest.geometry.representative_point()
    lon, lat = transformer("EPSG:4547", "EPSG:4326").transform(c.x, c.y)
    root_glb = out / "buildings" / "0.glb"
    props = read_glb(root_glb.read_bytes())["properties"]
    k = props["code"].index(tallest["code"])  # the tallest building is in the root tile (ADD refinement)
    roof = props["base_height"][k] + props["height"][k]
    with CesiumClient({"/city": out}) as client:
        info = client.load_tileset("/city/tileset.json")
        assert info.failures == [] and info.errors == []
        shot = client.screenshot(tmp_path / "city.png")
        rgb = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
        h, w, _ = rgb.shape
        centre = rgb[h // 3: 2 * h // 3, w // 3: 2 * w // 3].reshape(-1, 3)
        globe = np.array([47, 79, 79])  # the harness's empty-globe colour (DARKSLATEGRAY)
        # the textured terrain covers the centre of the view: almost no pixel shows the bare globe
        assert np.mean(np.abs(centre - globe).sum(axis=1) > 12) > 0.95
        assert centre.std(axis=0).mean() > 15  # orthophoto and buildings, not a flat fill
        picked = client.pick_at(lon, lat, roof, range_m=250)
        assert client.off_host_requests() == []
        assert not client.log.console_errors and not client.log.page_errors
    assert picked is not None, "no building feature under the tallest roof"
    assert picked["code"] == tallest["code"]
    assert picked["height"] == pytest.approx(tallest["height"], abs=0.01)
    assert picked["name"] == tallest["name"]
    # category columns are ENUM properties (tiles.gltf): CesiumJS gives back their names
    meta = parse_glb(root_glb.read_bytes())[0]["extensions"]["EXT_structural_metadata"]["schema"]
    assert meta["classes"]["building"]["properties"]["use"]["type"] == "ENUM"
    assert picked["use"] == tallest["use"] and picked["community"] == tallest["community"]


def _cesium_centre(client, tmp_path: Path, name: str) -> np.ndarray:
    """(n, 3) int16 RGB of the middle ninth of CesiumJS's view of its loaded tileset."""
    rgb = np.asarray(Image.open(client.screenshot(tmp_path / f"{name}.png")).convert("RGB"), dtype=np.int16)
    h, w, _ = rgb.shape
    return rgb[h // 3: 2 * h // 3, w // 3: 2 * w // 3].reshape(-1, 3)


@pytest.mark.browser
@pytest.mark.slow
def test_cesium_draws_draco_and_ktx2_tiles_as_it_draws_the_default(built, small_city, tmp_path):
    """CesiumJS (its own Draco and Basis decoders) draws a `--compression draco --textures ktx2` build of the city as
    it draws the default (meshopt, WebP) build: the same view, the orthophoto's colours on the terrain, and picks."""
    from tests.support.browser import CesiumClient
    from tiles.compression import GlbOptions
    from tiles.textures import TextureEncoderMissing, basisu_path

    try:
        basisu_path()
    except TextureEncoderMissing as exc:
        pytest.skip(str(exc))
    default, _ = built
    out = tmp_path / "draco-ktx2"
    build_city(out, dem=small_city.dem, ortho=small_city.ortho, buildings=small_city.buildings,
               dsm=small_city.dsm, glb=GlbOptions(compression="draco", textures="ktx2"))
    used = {part: set() for part in ("terrain", "buildings")}
    for part, found in used.items():
        for g in (out / part).rglob("*.glb"):
            found.update(parse_glb(g.read_bytes())[0].get("extensionsUsed", []))
    assert "KHR_texture_basisu" in used["terrain"] and "KHR_draco_mesh_compression" in used["buildings"]
    footprints = gpd.read_file(small_city.buildings)
    tallest = footprints.loc[footprints["height"].idxmax()]
    c = tallest.geometry.representative_point()
    lon, lat = transformer("EPSG:4547", "EPSG:4326").transform(c.x, c.y)
    props = read_glb((out / "buildings" / "0.glb").read_bytes())["properties"]
    k = props["code"].index(tallest["code"])
    roof = props["base_height"][k] + props["height"][k]
    centres = {}
    for name, model in (("default", default), ("draco-ktx2", out)):
        with CesiumClient({"/city": model}) as client:
            info = client.load_tileset("/city/tileset.json")
            assert info.failures == [] and info.errors == [], name
            centres[name] = _cesium_centre(client, tmp_path, name)
            picked = client.pick_at(lon, lat, roof, range_m=250) if name == "draco-ktx2" else None
            assert client.off_host_requests() == []
            assert not client.log.console_errors and not client.log.page_errors
    assert picked is not None and picked["code"] == tallest["code"] and picked["use"] == tallest["use"]
    ktx2, webp = centres["draco-ktx2"].mean(axis=0), centres["default"].mean(axis=0)
    # ETC1S and WebP differ by a few levels (0.2 seen); the terrain without its texture was 70-90 levels away
    assert np.abs(ktx2 - webp).max() < 10, (ktx2, webp)
    assert centres["draco-ktx2"].std(axis=0).mean() > 15


def test_cli_build_json_and_refuses_to_overwrite(small_city, tmp_path, capsys):
    from cli import app, main

    out = tmp_path / "cli-model"
    args = ["build", str(out), "--dem", str(small_city.dem), "--buildings", str(small_city.buildings), "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["buildings"]["buildings"] > 250 and doc["tileset"].endswith("tileset.json")
    res = CliRunner().invoke(app, args)
    assert res.exit_code != 0 and isinstance(res.exception, OutputExistsError)
    assert "--overwrite" in str(res.exception)
    with pytest.raises(SystemExit) as exit_info:  # the console script maps the error to its exit code
        main(args)
    assert exit_info.value.code == 5
    assert "pass --overwrite" in capsys.readouterr().err


def test_failed_build_leaves_nothing_behind(small_city, tmp_path):
    out = tmp_path / "model"
    with pytest.raises(InputError, match="--ortho .*no such file"):
        build_city(out, dem=small_city.dem, ortho=tmp_path / "missing.tif", buildings=small_city.buildings)
    assert list(tmp_path.iterdir()) == []


def test_a_temp_file_a_killed_task_left_is_not_in_the_output(small_city, tmp_path):
    """A worker killed while writing a tile leaves its temporary file (`.<name>.<random>`) in the work folder and the
    tile is written again elsewhere: the finished build has no such file."""
    out = tmp_path / "model"

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "lod1" and done == 1:
            (tmp_path / ".model.building" / "buildings" / ".0.glb.x1y2z3").write_bytes(b"half a tile")

    build_city(out, dem=small_city.dem, buildings=small_city.buildings, scheduler="synchronous", progress=progress)
    assert (out / "buildings" / "0.glb").is_file() and not [p for p in out.rglob(".*")]


@pytest.mark.realdata
def test_delft_real_data_builds_end_to_end(tmp_path):
    from tests.support.gltf_validator import validate

    shared = SHARED_DATA
    if not shared.is_dir():
        pytest.skip(f"real test data not found at {shared}")
    report = build_city(tmp_path / "delft", dem=shared / "dem/delft_ahn3_dtm_0.5m.tif",
                        dsm=shared / "dem/delft_ahn3_dsm_0.5m.tif",
                        buildings=shared / "buildings/delft_bgt/bgt_pand.sqlite")
    assert report.crs == "Amersfoort / RD New"
    assert report.buildings["buildings"] == 160 and report.buildings["height_sources"]["dsm"] >= 150
    west, south, east, north = report.lonlat_bounds
    assert 4.35 < west < east < 4.37 and 52.00 < south < north < 52.02
    check = check_tileset(tmp_path / "delft" / "tileset.json")
    assert check.ok, check.to_dict()["problems"][:5]
    reports = validate(sorted((tmp_path / "delft").rglob("*.glb")))
    assert reports and all(r.ok for r in reports), "\n".join(r.describe() for r in reports if not r.ok)
