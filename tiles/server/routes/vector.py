"""Vector tiles (MVT) of store layers: OGC API Tiles and an XYZ alias, with TileJSON 3.0."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tiles.errors import TileRequestError
from tiles.mvt import MVT_MEDIA_TYPE, VectorTileLayer, check_tile
from tiles.server import ogc
from tiles.server.deps import Ctx, context
from tiles.server.responses import cache_control, etag_matches, gzip_fast, json_response, tile_response

router = APIRouter(tags=["Vector tiles"])
CtxDep = Annotated[Ctx, Depends(context)]


def _key(layer: VectorTileLayer, z: int, x: int, y: int) -> str:
    # A version's feature table is written once and never changed, so table + cutting options name the bytes.
    return f"mvt|{layer.table}|{layer.info.updated_at.isoformat()}|{layer.options}|{z}/{x}/{y}"


def _tile(request: Request, ctx: Ctx, name: str, z: int, x: int, y: int, version: int | None = None) -> Response:
    layer = (ctx.catalog.vector_layer(name, ctx.who, ctx.path, ctx.client) if version is None
             else ctx.catalog.vector_version(name, version, ctx.who, ctx.path, ctx.client))
    check_tile(z, x, y, layer.options.minzoom, layer.options.maxzoom)  # a 400 whatever the validators say
    key = _key(layer, z, x, y)
    etag = '"' + hashlib.blake2b(key.encode(), digest_size=12).hexdigest() + '"'
    cache = cache_control(layer.info.security == "public", ctx.catalog.settings.cache_max_age)
    if etag_matches(request, etag):
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": cache})
    tiles = ctx.catalog.tiles
    content = tiles.get(key)
    if content is None:
        content = tiles.put(key, layer.tile(z, x, y).content)
    if not content:
        return Response(status_code=204, headers={"ETag": etag, "Cache-Control": cache})
    gzipped = None
    if len(content) > 512 and "gzip" in request.headers.get("accept-encoding", ""):
        gzipped = tiles.get(key + "|gzip") or tiles.put(key + "|gzip", gzip_fast(content))
    return tile_response(request, content, MVT_MEDIA_TYPE, etag, cache, gzipped=gzipped)


@router.get("/collections/{collection_id}/tiles/WebMercatorQuad/{z}/{y}/{x}",
            summary="OGC API Tiles: a vector tile (tileMatrix/tileRow/tileCol); 204 when empty")
def ogc_tile(collection_id: str, z: int, y: int, x: int, request: Request, ctx: CtxDep) -> Response:
    return _tile(request, ctx, collection_id, z, x, y)


@router.get("/tiles/{layer}/{z}/{x}/{y}.mvt", summary="XYZ vector tile of a layer; 204 when empty")
def xyz_tile(layer: str, z: int, x: int, y: int, request: Request, ctx: CtxDep) -> Response:
    return _tile(request, ctx, layer, z, x, y)


@router.get("/tiles/{layer}/v{version}/{z}/{x}/{y}.mvt",
            summary="XYZ vector tile of one version of a layer (versions: /viewer/versions/{layer}); 204 when empty")
def xyz_version_tile(layer: str, version: int, z: int, x: int, y: int, request: Request, ctx: CtxDep) -> Response:
    return _tile(request, ctx, layer, z, x, y, version)


@router.get("/tiles/{layer}/tilejson.json", summary="TileJSON 3.0 of a layer's vector tiles")
def tilejson(layer: str, ctx: CtxDep) -> Response:
    info = ctx.catalog.layer(layer, ctx.who, "tilejson", ctx.path, ctx.client)
    return json_response(ogc.vector_tilejson([info], ctx.base, ctx.catalog.mvt_options, ctx.query))


@router.get("/collections/{collection_id}/tiles", summary="OGC API Tiles: a collection's vector tilesets")
def tilesets(collection_id: str, ctx: CtxDep) -> Response:
    info = ctx.catalog.layer(collection_id, ctx.who, "tilesets", ctx.path, ctx.client)
    return json_response(ogc.vector_tilesets(info, ctx.base, ctx.query))


@router.get("/collections/{collection_id}/tiles/{tms_id}", summary="OGC API Tiles: a vector tileset")
def tileset(collection_id: str, tms_id: str, ctx: CtxDep) -> Response:
    info = ctx.catalog.layer(collection_id, ctx.who, "tileset", ctx.path, ctx.client)
    if tms_id != "WebMercatorQuad":
        raise TileRequestError(f"vector tiles are served on WebMercatorQuad only, not {tms_id!r}")
    return json_response(ogc.vector_tileset(info, ctx.base, ctx.query))
