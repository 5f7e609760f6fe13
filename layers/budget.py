"""Time budgets: a deadline for the work done on behalf of one caller (an HTTP request), enforced on DuckDB.

A server sets a budget around each request (`time_budget(1.0)`); the store runs its statements inside
`bounded(cursor)`, and a single watchdog thread interrupts a cursor whose statement outlives the deadline. DuckDB
checks for interrupts between vectors of 2,048 rows, so a statement stops within a vector's work of the deadline;
that is why the work per row is bounded too (`layers.filters` compiles LIKE patterns to linear-time matches). The
deadline lives in a context variable, so it follows the request into the worker thread that runs its route and
costs nothing where no budget is set (the CLI, notebooks).

    >>> with time_budget(1.0):
    ...     store.query_arrow("roads", where="name LIKE '%路%'")   # doctest: +SKIP
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import duckdb

from layers.errors import QueryTimeoutError

_deadline: ContextVar[float | None] = ContextVar("cim_deadline", default=None)


@contextmanager
def time_budget(seconds: float | None) -> Iterator[None]:
    """Give the work inside (in this context and the threads it hands its context to) `seconds` of wall time.

    A nested budget can only shorten the deadline. `None` or a non-positive value sets no budget.
    """
    if seconds is None or seconds <= 0:
        yield
        return
    new = time.monotonic() + seconds
    old = _deadline.get()
    token = _deadline.set(new if old is None else min(old, new))
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left in the current budget (None: no budget)."""
    d = _deadline.get()
    return None if d is None else d - time.monotonic()


def check(what: str = "the request") -> None:
    """Raise `QueryTimeoutError` when the current budget is spent."""
    left = remaining()
    if left is not None and left <= 0:
        raise QueryTimeoutError(_message(what))


def _message(what: str) -> str:
    return (f"{what} ran out of its time budget; narrow it (a smaller bbox, a filter with fewer wildcards, a lower "
            f"limit) or retry when the server is less busy")


class _Watchdog:
    """One daemon thread that interrupts registered cursors at their deadlines."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._live: dict[int, duckdb.DuckDBPyConnection] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def register(self, deadline: float, cur: duckdb.DuckDBPyConnection) -> int:
        with self._cond:
            key = next(self._ids)
            self._live[key] = cur
            heapq.heappush(self._heap, (deadline, key))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cim-query-watchdog", daemon=True)
                self._thread.start()
            elif self._heap[0][1] == key:
                self._cond.notify()
            return key

    def release(self, key: int) -> bool:
        """Forget a cursor; True when it was interrupted (its deadline passed while it was registered)."""
        with self._cond:
            return self._live.pop(key, None) is None

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)  # released before its deadline
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, key = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                cur = self._live.pop(key)
                cur.interrupt()  # under the lock: the statement is still inside `bounded`


_watchdog = _Watchdog()


@contextmanager
def bounded(cur: duckdb.DuckDBPyConnection, what: str = "the query") -> Iterator[duckdb.DuckDBPyConnection]:
    """Run statements on `cur` inside the current budget: interrupted at the deadline, which raises
    `QueryTimeoutError`. Without a budget it only yields the cursor."""
    deadline = _deadline.get()
    if deadline is None:
        yield cur
        return
    if deadline <= time.monotonic():
        raise QueryTimeoutError(_message(what))
    key = _watchdog.register(deadline, cur)
    try:
        yield cur
    except duckdb.InterruptException as exc:
        raise QueryTimeoutError(_message(what)) from exc
    finally:
        # an interrupt that lands after the statement ended is dropped by DuckDB: the next statement runs normally
        _watchdog.release(key)


__all__ = ["bounded", "check", "remaining", "time_budget"]
