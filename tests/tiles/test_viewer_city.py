"""The viewer at city scale, in headless Chromium over real HTTP: a store of 2,372 layers (the layer tree, its
filter, lazy loading, no tiles for layers that are off), version swipe, thematic maps against their class breaks,
scenes that reopen identically, 3D tools; plus the routes that save styles, scenes and annotations.

Two generated stores (tests/support/many_layers.py), each behind its own server for the module; one browser."""

from __future__ import annotations

import base64
import io
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.browser import wait_viewer_drawn
from tests.support.many_layers import COUNTS, LAT0, LON0, UNIQUE_NAME, quadrants
from tests.tiles.server_support import running_server

VIEWPORT = (900, 600)
BACKGROUND = (0x2B, 0x30, 0x38)


@dataclass
class Served:
    base: str
    store: Path
    key: str
    other_key: str


def _serve(store: Path) -> Iterator[Served]:
    from tiles.server import create_app
    from tiles.server.auth import AccessStore, access_path
    from tiles.server.settings import ServerSettings

    with AccessStore(access_path(store)) as access:
        key, other = access.create("confidential").key, access.create("public").key
    app = create_app(ServerSettings(store=store, title="city scale", log_requests=False))
    with running_server(app) as base:
        yield Served(base, store, key, other)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from tests.support.many_layers import write_many_layers_store

    store = write_many_layers_store(tmp_path_factory.mktemp("big") / "city.duckdb")
    yield from _serve(store)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from layers.store import LayerStore
    from tests.support.many_layers import write_small_layers

    folder = tmp_path_factory.mktemp("small")
    with LayerStore(folder / "city.duckdb") as store:
        write_small_layers(store, folder)
    yield from _serve(folder / "city.duckdb")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from tests.support.browser import chromium_page

    with chromium_page(viewport=VIEWPORT, timeout_s=120) as bp:
        yield bp


def _open(bp: Any, url: str) -> float:
    bp.log.requests.clear()
    t0 = time.perf_counter()
    bp.page.goto(url)
    bp.page.wait_for_function("window.cimViewer && cimViewer.loaded() && document.querySelector('#panel .tree')",
                              timeout=120_000)
    return time.perf_counter() - t0


def _settle(page: Any) -> None:
    wait_viewer_drawn(page, timeout_s=120)


def _pixels(page: Any) -> np.ndarray:
    from PIL import Image

    page.mouse.move(2, 2)  # off the map: no hover highlight
    shot = page.locator("#map").screenshot()
    return np.asarray(Image.open(io.BytesIO(shot)).convert("RGB")).astype(np.int16)


def _at(img: np.ndarray, page: Any, lon: float, lat: float) -> np.ndarray:
    x, y = page.evaluate(f"cimViewer.project({lon}, {lat})")[:2]
    return img[int(round(y)) - 2:int(round(y)) + 3, int(round(x)) - 2:int(round(x)) + 3].reshape(-1, 3).mean(axis=0)


def _look_at_area(page: Any) -> None:
    page.evaluate(f"cimViewer.cim.viewer.setViewState({{longitude: {LON0}, latitude: {LAT0}, zoom: 15.2, pitch: 0, "
                  f"bearing: 0}})")


# ------------------------------------------------------------------------------------------------ 2,372 layers
@pytest.mark.browser
@pytest.mark.slow
def test_2372_layers_open_collapsed_without_tiles_and_the_filter_finds_one(big: Served, browser: Any) -> None:
    page = browser.page
    with httpx.Client(base_url=big.base, timeout=60) as c:
        html = c.get("/", headers={"Accept": "text/html"}).text
    assert len(html.encode()) < 200_000  # themes and counts, not 2,372 entries
    seconds = _open(browser, f"{big.base}/")
    # the budget is 2 s (docs/benchmarks.md measures it); a test on a loaded 2-core machine only rules out the old
    # behaviour (78 s, every layer listed and drawn)
    assert seconds < 15, f"the page took {seconds:.1f} s"
    assert page.evaluate("cimViewer.config.layer_total") == 2372 and page.evaluate("cimViewer.config.lazy")
    assert page.locator(".layer").count() == 0
    counts = page.locator("details.group > summary small.count").evaluate_all("els => els.map(e => +e.textContent)")
    # the store's 2,372 layers, plus the layers panels make in the page (the live sensors layer of panels/sensors.js)
    own = page.evaluate("Object.values(cimViewer.cim.viewer.entries).filter(e => !e.hidden_in_tree && e.kind !== 'vector'"
                        " && !['maps', 'models'].includes(e.group)).length")
    assert own <= 3 and sum(counts) == 2372 + own and len(counts) == 6
    assert not [u for u in browser.log.requests if "/tiles/" in u]

    page.fill(".layer-filter", "lswh")  # pinyin initials of 历史文化街区保护范围
    page.wait_for_selector(f'.layer[data-id="layer:{UNIQUE_NAME}"]')
    assert page.locator(".layer").count() == 1
    page.fill(".layer-filter", "历史文化 规划和自然")  # title and department words
    page.wait_for_function("document.querySelectorAll('.layer').length === 1 && "
                           f"document.querySelector('.layer').dataset.id === 'layer:{UNIQUE_NAME}'")
    page.fill(".layer-filter", "")
    page.wait_for_selector("details.group")

    # a theme's layers are fetched and listed when it is opened
    theme = page.evaluate("cimViewer.config.themes.find(t => t.group === 'planning_control' && t.count > 10)")
    page.locator('details.group[data-group="planning_control"] > summary').click()
    page.locator(f'details.theme[data-theme="{theme["path"]}"] > summary').click()
    page.wait_for_function(f"document.querySelectorAll('details.theme[data-theme=\"{theme['path']}\"] .layer')"
                           f".length === {theme['count']}")
    assert not [u for u in browser.log.requests if "/tiles/" in u]

    # switching one on asks tiles of that layer only
    first = page.locator(f'details.theme[data-theme="{theme["path"]}"] .layer').first
    lid = first.get_attribute("data-id")
    first.locator("input[type=checkbox]").check()
    page.wait_for_function("cimViewer.loaded()")
    _look_at_area(page)
    _settle(page)
    names = {re.search(r"/tiles/([^/]+)/", u).group(1) for u in browser.log.requests if "/tiles/" in u}
    assert names == {lid.removeprefix("layer:")}
    page.click('button[data-view="visible"]')
    shown = page.locator(".layer").evaluate_all("els => els.map(e => e.dataset.id)")
    assert [i for i in shown if i.startswith("layer:")] == [lid]
    assert set(shown) - {lid} <= set(page.evaluate("Object.keys(cimViewer.cim.viewer.entries)"
                                                    ".filter(i => !i.startsWith('layer:'))"))  # panels' own layers
    page.click('button[data-view="recent"]')
    assert page.locator(".layer").first.get_attribute("data-id") == lid
    assert browser.log.page_errors == [] and browser.log.off_host() == []


def test_the_layer_tree_route_filters_by_pinyin_theme_and_ids(big: Served) -> None:
    with httpx.Client(base_url=big.base, timeout=60) as c:
        start = c.get("/viewer/layers").json()
        assert start["total"] == 2372 and start["lazy"] and start["layers"] == []
        assert sum(t["count"] for t in start["themes"]) == 2372 and len(start["themes"]) == 138
        hit = c.get("/viewer/layers", params={"q": "LSWHJQ"}).json()
        assert [e["name"] for e in hit["layers"]] == [UNIQUE_NAME]
        theme = hit["layers"][0]["theme"]
        in_theme = c.get("/viewer/layers", params={"theme": theme}).json()
        assert UNIQUE_NAME in {e["name"] for e in in_theme["layers"]}
        assert all(e["theme"] == theme for e in in_theme["layers"])
        by_id = c.get("/viewer/layers", params={"ids": f"layer:{UNIQUE_NAME},layer:nope"}).json()
        assert [e["name"] for e in by_id["layers"]] == [UNIQUE_NAME]


# ------------------------------------------------------------------------------------------------ comparison
@pytest.mark.browser
@pytest.mark.slow
def test_version_swipe_shows_v1_on_one_side_and_v2_on_the_other(small: Served, browser: Any) -> None:
    page = browser.page
    _open(browser, f"{small.base}/")
    with httpx.Client(base_url=small.base, timeout=30) as c:
        versions = c.get("/viewer/versions/zones").json()["versions"]
        assert [v["version"] for v in versions] == [1, 2]
        assert c.get("/tiles/zones/v1/15/26696/12394.mvt").status_code in (200, 204)
        assert c.get("/tiles/zones/v3/15/26696/12394.mvt").status_code == 404
    page.evaluate("""() => { const c = cimViewer.cim;
        for (const id of c.viewer.order) c.viewer.setVisible(id, false);
        c.thematic.apply('layer:zones', {layer: 'zones', kind: 'single', classes: [], default_color: [255, 0, 0, 255],
          stroke_color: [255, 0, 0, 255], stroke_width: 1, point_size: 4, opacity: 1});
        c.compare.start('swipe', [[c.compare.versionEntry('layer:zones', 1)], [c.compare.versionEntry('layer:zones', 2)]],
          {split: 0.5}); }""")
    _look_at_area(page)
    _settle(page)
    red = np.array([255, 0, 0])
    sw, ne, se = (LON0 - 0.002, LAT0 - 0.002), (LON0 + 0.002, LAT0 + 0.002), (LON0 + 0.002, LAT0 - 0.002)
    img = _pixels(page)
    assert np.abs(_at(img, page, *sw) - red).max() < 30          # left of the divider: v1 covers everything
    assert np.abs(_at(img, page, *ne) - red).max() < 30          # right: v2 covers the north-east ...
    assert np.abs(_at(img, page, *se) - np.array(BACKGROUND)).max() < 30  # ... and nothing else
    assert page.evaluate("cimViewer.cim.compare.decks.length") == 2
    # the divider moves with the user: at 90 % the south-east is on v1's side
    page.evaluate("cimViewer.cim.compare.setSplit(0.9)")
    page.wait_for_timeout(300)
    assert np.abs(_at(_pixels(page), page, *se) - red).max() < 30
    page.evaluate("cimViewer.cim.compare.stop()")
    assert browser.log.page_errors == [] and browser.log.off_host() == []


# ------------------------------------------------------------------------------------------------ thematic maps
@pytest.mark.browser
@pytest.mark.slow
def test_choropleth_colours_match_the_class_breaks_of_the_division_statistics(small: Served, browser: Any) -> None:
    from layers.store import LayerStore

    page = browser.page
    _open(browser, f"{small.base}/?api_key={small.key}")
    style = page.evaluate("""async () => { const c = cimViewer.cim;
        for (const id of c.viewer.order) c.viewer.setVisible(id, false);
        c.viewer.setVisible('layer:divisions', true);
        const s = await c.thematic.classify('layer:divisions', {kind: 'choropleth', source: 'points', agg: 'count',
          method: 'quantile', classes: 4});
        s.classes.forEach(k => { k.color[3] = 255; });   // opaque, so the screen shows the class colour itself
        s.stroke_width = 0;
        c.thematic.apply('layer:divisions', s);
        return s; }""")
    with LayerStore(small.store, read_only=True) as store:
        stats = {str(r.division_fid): r.value for r in store.stats("points", "divisions").rows}
        fids = dict(zip(store.query("divisions")["code"], store.query("divisions")["fid"], strict=True))
    assert style["choropleth"]["values"] == stats and sorted(stats.values()) == sorted(map(float, COUNTS))
    edges = [style["classes"][0]["min"]] + [k["max"] for k in style["classes"]]
    assert edges == pytest.approx(np.quantile(np.array(COUNTS, dtype=float), np.linspace(0, 1, len(edges))).tolist())
    _look_at_area(page)
    _settle(page)
    img = _pixels(page)
    for code, (x0, y0, x1, y1) in quadrants():
        value = stats[str(fids[code])]
        k = next(i for i, c in enumerate(style["classes"]) if c["min"] <= value <= c["max"]
                 and (value < c["max"] or i == len(style["classes"]) - 1))
        expected = np.array(style["classes"][k]["color"][:3])
        seen = _at(img, page, (x0 + x1) / 2, (y0 + y1) / 2)
        assert np.abs(seen - expected).max() < 12, (code, value, seen, expected)
    legend = page.inner_text("#legend")
    assert all(c["label"] in legend for c in style["classes"])

    saved = page.evaluate("cimViewer.cim.thematic.save('layer:divisions')")
    assert saved["updated_by"] and saved["classes"] == style["classes"]
    with httpx.Client(base_url=small.base, timeout=30) as c:
        assert c.get("/viewer/styles/divisions").json()["classes"] == style["classes"]  # public layer, anyone reads
        assert c.put("/viewer/styles/divisions", json=saved).status_code == 401          # saving needs a key
        first = c.get("/viewer/layers", params={"ids": "divisions"}).json()["layers"][0]
        assert first["style"]["kind"] == "choropleth"
    assert browser.log.page_errors == []


# ------------------------------------------------------------------------------------------------ scenes
@pytest.mark.browser
@pytest.mark.slow
def test_a_saved_scene_reopens_identically(small: Served, browser: Any) -> None:
    page = browser.page
    _open(browser, f"{small.base}/?api_key={small.key}")
    page.evaluate(f"""() => {{ const c = cimViewer.cim;
        for (const id of c.viewer.order) c.viewer.setVisible(id, false);
        c.viewer.setVisible('layer:zones', true); c.viewer.setOpacity('layer:zones', 0.5);
        c.viewer.setVisible('layer:points', true);
        c.thematic.apply('layer:points', {{layer: 'points', kind: 'graduated_size', field: 'value', method: 'manual',
          classes: [{{min: 0, max: 10, color: [0, 200, 255, 255], size: 4, label: 'small'}},
                    {{min: 10, max: 20, color: [255, 255, 0, 255], size: 9, label: 'big'}}],
          default_color: [128, 128, 128, 255], stroke_color: [0, 0, 0, 255], stroke_width: 1, point_size: 4, opacity: 1}});
        c.viewer.setViewState({{longitude: {LON0 + 0.0007}, latitude: {LAT0 - 0.0004}, zoom: 15.6, pitch: 30,
                               bearing: 12}}); }}""")
    _settle(page)
    before = _pixels(page)
    state = page.evaluate("(() => { const v = cimViewer.cim.viewer; return {on: v.order.filter(i => v.state[i].visible),"
                          " opacity: v.state['layer:zones'].opacity, vs: v.viewState}; })()")
    saved = page.evaluate("cimViewer.cim.scenes.save('review', '方案审查')")
    assert saved["owner"] and saved["camera"]["pitch"] == pytest.approx(30)
    with httpx.Client(base_url=small.base, timeout=30) as c:
        listed = c.get("/catalog", params={"api_key": small.key}).json()["scenes"]
        assert [s["name"] for s in listed] == ["review"] and listed[0]["url"].endswith("/?scene=review")
        assert c.put("/viewer/scenes/review", json=saved, params={"api_key": small.other_key}).status_code == 403
        assert c.put("/viewer/scenes/x", json=saved).status_code == 401
        assert c.get("/viewer/scenes/nope").status_code == 404

    _open(browser, f"{small.base}/?scene=review&api_key={small.key}")
    page.wait_for_function("cimViewer.cim.scenes.current && cimViewer.cim.scenes.current.name === 'review'")
    _settle(page)
    again = page.evaluate("(() => { const v = cimViewer.cim.viewer; return {on: v.order.filter(i => v.state[i].visible),"
                          " opacity: v.state['layer:zones'].opacity, vs: v.viewState}; })()")
    assert again["on"] == state["on"] and again["opacity"] == state["opacity"]
    for k in ("longitude", "latitude", "zoom", "pitch", "bearing"):
        assert again["vs"][k] == pytest.approx(state["vs"][k], abs=1e-9)
    assert page.evaluate("cimViewer.cim.viewer.entries['layer:points'].style.classes[1].size") == 9
    after = _pixels(page)
    differs = (np.abs(after - before).sum(axis=2) > 40).mean()
    assert differs < 0.01, f"{differs:.3%} of the pixels differ"
    assert browser.log.page_errors == []


# ------------------------------------------------------------------------------------------------ 3D tools
@pytest.mark.browser
@pytest.mark.slow
def test_scale_bar_coordinates_annotations_fly_through_and_png_export(small: Served, browser: Any) -> None:
    from PIL import Image
    from pyproj import Geod

    page = browser.page
    _open(browser, f"{small.base}/?api_key={small.key}")
    _look_at_area(page)
    _settle(page)
    # the scale bar's length is what the map shows: compare with the geodesic distance of its two ends
    bar = page.evaluate("""(() => { const s = cimViewer.cim.tools3d.scale(); const el = document.getElementById('map');
        const y = el.clientHeight - 30, x = el.clientWidth / 2;
        return {s, a: cimViewer.cim.viewer.groundCoordinate(x, y), b: cimViewer.cim.viewer.groundCoordinate(x + s.px, y)}; })()""")
    dist = Geod(ellps="GRS80").inv(bar["a"][0], bar["a"][1], bar["b"][0], bar["b"][1])[2]
    assert dist == pytest.approx(bar["s"]["metres"], rel=0.01)
    # a pinned annotation is saved for this key only and comes back after a reload
    note = page.evaluate(f"cimViewer.cim.tools3d.addAnnotation({LON0}, {LAT0}, 0, '拆迁范围待核实')")
    with httpx.Client(base_url=small.base, timeout=30) as c:
        mine = c.get("/viewer/annotations", params={"api_key": small.key}).json()["annotations"]
        theirs = c.get("/viewer/annotations", params={"api_key": small.other_key}).json()["annotations"]
        assert [a["text"] for a in mine] == ["拆迁范围待核实"] and theirs == []
        assert c.post("/viewer/annotations", json={"lon": 1, "lat": 2, "text": "x"}).status_code == 401
    _open(browser, f"{small.base}/?api_key={small.key}")
    _look_at_area(page)
    page.wait_for_selector(f'.pins .pin[data-id="{note["id"]}"]')
    # fly-through: the camera ends at the last waypoint, heading along the last leg
    end = page.evaluate(f"cimViewer.cim.tools3d.fly([[{LON0}, {LAT0 - 0.003}], [{LON0}, {LAT0 + 0.003}]], "
                        "{speed: 5000}).then(() => cimViewer.cim.viewer.viewState)")
    assert end["longitude"] == pytest.approx(LON0, abs=1e-9) and end["latitude"] == pytest.approx(LAT0 + 0.003, abs=1e-9)
    assert end["bearing"] == pytest.approx(0, abs=0.01) and end["pitch"] == pytest.approx(60)
    url = page.evaluate("cimViewer.cim.tools3d.exportPng(false)")
    png = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    box = page.locator("#map").bounding_box()
    assert png.format == "PNG" and png.size[0] == pytest.approx(box["width"], abs=2)
    assert np.asarray(png.convert("RGB")).std() > 5  # the map, not an empty canvas
    assert browser.log.page_errors == [] and browser.log.off_host() == []


def test_coordinates_route_agrees_with_pyproj(small: Served) -> None:
    from tiles.viewer import coordinates

    got = coordinates(LON0, LAT0, crs="EPSG:4547")
    from pyproj import Transformer

    x, y = Transformer.from_crs("EPSG:4490", "EPSG:4547", always_xy=True).transform(LON0, LAT0)
    assert got["model"]["x"] == pytest.approx(x, abs=1e-3) and got["model"]["y"] == pytest.approx(y, abs=1e-3)
    with httpx.Client(base_url=small.base, timeout=30) as c:
        doc = c.get("/viewer/coords", params={"lon": LON0, "lat": LAT0}).json()
        assert doc["crs"] == "EPSG:4490" and doc["model"] is None  # no model served: no model CRS
        assert c.get("/viewer/coords", params={"lon": 200, "lat": 0}).status_code == 400
