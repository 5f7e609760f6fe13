"""What desktop GIS clients need from the server, over real HTTP: keys by HTTP Basic, links that keep the key in the
form it came in, hints on 404s, WMTS answering WMS probes, an OpenAPI 3.0 document that validates and declares the
OGC `limit` component, MapLibre style documents, and WMS 1.3.0 (capabilities read by OWSLib, GetMap pixels against
the WMTS tiles and the store, GetFeatureInfo against the store). The real clients (QGIS, GDAL) are in
test_desktop_clients.py."""

from __future__ import annotations

import io
import logging

import httpx
import morecantile
import numpy as np
import pytest
from PIL import Image

from tests.tiles.server_support import LAT0, LON0, Served, served  # noqa: F401

pytestmark = pytest.mark.slow
WMQ = morecantile.tms.get("WebMercatorQuad")


def _basic(served: Served, key: str, user: str = "qgis") -> httpx.Client:
    return httpx.Client(base_url=served.base, auth=(user, served.keys.get(key, key)), timeout=30)


def _ids(c: httpx.Client) -> list[str]:
    return sorted(col["id"] for col in c.get("/collections").json()["collections"])


def test_basic_auth_carries_the_key_and_links_stay_clean(served: Served) -> None:
    with _basic(served, "internal") as c:
        assert _ids(c) == ["sensors", "shelters"]
        landing = c.get("/", headers={"Accept": "application/json"}).json()
        data = next(link["href"] for link in landing["links"] if link["rel"] == "data")
        assert data == f"{served.base}/collections"  # the client sends Basic again: nothing in the URL
        assert c.get(data).status_code == 200 and _ids(c) == ["sensors", "shelters"]
    # the key as the user name with an empty password (curl -u KEY:) works too
    with httpx.Client(base_url=served.base, auth=(served.keys["confidential"], ""), timeout=30) as c:
        assert _ids(c) == ["hazards", "sensors", "shelters"]
    with _basic(served, "cim_00000000_nosuchsecretnosuchsecret") as c:
        r = c.get("/collections")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic realm=")
    with _basic(served, "revoked") as c:
        assert c.get("/collections").status_code == 401
    r = httpx.get(f"{served.base}/collections", headers={"Authorization": "Basic !!notbase64"})
    assert r.status_code == 401 and "password" in r.json()["description"]


def test_a_key_in_the_query_stays_in_every_link(served: Served) -> None:
    key = served.keys["internal"]
    with served.client() as c:
        landing = c.get("/", params={"api_key": key}, headers={"Accept": "application/json"}).json()
        assert all(f"api_key={key}" in link["href"] for link in landing["links"])
        cols = c.get("/collections", params={"api_key": key}).json()
        hrefs = [link["href"] for col in cols["collections"] for link in col["links"]]
        assert hrefs and all(f"api_key={key}" in h for h in hrefs)
        items = c.get("/collections/sensors/items", params={"api_key": key, "limit": 10}).json()
        assert all(f"api_key={key}" in link["href"] for link in items["links"])
        style = c.get("/styles/layers/sensors", params={"api_key": key}).json()
        assert style["sources"]["sensors"]["tiles"][0].endswith(f"?api_key={key}")


def test_basic_credentials_are_never_logged(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    from fastapi.testclient import TestClient

    from tiles.server import ServerSettings, create_app

    app = create_app(ServerSettings(store=served.store, log_requests=True))
    key = served.keys["confidential"]
    secret = key.split("_", 2)[2]
    with caplog.at_level(logging.INFO, logger="cim.server"), TestClient(app) as c:
        assert c.get("/collections/hazards/items", auth=("qgis", key)).status_code == 200
        assert c.get("/collections/hazards/items", auth=("qgis", key + "x")).status_code == 401
        assert c.get("/collections/hazards/items", params={"api_key": key}).status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "cim.server"]
    assert len(lines) >= 3 and not any(secret in ln or key in ln for ln in lines)
    import base64

    encoded = base64.b64encode(f"qgis:{key}".encode()).decode()
    assert not any(encoded in ln for ln in lines)


def test_hidden_maps_and_layers_say_why(served: Served) -> None:
    from tiles.server.auth import AccessStore  # noqa: F401 (the keys live in the served fixture)

    with served.client() as c:
        r = c.get("/tiles/hazards/14/13348/6197.mvt")
        assert r.status_code == 404 and "HTTP Basic" in r.headers["x-cim-hint"]
        caps = c.get("/wmts/1.0.0/WMTSCapabilities.xml")
        assert "api_key=KEY" in caps.headers["x-cim-hint"] and "Basic" in caps.text
    with served.client("internal") as c:
        r = c.get("/collections/hazards")
        assert r.status_code == 404 and "key" in r.headers["x-cim-hint"] and "HTTP Basic" not in r.headers["x-cim-hint"]
        assert "x-cim-hint" not in c.get("/wmts/1.0.0/WMTSCapabilities.xml").headers


def test_wmts_answers_wms_probes(served: Served) -> None:
    with served.client() as c:
        r = c.get("/wmts", params={"SERVICE": "WMS", "REQUEST": "GetCapabilities"})
        assert r.status_code == 200 and "<Capabilities" in r.text and "/wms" in r.headers["x-cim-hint"]
        rest = c.get("/wmts/1.0.0/WMTSCapabilities.xml", params={"SERVICE": "WMS", "REQUEST": "GetCapabilities"})
        assert rest.status_code == 200 and "<Capabilities" in rest.text
        r = c.get("/wmts", params={"SERVICE": "WMS", "REQUEST": "GetMap", "LAYERS": "ortho"})
        assert r.status_code == 307 and r.headers["location"].startswith(f"{served.base}/wms?")


def test_openapi_validates_and_declares_the_ogc_limit(served: Served) -> None:
    from openapi_spec_validator import validate

    with served.client() as c:
        doc = c.get("/api").json()
        validate(doc)  # the OpenAPI 3.0 schema
        limit = doc["components"]["parameters"]["limit"]
        assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 10_000, "default": 20}
        assert limit["style"] == "form" and limit["explode"] is False
        params = doc["paths"]["/collections/{collection_id}/items"]["get"]["parameters"]
        assert {"$ref": "#/components/parameters/limit"} in params
        for path, item in doc["paths"].items():  # every query parameter has a real type
            for p in item.get("get", {}).get("parameters", []):
                if "$ref" not in p:
                    assert p["schema"].get("type") in ("string", "integer", "number", "array", "boolean"), (path, p)
        assert any(p["name"] == "TILEMATRIX" and p["schema"]["type"] == "integer"
                   for p in doc["paths"]["/wmts"]["get"]["parameters"])
        # a limit above the maximum is served as the maximum, with the next link at the maximum
        page = c.get("/collections/shelters/items", params={"limit": 50_000}).json()
        assert page["numberReturned"] == 200 and all("limit=10000" in link["href"] for link in page["links"]
                                                      if link["rel"] == "self")


def test_style_documents(served: Served) -> None:
    with served.client() as c:
        listing = c.get("/styles").json()["styles"]
        assert [s["id"] for s in listing] == ["onemap", "layers/shelters", "maps/ortho"]
        one = c.get("/styles/onemap")
        assert one.headers["content-type"].startswith("application/vnd.mapbox.style+json")
        doc = one.json()
        assert doc["version"] == 8 and "sprite" not in doc and "glyphs" not in doc
        assert doc["sources"]["ortho"]["tiles"] == [f"{served.base}/maps/ortho/{{z}}/{{x}}/{{y}}.png"]
        assert doc["sources"]["shelters"]["tiles"] == [f"{served.base}/tiles/shelters/{{z}}/{{x}}/{{y}}.mvt"]
        assert [(x["id"], x["type"]) for x in doc["layers"]] == [("ortho", "raster"), ("shelters", "circle")]
        assert c.get("/styles/layers/hazards").status_code == 404
        assert c.get("/styles/maps/dem").status_code == 404  # a DEM has no raster style (Terrain-RGB)
    with _basic(served, "confidential") as c:
        doc = c.get("/styles/layers/hazards").json()
        assert [(x["id"], x["type"]) for x in doc["layers"]] == [("hazards-fill", "fill"), ("hazards-outline", "line")]
        # the same colour as the viewer gives this layer for this caller
        viewer_layers = {t["name"]: t for t in _viewer_tree(c) if t.get("kind") == "vector"}
        rgb = viewer_layers["hazards"]["color"]
        assert doc["layers"][0]["paint"]["fill-color"] == "rgb({},{},{})".format(*rgb)


def _viewer_tree(c: httpx.Client) -> list[dict]:
    import json
    import re

    page = c.get("/", headers={"Accept": "text/html"}).text
    config = json.loads(re.search(r'<script id="cim-config" type="application/json">(.*?)</script>', page, re.DOTALL)
                        .group(1).replace("<\\/", "</"))
    return config["tree"]


def _png(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)).convert("RGBA"))


def test_wms_capabilities_read_by_owslib(served: Served) -> None:
    from owslib.wms import WebMapService

    wms = WebMapService(f"{served.base}/wms", version="1.3.0", timeout=30)
    assert set(wms.contents) == {"ortho", "shelters"}
    assert wms["shelters"].queryable == 1 and "EPSG:4490" in wms["shelters"].crsOptions
    assert "image/png" in wms.getOperationByName("GetMap").formatOptions
    keyed = WebMapService(f"{served.base}/wms", version="1.3.0", username="gis", password=served.keys["confidential"],
                          timeout=30)
    assert set(keyed.contents) == {"ortho", "shelters", "sensors", "hazards"}


def test_wms_getmap_matches_the_tiles_and_the_store(served: Served) -> None:
    from cim.sources.crs import transformer

    t = WMQ.tile(LON0, LAT0, 16)
    b = WMQ.xy_bounds(t)
    with served.client() as c:
        tile = _png(c.get(f"/maps/ortho/{t.z}/{t.x}/{t.y}.png").content)
        r = c.get("/wms", params={"SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "GetMap", "LAYERS": "ortho",
                                  "STYLES": "", "CRS": "EPSG:3857", "BBOX": f"{b.left},{b.bottom},{b.right},{b.top}",
                                  "WIDTH": 256, "HEIGHT": 256, "FORMAT": "image/png", "TRANSPARENT": "TRUE"})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        img = _png(r.content)
        both = (img[..., 3] > 0) & (tile[..., 3] > 0)
        assert both.mean() > 0.5 and np.abs(img[both, :3].astype(int) - tile[both, :3]).max() <= 2
        # EPSG:4326 and 4490 take lat,lon BBOX; CRS:84 lon,lat: the same picture
        ll = (LON0 - 0.002, LAT0 - 0.002, LON0 + 0.002, LAT0 + 0.002)
        pics = []
        for crs, box in (("EPSG:4490", (ll[1], ll[0], ll[3], ll[2])), ("EPSG:4326", (ll[1], ll[0], ll[3], ll[2])),
                         ("CRS:84", ll)):
            r = c.get("/wms", params={"REQUEST": "GetMap", "VERSION": "1.3.0", "LAYERS": "ortho", "CRS": crs,
                                      "BBOX": ",".join(map(str, box)), "WIDTH": 200, "HEIGHT": 200,
                                      "FORMAT": "image/png"})
            assert r.status_code == 200, r.text
            pics.append(_png(r.content)[..., :3].astype(int))
        assert np.abs(pics[0] - pics[2]).max() <= 2 and np.abs(pics[1] - pics[2]).max() <= 2
        assert pics[2].std() > 10  # the gradient, not a blank
        # shelters: a drawn point where the store has one
        shelters = c.get("/collections/shelters/items", params={"limit": 1}).json()["features"][0]
        lon, lat = shelters["geometry"]["coordinates"]
        x, y = transformer("EPSG:4490", "EPSG:3857").transform(lon, lat)
        half = 100.0
        r = c.get("/wms", params={"REQUEST": "GetMap", "LAYERS": "shelters", "CRS": "EPSG:3857",
                                  "BBOX": f"{x - half},{y - half},{x + half},{y + half}", "WIDTH": 101,
                                  "HEIGHT": 101, "FORMAT": "image/png", "TRANSPARENT": "TRUE"})
        img = _png(r.content)
        assert img[50, 50, 3] > 200 and (img[..., 3] > 0).mean() < 0.5
        # errors are WMS exception reports; a hidden layer is LayerNotDefined, 404, with the hint
        r = c.get("/wms", params={"REQUEST": "GetMap", "LAYERS": "hazards", "CRS": "EPSG:3857",
                                  "BBOX": f"{b.left},{b.bottom},{b.right},{b.top}", "WIDTH": 10, "HEIGHT": 10})
        assert r.status_code == 404 and 'code="LayerNotDefined"' in r.text and "HTTP Basic" in r.headers["x-cim-hint"]
        r = c.get("/wms", params={"REQUEST": "GetMap", "LAYERS": "ortho", "CRS": "EPSG:32650", "BBOX": "0,0,1,1",
                                  "WIDTH": 10, "HEIGHT": 10})
        assert r.status_code == 400 and 'code="InvalidCRS"' in r.text


def test_wms_getfeatureinfo_answers_from_the_store(served: Served) -> None:
    with _basic(served, "confidential") as c:
        hazard = c.get("/collections/hazards/items/3").json()
        (x0, y0), _, (x1, y1) = hazard["geometry"]["coordinates"][0][:3]
        lon, lat = (min(x0, x1) + max(x0, x1)) / 2, (min(y0, y1) + max(y0, y1)) / 2
        d = 0.001
        for fmt in ("application/json", "text/html", "text/plain"):
            r = c.get("/wms", params={"SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "GetFeatureInfo",
                                      "LAYERS": "hazards", "QUERY_LAYERS": "hazards", "CRS": "EPSG:4490",
                                      "BBOX": f"{lat - d},{lon - d},{lat + d},{lon + d}", "WIDTH": 101,
                                      "HEIGHT": 101, "I": 50, "J": 50, "INFO_FORMAT": fmt, "FEATURE_COUNT": 5})
            assert r.status_code == 200, r.text
            if fmt == "application/json":
                feats = r.json()["features"]
                assert feats[0]["id"] == 3 and feats[0]["properties"] == hazard["properties"]
            else:
                assert hazard["properties"]["name"] in r.text
    with served.client() as c:
        r = c.get("/wms", params={"REQUEST": "GetFeatureInfo", "QUERY_LAYERS": "hazards", "LAYERS": "hazards",
                                  "CRS": "CRS:84", "BBOX": f"{lon - d},{lat - d},{lon + d},{lat + d}", "WIDTH": 10,
                                  "HEIGHT": 10, "I": 5, "J": 5})
        assert r.status_code == 404 and "LayerNotDefined" in r.text


def test_basic_prefix_challenges_and_keeps_itself_in_links(served: Served) -> None:
    """ArcGIS sends a stored login only after a 401 Basic challenge: every URL also exists under /basic/, which
    challenges a request without credentials, and the links it writes stay under /basic."""
    with served.client() as c:
        r = c.get("/basic/wmts/1.0.0/WMTSCapabilities.xml")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith('Basic realm="cim"')
        assert c.get("/wmts/1.0.0/WMTSCapabilities.xml").status_code == 200  # the anonymous half of the pair
    with _basic(served, "internal") as c:
        caps = c.get("/basic/wmts/1.0.0/WMTSCapabilities.xml")
        assert caps.status_code == 200 and f"{served.base}/basic/maps/ortho/" in caps.text
        landing = c.get("/basic/", headers={"Accept": "application/json"}).json()
        assert all(link["href"].startswith(f"{served.base}/basic/") for link in landing["links"])
        assert sorted(col["id"] for col in c.get("/basic/collections").json()["collections"]) == ["sensors",
                                                                                                   "shelters"]
        items = c.get("/basic/collections/sensors/items", params={"limit": 5}).json()
        assert items["numberMatched"] == 30 and all("/basic/collections/" in link["href"] for link in items["links"])
        assert c.get("/basic/styles/layers/sensors").json()["sources"]["sensors"]["tiles"][0].startswith(
            f"{served.base}/basic/tiles/sensors/")
