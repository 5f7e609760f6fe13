"""Quantized-mesh terrain of the served DEMs, made on request: Cesium's `layer.json` and `{z}/{x}/{y}.terrain`.

`CesiumTerrainProvider.fromUrl("<server>/terrain/<map>")` (CesiumJS) reads it; any DEM map (`cim serve --map`, or a
model's own DEM, `<model>_dem`) has one. Tiles are cached like raster tiles and gzip-encoded when accepted.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tiles.quantized_mesh import MEDIA_TYPE
from tiles.server.deps import Ctx, context
from tiles.server.responses import cache_control, json_response, tile_response

router = APIRouter(tags=["Terrain"])
CtxDep = Annotated[Ctx, Depends(context)]


@router.get("/terrain/{name}/layer.json", summary="Quantized-mesh terrain of a DEM map: Cesium's layer.json")
def layer(name: str, ctx: CtxDep) -> Response:
    terrain = ctx.catalog.terrain(name, ctx.who)
    return json_response(terrain.layer(name), headers={"Cache-Control": "no-cache"})


@router.get("/terrain/{name}/{z}/{x}/{y}.terrain",
            summary="A quantized-mesh-1.0 tile (geographic scheme, rows from the south) with oct-encoded normals")
def terrain_tile(name: str, z: int, x: int, y: int, request: Request, ctx: CtxDep) -> Response:
    terrain = ctx.catalog.terrain(name, ctx.who)
    st = Path(terrain.dem).stat()
    key = f"qm|{terrain.dem}|{st.st_mtime_ns}|{st.st_size}|{terrain.options}|{z}/{x}/{y}"
    etag = '"' + hashlib.blake2b(key.encode(), digest_size=12).hexdigest() + '"'
    content = ctx.catalog.tiles.get(key)
    if content is None:
        content = ctx.catalog.tiles.put(key, terrain.tile(z, x, y).data)
    public = ctx.catalog.map_security[name] == "public"
    return tile_response(request, content, MEDIA_TYPE, etag, cache_control(public, ctx.catalog.settings.cache_max_age),
                         compress=True)
