"""How a layer is drawn, once for every client: the viewer (deck.gl), WMS GetMap images and MapLibre / Mapbox GL
style documents (which QGIS, MapLibre and most vector-tile clients read).

`layer_style` decides a vector layer's look from what the catalogue says about it and from the layer's stored style,
if it has one (a thematic map saved in the viewer, `layers.styles`): without one, a colour from the palette picked by
the layer's name (the same for every caller, whichever other layers they see), translucent polygon fills, extruded
polygons where a height field exists, dense layers off at first. A stored style rides along as `LayerStyle.thematic`:
its classes colour (and size) each feature in the viewer, in `feature_paint` (WMS) and in `maplibre_layers` (data-driven
expressions: `case` over a field's values or ranges, `match` on the feature id for a choropleth, a `heatmap` layer).
`maplibre_style` turns looks into a style document (version 8) whose sources are this server's tiles; it asks for no
sprite and no glyphs (no icon or text layers), so a client needs nothing off the server.

    >>> doc = maplibre_style("city", [(layer_entry, layer_style(layer_entry))], [], "http://127.0.0.1:8000")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from layers.styles import PALETTE, default_color
from layers.styles import LayerStyle as StoredStyle

Geometry = Literal["point", "line", "polygon"]
STYLE_MEDIA_TYPE = "application/vnd.mapbox.style+json"
HEIGHT_FIELDS = ("height", "max_height_m", "height_m")
DENSE_FEATURES = 2000  # layers with more features start hidden (trees would cover the city)
RGBA = tuple[int, int, int, int]


@dataclass(frozen=True)
class LayerStyle:
    """The look of one vector layer.

    Attributes:
        color: RGB 0-255 (a thematic style's colour for features that fall in no class).
        geometry: point, line or polygon.
        fill_alpha: polygon fill (and point fill) opacity, 0-255.
        line_width: outline or line width, px.
        point_radius: point radius, px.
        extruded: polygons drawn as blocks `height_field` metres tall.
        height_field: the field with the height in metres (extruded layers).
        visible: shown when a map opens.
        thematic: the layer's stored style (`layers.styles.LayerStyle`), whose classes colour the features.
        stroke: outline colour RGBA of polygons and points (lines take the fill colour).
        opacity: 0-1, multiplies every alpha (a stored style's `opacity`).
    """

    color: tuple[int, int, int]
    geometry: Geometry
    fill_alpha: int
    line_width: float
    point_radius: float
    extruded: bool = False
    height_field: str | None = None
    visible: bool = True
    thematic: StoredStyle | None = None
    stroke: RGBA | None = None
    opacity: float = 1.0

    @property
    def css(self) -> str:
        return "rgb({},{},{})".format(*self.color)

    @property
    def stroke_rgba(self) -> RGBA:
        return self.stroke if self.stroke is not None else (*self.color, 255)


def geometry_of(geometry_type: str) -> Geometry:
    """point, line or polygon from a catalogue geometry type (`MULTIPOLYGON`, `LineString Z`, ...)."""
    g = (geometry_type or "").upper()
    return "polygon" if "POLYGON" in g else "line" if "LINE" in g else "point"


def layer_style(layer: Mapping[str, Any], fields: Sequence[str] = (),
                stored: StoredStyle | Mapping[str, Any] | None = None) -> LayerStyle:
    """The look of a layer as the viewer draws it.

    Args:
        layer: a `/catalog` layer entry (`name`, `geometry_type`, `feature_count`).
        fields: the layer's field names (a height field makes polygons extruded).
        stored: the layer's stored style (`layers.styles.LayerStyle` or its JSON document), if it has one: its
            colours, widths and extrusion replace the defaults, and it rides along as `thematic`.
    """
    geometry = geometry_of(layer.get("geometry_type", ""))
    dense = (layer.get("feature_count") or 0) > DENSE_FEATURES
    if stored is not None:
        doc = stored if isinstance(stored, StoredStyle) else StoredStyle.model_validate(stored)
        rgba, s = doc.default_color, doc.stroke_color
        height_field = doc.extrude_field if geometry == "polygon" else None
        return LayerStyle(
            color=(rgba[0], rgba[1], rgba[2]), geometry=geometry, fill_alpha=rgba[3],
            line_width=doc.stroke_width, point_radius=doc.point_size, extruded=height_field is not None,
            height_field=height_field, visible=height_field is None and not dense, thematic=doc,
            stroke=(s[0], s[1], s[2], s[3]), opacity=doc.opacity)
    height_field = next((f for f in HEIGHT_FIELDS if f in fields), None)
    extruded = geometry == "polygon" and height_field is not None
    r, g, b = default_color(layer.get("name", ""))
    return LayerStyle(
        color=(r, g, b), geometry=geometry,
        fill_alpha=150 if extruded else 40 if geometry == "polygon" else 220,
        line_width=1 if geometry == "polygon" else 2, point_radius=2 if dense else 4,
        extruded=extruded, height_field=height_field if extruded else None, visible=not extruded and not dense)


# ------------------------------------------------------------------------------------------------ per feature
@dataclass(frozen=True)
class Paint:
    """How one feature is drawn: fill and line colours (RGBA 0-255) and its point radius / line width (px)."""

    fill: RGBA
    line: RGBA
    radius: float
    width: float


def feature_paint(style: LayerStyle, properties: Mapping[str, Any], fid: Any = None) -> Paint:
    """The paint of one feature (its attributes, and its store `fid` for a choropleth), as the viewer draws it.

    A feature in no class of a thematic style takes the style's default colour. Heat maps are drawn as densities,
    not per feature (`heat_colors`); here a point of a heat map layer gets the default colour.
    """
    op = style.opacity
    base = (*style.color, round(style.fill_alpha * op))
    t = style.thematic
    radius, width = style.point_radius, style.line_width
    if t is None or t.kind in ("single", "heatmap") or not t.classes:
        fill = base
    else:
        value = (t.choropleth.values.get(str(fid)) if t.choropleth else None) if t.kind == "choropleth" \
            else properties.get(t.field or "")
        c = t.class_of(value)
        fill = base if c is None else (c.color[0], c.color[1], c.color[2], round(c.color[3] * op))
        if c is not None and c.size is not None and t.kind == "graduated_size":
            if style.geometry == "point":
                radius = c.size
            elif style.geometry == "line":
                width = c.size
    if style.geometry == "line":
        line = (fill[0], fill[1], fill[2], round(255 * op) if t is None else fill[3])
    else:
        s = style.stroke_rgba
        line = (s[0], s[1], s[2], round(s[3] * op))
    return Paint(fill, line, radius, width)


# ------------------------------------------------------------------------------------------------ MapLibre
def _rgba_css(c: Sequence[int]) -> str:
    a = c[3] / 255 if len(c) > 3 else 1
    return f"rgba({c[0]},{c[1]},{c[2]},{round(a, 3)})"


def _class_test(t: StoredStyle, c: Any, last: bool) -> list[Any]:
    """A MapLibre boolean expression: the feature falls in class `c` (as `layers.styles.LayerStyle.class_of`)."""
    if t.kind == "unique":
        v = c.value
        if isinstance(v, bool):
            test: list[Any] = ["==", ["get", t.field], v]
        elif isinstance(v, int | float):
            test = ["==", ["to-number", ["get", t.field], -1.7976931348623157e308], v]
        else:
            test = ["==", ["to-string", ["get", t.field]], str(v)]
        return ["all", ["has", t.field], test]  # to-number / to-string would make a missing value 0 / ""
    value: list[Any] = ["to-number", ["get", t.field], -1.7976931348623157e308]
    tests: list[Any] = []
    if c.min is not None:
        tests.append([">=", value, c.min])
    if c.max is not None:
        tests.append(["<=" if last else "<", value, c.max])
    return ["all", ["has", t.field], *tests]


def _by_class(t: StoredStyle, of: Any, default: Any) -> Any:
    """A data-driven MapLibre expression giving `of(class)` per feature, `default` outside every class."""
    if not t.classes:
        return default
    if t.kind == "choropleth":
        ids: dict[int, list[int]] = {}
        values = (t.choropleth.values if t.choropleth else {}) or {}
        for fid, v in values.items():
            c = t.class_of(v)
            if c is not None and fid.lstrip("-").isdigit():
                ids.setdefault(t.classes.index(c), []).append(int(fid))
        if not ids:
            return default
        out: list[Any] = ["match", ["id"]]
        for i, fids in sorted(ids.items()):
            out += [sorted(fids), of(t.classes[i])]
        return [*out, default]
    out = ["case"]
    last = len(t.classes) - 1
    for i, c in enumerate(t.classes):
        out += [_class_test(t, c, i == last), of(c)]
    return [*out, default]


def heat_colors(t: StoredStyle) -> list[Any]:
    """`heatmap-color` of a heat map style: transparent at density 0, then its colours low to high."""
    colors = (t.heatmap.colors if t.heatmap else []) or [[255, 0, 0, 255]]
    out: list[Any] = ["interpolate", ["linear"], ["heatmap-density"], 0, "rgba(0,0,0,0)"]
    n = len(colors)
    for i, c in enumerate(colors):
        out += [round((i + 1) / n, 4), _rgba_css(c)]
    return out


def maplibre_layers(name: str, style: LayerStyle, visible: bool | None = None) -> list[dict[str, Any]]:
    """The style-document layers that draw vector layer `name` (source and source-layer `name`)."""
    vis = {"visibility": "visible" if (style.visible if visible is None else visible) else "none"}
    common = {"source": name, "source-layer": name, "layout": vis}
    t = style.thematic
    op = style.opacity
    alpha = round(style.fill_alpha / 255 * op, 3)
    if t is not None and t.kind == "heatmap" and style.geometry == "point":
        hm = t.heatmap
        weight: Any = 1 if not hm or not hm.weight_field else \
            ["to-number", ["get", hm.weight_field], 0]
        return [{"id": name, "type": "heatmap", **common,
                 "paint": {"heatmap-radius": hm.radius_px if hm else 30, "heatmap-intensity": hm.intensity if hm else 1,
                           "heatmap-weight": weight, "heatmap-color": heat_colors(t), "heatmap-opacity": op}}]
    thematic = t is not None and t.kind not in ("single", "heatmap") and bool(t.classes)
    if thematic:
        assert t is not None
        color: Any = _by_class(t, lambda c: f"rgb({c.color[0]},{c.color[1]},{c.color[2]})", style.css)
        fill_opacity: Any = _by_class(t, lambda c: round(c.color[3] / 255 * op, 3), alpha)
        size: Any = _by_class(t, lambda c: c.size if c.size is not None else style.point_radius, style.point_radius) \
            if t.kind == "graduated_size" else style.point_radius
        width: Any = _by_class(t, lambda c: c.size if c.size is not None else style.line_width, style.line_width) \
            if t.kind == "graduated_size" else style.line_width
    else:
        color, fill_opacity, size, width = style.css, alpha, style.point_radius, style.line_width
    s = style.stroke_rgba
    stroke_css = "rgb({},{},{})".format(*s[:3])
    stroke_opacity = round(s[3] / 255 * op, 3)
    if style.geometry == "point":
        return [{"id": name, "type": "circle", **common,
                 "paint": {"circle-color": color, "circle-opacity": fill_opacity, "circle-radius": size,
                           "circle-stroke-color": stroke_css if t is not None else color,
                           "circle-stroke-opacity": stroke_opacity, "circle-stroke-width": 1}}]
    if style.geometry == "line":
        return [{"id": name, "type": "line", **common,
                 "paint": {"line-color": color, "line-width": width,
                           "line-opacity": fill_opacity if t is not None else op}}]
    out = [{"id": f"{name}-fill", "type": "fill", **common,
            "paint": {"fill-color": color, "fill-opacity": fill_opacity if not style.extruded else 0.4 * op}},
           {"id": f"{name}-outline", "type": "line", **common,
            "paint": {"line-color": stroke_css if t is not None else color, "line-width": style.line_width,
                      "line-opacity": stroke_opacity}}]
    if style.extruded:
        out.append({"id": f"{name}-extrusion", "type": "fill-extrusion", **common,
                    "paint": {"fill-extrusion-color": color,
                              "fill-extrusion-opacity": alpha if not thematic else round(op * 0.85, 3),
                              "fill-extrusion-height": ["coalesce", ["to-number", ["get", style.height_field]], 0],
                              "fill-extrusion-base": 0}})
    return out


def _with_key(url: str, key_query: str) -> str:
    return url if not key_query else url + ("&" if "?" in url else "?") + key_query


def maplibre_style(title: str, layers: Sequence[tuple[Mapping[str, Any], LayerStyle]],
                   maps: Sequence[Mapping[str, Any]], base: str, *, key_query: str = "", visible: bool | None = None,
                   vector_maxzoom: int = 22) -> dict[str, Any]:
    """A MapLibre / Mapbox GL style document (version 8) over this server's tiles.

    Args:
        title: the style's name.
        layers: `/catalog` layer entries with their looks, drawn in this order (first at the bottom).
        maps: `/catalog` raster map entries (orthophotos), drawn under the vector layers; the first one visible.
        base: the server's public base URL (no trailing slash).
        key_query: `api_key=...` carried into every tile URL (when the caller sent its key that way).
        visible: force every layer on (a one-layer document) instead of each look's own `visible`.
        vector_maxzoom: the deepest zoom the server cuts vector tiles at (clients overzoom beyond it).
    """
    sources: dict[str, Any] = {}
    out_layers: list[dict[str, Any]] = []
    extents = [tuple(x["extent"]) for x in [*layers_entries(layers), *maps] if x.get("extent")]
    first_map = True
    for m in maps:
        fmt = "png" if "png" in m.get("formats", ["png"]) else m["formats"][0]
        src: dict[str, Any] = {"type": "raster", "tileSize": 256, "scheme": "xyz",
                               "tiles": [_with_key(f"{base}/maps/{m['name']}/{{z}}/{{x}}/{{y}}.{fmt}", key_query)],
                               "attribution": m.get("title") or m["name"]}
        if m.get("extent"):
            src["bounds"] = list(m["extent"])
        sources[m["name"]] = src
        on = first_map if visible is None else visible
        out_layers.append({"id": m["name"], "type": "raster", "source": m["name"],
                           "layout": {"visibility": "visible" if on else "none"}})
        first_map = False
    for entry, style in layers:
        name = entry["name"]
        src = {"type": "vector", "scheme": "xyz", "minzoom": 0, "maxzoom": vector_maxzoom,
               "tiles": [_with_key(f"{base}/tiles/{name}/{{z}}/{{x}}/{{y}}.mvt", key_query)]}
        if entry.get("extent"):
            src["bounds"] = list(entry["extent"])
        sources[name] = src
        out_layers.extend(maplibre_layers(name, style, visible))
    doc: dict[str, Any] = {"version": 8, "name": title, "sources": sources, "layers": out_layers,
                           "metadata": {"cim:generator": "tiles.styles.maplibre_style"}}
    if extents:
        w, s = min(e[0] for e in extents), min(e[1] for e in extents)
        e_, n = max(e[2] for e in extents), max(e[3] for e in extents)
        doc["center"] = [(w + e_) / 2, (s + n) / 2]
        from tiles.viewer import home_view

        doc["zoom"] = home_view([w, s, e_, n])["zoom"]
    return doc


def layers_entries(layers: Sequence[tuple[Mapping[str, Any], LayerStyle]]) -> list[Mapping[str, Any]]:
    return [e for e, _ in layers]


__all__ = ["DENSE_FEATURES", "HEIGHT_FIELDS", "PALETTE", "STYLE_MEDIA_TYPE", "LayerStyle", "Paint", "feature_paint",
           "geometry_of", "heat_colors", "layer_style", "maplibre_layers", "maplibre_style"]
