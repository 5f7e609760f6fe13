"""Live events of the sensing store: observations and alert changes, published after each committed batch.

Two consumers:

- `Hub`: subscriptions of the live stream (`/sensing/stream`, Server-Sent Events). Each subscription has the
  caller's visible levels, an optional set of Datastreams and an asyncio queue on its event loop. A batch is
  serialised once per distinct (levels, kinds) among subscribers without a Datastream filter (the usual case), and
  handed to each event loop with one `call_soon_threadsafe`, so 100 clients cost 100 queue puts per batch, not
  100 JSON encodings. A subscriber that falls `max_queue` batches behind is closed (its client reconnects and
  resumes with `Last-Event-ID`) rather than holding memory without bound.
- `Dispatcher`: listener callbacks of a notebook or an analysis (`SensingStore.on_alert`,
  `on_observations`), called in order on one thread of their own, so a slow listener never holds up ingest.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from layers.sensing.alerts import AlertEvent
from layers.sensing.values import dumps

log = logging.getLogger("cim.sensing")

EVENT_KINDS = ("observations", "alerts")


@dataclass(frozen=True)
class ObservationEvent:
    """A stored observation as the live stream sends it."""

    id: int
    datastream_id: int
    thing_id: int
    phenomenon_time: str
    result: Any
    level: str | None
    security: str

    def to_dict(self) -> dict[str, Any]:
        return {"@iot.id": self.id, "datastream": self.datastream_id, "thing": self.thing_id,
                "phenomenonTime": self.phenomenon_time, "result": self.result, "level": self.level}


@dataclass(eq=False)
class Subscription:
    """One live-stream client: what it may see and the queue of SSE messages (text) waiting for it."""

    levels: frozenset[str]
    datastreams: frozenset[int] | None
    kinds: frozenset[str]
    loop: asyncio.AbstractEventLoop
    max_queue: int = 1000
    queue: asyncio.Queue[str | None] = field(init=False)
    closed: bool = False
    dropped: bool = False

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue()

    def deliver(self, message: str) -> None:
        """Put a message on the queue (on the subscriber's loop); close a subscriber that fell too far behind."""
        if self.closed:
            return
        if self.queue.qsize() >= self.max_queue:
            self.closed = self.dropped = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(message)


def sse(event: str, data: str, event_id: int | None = None) -> str:
    """One Server-Sent Events message."""
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return f"{head}data: {data}\n\n"


class Hub:
    """Subscriptions of the live stream; `publish` is called by the batch writer after each commit."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self.published = 0

    def subscribe(self, levels: Iterable[str], *, loop: asyncio.AbstractEventLoop,
                  datastreams: Iterable[int] | None = None, kinds: Iterable[str] = EVENT_KINDS,
                  max_queue: int = 1000) -> Subscription:
        sub = Subscription(frozenset(levels), frozenset(datastreams) if datastreams is not None else None,
                           frozenset(kinds), loop, max_queue)
        with self._lock:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.closed = True
        with self._lock:
            self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, observations: list[ObservationEvent], alerts: list[AlertEvent],
                alert_security: dict[int, str]) -> None:
        """Send a committed batch to every subscriber that may see (part of) it."""
        with self._lock:
            subs = [s for s in self._subs if not s.closed]
        if not subs:
            return
        self.published += 1
        last_id = observations[-1].id if observations else None
        cache: dict[tuple[frozenset[str], frozenset[str]], list[str]] = {}
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Subscription, list[str]]]] = {}
        for s in subs:
            key = (s.levels, s.kinds)
            if s.datastreams is None and key in cache:
                messages = cache[key]
            else:
                messages = []
                if "observations" in s.kinds:
                    seen = [o.to_dict() for o in observations if o.security in s.levels
                            and (s.datastreams is None or o.datastream_id in s.datastreams)]
                    if seen:
                        messages.append(sse("observations", dumps(seen), last_id))
                if "alerts" in s.kinds:
                    for a in alerts:
                        if alert_security.get(a.alert.datastream_id, "confidential") in s.levels and (
                                s.datastreams is None or a.alert.datastream_id in s.datastreams):
                            messages.append(sse("alert", dumps(a.to_dict())))
                if s.datastreams is None:
                    cache[key] = messages
            if messages:
                by_loop.setdefault(s.loop, []).append((s, messages))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver_all, items)
            except RuntimeError:  # the loop has closed (server shutting down)
                for s, _ in items:
                    s.closed = True

    def close(self) -> None:
        """End every subscription (their streams finish)."""
        with self._lock:
            subs, self._subs = list(self._subs), set()
        for s in subs:
            s.closed = True
            try:
                s.loop.call_soon_threadsafe(s.queue.put_nowait, None)
            except RuntimeError:
                pass


def _deliver_all(items: list[tuple[Subscription, list[str]]]) -> None:
    for s, messages in items:
        for m in messages:
            s.deliver(m)


Listener = Callable[[Any], None]


class Dispatcher:
    """Calls listeners on a thread of its own, in order of events."""

    def __init__(self) -> None:
        self.alert_listeners: list[Listener] = []
        self.observation_listeners: list[Listener] = []
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="cim-sensing-listeners", daemon=True)
                self._thread.start()

    def dispatch(self, observations: Any, alerts: list[AlertEvent]) -> None:
        if self.observation_listeners and observations is not None:
            self._ensure()
            self._queue.put(("observations", observations))
        if self.alert_listeners and alerts:
            self._ensure()
            for a in alerts:
                self._queue.put(("alert", a))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                kind, payload = item
                for fn in list(self.alert_listeners if kind == "alert" else self.observation_listeners):
                    try:
                        fn(payload)
                    except Exception:
                        log.exception("sensing %s listener %r failed", kind, fn)
            finally:
                self._queue.task_done()

    def join(self, timeout: float = 10.0) -> None:
        """Wait until every event handed over so far has been handed to the listeners."""
        if self._thread is None:
            return
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        done.wait(timeout)

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=10)
        self._thread = None


__all__ = ["EVENT_KINDS", "Dispatcher", "Hub", "ObservationEvent", "Subscription", "sse"]
