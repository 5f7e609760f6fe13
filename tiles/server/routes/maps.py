"""Raster maps from COGs: XYZ and tile-matrix-set tiles, TileJSON 3.0, WMTS 1.0 (KVP and RESTful)."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from tiles.errors import TileRequestError
from tiles.raster import MEDIA_TYPES, RasterMap, wmts_capabilities
from tiles.server import ogc
from tiles.server.deps import HINT_HEADER, Ctx, context, header_text
from tiles.server.responses import cache_control, etag_matches, json_response

router = APIRouter(tags=["Raster maps"])
CtxDep = Annotated[Ctx, Depends(context)]
_FORMATS = {v: k for k, v in MEDIA_TYPES.items()}


def _key(m: RasterMap, tms_id: str, z: int, x: int, y: int, fmt: str) -> str:
    st = m.path.stat()
    return f"{m.path}|{st.st_mtime_ns}|{st.st_size}|{m.kind}|{tms_id}/{z}/{x}/{y}.{fmt}"


def _tile(request: Request, ctx: Ctx, name: str, tms_id: str, z: int, x: int, y: int, fmt: str) -> Response:
    m = ctx.catalog.raster_map(name, ctx.who)
    m.check(tms_id, z, x, y, fmt)  # an impossible tile is a 400 whatever the validators say
    key = _key(m, tms_id, z, x, y, fmt)
    etag = '"' + hashlib.blake2b(key.encode(), digest_size=12).hexdigest() + '"'
    cache = cache_control(ctx.catalog.map_security[name] == "public", ctx.catalog.settings.cache_max_age)
    headers = {"ETag": etag, "Cache-Control": cache}
    if etag_matches(request, etag):
        return Response(status_code=304, headers=headers)
    content = ctx.catalog.tiles.get(key)
    if content is None:
        content = ctx.catalog.tiles.put(key, m.tile(tms_id, z, x, y, fmt).content)
    return Response(content, headers=headers, media_type=MEDIA_TYPES[fmt])


@router.get("/maps/{name}/{z}/{x}/{y}.{fmt}", summary="XYZ raster tile (WebMercatorQuad); DEMs as Terrain-RGB")
def xyz_tile(name: str, z: int, x: int, y: int, fmt: str, request: Request, ctx: CtxDep) -> Response:
    return _tile(request, ctx, name, "WebMercatorQuad", z, x, y, fmt)


@router.get("/maps/{name}/{tms_id}/{z}/{x}/{y}.{fmt}",
            summary="Raster tile on a tile matrix set (WebMercatorQuad or CGCS2000Quad); x = column, y = row")
def tms_tile(name: str, tms_id: str, z: int, x: int, y: int, fmt: str, request: Request, ctx: CtxDep) -> Response:
    return _tile(request, ctx, name, tms_id, z, x, y, fmt)


@router.get("/maps/{name}/tilejson.json", summary="TileJSON 3.0 of a raster map")
def tilejson(name: str, ctx: CtxDep, tms: str = "WebMercatorQuad", format: str | None = None) -> Response:  # noqa: A002
    m = ctx.catalog.raster_map(name, ctx.who)
    fmt = format or m.formats[0]
    if fmt not in m.formats:
        raise TileRequestError(f"map {name!r} is served as {', '.join(m.formats)}, not {fmt!r}")
    return json_response(ogc.raster_tilejson(m, ctx.base, fmt, tms, ctx.query))


ANONYMOUS_NOTE = ("Anonymous capabilities list public maps only. With an API key use {base}/basic{path}, which asks "
                  "for the key as the password of HTTP Basic authentication (QGIS, ArcGIS, GDAL: a stored Basic "
                  "login, any user name), or {base}{path}?api_key=KEY")
WMTS_CAPABILITIES = "/wmts/1.0.0/WMTSCapabilities.xml"


def _capabilities(ctx: Ctx, hint: str | None = None) -> Response:
    note = ANONYMOUS_NOTE.format(base=ctx.base, path=WMTS_CAPABILITIES) if ctx.who.anonymous else None
    xml = wmts_capabilities(ctx.catalog.visible_maps(ctx.who), ctx.base, title=ctx.catalog.settings.title,
                            query=ctx.query, abstract=note)
    headers = {"Cache-Control": "no-cache"}
    if hint or note:
        headers[HINT_HEADER] = header_text(" ".join(h for h in (hint, note) if h))
    return Response(xml, media_type="application/xml", headers=headers)


@router.get("/wmts/1.0.0/WMTSCapabilities.xml", summary="WMTS 1.0.0 capabilities (RESTful)")
def wmts_rest(ctx: CtxDep) -> Response:
    return _capabilities(ctx)


@router.get("/wmts", summary="WMTS 1.0.0 KVP: GetCapabilities and GetTile")
def wmts_kvp(request: Request, ctx: CtxDep) -> Response:
    q = {k.upper(): v for k, v in request.query_params.items()}
    service = q.get("SERVICE", "WMTS").upper()
    op = q.get("REQUEST", "GetCapabilities")
    if op.lower() == "getcapabilities":
        # QGIS appends SERVICE=WMS&REQUEST=GetCapabilities to any capabilities URL it is given, and reads WMTS
        # capabilities from the answer: give it (and anyone probing) the WMTS document and say where WMS is
        hint = None if service == "WMTS" else f"SERVICE={q['SERVICE']}: this is the WMTS endpoint; WMS 1.3.0 is " \
                                              f"at {ctx.base}/wms"
        return _capabilities(ctx, hint)
    if service == "WMS":
        # a WMS request sent here: the WMS endpoint answers it, with the same query string
        return RedirectResponse(f"{ctx.base}/wms?{request.url.query}", status_code=307)
    if service != "WMTS":
        raise TileRequestError(f"SERVICE={q['SERVICE']!r}: this endpoint serves WMTS (WMS is at /wms)")
    if op.lower() != "gettile":
        raise TileRequestError(f"REQUEST={op!r}: use GetCapabilities or GetTile")
    missing = [p for p in ("LAYER", "TILEMATRIXSET", "TILEMATRIX", "TILEROW", "TILECOL") if not q.get(p)]
    if missing:
        raise TileRequestError(f"GetTile needs {', '.join(missing)}")
    fmt = _FORMATS.get(q.get("FORMAT", "image/png"))
    if fmt is None:
        raise TileRequestError(f"FORMAT={q['FORMAT']!r}: use one of {', '.join(MEDIA_TYPES.values())}")
    try:
        z, row, col = int(q["TILEMATRIX"]), int(q["TILEROW"]), int(q["TILECOL"])
    except ValueError as exc:
        raise TileRequestError("TILEMATRIX, TILEROW and TILECOL must be integers") from exc
    return _tile(request, ctx, q["LAYER"], q["TILEMATRIXSET"], z, col, row, fmt)
