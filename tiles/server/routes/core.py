"""Landing page, health, service catalogue, conformance, tile matrix sets."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tiles.errors import TileNotFoundError
from tiles.raster import TMS_IDS, get_tms
from tiles.server import ogc
from tiles.server.deps import Ctx, context
from tiles.server.responses import json_response

router = APIRouter()
CtxDep = Annotated[Ctx, Depends(context)]


@router.get("/", summary="OGC API landing page (JSON); the viewer is not part of this server yet")
def landing(request: Request, ctx: CtxDep, f: str | None = None) -> Response:
    accept = request.headers.get("accept", "")
    if f != "json" and "text/html" in accept and "json" not in accept:
        raise TileNotFoundError("no viewer is served at / yet; machines: /catalog, /collections, /api "
                                "(or / with Accept: application/json)")
    return json_response(ogc.landing_page(ctx.base, ctx.catalog.settings.title, ctx.query))


@router.get("/health", summary="Liveness and what is served")
def health(request: Request) -> Response:
    c = request.app.state.catalog
    return json_response({"status": "ok", "models": len(c.models), "maps": len(c.maps), "layers": len(c.layers)},
                         headers={"Cache-Control": "no-store"})


@router.get("/catalog", summary="Every model, map and layer the caller may see, with its URLs")
def catalog(ctx: CtxDep) -> Response:
    return json_response(ctx.catalog.describe(ctx.who, ctx.base), headers={"Cache-Control": "no-cache"})


@router.get("/conformance", summary="OGC API conformance classes")
def conformance() -> Response:
    return json_response({"conformsTo": ogc.CONFORMANCE})


@router.get("/tileMatrixSets", summary="Tile matrix sets served (OGC TMS 2.0)")
def tile_matrix_sets(ctx: CtxDep) -> Response:
    return json_response({"tileMatrixSets": [
        {"id": t, "title": get_tms(t).title or t, "links": [
            {"href": f"{ctx.base}/tileMatrixSets/{t}", "rel": "self", "type": "application/json"}]}
        for t in TMS_IDS]})


@router.get("/tileMatrixSets/{tms_id}", summary="A tile matrix set definition (OGC TMS 2.0 JSON)")
def tile_matrix_set(tms_id: str) -> Response:
    return json_response(get_tms(tms_id).model_dump(mode="json", exclude_none=True))
