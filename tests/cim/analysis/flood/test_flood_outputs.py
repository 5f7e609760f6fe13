"""The output writer thread of a dynamic run (cim.analysis.flood.outputs.OutputWriter): order, priority, errors."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from cim.analysis.flood.outputs import OutputWriter


def test_jobs_run_in_order_on_a_low_priority_thread():
    seen = []

    def job(k):
        seen.append((k, threading.get_ident()))
        if sys.platform.startswith("linux"):
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    with OutputWriter(backlog=2) as writer:
        for k in range(6):
            writer.submit(job, k)
    jobs = [x for x in seen if isinstance(x, tuple)]
    assert [k for k, _ in jobs] == list(range(6))
    assert {t for _, t in jobs} != {threading.get_ident()} and len({t for _, t in jobs}) == 1
    if sys.platform.startswith("linux"):
        assert {x for x in seen if isinstance(x, int)} == {max(19, os.getpriority(os.PRIO_PROCESS, 0))}


def test_a_failed_job_is_raised_and_the_later_ones_skipped():
    done = []

    def job(k):
        if k == 1:
            raise OSError("disk full")
        done.append(k)

    writer = OutputWriter()
    writer.submit(job, 0)
    writer.submit(job, 1)
    writer.submit(job, 2)
    with pytest.raises(OSError, match="disk full"):
        writer.close()
    assert done == [0]
    with pytest.raises(OSError, match="disk full"):  # and on the next submit
        writer.submit(job, 3)


def test_leaving_by_an_error_drops_the_waiting_jobs_and_waits_for_the_running_one():
    started, release = threading.Event(), threading.Event()
    done = []

    def slow(k):
        started.set()
        release.wait(10)
        done.append(k)

    with pytest.raises(RuntimeError, match="solver"):
        with OutputWriter(backlog=4) as writer:
            writer.submit(slow, 0)
            started.wait(10)
            writer.submit(slow, 1)
            writer.submit(slow, 2)
            threading.Timer(0.2, release.set).start()
            raise RuntimeError("the solver became unstable")
    assert done == [0]  # the running job finished before the block was left; the waiting ones never ran
