"""The lean path for cached 3D Tiles files answers exactly like the application, and the tile caches and the MVT
workspace hold under concurrent first requests."""

from __future__ import annotations

import gzip
import threading

import httpx
import mapbox_vector_tile
import morecantile
import pytest

from layers import LayerStore
from tests.tiles.server_support import LAT0, LON0, Served, running_server, served  # noqa: F401
from tiles.mvt import MercatorWorkspace, VectorTileLayer

pytestmark = pytest.mark.slow
WMQ = morecantile.tms.get("WebMercatorQuad")
_HOP = {"date", "server"}


def _answer(r: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    return r.status_code, {k: v for k, v in r.headers.items() if k not in _HOP}, r.content


def _uri(served: Served) -> str:
    with served.client() as c:
        return str(c.get("/3dtiles/box/tileset.json").json()["root"]["content"]["uri"])


@pytest.mark.parametrize("headers", [
    {}, {"Accept-Encoding": "gzip"}, {"Range": "bytes=0-99"}, {"Range": "bytes=999999999-"},
    {"Origin": "https://viewer.example"},
])
def test_cached_file_answers_like_the_application(served: Served, headers: dict[str, str]) -> None:
    """The first request fills the file cache through the route; the next ones take the lean path; a request with
    a key always goes through the route. All three answers must agree (public model: a key changes nothing)."""
    served.catalog.files._items.clear()  # type: ignore[attr-defined]
    for name in ("tileset.json", _uri(served)):
        url = f"/3dtiles/box/{name}"
        served.catalog.files._items.clear()  # type: ignore[attr-defined]
        with served.client() as c:
            first = _answer(c.get(url, headers=headers))  # cache miss: FastAPI route
            again = _answer(c.get(url, headers=headers))  # cache hit: lean path
            head = c.head(url, headers=headers)
        with served.client("internal") as c:
            keyed = _answer(c.get(url, headers=headers))  # a key: FastAPI route
        assert first == again == keyed
        assert head.status_code == first[0] and head.headers["etag"] == first[1]["etag"] and not head.content


def test_304_and_vary_on_the_lean_path(served: Served) -> None:
    url = f"/3dtiles/box/{_uri(served)}"
    with served.client() as c:
        etag = c.get(url).headers["etag"]
        r = c.get(url, headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.headers["etag"] == etag
    assert r.headers["vary"].startswith("Accept-Encoding") and r.headers["vary"].endswith("X-API-Key, Authorization")


def test_restricted_or_unknown_paths_still_fall_through(served: Served) -> None:
    with served.client() as c:
        assert c.get("/3dtiles/box/").status_code == 404
        assert c.get("/3dtiles/nope/tileset.json").json()["code"] == "NotFound"
        assert c.post("/3dtiles/box/tileset.json").status_code == 405
    with served.client("revoked") as c:
        assert c.get("/3dtiles/box/tileset.json").status_code == 401


def test_tiles_come_back_identical_from_the_cache(served: Served) -> None:
    t = WMQ.tile(LON0 + 0.003, LAT0 + 0.003, 15)
    with served.client() as c:
        mvt = [c.get(f"/tiles/shelters/{t.z}/{t.x}/{t.y}.mvt", headers={"Accept-Encoding": "gzip"}) for _ in range(2)]
        png = [c.get(f"/maps/ortho/{t.z}/{t.x}/{t.y}.png") for _ in range(2)]
    for a, b in (mvt, png):
        assert a.status_code == b.status_code == 200 and a.content == b.content
        assert a.headers["etag"] == b.headers["etag"]
    assert mvt[0].headers["content-encoding"] == "gzip"
    assert len(mapbox_vector_tile.decode(mvt[0].content)["shelters"]["features"]) > 0


def test_first_tiles_of_several_layers_at_once(served: Served) -> None:
    """Layers are projected into one workspace on their first tile; concurrent first tiles must not collide."""
    with LayerStore(served.store, read_only=True) as store:
        workspace = MercatorWorkspace()
        layers = [VectorTileLayer.from_store(store, n, workspace=workspace)
                  for n in ("shelters", "sensors", "hazards")] * 3
        results: list[int] = []
        errors: list[BaseException] = []

        def cut(layer: VectorTileLayer) -> None:
            try:
                results.append(layer.tile(0, 0, 0).features)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=cut, args=(layer,)) for layer in layers]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        workspace.close()
    assert not errors
    assert sorted(results) == sorted([200, 30, 0] * 3)  # the 50-m squares vanish at z0


@pytest.mark.parametrize("headers", [
    {}, {"Accept-Encoding": "gzip"}, {"Origin": "https://viewer.example"}, {"If-None-Match": "*"},
    {"Accept-Encoding": "gzip", "If-None-Match": "etag"}, {"If-None-Match": "etag-gzip"},
])
def test_lean_path_answers_itself_as_the_route_does(served: Served, headers: dict[str, str]) -> None:
    """The lean path answers a cached file before any middleware, and its status, headers and body are those the
    route sends through the middleware (asked with a key, which always takes the route)."""
    import asyncio

    from tiles.server import create_app

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    for name in ("tileset.json", _uri(served)):
        url = f"/3dtiles/box/{name}"
        with served.client() as c:
            etag = c.get(url).headers["etag"]  # fills the file cache
        if "If-None-Match" in headers:
            headers = {**headers, "If-None-Match": {"etag": etag, "etag-gzip": etag[:-1] + '-gzip"'}.get(
                headers["If-None-Match"], headers["If-None-Match"])}
        with served.client("internal") as c:
            route = _answer(c.get(url, headers=headers))
        with served.client() as c:
            sent_headers = c.build_request("GET", url, headers=headers).headers.raw  # what httpx sends, as bytes
        sent.clear()
        scope = {"type": "http", "method": "GET", "path": url, "query_string": b"", "client": ("127.0.0.1", 1),
                 "headers": [(k.lower(), v) for k, v in sent_headers]}
        app = create_app(catalog=served.catalog)  # type: ignore[arg-type]
        assert app.fast_path is not None
        assert asyncio.run(app.fast_path.try_answer(scope, send))  # type: ignore[arg-type]
        lean_headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}  # type: ignore[attr-defined]
        body: bytes = sent[1]["body"]  # type: ignore[assignment]
        if lean_headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)  # as httpx hands the route's body over
        lean = (sent[0]["status"], lean_headers, body)
        assert list(lean[1]) == list(route[1])  # same headers in the same order
        assert lean == route
