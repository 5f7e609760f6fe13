"""Access control over real HTTP: anonymous, wrong, revoked and scoped keys; hidden is 404; audit log."""

from __future__ import annotations

import morecantile
import pytest

from tests.tiles.server_support import LON0, LAT0, Served, served  # noqa: F401
from tiles.server.auth import AccessStore, Principal, access_path, parse_scope
from tiles.errors import InvalidKeyError, TileRequestError

pytestmark = pytest.mark.slow
TILE = morecantile.tms.get("WebMercatorQuad").tile(LON0 + 0.003, LAT0 + 0.0003, 14)
PROTECTED = ["/collections/{n}", "/collections/{n}/items", "/collections/{n}/items/1",
             f"/tiles/{{n}}/{TILE.z}/{TILE.x}/{TILE.y}.mvt",
             f"/collections/{{n}}/tiles/WebMercatorQuad/{TILE.z}/{TILE.y}/{TILE.x}", "/tiles/{n}/tilejson.json"]


def _names(c, path: str = "/collections") -> list[str]:  # type: ignore[no-untyped-def]
    return [col["id"] for col in c.get(path).json()["collections"]]


def test_anonymous_sees_public_layers_only_and_hidden_ones_are_404(served: Served) -> None:
    with served.client() as c:
        assert _names(c) == ["shelters"]
        assert [layer["name"] for layer in c.get("/catalog").json()["layers"]] == ["shelters"]
        for name in ("sensors", "hazards"):
            for path in PROTECTED:
                r = c.get(path.format(n=name))
                assert r.status_code == 404, (name, path, r.status_code)
                body = r.json()
                assert body.pop("hint") == r.headers["x-cim-hint"] and "HTTP Basic" in r.headers["x-cim-hint"]
                assert body == {"code": "NotFound", "status": 404,
                                "description": f"no collection {name!r} on this server; see /collections"}
                # a hidden layer answers exactly like one that does not exist, hint included
                missing = c.get(path.format(n=name + "x"))
                assert missing.json()["hint"] == r.headers["x-cim-hint"] == missing.headers["x-cim-hint"]


def test_internal_key_sees_internal_not_confidential(served: Served) -> None:
    with served.client("internal") as c:
        assert _names(c) == ["sensors", "shelters"]
        assert c.get("/collections/sensors/items").json()["numberMatched"] == 30
        assert c.get("/collections/hazards/items").status_code == 404
        r = c.get("/collections/sensors/items/1")
        assert r.status_code == 200


def test_layer_scoped_key_sees_that_layer_only(served: Served) -> None:
    with served.client("hazards") as c:
        assert _names(c) == ["hazards", "shelters"]
        assert c.get("/collections/hazards/items").json()["numberMatched"] == 12
        assert c.get("/collections/sensors").status_code == 404


def test_key_in_query_string_and_bearer_header(served: Served) -> None:
    with served.client() as c:
        r = c.get("/collections", params={"api_key": served.keys["confidential"]})
        assert [col["id"] for col in r.json()["collections"]] == ["hazards", "sensors", "shelters"]
        items = next(link["href"] for link in r.json()["collections"][0]["links"] if link["rel"] == "items")
        assert "api_key=" in items  # links keep working for clients that can only put the key in the URL
        r = c.get("/collections", headers={"Authorization": f"Bearer {served.keys['internal']}"})
        assert len(r.json()["collections"]) == 2


@pytest.mark.parametrize("key", ["cim_00000000_" + "x" * 43, "not-a-key", "revoked"])
def test_wrong_or_revoked_key_is_401(served: Served, key: str) -> None:
    with served.client(key) as c:
        for path in ("/collections", "/collections/shelters/items", "/catalog", "/3dtiles/box/tileset.json"):
            r = c.get(path)
            assert r.status_code == 401, path
            assert r.json()["code"] == "InvalidApiKey" and "WWW-Authenticate" in r.headers


def test_private_responses_are_not_publicly_cacheable(served: Served) -> None:
    with served.client("internal") as c:
        r = c.get(f"/tiles/sensors/{TILE.z}/{TILE.x}/{TILE.y}.mvt")
    assert r.status_code in (200, 204)
    assert r.headers["cache-control"].startswith("private")
    assert "X-API-Key" in r.headers["vary"]


def test_confidential_access_is_audited(served: Served) -> None:
    with AccessStore(access_path(served.store)) as acc:
        before = len(acc.audit_log("hazards", limit=10_000))
    with served.client("confidential") as c:
        assert c.get("/collections/hazards/items", params={"limit": 1}).status_code == 200
        assert c.get("/collections/sensors/items", params={"limit": 1}).status_code == 200
    with served.client() as c:  # a refused anonymous request reveals nothing and is not an access
        assert c.get("/collections/hazards/items").status_code == 404
    with AccessStore(access_path(served.store)) as acc:
        log = acc.audit_log("hazards", limit=10_000)
        assert len(log) == before + 1
        assert log[0].action == "items" and log[0].path == "/collections/hazards/items"
        assert log[0].key_id == served.keys["confidential"].split("_")[1]
        assert acc.audit_log("sensors") == []


def test_keys_are_stored_hashed_and_revocable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with AccessStore(tmp_path / "a.sqlite") as acc:
        new = acc.create("internal,layer:hazards", "qgis")
        assert acc.authenticate(new.key) == Principal(new.id, ("internal", "layer:hazards"))
        acc.revoke(new.id)
        with pytest.raises(InvalidKeyError, match="revoked"):
            acc.authenticate(new.key)
    secret = new.key.split("_", 2)[2]
    assert secret.encode() not in (tmp_path / "a.sqlite").read_bytes()


def test_scope_grammar() -> None:
    assert parse_scope("internal, layer:hazards,internal") == ("internal", "layer:hazards")
    for bad in ("", "secret", "layer:Bad Name", "layer:"):
        with pytest.raises(TileRequestError):
            parse_scope(bad)
    p = Principal("k", ("theme:public_topics",))
    assert p.can_see("x", "confidential", "public_topics/society") and not p.can_see("x", "internal", "base")
