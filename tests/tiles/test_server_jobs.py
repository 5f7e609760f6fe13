"""The job manager (`tiles.server.jobs`) and its routes: status, progress, results, dismissal, limits, ownership."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import APIRouter, Depends, Request

from cim.errors import InputError
from tiles.errors import JobLimitError, JobNotFoundError, JobNotReadyError
from tiles.server.jobs import JobManager

from tests.tiles.server_support import Served, build_store, running_server


class Gate:
    """A job body that reports progress, then waits until released (or fails when told to)."""

    def __init__(self, steps: int = 4, fail: BaseException | None = None) -> None:
        self.release = threading.Event()
        self.reported = threading.Event()
        self.steps = steps
        self.fail = fail

    def __call__(self, progress: Any) -> dict[str, int]:
        progress("work", 1, self.steps)
        self.reported.set()
        while not self.release.wait(0.01):
            progress("work", 1, self.steps)  # where a dismissed job stops
        if self.fail is not None:
            raise self.fail
        progress("work", self.steps, self.steps)
        return {"answer": 42}


def _render(result: dict[str, int]) -> tuple[dict[str, int], str]:
    return result, "application/json"


@pytest.fixture
def jobs() -> Iterator[JobManager]:
    m = JobManager(max_running=1, max_queued=1, keep_seconds=60)
    yield m
    m.shutdown()


def test_job_runs_reports_progress_and_keeps_its_result(jobs: JobManager) -> None:
    gate = Gate()
    job = jobs.submit(gate, owner="k1", kind="demo", render=_render, params={"x": 1})
    assert gate.reported.wait(5)
    j = jobs.get(job.id, "k1")
    assert (j.status, j.stage, j.done, j.total, j.percent) == ("running", "work", 1, 4, 25)
    with pytest.raises(JobNotReadyError, match="running"):
        jobs.result(job.id, "k1")
    gate.release.set()
    assert jobs.wait(job.id, "k1", 5).status == "successful"
    assert jobs.result(job.id, "k1") == ({"answer": 42}, "application/json")
    doc = jobs.get(job.id, "k1").status_info("http://h", "api_key=abc")
    assert doc["status"] == "successful" and doc["progress"] == 100 and doc["params"] == {"x": 1}
    assert doc["links"][1]["href"] == f"http://h/jobs/{job.id}/results?api_key=abc"


def test_jobs_are_visible_only_to_their_key(jobs: JobManager) -> None:
    gate = Gate()
    gate.release.set()
    job = jobs.submit(gate, owner="k1", kind="demo", render=_render)
    jobs.wait(job.id, "k1", 5)
    for other in ("k2", None):
        with pytest.raises(JobNotFoundError, match="only the key that submitted"):
            jobs.get(job.id, other)
    assert [j.id for j in jobs.list("k1")] == [job.id]
    assert jobs.list("k2") == [] and jobs.list(None) == []
    anon = jobs.submit(Gate(), owner=None, kind="demo", render=_render)
    assert jobs.get(anon.id, None) is anon and jobs.list(None) == []  # the id is the handle
    assert len(anon.id) >= 22  # 128 random bits, URL-safe


def test_bounded_concurrency_and_queue(jobs: JobManager) -> None:
    first, second = Gate(), Gate()
    a = jobs.submit(first, owner="k", kind="demo", render=_render)
    assert first.reported.wait(5)
    b = jobs.submit(second, owner="k", kind="demo", render=_render)
    time.sleep(0.1)
    assert jobs.get(b.id, "k").status == "accepted"  # one runs, one waits
    with pytest.raises(JobLimitError, match="1 jobs are running and 1 are waiting"):
        jobs.submit(Gate(), owner="k", kind="demo", render=_render)
    first.release.set()
    assert second.reported.wait(5)
    second.release.set()
    assert jobs.wait(b.id, "k", 5).status == "successful" and jobs.get(a.id, "k").status == "successful"


def test_dismiss_running_and_queued_jobs(jobs: JobManager) -> None:
    running, queued = Gate(), Gate()
    a = jobs.submit(running, owner="k", kind="demo", render=_render)
    assert running.reported.wait(5)
    b = jobs.submit(queued, owner="k", kind="demo", render=_render)
    assert jobs.dismiss(b.id, "k").status == "dismissed"
    jobs.dismiss(a.id, "k")
    assert jobs.wait(a.id, "k", 5).status == "dismissed"  # stopped at its next progress call
    assert not queued.reported.is_set()  # never started
    with pytest.raises(JobNotReadyError, match="dismissed"):
        jobs.result(a.id, "k")
    jobs.dismiss(a.id, "k")  # a finished job is forgotten
    with pytest.raises(JobNotFoundError):
        jobs.get(a.id, "k")


def test_failed_job_reports_library_errors_only() -> None:
    m = JobManager(max_running=2)
    try:
        bad_input, bug = Gate(fail=InputError("observer (1, 2) is outside the model")), Gate(fail=KeyError("x"))
        for g in (bad_input, bug):
            g.release.set()
        a = m.submit(bad_input, owner="k", kind="demo", render=_render)
        b = m.submit(bug, owner="k", kind="demo", render=_render)
        ja, jb = m.wait(a.id, "k", 5), m.wait(b.id, "k", 5)
        assert ja.status == jb.status == "failed"
        assert ja.status_info("")["message"] == "observer (1, 2) is outside the model"
        assert jb.status_info("")["message"] == "internal error; the server log has the details"
        with pytest.raises(InputError, match="outside the model"):
            m.result(a.id, "k")
    finally:
        m.shutdown()


def test_finished_jobs_expire() -> None:
    def finished(m: JobManager) -> str:
        g = Gate()
        g.release.set()
        job = m.submit(g, owner="k", kind="demo", render=_render)
        m.wait(job.id, "k", 5)
        return job.id

    m = JobManager(max_running=1, keep_seconds=3600, max_kept=2)
    try:
        ids = [finished(m) for _ in range(3)]
        assert [j.id for j in m.list("k")] == ids[:0:-1]  # the oldest finished one was dropped
    finally:
        m.shutdown()
    m = JobManager(max_running=1, keep_seconds=0.05)
    try:
        finished(m)
        time.sleep(0.1)
        assert m.list("k") == []
    finally:
        m.shutdown()


# ------------------------------------------------------------------------------------------------ over HTTP
@pytest.fixture(scope="module")
def served_jobs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, dict[str, Gate]]]:
    from tiles.server import ServerSettings, create_app
    from tiles.server.auth import AccessStore, access_path
    from tiles.server.deps import Ctx, context
    from tiles.server.routes.jobs import accepted, job_manager

    root = tmp_path_factory.mktemp("jobs")
    store = build_store(root / "city.duckdb", root / "src")
    with AccessStore(access_path(store)) as acc:
        keys = {"a": acc.create("internal", "a").key, "b": acc.create("internal", "b").key}
    app = create_app(ServerSettings(store=store, log_requests=False, jobs_max_running=1, jobs_max_queued=4))
    gates: dict[str, Gate] = {}
    router = APIRouter()

    @router.post("/test-jobs/{name}")
    def start(name: str, request: Request, ctx: Ctx = Depends(context)) -> Any:  # noqa: B008
        gates[name] = Gate()
        job = job_manager(request).submit(gates[name], owner=ctx.who.key_id, kind="demo", render=_render,
                                          params={"name": name})
        return accepted(job, ctx)

    app.include_router(router)
    with running_server(app) as base:
        yield Served(base, root, store, root, keys, app.state.catalog), gates


def test_job_routes(served_jobs: tuple[Served, dict[str, Gate]]) -> None:
    served, gates = served_jobs
    with served.client("a") as a, served.client("b") as b:
        r = a.post("/test-jobs/one")
        assert r.status_code == 201
        doc = r.json()
        assert r.headers["location"] == f"{served.base}/jobs/{doc['jobID']}"
        assert doc["status"] in ("accepted", "running") and doc["processID"] == "demo"
        assert gates["one"].reported.wait(5)
        assert a.get(f"/jobs/{doc['jobID']}").json()["stage"] == "work"
        assert a.get(f"/jobs/{doc['jobID']}/results").status_code == 404  # not ready
        assert b.get(f"/jobs/{doc['jobID']}").status_code == 404  # another key
        assert [j["jobID"] for j in a.get("/jobs").json()["jobs"]] == [doc["jobID"]]
        assert b.get("/jobs").json()["jobs"] == []
        gates["one"].release.set()
        for _ in range(250):
            status = a.get(f"/jobs/{doc['jobID']}").json()
            if status["status"] == "successful":
                break
            time.sleep(0.02)
        assert status["status"] == "successful" and status["progress"] == 100
        r = a.get(status["links"][1]["href"])
        assert r.status_code == 200 and r.json() == {"answer": 42}
        r = a.post("/test-jobs/two")
        assert gates["two"].reported.wait(5)
        assert a.delete(f"/jobs/{r.json()['jobID']}").status_code == 200
        for _ in range(250):
            if a.get(f"/jobs/{r.json()['jobID']}").json()["status"] == "dismissed":
                break
            time.sleep(0.02)
        assert a.get(f"/jobs/{r.json()['jobID']}").json()["status"] == "dismissed"
        assert a.get("/jobs/nope").json()["code"] == "NotFound"
