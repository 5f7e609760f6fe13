"""OGC API - Features over real HTTP: collections, items paging, bbox, CQL2 and property filters, bad input."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from tests.tiles.server_support import LON0, LAT0, Served, points_layer, served  # noqa: F401

pytestmark = pytest.mark.slow


def test_collections_and_collection(served: Served) -> None:
    with served.client() as c:
        doc = c.get("/collections").json()
        assert [col["id"] for col in doc["collections"]] == ["shelters"]
        col = c.get("/collections/shelters").json()
    assert col["itemType"] == "feature" and col["crs"] == ["http://www.opengis.net/def/crs/OGC/1.3/CRS84"]
    bbox = col["extent"]["spatial"]["bbox"][0]
    assert LON0 <= bbox[0] < bbox[2] <= LON0 + 0.01 and LAT0 <= bbox[1] < bbox[3] <= LAT0 + 0.01
    assert {link["rel"] for link in col["links"]} >= {"self", "items"}


def test_items_default_page_and_links(served: Served) -> None:
    with served.client() as c:
        r = c.get("/collections/shelters/items")
    assert r.headers["content-type"] == "application/geo+json"
    doc = r.json()
    assert doc["type"] == "FeatureCollection"
    assert doc["numberMatched"] == 200 and doc["numberReturned"] == 20 and len(doc["features"]) == 20
    links = {link["rel"]: link["href"] for link in doc["links"]}
    assert "prev" not in links
    q = parse_qs(urlsplit(links["next"]).query)
    assert q["offset"] == ["20"] and q["limit"] == ["20"]


def test_paging_walks_every_feature_once(served: Served) -> None:
    seen: list[int] = []
    url: str | None = "/collections/shelters/items?limit=64"
    with served.client() as c:
        while url:
            doc = c.get(url).json()
            seen += [f["id"] for f in doc["features"]]
            url = next((link["href"] for link in doc["links"] if link["rel"] == "next"), None)
        last = c.get("/collections/shelters/items?limit=64&offset=192").json()
    assert sorted(seen) == list(range(1, 201))
    assert {link["rel"] for link in last["links"]} >= {"prev"}


def test_bbox_selects_what_geopandas_selects(served: Served) -> None:
    expected = points_layer(200)
    box = (LON0, LAT0, LON0 + 0.004, LAT0 + 0.006)
    want = int(expected.cx[box[0]:box[2], box[1]:box[3]].shape[0])
    with served.client() as c:
        doc = c.get("/collections/shelters/items", params={"bbox": ",".join(map(str, box)), "limit": 1000}).json()
    assert doc["numberMatched"] == want == doc["numberReturned"]
    for f in doc["features"]:
        lon, lat = f["geometry"]["coordinates"]
        assert box[0] <= lon <= box[2] and box[1] <= lat <= box[3]


def test_cql2_and_property_filters(served: Served) -> None:
    gdf = points_layer(200)
    with served.client() as c:
        doc = c.get("/collections/shelters/items", params={"filter": "capacity > 300 AND kind = 'school'",
                                                           "limit": 1000}).json()
        assert doc["numberMatched"] == int(((gdf.capacity > 300) & (gdf.kind == "school")).sum())
        assert all(f["properties"]["capacity"] > 300 for f in doc["features"])
        doc = c.get("/collections/shelters/items", params={"kind": "park", "limit": 1}).json()
        assert doc["numberMatched"] == int((gdf.kind == "park").sum())
        doc = c.get("/collections/shelters/items", params={"名称": "点7"}).json()
        assert [f["properties"]["名称"] for f in doc["features"]] == ["点7"]


def test_one_item(served: Served) -> None:
    with served.client() as c:
        f = c.get("/collections/shelters/items/8").json()
        assert f["type"] == "Feature" and f["id"] == 8 and f["properties"]["名称"] == "点7"
        for missing in ("999999", "abc", "1e3"):
            r = c.get(f"/collections/shelters/items/{missing}")
            assert r.status_code == 404 and r.json()["code"] == "NotFound"


@pytest.mark.parametrize("params", [
    {"bbox": "1,2,3"}, {"bbox": "a,b,c,d"}, {"bbox": "10,50,20,40"}, {"bbox": "0,0,200,10"}, {"bbox": "nan,0,1,1"},
    {"limit": "0"}, {"limit": "-5"}, {"limit": "ten"}, {"offset": "-1"},
    {"filter": "capacity >"}, {"filter": "nosuchfield = 1"}, {"filter": "capacity = 'x' OR"},
    {"filter": "1 = 1; DROP TABLE x"}, {"filter-lang": "cql2-json", "filter": "{}"}, {"capacity": "many"},
    {"nosuchparam": "1"}, {"crs": "http://www.opengis.net/def/crs/EPSG/0/3857"},
])
def test_bad_item_queries_are_400_with_a_json_body(served: Served, params: dict[str, str]) -> None:
    with served.client() as c:
        r = c.get("/collections/shelters/items", params=params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "InvalidParameterValue" and body["description"]


def test_unknown_collection_is_404(served: Served) -> None:
    with served.client() as c:
        for path in ("/collections/nope", "/collections/nope/items", "/collections/NOPE/items/1",
                     "/collections/..%2Fx/items"):
            r = c.get(path)
            assert r.status_code == 404 and r.json()["code"] == "NotFound", path


def test_queryables(served: Served) -> None:
    with served.client() as c:
        doc = c.get("/collections/shelters/queryables").json()
    assert doc["properties"]["capacity"] == {"type": "integer"}
    assert doc["properties"]["kind"] == {"type": "string"}
