"""Footprints in any CRS: GeoJSON in WGS 84 (RFC 7946) and CGCS2000 (EPSG:4490) footprints over projected and
geographic DEMs are put in the build's working CRS and land within 1 cm of where their file puts them; the heights
come from real-world field names, and the report says which field gave them."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from shapely.geometry import Polygon, box

from cim.models.footprints import BuildingOptions, prepare_footprints
from cim.models.lod1 import build_buildings
from cim.sources import crs as crsmod
from tiles.check import check_tileset
from tiles.gltf import read_glb
from tiles.tileset import Tileset, rebase_uris, relative_transforms

X0, Y0 = 440000.0, 4440000.0  # EPSG:4547 (CGCS2000 / 3-degree GK CM 114E), near 113.30E 40.09N
# odd shapes away from the grid, so that no vertex is where a rounding would put it
FOOTPRINTS = [
    Polygon([(X0 + 10.37, Y0 + 12.91), (X0 + 31.02, Y0 + 11.44), (X0 + 32.65, Y0 + 27.18), (X0 + 11.9, Y0 + 28.6)]),
    box(X0 + 52.123, Y0 + 48.771, X0 + 81.456, Y0 + 91.002),
    Polygon([(X0 + 110.5, Y0 + 60.25), (X0 + 150.75, Y0 + 60.25), (X0 + 150.75, Y0 + 70.5), (X0 + 125.25, Y0 + 70.5),
             (X0 + 125.25, Y0 + 95.125), (X0 + 110.5, Y0 + 95.125)]),
]
DEMS = {
    "projected": "EPSG:4547",
    "geographic": "EPSG:4490",
    "utm": "EPSG:32649",  # a projected DEM in another projection than any the footprints suggest
}


def _dem(path: Path, crs: str) -> Path:
    """A DEM over the footprints in `crs`: 1000 m plus a slope, covering X0-20..X0+220, Y0-20..Y0+220."""
    t = crsmod.transformer("EPSG:4547", crs)
    west, north = t.transform(X0 - 20, Y0 + 220)
    east, south = t.transform(X0 + 220, Y0 - 20)
    rows = cols = 120
    res_x, res_y = (east - west) / cols, (north - south) / rows
    r, c = np.mgrid[0:rows, 0:cols]
    z = (1000.0 + 0.1 * c + 0.05 * r).astype("float32")
    with rasterio.open(path, "w", driver="GTiff", width=cols, height=rows, count=1, dtype="float32", crs=crs,
                       transform=rasterio.transform.from_origin(west, north, res_x, res_y), nodata=-9999) as dst:
        dst.write(z, 1)
    return path


def _footprints(path: Path, epsg: int, columns: dict) -> Path:
    gdf = gpd.GeoDataFrame(columns, geometry=FOOTPRINTS, crs="EPSG:4547").to_crs(epsg)
    gdf.to_file(path, driver="GeoJSON" if path.suffix == ".geojson" else "GPKG")
    return path


def _vertices_ecef(out: Path, root) -> tuple[np.ndarray, dict]:
    """Every vertex in ECEF (the builder's root holds absolute transforms) and the metadata of the last tile; the
    tileset is written beside the tiles for `check_tileset`."""
    pts, props = [], {}
    for tile in _walk(root):
        if tile.content is None:
            continue
        m = np.asarray(tile.transform, np.float64).reshape(4, 4).T
        glb = read_glb((out / tile.content.uri).read_bytes())
        pts += [p["positions"] @ m[:3, :3].T + m[:3, 3] for p in glb["primitives"]]
        props = glb["properties"]
    Tileset(geometric_error=100, root=relative_transforms(rebase_uris(root, "buildings/"))).write(
        out / "buildings" / "tileset.json")
    return np.vstack(pts), props


def _walk(tile):
    yield tile
    for child in tile.children or []:
        yield from _walk(child)


@pytest.mark.parametrize("dem_kind", list(DEMS))
@pytest.mark.parametrize(("epsg", "suffix"), [(4326, ".geojson"), (4490, ".gpkg")])
def test_geographic_footprints_land_within_1cm_over_any_dem(tmp_path: Path, dem_kind: str, epsg: int,
                                                             suffix: str) -> None:
    dem = _dem(tmp_path / "dem.tif", DEMS[dem_kind])
    fp = _footprints(tmp_path / f"fp{suffix}", epsg, {"code": ["a", "b", "c"], "HEIGHT": [12.0, 20.5, 31.0]})
    res = build_buildings(fp, dem, tmp_path / "out")
    assert res.buildings == 3 and res.skipped.count == 0
    f = res.footprints
    assert f["reprojected"] and f["height_field"] == "HEIGHT" and f["on_dem"] == 1.0
    if dem_kind == "geographic":  # a local projected CRS chosen from the data: CGCS2000 Gauss-Krüger for China
        assert res.crs.equals(crsmod.parse_crs("EPSG:4547"))
    else:  # the DEM's own projected CRS
        assert res.crs.equals(crsmod.parse_crs(DEMS[dem_kind]))
    ecef, props = _vertices_ecef(tmp_path / "out", res.root)
    assert props["height_source"] == ["attribute"] * 3
    # every output vertex is a vertex of the file, to the centimetre: the file's coordinates (as written, in
    # degrees) and the output both taken to EPSG:4547 by pyproj, independently of the builder's working CRS
    src = gpd.read_file(fp)
    xy = shapely.get_coordinates(src.geometry.to_numpy())
    fx, fy = crsmod.transformer(src.crs, "EPSG:4547").transform(xy[:, 0], xy[:, 1])
    out = crsmod.from_ecef("EPSG:4547", ecef)
    d = np.min(np.hypot(out[:, None, 0] - np.asarray(fx)[None], out[:, None, 1] - np.asarray(fy)[None]), axis=1)
    assert d.max() < 0.01
    assert np.asarray(props["base_height"]).min() >= 1000.0
    ts = tmp_path / "out" / "buildings" / "tileset.json"
    assert check_tileset(ts).ok


def test_chinese_height_and_floor_fields_are_used_and_reported(tmp_path: Path) -> None:
    dem = _dem(tmp_path / "dem.tif", "EPSG:4547")
    fp = _footprints(tmp_path / "fp.gpkg", 4490, {"BSM": ["a", "b", "c"], "建筑高度": [None, "18.5米", None],
                                                  "层数": ["6层", None, None]})
    prepared = prepare_footprints(fp, dem)
    assert (prepared.height_field, prepared.floors_field) == ("建筑高度", "层数")
    assert list(prepared.source) == ["floors", "attribute", "default"]
    np.testing.assert_allclose(prepared.height, [18.0, 18.5, 10.0])
    # a field named on the command line is matched case-insensitively; a wrong one names the columns
    assert prepare_footprints(fp, dem, options=BuildingOptions(height_field="bsm")).height_field == "BSM"


def test_default_heights_while_a_likely_field_exists_are_reported(tmp_path: Path) -> None:
    dem = _dem(tmp_path / "dem.tif", "EPSG:4547")
    fp = _footprints(tmp_path / "fp.geojson", 4326, {"id": ["a", "b", "c"], "高度(米)": [12.0, 15.0, 9.0],
                                                     "height": ["n/a", "unknown", None]})
    prepared = prepare_footprints(fp, dem)
    assert list(prepared.source) == ["default"] * 3
    assert any("column 'height' holds no positive number" in n for n in prepared.notes)
    assert any("3 building(s) got the default height 10 m although column(s) '高度(米)' look like heights" in n
               and "--height-field" in n for n in prepared.notes)


def test_footprints_partly_or_wholly_off_the_dem(tmp_path: Path) -> None:
    from cim.sources.coverage import CoverageError

    dem = _dem(tmp_path / "dem.tif", "EPSG:4547")
    gdf = gpd.GeoDataFrame({"code": ["on", "off"]}, geometry=[FOOTPRINTS[0], box(X0 + 900, Y0, X0 + 920, Y0 + 20)],
                           crs="EPSG:4547").to_crs(4326)
    gdf.to_file(tmp_path / "part.geojson", driver="GeoJSON")
    prepared = prepare_footprints(tmp_path / "part.geojson", dem)
    assert prepared.on_dem == 0.5 and list(prepared.ids) == ["on"]
    assert any("1 of 2 footprints (50%) lie on the DEM" in n for n in prepared.notes)
    far = gpd.GeoDataFrame({"code": ["x"]}, geometry=[box(116.30, 39.90, 116.3003, 39.9003)], crs="EPSG:4326")
    far.to_file(tmp_path / "far.geojson", driver="GeoJSON")
    with pytest.raises(CoverageError, match=r"none of its 1 footprints lies on the DEM .*lon 116\.[23].*the DEM at lon 113\."):
        prepare_footprints(tmp_path / "far.geojson", dem)


@pytest.mark.realdata
def test_delft_footprints_as_wgs84_geojson_build_like_the_originals(tmp_path: Path) -> None:
    """The real BGT footprints of Delft (EPSG:28992), written as RFC 7946 GeoJSON (WGS 84) as open data portals
    publish them, build over the AHN3 DTM/DSM like the originals: every building, in RD New, to the centimetre."""
    from tests.support.paths import SHARED_DATA

    bgt = SHARED_DATA / "buildings/delft_bgt/bgt_pand.sqlite"
    dtm, dsm = SHARED_DATA / "dem/delft_ahn3_dtm_0.5m.tif", SHARED_DATA / "dem/delft_ahn3_dsm_0.5m.tif"
    if not (bgt.is_file() and dtm.is_file() and dsm.is_file()):
        pytest.skip(f"real test data not found under {SHARED_DATA} (../shared/data)")
    geojson = tmp_path / "bgt_pand.geojson"
    gpd.read_file(bgt).to_crs(4326).to_file(geojson, driver="GeoJSON")
    original = prepare_footprints(bgt, dtm, dsm=dsm)
    wgs84 = prepare_footprints(geojson, dtm, dsm=dsm)
    assert wgs84.crs.equals(crsmod.parse_crs("EPSG:28992")) and wgs84.source_crs.equals(crsmod.parse_crs(4326))
    assert list(wgs84.ids) == list(original.ids) and len(wgs84.ids) == 160
    for a, b in zip(original.geoms, wgs84.geoms, strict=True):
        pa, pb = shapely.get_coordinates(a), shapely.get_coordinates(b)
        assert pa.shape == pb.shape and np.abs(pa - pb).max() < 0.01
    np.testing.assert_allclose(wgs84.base, original.base, atol=0.01)
    # DSM heights are medians of the cells whose centres fall inside: a footprint edge moved by a millimetre can
    # take in or leave out a cell whose centre lies on it, so a few medians may differ by a centimetre or so
    dh = np.abs(wgs84.height - original.height)
    assert np.mean(dh < 0.01) >= 0.97 and dh.max() < 0.25
    assert list(wgs84.source) == list(original.source)
