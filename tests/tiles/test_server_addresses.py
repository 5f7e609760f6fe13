"""`/geocode`, `/geocode/suggest`, `/reverse` and `/addresses/buildings/{code}` on a running server: answers, hostile
input (4xx or an empty match, never 500) and the security of the 一标三实 records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.addresses import build_address_store, write_sample_registry
from tests.tiles.server_support import Served, running_server


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from tiles.server import ServerSettings, create_app
    from tiles.server.auth import AccessStore, access_path

    root = tmp_path_factory.mktemp("served-addresses")
    write_sample_registry(root / "registry")
    store = build_address_store(root / "city.duckdb", root / "registry")
    with AccessStore(access_path(store)) as acc:
        keys = {"internal": acc.create("internal").key, "confidential": acc.create("confidential").key,
                "population": acc.create("layer:address_population").key}
    app = create_app(ServerSettings(store=store, log_requests=False))
    with running_server(app) as base:
        yield Served(base, root, store, Path(), keys, app.state.catalog)


@pytest.fixture(scope="module")
def population(served: Served) -> list[dict]:
    from layers import LayerStore

    with LayerStore(served.store, read_only=True) as s:
        return s.query_arrow("address_population", fields=["name", "id_number", "phone", "building_code"]).to_pylist()


def test_geocode(served: Served) -> None:
    with served.client() as c:
        r = c.get("/geocode", params={"q": "大同胜利街三十四号2单元501"})
    assert r.status_code == 200
    res = r.json()["result"]
    assert res["matched"] and res["address"].endswith("胜利大街34号") and res["components"]["room"] == "501"
    assert res["building_code"] and res["lon"] and res["reason"] == "normalised"


def test_suggest_and_reverse(served: Served) -> None:
    with served.client() as c:
        s = c.get("/geocode/suggest", params={"q": "胜利大", "limit": 5}).json()["suggestions"]
        assert 1 <= len(s) <= 5 and all("胜利大街" in x["address"] for x in s)
        r = c.get("/reverse", params={"lon": s[0]["lon"], "lat": s[0]["lat"]}).json()
    assert r["code"] == s[0]["code"] and r["distance_m"] == 0 and r["community"] and r["town"]


HOSTILE = [
    ("/geocode", {}, 400), ("/geocode", {"q": ""}, 400), ("/geocode", {"q": "胜" * 3_400}, 400),
    ("/geocode/suggest", {"q": "x" * 10_000}, 400), ("/geocode/suggest", {"q": "胜利", "limit": "0"}, 400),
    ("/geocode/suggest", {"q": "胜利", "limit": "abc"}, 400),
    ("/reverse", {"lon": "abc", "lat": "40"}, 400), ("/reverse", {"lon": "113"}, 400),
    ("/reverse", {"lon": "nan", "lat": "40"}, 400), ("/reverse", {"lon": "500", "lat": "40"}, 400),
    ("/addresses/buildings/" + "9" * 100, {}, 404), ("/addresses/buildings/a%00b", {}, 404),
]


@pytest.mark.parametrize(("path", "params", "status"), HOSTILE, ids=[f"{h[0]}-{i}" for i, h in enumerate(HOSTILE)])
def test_bad_requests_are_4xx(served: Served, path: str, params: dict, status: int) -> None:
    with served.client() as c:
        r = c.get(path, params=params)
    assert r.status_code == status, r.text
    assert r.json()["status"] == status


@pytest.mark.parametrize("q", ["Main Street 34, Springfield", "\x01\x02\x1b[31m", "😀", "' OR 1=1 --",
                               "<script>alert(1)</script>", "号" * 500, "\u202e胜利大街34号", "   "])
def test_odd_text_gets_an_empty_match(served: Served, q: str) -> None:
    with served.client() as c:
        for path in ("/geocode", "/geocode/suggest"):
            r = c.get(path, params={"q": q})
            assert r.status_code in (200, 400), r.text
    r = httpx.get(served.base + "/geocode", params={"q": "Main Street 34"})
    assert r.json()["result"]["matched"] is False


def test_anonymous_callers_never_see_personal_data(served: Served, population: list[dict]) -> None:
    code = population[0]["building_code"]
    with served.client() as c:
        doc = c.get(f"/addresses/buildings/{code}").json()
        rev = c.get("/reverse", params={"lon": 113.3098, "lat": 40.0943}).json()
        texts = [c.get(f"/addresses/buildings/{p['building_code']}").text for p in population[:50]]
        texts.append(c.get("/collections").text)
        texts.append(c.get("/collections/address_population/items").text)
    assert doc["counts"] == {} and doc["records"] == {}
    assert "links" not in rev
    blob = "".join(texts)
    for p in population[:50]:
        assert p["id_number"] not in blob and p["phone"] not in blob


def test_internal_callers_see_houses_and_organisations_but_no_person(served: Served, population: list[dict]
                                                                      ) -> None:
    code = population[0]["building_code"]
    with served.client("internal") as c:
        doc = c.get(f"/addresses/buildings/{code}").json()
    assert "population" not in doc["counts"] and doc["counts"]["houses"] >= 1
    assert population[0]["id_number"] not in str(doc)


def test_cleared_callers_see_records_and_are_audited(served: Served, population: list[dict]) -> None:
    from tiles.server.auth import AccessStore, access_path

    code = population[0]["building_code"]
    for key in ("confidential", "population"):
        with served.client(key) as c:
            doc = c.get(f"/addresses/buildings/{code}").json()
            rev = c.get("/reverse", params={"lon": 113.3098, "lat": 40.0943}).json()
        ids = {r["id_number"] for r in doc["records"]["population"]}
        assert population[0]["id_number"] in ids and doc["counts"]["population"] == len(ids)
        assert "population" in rev["links"]
    with AccessStore(access_path(served.store)) as acc:
        log = acc.audit_log("address_population")
    assert {r.action for r in log} >= {"links", "reverse"}


@pytest.mark.browser
@pytest.mark.slow
def test_viewer_search_box_suggests_as_you_type_and_geocodes_typos(served: Served) -> None:
    from tests.support.browser import chromium_page

    with served.client() as c:
        target = c.get("/geocode", params={"q": "胜利大街34号"}).json()["result"]
    with chromium_page(viewport=(900, 600), timeout_s=90) as bp:
        page = bp.page
        page.goto(f"{served.base}/?api_key={served.keys['confidential']}")
        page.wait_for_function("window.cimViewer && window.cim.addresses && cimViewer.loaded()", timeout=60_000)
        page.locator("form.search input").press_sequentially("胜利大", delay=30)
        page.wait_for_selector(".address-suggestions li")
        items = page.locator(".address-suggestions li").all_inner_texts()
        assert items and all("胜利大街" in t for t in items)
        page.fill("form.search input", "大同圣利街三十四号")  # misspelt, 街 for 大街, Chinese numerals
        page.click("form.search button")
        page.wait_for_function("cimViewer.lastIdentify !== null", timeout=30_000)
        lon, lat = page.evaluate("[cimViewer.deck.props.viewState.longitude, cimViewer.deck.props.viewState.latitude]")
        assert abs(lon - target["lon"]) < 1e-6 and abs(lat - target["lat"]) < 1e-6
        assert target["address"] in page.inner_text(".search-results")
        page.wait_for_selector("#info section.address")
        info = page.inner_text("#info section.address")
        # the panel speaks the page's language (headless chromium asks for English)
        residents = "实有人口" if page.evaluate("cimViewer.cim.lang") == "zh" else "Residents"
        assert target["code"] in info and residents in info
        assert bp.log.console_errors == [] and bp.log.page_errors == []
