"""The server's edges under hostile conditions: an unexpected error, an untrusted Host header, a spent time budget.

Each test builds its own small application (in-process, `TestClient`) over the hostile server's store, so that it
can set the settings it attacks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.hostile.support import TRACEBACK, HostileServer, LogCapture, assert_no_secret
from tiles.server import ServerSettings, create_app


@pytest.fixture
def captured() -> Iterator[LogCapture]:
    capture = LogCapture()
    logger = logging.getLogger("cim.server")
    old = logger.level
    logger.addHandler(capture)
    logger.setLevel(logging.INFO)
    yield capture
    logger.removeHandler(capture)
    logger.setLevel(old)


def client(hostile_server: HostileServer, **settings: object) -> TestClient:
    s = ServerSettings(store=hostile_server.store, log_requests=True, **settings)  # type: ignore[arg-type]
    return TestClient(create_app(s), raise_server_exceptions=False)


def test_an_unexpected_error_is_a_json_500_and_logged_with_what_the_client_got(
        hostile_server: HostileServer, captured: LogCapture, monkeypatch: pytest.MonkeyPatch) -> None:
    key = hostile_server.keys["confidential"]
    with client(hostile_server) as c:
        catalog = c.app.state.catalog  # type: ignore[attr-defined]

        def broken(*a: object, **k: object) -> None:
            raise RuntimeError(f"boom while serving {key}")  # an error whose text holds a secret

        monkeypatch.setattr(catalog, "describe", broken)
        r = c.get("/catalog", params={"api_key": key})
    assert r.status_code == 500
    assert r.json() == {"code": "ServerError", "status": 500,
                        "description": "internal error; the server log has the details"}
    assert not TRACEBACK.search(r.text)
    text = captured.text()
    line = next(line for line in captured.lines if "GET /catalog" in line and " 500 " in line)
    assert f" 500 {len(r.content)}B " in line  # what the client got, not status 0 and 0 bytes
    assert "Traceback" in text and "RuntimeError: boom while serving cim_" in text  # the operator sees why
    assert_no_secret(text, hostile_server.secrets)


def test_links_and_redirects_come_from_the_public_url_never_from_the_host_header(
        hostile_server: HostileServer) -> None:
    evil = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    with client(hostile_server, public_url="https://maps.city.gov.cn/cim") as c:
        for path in ("/", "/collections", "/collections/shelters", "/catalog", "/tiles/shelters/tilejson.json",
                     "/collections/shelters/items?limit=2"):
            r = c.get(path, headers={**evil, "Accept": "application/json"})
            assert r.status_code == 200, path
            assert "evil.example" not in r.text and "https://maps.city.gov.cn/cim/" in r.text, path
        r = c.get("/collections/", headers=evil, follow_redirects=False)
        assert r.status_code == 308 and r.headers["location"] == "https://maps.city.gov.cn/cim/collections"
    with client(hostile_server) as c:  # no public URL: a relative redirect, still never the client's Host
        r = c.get("/collections/shelters/items/?limit=1", headers=evil, follow_redirects=False)
        assert r.status_code == 308 and r.headers["location"] == "/collections/shelters/items?limit=1"
        assert c.get("/no/such/", headers=evil, follow_redirects=False).status_code == 404


def test_allowed_hosts_refuse_other_host_headers(hostile_server: HostileServer) -> None:
    with client(hostile_server, allowed_hosts=["maps.city.gov.cn"]) as c:
        assert c.get("/health", headers={"Host": "evil.example"}).status_code == 400
        assert c.get("/health", headers={"Host": "maps.city.gov.cn"}).status_code == 200


def test_a_spent_budget_answers_503_in_json(hostile_server: HostileServer) -> None:
    with client(hostile_server, request_budget=1e-9) as c:
        for path in ("/collections/shelters/items?filter=capacity>1", "/collections/hazards/items?limit=5",
                     "/search?q=点1"):
            r = c.get(path, headers={"X-API-Key": hostile_server.keys["confidential"]})
            assert r.status_code == 503, (path, r.status_code, r.text[:200])
            assert "time budget" in r.json()["description"]
        assert c.get("/health").status_code == 200  # what runs no query is not affected
