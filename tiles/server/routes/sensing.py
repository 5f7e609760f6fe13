"""The live side of sensing: `/sensing/stream` (Server-Sent Events of new observations and alert changes),
`/sensing/latest` (every sensor's latest reading and warning level, as GeoJSON; `at=` replays a past moment),
`/alerts` (open and closed alerts as JSON) and `/sensing/status` (ingest counters). All filtered by what the
caller may see, exactly as `/sta/v1.1/`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from layers.sensing.errors import QueryError
from layers.sensing.events import EVENT_KINDS, sse
from layers.sensing.values import dumps
from tiles.server.deps import HEAD_SCOPE_KEY, Ctx, context
from tiles.server.responses import json_response
from tiles.server.routes.sta import sensing_access, sensing_of

router = APIRouter(tags=["sensing"])
CtxDep = Annotated[Ctx, Depends(context)]
KEEPALIVE_SECONDS = 15.0


def _ids(text: str | None, what: str) -> list[int] | None:
    if text is None or text == "":
        return None
    parts = text.split(",")
    if len(parts) > 10_000 or not all(p.strip().isdigit() and len(p.strip()) <= 18 for p in parts):
        raise QueryError(f"{what}={text[:40]!r} is not a comma-separated list of Datastream ids")
    return [int(p) for p in parts]


class EventStream(StreamingResponse):
    """Server-Sent Events: the media type the OpenAPI document declares for the stream (clients, and the hostile
    suite, learn from it that the answer does not end)."""

    media_type = "text/event-stream"


@router.get("/sensing/stream", summary="Live observations and alert changes (text/event-stream)",
            response_class=EventStream)
async def stream(request: Request, ctx: CtxDep, datastreams: str | None = None,
                 events: Annotated[str, Query(max_length=40)] = "observations,alerts") -> Response:
    sensing = sensing_of(ctx)
    access = sensing_access(ctx.who)
    wanted = _ids(datastreams, "datastreams")
    kinds = [k.strip() for k in events.split(",") if k.strip()]
    if not kinds or any(k not in EVENT_KINDS for k in kinds):
        raise QueryError(f"events={events!r}: give observations, alerts or both")
    if request.scope.get(HEAD_SCOPE_KEY):  # HEAD: the stream's headers only, since its body never ends
        return Response(headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
                        media_type=EventStream.media_type)
    last = request.headers.get("last-event-id") or request.query_params.get("lastEventId")
    replay = []
    if last and last.isdigit() and "observations" in kinds:
        replay = await run_in_threadpool(sensing.replay, int(last), access, wanted)
    sub = sensing.hub.subscribe(access.levels, loop=asyncio.get_running_loop(), datastreams=wanted, kinds=kinds,
                                max_queue=ctx.catalog.settings.stream_max_queue)

    async def body() -> AsyncIterator[str]:
        try:
            yield "retry: 2000\n: connected\n\n"
            if replay:
                yield sse("observations", dumps([e.to_dict() for e in replay]), replay[-1].id)
            while True:
                try:
                    message = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if message is None:
                    if sub.dropped:
                        yield sse("overflow", '{"reason": "this client fell behind; reconnect with Last-Event-ID"}')
                    return
                yield message
        finally:
            sensing.hub.unsubscribe(sub)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return EventStream(body(), headers=headers)


@router.get("/sensing/latest", summary="Every sensor's latest reading and warning level (GeoJSON)")
def latest(ctx: CtxDep, observedProperty: Annotated[str | None, Query(max_length=200)] = None,
           at: Annotated[str | None, Query(max_length=40)] = None,
           window: Annotated[float, Query(gt=0, le=24 * 366)] = 24.0) -> Response:
    sensing = sensing_of(ctx)
    if at is None:  # the current state: the library keeps the encoded body until the next commit
        return Response(sensing.latest_geojson(sensing_access(ctx.who), observed_property=observedProperty),
                        media_type="application/geo+json", headers={"Cache-Control": "no-store"})
    rows = sensing.latest(sensing_access(ctx.who), observed_property=observedProperty, at=at, window_hours=window)
    features = [{"type": "Feature", "id": r["datastream"],
                 "geometry": {"type": "Point", "coordinates": r["location"]} if r["location"] else None,
                 "properties": {k: v for k, v in r.items() if k != "location"}} for r in rows]
    return json_response({"type": "FeatureCollection", "features": features, "at": at},
                         media_type="application/geo+json", headers={"Cache-Control": "no-store"})


@router.get("/alerts", summary="Threshold alerts (four warning levels), newest first")
def alerts(ctx: CtxDep, status: Annotated[str, Query(pattern="^(open|closed|all)$")] = "all",
           datastream: Annotated[int | None, Query(ge=0)] = None,
           since: Annotated[str | None, Query(max_length=40)] = None,
           limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> Response:
    found = sensing_of(ctx).alerts(sensing_access(ctx.who), status=status, datastream=datastream, since=since,
                                   limit=limit)
    return json_response({"alerts": [a.to_dict() for a in found], "count": len(found)},
                         headers={"Cache-Control": "no-store"})


@router.get("/sensing/status", summary="Ingest counters: batches, observations, MQTT messages received/rejected")
def status(ctx: CtxDep) -> Response:
    sensing = sensing_of(ctx)
    mqtt = ctx.catalog.mqtt
    doc = {"writable": not sensing.read_only, "writer": sensing.stats.to_dict(),
           "streamClients": sensing.hub.subscribers,
           "mqtt": None if mqtt is None else {"broker": f"{mqtt.host}:{mqtt.port}", "connected": mqtt.connected.is_set(),
                                              **mqtt.counters.to_dict()}}
    return json_response(doc, headers={"Cache-Control": "no-store"})


__all__ = ["router"]
