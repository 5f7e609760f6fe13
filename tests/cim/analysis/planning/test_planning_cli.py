"""`cim analyze ...`: each command against exact output, its files, and its exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin
from typer.testing import CliRunner

from cim.cli import app, main
from cim.errors import OutputExistsError
from cim.sources.crs import transformer

X0, Y0 = transformer("EPSG:4326", "EPSG:4547").transform(114.0, 40.09)


def _ll(dx: float, dy: float) -> str:
    lon, lat = transformer("EPSG:4547", "EPSG:4326").transform(X0 + dx, Y0 + dy)
    return f"{lon:.7f},{lat:.7f}"


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-town")
    boxes = {"home": (-5, 0, 5, 8), "tower": (-10, -60, 10, -40)}
    gpd.GeoDataFrame({"code": list(boxes), "name": ["家", "塔"], "use": ["住宅", "商业"], "height": [6.0, 40.0],
                      "floors": [2, 12]},
                     geometry=[shapely.box(X0 + a, Y0 + b, X0 + c, Y0 + d) for a, b, c, d in boxes.values()],
                     crs="EPSG:4547").to_file(root / "town.gpkg")
    with rasterio.open(root / "dem.tif", "w", driver="GTiff", width=150, height=150, count=1, dtype="float32",
                       crs="EPSG:4547", transform=from_origin(X0 - 150, Y0 + 150, 2.0, 2.0)) as dst:
        dst.write(np.full((1, 150, 150), 1000.0, np.float32))
    gpd.GeoDataFrame({"zone_code": ["KG01"], "name": ["一般"], "max_height_m": [24.0]},
                     geometry=[shapely.box(X0 - 150, Y0 - 150, X0 + 150, Y0 + 150)], crs="EPSG:4547").to_file(
        root / "zones.gpkg")
    gpd.GeoDataFrame({"name": ["新楼"], "height": [30.0]}, geometry=[shapely.box(X0 + 30, Y0 - 30, X0 + 50, Y0 - 20)],
                     crs="EPSG:4547").to_crs("EPSG:4326").to_file(root / "scheme.geojson")
    gpd.GeoDataFrame({"height": []}, geometry=[], crs="EPSG:4326").to_file(root / "empty.geojson")
    return {"root": root, "town": root / "town.gpkg", "dem": root / "dem.tif", "zones": root / "zones.gpkg",
            "scheme": root / "scheme.geojson", "empty": root / "empty.geojson"}


def _run(args: list[str]) -> object:
    res = CliRunner().invoke(app, ["analyze", *args])
    return res


def _city(t: dict[str, Path]) -> list[str]:
    return ["--buildings", str(t["town"]), "--dem", str(t["dem"])]


def test_height_control_command(town: dict[str, Path]) -> None:
    out = town["root"] / "kg.geojson"
    res = _run(["height-control", *_city(town), "--zones", str(town["zones"]), "--scheme", str(town["scheme"]),
                "--out", str(out)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == "2 violations by 2 of 3 buildings (largest excess 16.0 m)"
    assert lines[1] == "  tower 塔: 40.0 m in KG01 一般 (limit 24 m, +16.0 m)"
    assert lines[2] == "  scheme:新楼 新楼: 30.0 m in KG01 一般 (limit 24 m, +6.0 m)"
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert {f["properties"]["id"] for f in doc["features"]} == {"tower", "scheme:新楼"}
    res = _run(["height-control", *_city(town), "--zones", str(town["zones"]), "--out", str(out)])
    assert res.exit_code != 0 and "--overwrite" in str(res.exception)
    store = town["root"] / "city.duckdb"
    res = _run(["height-control", *_city(town), "--zones", str(town["zones"]), "--json", "--to-layer", "kg",
                "--store", str(store)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["summary"]["violations"] == 1
    from layers import LayerStore

    with LayerStore(store, read_only=True) as s:
        assert s.info("kg").feature_count == 2


def test_sunlight_shadow_skyline_viewshed_commands(town: dict[str, Path]) -> None:
    res = _run(["sunlight", *_city(town), "--year", "2024", "--spacing", "10", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["summary"]["buildings"] == 1 and doc["days"]["dahan"]["date"] == "2024-01-20"
    assert doc["days"]["dahan"]["requirement"] == "大寒日 >= 2 h within 08:00-16:00 true solar time"
    raster = town["root"] / "shadow.tif"
    res = _run(["shadow", *_city(town), "--at", "10", "--of", "tower", "--cell", "4", "--raster", str(raster)])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("2001-01-20 10 h: sun at ") and raster.exists()
    written = raster.read_bytes()
    # an existing --raster is refused before the analysis runs: ahead of the analysis' own refusal of these inputs
    for cmd in (["shadow", "--at", "10", "--of", "nope"], ["viewshed", "--observer", _ll(90_000, 0)],
                ["sunlight", "--ids", "nope"]):
        res = _run([*cmd, *_city(town), "--raster", str(raster)])
        assert isinstance(res.exception, OutputExistsError), (cmd, res.exception)
        assert "--overwrite" in str(res.exception)
    assert raster.read_bytes() == written
    res = _run(["skyline", *_city(town), "--viewpoint", _ll(40, -50), "--step", "1"])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[1].startswith("  tower 塔: ")  # the widest building on it first
    res = _run(["viewshed", *_city(town), "--observer", _ll(0, 20), "--radius", "100", "--cell", "4", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["summary"]["visible_buildings"] == 2


def test_compare_command_reports_the_cause(town: dict[str, Path]) -> None:
    slab = town["root"] / "slab.geojson"
    gpd.GeoDataFrame({"name": ["板楼"], "height": [20.0]}, geometry=[shapely.box(X0 - 60, Y0 - 35, X0 + 60, Y0 - 25)],
                     crs="EPSG:4547").to_file(slab)
    res = _run(["compare", *_city(town), "--scheme", str(slab), "--zones", str(town["zones"]), "--year", "2024",
                "--spacing", "10"])
    assert res.exit_code == 0, res.output
    assert "causes {'scheme:板楼': " in res.stdout and "height control: 0 new violations" in res.stdout


@pytest.mark.parametrize(("args", "code", "message"), [
    (["viewshed", "--observer", "120.0,30.0"], 2, "is outside the model"),
    (["compare", "--scheme", "EMPTY"], 2, "holds no footprint"),
    (["sunlight", "--year", "7000"], 2, "year 7000 is outside"),
    (["height-control", "--zones", "/no/such/zones.gpkg"], 3, "does not exist"),
])
def test_bad_input_exit_codes(town: dict[str, Path], capsys: pytest.CaptureFixture[str], args: list[str],
                              code: int, message: str) -> None:
    args = [str(town["empty"]) if a == "EMPTY" else a for a in args]
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", *args[:1], *_city(town), *args[1:]])
    assert exit_info.value.code == code
    assert message in " ".join(capsys.readouterr().err.split())  # rich wraps long lines
