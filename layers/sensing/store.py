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
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

from layers.db import ThreadCursors, first_row
from layers.errors import StoreLockedError
from layers.sensing.alerts import Alert, AlertEngine, AlertEvent, Reading, Thresholds, parse_thresholds
from layers.sensing.entities import ENTITY_SETS, OM_MEASUREMENT, EntitySet
from layers.sensing.errors import EntityNotFoundError, QueryError, ReadOnlySensingError, SensingInputError
from layers.sensing.events import Dispatcher, Hub, ObservationEvent
from layers.sensing.observations import (OBS_SCHEMA, ObsRow, check_result, data_array_table,
                                         rows_table)
from layers.sensing.odata import parse_time
from layers.sensing.query import Reader
from layers.sensing.schema import (
    SCHEMA,
    create_schema,
    has_schema,
    refresh_feature_security,
    refresh_security,
)
from layers.sensing.values import LOCAL, Access, decode_result, iso, now_utc
from layers.sensing.write import LATEST_SELECT, EntityWriter

if TYPE_CHECKING:
    import geopandas as gpd
    import pandas as pd

    from layers.store import LayerStore

log = logging.getLogger("cim.sensing")


_ALERT_COLUMNS = ("id", "datastream_id", "level", "max_level", "direction", "threshold", "opened_at",
                  "opened_observation_id", "opened_result", "changed_at", "peak_result", "peak_at", "closed_at",
                  "closed_observation_id", "closed_result", "last_time")
_ALERT_SCHEMA = pa.schema([(n, pa.int64() if n in ("id", "datastream_id", "opened_observation_id",
                                                   "closed_observation_id")
                            else pa.float64() if n in ("threshold", "opened_result", "peak_result", "closed_result")
                            else pa.timestamp("us") if n.endswith(("_at", "_time")) else pa.string())
                           for n in _ALERT_COLUMNS])


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


def writer_file(store_path: str | os.PathLike[str]) -> Path:
    """The file in which the writing server records itself: `city.duckdb` -> `city.writer.json`."""
    p = Path(store_path)
    return p.with_name(p.stem + ".writer.json")


def claim_writer(store_path: str | os.PathLike[str], url: str | None) -> None:
    """Record this process as the store's writer (pid, URL) beside the store."""
    doc = {"pid": os.getpid(), "url": url, "since": iso(now_utc())}
    path = writer_file(store_path)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    os.replace(tmp, path)


def release_writer(store_path: str | os.PathLike[str]) -> None:
    """Remove the writer record if this process wrote it."""
    path = writer_file(store_path)
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def current_writer(store_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The running server that writes the store, from its record (None when none is alive)."""
    try:
        doc = json.loads(writer_file(store_path).read_text(encoding="utf-8"))
        os.kill(int(doc["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return doc


def locked_message(store_path: str | os.PathLike[str]) -> str:
    """What to do when the store is held by another process, naming the writing server when there is one."""
    w = current_writer(store_path)
    if w is not None:
        return (f"a `cim serve --ingest` server (pid {w['pid']}, {w.get('url') or 'URL unknown'}) writes {store_path}; "
                f"send the data through it: cim sensors import FILE --server {w.get('url') or 'URL'} "
                f"--api-key KEY (a key with the grant sensing:write), or stop the server first")
    return (f"another process holds {store_path} (a `cim serve` or an import); stop it, or run the server with "
            f"--ingest and send the data through it (cim sensors import FILE --server URL --api-key KEY)")


class SensingStore:
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

    # ------------------------------------------------------------------ frames (notebooks, analyses)
    def _visible_datastreams(self, access: Access, observed_property: str | None,
                             meta: dict[int, DatastreamMeta] | None = None) -> list[DatastreamMeta]:
        """The Datastreams `access` sees, by id (a cached list: callers must not change it)."""
        meta = self.meta() if meta is None else meta
        ordered = getattr(self, "_ordered", None)
        if ordered is None or ordered[0] is not meta:
            ordered = self._ordered = (meta, sorted(meta.values(), key=lambda m: m.id))
        out = ordered[1] if access.full else [m for m in ordered[1] if access.sees(m.security)]
        if observed_property is not None:
            out = [m for m in out if observed_property in (m.observed_property, m.definition)]
        return out

    def datastreams(self, observed_property: str | None = None, access: Access = LOCAL) -> gpd.GeoDataFrame:
        """Datastreams with their Thing's location, optionally of one ObservedProperty (by name or definition).

        Returns:
            GeoDataFrame (EPSG:4490, one row per Datastream): `datastream_id`, `name`, `thing_id`, `thing`,
            `observed_property`, `definition`, `unit`, `observation_type`, `security`, `thresholds` (dict or None),
            `last_time`, `last_result`, geometry = the Thing's (first) Location.
        """
        import geopandas as gpd
        import shapely

        metas = self._visible_datastreams(access, observed_property)
        ids = [m.id for m in metas]
        geoms: dict[int, Any] = {}
        last: dict[int, tuple[Any, Any]] = {}
        if ids and not self.empty:
            cur = self.cursor()
            for lid, wkb in cur.execute(f"SELECT id, ST_AsWKB(geom) FROM {SCHEMA}.locations WHERE id IN "
                                        f"(SELECT unnest($1::BIGINT[]))",
                                        [sorted({m.location_id for m in metas if m.location_id})]).fetchall():
                geoms[lid] = shapely.from_wkb(bytes(wkb))
            for ds, t, num, txt in cur.execute(f"SELECT datastream_id, phenomenon_time, result_number, result_json "
                                               f"FROM {SCHEMA}.latest WHERE datastream_id IN "
                                               f"(SELECT unnest($1::BIGINT[]))", [ids]).fetchall():
                last[ds] = (t, decode_result(num, txt))
        return gpd.GeoDataFrame({
            "datastream_id": np.array(ids, dtype=np.int64), "name": [m.name for m in metas],
            "thing_id": np.array([m.thing_id for m in metas], dtype=np.int64), "thing": [m.thing for m in metas],
            "observed_property": [m.observed_property for m in metas], "definition": [m.definition for m in metas],
            "unit": [m.unit for m in metas], "observation_type": [m.observation_type for m in metas],
            "security": [m.security for m in metas],
            "thresholds": [m.thresholds.to_dict() if m.thresholds else None for m in metas],
            "last_time": [last.get(m.id, (None, None))[0] for m in metas],
            "last_result": [last.get(m.id, (None, None))[1] for m in metas]},
            geometry=[geoms.get(m.location_id) for m in metas], crs="EPSG:4490")

    def observations(self, datastreams: Sequence[int] | int, start: str | datetime | None = None,
                     end: str | datetime | None = None, access: Access = LOCAL) -> pd.DataFrame:
        """Observations of some Datastreams in a time window, in time order.

        Args:
            datastreams: Datastream ids (hidden or unknown ones raise).
            start, end: the window on phenomenon time (inclusive start, exclusive end; ISO 8601 or naive UTC).

        Returns:
            DataFrame: `datastream_id` (int64), `phenomenon_time` (datetime64[us], UTC), `result` (float64; NaN for
            non-numeric results), `observation_id` (int64), sorted by datastream then time.

        Raises:
            EntityNotFoundError: a Datastream that does not exist or is hidden.
        """
        ids = [int(datastreams)] if isinstance(datastreams, (int, np.integer)) else [int(d) for d in datastreams]
        meta = self.meta()
        for d in ids:
            if d not in meta or not access.sees(meta[d].security):
                raise EntityNotFoundError(f"no Datastream {d}")
        where, params = ["datastream_id IN (SELECT unnest($1::BIGINT[]))"], [ids]
        for value, op in ((start, ">="), (end, "<")):
            if value is not None:
                params.append(parse_time(value, "time") if isinstance(value, str) else value)
                where.append(f"phenomenon_time {op} ${len(params)}")
        table = self.cursor().execute(
            f"SELECT datastream_id, phenomenon_time, result_number AS result, id AS observation_id "
            f"FROM {SCHEMA}.observations WHERE {' AND '.join(where)} ORDER BY datastream_id, phenomenon_time, id",
            params).fetch_arrow_table() if not self.empty else pa.table(
            {"datastream_id": pa.array([], pa.int64()), "phenomenon_time": pa.array([], pa.timestamp("us")),
             "result": pa.array([], pa.float64()), "observation_id": pa.array([], pa.int64())})
        frame = table.to_pandas()
        frame["result"] = frame["result"].astype("float64")
        return frame

    def latest(self, access: Access = LOCAL, *, observed_property: str | None = None,
               at: str | datetime | None = None, window_hours: float = 24.0) -> list[dict[str, Any]]:
        """The latest reading of every Datastream the caller may see, with its warning level and location (what
        the viewer colours sensors by).

        Args:
            observed_property: only Datastreams of this ObservedProperty (name or definition).
            at: the state at this time instead of now: each Datastream's last reading at or before it, within
                `window_hours` before it (the viewer's time slider).

        Returns:
            One dict per Datastream: `datastream`, `name`, `thing`, `thingName`, `observedProperty`, `unit`,
            `location` ([lon, lat] or None), `phenomenonTime`, `result`, `level` (blue..red or None),
            `thresholds`. Without `at` they are `LatestReading`s, kept between calls and shared by callers, so
            read-only: copy one (`dict(r)`) to change it.
        """
        meta = self.meta()  # one snapshot: an entity write may replace the cache meanwhile
        metas = self._visible_datastreams(access, observed_property, meta)
        if not metas:
            return []
        cur = self.cursor()
        if at is None:  # the kept entries themselves: 10,000 copies per call cost garbage-collector pauses
            entries = self._latest_entries(cur, meta)
            return [entries[m.id] for m in metas]
        t = parse_time(at, "at") if isinstance(at, str) else at
        lo = t - timedelta(hours=window_hours)
        rows = cur.execute(f"SELECT datastream_id, max(phenomenon_time), arg_max_null(result_number, "
                           f"(phenomenon_time, id)), arg_max_null(result_json, (phenomenon_time, id)) FROM "
                           f"{SCHEMA}.observations WHERE phenomenon_time <= $2 AND phenomenon_time > $3 AND "
                           f"datastream_id IN (SELECT unnest($1::BIGINT[])) GROUP BY 1",
                           [[m.id for m in metas], t, lo]).fetchall()
        readings = {r[0]: r for r in rows}
        static = self._latest_static(cur, meta)
        none = (None, None, None, None)
        return [_latest_entry(static[m.id], m, *readings.get(m.id, none)[1:]) for m in metas]

    def latest_geojson(self, access: Access = LOCAL, *, observed_property: str | None = None) -> bytes:
        """`latest()` as a GeoJSON FeatureCollection, UTF-8 bytes (the body of `GET /sensing/latest`): one Feature
        per Datastream, `id` the Datastream's, a Point at its Thing's location, the rest of the entry as
        properties; `"at": null`.

        The encoded body is kept until the next commit or entity write, per caller's levels and ObservedProperty
        (10,000 Datastreams make 3.8 MB of JSON: building and encoding them is most of the request).
        """
        meta = self.meta()
        entries = self._latest_entries(self.cursor(), meta) if meta else None
        key = (tuple(sorted(access.levels)), observed_property)
        with self._latest_lock:
            made_from, bodies = self._geojson
            if entries is not None and made_from is entries and key in bodies:
                return bodies[key]
        features = [{"type": "Feature", "id": r["datastream"],
                     "geometry": {"type": "Point", "coordinates": r["location"]} if r["location"] else None,
                     "properties": {k: v for k, v in r.items() if k != "location"}}
                    for r in self.latest(access, observed_property=observed_property)]
        body = json.dumps({"type": "FeatureCollection", "features": features, "at": None}, ensure_ascii=False,
                          separators=(",", ":"), allow_nan=False).encode()
        with self._latest_lock:
            made_from, bodies = self._geojson
            if entries is not None and self._latest is not None and self._latest[1] is entries:  # still current
                bodies = bodies if made_from is entries else {}
                if len(bodies) < 64:
                    self._geojson = (entries, {**bodies, key: body})
        return body

    def _latest_entries(self, cur: duckdb.DuckDBPyConnection, meta: dict[int, DatastreamMeta]
                        ) -> dict[int, dict[str, Any]]:
        """`latest()`'s answer for every Datastream of `meta`, kept between calls: rebuilt from the `latest` table
        when the entities change, and only for the Datastreams the writer committed readings of since the last
        call otherwise (`latest()` of 10,000 Datastreams rebuilt every time cost 36 ms, p95 128 ms)."""
        with self._latest_lock:
            kept = self._latest
            with self._dirty_lock:
                if kept is None or kept[0] is not meta:
                    ids: list[int] | None = None
                elif self._latest_dirty:
                    ids = sorted(self._latest_dirty)
                else:
                    return kept[1]
                self._latest_dirty.clear()
            sql = f"SELECT datastream_id, phenomenon_time, result_number, result_json FROM {SCHEMA}.latest"
            rows = (cur.execute(sql).fetchall() if ids is None else
                    cur.execute(sql + " WHERE datastream_id IN (SELECT unnest($1::BIGINT[]))", [ids]).fetchall())
            static = self._latest_static(cur, meta)
            entries = ({d: LatestReading(v) for d, v in static.items()} if kept is None or ids is None
                       else dict(kept[1]))  # a new dict: a caller may still iterate the one it was given
            for d, t, num, txt in rows:
                if d in meta:
                    entries[d] = LatestReading(_latest_entry(static[d], meta[d], t, num, txt))
            self._latest = (meta, entries)
            return entries

    def _latest_static(self, cur: duckdb.DuckDBPyConnection, meta: dict[int, DatastreamMeta]
                       ) -> dict[int, dict[str, Any]]:
        """The part of `latest`'s answer that changes only with the entities (kept until the next entity write)."""
        cache = getattr(self, "_static_cache", None)
        if cache is not None and cache[0] is meta:
            return cache[1]
        locations = self._locations(cur, {m.location_id for m in meta.values() if m.location_id})
        static = {m.id: {"datastream": m.id, "name": m.name, "thing": m.thing_id, "thingName": m.thing,
                         "observedProperty": m.observed_property, "unit": m.unit,
                         "location": locations.get(m.location_id), "phenomenonTime": None, "result": None,
                         "level": None, "thresholds": m.thresholds.to_dict() if m.thresholds else None}
                  for m in meta.values()}
        self._static_cache = (meta, static)
        return static

    def _locations(self, cur: duckdb.DuckDBPyConnection, ids: set[int]) -> dict[int, list[float]]:
        cache = getattr(self, "_location_cache", None)
        if cache is None or cache[0] is not self._meta:
            rows = cur.execute(f"SELECT id, ST_X(ST_Centroid(geom)), ST_Y(ST_Centroid(geom)) FROM "
                               f"{SCHEMA}.locations").fetchall()
            cache = (self._meta, {r[0]: [r[1], r[2]] for r in rows})
            self._location_cache = cache
        return {i: cache[1][i] for i in ids if i in cache[1]}


__all__ = ["Created", "DatastreamMeta", "LatestReading", "SensingStore", "WriterStats", "claim_writer", "current_writer",
           "locked_message", "release_writer", "writer_file"]


class LatestReading(dict):  # type: ignore[type-arg]
    """One Datastream's entry of `SensingStore.latest()`: a dict that refuses changes, because the store keeps it
    between calls and hands the same object to every caller. `dict(r)` or `r.copy()` gives a dict to change."""

    __slots__ = ()

    def _refuse(self, *args: object, **kwargs: object) -> None:
        raise TypeError("a SensingStore.latest() entry is shared between calls and read-only; change a copy "
                        "(dict(entry))")

    __setitem__ = __delitem__ = __ior__ = update = pop = popitem = clear = setdefault = _refuse  # type: ignore

    def __reduce__(self) -> tuple[type, tuple[dict[str, Any]]]:  # copy, deepcopy and pickle give a plain dict
        return dict, (dict(self),)


def _latest_entry(static: dict[str, Any], m: DatastreamMeta, t: datetime | None, num: float | None,
                  txt: str | None) -> dict[str, Any]:
    """One Datastream's entry of `latest()`: its kept entity part with the reading (time, result, warning level)."""
    d = static.copy()
    if t is not None:
        d["phenomenonTime"] = iso(t)
        d["result"] = decode_result(num, txt)
        if m.thresholds is not None and num is not None:
            d["level"] = m.thresholds.level(num)
    return d


def _alert_row(a: Alert, changed: dict[int, Any]) -> list[Any]:
    st = changed.get(a.datastream_id)
    last = st.last_time if st is not None and st.last_time is not None else a.changed_at
    closed = a.closed_by
    return [a.id, a.datastream_id, a.level, a.max_level, a.direction, a.threshold, a.opened_at,
            a.opened_by.observation_id, a.opened_by.result, a.changed_at,
            a.peak.result if a.peak else a.opened_by.result, a.peak.phenomenon_time if a.peak else a.opened_at,
            a.closed_at, closed.observation_id if closed else None, closed.result if closed else None, last]
