"""`SensingStore`: the SensorThings data of a city in its layer store, with batched observation writes, alerts and
live events.

    >>> from layers.sensing import SensingStore
    >>> with SensingStore("city.duckdb") as s:                                   # doctest: +SKIP
    ...     s.create("Things", {"name": "御河1号水位站", "Locations": [...], "Datastreams": [...]})
    ...     s.add_observations([...])                                           # batched, one transaction
    ...     s.observations([1, 2], start="2024-07-20T00:00:00Z")                # a pandas frame
    ...     s.get("Datastreams", {"$filter": "ObservedProperty/name eq 'water_level'"})

**Who writes.** DuckDB lets one process write a database file, or many read it, never both. The sensing tables
live in the store's file, so exactly one process writes them: the process that opened the store read-write. In a
city deployment that is `cim serve --ingest` (or `--mqtt`): it takes observations over HTTP and MQTT and is the only
writer; other processes send their writes to it (`cim sensors import --server URL`). While it runs, it records
itself in `<store>.writer.json` beside the store, so a process that finds the file locked can say where to send
its writes. A notebook or `cim sensors import` without a server opens the store read-write itself.

**Batching.** Observations from every source go through one queue to one writer thread, which commits whatever
has arrived (up to `max_batch` rows) in one transaction: the rows, the per-Datastream `latest` row, new
Datastream/FeatureOfInterest pairs and alert changes. Callers that need the ids (an HTTP POST answering 201) wait
for their batch's commit; MQTT messages are acknowledged to the broker after it (at-least-once). When `max_pending`
rows are queued, submitters wait (back-pressure) instead of growing memory.

`SensingStore` is made of three parts besides this module's lifecycle, entity writes, checks and alerts:
`layers.sensing.batch` (the batch writer thread), `layers.sensing.readings` (frames, observations and the latest
readings) and `layers.sensing.writerlock` (the `<store>.writer.json` record); their names are importable from here.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

from layers.db import ThreadCursors, first_row
from layers.errors import StoreLockedError
from layers.sensing.alerts import Alert, AlertEngine, AlertEvent, Reading, Thresholds, parse_thresholds
from layers.sensing.batch import BatchWriter, WriterStats, _Job
from layers.sensing.entities import ENTITY_SETS, OM_MEASUREMENT, EntitySet
from layers.sensing.errors import EntityNotFoundError, QueryError, ReadOnlySensingError, SensingInputError
from layers.sensing.events import Dispatcher, Hub, ObservationEvent
from layers.sensing.observations import OBS_SCHEMA, ObsRow, check_result, data_array_table
from layers.sensing.odata import parse_time
from layers.sensing.query import Reader
from layers.sensing.readings import LatestReading, ReadingQueries
from layers.sensing.schema import (
    SCHEMA,
    create_schema,
    has_schema,
    refresh_security,
)
from layers.sensing.values import LOCAL, Access, decode_result, iso, now_utc
from layers.sensing.write import EntityWriter
from layers.sensing.writerlock import claim_writer, current_writer, locked_message, release_writer, writer_file

if TYPE_CHECKING:
    from layers.store import LayerStore

@dataclass(frozen=True)
class DatastreamMeta:
    """What the writer and the stream need to know of a Datastream, cached in memory."""

    id: int
    name: str
    thing_id: int
    thing: str
    security: str
    observation_type: str
    thresholds: Thresholds | None
    observed_property: str
    definition: str
    unit: str
    location_id: int | None


@dataclass(frozen=True)
class Created:
    """An entity created by `SensingStore.create`."""

    entity_set: str
    id: int

    def path(self) -> str:
        return f"{self.entity_set}({self.id})"


class SensingStore(BatchWriter, ReadingQueries):
    """The SensorThings entities, observations and alerts of one store file.

    Cheap to construct; `open()` (or `with`) opens the file, or attaches to an open `LayerStore` (`store=`; the
    tile server shares its connection).

    Args:
        path: the store file (default `$CIM_STORE`, else `./cim.duckdb`).
        store: an open `LayerStore` to share instead of opening `path`.
        read_only: open read-only (reads only; see the module docstring for who writes).
        lock_timeout: seconds to wait while another process holds the file.
        default_top: page size of collections without `$top`.
        max_top: the largest `$top`.
        max_batch: observations committed in one transaction at most.
        max_pending: observations queued before submitters wait.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, store: LayerStore | None = None,
                 read_only: bool = False, lock_timeout: float = 10.0, default_top: int = 100,
                 max_top: int = 10_000, max_batch: int = 50_000, max_pending: int = 500_000) -> None:
        self.path = Path(path) if path is not None else None
        self._given = store
        self._store: LayerStore | None = None
        self.read_only = read_only
        self.lock_timeout = lock_timeout
        self.default_top = default_top
        self.max_top = max_top
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.empty = False
        self.hub = Hub()
        self.dispatcher = Dispatcher()
        self.stats = WriterStats()
        self._cursors = ThreadCursors()
        self._write_lock = threading.RLock()
        self._id_lock = threading.Lock()
        self._ids: dict[str, int] = {}
        self._meta: dict[int, DatastreamMeta] | None = None
        self._foi: dict[int, int] = {}
        self._pairs: set[tuple[int, int]] | None = None
        self._engine = AlertEngine()
        # `latest()`'s answer per Datastream, kept for one metadata snapshot; the writer marks what it commits
        self._latest: tuple[dict[int, DatastreamMeta], dict[int, dict[str, Any]]] | None = None
        self._latest_dirty: set[int] = set()
        self._latest_lock = threading.Lock()
        self._dirty_lock = threading.Lock()
        # latest_geojson's bodies (by caller's levels and ObservedProperty) of the entries they were made from
        self._geojson: tuple[dict[int, dict[str, Any]] | None, dict[tuple[Any, ...], bytes]] = (None, {})
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._pending = 0
        self._pending_cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> SensingStore:
        """Open the store (create the sensing tables when writable).

        Raises:
            StoreLockedError: another process holds the file (the message says which server, if one writes it).
            StoreNotFoundError: read-only and the file does not exist.
        """
        if self._store is not None:
            return self
        if self._given is not None:
            self._store = self._given
            self.read_only = self._given.read_only
        else:
            from layers.store import LayerStore

            store = LayerStore(self.path, read_only=self.read_only, lock_timeout=self.lock_timeout)
            try:
                store.open()
            except StoreLockedError as exc:
                raise StoreLockedError(f"{exc}. {locked_message(store.path)}") from exc
            self._store = store
        self.path = self._store.path
        con = self._store.connection
        if not self.read_only:
            create_schema(con)
        self.empty = not has_schema(con)
        if not self.read_only:
            self._load_alerts()
        return self

    def close(self) -> None:
        """Commit what is queued, stop the writer and the listeners, end live streams, close the file if owned."""
        if self._store is None:
            return
        self.flush()
        self._closing = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=60)
            self._thread = None
        self.dispatcher.join()
        self.dispatcher.close()
        self.hub.close()
        self._cursors.close()
        self._meta, self._latest, self._geojson = None, None, (None, {})
        if self._given is None:
            self._store.close()
        self._store = None
        self._closing = False

    def __enter__(self) -> SensingStore:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def layer_store(self) -> LayerStore:
        """The layer store this sensing store lives in (for the city's layers: sensor sites, buildings)."""
        if self._store is None:
            raise SensingInputError("the sensing store is not open; use `with SensingStore(...)` or call open()")
        return self._store

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        if self._store is None:
            raise SensingInputError("the sensing store is not open; use `with SensingStore(...)` or call open()")
        return self._store.connection

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor (autocommit reads see the latest commit)."""
        return self._cursors.get(self.connection)

    def _require_writable(self) -> None:
        if self.read_only:
            raise ReadOnlySensingError(
                f"the store {self.path} is open read-only here, so it takes no writes; the process that writes it "
                f"is the one that opened it read-write (start the server with `cim serve --ingest` or `--mqtt`, "
                f"see docs/sensing.md)")

    # ------------------------------------------------------------------ ids and caches
    def _next_id(self, table: str) -> int:
        with self._id_lock:
            n = self._ids.get(table)
            if n is None:
                # fetchall, never fetchone: a result left open holds a read lock that blocks the checkpoint of the
                # writer's next COMMIT forever (layers.db.first_row)
                n = int(self.cursor().execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchall()[0][0])
            self._ids[table] = n + 1
            return n

    def _take_ids(self, table: str, count: int) -> list[int]:
        first = self._next_id(table)
        with self._id_lock:
            self._ids[table] = first + count
        return list(range(first, first + count))

    def meta(self) -> dict[int, DatastreamMeta]:
        """Every Datastream's metadata (cached; reloaded after entity writes)."""
        m = self._meta
        if m is not None:
            return m
        if self.empty:
            return {}
        rows = self.cursor().execute(f"""
            SELECT d.id, d.name, d.thing_id, t.name, d.security, d.observation_type, d.properties, op.name,
                   op.definition, d.unit_of_measurement,
                   (SELECT min(location_id) FROM {SCHEMA}.thing_locations tl WHERE tl.thing_id = d.thing_id)
            FROM {SCHEMA}.datastreams d JOIN {SCHEMA}.things t ON t.id = d.thing_id
            JOIN {SCHEMA}.observed_properties op ON op.id = d.observed_property_id""").fetchall()
        m = {}
        for r in rows:
            try:
                thr = parse_thresholds(json.loads(r[6]) if r[6] else None)
            except SensingInputError:
                thr = None
            uom = json.loads(r[9]) if r[9] else {}
            m[r[0]] = DatastreamMeta(r[0], r[1], r[2], r[3], r[4], r[5], thr, r[7], r[8],
                                     str(uom.get("symbol") or uom.get("name") or ""), r[10])
        self._meta = m
        return m

    def _invalidate(self) -> None:
        self._meta = None
        self._foi = {}

    # ------------------------------------------------------------------ reading (SensorThings)
    def get(self, path: str = "", params: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
            access: Access = LOCAL, *, base: str = "", link_query: str = "") -> Any:
        """The SensorThings document of a GET (see `layers.sensing.query.Reader.read`).

        Args:
            path: the resource path below the service root (`Things(1)/Datastreams`).
            params: query options (`{"$filter": ..., "$expand": ...}`).
            access: the caller (default: this process, which sees everything).
            base: the service root URL for links (`http://host/sta/v1.1`).
        """
        reader = Reader(self.cursor(), base, default_top=self.default_top, max_top=self.max_top)
        if self.empty:
            segments = [s for s in path.strip("/").split("/") if s]
            if not segments:
                return reader.service_document()
            steps_ok = len(segments) == 1 and segments[0] in ENTITY_SETS
            if steps_ok:
                return {"value": []}
            raise EntityNotFoundError(f"no {path.strip('/')!r}: this store has no sensing data yet")
        return reader.read(path, params or {}, access, link_query=link_query)

    # ------------------------------------------------------------------ writing entities
    def _target(self, cur: duckdb.DuckDBPyConnection, path: str, access: Access, *, collection: bool
                ) -> tuple[EntitySet, int | None, Any]:
        segments = [s for s in path.strip("/").split("/") if s]
        if not segments:
            raise QueryError("give an entity set (Things) or entity (Things(1)) to write")
        steps, tail = Reader(cur, "").resolve(segments, access)
        if tail:
            raise QueryError(f"{path!r}: write an entity or a collection, not a property")
        last = steps[-1]
        if collection and last.id is not None:
            raise QueryError(f"{path!r} is one entity; POST to its collection ({last.es.name}) or PATCH/DELETE it")
        if not collection and last.id is None:
            raise QueryError(f"{path!r} is a collection; PATCH and DELETE name one entity, e.g. {last.es.name}(1)")
        return last.es, last.id, last.parent

    def _entity_transaction(self, access: Access, work: Callable[[EntityWriter], Any]) -> tuple[Any, EntityWriter]:
        self._require_writable()
        if self.empty:
            create_schema(self.connection)
            self.empty = False
        with self._write_lock:
            cur = self.connection.cursor()
            try:
                writer = EntityWriter(cur, self._next_id, access, now_utc())
                cur.begin()
                try:
                    result = work(writer)
                    writer.flush()
                    refresh_security(cur, None if writer.full_refresh else writer.touched)
                    cur.commit()
                except BaseException:
                    with contextlib.suppress(duckdb.TransactionException):
                        cur.rollback()
                    raise
                finally:
                    self._invalidate()
            finally:
                cur.close()
        return result, writer

    def create(self, path: str, body: Any, access: Access = LOCAL) -> Created:
        """Create an entity by POST semantics (deep insert) on a collection path (`Things`, `Things(1)/Locations`).

        Observations posted here are stored (through the batch writer) before this returns.

        Raises:
            SensingInputError: a malformed body (nothing is stored).
            EntityNotFoundError: a referenced entity does not exist or is hidden.
            WriteForbiddenError: the caller may not write, or not at that security level.
            ReadOnlySensingError: this process opened the store read-only.
        """
        def work(w: EntityWriter) -> tuple[str, int]:
            es, _, parent = self._target(w.cur, path, access, collection=True)
            return es.name, w.create(es, body, parent=parent)

        (name, eid), writer = self._entity_transaction(access, work)
        if writer.observations:
            self._validate_rows(writer.observations, access, check_visible=False)
            self.submit(writer.observations, ids=writer.observation_ids).result()
        return Created(name, eid)

    def create_many(self, path: str, bodies: Sequence[Any], access: Access = LOCAL) -> list[Created]:
        """Create many entities on one collection path in one transaction (a city's sensor inventory): all of
        them, or none when one is refused. Observations are refused here: send them with `add_observations`."""
        def work(w: EntityWriter) -> list[Created]:
            es, _, parent = self._target(w.cur, path, access, collection=True)
            if es.name == "Observations":
                raise SensingInputError("create observations with add_observations or CreateObservations")
            return [Created(es.name, w.create(es, body, f"{es.singular} [{i}]", parent=parent))
                    for i, body in enumerate(bodies)]

        created, writer = self._entity_transaction(access, work)
        if writer.observations:
            self._validate_rows(writer.observations, access, check_visible=False)
            self.submit(writer.observations, ids=writer.observation_ids).result()
        return created

    def update(self, path: str, body: Any, access: Access = LOCAL, *, mode: str = "merge") -> None:
        """Change an entity (`mode`: `merge` for PATCH with JSON, `json-patch` for RFC 6902, `put`)."""
        if mode not in ("merge", "json-patch", "put"):
            raise SensingInputError(f"update mode {mode!r} is not merge, json-patch or put")

        def work(w: EntityWriter) -> None:
            es, eid, _ = self._target(w.cur, path, access, collection=False)
            w.update(es, eid, body, mode)  # type: ignore[arg-type]

        with self._write_lock:
            self._entity_transaction(access, work)

    def delete(self, path: str, access: Access = LOCAL) -> None:
        """Delete an entity and what depends on it (see `layers.sensing.write`)."""
        deleted: list[int] = []

        def work(w: EntityWriter) -> None:
            es, eid, _ = self._target(w.cur, path, access, collection=False)
            deleted.extend(w.delete(es, eid))  # type: ignore[arg-type]

        with self._write_lock:
            self._entity_transaction(access, work)
            self._engine.forget(deleted)
            if self._pairs is not None:
                self._pairs = {p for p in self._pairs if p[0] not in deleted}

    # ------------------------------------------------------------------ writing observations
    def _validate_rows(self, rows: Sequence[ObsRow], access: Access, *, check_visible: bool = True) -> None:
        """Check rows against their Datastreams (existing, visible to the caller, result type, a location for a
        default FeatureOfInterest) before they are queued.

        Raises:
            EntityNotFoundError: a Datastream that does not exist or is hidden.
            SensingInputError: a result of the wrong type, no FeatureOfInterest and no Thing location.
        """
        meta = self.meta()
        checked: dict[int, DatastreamMeta] = {}
        fois: set[int] = set()
        for i, row in enumerate(rows):
            m = checked.get(row.datastream_id)
            if m is None:
                m = meta.get(row.datastream_id)
                if m is None or (check_visible and not access.sees(m.security)):
                    raise EntityNotFoundError(f"no Datastream {row.datastream_id}")
                checked[row.datastream_id] = m
            if m.observation_type != OM_MEASUREMENT or row.result_number is None:
                check_result(row, m.observation_type, f"observation {i}")
            if row.feature_id is None:
                if m.location_id is None:
                    raise SensingInputError(f"observation {i} has no FeatureOfInterest and Thing {m.thing_id} of "
                                            f"Datastream {m.id} has no Location to take it from; give one")
            else:
                fois.add(row.feature_id)
        if fois:
            found = {r[0] for r in self.cursor().execute(
                f"SELECT id FROM {SCHEMA}.features WHERE id IN (SELECT unnest($1::BIGINT[]))"
                + ("" if access.full else " AND list_contains($2::VARCHAR[], security)"),
                [sorted(fois)] + ([] if access.full else [list(access.levels)])).fetchall()}
            missing = sorted(fois - found)
            if missing:
                raise EntityNotFoundError(f"no FeatureOfInterest {missing[0]}")

    def add_observations(self, rows: Sequence[ObsRow], access: Access = LOCAL, *, wait: bool = True
                         ) -> list[int] | Future[list[int]]:
        """Validate and store observations (one batch or part of one); returns their ids, or a future of them.

        Raises:
            EntityNotFoundError, SensingInputError: see `_validate_rows`; nothing is queued.
            ReadOnlySensingError: this process opened the store read-only.
        """
        self._require_writable()
        if not access.write:
            from layers.sensing.errors import WriteForbiddenError

            raise WriteForbiddenError("this key may read but not write observations; it needs the grant "
                                      "sensing:write")
        self._validate_rows(rows, access)
        fut = self.submit(list(rows))
        return fut.result() if wait else fut

    def add_table(self, table: pa.Table, access: Access = LOCAL) -> list[int]:
        """Validate and store a table of observations in the `observations` layout (one batch or part of one);
        returns their ids.

        Raises:
            EntityNotFoundError, SensingInputError: see `validate_table`; nothing is queued.
        """
        self._require_writable()
        if not access.write:
            from layers.sensing.errors import WriteForbiddenError

            raise WriteForbiddenError("this key may read but not write observations; it needs the grant "
                                      "sensing:write")
        self.validate_table(table, access)
        return self.submit(table).result()

    def validate_table(self, table: pa.Table, access: Access = LOCAL, what: str = "observation") -> None:
        """Check a table of observations against their Datastreams, column-wise: each Datastream exists and the
        caller sees it, results have its observationType, features of interest exist (or the Thing has a Location).

        Raises:
            EntityNotFoundError: a Datastream or FeatureOfInterest that does not exist or is hidden.
            SensingInputError: a result of the wrong type (the message names the first such row).
        """
        meta = self.meta()
        ds = table["datastream_id"].to_numpy()
        number_null = table["result_number"].is_null().to_numpy(zero_copy_only=False)
        feature_null = table["feature_id"].is_null().to_numpy(zero_copy_only=False)
        for d in np.unique(ds).tolist():
            m = meta.get(d)
            if m is None or not access.sees(m.security):
                raise EntityNotFoundError(f"no Datastream {d}")
            mine = ds == d
            if m.observation_type == OM_MEASUREMENT:
                bad = mine & number_null
                if bad.any():
                    k = int(np.argmax(bad))
                    shown = table["result_json"][k].as_py()
                    raise SensingInputError(f"{what} {k}: result {str(shown)[:40]} is not a number, as Datastream {d}'s "
                                            f"observationType OM_Measurement requires")
            else:
                idx = np.flatnonzero(mine)
                numbers, texts = table["result_number"].take(idx).to_pylist(), table["result_json"].take(idx).to_pylist()
                for k, num, txt in zip(idx.tolist(), numbers, texts, strict=True):
                    check_result(ObsRow(d, None, None, None, num, txt, None, None, None, None, None),  # type: ignore
                                 m.observation_type, f"{what} {k}")
            if m.location_id is None and (mine & feature_null).any():
                raise SensingInputError(f"{what} {int(np.argmax(mine & feature_null))} has no FeatureOfInterest and "
                                        f"Thing {m.thing_id} of Datastream {d} has no Location to take it from")
        fois = sorted(set(table["feature_id"].drop_null().to_pylist()))
        if fois:
            found = {r[0] for r in self.cursor().execute(
                f"SELECT id FROM {SCHEMA}.features WHERE id IN (SELECT unnest($1::BIGINT[]))"
                + ("" if access.full else " AND list_contains($2::VARCHAR[], security)"),
                [fois] + ([] if access.full else [list(access.levels)])).fetchall()}
            missing = [f for f in fois if f not in found]
            if missing:
                raise EntityNotFoundError(f"no FeatureOfInterest {missing[0]}")

    def create_observations(self, body: Any, access: Access = LOCAL, *, base: str = "") -> list[str]:
        """`POST /CreateObservations` (dataArray): store every row of every entry in one batch, or none.

        Returns:
            The selfLink of every created Observation, in the order of the rows.
        """
        table = data_array_table(body, now=now_utc())
        ids = self.add_table(table, access)
        return [f"{base}/Observations({i})" for i in ids]


    def _load_alerts(self) -> None:
        if self.empty:
            return
        cur = self.cursor()
        last = dict(cur.execute(f"SELECT datastream_id, phenomenon_time FROM {SCHEMA}.latest").fetchall())
        open_alerts = self._alerts_sql(cur, "a.closed_at IS NULL", [])
        for a in open_alerts:
            row = first_row(cur.execute(f"SELECT last_time FROM {SCHEMA}.alerts WHERE id = ?", [a.id]))
            if row is not None:
                last[a.datastream_id] = max(last.get(a.datastream_id) or row[0], row[0])
        self._engine.load(open_alerts, last)
        self._engine.next_id = int(cur.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {SCHEMA}.alerts").fetchall()[0][0])

    # ------------------------------------------------------------------ alerts
    def _alerts_sql(self, cur: duckdb.DuckDBPyConnection, where: str, params: list[Any], limit: int = 10_000
                    ) -> list[Alert]:
        rows = cur.execute(f"""
            SELECT a.id, a.datastream_id, a.level, a.max_level, a.direction, a.threshold, a.opened_at,
                   a.opened_observation_id, a.opened_result, a.changed_at, a.peak_result, a.peak_at, a.closed_at,
                   a.closed_observation_id, a.closed_result, d.name, d.thing_id, t.name, op.name,
                   d.unit_of_measurement, d.security,
                   (SELECT [ST_X(l.geom), ST_Y(l.geom)] FROM {SCHEMA}.thing_locations tl JOIN {SCHEMA}.locations l
                    ON l.id = tl.location_id WHERE tl.thing_id = d.thing_id ORDER BY l.id LIMIT 1)
            FROM {SCHEMA}.alerts a JOIN {SCHEMA}.datastreams d ON d.id = a.datastream_id
            JOIN {SCHEMA}.things t ON t.id = d.thing_id
            JOIN {SCHEMA}.observed_properties op ON op.id = d.observed_property_id
            WHERE {where} ORDER BY a.opened_at DESC, a.id DESC LIMIT {int(limit)}""", params).fetchall()
        out = []
        for r in rows:
            uom = json.loads(r[19]) if r[19] else {}
            out.append(Alert(
                id=r[0], datastream_id=r[1], level=r[2], max_level=r[3], direction=r[4], threshold=r[5],
                opened_at=r[6], opened_by=Reading(observation_id=r[7], result=r[8], phenomenon_time=r[6]),
                changed_at=r[9], peak=Reading(result=r[10], phenomenon_time=r[11]),
                closed_at=r[12],
                closed_by=Reading(observation_id=r[13], result=r[14], phenomenon_time=r[12]) if r[12] else None,
                datastream=r[15], thing_id=r[16], thing=r[17], observed_property=r[18],
                unit=str(uom.get("symbol") or uom.get("name") or ""), security=r[20],
                location=[float(x) for x in r[21]] if r[21] else None))
        return out

    def alerts(self, access: Access = LOCAL, *, status: str = "all", datastream: int | None = None,
               since: str | datetime | None = None, limit: int = 1000) -> list[Alert]:
        """Alerts the caller may see, newest first.

        Args:
            status: `open`, `closed` or `all`.
            datastream: only this Datastream's.
            since: only alerts open at or after this time (ISO 8601 or a datetime, UTC).
            limit: at most this many (1..10000).
        """
        if status not in ("open", "closed", "all"):
            raise QueryError(f"status={status!r} is not open, closed or all")
        if not 1 <= limit <= 10_000:
            raise QueryError(f"limit={limit} is not within 1..10000")
        if self.empty:
            return []
        where, params = ["TRUE"], []
        if not access.full:
            params.append(list(access.levels))
            where.append(f"list_contains(${len(params)}::VARCHAR[], d.security)")
        if status != "all":
            where.append("a.closed_at IS NULL" if status == "open" else "a.closed_at IS NOT NULL")
        if datastream is not None:
            params.append(int(datastream))
            where.append(f"a.datastream_id = ${len(params)}")
        if since is not None:
            t = parse_time(since, "since") if isinstance(since, str) else since
            params.append(t)
            where.append(f"coalesce(a.closed_at, TIMESTAMP '9999-12-31') >= ${len(params)}")
        return self._alerts_sql(self.cursor(), " AND ".join(where), params, limit)

    def on_alert(self, listener: Callable[[AlertEvent], None]) -> Callable[[AlertEvent], None]:
        """Call `listener(event)` for every alert opened, escalated, de-escalated or closed (on a listener thread,
        after the batch that caused it is committed). Returns the listener (usable as a decorator)."""
        self.dispatcher.alert_listeners.append(listener)
        return listener

    def on_observations(self, listener: Callable[[pa.Table], None]) -> Callable[[pa.Table], None]:
        """Call `listener(table)` with every committed batch (a pyarrow table in the `observations` layout)."""
        self.dispatcher.observation_listeners.append(listener)
        return listener

    def remove_listener(self, listener: Callable[[Any], None]) -> None:
        for lst in (self.dispatcher.alert_listeners, self.dispatcher.observation_listeners):
            while listener in lst:
                lst.remove(listener)

    def replay(self, after_id: int, access: Access = LOCAL, datastreams: Sequence[int] | None = None,
               limit: int = 10_000) -> list[ObservationEvent]:
        """Observations stored after observation `after_id` (a live-stream client resuming with Last-Event-ID),
        oldest first, at most `limit`."""
        metas = {m.id: m for m in self._visible_datastreams(access, None)
                 if datastreams is None or m.id in set(datastreams)}
        if not metas or self.empty:
            return []
        rows = self.cursor().execute(
            f"SELECT id, datastream_id, phenomenon_time, result_number, result_json FROM {SCHEMA}.observations "
            f"WHERE id > $1 AND datastream_id IN (SELECT unnest($2::BIGINT[])) ORDER BY id LIMIT {int(limit)}",
            [int(after_id), sorted(metas)]).fetchall()
        out = []
        for oid, d, t, num, txt in rows:
            m = metas[d]
            level = m.thresholds.level(num) if m.thresholds is not None and num is not None else None
            out.append(ObservationEvent(oid, d, m.thing_id, iso(t) or "", decode_result(num, txt), level, m.security))
        return out


__all__ = ["Created", "DatastreamMeta", "LatestReading", "SensingStore", "WriterStats", "claim_writer", "current_writer",
           "locked_message", "release_writer", "writer_file"]
