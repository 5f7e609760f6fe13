"""Raster maps over real HTTP: XYZ and CGCS2000 tiles, Terrain-RGB, TileJSON, WMTS parsed with OWSLib."""

from __future__ import annotations

import io

import morecantile
import numpy as np
import pytest
from PIL import Image

from tests.tiles.server_support import LON0, LAT0, Served, served  # noqa: F401
from tiles.raster import decode_terrain_rgb, get_tms

pytestmark = pytest.mark.slow
WMQ = morecantile.tms.get("WebMercatorQuad")


def _image(content: bytes) -> Image.Image:
    return Image.open(io.BytesIO(content))


@pytest.mark.parametrize(("fmt", "pil", "mode"), [("png", "PNG", "RGBA"), ("jpg", "JPEG", "RGB"),
                                                  ("webp", "WEBP", "RGB")])
def test_ortho_xyz_tiles(served: Served, fmt: str, pil: str, mode: str) -> None:
    t = WMQ.tile(LON0, LAT0, 17)
    with served.client() as c:
        r = c.get(f"/maps/ortho/{t.z}/{t.x}/{t.y}.{fmt}")
    assert r.status_code == 200 and r.headers["content-type"] == {"png": "image/png", "jpg": "image/jpeg",
                                                                  "webp": "image/webp"}[fmt]
    img = _image(r.content)
    assert img.format == pil and img.size == (256, 256) and img.mode.startswith(mode)


def test_dem_tiles_are_terrain_rgb_with_the_right_heights(served: Served) -> None:
    t = WMQ.tile(LON0, LAT0, 16)
    with served.client() as c:
        r = c.get(f"/maps/dem/{t.z}/{t.x}/{t.y}.png")
        assert c.get(f"/maps/dem/{t.z}/{t.x}/{t.y}.jpg").status_code == 400  # lossy would corrupt heights
    rgb = np.asarray(_image(r.content).convert("RGB")).transpose(2, 0, 1)
    h = decode_terrain_rgb(rgb)
    valid = h[h != 0]
    # the DEM rises 0.1 m per 2-m pixel from 1050 m across 256 pixels
    assert 1050.0 <= valid.min() and valid.max() <= 1050.0 + 25.6 + 0.1
    assert valid.max() - valid.min() > 5


def test_cgcs2000_tiles(served: Served) -> None:
    tms = get_tms("CGCS2000Quad")
    t = tms.tile(LON0, LAT0, 16)
    with served.client() as c:
        r = c.get(f"/maps/ortho/CGCS2000Quad/{t.z}/{t.x}/{t.y}.png")
        assert r.status_code == 200 and _image(r.content).size == (256, 256)
        assert c.get(f"/maps/ortho/CGCS2000Quad/1/4/0.png").status_code == 400  # level 1 is 4 x 2
        assert c.get(f"/maps/ortho/CGCS2000Quad/1/3/1.png").status_code == 404  # valid, no data there


def test_conditional_and_errors(served: Served) -> None:
    t = WMQ.tile(LON0, LAT0, 17)
    with served.client() as c:
        r = c.get(f"/maps/ortho/{t.z}/{t.x}/{t.y}.png")
        assert c.get(f"/maps/ortho/{t.z}/{t.x}/{t.y}.png", headers={"If-None-Match": r.headers["etag"]}
                     ).status_code == 304
        assert c.get("/maps/ortho/3/0/0.png").status_code == 404
        assert c.get("/maps/ortho/3/8/0.png").status_code == 400
        assert c.get("/maps/ortho/30/0/0.png").status_code == 400
        assert c.get(f"/maps/ortho/{t.z}/{t.x}/{t.y}.gif").status_code == 400
        assert c.get(f"/maps/ortho/Mars/{t.z}/{t.x}/{t.y}.png").status_code == 400
        assert c.get(f"/maps/nope/{t.z}/{t.x}/{t.y}.png").json()["code"] == "NotFound"
        assert c.get(f"/maps/..%2F..%2Fetc%2Fpasswd/{t.z}/{t.x}/{t.y}.png").status_code == 404


def test_tilejson(served: Served) -> None:
    with served.client() as c:
        tj = c.get("/maps/ortho/tilejson.json").json()
        dem = c.get("/maps/dem/tilejson.json", params={"format": "webp"}).json()
    assert tj["tilejson"] == "3.0.0" and tj["tiles"][0].endswith("/maps/ortho/WebMercatorQuad/{z}/{x}/{y}.png")
    assert tj["bounds"][0] < LON0 < tj["bounds"][2] and tj["minzoom"] <= tj["maxzoom"]
    assert dem["encoding"] == "mapbox" and dem["tiles"][0].endswith(".webp")


def test_wmts_capabilities_parse_with_owslib_and_tiles_come_back(served: Served) -> None:
    owslib = pytest.importorskip("owslib.wmts", reason="pip install owslib (the test extra)")
    with served.client() as c:
        kvp = c.get("/wmts", params={"SERVICE": "WMTS", "REQUEST": "GetCapabilities"})
        rest = c.get("/wmts/1.0.0/WMTSCapabilities.xml")
    assert kvp.headers["content-type"].startswith("application/xml") and kvp.text == rest.text
    wmts = owslib.WebMapTileService(f"{served.base}/wmts", xml=kvp.content)
    assert set(wmts.contents) == {"ortho", "dem"}
    assert set(wmts.tilematrixsets) == {"WebMercatorQuad", "CGCS2000Quad"}
    cg = wmts.tilematrixsets["CGCS2000Quad"]
    assert cg.crs == "urn:ogc:def:crs:EPSG::4490"
    assert cg.tilematrix["0"].topleftcorner == (90.0, -180.0) and cg.tilematrix["0"].matrixwidth == 2
    layer = wmts.contents["ortho"]
    assert layer.boundingBoxWGS84[0] < LON0 < layer.boundingBoxWGS84[2]
    assert "image/jpeg" in layer.formats
    t = WMQ.tile(LON0, LAT0, 17)
    template = next(u["template"] for u in layer.resourceURLs if u["format"] == "image/png")
    url = template.replace("{TileMatrixSet}", "WebMercatorQuad").replace("{TileMatrix}", "17") \
        .replace("{TileCol}", str(t.x)).replace("{TileRow}", str(t.y))
    limits = layer.tilematrixsetlinks["WebMercatorQuad"].tilematrixlimits["17"]
    assert limits.mintilecol <= t.x <= limits.maxtilecol and limits.mintilerow <= t.y <= limits.maxtilerow
    with served.client() as c:
        assert _image(c.get(url).content).size == (256, 256)
        kvp_tile = c.get("/wmts", params={"SERVICE": "WMTS", "REQUEST": "GetTile", "LAYER": "ortho",
                                          "TILEMATRIXSET": "WebMercatorQuad", "TILEMATRIX": "17",
                                          "TILEROW": t.y, "TILECOL": t.x, "FORMAT": "image/png"})
        assert kvp_tile.status_code == 200 and kvp_tile.content == c.get(url).content
        assert c.get("/wmts", params={"REQUEST": "GetFeatureInfo"}).status_code == 400
        assert c.get("/wmts", params={"REQUEST": "GetTile", "LAYER": "ortho"}).status_code == 400
