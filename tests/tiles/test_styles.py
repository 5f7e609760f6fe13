"""One look for every client: `tiles.styles` turns a layer's stored thematic style (`layers.styles`) into the
viewer's tree entry, MapLibre style documents and WMS images. The reference is MapLibre's own style specification
(npm `@maplibre/maplibre-gl-style-spec`): it validates our documents and evaluates their expressions per feature,
and those colours must equal `feature_paint` (what WMS draws) and the stored style's own `class_of`. Over HTTP: a
style saved in the viewer changes `/styles`, WMS GetMap pixels and the viewer's tree alike."""

from __future__ import annotations

import io
import json
import re

import httpx
import numpy as np
import pytest
from PIL import Image

from layers.styles import Choropleth, Heatmap, StyleClass, default_color
from layers.styles import LayerStyle as Stored
from tests.support.maplibre import evaluate_style
from tests.tiles.server_support import Served, served  # noqa: F401
from tiles.styles import feature_paint, layer_style, maplibre_style


RED, GREEN, BLUE = [230, 20, 20, 200], [20, 200, 40, 150], [30, 60, 220, 255]
GREY = [160, 160, 160, 120]

# features that test the class edges: inside, on a boundary (goes up), the last class's closed end, outside every
# class, a missing field, a value that is not a number
FEATURES = [
    {"id": 1, "properties": {"h": 5.0, "kind": "school", "level": 1}},
    {"id": 2, "properties": {"h": 10.0, "kind": "park", "level": 2}},
    {"id": 3, "properties": {"h": 30.0, "kind": "shop", "level": 3}},
    {"id": 4, "properties": {"h": 31.0, "kind": "", "level": 7}},
    {"id": 5, "properties": {"kind": "school"}},
    {"id": 6, "properties": {"h": "tall", "kind": "park", "level": 2}},
    {"id": 7, "properties": {"h": -0.5, "kind": "park", "level": 1}},
]
GRADUATED = [StyleClass(min=0, max=10, color=RED, size=3), StyleClass(min=10, max=20, color=GREEN, size=6),
             StyleClass(min=20, max=30, color=BLUE, size=9)]
STORED = {
    "graduated": Stored(layer="x", kind="graduated", field="h", method="manual", classes=GRADUATED,
                        default_color=GREY, opacity=0.8),
    "graduated_size": Stored(layer="x", kind="graduated_size", field="h", method="manual", classes=GRADUATED,
                             default_color=GREY),
    "unique_text": Stored(layer="x", kind="unique", field="kind", default_color=GREY,
                          classes=[StyleClass(value="school", color=RED), StyleClass(value="park", color=GREEN)]),
    "unique_number": Stored(layer="x", kind="unique", field="level", default_color=GREY,
                            classes=[StyleClass(value=1, color=RED), StyleClass(value=2, color=BLUE)]),
    "choropleth": Stored(layer="x", kind="choropleth", field=None, method="manual", default_color=GREY,
                         classes=[StyleClass(min=0, max=5, color=RED), StyleClass(min=5, max=50, color=BLUE)],
                         choropleth=Choropleth(source="y", agg="count",
                                               values={"1": 0.0, "2": 4.9, "3": 5.0, "4": 50.0, "5": 99.0, "6": None})),
    "single": Stored(layer="x", kind="single", default_color=BLUE, stroke_width=3),
}


def _layer(geometry: str) -> dict:
    return {"name": "x", "geometry_type": {"point": "POINT", "line": "LINESTRING", "polygon": "POLYGON"}[geometry],
            "feature_count": len(FEATURES), "extent": [113.0, 40.0, 113.1, 40.1]}


def _colour_layer(doc: dict, geometry: str) -> tuple[str, str, str]:
    """(style layer id, colour property, opacity property) that draws the features' colour."""
    return {"point": ("x", "circle-color", "circle-opacity"), "line": ("x", "line-color", "line-opacity"),
            "polygon": ("x-fill", "fill-color", "fill-opacity")}[geometry]


@pytest.mark.parametrize("geometry", ["polygon", "point", "line"])
@pytest.mark.parametrize("name", sorted(STORED))
def test_maplibre_draws_what_wms_draws_and_the_style_says(name: str, geometry: str) -> None:
    stored = STORED[name]
    look = layer_style(_layer(geometry), (), stored)
    doc = maplibre_style("t", [(_layer(geometry), look)], [], "http://127.0.0.1:1")
    feats = [{**f, "type": {"point": "Point", "line": "LineString", "polygon": "Polygon"}[geometry]}
             for f in FEATURES]
    out = evaluate_style(doc, feats)
    assert out["errors"] == []
    lid, colour, opacity = _colour_layer(doc, geometry)
    got = out["layers"][lid]
    for i, f in enumerate(FEATURES):
        paint = feature_paint(look, f["properties"], f["id"])
        rgba = paint.line if geometry == "line" else paint.fill
        assert got[colour][i][:3] == list(rgba[:3]), (f, got[colour][i], rgba)
        alpha = got[colour][i][3] * got[opacity][i]
        assert alpha == pytest.approx(rgba[3] / 255, abs=0.01), (f, alpha, rgba)
        # and both follow the stored style's own classes
        value = stored.choropleth.values.get(str(f["id"])) if stored.choropleth else f["properties"].get(stored.field)
        c = stored.class_of(value) if stored.kind != "single" else None
        want = c.color if c is not None else stored.default_color
        assert list(rgba[:3]) == want[:3]
        assert rgba[3] == round(want[3] * stored.opacity)
        if stored.kind == "graduated_size" and geometry != "polygon":
            size = got["circle-radius" if geometry == "point" else "line-width"][i]
            assert size == (c.size if c is not None else (stored.point_size if geometry == "point"
                                                          else stored.stroke_width))
            assert size == (paint.radius if geometry == "point" else paint.width)


def test_heat_map_colours_follow_maplibre() -> None:
    stored = Stored(layer="x", kind="heatmap", heatmap=Heatmap(radius_px=12, intensity=2, weight_field="w",
                                                               colors=[BLUE, GREEN, RED]))
    look = layer_style(_layer("point"), (), stored)
    doc = maplibre_style("t", [(_layer("point"), look)], [], "http://127.0.0.1:1")
    (layer,) = doc["layers"]
    assert layer["type"] == "heatmap" and layer["paint"]["heatmap-radius"] == 12
    out = evaluate_style(doc, [], densities=[0, 1 / 3, 2 / 3, 1])
    assert out["errors"] == []
    ramp = out["layers"]["x"]["heatmap-color"]
    assert ramp[0][3] == 0 and [c[:3] for c in ramp[1:]] == [BLUE[:3], GREEN[:3], RED[:3]]


def test_without_a_stored_style_the_colour_is_picked_by_name() -> None:
    for geometry in ("point", "line", "polygon"):
        look = layer_style({**_layer(geometry), "name": "河流"}, ())
        assert list(look.color) == default_color("河流") and look.thematic is None
    # the same whatever else the caller sees: no position in a list is involved
    assert layer_style({"name": "a", "geometry_type": "POINT"}).color == \
        layer_style({"name": "a", "geometry_type": "POINT", "feature_count": 3}).color
    extruded = layer_style({"name": "b", "geometry_type": "POLYGON"}, ("height",))
    assert extruded.extruded and extruded.height_field == "height" and not extruded.visible
    stored = layer_style({"name": "b", "geometry_type": "POLYGON"}, ("height",), STORED["single"])
    assert not stored.extruded  # a stored style decides extrusion itself (extrude_field)


# ------------------------------------------------------------------------------------------------------- HTTP
def _png(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)).convert("RGBA"))


def _tree(c: httpx.Client) -> dict[str, dict]:
    page = c.get("/", headers={"Accept": "text/html"}).text
    config = json.loads(re.search(r'<script id="cim-config" type="application/json">(.*?)</script>', page, re.DOTALL)
                        .group(1).replace("<\\/", "</"))
    return {e["name"]: e for e in config["tree"] if e.get("kind") == "vector"}


@pytest.mark.slow
def test_a_saved_style_changes_the_viewer_styles_and_wms_alike(served: Served) -> None:  # noqa: F811
    from cim.sources.crs import transformer

    key = served.keys["confidential"]
    classes = [{"min": 0, "max": 200, "color": RED, "label": "small"},
               {"min": 200, "max": 500, "color": BLUE, "label": "large"}]
    style = {"layer": "shelters", "kind": "graduated", "field": "capacity", "method": "manual", "classes": classes,
             "default_color": GREY, "point_size": 5}
    with served.client("confidential") as c:
        before = c.get("/styles/layers/shelters").json()["layers"][0]["paint"]["circle-color"]
        assert before == "rgb({},{},{})".format(*default_color("shelters"))
        assert _tree(c)["shelters"]["color"] == default_color("shelters")
        assert httpx.put(f"{served.base}/viewer/styles/shelters", json=style).status_code == 401
        r = c.put("/viewer/styles/shelters", json=style)
        assert r.status_code == 200, r.text
        try:
            doc = c.get("/styles/layers/shelters").json()
            items = c.get("/collections/shelters/items", params={"limit": 1000}).json()["features"]
            feats = [{"id": f["id"], "type": "Point", "properties": f["properties"]} for f in items]
            out = evaluate_style(doc, feats)
            assert out["errors"] == []
            want = [(RED if f["properties"]["capacity"] < 200 else BLUE)[:3] for f in items]
            assert [v[:3] for v in out["layers"]["shelters"]["circle-color"]] == want
            assert set(out["layers"]["shelters"]["circle-radius"]) == {5}
            # the viewer's tree carries the stored style and the look made from it
            entry = _tree(c)["shelters"]
            assert entry["style"]["classes"][1]["color"] == BLUE and entry["point_radius"] == 5
            # WMS: each isolated shelter is drawn in its class colour at its place
            lon = np.array([f["geometry"]["coordinates"][0] for f in items])
            lat = np.array([f["geometry"]["coordinates"][1] for f in items])
            x, y = transformer("EPSG:4490", "EPSG:3857").transform(lon, lat)
            near = np.hypot(x[:, None] - x[None], y[:, None] - y[None]) + np.eye(len(x)) * 1e9
            lonely = np.flatnonzero(near.min(axis=1) > 60)[:6]
            assert len(lonely) >= 3
            half = 100.0
            for i in lonely:
                r = c.get("/wms", params={"REQUEST": "GetMap", "VERSION": "1.3.0", "LAYERS": "shelters",
                                          "CRS": "EPSG:3857", "WIDTH": 101, "HEIGHT": 101, "FORMAT": "image/png",
                                          "BBOX": f"{x[i] - half},{y[i] - half},{x[i] + half},{y[i] + half}",
                                          "TRANSPARENT": "TRUE"})
                px = _png(r.content)[50, 50]
                assert np.abs(px[:3].astype(int) - want[i]).max() <= 3 and px[3] >= 190, (i, px, want[i])
            # a heat map: at a lone point the density is MapLibre's kernel peak, coloured as MapLibre colours it
            heat = {"layer": "shelters", "kind": "heatmap", "heatmap": {"radius_px": 10, "intensity": 1.5,
                                                                        "colors": [BLUE, GREEN, RED]}}
            assert c.put("/viewer/styles/shelters", json=heat).status_code == 200
            doc = c.get("/styles/layers/shelters").json()
            peak = 1.5 / np.sqrt(2 * np.pi)
            ramp = evaluate_style(doc, [], densities=[peak])["layers"]["shelters"]["heatmap-color"][0]
            i = lonely[0]
            r = c.get("/wms", params={"REQUEST": "GetMap", "VERSION": "1.3.0", "LAYERS": "shelters",
                                      "CRS": "EPSG:3857", "WIDTH": 101, "HEIGHT": 101, "FORMAT": "image/png",
                                      "BBOX": f"{x[i] - half},{y[i] - half},{x[i] + half},{y[i] + half}",
                                      "TRANSPARENT": "TRUE"})
            img = _png(r.content)
            centre = img[49:52, 49:52].reshape(-1, 4).astype(int)
            best = np.abs(centre[:, :3] - ramp[:3]).max(axis=1).min()
            assert best <= 6, (centre, ramp)
            assert abs(int(img[50, 50, 3]) - ramp[3] * 255) <= 8
            assert img[0, 0, 3] == 0  # far from every point: nothing
        finally:
            assert c.delete("/viewer/styles/shelters").status_code in (200, 204)
        after = c.get("/styles/layers/shelters").json()["layers"][0]["paint"]["circle-color"]
        assert after == before
