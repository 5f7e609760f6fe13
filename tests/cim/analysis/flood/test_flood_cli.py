"""`cim analyze flood`: JSON output, exit codes, the layer it can store."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from typer.testing import CliRunner

from cim.cli import app, main


@pytest.fixture(scope="module")
def bumpy_dem(tmp_path_factory):
    """A 60 x 80 DEM (2 m, EPSG:4547) with two hollows."""
    yy, xx = np.mgrid[0:60, 0:80]
    z = 1040 + 0.02 * xx - 1.5 * np.exp(-((xx - 20) ** 2 + (yy - 30) ** 2) / 60) - np.exp(
        -((xx - 60) ** 2 + (yy - 25) ** 2) / 40)
    path = tmp_path_factory.mktemp("dem") / "dem.tif"
    with rasterio.open(path, "w", driver="GTiff", width=80, height=60, count=1, dtype="float32", crs="EPSG:4547",
                       transform=Affine(2.0, 0, 439300.0, 0, -2.0, 4440800.0)) as dst:
        dst.write(z.astype(np.float32), 1)
    return path


def test_dynamic_run_prints_the_report_as_json(bumpy_dem, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["analyze", "flood", str(out), "--dem", str(bumpy_dem), "--no-buildings",
                                   "--storm", "20", "--duration", "20", "--after", "10", "--interval", "10",
                                   "--drainage", "5", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["kind"] == "dynamic" and [s["t_s"] for s in doc["steps"]] == [600.0, 1200.0, 1800.0]
    assert doc["rain"]["source"].startswith("Chicago storm P=20 a, 20 min")
    assert doc["inputs"]["drainage_mm_h"] == 5.0 and doc["mass_balance"]["drainage_m3"] > 0
    assert doc["mass_balance"]["relative_error"] < 1e-9
    assert (out / "depth" / "001800.tif").exists() and (out / "inundation.gpkg").exists()


def test_sample_city_with_impacts(tmp_path):
    out = tmp_path / "sample"
    res = CliRunner().invoke(app, ["analyze", "flood", str(out), "--static", "--resolution", "16", "--impacts",
                                   "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["impacts"]["buildings_total"] == 2500 and doc["impacts"]["buildings_affected"] > 0
    assert (out / "impacts" / "buildings.csv").exists() and (out / "impacts" / "impacts.json").exists()


def test_static_run_into_the_layer_store(bumpy_dem, tmp_path):
    from layers import LayerStore

    store = tmp_path / "city.duckdb"
    args = ["analyze", "flood", str(tmp_path / "static"), "--dem", str(bumpy_dem), "--no-buildings", "--static",
            "--storm", "100", "--to-layer", "ponding", "--store", str(store), "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["kind"] == "static"
    res = CliRunner().invoke(app, args[:2] + [str(tmp_path / "static2")] + args[3:])  # a second version
    assert res.exit_code == 0, res.output
    with LayerStore(store, read_only=True) as s:
        info = s.info("ponding")
        assert info.theme.endswith("waterlogging") and info.version == 2 and info.feature_count > 0


@pytest.mark.parametrize("extra, code, message", [
    (["--peak-ratio", "1.5"], 2, "peak_ratio=1.5 is out of range"),
    (["--bbox", "1,2,3"], 2, "expected 4 comma-separated numbers"),
    (["--rain", "missing.csv"], 2, "does not exist"),
])
def test_bad_options_map_to_exit_codes(bumpy_dem, tmp_path, capsys, extra, code, message):
    with pytest.raises(SystemExit) as exc:
        main(["analyze", "flood", str(tmp_path / "out"), "--dem", str(bumpy_dem), "--no-buildings", *extra])
    assert exc.value.code == code
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_overwrite(bumpy_dem, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["analyze", "flood", str(tmp_path / "out"), "--dem", str(bumpy_dem), "--static"])
    assert exc.value.code == 5 and "--overwrite" in capsys.readouterr().err
