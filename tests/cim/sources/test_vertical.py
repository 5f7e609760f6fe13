"""Vertical datums against pyproj's own vertical transformation, and applied alike to terrain and buildings."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

from cim.errors import InputError, InputNotFoundError
from cim.sources.crs import transformer
from cim.sources.vertical import EGM96_GRID, VerticalDatum
from tiles.compression import GlbOptions
from tiles.gltf import read_glb
from tiles.tileset import Tileset

# Datong, Zhongshan, Urumqi, Lhasa, Harbin, Shanghai: EGM96 undulations from -64 m to +14 m
PLACES = np.array([[113.30, 40.09], [113.38, 22.51], [87.62, 43.83], [91.11, 29.65], [126.63, 45.75],
                   [121.47, 31.23]])


def _egm96() -> VerticalDatum:
    if not EGM96_GRID.is_file():
        pytest.skip(f"{EGM96_GRID} is missing: install Debian's proj-data (bin/setup does)")
    return VerticalDatum.parse("egm96")


@pytest.fixture(scope="module")
def pyproj_egm96() -> pyproj.Transformer:
    """pyproj's EPSG path: WGS 84 + EGM96 height (EPSG:4326+5773) -> WGS 84 3D (EPSG:4979), grid from proj-data."""
    _egm96()
    pyproj.datadir.append_data_dir(str(EGM96_GRID.parent))
    t = pyproj.Transformer.from_crs("EPSG:4326+5773", "EPSG:4979", always_xy=True)
    _, _, h = t.transform(113.3, 40.09, 0.0)
    if not np.isfinite(h) or h == 0.0:
        pytest.skip("pyproj cannot find the EGM96 grid through its EPSG definitions")
    return t


def test_undulation_matches_pyproj_across_china(pyproj_egm96):
    datum = _egm96()
    n = datum.undulation(PLACES[:, 0], PLACES[:, 1])
    _, _, ref = pyproj_egm96.transform(PLACES[:, 0], PLACES[:, 1], np.zeros(len(PLACES)))
    np.testing.assert_allclose(n, ref, rtol=0, atol=1e-6)
    assert n.min() < -60 and n.max() > 10  # a city floats or sinks by tens of metres without the datum
    assert VerticalDatum.parse("ellipsoidal").undulation(PLACES[:, 0], PLACES[:, 1]).tolist() == [0.0] * 6


def test_ecef_shift_matches_pyproj_compound_to_geocentric(pyproj_egm96):
    datum = _egm96()
    heights = np.array([1050.0, 3.5, 800.0, 3650.0, 150.0, 4.0])
    # ours: normal heights taken as ellipsoidal, to ECEF, then moved by the datum
    as_ellipsoidal = transformer("EPSG:4979", "EPSG:4978").transform(PLACES[:, 0], PLACES[:, 1], heights)
    ours = datum.apply_ecef(np.column_stack(as_ellipsoidal))
    ref = pyproj.Transformer.from_crs("EPSG:4326+5773", "EPSG:4978", always_xy=True).transform(
        PLACES[:, 0], PLACES[:, 1], heights)
    assert np.abs(ours - np.column_stack(ref)).max() < 1e-3


def test_user_grid_and_bad_values(tmp_path):
    grid = tmp_path / "quasi_geoid.tif"
    lon0, lat0, res = 112.0, 41.0, 0.5
    yy, xx = np.mgrid[0:8, 0:8]
    values = (-20.0 + 0.5 * xx + 0.25 * yy).astype(np.float32)  # N rises eastwards and southwards
    with rasterio.open(grid, "w", driver="GTiff", width=8, height=8, count=1, dtype="float32", crs="EPSG:4326",
                       transform=from_origin(lon0, lat0, res, res)) as dst:
        dst.write(values[None])
    datum = VerticalDatum.parse(grid)
    # pixel centres carry their own value; PROJ interpolates bilinearly between them
    lon = lon0 + res * (np.array([2, 5]) + 0.5)
    lat = lat0 - res * (np.array([3, 1]) + 0.5)
    np.testing.assert_allclose(datum.undulation(lon, lat), [-20 + 1 + 0.75, -20 + 2.5 + 0.25], atol=1e-4)
    mid = datum.undulation(np.array([lon0 + res * 3.0]), np.array([lat0 - res * 2.5]))
    assert mid[0] == pytest.approx(-20 + 0.5 * 2.5 + 0.25 * 2, abs=1e-4)
    with pytest.raises(InputError, match="outside the grid"):
        datum.undulation(np.array([100.0]), np.array([30.0]))
    with pytest.raises(InputNotFoundError, match="no such geoid grid"):
        VerticalDatum.parse(tmp_path / "missing.gtx")
    with pytest.raises(InputError, match="choose ellipsoidal, egm96"):
        VerticalDatum.parse("NAVD88")


def _small_city(tmp_path):
    x0, y0 = transformer("EPSG:4326", "EPSG:4547").transform(113.30, 40.09)
    yy, xx = np.mgrid[0:80, 0:80]
    dem = tmp_path / "dem.tif"
    with rasterio.open(dem, "w", driver="GTiff", width=80, height=80, count=1, dtype="float32", crs="EPSG:4547",
                       transform=from_origin(x0, y0, 2.0, 2.0)) as dst:
        dst.write((1050.0 + 0.05 * xx + 0.02 * yy).astype(np.float32)[None])
    boxes = [shapely.box(x0 + 20 + 30 * i, y0 - 60 - 20 * i, x0 + 35 + 30 * i, y0 - 45 - 20 * i) for i in range(4)]
    fp = tmp_path / "fp.gpkg"
    gpd.GeoDataFrame({"code": [f"B{i}" for i in range(4)], "height": [10.0, 20.0, 15.0, 30.0]}, geometry=boxes,
                     crs="EPSG:4547").to_file(fp)
    return dem, fp


def _geodetic_vertices(model, layer):
    """Every vertex of a layer as lon, lat, h (EPSG:4979), tile by tile in a stable order."""
    from cim.sources.crs import from_ecef

    out = []
    doc = Tileset.read(model / layer / "tileset.json")
    for tile, _ in doc.root.walk():
        if tile.content is None:
            continue
        m = np.asarray(tile.transform, float).reshape(4, 4).T  # a single-level layer: the tile's own transform
        for p in read_glb((model / layer / tile.content.uri).read_bytes())["primitives"]:
            out.append(from_ecef("EPSG:4979", p["positions"] @ m[:3, :3].T + m[:3, 3]))
    return np.vstack(out)


def test_terrain_and_buildings_shift_by_the_undulation(tmp_path):
    from cim.build import build_city

    datum = _egm96()
    dem, fp = _small_city(tmp_path)
    plain = GlbOptions(compression="none")
    build_city(tmp_path / "ell", dem=dem, buildings=fp, glb=plain)
    build_city(tmp_path / "egm", dem=dem, buildings=fp, glb=plain, vertical_datum="egm96")
    root = Tileset.read(tmp_path / "egm" / "tileset.json")
    assert root.extras["cim"]["verticalDatum"] == "egm96"
    for layer in ("terrain", "buildings"):
        ell, egm = _geodetic_vertices(tmp_path / "ell", layer), _geodetic_vertices(tmp_path / "egm", layer)
        assert ell.shape == egm.shape and len(ell) > 50
        assert np.abs(egm[:, :2] - ell[:, :2]).max() < 1e-7  # degrees: only heights move
        n = datum.undulation(ell[:, 0], ell[:, 1])
        assert n.mean() == pytest.approx(-15.4, abs=0.5)
        np.testing.assert_allclose(egm[:, 2] - ell[:, 2], n, rtol=0, atol=1e-3)
