"""OGC API - Features Part 1 (core, GeoJSON) with Part 3 CQL2-text filters, over the layer store."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from layers.errors import LayerInputError
from layers.serving import FeatureNotFoundError, feature_page_json, get_feature
from tiles.server import ogc
from tiles.server.deps import KEY_PARAM, Ctx, context
from tiles.server.responses import json_response

router = APIRouter(tags=["OGC API - Features"])
CtxDep = Annotated[Ctx, Depends(context)]
# query parameters of /items that are not property filters
_RESERVED = {"bbox", "bbox-crs", "limit", "offset", "filter", "filter-lang", "filter-crs", "crs", "datetime", "f",
             KEY_PARAM}


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    """`minlon,minlat,maxlon,maxlat` (or the 6-number form with heights) in CRS84.

    Raises:
        LayerInputError: not 4 or 6 finite numbers, outside the globe, or min > max.
    """
    if text is None:
        return None
    try:
        v = [float(p) for p in text.split(",")]
    except ValueError:
        v = []
    if len(v) == 6:
        v = [v[0], v[1], v[3], v[4]]
    if len(v) != 4 or not all(math.isfinite(x) for x in v):
        raise LayerInputError(f"bbox={text!r}: expected 4 numbers minlon,minlat,maxlon,maxlat (or 6 with heights)")
    if not (-180 <= v[0] <= 180 and -180 <= v[2] <= 180 and -90 <= v[1] <= v[3] <= 90):
        raise LayerInputError(f"bbox={text!r}: longitudes must be in -180..180, latitudes in -90..90, "
                              f"minlat <= maxlat")
    if v[0] > v[2]:
        raise LayerInputError(f"bbox={text!r} crosses the antimeridian; split it into two requests")
    return v[0], v[1], v[2], v[3]


def _int(name: str, text: str | None, default: int, lo: int, hi: int, clamp: bool = False) -> int:
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError as exc:
        raise LayerInputError(f"{name}={text!r} is not an integer") from exc
    if clamp and value > hi:
        return hi
    if not lo <= value <= hi:
        raise LayerInputError(f"{name}={value} is outside {lo}..{hi}")
    return value


@router.get("/collections", summary="The feature collections (layers) the caller may see")
def collections(ctx: CtxDep) -> Response:
    return json_response(ogc.collections(ctx.catalog.visible_layers(ctx.who), ctx.base, ctx.query),
                         headers={"Cache-Control": "no-cache"})


@router.get("/collections/{collection_id}", summary="One collection")
def collection(collection_id: str, ctx: CtxDep) -> Response:
    info = ctx.catalog.layer(collection_id, ctx.who, "collection", ctx.path, ctx.client)
    return json_response(ogc.collection(info, ctx.base, ctx.query))


@router.get("/collections/{collection_id}/queryables", summary="Properties usable in filters (JSON Schema)")
def queryables(collection_id: str, ctx: CtxDep) -> Response:
    info = ctx.catalog.layer(collection_id, ctx.who, "queryables", ctx.path, ctx.client)
    return json_response(ogc.queryables(info, ctx.base), media_type="application/schema+json")


@router.get("/collections/{collection_id}/items", summary="Features: bbox, limit/offset paging, CQL2-text filter "
            "and property=value filters")
def items(
    collection_id: str,
    request: Request,
    ctx: CtxDep,
    bbox: Annotated[str | None, Query(description="minlon,minlat,maxlon,maxlat (CRS84)")] = None,
    limit: Annotated[str | None, Query(description="page size (the API document gives default and maximum)")] = None,
    offset: Annotated[str | None, Query(description="features to skip, default 0")] = None,
    filter: Annotated[str | None, Query(description="CQL2-text, e.g. capacity > 100 AND kind = 'school'")] = None,  # noqa: A002
    filter_lang: Annotated[str | None, Query(alias="filter-lang")] = None,
    filter_crs: Annotated[str | None, Query(alias="filter-crs")] = None,
    bbox_crs: Annotated[str | None, Query(alias="bbox-crs")] = None,
    crs: str | None = None,
) -> Response:
    s = ctx.catalog.settings
    if filter_lang not in (None, "cql2-text"):
        raise LayerInputError(f"filter-lang={filter_lang!r}: only cql2-text is supported")
    for pname, value in (("filter-crs", filter_crs), ("bbox-crs", bbox_crs), ("crs", crs)):
        if value not in (None, ogc.CRS84):
            raise LayerInputError(f"{pname}={value!r}: only {ogc.CRS84} is supported")
    # OGC API Features: a limit above the advertised maximum is served as the maximum, with a next link, not refused
    lim = _int("limit", limit, s.items_limit, 1, s.items_max_limit, clamp=True)
    off = _int("offset", offset, 0, 0, 2**62)
    props = {k: v for k, v in request.query_params.items() if k not in _RESERVED}
    info = ctx.catalog.layer(collection_id, ctx.who, "items", ctx.path, ctx.client)
    page = feature_page_json(ctx.catalog.store, info.name, bbox=parse_bbox(bbox),  # type: ignore[arg-type]
                             filter=filter, properties=props, limit=lim, offset=off)
    return Response(ogc.items_json(page, info, ctx.base, dict(request.query_params), lim, off),
                    media_type=ogc.GEOJSON)


@router.get("/collections/{collection_id}/items/{feature_id}", summary="One feature by id")
def item(collection_id: str, feature_id: str, ctx: CtxDep) -> Response:
    info = ctx.catalog.layer(collection_id, ctx.who, "item", ctx.path, ctx.client)
    if not feature_id.lstrip("-").isdigit() or not -(2**63) <= int(feature_id) < 2**63:
        raise FeatureNotFoundError(f"collection {collection_id!r} has no feature {feature_id!r} (ids are integers)")
    fid = int(feature_id)
    doc = get_feature(ctx.catalog.store, info.name, fid)  # type: ignore[arg-type]
    return json_response(ogc.feature(doc, info, ctx.base, ctx.query), media_type=ogc.GEOJSON)
