"""Background jobs of `cim serve`: a library call run off the request, with progress, status and a result URL.

A route that starts a long analysis submits one callable. The callable receives a progress callback with the same
signature as the CLI's progress bar, `progress(stage, done, total)`, passes it to the library function, and returns
the library's result object; the job keeps that object and `render(result)` turns it into the response body when
the client asks for it. Status documents follow OGC API - Processes Part 1 (`statusInfo`: `jobID`, `status`
accepted / running / successful / failed / dismissed, `progress` 0-100, timestamps, links).

    >>> jobs = JobManager(max_running=1, max_queued=8)
    >>> job = jobs.submit(lambda progress: run_sunlight(scene, params, progress=progress),
    ...                   owner=who, kind="sunlight", render=lambda r: (r.to_geojson(), "application/geo+json"))
    >>> jobs.get(job.id, who).status                                             # doctest: +SKIP
    'running'

Rules:
- At most `max_running` jobs run at once (threads: the libraries release the GIL in their heavy loops); at most
  `max_queued` more wait. A submission beyond that raises `JobLimitError` (HTTP 503, try later).
- A job is visible only to the API key that submitted it. Jobs of anonymous callers are never listed; their
  unguessable id (128 random bits) is what grants access to them.
- Dismissing a queued job removes it before it starts; dismissing a running job makes its next progress call raise
  `JobDismissed`, which ends the library call (cooperative cancellation), and the job is reported `dismissed`.
- Finished jobs (successful, failed, dismissed) are kept `keep_seconds` after they finish, and at most
  `max_kept` of them (oldest dropped first); then they are gone (404).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from tiles.errors import JobLimitError, JobNotFoundError, JobNotReadyError

log = logging.getLogger("cim.server.jobs")

Progress = Callable[[str, int, int], None]
Render = Callable[[Any], tuple[Any, str]]
Status = Literal["accepted", "running", "successful", "failed", "dismissed"]
FINISHED: tuple[Status, ...] = ("successful", "failed", "dismissed")


class JobDismissed(Exception):
    """Raised inside a running job's progress callback once the job was dismissed: it unwinds the library call.

    Not a `CimError`: library code must let it pass (it never reaches a client)."""


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(eq=False)
class Job:
    """One submitted job.

    Attributes:
        id: URL-safe random id (128 bits).
        kind: what runs (e.g. "sunlight", "flood"); the `processID` of the status document.
        owner: the API key id that submitted it (None: anonymous).
        status: accepted, running, successful, failed or dismissed.
        stage, done, total: the last progress report (`stage` is the library's stage name).
        params: the request parameters, echoed in the status document.
        result: the library's result object once successful.
        error: the failure: (message, exception) once failed.
        created, started, finished, updated: epoch seconds.
    """

    id: str
    kind: str
    owner: str | None
    render: Render
    params: dict[str, Any] = field(default_factory=dict)
    status: Status = "accepted"
    stage: str = ""
    done: int = 0
    total: int = 0
    result: Any = None
    error: tuple[str, BaseException] | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    updated: float = field(default_factory=time.time)
    future: Future[Any] | None = field(default=None, repr=False)
    dismiss_requested: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def percent(self) -> int:
        """Progress 0-100 of the current stage (100 once successful)."""
        if self.status == "successful":
            return 100
        return int(100 * self.done / self.total) if self.total > 0 else 0

    def status_info(self, base: str, query: str = "") -> dict[str, Any]:
        """The OGC API - Processes `statusInfo` document (with `stage` and the request `params` added).

        Args:
            base: public base URL of the server (no trailing slash).
            query: `api_key=...` to carry into the links, or "".
        """
        q = f"?{query}" if query else ""
        me = f"{base}/jobs/{self.id}"
        links = [{"href": f"{me}{q}", "rel": "self", "type": "application/json", "title": "this status"}]
        if self.status == "successful":
            links.append({"href": f"{me}/results{q}", "rel": "http://www.opengis.net/def/rel/ogc/1.0/results",
                          "title": "the result"})
        doc: dict[str, Any] = {
            "jobID": self.id, "processID": self.kind, "type": "process", "status": self.status,
            "progress": self.percent, "stage": self.stage, "done": self.done, "total": self.total,
            "created": _iso(self.created), "started": _iso(self.started), "finished": _iso(self.finished),
            "updated": _iso(self.updated), "params": self.params, "links": links,
        }
        if self.error is not None:
            doc["message"] = self.error[0]
        return doc


class JobManager:
    """Runs jobs on a bounded thread pool and keeps their status and results for a while.

    Args:
        max_running: jobs that run at once.
        max_queued: jobs that may wait for a slot; more submissions raise `JobLimitError`.
        keep_seconds: how long a finished job (and its result) is kept.
        max_kept: finished jobs kept at most (oldest finished dropped first).
    """

    def __init__(self, max_running: int = 1, max_queued: int = 16, keep_seconds: float = 3600.0,
                 max_kept: int = 100) -> None:
        if max_running < 1:
            raise ValueError(f"max_running must be at least 1, not {max_running}")
        self.max_running = max_running
        self.max_queued = max(0, max_queued)
        self.keep_seconds = keep_seconds
        self.max_kept = max(1, max_kept)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max_running, thread_name_prefix="cim-job")
        self._closed = False

    # ------------------------------------------------------------------ submit and run
    def submit(self, fn: Callable[[Progress], Any], *, owner: str | None, kind: str,
               render: Render, params: dict[str, Any] | None = None) -> Job:
        """Queue `fn(progress)`; returns the job at once (status `accepted`).

        Args:
            fn: the work; it gets the progress callback and returns the result object.
            owner: the submitting key's id (None for anonymous callers).
            kind: the job's kind (e.g. "sunlight").
            render: `result -> (body, media type)`; body is a dict/list (sent as JSON) or bytes.
            params: request parameters echoed in the status document (JSON-ready).

        Raises:
            JobLimitError: `max_running` jobs run and `max_queued` wait already, or the manager is shut down.
        """
        with self._lock:
            self._expire()
            if self._closed:
                raise JobLimitError("the server is shutting down; submit the job again later")
            waiting = sum(1 for j in self._jobs.values() if j.status == "accepted")
            running = sum(1 for j in self._jobs.values() if j.status == "running")
            if running >= self.max_running and waiting >= self.max_queued:
                raise JobLimitError(f"{running} jobs are running and {waiting} are waiting (the most this server "
                                    f"allows); try again when one has finished")
            job = Job(id=secrets.token_urlsafe(16), kind=kind, owner=owner, render=render, params=params or {})
            self._jobs[job.id] = job
            job.future = self._pool.submit(self._run, job, fn)
        return job

    def _run(self, job: Job, fn: Callable[[Progress], Any]) -> None:
        with self._lock:
            if job.status != "accepted":  # dismissed while queued
                return
            job.status = "running"
            job.started = job.updated = time.time()

        def progress(stage: str, done: int, total: int) -> None:
            if job.dismiss_requested.is_set():
                raise JobDismissed(job.id)
            job.stage, job.done, job.total = stage, int(done), int(total)
            job.updated = time.time()

        try:
            result = fn(progress)
        except JobDismissed:
            self._finish(job, "dismissed")
        except Exception as exc:  # noqa: BLE001 - a job's failure is reported in its status, never raised here
            if job.dismiss_requested.is_set():  # the library wrapped the JobDismissed in its own error
                self._finish(job, "dismissed")
                return
            log.info("job %s (%s) failed: %s", job.id, job.kind, exc, exc_info=not _is_cim_error(exc))
            self._finish(job, "failed", error=(_message(exc), exc))
        else:
            self._finish(job, "dismissed" if job.dismiss_requested.is_set() else "successful", result=result)

    def _finish(self, job: Job, status: Status, *, result: Any = None,
                error: tuple[str, BaseException] | None = None) -> None:
        with self._lock:
            job.status = status
            job.result = result if status == "successful" else None
            job.error = error
            job.finished = job.updated = time.time()

    # ------------------------------------------------------------------ look up
    def get(self, job_id: str, owner: str | None) -> Job:
        """The job `job_id` of `owner`.

        Raises:
            JobNotFoundError: no such job, it expired, or another key submitted it.
        """
        with self._lock:
            self._expire()
            job = self._jobs.get(job_id)
        if job is None or job.owner != owner:
            raise JobNotFoundError(f"no job {job_id!r} on this server (jobs are kept {self.keep_seconds:.0f} s "
                                   f"after they finish, and only the key that submitted one sees it)")
        return job

    def list(self, owner: str | None) -> list[Job]:
        """The jobs of `owner`, newest first; anonymous callers get none (their job ids are their only handle)."""
        if owner is None:
            return []
        with self._lock:
            self._expire()
            jobs = [j for j in self._jobs.values() if j.owner == owner]
        return sorted(jobs, key=lambda j: j.created, reverse=True)

    def result(self, job_id: str, owner: str | None) -> tuple[Any, str]:
        """The rendered result `(body, media type)` of a successful job.

        Raises:
            JobNotFoundError: see `get`.
            JobNotReadyError: the job has not finished, was dismissed, or failed (the failure's own error is raised
                instead when it has one).
        """
        job = self.get(job_id, owner)
        if job.status == "failed" and job.error is not None:
            raise job.error[1]
        if job.status != "successful":
            raise JobNotReadyError(f"job {job_id!r} is {job.status}: it has no result"
                                   + (" yet; poll its status" if job.status in ("accepted", "running") else ""))
        return job.render(job.result)

    def dismiss(self, job_id: str, owner: str | None) -> Job:
        """Cancel a queued or running job, or forget a finished one; returns it (status `dismissed` when it had not
        finished; a running job stops at its next progress report).

        Raises:
            JobNotFoundError: see `get`.
        """
        job = self.get(job_id, owner)
        with self._lock:
            if job.status == "accepted":
                if job.future is not None:
                    job.future.cancel()
                job.status = "dismissed"
                job.finished = job.updated = time.time()
            elif job.status == "running":
                job.dismiss_requested.set()
            else:
                self._jobs.pop(job.id, None)
        return job

    def wait(self, job_id: str, owner: str | None, timeout: float | None = None) -> Job:
        """Block until the job has finished (or `timeout` seconds passed); returns it. For tests and notebooks."""
        job = self.get(job_id, owner)
        deadline = None if timeout is None else time.monotonic() + timeout
        while job.status not in FINISHED:
            if deadline is not None and time.monotonic() > deadline:
                break
            time.sleep(0.02)
        return job

    def shutdown(self) -> None:
        """Dismiss every unfinished job and stop the threads (waiting for running jobs to notice)."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
        for job in jobs:
            if job.status in ("accepted", "running"):
                self.dismiss(job.id, job.owner)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _expire(self) -> None:
        """Drop finished jobs older than `keep_seconds`, and the oldest finished beyond `max_kept` (lock held)."""
        now = time.time()
        done = sorted((j for j in self._jobs.values() if j.status in FINISHED), key=lambda j: j.finished or 0.0)
        excess = len(done) - self.max_kept
        for i, job in enumerate(done):
            if i < excess or now - (job.finished or now) > self.keep_seconds:
                self._jobs.pop(job.id, None)


def _is_cim_error(exc: BaseException) -> bool:
    from cim.errors import CimError

    return isinstance(exc, CimError)


def _message(exc: BaseException) -> str:
    """What a client may read about a failure: a library error's own message; nothing internal otherwise."""
    if _is_cim_error(exc):
        return str(exc)
    return "internal error; the server log has the details"


__all__ = ["FINISHED", "Job", "JobDismissed", "JobManager", "Progress", "Status"]
