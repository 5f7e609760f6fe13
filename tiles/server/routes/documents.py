"""What the viewer saves: layer styles (thematic maps), scenes and annotations (`layers.docstore`).

Reading follows the keys like every route (a style of a layer the caller may not see is a 404; a scene is listed to
callers who may see every layer it shows). Saving needs a key: styles by any key that may see the layer, scenes by
the key that saved them first (the operator's scenes, saved with `layers.scenes.save_scene`, are read-only here),
annotations per key (each key sees only its own).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Response
from pydantic import ValidationError

from layers.docstore import DocumentStore
from layers.errors import LayerInputError
from layers.scenes import Scene, save_scene
from layers.styles import LayerStyle, make_style, style_for
from tiles.errors import KeyRequiredError, NotAllowedError, TileNotFoundError
from tiles.server.deps import Ctx, context
from tiles.server.responses import json_response

router = APIRouter(tags=["viewer"])
CtxDep = Annotated[Ctx, Depends(context)]
NO_STORE = {"Cache-Control": "no-store"}


def _docs(ctx: Ctx) -> DocumentStore:
    if ctx.catalog.docs is None:
        raise TileNotFoundError("this server has no layer store, so nothing is saved; start it with --store")
    return ctx.catalog.docs


def _writer(ctx: Ctx, what: str) -> str:
    if ctx.who.key_id is None:
        raise KeyRequiredError(f"saving {what} needs an API key (X-API-Key, or ?api_key= in the viewer's URL)")
    return ctx.who.key_id


# ------------------------------------------------------------------------------------------------ styles
@router.get("/viewer/styles/{layer}", summary="The style of a layer: stored, else the viewer's default")
def get_style(layer: str, ctx: CtxDep) -> Response:
    info = ctx.catalog.layer(layer, ctx.who, "style", ctx.path, ctx.client)
    return json_response(style_for(ctx.catalog.docs, info).to_dict(), headers=NO_STORE)


@router.get("/viewer/styles/{layer}/classify", summary="A thematic style computed from the layer's data (not saved)")
def classify(layer: str, ctx: CtxDep,
             kind: Literal["single", "unique", "graduated", "graduated_size", "choropleth", "heatmap"] = "graduated",
             field: str | None = None,
             method: Literal["equal_interval", "quantile", "jenks"] = "quantile",
             classes: Annotated[int, Query(ge=2, le=12)] = 5, ramp: str = "YlOrRd",
             source: str | None = None, agg: Literal["count", "sum", "mean", "min", "max"] = "count",
             source_field: str | None = None) -> Response:
    ctx.catalog.layer(layer, ctx.who, "style", ctx.path, ctx.client)
    if source is not None:
        ctx.catalog.layer(source, ctx.who, "stats", ctx.path, ctx.client)
    assert ctx.catalog.store is not None
    style = make_style(ctx.catalog.store, layer, kind, field=field, method=method, n_classes=classes, ramp=ramp,
                       source=source, agg=agg, source_field=source_field)
    return json_response(style.to_dict(), headers=NO_STORE)


@router.put("/viewer/styles/{layer}", summary="Save a layer's style (needs a key that may see the layer)")
def put_style(layer: str, ctx: CtxDep, style: Annotated[LayerStyle, Body()]) -> Response:
    ctx.catalog.layer(layer, ctx.who, "style-save", ctx.path, ctx.client)
    by = _writer(ctx, "a style")
    if style.layer != layer:
        raise LayerInputError(f"the style names layer {style.layer!r} but was sent to /viewer/styles/{layer}")
    from layers.docstore import now

    saved = style.model_copy(update={"updated_at": now(), "updated_by": by})
    _docs(ctx).put_style(layer, saved.to_dict(), by)
    return json_response(saved.to_dict(), headers=NO_STORE)


@router.delete("/viewer/styles/{layer}", summary="Forget a layer's style (the default applies again)")
def delete_style(layer: str, ctx: CtxDep) -> Response:
    ctx.catalog.layer(layer, ctx.who, "style-save", ctx.path, ctx.client)
    _writer(ctx, "a style")
    _docs(ctx).delete_style(layer)
    return Response(status_code=204)


# ------------------------------------------------------------------------------------------------ scenes
@router.get("/viewer/scenes", summary="The scenes the caller may open")
def list_scenes(ctx: CtxDep) -> Response:
    return json_response({"scenes": ctx.catalog.visible_scenes(ctx.who)}, headers=NO_STORE)


def visible_scene(ctx: Ctx, name: str) -> dict[str, Any]:
    """A stored scene the caller may open (every layer it shows is visible to the caller), else 404."""
    doc = _docs(ctx).scene(name)
    scene = Scene.model_validate(doc)
    if any(ctx.catalog.can_see_id(i, ctx.who) is False for i in scene.names()):
        raise TileNotFoundError(f"no scene {name!r}; see /catalog for the scenes you may open")
    return scene.to_dict()


@router.get("/viewer/scenes/{name}", summary="A scene: layers, styles, camera, time")
def get_scene(name: str, ctx: CtxDep) -> Response:
    return json_response(visible_scene(ctx, name), headers=NO_STORE)


@router.put("/viewer/scenes/{name}", summary="Save a scene (needs a key; a key changes only its own scenes)")
def put_scene(name: str, ctx: CtxDep, scene: Annotated[dict[str, Any], Body()]) -> Response:
    owner = _writer(ctx, "a scene")
    docs = _docs(ctx)
    if name in docs.scene_names() and docs.scene_owner(name) != owner:
        raise NotAllowedError(f"scene {name!r} was saved by another key or by the operator; save under a new name")
    doc = {**scene, "name": name}
    try:
        parsed = Scene.model_validate(doc)
    except ValidationError as exc:  # a bad name or field is the caller's mistake (400), not the server's
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'scene'}: {e['msg']}" for e in exc.errors()[:3])
        raise LayerInputError(f"scene {name!r} is not a scene document ({problems}); see docs/viewer.md, "
                              "\"Scenes\"") from exc
    hidden = [i for i in parsed.names() if ctx.catalog.can_see_id(i, ctx.who) is False]
    if hidden:
        raise LayerInputError(f"the scene names {hidden}, which do not exist on this server")
    return json_response(save_scene(docs, doc, owner).to_dict(), headers=NO_STORE)


@router.delete("/viewer/scenes/{name}", summary="Delete a scene the caller's key saved")
def delete_scene(name: str, ctx: CtxDep) -> Response:
    owner = _writer(ctx, "a scene")
    docs = _docs(ctx)
    if docs.scene_owner(name) != owner:
        raise NotAllowedError(f"scene {name!r} was saved by another key or by the operator")
    docs.delete_scene(name)
    return Response(status_code=204)


# ------------------------------------------------------------------------------------------------ annotations
@router.get("/viewer/annotations", summary="The caller's annotations (批注) pinned in 3D")
def list_annotations(ctx: CtxDep) -> Response:
    if ctx.who.key_id is None or ctx.catalog.docs is None:
        return json_response({"annotations": []}, headers=NO_STORE)
    return json_response({"annotations": ctx.catalog.docs.annotations(ctx.who.key_id)}, headers=NO_STORE)


@router.post("/viewer/annotations", summary="Pin an annotation: {lon, lat, height, text}")
def add_annotation(ctx: CtxDep, body: Annotated[dict[str, Any], Body()]) -> Response:
    owner = _writer(ctx, "an annotation")
    try:
        lon, lat, height = float(body["lon"]), float(body["lat"]), float(body.get("height") or 0.0)
        text = str(body["text"]).strip()
    except (KeyError, TypeError, ValueError) as exc:
        raise LayerInputError(f"an annotation is {{lon, lat, height, text}}; got {sorted(body)} ({exc})") from exc
    if not (-180 <= lon <= 180 and -90 <= lat <= 90) or not text or len(text) > 2000:
        raise LayerInputError(f"annotation at {lon}, {lat} with {len(text)} characters: lon/lat must be on the globe "
                              f"and the text 1-2000 characters")
    doc = {"lon": lon, "lat": lat, "height": height, "text": text}
    return json_response(_docs(ctx).add_annotation(owner, doc), status=201, headers=NO_STORE)


@router.delete("/viewer/annotations/{annotation_id}", summary="Remove one of the caller's annotations")
def delete_annotation(annotation_id: int, ctx: CtxDep) -> Response:
    _docs(ctx).delete_annotation(_writer(ctx, "an annotation"), annotation_id)
    return Response(status_code=204)
