"""Planning analyses over HTTP: quick answers, jobs, schemes, access control and bad input."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import geopandas as gpd
import httpx
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

from cim.sources.crs import transformer
from tests.tiles.server_support import Served, running_server

X0, Y0 = transformer("EPSG:4326", "EPSG:4547").transform(114.0, 40.09)


def _ll(dx: float, dy: float) -> list[float]:
    lon, lat = transformer("EPSG:4547", "EPSG:4326").transform(X0 + dx, Y0 + dy)
    return [float(lon), float(lat)]


@pytest.fixture(scope="module")
def served_city(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A model `town` (a house, a shop; DEM at 1050 m) and a store with its height-control zones (internal)."""
    from layers import LayerStore
    from tests.support.fixtures import write_box_tileset
    from tiles.server import ServerSettings, create_app
    from tiles.server.auth import AccessStore, access_path

    root = tmp_path_factory.mktemp("analysis")
    boxes = [(-5, 0, 5, 8), (40, -60, 60, -40)]
    fp = gpd.GeoDataFrame({"code": ["home", "shop"], "use": ["住宅", "商业"], "height": [6.0, 30.0],
                           "floors": [2, 8]},
                          geometry=[shapely.box(X0 + a, Y0 + b, X0 + c, Y0 + d) for a, b, c, d in boxes],
                          crs="EPSG:4547")
    fp.to_parquet(root / "footprints.parquet")
    n, res = 200, 2.0
    with rasterio.open(root / "dem.tif", "w", driver="GTiff", width=n, height=n, count=1, dtype="float32",
                       crs="EPSG:4547", transform=from_origin(X0 - 200, Y0 + 200, res, res)) as dst:
        dst.write(np.full((1, n, n), 1050.0, np.float32))
    model = write_box_tileset(root / "town", lon=114.0, lat=40.09).root
    (model / "build.json").write_text(json.dumps({"level": 2, "inputs": {
        "buildings": str(root / "footprints.parquet"), "dem": str(root / "dem.tif")}}))
    zones = gpd.GeoDataFrame({"zone_code": ["KG01"], "name": ["一般控制区"], "max_height_m": [24.0]},
                             geometry=[shapely.box(X0 - 200, Y0 - 200, X0 + 200, Y0 + 200)], crs="EPSG:4547")
    zones.to_file(root / "zones.gpkg")
    store = root / "city.duckdb"
    with LayerStore(store) as s:
        s.import_file(root / "zones.gpkg", "height_zones", theme="planning_control/height_control",
                      security="internal")
    with AccessStore(access_path(store)) as acc:
        keys = {"internal": acc.create("internal", "planner").key}
    app = create_app(ServerSettings(store=store, models={"town": model}, log_requests=False))
    with running_server(app) as base:
        yield Served(base, root, store, model, keys, app.state.catalog)


def _wait(c: httpx.Client, r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 201, r.text
    url = r.headers["location"]
    for _ in range(1500):
        doc = c.get(url).json()
        if doc["status"] in ("successful", "failed", "dismissed"):
            break
        time.sleep(0.05)
    assert doc["status"] == "successful", doc
    return c.get(f"{url}/results").json()


def test_height_control_answers_at_once_and_respects_the_zones_security(served_city: Served) -> None:
    with served_city.client("internal") as c:
        r = c.post("/analysis/town/height-control", json={})
        assert r.status_code == 200
        doc = r.json()
        assert doc["summary"]["violations"] == 1
        assert doc["violations"][0]["id"] == "shop" and doc["violations"][0]["excess"] == 6.0
        assert doc["features"]["features"][0]["properties"]["zone_code"] == "KG01"
        scheme = {"type": "FeatureCollection", "features": [{
            "type": "Feature", "properties": {"name": "tower", "height": 40},
            "geometry": {"type": "Polygon", "coordinates": [[_ll(-60, -60), _ll(-40, -60), _ll(-40, -40),
                                                             _ll(-60, -40), _ll(-60, -60)]]}}]}
        r = c.post("/analysis/town/height-control?f=geojson", json={"scheme": scheme})
        ids = {f["properties"]["id"] for f in r.json()["features"]}
        assert r.headers["content-type"].startswith("application/geo+json") and ids == {"shop", "scheme:tower"}
    with served_city.client() as anonymous:
        assert anonymous.post("/analysis/town/height-control", json={}).status_code == 404  # zones are internal
        assert anonymous.post("/analysis/nope/skyline", json={"viewpoint": _ll(0, 20)}).status_code == 404


def test_skyline_answers_at_once(served_city: Served) -> None:
    with served_city.client() as c:
        r = c.post("/analysis/town/skyline", json={"viewpoint": _ll(0, 20), "azimuth_step": 2.0})
        assert r.status_code == 200
        doc = r.json()
        assert doc["buildings"][0]["id"] in ("home", "shop") and len(doc["profile"]) == 180


def test_sunlight_and_comparison_run_as_jobs(served_city: Served) -> None:
    with served_city.client("internal") as c:
        doc = _wait(c, c.post("/analysis/town/sunlight", json={"year": 2024, "spacing": 10}))
        assert doc["summary"]["buildings"] == 1 and doc["buildings"][0]["id"] == "home"
        scheme = {"type": "FeatureCollection", "name": "slab", "features": [{
            "type": "Feature", "properties": {"name": "slab", "height": 20},
            "geometry": {"type": "Polygon", "coordinates": [[_ll(-60, -35), _ll(30, -35), _ll(30, -25),
                                                             _ll(-60, -25), _ll(-60, -35)]]}}]}
        doc = _wait(c, c.post("/analysis/town/compare", json={"scheme": scheme,
                                                              "sunlight": {"year": 2024, "spacing": 10}}))
        assert doc["summary"]["sunlight"]["windows_newly_failing"] > 0
        assert {w["cause"] for w in doc["windows"]} == {"scheme:slab"}


def test_bad_requests_fail_before_any_job(served_city: Served) -> None:
    with served_city.client("internal") as c:
        r = c.post("/analysis/town/viewshed", json={"observer": [120.0, 30.0]})
        assert r.status_code == 400 and "outside the model" in r.json()["description"]
        r = c.post("/analysis/town/compare", json={"scheme": {"type": "FeatureCollection", "features": []}})
        assert r.status_code == 400 and "no footprint" in r.json()["description"]
        r = c.post("/analysis/town/sunlight", json={"year": 9000})
        assert r.status_code == 400 and "year" in r.json()["description"]
        r = c.post("/analysis/town/sunlight", json={"uses": ["none"], "elderly_uses": []})
        assert r.status_code == 400 and "no building to check" in r.json()["description"]
        assert c.get("/jobs").json()["jobs"] == [] or all(
            j["processID"] in ("sunlight", "compare") for j in c.get("/jobs").json()["jobs"])
