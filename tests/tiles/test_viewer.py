"""The "one map" viewer served at `/`: real headless Chromium on the demo site (sample city, level-2 model, every
manifest layer in the store), plus the identify/search library functions and routes it is built on."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.values import (
    EXPECTED,
    LAT,
    LON,
    STORE_EXPECTED,
    FrameStore,
    assert_json_properties,
    every_type_layer,
)
from tests.support.browser import wait_viewer_drawn
from tests.tiles.server_support import running_server

REPO = Path(__file__).resolve().parents[2]
BACKGROUND = (0x2B, 0x30, 0x38)  # #map background in viewer.css
VIEWPORT = (900, 600)


@dataclass
class Site:
    base: str
    key: str
    site: Any
    catalog: Any


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    from cim.demo import prepare_demo
    from tiles.server import create_app

    # one WebP quality for every texture (no per-texture choice): a faster build, same tiles to the viewer's code
    demo = prepare_demo(tmp_path_factory.mktemp("viewer") / "demo", levels=(2, 3), oblique=True, texture_quality=80)
    app = create_app(demo.settings(log_requests=False))
    with running_server(app) as base:
        yield Site(base, demo.key, demo, app.state.catalog)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: the module's temporary folder; `CIM_SCREENSHOT_DIR=docs/img` refreshes the README's
    pictures."""
    folder = os.environ.get("CIM_SCREENSHOT_DIR")
    return Path(folder) if folder else tmp_path_factory.mktemp("viewer-shots")


@pytest.fixture(scope="module")
def building(site: Site) -> dict[str, Any]:
    """A building near the middle of the city (lon/lat of a point inside it)."""
    gdf = site.catalog.store.query("buildings")
    centre = gdf.geometry.union_all().centroid
    pts = gdf.geometry.representative_point()
    row = gdf.iloc[int(np.argmin(pts.distance(centre).to_numpy()))]
    p = row.geometry.representative_point()
    return {"code": row["code"], "height": float(row["height"]), "lon": p.x, "lat": p.y}


# ------------------------------------------------------------------------------------------------ library and routes
def test_identify_lists_the_building_its_community_zone_and_nearest_shelter(site: Site, building: dict) -> None:
    from tiles.viewer import identify

    store = site.catalog.store
    result = identify(store, store.list(), building["lon"], building["lat"])
    by_layer = {r["layer"]: r for r in result["results"]}
    assert result["results"][0]["layer"] == "buildings"  # the smallest containing polygon first
    assert by_layer["buildings"]["properties"]["code"] == building["code"]
    assert by_layer["communities"]["relation"] == "contains"
    assert by_layer["height_zones"]["relation"] == "contains"
    shelter = by_layer["shelters"]
    assert shelter["relation"] == "nearest" and shelter["distance_m"] > 0
    nearest = store.query("shelters", near=(building["lon"], building["lat"]), k=1).iloc[0]
    assert shelter["properties"]["name"] == nearest["name"]


def test_identify_writes_every_value_as_json(tmp_path: Path) -> None:
    """Raw values of every kind, then every type a store column keeps (the route would fail on bytes before)."""
    from layers import LayerStore
    from tiles.viewer import identify

    cases = FrameStore()
    (hit,) = identify(cases, [cases.info], LON, LAT)["results"]
    assert_json_properties(hit["properties"], {"fid": 1, **EXPECTED})
    with LayerStore(tmp_path / "city.duckdb") as store:
        hits = identify(store, [store.info(every_type_layer(store, tmp_path))], LON, LAT)["results"]
    assert sorted(h["properties"]["fid"] for h in hits) == [1, 2]
    for h in hits:
        props = dict(h["properties"])
        assert_json_properties(props, {"fid": props["fid"], **STORE_EXPECTED[props["fid"]]})


def test_identify_route_shows_only_what_the_key_may_see(site: Site, building: dict) -> None:
    params = {"lon": building["lon"], "lat": building["lat"]}
    with httpx.Client(base_url=site.base, timeout=30) as c:
        anon = {r["layer"] for r in c.get("/identify", params=params).json()["results"]}
        full = {r["layer"] for r in c.get("/identify", params={**params, "api_key": site.key}).json()["results"]}
        assert c.get("/identify", params={"lon": 200, "lat": 0}).status_code == 400
    assert "communities" in anon and "buildings" not in anon and "hazards" not in anon
    assert {"buildings", "hazards", "height_zones", "communities"} <= full


def test_search_finds_a_standard_address_and_a_name(site: Site) -> None:
    gdf = site.catalog.store.query("buildings", limit=1, order=True)
    address = gdf.iloc[0]["address"]
    with httpx.Client(base_url=site.base, timeout=30, headers={"X-API-Key": site.key}) as c:
        hits = c.get("/search", params={"q": address}).json()["results"]
        # the demo also holds the standard addresses (layer `addresses`): the building is among the exact hits
        assert any(h["layer"] == "buildings" and h["value"] == address and h["fid"] == int(gdf.iloc[0]["fid"])
                   for h in hits), hits[:3]
        shelter = site.catalog.store.query("shelters", limit=1, order=True).iloc[0]["name"]
        hit = c.get("/search", params={"q": shelter[:4]}).json()["results"]
        assert any(h["layer"] == "shelters" and h["label"] == shelter for h in hit)
        assert c.get("/search", params={"q": ""}).status_code == 400
    with httpx.Client(base_url=site.base, timeout=30) as c:  # anonymous: buildings are internal
        assert all(h["layer"] != "buildings" for h in c.get("/search", params={"q": address}).json()["results"])


def test_root_gives_browsers_the_page_and_machines_the_landing_page(site: Site) -> None:
    with httpx.Client(base_url=site.base, timeout=30) as c:
        page = c.get("/", headers={"Accept": "text/html"})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert c.get("/", headers={"Accept": "application/json"}).json()["links"]
        bundle = c.get("/viewer/deck.js")
        assert bundle.status_code == 200 and b"createDeck" in bundle.content
        assert c.get("/viewer/nope.js").status_code == 404
    srcs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert srcs and all(s.startswith(site.base) or s.startswith("data:") for s in srcs), srcs
    assert "hazards" not in page.text  # anonymous: confidential layers are not even named


def test_page_loads_the_core_modules_then_the_panels_then_viewer_js(site: Site, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from tiles import viewer

    panels = tmp_path / "panels"
    panels.mkdir()
    (panels / "zz_probe.js").write_text("cim.register({id: 'probe'});", encoding="utf-8")
    monkeypatch.setattr(viewer, "STATIC_DIR", tmp_path)
    assert viewer.scripts()[:2] == ["core.js", "mvt.js"] and viewer.scripts()[-2:] == ["panels/zz_probe.js",
                                                                                       "viewer.js"]
    assert viewer.asset_path("panels/zz_probe.js") == (panels / "zz_probe.js", "text/javascript; charset=utf-8")
    assert viewer.asset_path("../viewer.py") is None and viewer.asset_path("panels/../core.js") is None
    monkeypatch.undo()
    with httpx.Client(base_url=site.base, timeout=30) as c:
        page = c.get("/", headers={"Accept": "text/html"}).text
        scripts = re.findall(r'<script src="[^"]*/viewer/([^"?]+)', page)
        assert scripts == ["deck.js", *viewer.scripts()]
        for name in scripts[1:]:
            r = c.get(f"/viewer/{name}")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
        assert c.get("/viewer/panels/..%2Fcore.js").status_code == 404
        assert c.get("/viewer/tiles.py").status_code == 404


def test_write_viewer_html_points_at_the_running_server(site: Site, tmp_path: Path) -> None:
    from cim.errors import OutputExistsError
    from tiles.viewer import write_viewer_html

    out = write_viewer_html(tmp_path / "city.html", site.base, api_key=site.key)
    text = out.read_text(encoding="utf-8")
    assert f"{site.base}/viewer/deck.js" in text and "hazards" in text and "api_key=" in text
    assert not re.search(r'https?://(?!127\.0\.0\.1)', text)
    with pytest.raises(OutputExistsError):
        write_viewer_html(out, site.base)


# ------------------------------------------------------------------------------------------------ in the browser
def _open(page: Any, url: str) -> None:
    page.goto(url)
    _wait_loaded(page)


def _pixels(page: Any, path: Path | None = None) -> np.ndarray:
    from PIL import Image

    shot = page.locator("#map").screenshot()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(shot)
    return np.asarray(Image.open(io.BytesIO(shot)).convert("RGB")).astype(np.int16)


def _full(page: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))


def _wait_loaded(page: Any) -> None:
    """Until the map drew its visible layers loaded (not just loaded them): then its pixels show them."""
    wait_viewer_drawn(page, timeout_s=60)


@pytest.mark.browser
@pytest.mark.slow
def test_page_shows_the_city_without_errors_or_off_host_requests(site: Site, shots: Path) -> None:
    from tests.support.browser import chromium_page

    with chromium_page(viewport=VIEWPORT, timeout_s=90) as bp:
        _open(bp.page, f"{site.base}/?api_key={site.key}")
        img = _pixels(bp.page)
        _full(bp.page, shots / "viewer-city.png")
        h, w = img.shape[:2]
        centre = img[h // 4: 3 * h // 4, w // 4: 3 * w // 4]
        assert centre.std(axis=(0, 1)).max() > 15  # not a flat canvas
        differs = np.abs(centre - np.array(BACKGROUND)).sum(axis=2) > 30
        assert differs.mean() > 0.9  # the city covers the middle of the map
        tree = bp.page.evaluate("cimViewer.config.tree.map(e => e.id)")
        assert {"map:city_ortho", "model:city:terrain", "model:city:buildings", "layer:hazards"} <= set(tree)
        # every panel of panels/ registered and started in the module structure (sensors of issue 13, planning of
        # issue 15, addresses of issue 18): each file's feature id, and the panels that have a section show one
        features = bp.page.evaluate("cim.features().map(f => f.id)")
        panel_files = {p.stem for p in (REPO / "tiles" / "static" / "viewer" / "panels").glob("*.js")}
        assert {"sensors", "planning", "addresses"} <= panel_files
        assert panel_files <= set(features), (panel_files, features)
        sections = bp.page.evaluate("[...document.querySelectorAll('#panel section[data-feature]')]"
                                    ".map(s => s.dataset.feature)")
        assert {"sensors", "planning"} <= set(sections), sections
        bp.page.evaluate("cimViewer.setMode('3d')")
        _wait_loaded(bp.page)
        _full(bp.page, shots / "viewer-3d.png")
        assert bp.log.console_errors == [] and bp.log.page_errors == []
        assert bp.log.off_host() == []


@pytest.mark.browser
@pytest.mark.slow
def test_toggling_a_layer_off_changes_the_picture(site: Site) -> None:
    from tests.support.browser import chromium_page

    with chromium_page(viewport=VIEWPORT, timeout_s=90) as bp:
        _open(bp.page, f"{site.base}/?api_key={site.key}")
        before = _pixels(bp.page)
        box = bp.page.locator('.layer[data-id="model:city:buildings"] input[type=checkbox]')
        box.uncheck()
        _wait_loaded(bp.page)
        after = _pixels(bp.page)
        assert bp.page.evaluate("cimViewer.state['model:city:buildings'].visible") is False
        changed = np.abs(before - after).sum(axis=2) > 30
        assert changed.mean() > 0.01, f"only {changed.mean():.4f} of the pixels changed"
        assert bp.log.console_errors == [] and bp.log.page_errors == []


@pytest.mark.browser
@pytest.mark.slow
def test_clicking_a_building_shows_its_code_and_height(site: Site, building: dict, shots: Path) -> None:
    from tests.support.browser import chromium_page

    with chromium_page(viewport=VIEWPORT, timeout_s=90) as bp:
        page = bp.page
        _open(page, f"{site.base}/?api_key={site.key}")
        page.evaluate(f"cimViewer.flyTo({building['lon']}, {building['lat']}, 18)")
        _wait_loaded(page)
        x, y = page.evaluate(f"cimViewer.project({building['lon']}, {building['lat']})")[:2]
        box = page.locator("#map").bounding_box()
        page.mouse.move(box["x"] + x, box["y"] + y)
        page.wait_for_timeout(200)
        page.mouse.down()
        page.wait_for_timeout(60)
        page.mouse.up()
        page.wait_for_function("cimViewer.lastIdentify && cimViewer.lastIdentify.result", timeout=30_000)
        info = page.inner_text("#info")
        hit = page.locator('#info .hit[data-layer="buildings"]')
        assert hit.count() == 1
        assert building["code"] in hit.inner_text()
        assert f"{building['height']:.2f}" in hit.inner_text()
        assert "社区" in info or "communities" in page.inner_html("#info")
        _full(page, shots / "viewer-identify.png")
        assert bp.log.console_errors == [] and bp.log.page_errors == []


@pytest.mark.browser
@pytest.mark.slow
def test_anonymous_users_see_no_confidential_layer_and_its_tiles_are_404(site: Site) -> None:
    from tests.support.browser import chromium_page

    with chromium_page(viewport=VIEWPORT, timeout_s=90) as bp:
        _open(bp.page, f"{site.base}/")
        titles = bp.page.locator(".layer").evaluate_all("els => els.map(e => e.dataset.id)")
        security = bp.page.evaluate("cimViewer.config.tree.map(e => e.security)")
        assert titles and "layer:hazards" not in titles and set(security) == {"public"}
        assert bp.log.console_errors == [] and bp.log.page_errors == []
        assert not [u for u in bp.log.requests if "/tiles/hazards/" in u]
    with httpx.Client(base_url=site.base, timeout=30) as c:
        assert c.get("/tiles/hazards/15/26696/12394.mvt").status_code == 404
        assert c.get("/tiles/hazards/tilejson.json").status_code == 404
        assert c.get("/tiles/hazards/15/26696/12394.mvt", params={"api_key": site.key}).status_code in (200, 204)


def _click(page: Any, x: float, y: float) -> None:
    box = page.locator("#map").bounding_box()
    page.mouse.move(box["x"] + x, box["y"] + y)
    page.mouse.down()
    page.mouse.up()


@pytest.mark.browser
@pytest.mark.slow
def test_search_flies_to_an_address_and_tools_measure_and_compare(site: Site, shots: Path) -> None:
    from tests.support.browser import chromium_page

    shelter = site.catalog.store.query("shelters", limit=1, order=True).iloc[0]
    with chromium_page(viewport=VIEWPORT, timeout_s=90) as bp:
        page = bp.page
        _open(page, f"{site.base}/?api_key={site.key}")
        page.fill("form.search input", shelter["name"])
        page.click("form.search button")
        page.wait_for_selector(".search-results li")
        assert shelter["name"] in page.inner_text(".search-results")
        lon, lat = page.evaluate("[cimViewer.deck.props.viewState.longitude, cimViewer.deck.props.viewState.latitude]")
        assert abs(lon - shelter.geometry.x) < 1e-4 and abs(lat - shelter.geometry.y) < 1e-4

        page.click('button[data-tool="distance"]')
        _click(page, 200, 300)
        _click(page, 400, 300)
        pts = page.evaluate("cimViewer.measure.points")
        assert len(pts) == 2
        from pyproj import Geod

        expected = Geod(ellps="GRS80").inv(pts[0][0], pts[0][1], pts[1][0], pts[1][1])[2]
        shown = float(re.search(r"([\d.]+)", page.inner_text("#status")).group(1))
        assert abs(shown - expected) / expected < 0.005  # spherical vs ellipsoidal distance
        page.click('button[data-tool="clear"]')

        page.mouse.move(10, 10)  # off the map: no hover highlight in the picture
        page.evaluate("cimViewer.goHome(); for (const id of cimViewer.cim.viewer.order) cimViewer.setVisible(id, false);"
                      "cimViewer.setCompare('map:city_ortho', 'model:city:buildings')")
        page.wait_for_timeout(300)
        # each side is a map of its own with one camera: the 3D model renders on the right-hand side too
        assert page.evaluate("cimViewer.cim.compare.decks.length") == 2
        _wait_loaded(page)
        img = _pixels(page)
        _full(page, shots / "viewer-compare.png")
        h, w = img.shape[:2]
        not_bg = np.abs(img - np.array(BACKGROUND)).sum(axis=2) > 30
        assert not_bg[:, : w // 2 - 5].mean() > 0.5  # the orthophoto fills the left
        right = not_bg[h // 4: 3 * h // 4, w // 2 + 5:]
        assert 0.05 < right.mean() < 0.9  # buildings on the dark background at the right
        page.evaluate("cimViewer.setCompare(null, null)")
        # zoomed in at the city's edge, orthophoto tiles in the corners of its lon/lat box hold no data: the server
        # answers 404 (docs/http-api.md) and Chromium logs each one; nothing else may be logged
        others = [m for m in bp.log.console_errors if "status of 404" not in m]
        assert others == [] and bp.log.page_errors == []


@pytest.mark.browser
@pytest.mark.slow
def test_picking_a_building_by_feature_id_in_l2_lod2_and_oblique(site: Site, building: dict, shots: Path) -> None:
    """A click on a building of each 3D model reads its feature ID from the mesh (EXT_mesh_features), its code from
    the tile's property table, highlights its triangles, and identify shows it beside what the layers say there.
    The tiles are built the default way: EXT_meshopt_compression + KHR_mesh_quantization (16-bit positions that the
    node's scale/translation dequantize), decoded by the bundle's own meshopt decoder (no request off the host)."""
    from tests.support.browser import chromium_page
    from tiles.gltf import parse_glb

    for model in ("city", "lod2", "oblique"):
        glbs = sorted(site.site.models[model].rglob("*.glb"))
        assert glbs, model
        used = {e for g in glbs for e in parse_glb(g.read_bytes())[0].get("extensionsUsed", [])}
        assert {"EXT_meshopt_compression", "KHR_mesh_quantization"} <= used, (model, used)

    with chromium_page(viewport=VIEWPORT, timeout_s=120) as bp:
        page = bp.page
        _open(page, f"{site.base}/?api_key={site.key}")
        for model, part in (("city", "buildings"), ("lod2", "buildings"), ("oblique", "oblique")):
            lid = f"model:{model}:{part}"
            page.evaluate(f"""() => {{ const v = cimViewer.cim.viewer; for (const id of v.order) v.setVisible(id, false);
                v.setVisible('model:{model}:terrain', true); v.setVisible('{lid}', true);
                cimViewer.cim.picking.setHighlight(null); document.getElementById('info').hidden = true;
                v.setViewState({{longitude: {building['lon']}, latitude: {building['lat']}, zoom: 18.5, pitch: 0,
                                 bearing: 0}}); }}""")
            w, h = page.evaluate("[document.getElementById('map').clientWidth, document.getElementById('map').clientHeight]")
            # the building's tile is loaded once the ray at the centre meets it (a whole model may load for longer)
            page.wait_for_function(f"(() => {{ const f = cimViewer.cim.picking.featureAtPixel({w / 2}, {h / 2}); "
                                   f"return f && f.properties.code === '{building['code']}'; }})()", timeout=150_000)
            _wait_loaded(page)
            before = _pixels(page)
            page.evaluate("window.previousIdentify = cimViewer.cim.identify.last")
            _click(page, w / 2, h / 2)
            page.wait_for_function("cimViewer.cim.identify.last && cimViewer.cim.identify.last !== window.previousIdentify",
                                   timeout=60_000)
            feature = page.evaluate("(() => { const f = cimViewer.cim.picking.highlight; return f && {layer: f.layer, "
                                    "id: f.featureId, props: f.properties}; })()")
            assert feature is not None, lid
            assert feature["layer"] == lid and feature["props"]["code"] == building["code"]
            assert isinstance(feature["id"], (int, float))
            section = page.locator(f'#info .feature3d[data-layer="{lid}"]')
            assert section.count() == 1 and building["code"] in section.inner_text()
            assert page.locator('#info .hit[data-layer="buildings"]').count() == 1  # what the layers say there
            page.evaluate("document.getElementById('info').hidden = true")
            _wait_loaded(page)
            after = _pixels(page)
            c = after[h // 2 - 2: h // 2 + 3, w // 2 - 2: w // 2 + 3].reshape(-1, 3).mean(axis=0)
            assert c[0] > 200 and c[1] > 170 and c[2] < 100, (lid, c)  # highlighted in the mesh
            b = before[h // 2 - 2: h // 2 + 3, w // 2 - 2: w // 2 + 3].reshape(-1, 3).mean(axis=0)
            assert np.abs(c - b).max() > 60, (lid, b, c)
        _full(page, shots / "viewer-pick.png")
        assert bp.log.console_errors == [] and bp.log.page_errors == []
        assert bp.log.off_host() == []


@pytest.fixture(scope="module")
def tall(site: Site) -> dict[str, Any]:
    """The largest building of 30 m or more (lon/lat of a point inside it): a section at mid-height shows."""
    gdf = site.catalog.store.query("buildings")
    gdf = gdf[gdf["height"] >= 30]
    row = gdf.iloc[int(np.argmax(gdf.geometry.area.to_numpy()))]
    p = row.geometry.representative_point()
    return {"code": row["code"], "height": float(row["height"]), "lon": p.x, "lat": p.y}


def _look_down_on(page: Any, tall: dict[str, Any]) -> tuple[int, int, str]:
    """Only the city's buildings, straight down on `tall` at zoom 18, the info panel hidden; waits until the
    map's centre pixel picks it. Returns the map's width and height (px) and the JS expression of the feature at
    its centre."""
    page.evaluate(f"""() => {{ const v = cimViewer.cim.viewer; for (const id of v.order) v.setVisible(id, false);
        v.setVisible('model:city:buildings', true); document.getElementById('info').hidden = true;
        v.setViewState({{longitude: {tall['lon']}, latitude: {tall['lat']}, zoom: 18, pitch: 0, bearing: 0}}); }}""")
    w, h = page.evaluate("[document.getElementById('map').clientWidth, document.getElementById('map').clientHeight]")
    pick = f"cimViewer.cim.picking.featureAtPixel({w / 2}, {h / 2})"
    page.wait_for_function(f"(() => {{ const f = {pick}; return f && f.properties.code === '{tall['code']}'; }})()",
                           timeout=150_000)
    return w, h, pick


@pytest.mark.browser
@pytest.mark.slow
def test_section_cuts_the_models_by_a_plane_and_a_box(site: Site, tall: dict, shots: Path) -> None:
    """Section (剖切): looking straight down on a tall building (the buildings alone, no terrain under them), a
    horizontal cut below its roof removes the roof (the ray meets the floor below the cut) and the cut face shows
    the cap colour (the block's lit floor without caps); a cut under its floor removes all of it (the background
    shows, the ray picks nothing), clearing the cut restores the picture; a box around the building keeps it, a box
    beside it cuts it away; a vertical plane through it cuts away the half on the given side."""
    from tests.support.browser import chromium_page

    with chromium_page(viewport=VIEWPORT, timeout_s=120) as bp:
        page = bp.page
        _open(page, f"{site.base}/?api_key={site.key}")
        w, h, pick = _look_down_on(page, tall)
        # the panels (live sensors, flood) add their layers once their data has come: only the buildings are shown
        page.wait_for_function("!cimViewer.cim.flood || cimViewer.cim.flood.available !== null")
        page.wait_for_timeout(1500)
        page.evaluate("""() => { const v = cimViewer.cim.viewer;
            for (const id of v.order) if (id !== 'model:city:buildings') v.setVisible(id, false); }""")
        _wait_loaded(page)
        top = page.evaluate(f"{pick}.position[2]")

        def centre() -> np.ndarray:
            _wait_loaded(page)
            px = _pixels(page)
            return px[h // 2 - 3: h // 2 + 4, w // 2 - 3: w // 2 + 4].reshape(-1, 3).mean(axis=0)

        def picked() -> str | None:
            return page.evaluate(f"(() => {{ const f = {pick}; return f ? f.properties.code : null; }})()")

        roof = centre()
        background = np.array(BACKGROUND, float)
        assert np.abs(roof - background).max() > 40, roof
        # a horizontal cut 10 m below the roof: the ray meets the building below the cut (its floor), not its roof
        planes = page.evaluate(f"cimViewer.cim.section.horizontal({top - 10})")
        assert len(planes) == 1 and planes[0]["normal"] == [0, 0, 1]
        assert page.evaluate(f"{pick}.position[2]") < top - 10 and np.abs(centre() - roof).max() > 10
        # the cut face is capped: looking down into the cut block, the cap's flat colour fills it; without caps
        # one sees the block's floor, lit
        cap = np.array(page.evaluate("cimViewer.cim.section.capColor"), float)
        capped = centre()
        assert np.abs(capped - cap).max() < 12, (capped, cap)
        page.evaluate(f"cimViewer.cim.section.horizontal({top - 10}, {{caps: false}})")
        opened = centre()
        assert np.abs(opened - cap).max() > 30 and np.abs(opened - background).max() > 12, opened
        page.evaluate(f"cimViewer.cim.section.horizontal({top - 10}, {{caps: true}})")
        assert np.abs(centre() - cap).max() < 12
        # under the building's floor: all of it is cut away, the background shows
        page.evaluate(f"cimViewer.cim.section.horizontal({top - tall['height'] - 2})")
        assert np.abs(centre() - background).max() < 12 and picked() is None
        page.evaluate("cimViewer.cim.section.clear()")
        assert np.abs(centre() - roof).max() < 12 and picked() == tall["code"]
        # a box around the building (up to 5 m over its roof) keeps it; the same box 150 m east cuts it away
        d = 0.0004
        box = (f"{{west: {tall['lon'] - d}, east: {tall['lon'] + d}, south: {tall['lat'] - d}, north: {tall['lat'] + d}, "
               f"bottom: {top - 500}, top: {top + 5}}}")
        page.evaluate(f"cimViewer.cim.section.box({box})")
        assert np.abs(centre() - roof).max() < 12 and picked() == tall["code"]
        page.evaluate(f"(() => {{ const b = {box}; b.west += 0.00175; b.east += 0.00175; cimViewer.cim.section.box(b); }})()")
        assert np.abs(centre() - background).max() < 12 and picked() is None
        # a vertical north-south plane through the building, cutting away the west: the west of the view changes
        page.evaluate("cimViewer.cim.section.clear()")
        _wait_loaded(page)
        whole = _pixels(page)
        page.evaluate(f"cimViewer.cim.section.vertical([{tall['lon']}, {tall['lat'] - d}], [{tall['lon']}, {tall['lat'] + d}], "
                      f"[{tall['lon'] - 0.01}, {tall['lat']}])")
        west, east = page.evaluate(f"""[cimViewer.cim.section.isCut({tall['lon'] - 1e-5}, {tall['lat']}, {top}),
                                         cimViewer.cim.section.isCut({tall['lon'] + 1e-5}, {tall['lat']}, {top})]""")
        assert west and not east
        _wait_loaded(page)
        px = _pixels(page)
        changed = np.abs(px - whole).max(axis=2) > 40
        assert changed[:, : w // 2 - 20].mean() > 0.05 and changed[:, w // 2 + 20:].mean() < 0.01, \
            (changed[:, : w // 2 - 20].mean(), changed[:, w // 2 + 20:].mean())
        _full(page, shots / "viewer-section.png")
        assert bp.log.console_errors == [] and bp.log.page_errors == []
@pytest.mark.browser
@pytest.mark.slow
def test_emergency_map_plays_the_storm_and_lists_impacts_and_dry_shelters(site: Site) -> None:
    """The flood panel (panels/flood.js) on the demo's storm scenario: it lists the run, its time slider changes which
    depth tiles the map asks for (the step's time in the tile URL, `max` before the first step), and it lists the
    affected buildings and the dry shelters the server's impacts report; nothing leaves the host."""
    from tests.support.browser import chromium_page

    with httpx.Client(base_url=site.base, timeout=30, headers={"X-API-Key": site.key}) as c:
        run = next(r for r in c.get("/flood").json()["runs"] if r["id"] == "storm-50y")
        impacts = c.get("/flood/storm-50y/impacts").json()
    times = [int(round(t)) for t in run["times"]]
    affected = sorted((b for b in impacts["buildings"] if b["affected"]), key=lambda b: -b["max_depth_m"])
    dry = sorted(s["name"] for s in impacts["shelters"] if s["dry"])
    assert len(times) >= 3 and affected and dry  # the scenario floods something and leaves shelters dry

    def depth_tiles(key: str) -> list[str]:
        return [u for u in bp.log.requests if f"/flood/storm-50y/depth/{key}/" in u]

    def wait_for_tiles(key: str) -> list[str]:
        for _ in range(120):
            if depth_tiles(key):
                return depth_tiles(key)
            page.wait_for_timeout(250)
        raise AssertionError(f"no depth tile of {key} requested; flood tiles asked for: "
                             f"{[u for u in bp.log.requests if '/flood/' in u][-10:]}")

    with chromium_page(viewport=VIEWPORT, timeout_s=90) as bp:
        page = bp.page
        statuses: dict[str, int] = {}
        page.on("response", lambda r: statuses.__setitem__(r.url, r.status))
        _open(page, f"{site.base}/?api_key={site.key}")
        page.wait_for_function("cim.flood && cim.flood.run === 'storm-50y' && cim.flood.impacts "
                               "&& cim.flood.impacts.summary", timeout=60_000)
        panel = page.locator('#panel section[data-feature="flood"]')
        assert "storm-50y" in panel.locator(".flood-run option").all_inner_texts()
        assert wait_for_tiles("max")  # the maximum depth first

        slider = ".flood-slider"
        assert int(panel.locator(slider).get_attribute("max")) == len(times) - 1
        for i in (len(times) // 2, len(times) - 1):
            panel.locator(slider).evaluate(
                f"el => {{ el.value = '{i}'; el.dispatchEvent(new Event('input', {{bubbles: true}})); }}")
            wait_for_tiles(str(times[i]))
            assert f"{times[i] // 60} " in panel.locator(".flood-label").inner_text()
            page.wait_for_timeout(1000)
            # the layer asks only tiles inside the run's bounds (its TileJSON): every one comes back
            codes = {statuses.get(u) for u in depth_tiles(str(times[i]))}
            assert 200 in codes and codes <= {200, 204, None}, codes
        assert page.evaluate("cimViewer.cim.viewer.entries['flood:depth'].url").startswith(
            f"/flood/storm-50y/depth/{times[-1]}/")

        summary = panel.locator(".flood-summary").inner_text()
        s = impacts["summary"]
        assert f"{s['buildings_affected']} / {s['buildings_total']}" in " ".join(summary.split())
        listed = panel.locator(".flood-buildings li").all_inner_texts()
        assert len(listed) == min(8, len(affected))
        assert (affected[0]["address"] or affected[0]["id"]) in listed[0]
        assert f"{affected[0]['max_depth_m']:.2f} m" in listed[0]
        shown_dry = panel.locator(".flood-shelters li.dry").all_inner_texts()
        assert len(shown_dry) == len(dry), (shown_dry, dry)
        assert all(any(name in t for t in shown_dry) for name in dry), (shown_dry, dry)
        assert bp.log.console_errors == [] and bp.log.page_errors == []
        assert bp.log.off_host() == []


def _js_number(x: float) -> str:
    """A number as JavaScript's `${x}` writes it (106.4 -> "106.4", 24.0 -> "24")."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


@pytest.mark.browser
@pytest.mark.slow
def test_planning_panel_runs_height_control_viewshed_and_sunlight_as_the_library_does(site: Site, shots: Path
                                                                                     ) -> None:
    """The planning panel (panels/planning.js, issue 15) on the demo: height control, a viewshed from an observer
    placed by a click on the map and the sunlight check of the map's view, each run from the panel's own controls
    (the long ones as jobs the panel polls). The numbers and names it shows equal what the library functions
    (cim.analysis.planning) compute for the same model, zones and parameters; the results are drawn on the map."""
    from cim.analysis.planning.height import HeightControlParams, height_control
    from cim.analysis.planning.scene import CityScene
    from cim.analysis.planning.sunlight import SunlightParams, sunlight
    from cim.analysis.planning.viewshed import ViewshedParams, viewshed
    from tests.support.browser import chromium_page

    scene = CityScene.from_build(site.site.models["city"])  # the panel analyses the first 3D model: the L2 city
    posted: list[tuple[str, dict]] = []

    def run_from_panel(page: Any, kind: str) -> str:
        panel = page.locator('#panel section[data-feature="planning"]')
        n = len(posted)
        panel.locator(".planning-run").click()
        page.wait_for_function(
            f"cimPlanning.state.result && cimPlanning.state.result.analysis === '{kind}' || cimPlanning.state.error",
            timeout=120_000)
        assert page.evaluate("cimPlanning.state.error") == ""
        assert [u.split("?")[0] for u, _ in posted[n:]] == [f"{site.base}/analysis/city/{kind}"], posted[n:]
        layers = page.evaluate("cimViewer.deck.props.layers.flat(Infinity).filter(l => l).map(l => l.id)")
        assert f"planning:result:{kind}" in layers, layers
        return " ".join(panel.locator(".planning-result").inner_text().split())

    with chromium_page(viewport=VIEWPORT, timeout_s=180) as bp:
        page = bp.page
        page.on("request", lambda r: posted.append((r.url, r.post_data_json))
                if r.method == "POST" and "/analysis/" in r.url else None)
        _open(page, f"{site.base}/?api_key={site.key}")
        panel = page.locator('#panel section[data-feature="planning"]')
        assert panel.locator(".planning-kind").input_value() == "height-control"

        # height control: every building against the store's height-control zones
        shown = run_from_panel(page, "height-control")
        checked = height_control(scene, site.catalog.store.query("height_zones"), HeightControlParams())
        expected = checked.to_dict()
        assert expected["summary"]["violations"] > 20  # the demo city breaks its zones: the list is cut at 20
        assert shown.startswith(f"{expected['summary']['violations']} "), shown
        items = panel.locator(".planning-result li").all_inner_texts()
        assert items == [f"{v['name'] or v['id']}: {_js_number(v['height'])} m > {_js_number(v['limit'])} m "
                         f"(+{_js_number(v['excess'])})" for v in expected["violations"][:20]]
        drawn = page.evaluate("cimPlanning.state.result.features.features.length")
        assert drawn == len(checked.to_geojson()["features"]) > 0  # the violating footprint parts

        # viewshed: the observer is placed with the panel's button and a click on the map's centre
        panel.locator(".planning-kind").select_option("viewshed")
        panel.locator(".planning-radius").fill("400")
        panel.locator(".planning-radius").dispatch_event("change")
        panel.locator(".planning-place").click()
        _click(page, VIEWPORT[0] / 2, VIEWPORT[1] / 2)
        observer = page.evaluate("cimPlanning.state.observer")
        assert observer and panel.locator(".planning-observer").inner_text() == \
            ", ".join(f"{v:.5f}" for v in observer)
        shown = run_from_panel(page, "viewshed")
        assert posted[-1][1]["observer"] == observer and posted[-1][1]["radius"] == 400
        got = viewshed(scene, ViewshedParams(observer=observer, radius=400)).to_dict()["summary"]
        assert got["visible_cells"] > 0
        assert f"{round(got['visible_area_m2'])} m², {got['visible_buildings']} " in shown, (shown, got)

        # sunlight of what the map shows (a block of the city): the panel sends the view's bbox
        page.evaluate(f"cimViewer.flyTo({observer[0]}, {observer[1]}, 17)")
        _wait_loaded(page)
        panel.locator(".planning-kind").select_option("sunlight")
        shown = run_from_panel(page, "sunlight")
        body = posted[-1][1]
        assert body["climate_zone"] == "II" and body["year"] == 2001 and len(body["bbox"]) == 4
        result = sunlight(scene, SunlightParams(climate_zone="II", year=2001, bbox=body["bbox"])).to_dict()
        s = result["summary"]
        assert s["windows"] > 0 and s["buildings"] > 0
        assert f"{s['buildings_failing']}/{s['buildings']} " in shown and f"{s['windows_failing']}/{s['windows']} " \
            in shown, (shown, s)
        day = next(iter(result["days"].values()))
        assert shown.startswith(" ".join(f"{day['date']} {day['requirement']}".split())), (shown, day)
        failing = [b for b in result["buildings"] if not b["passes"]][:20]
        assert [li.split(":")[0] for li in panel.locator(".planning-result li").all_inner_texts()] == \
            [b["name"] or b["id"] for b in failing]
        _full(page, shots / "viewer-planning.png")
        assert bp.log.console_errors == [] and bp.log.page_errors == []
        assert bp.log.off_host() == []


@pytest.mark.browser
@pytest.mark.slow
def test_section_cuts_the_models_of_every_comparison_screen(site: Site, tall: dict, shots: Path) -> None:
    """Section in the comparison screens (each its own deck.gl Deck): side by side, both halves show the tall
    building's roof from straight above; a cut under its floor made during the comparison removes it from both
    halves (the background shows), clearing brings it back, and a comparison started with a cut shows it cut."""
    from tests.support.browser import chromium_page

    with chromium_page(viewport=VIEWPORT, timeout_s=120) as bp:
        page = bp.page
        _open(page, f"{site.base}/?api_key={site.key}")
        page.wait_for_function("!cimViewer.cim.flood || cimViewer.cim.flood.available !== null")
        page.wait_for_timeout(1500)  # the panels' own layers (live sensors, flood) are added by then
        w, h, pick = _look_down_on(page, tall)
        floor = page.evaluate(f"{pick}.position[2]") - tall["height"] - 2
        background = np.array(BACKGROUND, float)

        def halves() -> list[np.ndarray]:
            _wait_loaded(page)
            px = _pixels(page)
            return [px[h // 2 - 3: h // 2 + 4, x - 3: x + 4].reshape(-1, 3).mean(axis=0) for x in (w // 4, 3 * w // 4)]

        page.evaluate("cimViewer.cim.compare.start('side', [[], []])")
        assert page.evaluate("cimViewer.cim.compare.decks.length") == 2
        roofs = halves()
        assert all(np.abs(r - background).max() > 40 for r in roofs), roofs
        page.evaluate(f"cimViewer.cim.section.horizontal({floor})")
        assert all(np.abs(c - background).max() < 12 for c in halves())
        page.evaluate("cimViewer.cim.section.clear()")
        assert all(np.abs(c - r).max() < 12 for c, r in zip(halves(), roofs, strict=True))
        # started with a cut: the screens' layers are made with it
        page.evaluate(f"cimViewer.cim.compare.stop(); cimViewer.cim.section.horizontal({floor});"
                      "cimViewer.cim.compare.start('side', [[], []])")
        assert all(np.abs(c - background).max() < 12 for c in halves())
        _full(page, shots / "viewer-compare-section.png")
        assert bp.log.console_errors == [] and bp.log.page_errors == []


@pytest.fixture(scope="module")
def hidden_pairs(site: Site) -> list[dict[str, Any]]:
    """Low buildings just north of a tall one (B >= 30 m, A at most half as tall, A's inside point 3-60 m north of
    B's footprint within its east-west span): looking north at A from low over B, B hides A. Best-hidden first."""
    gdf = site.catalog.store.query("buildings")
    m = gdf.to_crs("EPSG:4547")
    pts = gdf.geometry.representative_point()
    pts_m = m.geometry.representative_point()
    out = []
    for i in np.flatnonzero((m["height"] >= 30).to_numpy()):
        west, _, east, north = m.geometry.iloc[i].bounds
        hb = float(m["height"].iloc[i])
        for j in np.flatnonzero((m["height"] <= hb / 2).to_numpy()):
            p = pts_m.iloc[j]
            if 3 < p.y - north < 60 and west + 3 < p.x < east - 3:
                out.append({"code": gdf["code"].iloc[j], "lon": pts.iloc[j].x, "lat": pts.iloc[j].y,
                            "occluder": gdf["code"].iloc[i],
                            "margin": hb - float(m["height"].iloc[j]) - 0.2 * (p.y - north)})
    return sorted(out, key=lambda x: -x["margin"])


@pytest.mark.browser
@pytest.mark.slow
def test_the_picked_building_is_highlighted_where_it_shows_not_through_what_is_in_front(
        site: Site, hidden_pairs: list[dict[str, Any]]) -> None:
    """Picked from above, the low building behind a tall one is yellow; tilted to look north over the tall one, the
    pixels where the ray meets the tall one first are the same with and without the highlight (drawn over every
    model, it was yellow there: [255, 225, 1] against [190, 188, 184])."""
    from tests.support.browser import chromium_page

    assert hidden_pairs, "the demo city has no low building behind a tall one"
    with chromium_page(viewport=VIEWPORT, timeout_s=120) as bp:
        page = bp.page
        _open(page, f"{site.base}/?api_key={site.key}")
        page.evaluate("() => { const v = cimViewer.cim.viewer; for (const id of v.order) v.setVisible(id, false); "
                      "v.setVisible('model:city:terrain', true); v.setVisible('model:city:buildings', true); }")
        w, h = page.evaluate("[document.getElementById('map').clientWidth, document.getElementById('map').clientHeight]")
        tried = []
        for pair in hidden_pairs[:6]:
            page.evaluate(f"cimViewer.cim.picking.setHighlight(null); cimViewer.cim.viewer.setViewState({{longitude: "
                          f"{pair['lon']}, latitude: {pair['lat']}, zoom: 18.5, pitch: 0, bearing: 0}})")
            page.wait_for_function(f"(() => {{ const f = cimViewer.cim.picking.featureAtPixel({w / 2}, {h / 2}); "
                                   f"return f && f.properties.code === '{pair['code']}'; }})()", timeout=150_000)
            _wait_loaded(page)
            plain = _pixels(page)
            page.evaluate(f"cimViewer.cim.picking.setHighlight(cimViewer.cim.picking.featureAtPixel({w / 2}, {h / 2}))")
            _wait_loaded(page)
            lit = _pixels(page)
            c = lit[h // 2 - 2: h // 2 + 3, w // 2 - 2: w // 2 + 3].reshape(-1, 3).mean(axis=0)
            assert c[0] > 200 and c[1] > 170 and c[2] < 100, (pair, c)  # seen from above: yellow
            assert np.abs(c - plain[h // 2 - 2: h // 2 + 3, w // 2 - 2: w // 2 + 3].reshape(-1, 3).mean(axis=0)).max() > 60
            roof = page.evaluate(f"cimViewer.cim.picking.featureAtPixel({w / 2}, {h / 2}).position")  # lon, lat, h
            page.evaluate(f"cimViewer.cim.viewer.setViewState({{longitude: {pair['lon']}, latitude: {pair['lat']}, "
                          "zoom: 18.5, pitch: 80, bearing: 0})")
            _wait_loaded(page)
            x, y = page.evaluate(f"cimViewer.project({roof[0]}, {roof[1]}, {roof[2]})")[:2]
            front = page.evaluate(f"(() => {{ const f = cimViewer.cim.picking.featureAtPixel({x}, {y}); "
                                  "return f && f.properties.code; })()")
            tried.append((pair["code"], front))
            if front in (None, pair["code"]) or not (4 <= x < w - 4 and 4 <= y < h - 4):
                continue
            lit = _pixels(page)
            page.evaluate("cimViewer.cim.picking.setHighlight(null)")
            _wait_loaded(page)
            plain = _pixels(page)
            xi, yi = int(round(x)), int(round(y))
            a = lit[yi - 2: yi + 3, xi - 2: xi + 3].reshape(-1, 3).mean(axis=0)
            b = plain[yi - 2: yi + 3, xi - 2: xi + 3].reshape(-1, 3).mean(axis=0)
            assert np.abs(a - b).max() < 12, (pair, front, a, b)
            break
        else:
            pytest.fail(f"no picked building was hidden by the one in front of it: {tried}")
        assert bp.log.console_errors == [] and bp.log.page_errors == []
