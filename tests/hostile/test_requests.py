"""Hostile requests against every route the application has: routes are enumerated from the application itself,
so routes added later (SensorThings, geocoding, analyses, jobs) are attacked too.

Each answer must be a status below 500 (or a 503 that says the request ran out of its time budget), a JSON error
document for a 4xx, no traceback; the log must hold no secret, and the store must be unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest

from tests.hostile.support import (HostileServer, assert_clean_error, assert_no_secret, budget_answer, fetch,
                                  store_digest)

HOSTILE_SEGMENTS = [
    "..%2F..%2Fetc%2Fpasswd", "%2e%2e", "%00", "a" * 3000, "汉字", "%ff%fe", "' OR 1=1 --", "-1",
    "99999999999999999999999999", "NaN", "1e309", "shelters%00.json", "%25", "{x}", "${jndi:ldap://x}",
]
HOSTILE_QUERY = {
    "filter": "(" * 200 + "capacity > 1" + ")" * 200,
    "bbox": "nan,nan,inf,inf",
    "limit": "-99999999999999999999",
    "offset": "1e400",
    "q": "%_%_%_%_%_%_%_%_%_%_%_%_%_%_%_%_%" * 5,
    "lon": "NaN",
    "lat": "1e999",
    "f": "../../etc",
    "tms": "x" * 500,
    "format": "png%00",
    "REQUEST": "GetTile",
    "LAYER": "../ortho",
}


def get_routes(app: object) -> list[str]:
    """The path of every GET operation of the application's OpenAPI document (what `/api` serves), so that routes
    other modules register are attacked as soon as they exist."""
    doc = app.openapi()  # type: ignore[attr-defined]
    return [path for path, ops in doc["paths"].items() if "get" in ops]


def fill(route: str, value: str) -> str:
    """The route's path with every parameter set to `value` (already URL-encoded)."""
    return re.sub(r"\{[^}]+\}", value, route)


def check(r: httpx.Response) -> None:
    if budget_answer(r):
        return
    assert_clean_error(r)


@pytest.fixture(scope="module")
def digest_before(hostile_server: HostileServer) -> Iterator[str]:
    before = store_digest(hostile_server.store)
    yield before
    assert store_digest(hostile_server.store) == before, "a request changed the store"


def test_routes_are_enumerated_from_the_application(hostile_server: HostileServer) -> None:
    paths = set(get_routes(hostile_server.app))
    assert {"/collections/{collection_id}/items", "/maps/{name}/{z}/{x}/{y}.{fmt}", "/search"} <= paths


@pytest.mark.parametrize("segment", HOSTILE_SEGMENTS)
def test_hostile_path_segments_on_every_route(hostile_server: HostileServer, digest_before: str,
                                              segment: str) -> None:
    with hostile_server.client() as c:
        for route in get_routes(hostile_server.app):
            url = fill(route, segment if "%" in segment else quote(segment, safe=""))
            check(fetch(c, url))


def test_hostile_query_parameters_on_every_route(hostile_server: HostileServer, digest_before: str) -> None:
    with hostile_server.client("confidential") as c:
        for route in get_routes(hostile_server.app):
            for value in ("shelters", "hazards", "ortho", "box"):
                url = fill(route, value)
                check(fetch(c, url, params=HOSTILE_QUERY))
                check(fetch(c, url, params={k: v[:50] for k, v in HOSTILE_QUERY.items()}))


def test_hostile_headers_on_every_route(hostile_server: HostileServer, digest_before: str) -> None:
    headers = [
        {"If-None-Match": "*"}, {"If-None-Match": '"' + "x" * 8000 + '"'}, {"Range": "bytes=99999999999-1"},
        {"Range": "bytes=" + ",".join(f"{i}-{i}" for i in range(500))}, {"Accept": "text/html" * 200},
        {"X-API-Key": "cim_zz_" + "a" * 5000}, {"Authorization": "Basic !!!notbase64"},
        {"Authorization": "Bearer " + "x" * 10}, {"Accept-Encoding": "gzip;q=NaN, br;q=1e999"},
    ]
    with hostile_server.client() as c:
        for route in get_routes(hostile_server.app):
            url = fill(route, "shelters")
            for h in headers:
                check(fetch(c, url, headers=h))


def test_head_answers_wherever_get_does(hostile_server: HostileServer) -> None:
    with hostile_server.client("confidential") as c:
        for route in get_routes(hostile_server.app):
            url = fill(route, "shelters").replace("/ortho/shelters", "/ortho/0").replace("{", "")
            g, h = fetch(c, url), fetch(c, url, "HEAD")
            assert h.status_code == g.status_code, url
            assert h.content == b""
            if "content-length" in g.headers and g.status_code == 200:
                assert h.headers["content-length"] == g.headers["content-length"]


@pytest.mark.parametrize("depth", [21, 200, 3000])
def test_deeply_nested_filters_answer_400(hostile_server: HostileServer, depth: int) -> None:
    for text in ("(" * depth + "capacity > 1" + ")" * depth, "NOT " * depth + "capacity > 1",
                 "CASEI(" * depth + "kind" + ")" * depth + " = 'park'"):
        with hostile_server.client() as c:
            r = c.get("/collections/shelters/items", params={"filter": text[:3999]})
        assert r.status_code == 400, r.text[:200]
        assert_clean_error(r)


def test_too_many_tokens_answer_400(hostile_server: HostileServer) -> None:
    text = "capacity IN (" + ",".join("1" for _ in range(1500)) + ")"
    with hostile_server.client() as c:
        r = c.get("/collections/shelters/items", params={"filter": text})
    assert r.status_code == 400 and "tokens" in r.json()["description"]


@pytest.mark.parametrize("pattern", [
    "%a_%a_%a_%a_%b", "_" * 16 + "%" + "_%" * 16 + "b", "%" + "_%" * 200 + "x", "%a%a%a%a%a%a%a%a%a%a%a%a%b",
])
def test_crafted_like_patterns_are_answered_within_the_budget(hostile_server: HostileServer, pattern: str) -> None:
    """DuckDB's own LIKE took 50 s on such patterns over a thousand rows; compiled to RE2 they are linear. The
    client's timeout (30 s) is the bound checked here; the server's own budget would answer 503 before it."""
    with hostile_server.client() as c:
        for casei in (False, True):
            text = f"CASEI(名称) LIKE CASEI('{pattern}')" if casei else f"名称 LIKE '{pattern}'"
            r = c.get("/collections/shelters/items", params={"filter": text})
            assert r.status_code == 200 or budget_answer(r), r.text[:200]


def test_like_semantics_survive_the_compilation(hostile_server: HostileServer) -> None:
    with hostile_server.client() as c:
        def names(f: str) -> list[str]:
            r = c.get("/collections/shelters/items", params={"filter": f, "limit": 1000})
            assert r.status_code == 200, r.text
            return sorted(feat["properties"]["名称"] for feat in r.json()["features"])
        assert names("名称 LIKE '点1_'") == [f"点{i}" for i in range(10, 20)]
        assert names("名称 LIKE '点_9'") == [f"点{i}9" for i in range(1, 10)]
        assert names("名称 LIKE '%9_'") == sorted(f"点{i}" for i in range(200) if str(i)[-2:-1] == "9")
        assert names("名称 NOT LIKE '点%'") == []
        assert names("名称 LIKE '点\\%'") == []


def test_every_documented_text_bound_fits_the_http_parser(hostile_server: HostileServer) -> None:
    """A query parameter one character longer than its documented maxLength, in 4-byte characters (12 bytes each
    percent-encoded), is answered by the application (a JSON 400 naming it), not refused by uvicorn's HTTP parser in
    plain text: every bound in /api is small enough for the request line the parsers accept (16 KB)."""
    doc = hostile_server.app.openapi()  # type: ignore[attr-defined]
    bounded = []
    for path, ops in doc["paths"].items():
        for param in ops.get("get", {}).get("parameters", []):
            schema = param.get("schema", {})
            limits = [s["maxLength"] for s in [schema, *schema.get("anyOf", [])] if "maxLength" in s]
            if param.get("in") == "query" and limits:
                bounded.append((path, param["name"], max(limits)))
    assert len(bounded) >= 5, bounded
    with hostile_server.client("confidential") as c:
        for path, name, limit in bounded:
            r = fetch(c, fill(path, "shelters"), params={name: "\U0010fffd" * (limit + 1)})
            assert r.status_code < 500 and "Invalid HTTP request" not in r.text, (path, name, limit, r.text[:100])
            check(r)


def test_search_text_is_literal_and_bounded(hostile_server: HostileServer) -> None:
    with hostile_server.client("confidential") as c:
        r = c.get("/search", params={"q": "%_%_%_%_%_%_%_%_%_%_%_%_%_%_%_%_%_%_%_%"})
        assert r.status_code == 200 and r.json()["results"] == []  # wildcards are plain characters
        r = c.get("/search", params={"q": "危险源_"})
        assert r.status_code == 200 and r.json()["results"] == []
        r = c.get("/search", params={"q": "危险源1"})
        assert r.status_code == 200 and {h["label"] for h in r.json()["results"]} == {"危险源1", "危险源10", "危险源11"}


@pytest.mark.parametrize("path", [
    "/maps/ortho/99/0/0.png", "/maps/ortho/3/8/0.png", "/maps/ortho/WebMercatorQuad/3/0/9.png",
    "/maps/ortho/0/0/0.gif", "/tiles/shelters/30/0/0.mvt", "/tiles/shelters/2/4/0.mvt",
    "/collections/shelters/tiles/WebMercatorQuad/2/0/4", "/wmts?REQUEST=GetTile&LAYER=ortho&TILEMATRIXSET="
    "WebMercatorQuad&TILEMATRIX=99&TILEROW=0&TILECOL=0",
])
def test_an_impossible_tile_is_400_whatever_the_validators_say(hostile_server: HostileServer, path: str) -> None:
    with hostile_server.client() as c:
        for inm in ("*", 'W/"x", *', None):
            r = c.get(path, headers={"If-None-Match": inm} if inm else {})
            assert r.status_code == 400, (path, inm, r.status_code)
            assert_clean_error(r)


def test_a_key_in_any_spelling_authenticates_and_never_reaches_the_log(hostile_server: HostileServer) -> None:
    key = hostile_server.keys["confidential"]
    spellings = [
        {"params": {"api_key": key}}, {"url_suffix": "?api%5Fkey=" + quote(key, safe="")},
        {"url_suffix": "?api%5fkey=" + "".join(f"%{b:02x}" for b in key.encode())},
        {"url_suffix": "?api_key=" + quote(quote(key, safe=""), safe="")},
        {"headers": {"X-API-Key": key}}, {"headers": {"Authorization": f"Bearer {key}"}},
    ]
    with hostile_server.client() as c:
        for s in spellings:
            url = "/collections/hazards" + s.get("url_suffix", "")
            r = c.get(url, params=s.get("params"), headers=s.get("headers"))
            assert r.status_code in (200, 401), r.text  # doubly encoded: malformed, refused
            r = c.get("/collections/hazards/items" + s.get("url_suffix", ""), params=s.get("params"),
                      headers=s.get("headers"))
    assert_no_secret(hostile_server.log.text(), hostile_server.secrets)
    assert "api_key=***" in hostile_server.log.text()


def test_the_log_cannot_be_forged(hostile_server: HostileServer) -> None:
    with hostile_server.client() as c:
        c.get("/collections/shelters/items", params={"kind": "park\n1.2.3.4 GET /admin 200 0B 0.1ms"})
        c.get("/search%0d%0aINFO%20forged", params={"q": "x\r\nforged"})
    lines = hostile_server.log.lines
    assert not any(line.startswith("1.2.3.4") or "\nINFO forged" in line or "\nforged" in line for line in lines)


def test_no_secret_in_the_log_after_the_whole_suite(hostile_server: HostileServer) -> None:
    """Run last in this module (pytest keeps file order): everything above sent keys in every spelling."""
    assert_no_secret(hostile_server.log.text(), hostile_server.secrets)
