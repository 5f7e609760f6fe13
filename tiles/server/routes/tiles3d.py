"""3D Tiles: a built model's tileset.json and content, straight from the build output."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tiles.server.deps import Ctx, context
from tiles.server.responses import cache_control, tile_response

router = APIRouter(tags=["3D Tiles"])


@router.get("/3dtiles/{model}/{path:path}", summary="A file of a 3D Tiles model (tileset.json, glb, subtrees)")
@router.head("/3dtiles/{model}/{path:path}", include_in_schema=False)
def model_file(model: str, path: str, request: Request, ctx: Annotated[Ctx, Depends(context)]) -> Response:
    entry = ctx.catalog.model_file(model, path, ctx.who)
    m = ctx.catalog.models[model]
    public = m.security == "public"
    return tile_response(request, entry.content, entry.media_type, entry.etag,
                         cache_control(public, ctx.catalog.settings.cache_max_age), gzipped=entry.gzipped,
                         ranges=True)
