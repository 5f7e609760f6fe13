"""Job status, results and dismissal (OGC API - Processes Part 1 style): `/jobs`, `/jobs/{id}`,
`/jobs/{id}/results`. Jobs are submitted by the routes of the analyses that need them (see `tiles.server.jobs`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tiles.server.deps import Ctx, context
from tiles.server.jobs import Job, JobManager
from tiles.server.responses import json_response

router = APIRouter(tags=["jobs"])
CtxDep = Annotated[Ctx, Depends(context)]
_NO_STORE = {"Cache-Control": "no-store"}


def job_manager(request: Request) -> JobManager:
    """The server's job manager (`app.state.jobs`)."""
    return request.app.state.jobs  # type: ignore[no-any-return]


def accepted(job: Job, ctx: Ctx) -> Response:
    """The answer to a request that started `job`: 201 with its status document and `Location` of its status."""
    doc = job.status_info(ctx.base, ctx.query)
    return json_response(doc, status=201, headers={**_NO_STORE, "Location": doc["links"][0]["href"]})


@router.get("/jobs", summary="The caller's jobs, newest first (anonymous callers: none)")
def list_jobs(request: Request, ctx: CtxDep) -> Response:
    jobs = job_manager(request).list(ctx.who.key_id)
    q = f"?{ctx.query}" if ctx.query else ""
    return json_response({"jobs": [j.status_info(ctx.base, ctx.query) for j in jobs],
                          "links": [{"href": f"{ctx.base}/jobs{q}", "rel": "self", "type": "application/json"}]},
                         headers=_NO_STORE)


@router.get("/jobs/{job_id}", summary="A job's status and progress")
def job_status(job_id: str, request: Request, ctx: CtxDep) -> Response:
    job = job_manager(request).get(job_id, ctx.who.key_id)
    return json_response(job.status_info(ctx.base, ctx.query), headers=_NO_STORE)


@router.get("/jobs/{job_id}/results", summary="A successful job's result (GeoJSON or JSON)")
def job_results(job_id: str, request: Request, ctx: CtxDep) -> Response:
    body, media_type = job_manager(request).result(job_id, ctx.who.key_id)
    if isinstance(body, bytes):
        return Response(body, media_type=media_type, headers={"Cache-Control": "private, max-age=60"})
    return json_response(body, media_type=media_type, headers={"Cache-Control": "private, max-age=60"})


@router.delete("/jobs/{job_id}", summary="Dismiss a job: cancel it, or forget it once finished")
def dismiss_job(job_id: str, request: Request, ctx: CtxDep) -> Response:
    job = job_manager(request).dismiss(job_id, ctx.who.key_id)
    return json_response(job.status_info(ctx.base, ctx.query), headers=_NO_STORE)
