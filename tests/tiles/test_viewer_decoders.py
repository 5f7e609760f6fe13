"""Compressed tiles in the viewer with nothing fetched off the host: `cim serve` sends the Draco decoder and the Basis
Universal module (KTX2 textures) that deck.gl's bundle would otherwise fetch from www.gstatic.com and unpkg.com
(tiles.decoders), and the page points loaders.gl at them. The sample city's level-2 model (plus a yes/no attribute)
built with `--compression draco --textures ktx2`, in headless Chromium over real HTTP."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.support.browser import wait_viewer_drawn
from tests.tiles.server_support import running_server

VIEWPORT = (900, 600)


@dataclass
class Served:
    base: str
    model: Path
    building: dict[str, Any]
    ortho_mean: np.ndarray  # (3,) mean RGB of the orthophoto around the building


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from cim.build import build_city
    from cim.sample import default_sample
    from cim.tiling import SYNCHRONOUS
    from tiles.compression import GlbOptions
    from tiles.decoders import DECODERS, available_decoders
    from tiles.server import ServerSettings, create_app
    from tiles.textures import TextureEncoderMissing, basisu_path

    if available_decoders() != list(DECODERS):
        pytest.skip("the decoders are not installed: run bin/setup (npm @loaders.gl/draco, @loaders.gl/textures)")
    try:
        basisu_path()
    except TextureEncoderMissing as exc:
        pytest.skip(str(exc))
    import geopandas as gpd

    city = default_sample()
    out = tmp_path_factory.mktemp("decoders") / "city"
    # a yes/no attribute: a BOOLEAN column (loaders.gl 4.4.3 cannot decode one; the viewer reads it itself)
    footprints = gpd.read_file(city.buildings)
    footprints["listed"] = np.arange(len(footprints)) % 3 == 0
    buildings = out.parent / "buildings.gpkg"
    footprints.to_file(buildings)
    build_city(out, dem=city.dem, ortho=city.ortho, buildings=buildings, scheduler=SYNCHRONOUS,
               glb=GlbOptions(compression="draco", textures="ktx2"))
    fp = footprints.to_crs(4326)
    centre = fp.geometry.union_all().centroid
    pts = fp.geometry.representative_point()
    row = fp.iloc[int(np.argmin(pts.distance(centre).to_numpy()))]
    p = row.geometry.representative_point()
    from layers.store import LayerStore

    store = out.parent / "city.duckdb"  # an empty store: the sensors panel asks the store's routes
    with LayerStore(store):
        pass
    app = create_app(ServerSettings(store=store, models={"city": out}, log_requests=False,
                                    access_file=tmp_path_factory.mktemp("keys") / "keys.json"))
    import rasterio
    from rasterio.windows import from_bounds

    c = gpd.GeoSeries([row.geometry.representative_point()], crs=4326).to_crs(city.crs).iloc[0]
    with rasterio.open(city.ortho) as src:  # zoom 15.5 at 40 degrees north: 600 x 500 pixels are ~2 x 1.7 km
        rgb = src.read([1, 2, 3], window=from_bounds(c.x - 800, c.y - 600, c.x + 800, c.y + 600, src.transform))
    with running_server(app) as base:
        yield Served(base, out, {"code": row["code"], "lon": p.x, "lat": p.y, "use": row["use"],
                                 "listed": bool(row["listed"]), "height": float(row["height"])},
                     rgb.reshape(3, -1).mean(axis=1))


def test_the_server_sends_each_decoder_as_installed(served: Served) -> None:
    from tiles.decoders import DECODERS, decoder_path

    with httpx.Client(base_url=served.base, timeout=60) as c:
        for name, dec in DECODERS.items():
            r = c.get(f"/viewer/decoders/{name}", headers={"Accept-Encoding": "gzip"})
            assert r.status_code == 200, name
            assert r.headers["content-type"] == dec.media_type
            assert r.content == decoder_path(name).read_bytes()  # httpx undoes the gzip
            assert r.headers.get("content-encoding") == "gzip" and r.headers.get("etag")
        missing = c.get("/viewer/decoders/crunch.js")
        assert missing.status_code == 404 and "crunch.js" in missing.text


def test_the_model_is_draco_and_ktx2(served: Served) -> None:
    from tiles.gltf import parse_glb

    used = {part: set() for part in ("terrain", "buildings")}
    for part, found in used.items():
        for g in (served.model / part).rglob("*.glb"):
            found.update(parse_glb(g.read_bytes())[0].get("extensionsUsed", []))
    assert "KHR_draco_mesh_compression" in used["buildings"] and "KHR_texture_basisu" in used["terrain"]


@pytest.mark.browser
@pytest.mark.slow
def test_viewer_draws_and_picks_draco_and_ktx2_tiles_with_nothing_off_the_host(served: Served) -> None:
    from tests.support.browser import chromium_page

    with chromium_page(viewport=VIEWPORT, timeout_s=240) as bp:
        page = bp.page
        page.goto(f"{served.base}/")
        page.wait_for_function("window.cimViewer && cimViewer.loaded()", timeout=180_000)
        decoders = page.evaluate("cimViewer.config.decoders")
        assert set(decoders) >= {"draco_wasm_wrapper.js", "draco_decoder.wasm", "basis_encoder.js"}
        b = served.building
        page.evaluate(f"""() => {{ const v = cimViewer.cim.viewer;
            v.setViewState({{longitude: {b['lon']}, latitude: {b['lat']}, zoom: 17.5, pitch: 0, bearing: 0}}); }}""")
        w, h = page.evaluate("[document.getElementById('map').clientWidth, "
                             "document.getElementById('map').clientHeight]")
        # the building's triangles and feature IDs came through Draco, its code from the tile's property table
        page.wait_for_function(f"(() => {{ const f = cimViewer.cim.picking.featureAtPixel({w / 2}, {h / 2}); "
                               f"return f && f.properties.code === '{b['code']}'; }})()", timeout=180_000)
        # the picked row, read by picking.js from the property table: an ENUM column (tiles.gltf: category strings)
        # as its name, a BOOLEAN, a STRING and a FLOAT64 as the footprints hold them
        picked = page.evaluate(f"cimViewer.cim.picking.featureAtPixel({w / 2}, {h / 2}).properties")
        assert picked["use"] == b["use"] and picked["listed"] is b["listed"] and picked["code"] == b["code"]
        assert picked["height"] == pytest.approx(b["height"], abs=1e-9)
        page.wait_for_function("cimViewer.loaded()", timeout=180_000)
        page.wait_for_timeout(800)
        # both models' tiles loaded (the KTX2 terrain through the Basis module)
        loaded = page.evaluate("""(() => { const lm = cimViewer.cim.viewer.deck.layerManager;
            return lm.getLayers().filter(l => l.id === 'model:city:terrain' || l.id === 'model:city:buildings')
              .map(l => l.state.tileset3d.tiles.filter(t => t.content && t.content.gltf).length); })()""")
        assert len(loaded) == 2 and min(loaded) >= 1, loaded
        paths = [r.split("?")[0] for r in bp.log.requests]
        for name in ("draco_wasm_wrapper.js", "draco_decoder.wasm", "basis_encoder.js", "basis_encoder.wasm"):
            assert any(p.endswith(f"/viewer/decoders/{name}") for p in paths), name
        # the KTX2 terrain is drawn with its texture: seen from above with the buildings hidden, the map shows the
        # orthophoto's colours (luma.gl left compressed mip chains incomplete, and WebGL drew them black)
        page.evaluate(f"""() => {{ const v = cimViewer.cim.viewer; for (const id of v.order) v.setVisible(id, false);
            v.setVisible('model:city:terrain', true);
            v.setViewState({{longitude: {b['lon']}, latitude: {b['lat']}, zoom: 15.5, pitch: 0, bearing: 0}}); }}""")
        wait_viewer_drawn(page, timeout_s=180)
        shot = np.asarray(Image.open(io.BytesIO(page.locator("#map").screenshot())).convert("RGB"), float)
        drawn = shot[40:-60, 40:-60].reshape(-1, 3)  # clear of the scale bar and the compass
        # the textured terrain is unlit (KHR_materials_unlit): the orthophoto's own colours, 1.02-1.06 seen; lit by
        # the viewer's lights it drew at 0.65, and 0.26 when black
        ratio = drawn.mean(axis=0) / served.ortho_mean
        assert np.all((ratio > 0.85) & (ratio < 1.2)), (drawn.mean(axis=0), served.ortho_mean)
        assert drawn.std(axis=0).mean() > 15  # the orthophoto's detail, not a flat fill
        assert bp.log.console_errors == [] and bp.log.page_errors == []
        assert bp.log.off_host() == []
