"""OGC SensorThings API 1.1 at `/sta/v1.1/`: reads (GET), creates (POST), updates (PATCH, PUT), deletes (DELETE) and
`CreateObservations` (dataArray). Each route reads the request, makes one call on the `SensingStore`
(`layers.sensing`) and renders; every write is audited."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from layers.sensing.errors import SensingInputError
from layers.sensing.query import RawValue
from layers.sensing.store import SensingStore
from layers.sensing.values import Access
from layers.types import SECURITY_LEVELS
from tiles.errors import InvalidKeyError, RequestTooLargeError, TileNotFoundError
from tiles.server.auth import Principal
from tiles.server.deps import Ctx, context
from tiles.server.responses import json_response

router = APIRouter(tags=["sensing"])
CtxDep = Annotated[Ctx, Depends(context)]
ROOT = "/sta/v1.1"
SENSING_THEME = "iot_sensing"  # a `theme:iot_sensing` grant sees every Thing (物联感知)
WRITE_GRANT = "sensing:write"


def sensing_access(who: Principal) -> Access:
    """What a caller may do with the sensing store: the Thing levels its grants see, and writing with the
    `sensing:write` grant."""
    levels = tuple(level for level in SECURITY_LEVELS if who.can_see("", level, SENSING_THEME))
    return Access(levels=levels, write=WRITE_GRANT in who.grants, key_id=who.key_id)


def sensing_of(ctx: Ctx) -> SensingStore:
    sensing = ctx.catalog.sensing
    if sensing is None:
        raise TileNotFoundError("this server has no layer store, so no SensorThings service; start it with --store "
                                "(and --ingest to take observations)")
    return sensing


def _writer(ctx: Ctx) -> Access:
    if ctx.who.anonymous:
        raise InvalidKeyError(f"writing needs an API key with the grant {WRITE_GRANT} "
                              f"(cim keys create --scope internal,{WRITE_GRANT})")
    return sensing_access(ctx.who)


async def read_json(request: Request, limit: int) -> Any:
    """The request body as JSON, at most `limit` bytes.

    Raises:
        RequestTooLargeError: a larger body (413).
        SensingInputError: not JSON (400).
    """
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestTooLargeError(f"the request body has {declared} bytes; at most {limit} are accepted "
                                   f"(send observations in smaller batches)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLargeError(f"the request body exceeds {limit} bytes; send smaller batches")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SensingInputError(f"the request body is not JSON: {exc}") from None
    except RecursionError:
        raise SensingInputError("the request body nests JSON arrays or objects too deeply") from None


def _audit(ctx: Ctx, access: Access, action: str, target: str) -> None:
    if ctx.catalog.access is not None:
        ctx.catalog.access.audit(ctx.who, "sensing", access.clearance(), action, f"{ctx.path} {target}", ctx.client)


def _base(ctx: Ctx) -> str:
    return ctx.base + ROOT


def _no_store() -> dict[str, str]:
    return {"Cache-Control": "no-store"}


@router.get(ROOT, summary="SensorThings API service root (entity sets, conformance)")
@router.get(ROOT + "/", include_in_schema=False)
def service_root(ctx: CtxDep) -> Response:
    sensing = ctx.catalog.sensing
    doc = SensingStore().get("", base=_base(ctx)) if sensing is None else sensing.get("", base=_base(ctx))
    mqtt = ctx.catalog.settings.mqtt
    if mqtt:
        key = "http://www.opengis.net/spec/iot_sensing/1.1/req/create-observations-via-mqtt/observations-creation"
        doc["serverSettings"][key] = {"endpoints": [f"mqtt://{mqtt}"]}
    return json_response(doc, headers=_no_store())


@router.get(ROOT + "/{path:path}", summary="SensorThings entities, collections, navigation, $value, $ref")
def read(path: str, request: Request, ctx: CtxDep) -> Response:
    doc = sensing_of(ctx).get(path, request.query_params.multi_items(), sensing_access(ctx.who), base=_base(ctx),
                              link_query=ctx.query)
    if isinstance(doc, RawValue):
        return Response(str(doc), media_type="text/plain; charset=utf-8", headers=_no_store())
    return json_response(doc, headers=_no_store())


@router.post(ROOT + "/{path:path}", summary="Create an entity (deep insert) or observations (CreateObservations)")
async def create(path: str, request: Request, ctx: CtxDep) -> Response:
    sensing = sensing_of(ctx)
    access = _writer(ctx)
    body = await read_json(request, ctx.catalog.settings.sta_max_body_mb * 1024 * 1024)
    if path.strip("/") == "CreateObservations":
        links = await run_in_threadpool(sensing.create_observations, body, access, base=_base(ctx))
        _audit(ctx, access, "sta.create", f"{len(links)} Observations")
        return json_response(links, status=201, headers=_no_store())
    created = await run_in_threadpool(sensing.create, path, body, access)
    _audit(ctx, access, "sta.create", created.path())
    location = f"{_base(ctx)}/{created.path()}"
    doc = await run_in_threadpool(sensing.get, created.path(), {}, access, base=_base(ctx))
    return json_response(doc, status=201, headers={"Location": location, **_no_store()})


async def _update(path: str, request: Request, ctx: Ctx, mode: str) -> Response:
    sensing = sensing_of(ctx)
    access = _writer(ctx)
    body = await read_json(request, ctx.catalog.settings.sta_max_body_mb * 1024 * 1024)
    if mode == "merge" and "json-patch" in request.headers.get("content-type", ""):
        mode = "json-patch"
    await run_in_threadpool(sensing.update, path, body, access, mode=mode)
    _audit(ctx, access, f"sta.{'put' if mode == 'put' else 'patch'}", path)
    doc = await run_in_threadpool(sensing.get, path, {}, access, base=_base(ctx))
    return json_response(doc, headers=_no_store())


@router.patch(ROOT + "/{path:path}", summary="Change an entity (JSON merge, or JSON Patch with "
                                             "Content-Type application/json-patch+json)")
async def patch(path: str, request: Request, ctx: CtxDep) -> Response:
    return await _update(path, request, ctx, "merge")


@router.put(ROOT + "/{path:path}", summary="Replace an entity's properties")
async def put(path: str, request: Request, ctx: CtxDep) -> Response:
    return await _update(path, request, ctx, "put")


@router.delete(ROOT + "/{path:path}", summary="Delete an entity (and what depends on it)")
async def delete(path: str, ctx: CtxDep) -> Response:
    sensing = sensing_of(ctx)
    access = _writer(ctx)
    await run_in_threadpool(sensing.delete, path, access)
    _audit(ctx, access, "sta.delete", path)
    return Response(status_code=200, headers=_no_store())


__all__ = ["ROOT", "WRITE_GRANT", "read_json", "router", "sensing_access", "sensing_of"]
