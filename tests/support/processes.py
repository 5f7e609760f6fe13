"""Child processes of tests and benchmarks (servers, brokers, `cim demo`): stopped so that none outlives its run."""

from __future__ import annotations

import subprocess
from typing import Any


def stop_process(proc: subprocess.Popen[Any], timeout: float = 20.0) -> int:
    """Stop a child process: SIGTERM, then SIGKILL when it has not ended within `timeout` seconds (a server stuck
    in a request, a process that ignores SIGTERM); returns its exit status.

    Args:
        proc: the process (it may have ended already).
        timeout: seconds to wait after SIGTERM.
    """
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


__all__ = ["stop_process"]
