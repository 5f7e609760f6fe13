"""Geocoding over HTTP: `/geocode`, `/geocode/suggest`, `/reverse` and a building's 一标三实 at
`/addresses/buildings/{code}`.

The geocoder is built once per server from the store's `addresses` layer (the store is read-only for the server's
life). A caller who may not see that layer gets 404, as for any layer. The 一标三实 link layers follow their own
security levels: a caller sees counts and records only of the link layers it may see (population is confidential
by default, so an anonymous caller never sees a person), and every such access to a confidential layer is
audited.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from layers.addresses.links import REGISTRIES, building_links
from layers.addresses.model import LAYER
from layers.errors import LayerNotFoundError
from tiles.server.deps import Ctx, context
from tiles.server.responses import json_response

router = APIRouter(tags=["geocoding"])
CtxDep = Annotated[Ctx, Depends(context)]
_lock = threading.Lock()
_NO_STORE = {"Cache-Control": "no-store"}
TextQuery = Annotated[str, Query(min_length=1, max_length=500, description="address text (at most 500 characters)")]


def geocoder(request: Request, ctx: Ctx, action: str) -> Any:
    """The server's geocoder, if the caller may see the standard addresses (else LayerNotFoundError: 404)."""
    ctx.catalog.layer(LAYER, ctx.who, action, ctx.path, ctx.client)
    state = request.app.state
    with _lock:
        gc = getattr(state, "geocoder", None)
        if gc is None:
            from layers.addresses.geocoder import Geocoder

            if ctx.catalog.store is None:
                raise LayerNotFoundError(f"no collection {LAYER!r} on this server; see /collections")
            gc = state.geocoder = Geocoder.from_store(ctx.catalog.store)
    return gc


def _link_kinds(ctx: Ctx, action: str) -> list[str]:
    """The registries whose link layers the caller may see (each access audited as for any layer)."""
    kinds = []
    for kind, spec in REGISTRIES.items():
        info = ctx.catalog.layers.get(spec["layer"])
        if info is not None and ctx.who.can_see(info.name, info.security, info.theme):
            ctx.catalog.layer(info.name, ctx.who, action, ctx.path, ctx.client)
            kinds.append(kind)
    return kinds


@router.get("/geocode", summary="The standard address, building and point of an address text")
def geocode(request: Request, ctx: CtxDep, q: TextQuery) -> Response:
    result = geocoder(request, ctx, "geocode").geocode(q)
    return json_response({"q": q, "result": result.to_dict()}, headers=_NO_STORE)


@router.get("/geocode/suggest", summary="Standard addresses for a search box (typo-tolerant, partial text)")
def suggest(request: Request, ctx: CtxDep, q: TextQuery,
            limit: Annotated[int, Query(ge=1, le=50)] = 10) -> Response:
    hits = geocoder(request, ctx, "suggest").suggest(q, limit)
    return json_response({"q": q, "suggestions": hits}, headers=_NO_STORE)


@router.get("/reverse", summary="The standard address nearest to a point, its building, community and town")
def reverse(request: Request, ctx: CtxDep, lon: Annotated[float, Query(ge=-180, le=180)],
            lat: Annotated[float, Query(ge=-90, le=90)]) -> Response:
    gc = geocoder(request, ctx, "reverse")
    doc = gc.reverse(lon, lat).to_dict()
    kinds = _link_kinds(ctx, "reverse")
    if doc["building_code"] and kinds:
        doc["links"] = building_links(ctx.catalog.store, doc["building_code"], kinds=kinds)["counts"]
    return json_response(doc, headers=_NO_STORE)


@router.get("/addresses/buildings/{building_code}", summary="One building's 一标三实: counts, and the records the "
            "caller may see")
def building(request: Request, ctx: CtxDep, building_code: str,
             limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> Response:
    geocoder(request, ctx, "links")
    if len(building_code) > 64 or not building_code.isalnum():
        raise LayerNotFoundError(f"no building {building_code[:64]!r}")
    kinds = _link_kinds(ctx, "links")
    doc = building_links(ctx.catalog.store, building_code, records=True, limit=limit, kinds=kinds)
    return json_response(doc, headers=_NO_STORE)
