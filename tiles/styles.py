"""How a layer is drawn, once for every client: the viewer (deck.gl) and MapLibre / Mapbox GL style documents
(which QGIS, MapLibre and most vector-tile clients read).

`layer_style` decides a vector layer's look from what the catalogue says about it (the rules the viewer has always
used: a colour from the palette by the layer's position, translucent polygon fills, extruded polygons where a
height field exists, dense layers off at first). `maplibre_style` turns looks into a style document (version 8)
whose sources are this server's tiles; it asks for no sprite and no glyphs (no icon or text layers), so a client
needs nothing off the server. A stored style (a thematic map) becomes another `LayerStyle` for the same generator.

    >>> doc = maplibre_style("city", [(layer_entry, layer_style(layer_entry, 0))], [], "http://127.0.0.1:8000")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Geometry = Literal["point", "line", "polygon"]
STYLE_MEDIA_TYPE = "application/vnd.mapbox.style+json"
HEIGHT_FIELDS = ("height", "max_height_m", "height_m")
DENSE_FEATURES = 2000  # layers with more features start hidden (trees would cover the city)
PALETTE = [(230, 85, 13), (49, 130, 189), (49, 163, 84), (117, 107, 177), (222, 45, 38), (253, 174, 107),
           (99, 99, 99), (158, 202, 225), (161, 217, 155), (188, 189, 220), (214, 97, 107), (140, 86, 75),
           (231, 186, 82), (23, 190, 207)]


@dataclass(frozen=True)
class LayerStyle:
    """The look of one vector layer.

    Attributes:
        color: RGB 0-255.
        geometry: point, line or polygon.
        fill_alpha: polygon fill (and point fill) opacity, 0-255.
        line_width: outline or line width, px.
        point_radius: point radius, px.
        extruded: polygons drawn as blocks `height_field` metres tall.
        height_field: the field with the height in metres (extruded layers).
        visible: shown when a map opens.
    """

    color: tuple[int, int, int]
    geometry: Geometry
    fill_alpha: int
    line_width: float
    point_radius: float
    extruded: bool = False
    height_field: str | None = None
    visible: bool = True

    @property
    def css(self) -> str:
        return "rgb({},{},{})".format(*self.color)


def geometry_of(geometry_type: str) -> Geometry:
    """point, line or polygon from a catalogue geometry type (`MULTIPOLYGON`, `LineString Z`, ...)."""
    g = (geometry_type or "").upper()
    return "polygon" if "POLYGON" in g else "line" if "LINE" in g else "point"


def layer_style(layer: Mapping[str, Any], index: int, fields: Sequence[str] = ()) -> LayerStyle:
    """The look of a layer as the viewer draws it.

    Args:
        layer: a `/catalog` layer entry (`geometry_type`, `feature_count`).
        index: the layer's position among the layers the caller sees (picks the palette colour).
        fields: the layer's field names (a height field makes polygons extruded).
    """
    geometry = geometry_of(layer.get("geometry_type", ""))
    height_field = next((f for f in HEIGHT_FIELDS if f in fields), None)
    extruded = geometry == "polygon" and height_field is not None
    dense = (layer.get("feature_count") or 0) > DENSE_FEATURES
    return LayerStyle(
        color=PALETTE[index % len(PALETTE)], geometry=geometry,
        fill_alpha=150 if extruded else 40 if geometry == "polygon" else 220,
        line_width=1 if geometry == "polygon" else 2, point_radius=2 if dense else 4,
        extruded=extruded, height_field=height_field if extruded else None, visible=not extruded and not dense)


def _with_key(url: str, key_query: str) -> str:
    return url if not key_query else url + ("&" if "?" in url else "?") + key_query


def maplibre_layers(name: str, style: LayerStyle, visible: bool | None = None) -> list[dict[str, Any]]:
    """The style-document layers that draw vector layer `name` (source and source-layer `name`)."""
    vis = {"visibility": "visible" if (style.visible if visible is None else visible) else "none"}
    common = {"source": name, "source-layer": name, "layout": vis}
    alpha = round(style.fill_alpha / 255, 3)
    if style.geometry == "point":
        return [{"id": name, "type": "circle", **common,
                 "paint": {"circle-color": style.css, "circle-opacity": alpha, "circle-radius": style.point_radius,
                           "circle-stroke-color": style.css, "circle-stroke-width": 1}}]
    if style.geometry == "line":
        return [{"id": name, "type": "line", **common,
                 "paint": {"line-color": style.css, "line-width": style.line_width}}]
    out = [{"id": f"{name}-fill", "type": "fill", **common,
            "paint": {"fill-color": style.css, "fill-opacity": alpha if not style.extruded else 0.4}},
           {"id": f"{name}-outline", "type": "line", **common,
            "paint": {"line-color": style.css, "line-width": style.line_width}}]
    if style.extruded:
        out.append({"id": f"{name}-extrusion", "type": "fill-extrusion", **common,
                    "paint": {"fill-extrusion-color": style.css, "fill-extrusion-opacity": alpha,
                              "fill-extrusion-height": ["coalesce", ["to-number", ["get", style.height_field]], 0],
                              "fill-extrusion-base": 0}})
    return out


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


__all__ = ["DENSE_FEATURES", "HEIGHT_FIELDS", "PALETTE", "STYLE_MEDIA_TYPE", "LayerStyle", "geometry_of",
           "layer_style", "maplibre_layers", "maplibre_style"]
