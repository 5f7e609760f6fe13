"""WMS 1.3.0 (`tiles.wms`): GetCapabilities, GetMap, GetFeatureInfo of the maps and layers the caller may see.
Errors are WMS ServiceExceptionReports with the server's usual statuses (a hidden layer is 404, like a missing one)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from cim.errors import CimError
from layers.errors import LayerNotFoundError
from tiles import wms
from tiles.errors import InvalidKeyError, TileNotFoundError
from tiles.server.deps import HINT_HEADER, Ctx, context, header_text
from tiles.server.routes.maps import ANONYMOUS_NOTE
from tiles.server.routes.styles import styled_layers

router = APIRouter(tags=["WMS"])
CtxDep = Annotated[Ctx, Depends(context)]
_XML = "text/xml; charset=utf-8"


def _capabilities(ctx: Ctx) -> Response:
    maps = [wms.WmsLayer(m.name, m.title or m.name, m.info.bounds, False, "orthophoto")
            for m in ctx.catalog.visible_maps(ctx.who) if m.kind == "image"]
    layers = [wms.WmsLayer(e["name"], e["title"], e.get("extent"), True, e.get("theme_title") or "",
                           [k for k in (e.get("theme"), e.get("security")) if k])
              for e, _ in styled_layers(ctx)]
    note = ANONYMOUS_NOTE.format(base=ctx.base, path="/wms").replace("/wms?api_key", "/wms?SERVICE=WMS&api_key") \
        if ctx.who.anonymous else None
    xml = wms.wms_capabilities([*maps, *layers], ctx.base, title=ctx.catalog.settings.title, query=ctx.query,
                               abstract=note)
    headers = {"Cache-Control": "no-cache", **({HINT_HEADER: header_text(note)} if note else {})}
    return Response(xml, media_type=_XML, headers=headers)


def _resolve(ctx: Ctx, names: tuple[str, ...]) -> tuple[dict, dict]:
    """Maps and layer looks of the requested names; a name the caller may not see is LayerNotDefined (404)."""
    rasters, styles = {}, {}
    looks = {e["name"]: s for e, s in styled_layers(ctx)}
    for name in names:
        if name in ctx.catalog.maps:
            m = ctx.catalog.raster_map(name, ctx.who)
            if m.kind != "image":
                raise TileNotFoundError(f"map {name!r} is a DEM: WMS serves orthophotos and layers; use WMTS "
                                        f"Terrain-RGB tiles for heights")
            rasters[name] = m
        else:
            ctx.catalog.layer(name, ctx.who, "wms", ctx.path, ctx.client)
            styles[name] = looks[name]
    return rasters, styles


@router.get("/wms", summary="WMS 1.3.0: GetCapabilities, GetMap (EPSG:3857, 4490, 4326, CRS:84), GetFeatureInfo")
def wms_kvp(request: Request, ctx: CtxDep) -> Response:
    q = {k.upper(): v for k, v in request.query_params.items()}
    op = q.get("REQUEST", "GetCapabilities").lower()
    try:
        if q.get("SERVICE", "WMS").upper() not in ("WMS", ""):
            raise wms.WmsError(f"SERVICE={q['SERVICE']!r}: this endpoint serves WMS (WMTS is at /wmts)")
        if op == "getcapabilities":
            return _capabilities(ctx)
        if op == "getmap":
            req = wms.parse_map_request(request.query_params)
            rasters, styles = _resolve(ctx, req.layers)
            content = wms.render_map(req, rasters, styles, ctx.catalog.store)
            return Response(content, media_type=req.format, headers={"Cache-Control": "no-cache"})
        if op == "getfeatureinfo":
            req = wms.parse_map_request({**dict(request.query_params), "LAYERS": q.get("LAYERS") or
                                         q.get("QUERY_LAYERS", "")})
            names = tuple(x for x in q.get("QUERY_LAYERS", "").split(",") if x)
            if not names:
                raise wms.WmsError("GetFeatureInfo needs QUERY_LAYERS", "MissingParameterValue")
            fmt = q.get("INFO_FORMAT", "application/json")
            if fmt not in wms.INFO_FORMATS:
                raise wms.WmsError(f"INFO_FORMAT={fmt!r}: use one of {', '.join(wms.INFO_FORMATS)}", "InvalidFormat")
            rasters, _ = _resolve(ctx, names)
            if rasters:
                raise wms.WmsError(f"{', '.join(rasters)} cannot be queried (orthophotos)", "LayerNotQueryable")
            lon, lat, tol = wms.feature_info_point(request.query_params, req)
            count = max(1, min(100, int(q.get("FEATURE_COUNT", "1") or 1)))
            found = [f for n in names for f in wms.features_at(ctx.catalog.store, n, lon, lat, tol, count)]
            body, media = wms.feature_info_body(found, fmt)
            return Response(body, media_type=media, headers={"Cache-Control": "no-cache"})
        raise wms.WmsError(f"REQUEST={q.get('REQUEST')!r}: use GetCapabilities, GetMap or GetFeatureInfo",
                           "OperationNotSupported")
    except InvalidKeyError:
        raise
    except CimError as exc:
        from tiles.server.app import not_found_hint, status_for

        status = status_for(exc)
        code = getattr(exc, "code", None) or ("LayerNotDefined" if isinstance(exc, (LayerNotFoundError,
                                                                                    TileNotFoundError)) else None)
        headers = {HINT_HEADER: not_found_hint(request)} if status == 404 else {}
        return Response(wms.exception_report(str(exc), code), status_code=status, media_type=_XML, headers=headers)
