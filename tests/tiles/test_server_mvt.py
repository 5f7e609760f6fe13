"""Vector tiles over real HTTP: OGC API Tiles and XYZ, decoded with mapbox-vector-tile; 204, ETag/304, TileJSON."""

from __future__ import annotations

import gzip

import mapbox_vector_tile
import morecantile
import pytest

from layers import LayerStore
from tiles.mvt import MvtOptions, VectorTileLayer

from tests.tiles.server_support import LON0, LAT0, Served, points_layer, served  # noqa: F401

pytestmark = pytest.mark.slow
WMQ = morecantile.tms.get("WebMercatorQuad")


def _expected_in(tile: morecantile.Tile) -> set[str]:
    b = WMQ.bounds(tile)
    gdf = points_layer(200)
    return set(gdf.cx[b.left:b.right, b.bottom:b.top]["名称"])


def test_ogc_tile_decodes_to_the_features_inside_it(served: Served) -> None:
    t = WMQ.tile(LON0 + 0.003, LAT0 + 0.003, 16)
    with served.client() as c:
        r = c.get(f"/collections/shelters/tiles/WebMercatorQuad/{t.z}/{t.y}/{t.x}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    layer = mapbox_vector_tile.decode(r.content)["shelters"]
    assert layer["extent"] == 4096
    inside = {f["properties"]["名称"] for f in layer["features"]
              if all(0 <= v <= 4096 for v in f["geometry"]["coordinates"])}
    assert inside == _expected_in(t) and inside
    f = layer["features"][0]
    assert set(f["properties"]) == {"名称", "capacity", "kind"} and isinstance(f["id"], int)


def test_xyz_alias_serves_the_same_tile_gzipped_when_asked(served: Served) -> None:
    t = WMQ.tile(LON0 + 0.003, LAT0 + 0.003, 15)
    with served.client() as c:
        a = c.get(f"/collections/shelters/tiles/WebMercatorQuad/{t.z}/{t.y}/{t.x}", headers={"Accept-Encoding": "identity"})
        b = c.get(f"/tiles/shelters/{t.z}/{t.x}/{t.y}.mvt", headers={"Accept-Encoding": "gzip"})
    assert b.headers["content-encoding"] == "gzip" and b.content == a.content
    assert mapbox_vector_tile.decode(gzip.decompress(gzip.compress(a.content)))


def test_polygons_and_low_zoom(served: Served) -> None:
    z12 = WMQ.tile(LON0 + 0.006, LAT0 + 0.00025, 12)
    with served.client("confidential") as c:
        assert c.get("/tiles/hazards/0/0/0.mvt").status_code == 204  # 50-m squares are below one unit at z0
        r = c.get(f"/tiles/hazards/{z12.z}/{z12.x}/{z12.y}.mvt")
    feats = mapbox_vector_tile.decode(r.content)["hazards"]["features"]
    assert len(feats) == 12 and {f["properties"]["level"] for f in feats} == {0, 1, 2, 3}
    t = WMQ.tile(LON0 + 0.00025, LAT0 + 0.00025, 18)
    with served.client("confidential") as c:
        r = c.get(f"/tiles/hazards/{t.z}/{t.x}/{t.y}.mvt")
    f = mapbox_vector_tile.decode(r.content)["hazards"]["features"]
    assert f[0]["geometry"]["type"] == "Polygon" and f[0]["properties"]["name"] == "危险源0"


def test_empty_tile_is_204(served: Served) -> None:
    with served.client() as c:
        r = c.get("/tiles/shelters/10/0/0.mvt")
        assert r.status_code == 204 and r.content == b""
        t = WMQ.tile(LON0 + 0.05, LAT0 + 0.05, 16)
        assert c.get(f"/tiles/shelters/{t.z}/{t.x}/{t.y}.mvt").status_code == 204


def test_etag_and_304(served: Served) -> None:
    t = WMQ.tile(LON0 + 0.003, LAT0 + 0.003, 14)
    url = f"/tiles/shelters/{t.z}/{t.x}/{t.y}.mvt"
    with served.client() as c:
        r = c.get(url, headers={"Accept-Encoding": "identity"})
        etag = r.headers["etag"]
        assert r.headers["cache-control"] == "public, max-age=3600"
        again = c.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.headers["etag"] == etag
        other = c.get(f"/tiles/shelters/{t.z}/{t.x + 1}/{t.y}.mvt", headers={"If-None-Match": etag})
        assert other.status_code in (200, 204) and other.headers["etag"] != etag


@pytest.mark.parametrize("path", [
    "/tiles/shelters/3/8/0.mvt", "/tiles/shelters/3/0/8.mvt", "/tiles/shelters/-1/0/0.mvt",
    "/tiles/shelters/25/0/0.mvt", "/tiles/shelters/x/0/0.mvt", "/tiles/shelters/99999999999999999999/0/0.mvt",
    "/collections/shelters/tiles/WebMercatorQuad/2/0/4", "/collections/shelters/tiles/OtherTMS",
])
def test_out_of_range_tiles_are_400(served: Served, path: str) -> None:
    with served.client() as c:
        r = c.get(path)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "InvalidParameterValue"


def test_unknown_layer_tile_is_404(served: Served) -> None:
    with served.client() as c:
        assert c.get("/tiles/nope/0/0/0.mvt").status_code == 404
        assert c.get("/collections/nope/tiles/WebMercatorQuad/0/0/0").json()["code"] == "NotFound"


def test_tilejson_and_ogc_tileset(served: Served) -> None:
    with served.client() as c:
        tj = c.get("/tiles/shelters/tilejson.json").json()
        ts = c.get("/collections/shelters/tiles/WebMercatorQuad").json()
        sets = c.get("/collections/shelters/tiles").json()
    assert tj["tilejson"] == "3.0.0" and tj["tiles"] == [f"{served.base}/tiles/shelters/{{z}}/{{x}}/{{y}}.mvt"]
    assert tj["vector_layers"][0]["id"] == "shelters"
    assert tj["vector_layers"][0]["fields"] == {"名称": "String", "capacity": "Number", "kind": "String"}
    assert LON0 <= tj["bounds"][0] < tj["bounds"][2] <= LON0 + 0.01
    item = next(link for link in ts["links"] if link["rel"] == "item")
    assert item["href"].endswith("/collections/shelters/tiles/WebMercatorQuad/{tileMatrix}/{tileRow}/{tileCol}")
    assert len(sets["tilesets"]) == 1


def test_feature_cap_thins_dense_tiles(served: Served) -> None:
    with LayerStore(served.store, read_only=True) as store:
        full = VectorTileLayer.from_store(store, "shelters").tile(0, 0, 0)
        capped = VectorTileLayer.from_store(store, "shelters", MvtOptions(max_features=50)).tile(0, 0, 0)
    assert full.features == 200
    assert 40 <= capped.features <= 50
    ids = [f["id"] for f in mapbox_vector_tile.decode(capped.content)["shelters"]["features"]]
    assert all(i % 4 == 0 for i in ids)
