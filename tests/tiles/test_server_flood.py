"""Flood runs over HTTP: listing and reports, depth tiles with a time dimension (TileJSON, WMTS Time, KVP), inundation
MVT, impacts (JSON, CSV), who may see them, and a new run started as a job."""

from __future__ import annotations

import io
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import mapbox_vector_tile
import morecantile
import numpy as np
import pytest
import rasterio
import rasterio.windows
import shapely
from PIL import Image
from rasterio.transform import from_origin

from cim.sources.crs import transformer
from tests.tiles.server_support import running_server

LON0, LAT0 = 113.30, 40.09


@dataclass
class FloodServed:
    base: str
    runs: Path
    keys: dict[str, str]
    lonlat: tuple[float, float]

    def client(self, key: str | None = "internal"):
        import httpx

        return httpx.Client(base_url=self.base, headers={"X-API-Key": self.keys[key]} if key else {}, timeout=60)


def _city(root: Path) -> dict[str, Path]:
    """A 120 x 120 DEM at 2 m with a hollow in the middle, three buildings, a road, a shelter, a community."""
    x0, y0 = transformer("EPSG:4326", "EPSG:4547").transform(LON0, LAT0)
    x0, y0 = x0 - 120, y0 + 120
    yy, xx = np.mgrid[0:120, 0:120]
    z = 1050 + 0.002 * ((xx - 60) ** 2 + (yy - 60) ** 2) ** 1.0 * 0.5
    dem = root / "dem.tif"
    with rasterio.open(dem, "w", driver="GTiff", width=120, height=120, count=1, dtype="float32",
                       crs="EPSG:4547", transform=from_origin(x0, y0, 2, 2)) as dst:
        dst.write(z.astype(np.float32), 1)

    def box(c0, r0, c1, r1):
        return shapely.box(x0 + 2 * c0, y0 - 2 * r1, x0 + 2 * c1, y0 - 2 * r0)

    layers = {
        "buildings": gpd.GeoDataFrame({"code": ["b1", "b2", "b3"], "use": ["住宅"] * 3,
                                       "address": ["中心路1号", "中心路2号", "边缘路9号"]},
                                      geometry=[box(50, 54, 56, 60), box(64, 60, 70, 66), box(5, 5, 10, 10)]),
        "roads": gpd.GeoDataFrame({"name": ["中心路"], "class": ["支路"]},
                                  geometry=[shapely.LineString([(x0, y0 - 121), (x0 + 240, y0 - 121)])]),
        "shelters": gpd.GeoDataFrame({"shelter_id": ["S1"], "name": ["高地避难所"], "capacity": [500]},
                                     geometry=[shapely.Point(x0 + 10, y0 - 10)]),
        "population": gpd.GeoDataFrame({"name": ["中心社区"], "code": ["1"], "population": [300]},
                                       geometry=[box(0, 0, 120, 120)]),
    }
    out = {"dem": dem}
    for name, gdf in layers.items():
        out[name] = root / f"{name}.gpkg"
        gdf.set_crs("EPSG:4547").to_file(out[name])
    return out


@pytest.fixture(scope="module")
def flood_served(tmp_path_factory) -> Iterator[FloodServed]:
    import json

    from cim.analysis.flood import ChicagoStorm, FloodParams, run_flood
    from layers import LayerStore
    from tests.support.fixtures import write_box_tileset
    from tiles.server import ServerSettings, create_app
    from tiles.server.auth import AccessStore, access_path

    root = tmp_path_factory.mktemp("flood-served")
    files = _city(root)
    runs = root / "runs"
    params = FloodParams(dem=files["dem"], buildings=files["buildings"], after_min=10.0, output_interval_min=10.0,
                         storm=ChicagoStorm(return_period=100, duration_min=20))
    run_flood(params, runs / "storm")
    store = root / "city.duckdb"
    with LayerStore(store) as s:
        for name in ("buildings", "roads", "shelters", "population"):
            s.import_file(files[name], name, theme="public_topics",
                          security="internal" if name in ("buildings", "population") else "public")
    model = write_box_tileset(root / "model").root
    (model / "build.json").write_text(json.dumps({"inputs": {"dem": str(files["dem"]),
                                                              "buildings": str(files["buildings"])}}))
    with AccessStore(access_path(store)) as acc:
        keys = {"internal": acc.create("internal", "duty officer").key}
    app = create_app(ServerSettings(store=store, models={"city": model}, flood_runs=runs, log_requests=False))
    with running_server(app) as base:
        yield FloodServed(base, runs, keys, (LON0, LAT0))


def _tile(lonlat, z=17):
    t = morecantile.tms.get("WebMercatorQuad").tile(lonlat[0], lonlat[1], z)
    return t.z, t.x, t.y


def _alpha(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))[..., 3]


def test_runs_are_listed_only_for_callers_who_may_see_them(flood_served):
    with flood_served.client(None) as anon:
        assert anon.get("/flood").status_code == 404
        assert anon.get("/flood/storm").status_code == 404
    with flood_served.client() as c:
        doc = c.get("/flood").json()
        assert [r["id"] for r in doc["runs"]] == ["storm"]
        run = doc["runs"][0]
        assert run["times"] == [600.0, 1200.0, 1800.0] and len(run["instants"]) == 3
        report = c.get("/flood/storm").json()
        assert report["mass_balance"]["relative_error"] < 1e-9
        assert {link["rel"] for link in report["links"]} >= {"tilejson", "wmts", "impacts"}
        assert c.get("/flood/../etc").status_code == 404
        assert c.get("/flood/alerts").json() == {"alerts": []}  # no warning run yet


def test_depth_tiles_through_time(flood_served):
    z, x, y = _tile(flood_served.lonlat)
    with flood_served.client() as c:
        tj = c.get("/flood/storm/tilejson.json?var=depth").json()
        assert tj["tilejson"] == "3.0.0" and tj["time"]["seconds"] == [600.0, 1200.0, 1800.0]
        template = tj["time"]["tiles"][0]
        assert "{time}" in template and tj["tiles"][0].endswith(f"/depth/max/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png")
        wet_max = _alpha(c.get(f"/flood/storm/depth/max/{z}/{x}/{y}.png").content)
        assert (wet_max > 0).sum() > 100
        by_seconds = c.get(f"/flood/storm/depth/1200/{z}/{x}/{y}.png")
        by_instant = c.get(f"/flood/storm/depth/{tj['time']['values'][1]}/{z}/{x}/{y}.png")
        assert by_seconds.status_code == 200 and by_seconds.content == by_instant.content
        early = _alpha(c.get(f"/flood/storm/depth/600/{z}/{x}/{y}.png").content)
        assert (early > 0).sum() <= (wet_max > 0).sum()
        bad = c.get(f"/flood/storm/depth/999/{z}/{x}/{y}.png")
        assert bad.status_code == 400 and "not an output step" in bad.json()["description"]
        assert c.get(f"/flood/storm/velocity/1800/CGCS2000Quad/17/0/0.png").status_code in (400, 404)
        arrival = c.get(f"/flood/storm/arrival/max/{z}/{x}/{y}.png")
        assert arrival.status_code == 200


def test_wmts_has_a_time_dimension(flood_served):
    z, x, y = _tile(flood_served.lonlat)
    with flood_served.client() as c:
        xml = c.get("/flood/storm/wmts/1.0.0/WMTSCapabilities.xml").text
        ns = {"w": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1"}
        root = ET.fromstring(xml)
        layer = next(ly for ly in root.iterfind(".//w:Layer", ns) if ly.findtext("ows:Identifier", "", ns) == "depth")
        dim = layer.find("w:Dimension", ns)
        assert dim.findtext("ows:Identifier", "", ns) == "Time"
        values = [v.text for v in dim.findall("w:Value", ns)]
        assert values[0] == "max" and len(values) == 4
        template = layer.find("w:ResourceURL", ns).get("template")
        assert "{Time}" in template
        url = template.replace(flood_served.base, "").replace("{Time}", values[2]).replace(
            "{TileMatrixSet}", "WebMercatorQuad").replace("{TileMatrix}", str(z)).replace(
            "{TileCol}", str(x)).replace("{TileRow}", str(y))
        rest = c.get(url)
        kvp = c.get("/flood/storm/wmts", params={"REQUEST": "GetTile", "LAYER": "depth", "TIME": values[2],
                                                 "TILEMATRIXSET": "WebMercatorQuad", "TILEMATRIX": z,
                                                 "TILEROW": y, "TILECOL": x})
        assert rest.status_code == kvp.status_code == 200 and rest.content == kvp.content


def test_wmts_is_advertised_restful_and_gdal_reads_it_there(flood_served, tmp_path):
    """GetCapabilities is listed as KVP and RESTful, the RESTful document is the ServiceMetadataURL, and GDAL's WMTS
    driver opened on that URL reads the depth layer's default time (the maximum) pixel for pixel as the tiles."""
    rest = f"{flood_served.base}/flood/storm/wmts/1.0.0/WMTSCapabilities.xml"
    ns = {"w": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1"}
    href = "{http://www.w3.org/1999/xlink}href"
    with flood_served.client() as c:
        xml = c.get(rest).text
        assert c.get("/flood/storm/wmts", params={"REQUEST": "GetCapabilities"}).text == xml
        root = ET.fromstring(xml)
        op = root.find("ows:OperationsMetadata/ows:Operation[@name='GetCapabilities']", ns)
        gets = {g.findtext(".//ows:Value", "", ns): g.get(href) for g in op.iterfind(".//ows:Get", ns)}
        assert gets == {"KVP": f"{flood_served.base}/flood/storm/wmts", "RESTful": rest}
        assert root.find("w:ServiceMetadataURL", ns).get(href) == rest
        top = max(int(m.findtext("w:TileMatrix", "", ns)) for m in root.iterfind(
            ".//w:Layer/w:TileMatrixSetLink[w:TileMatrixSet='WebMercatorQuad']//w:TileMatrixLimits", ns))
        z, x, y = _tile(flood_served.lonlat, top)
        tile = np.asarray(Image.open(io.BytesIO(c.get(f"/flood/storm/depth/max/{z}/{x}/{y}.png").content))
                          .convert("RGBA")).transpose(2, 0, 1)
    assert (tile[3] > 0).sum() > 100
    bounds = morecantile.tms.get("WebMercatorQuad").xy_bounds(morecantile.Tile(x, y, z))
    with rasterio.Env(GDAL_HTTP_HEADERS=f"X-API-Key: {flood_served.keys['internal']}", GDAL_HTTP_TIMEOUT="60",
                      GDAL_DEFAULT_WMS_CACHE_PATH=str(tmp_path / "gdal-wms-cache")):
        with rasterio.open(f"WMTS:{rest},layer=depth,tilematrixset=WebMercatorQuad") as src:
            assert src.count == 4 and src.crs.to_epsg() == 3857
            window = rasterio.windows.from_bounds(*bounds, transform=src.transform).round_offsets().round_lengths()
            assert (window.width, window.height) == (256, 256)
            np.testing.assert_array_equal(src.read(window=window), tile)


def test_inundation_vector_tiles(flood_served):
    z, x, y = _tile(flood_served.lonlat, 16)
    with flood_served.client() as c:
        r = c.get(f"/flood/storm/inundation/{z}/{x}/{y}.mvt")
        assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.mapbox-vector-tile"
        layer = mapbox_vector_tile.decode(r.content)["inundation"]
        assert layer["features"] and {f["properties"]["depth_class"] for f in layer["features"]} <= {
            "0.15-0.30 m", "0.30-0.50 m", "0.50-1.00 m", ">= 1.00 m"}
        assert c.get("/flood/storm/inundation/16/0/0.mvt").status_code == 204


def test_impacts_json_and_csv(flood_served):
    with flood_served.client() as c:
        doc = c.get("/flood/storm/impacts").json()
        ids = {b["id"] for b in doc["buildings"] if b["affected"]}
        assert ids == {"b1", "b2"}  # the two buildings in the hollow, not the one on the rim
        assert doc["summary"]["shelters_dry"] == 1
        csv = c.get("/flood/storm/impacts/buildings.csv")
        assert csv.status_code == 200 and csv.text.lstrip("\ufeff").startswith("id,")
        assert "中心路1号" in csv.text
        gj = c.get("/flood/storm/impacts/buildings.geojson").json()
        assert gj["type"] == "FeatureCollection" and abs(gj["features"][0]["geometry"]["coordinates"][0][0][0]
                                                         - LON0) < 0.01


def test_what_happens_at_one_place(flood_served):
    with flood_served.client() as c:
        here = c.get("/flood/storm/point", params={"lon": LON0, "lat": LAT0}).json()
        assert here["max_depth_m"] > 0.15 and [s["t_s"] for s in here["series"]] == [600.0, 1200.0, 1800.0]
        assert max(s["depth_m"] for s in here["series"]) <= here["max_depth_m"] + 1e-3
        assert here["time_to_0.15m_s"] is not None and here["time_to_0.15m_s"] <= 1800
        away = c.get("/flood/storm/point", params={"lon": LON0 + 0.1, "lat": LAT0}).json()
        assert away["max_depth_m"] is None


def test_a_new_run_is_a_job(flood_served):
    with flood_served.client() as c:
        r = c.post("/analysis/city/flood", json={"storm": {"return_period": 10, "duration_min": 10},
                                                 "static": True})
        assert r.status_code == 201, r.text
        status = r.headers["location"].replace(flood_served.base, "")
        for _ in range(600):
            doc = c.get(status).json()
            if doc["status"] in ("successful", "failed"):
                break
            time.sleep(0.2)
        assert doc["status"] == "successful", doc
        result = c.get(status + "/results").json()
        assert result["kind"] == "static" and result["id"].startswith("city-")
        assert result["id"] in [run["id"] for run in c.get("/flood").json()["runs"]]
        bad = c.post("/analysis/city/flood", json={"storm": {"return_period": 10}, "dem": "/etc/passwd"})
        assert bad.status_code == 400
    with flood_served.client(None) as anon:
        assert anon.post("/analysis/city/flood", json={}).status_code == 404
