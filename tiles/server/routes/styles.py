"""MapLibre / Mapbox GL style documents of what the caller may see (`tiles.styles`): per layer, per raster map and
the whole "one map", with sources at this server's tiles."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from tiles.errors import TileNotFoundError
from tiles.server.deps import Ctx, context
from tiles.server.responses import json_response
from tiles.styles import STYLE_MEDIA_TYPE, LayerStyle, layer_style, maplibre_style

router = APIRouter(tags=["Styles"])
CtxDep = Annotated[Ctx, Depends(context)]
ONEMAP = "onemap"


def styled_layers(ctx: Ctx) -> list[tuple[dict[str, Any], LayerStyle]]:
    """The caller's layers (as `/catalog` lists them) with their looks, as the viewer draws them: each layer's
    stored style (a thematic map saved in the viewer, `layers.styles`) where it has one, else its default look."""
    catalog = ctx.catalog.describe(ctx.who, ctx.base)
    fields = {i.name: i.field_names() for i in ctx.catalog.visible_layers(ctx.who)}
    docs = ctx.catalog.docs
    stored = docs.styles([e["name"] for e in catalog["layers"]]) if docs is not None else {}
    return [(entry, layer_style(entry, fields.get(entry["name"], []), stored.get(entry["name"])))
            for entry in catalog["layers"]]


def _image_maps(ctx: Ctx) -> list[dict[str, Any]]:
    return [m for m in ctx.catalog.describe(ctx.who, ctx.base)["maps"] if m["kind"] == "image"]


def _doc(ctx: Ctx, doc: dict[str, Any]) -> Response:
    return json_response(doc, media_type=STYLE_MEDIA_TYPE, headers={"Cache-Control": "no-cache"})


@router.get("/styles", summary="The style documents the caller may use (the one map, each layer, each map)")
def styles(ctx: CtxDep) -> Response:
    q = f"?{ctx.query}" if ctx.query else ""

    def item(sid: str, title: str, path: str) -> dict[str, Any]:
        return {"id": sid, "title": title, "links": [{"href": f"{ctx.base}/styles/{path}{q}", "rel": "stylesheet",
                                                      "type": STYLE_MEDIA_TYPE}]}

    out = [item(ONEMAP, ctx.catalog.settings.title, ONEMAP)]
    out += [item(f"layers/{e['name']}", e["title"], f"layers/{e['name']}") for e, _ in styled_layers(ctx)]
    out += [item(f"maps/{m['name']}", m["title"], f"maps/{m['name']}") for m in _image_maps(ctx)]
    return json_response({"styles": out}, headers={"Cache-Control": "no-cache"})


@router.get(f"/styles/{ONEMAP}", summary="Style document of the one map: orthophotos and every layer the caller "
            "may see, as the viewer shows them")
def onemap(ctx: CtxDep) -> Response:
    return _doc(ctx, maplibre_style(ctx.catalog.settings.title, styled_layers(ctx), _image_maps(ctx), ctx.base,
                                    key_query=ctx.query, vector_maxzoom=ctx.catalog.mvt_options.maxzoom))


@router.get("/styles/layers/{layer}", summary="Style document of one layer's vector tiles")
def layer(layer: str, ctx: CtxDep) -> Response:
    ctx.catalog.layer(layer, ctx.who, "style", ctx.path, ctx.client)  # 404 (and audit) as for the layer itself
    chosen = [(e, s) for e, s in styled_layers(ctx) if e["name"] == layer]
    return _doc(ctx, maplibre_style(chosen[0][0]["title"], chosen, [], ctx.base, key_query=ctx.query, visible=True,
                                    vector_maxzoom=ctx.catalog.mvt_options.maxzoom))


@router.get("/styles/maps/{name}", summary="Style document of one raster map (orthophoto)")
def raster_map(name: str, ctx: CtxDep) -> Response:
    m = ctx.catalog.raster_map(name, ctx.who)
    if m.kind != "image":
        raise TileNotFoundError(f"map {name!r} is a DEM (Terrain-RGB): use its TileJSON as a raster-dem source")
    entry = next(e for e in _image_maps(ctx) if e["name"] == name)
    return _doc(ctx, maplibre_style(m.title or name, [], [entry], ctx.base, key_query=ctx.query, visible=True))
