"""`cim serve` over real HTTP: landing page, health, catalogue, OpenAPI, errors, CORS, gzip."""

from __future__ import annotations

import pytest

from tests.tiles.server_support import Served, served  # noqa: F401

pytestmark = pytest.mark.slow


def test_health_and_landing_page(served: Served) -> None:
    with served.client() as c:
        assert c.get("/health").json() == {"status": "ok", "models": 1, "maps": 2, "layers": 3}
        doc = c.get("/", headers={"Accept": "application/json"}).json()
        rels = {link["rel"]: link["href"] for link in doc["links"]}
        assert rels["conformance"] == f"{served.base}/conformance"
        assert rels["data"] == f"{served.base}/collections"
        assert rels["service-desc"] == f"{served.base}/api"


def test_root_for_a_browser_is_the_viewer(served: Served) -> None:
    with served.client() as c:
        r = c.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert f"{served.base}/viewer/deck.js" in r.text  # tests/tiles/test_viewer.py drives it in a browser


def test_catalog_lists_models_maps_and_public_layers_with_urls(served: Served) -> None:
    with served.client() as c:
        doc = c.get("/catalog").json()
    assert [m["name"] for m in doc["models"]] == ["box"]
    assert doc["models"][0]["urls"]["tileset"] == f"{served.base}/3dtiles/box/tileset.json"
    maps = {m["name"]: m for m in doc["maps"]}
    assert maps["dem"]["kind"] == "dem" and maps["dem"]["encoding"] == "terrain-rgb"
    assert maps["ortho"]["urls"]["xyz"] == f"{served.base}/maps/ortho/{{z}}/{{x}}/{{y}}.png"
    assert [layer["name"] for layer in doc["layers"]] == ["shelters"]
    shelters = doc["layers"][0]
    assert shelters["security"] == "public" and shelters["theme"] == "public_topics"
    assert shelters["feature_count"] == 200 and len(shelters["extent"]) == 4
    assert shelters["urls"]["items"] == f"{served.base}/collections/shelters/items"


def test_openapi_document_is_3_0_and_lists_the_protocols(served: Served) -> None:
    with served.client() as c:
        r = c.get("/api")
    assert r.headers["content-type"].startswith("application/vnd.oai.openapi+json")
    doc = r.json()
    assert doc["openapi"] == "3.0.3"
    for path in ("/collections/{collection_id}/items", "/collections/{collection_id}/tiles/WebMercatorQuad/{z}/{y}/{x}",
                 "/3dtiles/{model}/{path}", "/maps/{name}/{z}/{x}/{y}.{fmt}", "/wmts", "/catalog"):
        assert path in doc["paths"], path
    assert '"type": "null"' not in str(doc).replace("'", '"')


def test_conformance_declares_features_core_geojson_and_mvt(served: Served) -> None:
    with served.client() as c:
        classes = c.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in classes
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson" in classes
    assert "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/mvt" in classes


@pytest.mark.parametrize("path", ["/nothing", "/3dtiles", "/collections/shelters/nope"])
def test_unknown_routes_answer_json_404(served: Served, path: str) -> None:
    with served.client() as c:
        r = c.get(path)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json" and r.json()["status"] == 404


def test_wrong_method_is_a_json_405(served: Served) -> None:
    with served.client() as c:
        r = c.post("/catalog")
    assert r.status_code == 405 and r.json()["code"] == "MethodNotAllowed"


def test_cors_preflight_and_simple_requests(served: Served) -> None:
    with served.client() as c:
        r = c.options("/collections", headers={"Origin": "http://app.example", "Access-Control-Request-Method": "GET",
                                               "Access-Control-Request-Headers": "X-API-Key"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] in ("*", "http://app.example")
        assert "x-api-key" in r.headers["access-control-allow-headers"].lower()
        r = c.get("/collections", headers={"Origin": "http://app.example"})
        assert r.headers["access-control-allow-origin"] == "*"


def test_json_is_gzipped_when_asked(served: Served) -> None:
    with served.client() as c:
        r = c.get("/api", headers={"Accept-Encoding": "gzip"})
        assert r.headers["content-encoding"] == "gzip"
        assert r.json()["openapi"] == "3.0.3"
        r = c.get("/api", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in r.headers


def test_tile_matrix_sets(served: Served) -> None:
    with served.client() as c:
        ids = [t["id"] for t in c.get("/tileMatrixSets").json()["tileMatrixSets"]]
        assert ids == ["WebMercatorQuad", "CGCS2000Quad"]
        tms = c.get("/tileMatrixSets/CGCS2000Quad").json()
        assert tms["crs"].endswith("/EPSG/0/4490")
        m0 = tms["tileMatrices"][0]
        assert (m0["matrixWidth"], m0["matrixHeight"], m0["pointOfOrigin"]) == (2, 1, [90.0, -180.0])
        assert c.get("/tileMatrixSets/Nope").status_code == 400
