"""Quantized-mesh terrain: layer.json and tiles ahead and on the fly, proven by CesiumJS's CesiumTerrainProvider
sampling heights that match the DEM, with our (meshopt-compressed) 3D Tiles on it and a building picked."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

from cim.models.qmterrain import QuantizedMeshOptions, QuantizedMeshTerrain
from cim.sources.crs import transformer
from cim.sources.raster import bilinear, read_dem

MAX_ERROR = 0.5
LON0, LAT0 = 113.30, 40.09


@pytest.fixture(scope="module")
def hills_city(tmp_path_factory):
    """A 600 m x 600 m DEM with hills (2 m cells, EPSG:4547) and four footprints on it."""
    d = tmp_path_factory.mktemp("qm")
    x0, y0 = transformer("EPSG:4326", "EPSG:4547").transform(LON0, LAT0)
    yy, xx = np.mgrid[0:300, 0:300].astype(np.float64)
    z = 1050 + 0.04 * xx + 25 * np.sin(xx / 40.0) * np.cos(yy / 55.0)
    dem = d / "hills.tif"
    with rasterio.open(dem, "w", driver="GTiff", width=300, height=300, count=1, dtype="float32", crs="EPSG:4547",
                       transform=from_origin(x0, y0, 2.0, 2.0)) as dst:
        dst.write(z.astype(np.float32)[None])
    boxes = [shapely.box(x0 + 100 + 120 * i, y0 - 300 - 40 * i, x0 + 130 + 120 * i, y0 - 270 - 40 * i)
             for i in range(4)]
    fp = d / "fp.gpkg"
    gpd.GeoDataFrame({"code": [f"Q-{i}" for i in range(4)], "height": [12.0, 30.0, 20.0, 45.0]}, geometry=boxes,
                     crs="EPSG:4547").to_file(fp)
    terrain = QuantizedMeshTerrain(dem, QuantizedMeshOptions(max_error=MAX_ERROR))
    report = terrain.write(d / "qm")
    return d, dem, fp, terrain, report


def _dem_heights(dem, lonlat: np.ndarray) -> np.ndarray:
    grid = read_dem(dem)
    x, y = transformer("EPSG:4326", "EPSG:4547").transform(lonlat[:, 0], lonlat[:, 1])
    return bilinear(grid.heights, grid.transform, np.asarray(x), np.asarray(y))


def test_layer_json_declares_the_tiles_written(hills_city):
    d, _, _, terrain, report = hills_city
    layer = json.loads((d / "qm" / "layer.json").read_text())
    assert layer["format"] == "quantized-mesh-1.0" and layer["scheme"] == "tms"
    assert layer["extensions"] == ["octvertexnormals"] and layer["maxzoom"] == terrain.max_zoom
    assert len(layer["available"]) == terrain.max_zoom + 1
    for z, ranges in enumerate(layer["available"]):
        for r in ranges:
            for x in range(r["startX"], r["endX"] + 1):
                for y in range(r["startY"], r["endY"] + 1):
                    assert (d / "qm" / str(z) / str(x) / f"{y}.terrain").is_file()
    west, south, east, north = terrain.bounds
    assert west <= LON0 + 1e-9 < LON0 + 0.004 < east and south < LAT0 - 0.004 < north
    # the finest level keeps the TIN within max_error of the DEM samples it was made from
    assert report["leafError"] <= MAX_ERROR and report["tiles"] == sum(
        (r["endX"] - r["startX"] + 1) * (r["endY"] - r["startY"] + 1) for ranges in layer["available"] for r in ranges)


def _decode(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A quantized-mesh-1.0 tile as the format's spec decodes it: u, v (0-32767), heights (m), triangles, and the
    raw high-water-mark codes (github.com/CesiumGS/quantized-mesh)."""
    import struct

    lo, hi = struct.unpack_from("<ff", data, 24)
    n = struct.unpack_from("<I", data, 88)[0]
    zz = np.frombuffer(data, "<u2", count=3 * n, offset=92).reshape(3, n).astype(np.int64)
    u, v, h = (np.cumsum((a >> 1) ^ -(a & 1)) for a in zz)
    at = 92 + 6 * n
    at += (-at) % (2 if n <= 65536 else 4)
    m = struct.unpack_from("<I", data, at)[0]
    codes = np.frombuffer(data, "<u2" if n <= 65536 else "<u4", count=3 * m, offset=at + 4).astype(np.int64)
    tris = np.empty_like(codes)
    highest = 0
    for i, code in enumerate(codes):
        tris[i] = highest - code
        highest += code == 0
    return u, v, lo + h / 32767.0 * (hi - lo), tris.reshape(-1, 3), codes


def test_finest_tiles_decode_within_max_error_of_the_dem_at_every_grid_sample(hills_city):
    d, dem, _, terrain, _ = hills_city
    z = terrain.max_zoom
    leaves = [t for t in terrain.available() if t.z == z]
    worst = 0.0
    for t in leaves:
        u, v, h, tris, codes = _decode((d / "qm" / str(z) / str(t.x) / f"{t.y}.terrain").read_bytes())
        assert tris.min() >= 0 and tris.max() < len(u)  # canonical high-water-mark codes (no wrap-around)
        a, b, c = (np.column_stack([u[tris[:, k]], v[tris[:, k]]]).astype(float) for k in range(3))
        area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
        assert (area > 0).all()  # counter-clockwise seen from above
        lon, lat, _ = terrain.heights(t)
        west, south, east, north = t.bounds
        pu, pv = (lon.ravel() - west) / (east - west) * 32767, (lat.ravel() - south) / (north - south) * 32767
        tin = np.full(len(pu), np.nan)
        for i, (ta, tb, tc) in enumerate(tris):
            l1 = ((v[tb] - v[tc]) * (pu - u[tc]) + (u[tc] - u[tb]) * (pv - v[tc])) / area[i]
            l2 = ((v[tc] - v[ta]) * (pu - u[tc]) + (u[ta] - u[tc]) * (pv - v[tc])) / area[i]
            inside = (l1 >= -1e-9) & (l2 >= -1e-9) & (1 - l1 - l2 >= -1e-9)
            tin[inside] = (l1 * h[ta] + l2 * h[tb] + (1 - l1 - l2) * h[tc])[inside]
        assert np.isfinite(tin).all()
        worst = max(worst, float(np.max(np.abs(tin - _dem_heights(dem, np.column_stack([lon.ravel(),
                                                                                        lat.ravel()]))))))
    # the TIN tolerance plus the format's quantization (heights in 32767 steps of the tile's range, u/v rounded)
    assert worst <= MAX_ERROR + 0.005, worst


def test_tiles_are_made_the_same_on_the_fly_by_the_server(hills_city, monkeypatch):
    import httpx

    from tests.tiles.server_support import running_server
    from tiles.server import ServerSettings, create_app

    d, dem, _, terrain, _ = hills_city
    monkeypatch.delenv("CIM_STORE", raising=False)  # no layer store (none in the folder): only the map is served
    monkeypatch.chdir(d)
    app = create_app(ServerSettings(maps={"hills": dem}, log_requests=False, access_file=d / "keys.json"))
    with running_server(app) as base, httpx.Client(base_url=base, timeout=60) as c:
        layer = c.get("/terrain/hills/layer.json")
        assert layer.status_code == 200 and layer.json()["available"] == json.loads(
            (d / "qm" / "layer.json").read_text())["available"]
        z = terrain.max_zoom
        r = layer.json()["available"][z][0]
        path = f"{z}/{r['startX']}/{r['startY']}.terrain"
        tile = c.get(f"/terrain/hills/{path}?v=1.0.0", headers={"Accept-Encoding": "gzip"})
        assert tile.status_code == 200 and tile.headers["content-type"] == "application/vnd.quantized-mesh"
        assert tile.content == (d / "qm" / path).read_bytes()
        again = c.get(f"/terrain/hills/{path}", headers={"If-None-Match": tile.headers["etag"],
                                                          "Accept-Encoding": "gzip"})
        assert again.status_code == 304
        assert c.get("/terrain/hills/0/5/0.terrain").status_code == 400  # outside the scheme
        assert c.get("/terrain/nothing/layer.json").status_code == 404


def test_cli_build_writes_the_terrain_ahead_into_the_model_and_serve_sends_it(hills_city, tmp_path, monkeypatch):
    import httpx
    from typer.testing import CliRunner

    from cli import app as cli_app
    from tests.tiles.server_support import running_server
    from tiles.server import ServerSettings, create_app

    d, dem, _, terrain, report = hills_city
    out = tmp_path / "model"
    res = CliRunner().invoke(cli_app, ["build", str(out), "--dem", str(dem), "--quantized-mesh",
                                       "--scheduler", "synchronous"])
    assert res.exit_code == 0, res.output
    assert f"quantized-mesh: {report['tiles']} tiles to level {terrain.max_zoom}" in res.stdout
    qm = out / "quantized-mesh"
    written = sorted(p.relative_to(qm).as_posix() for p in qm.rglob("*") if p.is_file())
    library = sorted(p.relative_to(d / "qm").as_posix() for p in (d / "qm").rglob("*") if p.is_file())
    assert written == library and len(written) == report["tiles"] + 1
    # the same options (max error 0.5 m, ellipsoidal) as the library's own write: the same bytes
    assert all((qm / f).read_bytes() == (d / "qm" / f).read_bytes() for f in written)
    built = json.loads((out / "build.json").read_text())["quantized_mesh"]
    assert built["tiles"] == report["tiles"] and built["leafError"] <= MAX_ERROR
    assert json.loads((out / "tileset.json").read_text())["extras"]["cim"]["quantizedMesh"] == "quantized-mesh/"

    monkeypatch.delenv("CIM_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    server = create_app(ServerSettings(models={"hills": out}, log_requests=False, access_file=tmp_path / "k.json"))
    with running_server(server) as base, httpx.Client(base_url=base, timeout=60) as c:
        layer = c.get("/3dtiles/hills/quantized-mesh/layer.json")
        assert layer.status_code == 200 and layer.json() == json.loads((qm / "layer.json").read_text())
        leaf = next(f for f in written if f.startswith(f"{terrain.max_zoom}/"))
        tile = c.get(f"/3dtiles/hills/quantized-mesh/{leaf}?v=1.0.0", headers={"Accept-Encoding": "gzip"})
        assert tile.status_code == 200 and tile.headers["content-type"] == "application/vnd.quantized-mesh"
        assert tile.content == (qm / leaf).read_bytes()

    no_dem = CliRunner().invoke(cli_app, ["build", str(tmp_path / "x"), "--oblique", str(tmp_path), "--level",
                                          "3", "--quantized-mesh"])
    assert no_dem.exit_code != 0 and "--quantized-mesh" in str(no_dem.exception)


@pytest.mark.browser
@pytest.mark.slow
def test_cesium_samples_our_terrain_at_the_dem_heights_and_picks_a_building(hills_city, tmp_path):
    from cim.build import build_city
    from tests.support.browser import CesiumClient, require_cesium

    require_cesium()
    d, dem, fp, terrain, _ = hills_city
    build_city(tmp_path / "city", dem=dem, buildings=fp)  # meshopt-compressed tiles, the default
    rng = np.random.default_rng(5)
    west, south, east, north = terrain.bounds
    pts = np.column_stack([rng.uniform(west + 0.0005, east - 0.0005, 40), rng.uniform(south + 0.0005,
                                                                                     north - 0.0005, 40)])
    with CesiumClient({"/qm": d / "qm", "/tiles": tmp_path / "city"}) as client:
        info = client.use_terrain("/qm/")  # the folder: Cesium asks for its layer.json
        assert info["hasVertexNormals"]
        heights = np.array(client.sample_heights([tuple(p) for p in pts]))
        expected = _dem_heights(dem, pts)
        # CesiumJS samples the finest level, whose TIN is within MAX_ERROR of the DEM (plus the format's height and
        # u/v quantization, millimetres). Three of these points were 0.54-0.97 m off while pydelatin's y axis was
        # read as the row (a TIN of the terrain mirrored north-south)
        err = np.abs(heights - expected)
        assert err.max() <= MAX_ERROR + 0.01, np.round(err, 3)
        tiles = client.load_tileset("/tiles/tileset.json")
        assert tiles.all_loaded and not tiles.failures
        box = gpd.read_file(fp).to_crs("EPSG:4326").geometry[3]
        c = box.centroid
        roof = float(_dem_heights(dem, np.array([[c.x, c.y]]))[0]) + 45.0
        assert client.pick_at(c.x, c.y, roof)["code"] == "Q-3"
        assert client.log.console_errors == [] and client.off_host_requests() == []
