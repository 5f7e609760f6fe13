"""`cim build` measures every input against the DEM: an orthophoto, DSM or footprint file of another place is refused
(exit code 2, both places named), a partial one is built with a `warning:` line giving the covered share, and the
report's `coverage` holds the shares."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from shapely.geometry import box

from cim.build import build_city
from cim.cli import main
from cim.sources import crs as crsmod
from cim.sources.coverage import CoverageError

X0, Y0 = 440000.0, 4440000.0  # EPSG:4547; the DEM covers X0..X0+200, Y0..Y0+200


def _raster(path: Path, west: float, north: float, cols: int, rows: int, *, bands: int = 1,
            dtype: str = "float32", value: float = 1000.0) -> Path:
    nodata = -9999.0 if dtype == "float32" else None
    with rasterio.open(path, "w", driver="GTiff", width=cols, height=rows, count=bands, dtype=dtype,
                       crs="EPSG:4547", transform=from_origin(west, north, 2.0, 2.0), nodata=nodata) as dst:
        dst.write(np.full((bands, rows, cols), value, dtype))
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("coverage")
    fp = d / "fp.geojson"
    gpd.GeoDataFrame({"code": ["a", "b"], "height": [10.0, 12.0]},
                     geometry=[box(X0 + 20, Y0 + 20, X0 + 40, Y0 + 40), box(X0 + 150, Y0 + 150, X0 + 170, Y0 + 170)],
                     crs="EPSG:4547").to_crs(4326).to_file(fp, driver="GeoJSON")
    far = d / "far.geojson"
    gpd.GeoDataFrame({"code": ["x"]}, geometry=[box(116.3, 39.9, 116.3003, 39.9003)], crs="EPSG:4326").to_file(
        far, driver="GeoJSON")
    return {
        "dem": _raster(d / "dem.tif", X0, Y0 + 200, 100, 100),
        "ortho_far": _raster(d / "ortho_far.tif", X0 + 5000, Y0 + 200, 100, 100, bands=3, dtype="uint8", value=90),
        "ortho_half": _raster(d / "ortho_half.tif", X0, Y0 + 200, 50, 100, bands=3, dtype="uint8", value=90),
        "dsm_part": _raster(d / "dsm_part.tif", X0, Y0 + 200, 100, 25, value=1012.0),
        "fp": fp, "far": far,
    }


def test_inputs_of_another_place_are_refused(inputs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(CoverageError, match=r"--ortho .*ortho_far\.tif does not overlap the DEM dem\.tif: it lies at "
                                            r"lon 113\.35.*the DEM at lon 113\.29"):
        build_city(tmp_path / "o", dem=inputs["dem"], ortho=inputs["ortho_far"])
    with pytest.raises(CoverageError, match=r"--buildings .*far\.geojson does not overlap the DEM dem\.tif: it lies at "
                                            r"lon 116\.3"):
        build_city(tmp_path / "o", dem=inputs["dem"], buildings=inputs["far"])
    assert not (tmp_path / "o").exists()  # refused before anything is written


def test_partial_inputs_build_with_a_warning_and_their_share(inputs: dict[str, Path], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    report = build_city(tmp_path / "o", dem=inputs["dem"], ortho=inputs["ortho_half"], dsm=inputs["dsm_part"],
                        buildings=inputs["fp"])
    assert report.coverage["ortho"] == pytest.approx(0.5, abs=0.02)
    assert report.coverage["dsm"] == pytest.approx(0.25, abs=0.02)
    assert report.coverage["buildings"] == 1.0
    assert any(w.startswith("--ortho ortho_half.tif covers 50% of the DEM's area") for w in report.warnings)
    assert any(w.startswith("--dsm dsm_part.tif covers 25% of the DEM's area") for w in report.warnings)
    f = report.buildings["footprints"]
    assert f["source_crs"] == "WGS 84" and f["working_crs"] == crsmod.parse_crs("EPSG:4547").name
    # the command line: one readable warning line each, exit 0; an input of another place: exit 2, one error line
    with pytest.raises(SystemExit) as exc:
        main(["build", str(tmp_path / "c"), "--dem", str(inputs["dem"]), "--ortho", str(inputs["ortho_half"])])
    assert exc.value.code in (0, None)
    out = capsys.readouterr()
    assert "warning: --ortho ortho_half.tif covers 50%" in " ".join((out.out + out.err).split())
    with pytest.raises(SystemExit) as exc:
        main(["build", str(tmp_path / "d"), "--dem", str(inputs["dem"]), "--ortho", str(inputs["ortho_far"]),
              "--json"])
    assert exc.value.code == 2
    out = capsys.readouterr()
    assert "does not overlap the DEM" in out.err
    # --json: one JSON document on stdout on failure too
    doc = json.loads(out.out)
    assert doc["type"] == "CoverageError" and doc["exit_code"] == 2 and "does not overlap" in doc["error"]
    built = json.loads((tmp_path / "o" / "build.json").read_text())
    assert built["coverage"]["ortho"] == report.coverage["ortho"]


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_outputs_get_the_users_umask(inputs: dict[str, Path], tmp_path: Path, mask: int) -> None:
    """Every file and folder of a build has the mode the umask gives new ones (not tempfile's 0600 / 0700), so a
    web server or a sync agent running as another user reads what the user meant it to."""
    import os
    import stat

    old = os.umask(mask)
    try:
        build_city(tmp_path / "o", dem=inputs["dem"], buildings=inputs["fp"])
    finally:
        os.umask(old)
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in [tmp_path / "o", *(tmp_path / "o").rglob("*")]}
    assert len(modes) > 5
    for p, mode in modes.items():
        assert mode == (0o777 if p.is_dir() else 0o666) & ~mask, (p, oct(mode))


def test_a_missing_input_file_is_exit_code_3_as_in_every_command(inputs: dict[str, Path], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["build", str(tmp_path / "o"), "--dem", str(inputs["dem"]), "--dsm", str(tmp_path / "nope.tif"),
              "--json"])
    assert exc.value.code == 3  # docs/cli.md: an input file does not exist
    assert json.loads(capsys.readouterr().out)["type"] == "InputNotFoundError"
