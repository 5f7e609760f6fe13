"""Coverage of inputs against the build extent: an orthophoto or DSM of another place is refused with both places
named, a partial one is measured (its valid data, not its rectangle), a DEM with holes counts only its valid area."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from cim.sources import crs as crsmod
from cim.sources.coverage import (
    CoverageError,
    bounds_coverage,
    build_extent,
    check_coverage,
    raster_coverage,
)

X0, Y0 = 440000.0, 4440000.0  # EPSG:4547, near 113.30E 40.09N; the DEM covers X0..X0+200, Y0..Y0+200


def _raster(path: Path, crs: str, west: float, north: float, res: float, shape: tuple[int, int], *,
            bands: int = 1, dtype: str = "float32", nodata: float | None = -9999.0,
            holes: np.ndarray | None = None) -> Path:
    data = np.full((bands, *shape), 100, dtype)
    if holes is not None:
        data[:, holes] = nodata if nodata is not None else np.nan
    with rasterio.open(path, "w", driver="GTiff", width=shape[1], height=shape[0], count=bands, dtype=dtype,
                       crs=crs, transform=from_origin(west, north, res, res), nodata=nodata) as dst:
        dst.write(data)
    return path


@pytest.fixture(scope="module")
def dem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _raster(tmp_path_factory.mktemp("cov") / "dem.tif", "EPSG:4547", X0, Y0 + 200, 2.0, (100, 100))


def _lonlat(x: float, y: float) -> tuple[float, float]:
    lon, lat = crsmod.transformer("EPSG:4547", "EPSG:4326").transform(x, y)
    return float(lon), float(lat)


def test_a_raster_in_another_crs_covering_all_half_or_none(dem: Path, tmp_path: Path) -> None:
    extent = build_extent(dem)
    w, n = _lonlat(X0 - 50, Y0 + 250)
    full = _raster(tmp_path / "full.tif", "EPSG:4326", w, n, 2e-5, (300, 300), bands=3, dtype="uint8", nodata=None)
    assert raster_coverage(full, extent)[0] == 1.0
    # the western half of the DEM, in UTM (another projection entirely)
    e_mid, _ = crsmod.transformer("EPSG:4547", "EPSG:32649").transform(X0 + 100, Y0 + 100)
    wu, nu = crsmod.transformer("EPSG:4547", "EPSG:32649").transform(X0 - 50, Y0 + 250)
    cols = int(round((e_mid - wu) / 1.0))
    half = _raster(tmp_path / "half.tif", "EPSG:32649", wu, nu, 1.0, (320, cols))
    frac, _ = raster_coverage(half, extent)
    assert frac == pytest.approx(0.5, abs=0.03)
    elsewhere = _raster(tmp_path / "far.tif", "EPSG:4326", 116.3, 39.95, 1e-4, (50, 50))  # Beijing
    frac, where = raster_coverage(elsewhere, extent)
    assert frac == 0.0 and 116.29 < where[0] < 116.31


def test_only_valid_data_counts(dem: Path, tmp_path: Path) -> None:
    extent = build_extent(dem)
    w, n = _lonlat(X0 - 50, Y0 + 250)
    # a DSM whose rows north of the DEM's middle are nodata: its rectangle covers all of the DEM, its data half
    _, mid = _lonlat(X0 + 100, Y0 + 100)
    holes = np.zeros((300, 300), bool)
    holes[:int(round((n - mid) / 2e-5))] = True
    dsm = _raster(tmp_path / "dsm.tif", "EPSG:4326", w, n, 2e-5, (300, 300), holes=holes)
    frac, _ = raster_coverage(dsm, extent)
    assert frac == pytest.approx(0.5, abs=0.03)
    # float NaN holes without a declared nodata count as holes too
    nan = _raster(tmp_path / "nan.tif", "EPSG:4326", w, n, 2e-5, (300, 300), nodata=None, holes=holes)
    assert raster_coverage(nan, extent)[0] == pytest.approx(frac, abs=0.02)


def test_check_coverage_refuses_none_and_describes_partial(dem: Path) -> None:
    extent = build_extent(dem)
    with pytest.raises(CoverageError, match=r"--ortho far\.tif does not overlap the DEM dem\.tif: it lies at lon "
                                            r"116\.3.*the DEM at lon 113\.2.*check that each file declares the CRS"):
        check_coverage("--ortho", "far.tif", 0.0, (116.3, 39.9, 116.31, 39.95), extent, measure="", partial="")
    note = check_coverage("--dsm", "/x/dsm.tif", 0.42, (0, 0, 1, 1), extent, measure="of the DEM's area",
                          partial="the rest takes default heights")
    assert note == "--dsm dsm.tif covers 42% of the DEM's area; the rest takes default heights"
    assert check_coverage("--dsm", "dsm.tif", 1.0, (0, 0, 1, 1), extent, measure="", partial="") is None


def test_a_rectangle_is_measured_against_the_dem_area(dem: Path) -> None:
    extent = build_extent(dem)
    assert bounds_coverage((X0 + 10, Y0 + 10, X0 + 190, Y0 + 190), crsmod.parse_crs("EPSG:4547"), extent) == 1.0
    w, s = _lonlat(X0 + 100, Y0 - 100)
    e, n = _lonlat(X0 + 300, Y0 + 100)
    frac = bounds_coverage((w, s, e, n), crsmod.parse_crs("EPSG:4326"), extent)
    assert frac == pytest.approx(0.25, abs=0.05)
