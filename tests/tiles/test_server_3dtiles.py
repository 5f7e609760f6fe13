"""3D Tiles over real HTTP: media types, gzip, strong ETags and 304, byte ranges, no traversal."""

from __future__ import annotations

import gzip
import json

import pytest

from tests.tiles.server_support import Served, served  # noqa: F401
from tiles.server.auth import ANONYMOUS

pytestmark = pytest.mark.slow


def test_tileset_json_and_its_content(served: Served) -> None:
    with served.client() as c:
        r = c.get("/3dtiles/box/tileset.json")
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        doc = r.json()
        uri = doc["root"]["content"]["uri"]
        glb = c.get(f"/3dtiles/box/{uri}")
    assert glb.status_code == 200 and glb.headers["content-type"] == "model/gltf-binary"
    assert glb.content == (served.model / uri).read_bytes()
    assert glb.headers["cache-control"] == "public, max-age=3600"
    assert glb.headers["accept-ranges"] == "bytes"


def test_json_and_glb_come_gzipped_with_their_own_etag(served: Served) -> None:
    with served.client() as c:
        r = c.get("/3dtiles/box/tileset.json", headers={"Accept-Encoding": "gzip"})
        assert r.headers["content-encoding"] == "gzip"
        assert json.loads(r.content) == json.loads((served.model / "tileset.json").read_bytes())
        uri = r.json()["root"]["content"]["uri"]
        full = (served.model / uri).read_bytes()
        for _ in range(2):  # the first answer goes through the application, the second through the fast path
            g = c.get(f"/3dtiles/box/{uri}", headers={"Accept-Encoding": "gzip"})
            assert g.headers["content-encoding"] == "gzip" and g.headers["etag"].endswith('-gzip"')
            assert g.content == full and int(g.headers["content-length"]) < len(full)  # httpx decodes the body
        plain = c.get(f"/3dtiles/box/{uri}", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers and plain.content == full
        assert c.get(f"/3dtiles/box/{uri}", headers={"Accept-Encoding": "gzip", "If-None-Match": g.headers["etag"]}
                     ).status_code == 304
        # a range is cut from the identity bytes, never from the gzip form
        part = c.get(f"/3dtiles/box/{uri}", headers={"Accept-Encoding": "gzip", "Range": "bytes=0-11"})
        assert part.status_code == 206 and part.content == full[:12] and "content-encoding" not in part.headers


def test_glb_that_does_not_shrink_is_sent_as_it_is(tmp_path) -> None:
    import os

    from tiles.server.files import FileCache

    noise = tmp_path / "noise.glb"
    noise.write_bytes(os.urandom(50_000))  # like a tile that is mostly JPEG: gzip would not save a tenth
    small = tmp_path / "t.glb"
    small.write_bytes(b"glTF" + b"\0" * 4000)
    cache = FileCache()
    assert cache.get(noise).gzipped is None
    assert gzip.decompress(cache.get(small).gzipped) == small.read_bytes()


def test_strong_etag_and_304(served: Served) -> None:
    with served.client() as c:
        r = c.get("/3dtiles/box/tileset.json", headers={"Accept-Encoding": "identity"})
        etag = r.headers["etag"]
        assert etag.startswith('"') and not etag.startswith("W/")
        again = c.get("/3dtiles/box/tileset.json", headers={"If-None-Match": etag, "Accept-Encoding": "identity"})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
        gz = c.get("/3dtiles/box/tileset.json", headers={"Accept-Encoding": "gzip"})
        assert gz.headers["etag"] != etag  # another representation, another strong validator
        assert c.get("/3dtiles/box/tileset.json", headers={"If-None-Match": gz.headers["etag"],
                                                           "Accept-Encoding": "gzip"}).status_code == 304
        assert c.get("/3dtiles/box/tileset.json", headers={"If-None-Match": '"other"'}).status_code == 200


def test_range_requests(served: Served) -> None:
    with served.client() as c:
        uri = c.get("/3dtiles/box/tileset.json").json()["root"]["content"]["uri"]
        full = (served.model / uri).read_bytes()
        r = c.get(f"/3dtiles/box/{uri}", headers={"Range": "bytes=0-11"})
        assert r.status_code == 206 and r.content == full[:12]
        assert r.headers["content-range"] == f"bytes 0-11/{len(full)}"
        r = c.get(f"/3dtiles/box/{uri}", headers={"Range": "bytes=-4"})
        assert r.status_code == 206 and r.content == full[-4:]
        r = c.get(f"/3dtiles/box/{uri}", headers={"Range": f"bytes={len(full) + 10}-"})
        assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(full)}"
        r = c.get(f"/3dtiles/box/{uri}", headers={"Range": "bytes=0-3", "If-Range": '"stale"'})
        assert r.status_code == 200 and r.content == full


def test_head_request(served: Served) -> None:
    with served.client() as c:
        r = c.head("/3dtiles/box/tileset.json", headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["content-length"]) == len((served.model / "tileset.json").read_bytes())


@pytest.mark.parametrize("path", [
    "/3dtiles/box/../box/tileset.json", "/3dtiles/box/%2e%2e/%2e%2e/etc/passwd", "/3dtiles/box/..%2Fbuild.json",
    "/3dtiles/box/build.json", "/3dtiles/box/.hidden.json", "/3dtiles/nomodel/tileset.json",
    "/3dtiles/box//etc/passwd", "/3dtiles/..%2F..%2Fetc/passwd",
])
def test_no_path_traversal_and_no_unlisted_file(served: Served, path: str) -> None:
    with served.client() as c:
        r = c.get(path)
    if r.status_code == 200:  # a client normalising "../box/" back to "box/" is fine, as long as it is the tileset
        assert r.json()["asset"]["version"] == "1.1"
    else:
        assert r.status_code == 404 and r.json()["code"] == "NotFound"
        assert "secret" not in r.text and "root:" not in r.text


def test_a_model_with_restricted_security_is_hidden(served: Served) -> None:
    served.catalog.models["box"].security = "internal"
    try:
        with served.client() as c:
            assert c.get("/3dtiles/box/tileset.json").status_code == 404
            assert c.get("/catalog").json()["models"] == []
        with served.client("internal") as c:
            r = c.get("/3dtiles/box/tileset.json")
            assert r.status_code == 200 and r.headers["cache-control"].startswith("private")
    finally:
        served.catalog.models["box"].security = "public"


def test_precomputed_gzip_is_valid(served: Served) -> None:
    entry = served.catalog.model_file("box", "tileset.json", ANONYMOUS)
    assert gzip.decompress(entry.gzipped) == entry.content
