"""`tiles.raster`: the reader's tile-in-dataset test against rio-tiler's own, tile by tile around a COG's edges; the
WMTS capabilities frame shared by the raster maps and the flood runs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import morecantile
from rio_tiler.io import Reader

from tests.tiles.server_support import write_ortho_cog
from tiles.raster import _Reader, wmts_document, wmts_layer, wmts_xml

_OWS = {"w": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1",
        "xlink": "http://www.w3.org/1999/xlink"}


def test_tile_exists_agrees_with_rio_tiler_around_the_edges(tmp_path: Path) -> None:
    cog = write_ortho_cog(tmp_path / "ortho.tif", size=512, res=1.0)  # EPSG:4547, 512 m square
    for tms_id in ("WebMercatorQuad", "WGS1984Quad"):
        tms = morecantile.tms.get(tms_id)
        with Reader(str(cog), tms=tms) as theirs, _Reader(str(cog), tms=tms) as ours:
            west, south, east, north = theirs.get_geographic_bounds(tms.rasterio_geographic_crs)
            checked = inside = 0
            for z in (14, 17):
                ul = tms.tile(west, north, z, truncate=True)
                lr = tms.tile(east, south, z, truncate=True)
                for x in range(ul.x - 2, lr.x + 3):
                    for y in range(ul.y - 2, lr.y + 3):
                        expected = theirs.tile_exists(x, y, z)
                        assert ours.tile_exists(x, y, z) == expected, (tms_id, z, x, y)
                        checked += 1
                        inside += expected
            assert checked > 40 and 0 < inside < checked


def test_tiles_through_kept_views_match_rio_tiler_read_directly(tmp_path: Path) -> None:
    """Tiles read through a map's kept warped views equal rio-tiler's own tile of the COG (a colour gradient, so a
    value difference is a position difference: 2 levels = 4 source pixels) and a DEM plane to the centimetre (0.1 m
beside its nodata block), on
    both tile matrix sets; the views are made once and reused."""
    import numpy as np

    from tests.tiles.server_support import write_dem_cog
    from tiles.raster import RasterMap, get_tms

    ortho = RasterMap("ortho", write_ortho_cog(tmp_path / "ortho.tif", size=512, res=1.0), "image")
    dem = RasterMap("dem", write_dem_cog(tmp_path / "dem.tif"), "dem")
    for m, kw in ((ortho, {"indexes": (1, 2, 3)}),
                  (dem, {"indexes": 1, "resampling_method": "bilinear", "reproject_method": "bilinear"})):
        for tms_id in ("WebMercatorQuad", "CGCS2000Quad"):
            tms = get_tms(tms_id)
            with Reader(str(m.path), tms=tms) as ref:
                lo, hi = m.zoom_range(tms)
                assert (lo, hi) == (ref.minzoom, ref.maxzoom)
                for z in range(lo - 1, hi + 2):
                    tiles = list(tms.tiles(*m.info.bounds, [z]))
                    for t in tiles[len(tiles) // 2: len(tiles) // 2 + 1]:
                        a = ref.tile(t.x, t.y, t.z, **kw)
                        with m._view(tms) as view:
                            b = view.reader.tile(t.x, t.y, t.z, **kw)
                        assert ((a.mask > 0) == (b.mask > 0)).mean() > 0.99, (m.name, tms_id, t)
                        both = (a.mask > 0) & (b.mask > 0)
                        diff = np.abs(a.data.astype(float) - b.data.astype(float))[:, both]
                        assert diff.size, (m.name, tms_id, t)
                        if m.kind == "image":
                            assert diff.max() <= 2, (m.name, tms_id, t)
                        else:  # beside the nodata block one interpolation more shows; Terrain-RGB steps 0.1 m
                            assert np.percentile(diff, 95) <= 0.01 and diff.max() <= 0.1, (m.name, tms_id, t)
            assert len(m._idle[tms_id]) == 1  # one view made, reused for every tile
        m.close()


def test_concurrent_tiles_share_at_most_max_views(tmp_path: Path) -> None:
    """Eight threads asking tiles at once: every tile is right (the same bytes as asked alone) and the map never
    makes more than MAX_VIEWS views per tile matrix set."""
    from concurrent.futures import ThreadPoolExecutor

    from tiles.raster import MAX_VIEWS, RasterMap, get_tms

    cog = write_ortho_cog(tmp_path / "ortho.tif", size=512, res=1.0)
    tms = get_tms("WebMercatorQuad")
    alone = RasterMap("ortho", cog, "image")
    tiles = [t for t in tms.tiles(*alone.info.bounds, [17]) if alone.tile_exists(tms, t.z, t.x, t.y)][:16]
    expected = [alone.tile(tms.id, t.z, t.x, t.y, "png").content for t in tiles]
    shared = RasterMap("ortho", cog, "image")
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda t: shared.tile(tms.id, t.z, t.x, t.y, "png").content, tiles * 3))
    assert got == expected * 3
    assert 1 <= shared._made[tms.id] <= MAX_VIEWS and len(shared._idle[tms.id]) == shared._made[tms.id]
    alone.close()
    shared.close()


def _bindings(doc: ET.Element, op: str) -> list[tuple[str, str]]:
    """(href, encoding) of each HTTP GET binding of the operation `op`."""
    gets = doc.findall(f".//ows:Operation[@name='{op}']/ows:DCP/ows:HTTP/ows:Get", _OWS)
    return [(g.get(f"{{{_OWS['xlink']}}}href", ""), g.findtext(".//ows:AllowedValues/ows:Value", "", _OWS))
            for g in gets]


def test_wmts_frame_lists_kvp_and_restful_bindings_and_a_layers_head() -> None:
    root, contents = wmts_document("城市 maps", "http://h/base", "?api_key=k", abstract="how to add a key")
    layer = wmts_layer(contents, "depth", "Water depth (m)", (113.1, 40.0, 113.25, 40.5))
    doc = ET.fromstring(wmts_xml(root).encode())
    assert wmts_xml(root).startswith('<?xml version="1.0" encoding="UTF-8"?>\n<')
    assert doc.get("version") == "1.0.0" and layer in contents
    ident = doc.find("ows:ServiceIdentification", _OWS)
    assert ident is not None
    assert [ident.findtext(f"ows:{t}", None, _OWS) for t in ("Title", "Abstract", "ServiceType")] == [
        "城市 maps", "how to add a key", "OGC WMTS"]
    assert _bindings(doc, "GetCapabilities") == [("http://h/base/wmts?api_key=k", "KVP"),
                                                 ("http://h/base/wmts/1.0.0/WMTSCapabilities.xml?api_key=k",
                                                  "RESTful")]
    assert _bindings(doc, "GetTile") == [("http://h/base/wmts?api_key=k", "KVP")]
    layers = doc.findall("w:Contents/w:Layer", _OWS)
    assert len(layers) == 1
    head = layers[0]
    assert head.findtext("ows:Identifier", None, _OWS) == "depth"
    assert head.findtext("ows:Title", None, _OWS) == "Water depth (m)"
    assert head.findtext("ows:WGS84BoundingBox/ows:LowerCorner", None, _OWS) == "113.1 40.0"
    assert head.findtext("ows:WGS84BoundingBox/ows:UpperCorner", None, _OWS) == "113.25 40.5"
    style = head.find("w:Style", _OWS)
    assert style is not None and style.get("isDefault") == "true"
    assert style.findtext("ows:Identifier", None, _OWS) == "default"


def test_wmts_frame_without_restful_capabilities_or_abstract() -> None:
    root, _ = wmts_document("run", "http://h/flood/r1", restful=False)
    doc = ET.fromstring(wmts_xml(root).encode())
    assert _bindings(doc, "GetCapabilities") == [("http://h/flood/r1/wmts", "KVP")]
    assert doc.find("ows:ServiceIdentification/ows:Abstract", _OWS) is None
    contents = doc.find("w:Contents", _OWS)
    assert contents is not None and len(contents) == 0
