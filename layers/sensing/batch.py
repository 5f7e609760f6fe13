"""The batch writer of a `SensingStore`: observations from every source go through one queue to one writer thread,
which commits whatever has arrived (up to `max_batch` rows) in one transaction: the rows, the per-Datastream
`latest` row, new Datastream/FeatureOfInterest pairs and alert changes; then it publishes the batch's events. When
`max_pending` rows are queued, submitters wait (back-pressure). See `layers.sensing.store` for the whole picture.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

from layers.sensing.alerts import Alert, AlertEvent
from layers.sensing.errors import EntityNotFoundError, SensingInputError
from layers.sensing.events import ObservationEvent
from layers.sensing.observations import ObsRow, rows_table
from layers.sensing.schema import SCHEMA, refresh_feature_security
from layers.sensing.values import decode_result, iso
from layers.sensing.write import LATEST_SELECT

if TYPE_CHECKING:
    from layers.sensing.alerts import AlertEngine
    from layers.sensing.events import Dispatcher, Hub
    from layers.sensing.store import DatastreamMeta

log = logging.getLogger("cim.sensing")


_ALERT_COLUMNS = ("id", "datastream_id", "level", "max_level", "direction", "threshold", "opened_at",
                  "opened_observation_id", "opened_result", "changed_at", "peak_result", "peak_at", "closed_at",
                  "closed_observation_id", "closed_result", "last_time")
_ALERT_SCHEMA = pa.schema([(n, pa.int64() if n in ("id", "datastream_id", "opened_observation_id",
                                                   "closed_observation_id")
                            else pa.float64() if n in ("threshold", "opened_result", "peak_result", "closed_result")
                            else pa.timestamp("us") if n.endswith(("_at", "_time")) else pa.string())
                           for n in _ALERT_COLUMNS])


@dataclass
class _Job:
    """Observations waiting for the batch writer: rows (with their ids, or None to give them at commit), or a table
    in the `observations` layout (ids may be null). Rows of many jobs become one table per batch."""

    rows: Sequence[ObsRow] | None = None
    ids: Sequence[int] | None = None
    table: pa.Table | None = None
    future: Future[list[int]] | None = None
    on_done: Callable[[BaseException | None], None] | None = None

    @property
    def n(self) -> int:
        return self.table.num_rows if self.table is not None else len(self.rows or ())

    def datastreams(self) -> np.ndarray:
        if self.table is not None:
            return self.table["datastream_id"].to_numpy()
        return np.fromiter((r.datastream_id for r in self.rows or ()), np.int64, self.n)


@dataclass
class WriterStats:
    """Counters of the batch writer since the store was opened."""

    batches: int = 0
    observations: int = 0
    failed: int = 0
    commit_seconds: float = 0.0
    largest_batch: int = 0
    alerts_opened: int = 0
    alerts_closed: int = 0
    pending: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class BatchWriter:
    """The batch writer's part of `SensingStore` (a mixin: the store holds the queue, the locks and the caches it
    works with, and `meta()`, `connection` and `_take_ids`)."""

    # what `SensingStore` gives these methods (declared here for readers and type checkers; the store sets them)
    read_only: bool
    max_batch: int
    max_pending: int
    hub: Hub
    dispatcher: Dispatcher
    stats: WriterStats
    _write_lock: threading.RLock
    _foi: dict[int, int]
    _pairs: set[tuple[int, int]] | None
    _engine: AlertEngine
    _latest_dirty: set[int]
    _dirty_lock: threading.Lock
    _queue: queue.Queue[_Job | None]
    _pending: int
    _pending_cv: threading.Condition
    _thread: threading.Thread | None

    if TYPE_CHECKING:
        @property
        def connection(self) -> duckdb.DuckDBPyConnection: ...
        def meta(self) -> dict[int, DatastreamMeta]: ...
        def _require_writable(self) -> None: ...
        def _take_ids(self, table: str, count: int) -> list[int]: ...

    def submit(self, rows: Sequence[ObsRow] | pa.Table, ids: list[int] | None = None,
               on_done: Callable[[BaseException | None], None] | None = None) -> Future[list[int]]:
        """Queue checked observations for the batch writer (no validation: use `add_observations`).

        Args:
            rows: observations, or a table in the `observations` layout (`rows_table`).
            ids: their ids, when already allocated.
            on_done: called (on the writer thread) after the batch commits or fails, e.g. to acknowledge an MQTT
                message; then no future is returned (None).
        """
        self._require_writable()
        job = _Job(table=rows) if isinstance(rows, pa.Table) else _Job(rows=rows, ids=ids)
        # a caller with a callback (MQTT, one message at a time) needs no future: it costs a lock per message
        fut: Future[list[int]] | None = Future() if on_done is None else None
        job.future, job.on_done = fut, on_done
        n = job.n
        with self._pending_cv:
            while self._pending + n > self.max_pending and self._pending > 0:
                self._pending_cv.wait(timeout=1.0)
            self._pending += n
            self.stats.pending = self._pending
        self._ensure_writer()
        self._queue.put(job)
        return fut  # type: ignore[return-value]

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until everything queued so far is committed."""
        if self._thread is None:
            return
        fut = self.submit([]) if not self.read_only else None
        if fut is not None:
            fut.result(timeout)

    def _ensure_writer(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._write_lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._writer_loop, name="cim-sensing-writer", daemon=True)
                    self._thread.start()

    def _writer_loop(self) -> None:
        cur = self.connection.cursor()
        try:
            while True:
                job = self._queue.get()
                if job is None:
                    return
                jobs, n, stop = [job], job.n, False
                while n < self.max_batch:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    jobs.append(nxt)
                    n += nxt.n
                self._commit(cur, jobs)
                if stop:
                    return
        finally:
            cur.close()

    def _release(self, n: int) -> None:
        with self._pending_cv:
            self._pending -= n
            self.stats.pending = self._pending
            self._pending_cv.notify_all()

    def _commit(self, cur: duckdb.DuckDBPyConnection, jobs: list[_Job]) -> None:
        total = sum(j.n for j in jobs)
        t0 = time.perf_counter()
        table = None
        try:
            with self._write_lock:
                meta = self.meta()
                good: list[_Job] = []
                for j in jobs:
                    ds = j.datastreams()
                    present = np.isin(ds, np.fromiter(meta, np.int64, len(meta)))
                    if not present.all():
                        gone = int(ds[~present][0])
                        self._finish(j, None, EntityNotFoundError(f"Datastream {gone} was deleted"))
                    else:
                        good.append(j)
                rows = [r for j in good if j.rows for r in j.rows]
                ids = [i for j in good if j.rows for i in (j.ids if j.ids is not None else [None] * len(j.rows))]
                tables = [rows_table(rows, ids)] if rows else []
                tables += [j.table for j in good if j.table is not None and j.table.num_rows]
                if tables:
                    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
                    events, alerts, table = self._write_batch(cur, table, meta)
                else:
                    events, alerts = [], []
        except Exception as exc:  # noqa: BLE001 - the writer thread outlives a failed batch; its callers get the error
            log.error("sensing: a batch of %d observations failed: %s", total, exc)
            self.stats.failed += total
            for j in jobs:
                if j.future is None or not j.future.done():
                    self._finish(j, None, exc)
            self._release(total)
            return
        n = table.num_rows if table is not None else 0
        self.stats.batches += 1
        self.stats.observations += n
        self.stats.largest_batch = max(self.stats.largest_batch, n)
        self.stats.commit_seconds += time.perf_counter() - t0
        if table is not None:  # events first: a caller that waited for its write finds its listeners notified
            if self.hub.subscribers:
                self.hub.publish(events, alerts, {a.alert.datastream_id: meta[a.alert.datastream_id].security
                                                  for a in alerts if a.alert.datastream_id in meta})
            self.dispatcher.dispatch(table, alerts)
        # the table holds the row jobs first (in order), then the table jobs
        start = 0
        all_ids = table["id"].to_pylist() if table is not None else []
        for j in [j for j in good if j.table is None] + [j for j in good if j.table is not None]:
            self._finish(j, all_ids[start:start + j.n], None)
            start += j.n
        self._release(total)

    @staticmethod
    def _finish(job: _Job, ids: list[int] | None, exc: BaseException | None) -> None:
        if job.on_done is None and job.future is None:
            return
        if job.future is not None and not job.future.done():
            if exc is None:
                job.future.set_result(ids or [])
            else:
                job.future.set_exception(exc)
        if job.on_done is not None:
            try:
                job.on_done(exc)
            except Exception:
                log.exception("sensing: an on_done callback failed")

    def _default_features(self, cur: duckdb.DuckDBPyConnection, meta: dict[int, DatastreamMeta],
                          datastreams: Iterable[int]) -> dict[int, int]:
        """The FeatureOfInterest of each Datastream's Thing location (created from the Location when missing; two
        statements for any number of Locations)."""
        locs: dict[int, int] = {}
        for ds in datastreams:
            loc = meta[ds].location_id
            if loc is None:
                raise SensingInputError(f"Datastream {ds}'s Thing has no Location for a FeatureOfInterest")
            locs[ds] = loc
        unknown = sorted({loc for loc in locs.values() if loc not in self._foi})
        if unknown:
            found = dict(cur.execute(f"SELECT location_id, min(id) FROM {SCHEMA}.features WHERE location_id IN "
                                     f"(SELECT unnest($1::BIGINT[])) GROUP BY 1", [unknown]).fetchall())
            self._foi.update(found)
            missing = [loc for loc in unknown if loc not in found]
            if missing:
                ids = self._take_ids(f"{SCHEMA}.features", len(missing))
                cur.register("sensing_new_features", pa.table({"fid": pa.array(ids, pa.int64()),
                                                               "loc": pa.array(missing, pa.int64())}))
                try:
                    cur.execute(f"INSERT INTO {SCHEMA}.features SELECT m.fid, l.name, l.description, l.encoding_type, "
                                f"l.location, l.geom, l.properties, l.id, l.security FROM sensing_new_features m "
                                f"JOIN {SCHEMA}.locations l ON l.id = m.loc")
                finally:
                    cur.unregister("sensing_new_features")
                self._foi.update(zip(missing, ids, strict=True))
        return {ds: self._foi[loc] for ds, loc in locs.items()}

    def _write_batch(self, cur: duckdb.DuckDBPyConnection, table: pa.Table, meta: dict[int, DatastreamMeta]
                     ) -> tuple[list[ObservationEvent], list[AlertEvent], pa.Table]:
        """Write one batch in one transaction: observations (ids and default features filled in), `latest`, new
        Datastream/FeatureOfInterest pairs, alert changes."""
        n = table.num_rows
        table = table.combine_chunks()  # many small jobs: one chunk for DuckDB's scan
        id_col = table["id"]
        if id_col.null_count:
            given = id_col.to_numpy(zero_copy_only=False)
            missing = np.isnan(given) if given.dtype.kind == "f" else np.zeros(n, bool)
            fresh = np.array(self._take_ids(f"{SCHEMA}.observations", int(missing.sum())), dtype=np.int64)
            ids_np = np.where(missing, 0, np.nan_to_num(given)).astype(np.int64)
            ids_np[missing] = fresh
            table = table.set_column(0, "id", pa.array(ids_np, pa.int64()))
        ds_np = table["datastream_id"].to_numpy()
        cur.begin()
        try:
            feat = table["feature_id"]
            if feat.null_count:
                given = feat.to_numpy(zero_copy_only=False)
                missing = np.isnan(given)
                defaults = self._default_features(cur, meta, np.unique(ds_np[missing]).tolist())
                filled = np.nan_to_num(given).astype(np.int64)
                filled[missing] = [defaults[d] for d in ds_np[missing].tolist()]
                table = table.set_column(11, "feature_id", pa.array(filled, pa.int64()))
            cur.register("sensing_batch", table)
            try:
                cur.execute(f"INSERT INTO {SCHEMA}.observations SELECT * FROM sensing_batch")
                # one UPDATE for Datastreams that have a `latest` row and one INSERT for those that do not: an
                # `INSERT ... ON CONFLICT DO UPDATE` costs DuckDB 1.4 about 40 ms even for one row
                L, agg = f"{SCHEMA}.latest", f"({LATEST_SELECT.format(source='sensing_batch')})"
                newer = f"({L}.phenomenon_time IS NULL OR x.phenomenon_time >= {L}.phenomenon_time)"
                cur.execute(
                    f"UPDATE {L} SET observations = {L}.observations + x.observations, "
                    f"first_time = least({L}.first_time, x.first_time), last_time = greatest({L}.last_time, "
                    f"x.last_time), first_result_time = least({L}.first_result_time, x.first_result_time), "
                    f"last_result_time = greatest({L}.last_result_time, x.last_result_time), "
                    + ", ".join(f"{c} = CASE WHEN {newer} THEN x.{c} ELSE {L}.{c} END"
                                for c in ("observation_id", "phenomenon_time", "result_number", "result_json"))
                    + f" FROM {agg} x WHERE {L}.datastream_id = x.datastream_id")
                cur.execute(f"INSERT INTO {L} SELECT * FROM {agg} x WHERE NOT EXISTS "
                            f"(SELECT 1 FROM {L} l WHERE l.datastream_id = x.datastream_id)")
            finally:
                cur.unregister("sensing_batch")
            if self._pairs is None:
                self._pairs = set(cur.execute(f"SELECT datastream_id, feature_id FROM "
                                              f"{SCHEMA}.datastream_features").fetchall())
            features_np = table["feature_id"].to_numpy()
            pair_keys = np.unique(np.stack([ds_np, features_np], axis=1), axis=0) if n else np.empty((0, 2), np.int64)
            new_pairs = {(int(d), int(f)) for d, f in pair_keys} - self._pairs
            if new_pairs:
                pairs = sorted(new_pairs)
                cur.register("sensing_pairs", pa.table({"d": [p[0] for p in pairs], "f": [p[1] for p in pairs]}))
                try:
                    cur.execute(f"INSERT INTO {SCHEMA}.datastream_features SELECT d, f FROM sensing_pairs p WHERE "
                                f"NOT EXISTS (SELECT 1 FROM {SCHEMA}.datastream_features x WHERE x.datastream_id = p.d "
                                f"AND x.feature_id = p.f)")
                finally:
                    cur.unregister("sensing_pairs")
                refresh_feature_security(cur, sorted({p[1] for p in pairs}))
            thresholds = {m.id: m.thresholds for m in meta.values() if m.thresholds is not None}
            watched = set(thresholds) | {ds for ds, st in self._engine.states.items() if st.alert is not None}
            readings: list[tuple[int, int, datetime, float | None]] = []
            if watched:
                mask = np.isin(ds_np, np.fromiter(watched, np.int64, len(watched)))
                if mask.any():
                    sub = table.filter(pa.array(mask))
                    readings = list(zip(sub["datastream_id"].to_pylist(), sub["id"].to_pylist(),
                                        sub["phenomenon_time"].to_pylist(), sub["result_number"].to_pylist(),
                                        strict=True))
            alert_events, changed = self._engine.evaluate(readings, thresholds) if readings else ([], {})
            if alert_events:
                final = [_alert_row(a, changed) for a in {e.alert.id: e.alert for e in alert_events}.values()]
                cur.register("sensing_alerts", pa.table({name: [r[i] for r in final] for i, name in enumerate(
                    _ALERT_COLUMNS)}, schema=_ALERT_SCHEMA))
                try:  # UPDATE the alerts that exist, INSERT the new (a DELETE and re-INSERT of a primary key in
                    # consecutive transactions is a write-write conflict in DuckDB 1.4)
                    A = f"{SCHEMA}.alerts"
                    cur.execute(f"UPDATE {A} SET " + ", ".join(f"{c} = x.{c}" for c in _ALERT_COLUMNS[2:])
                                + f" FROM sensing_alerts x WHERE {A}.id = x.id")
                    cur.execute(f"INSERT INTO {A} SELECT * FROM sensing_alerts x WHERE NOT EXISTS "
                                f"(SELECT 1 FROM {A} a WHERE a.id = x.id)")
                finally:
                    cur.unregister("sensing_alerts")
            cur.commit()
        except BaseException:
            with contextlib.suppress(duckdb.TransactionException):  # a failed commit has rolled back already
                cur.rollback()
            raise
        with self._dirty_lock:  # after the commit: a `latest()` that takes these ids reads what was committed
            self._latest_dirty.update(np.unique(ds_np).tolist())
        self._pairs |= new_pairs
        self._engine.apply(changed, alert_events)
        for e in alert_events:
            self.stats.alerts_opened += e.kind == "opened"
            self.stats.alerts_closed += e.kind == "closed"
            self._describe(e.alert, meta)
        events: list[ObservationEvent] = []
        if self.hub.subscribers:
            for oid, d, t, num, txt in zip(table["id"].to_pylist(), ds_np.tolist(),
                                           table["phenomenon_time"].to_pylist(), table["result_number"].to_pylist(),
                                           table["result_json"].to_pylist(), strict=True):
                m = meta[d]
                value = decode_result(num, txt)
                level = m.thresholds.level(num) if m.thresholds is not None and num is not None else None
                events.append(ObservationEvent(oid, d, m.thing_id, iso(t) or "", value, level, m.security))
        return events, alert_events, table

    @staticmethod
    def _describe(a: Alert, meta: dict[int, DatastreamMeta]) -> None:
        m = meta.get(a.datastream_id)
        if m is not None:
            a.datastream, a.thing_id, a.thing = m.name, m.thing_id, m.thing
            a.observed_property, a.unit, a.security = m.observed_property, m.unit, m.security


def _alert_row(a: Alert, changed: dict[int, Any]) -> list[Any]:
    st = changed.get(a.datastream_id)
    last = st.last_time if st is not None and st.last_time is not None else a.changed_at
    closed = a.closed_by
    return [a.id, a.datastream_id, a.level, a.max_level, a.direction, a.threshold, a.opened_at,
            a.opened_by.observation_id, a.opened_by.result, a.changed_at,
            a.peak.result if a.peak else a.opened_by.result, a.peak.phenomenon_time if a.peak else a.opened_at,
            a.closed_at, closed.observation_id if closed else None, closed.result if closed else None, last]


__all__ = ["BatchWriter", "WriterStats"]
