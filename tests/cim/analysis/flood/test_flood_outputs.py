"""The output writer thread of a dynamic run (cim.analysis.flood.outputs.OutputWriter): order, priority, errors."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from cim.analysis.flood.outputs import OutputWriter


def test_jobs_run_in_order_on_one_thread():
    seen = []
    with OutputWriter(backlog=2) as writer:
        for k in range(6):
            writer.submit(lambda k: seen.append((k, threading.get_ident())), k)
    assert [k for k, _ in seen] == list(range(6))
    assert {t for _, t in seen} != {threading.get_ident()} and len({t for _, t in seen}) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="nice is per thread on Linux only")
def test_the_writer_thread_runs_at_nice_19_below_the_thread_that_made_it():
    """Made on a thread below nice 19 (lowered there when the whole test process runs at 19, e.g. while another
    process holds the prio lock), the writer's jobs run at 19, and with `nice=None` at the maker's nice: so the
    check tells a writer that lowers its priority from one that inherits it."""
    out: dict[str, object] = {}

    def make_writers():
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) >= 19:
            try:
                os.setpriority(os.PRIO_PROCESS, tid, 18)  # this short-lived thread only
            except PermissionError:
                pass
        out["maker"] = os.getpriority(os.PRIO_PROCESS, tid)
        if out["maker"] >= 19:
            return
        for key, nice in (("default", 19), ("inherited", None)):
            seen = []
            with OutputWriter(nice=nice) if nice is None else OutputWriter() as writer:
                writer.submit(lambda: seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
            out[key] = seen[0]

    maker = threading.Thread(target=make_writers)
    maker.start()
    maker.join()
    if out["maker"] >= 19:
        pytest.skip("the test runs at nice 19 and may not lower a thread's nice: a writer at 19 cannot be told from "
                    "one that inherited 19")
    assert out["default"] == 19 and out["inherited"] == out["maker"] < 19, out


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
