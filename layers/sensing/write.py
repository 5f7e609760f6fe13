"""Creating, changing and deleting SensorThings entities (STA 1.1, section 10), inside one transaction.

- **Create** (POST) with deep insert: a Thing with its Locations and Datastreams (each with a new or referenced
  Sensor and ObservedProperty), a Datastream with its Thing, a Location under `Things(1)/Locations` ... Related
  entities are either new (an object) or referenced (`{"@iot.id": n}`; it must exist and be visible to the caller).
  Giving a Thing Locations records a HistoricalLocation, as the standard asks.
- **Update**: PATCH with a JSON object (merge of the members given), PATCH with a JSON Patch
  (`application/json-patch+json`, RFC 6902, as the FROST client sends) or PUT (every writable member).
- **Delete** cascades as the standard's integrity constraints ask: a Thing takes its Datastreams and
  HistoricalLocations, a Datastream, Sensor or ObservedProperty its Datastreams' Observations, a FeatureOfInterest its
  Observations.

Security: a Thing's level is `properties.security` (`public` by default); a caller may only give a level it can
see. Every other level is derived (`layers.sensing.schema`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from layers.db import first_row
from layers.sensing.alerts import parse_thresholds
from layers.sensing.entities import ENTITY_SETS, GEOJSON_TYPES, OBSERVATION_TYPES, EntitySet, Nav
from layers.sensing.errors import EntityNotFoundError, SensingInputError, WriteForbiddenError
from layers.sensing.observations import ObsRow, entity_id, parse_observation
from layers.sensing.odata import QueryOptions
from layers.sensing.query import Reader, Step
from layers.sensing.schema import SCHEMA
from layers.sensing.values import Access, dumps, parse_geojson, parse_instant
from layers.types import SECURITY_LEVELS

_MISSING = object()
MAX_TEXT = 100_000  # characters of a name, description or metadata string
MAX_DEEP = 10_000  # entities one request may create


class EntityWriter:
    """Writes entities through one cursor inside the caller's transaction.

    Args:
        cur: the transaction's cursor.
        next_id: allocates the next id of a table.
        access: the caller (must have write access).
        now: the time of this request (HistoricalLocations, observations without a phenomenon time).
    """

    def __init__(self, cur: duckdb.DuckDBPyConnection, next_id: Callable[[str], int], access: Access,
                 now: datetime) -> None:
        if not access.write:
            raise WriteForbiddenError("this key may read but not write; writing needs a key with the grant "
                                      "sensing:write (cim keys create --scope internal,sensing:write)")
        self.cur = cur
        self.next_id = next_id
        self.access = access
        self.now = now
        self.reader = Reader(cur, "")
        self.observations: list[ObsRow] = []  # deep-inserted observations, stored by the batch writer
        self.observation_ids: list[int] = []
        self.created = 0
        self.datastreams_changed: set[int] = set()
        # entities created, changed or (re)linked, by table name: their derived security levels are refreshed
        self.touched: dict[str, set[int]] = {}
        self.full_refresh = False  # deletes change levels everywhere around them
        self._seen: set[tuple[str, int]] = set()
        self._thing_security: dict[int, str] = {}
        self._pending: dict[str, list[dict[str, Any]]] = {}  # table -> rows waiting for `flush`
        self._new: set[tuple[str, int]] = set()  # (table, id) created in this transaction
        self._links: set[tuple[str, int, int]] = set()

    def touch(self, es: EntitySet, eid: int) -> None:
        self.touched.setdefault(es.table.rsplit(".", 1)[1], set()).add(eid)

    # ------------------------------------------------------------------ helpers
    def visible(self, es: EntitySet, eid: int, what: str) -> None:
        key = (es.name, eid)
        if key in self._seen:  # a reference checked before in this transaction (a bulk create reuses a Sensor)
            return
        if not self.reader.exists(Step(es, eid), self.access):
            raise EntityNotFoundError(f"{what}: no {es.singular} {eid}")
        self._seen.add(key)

    def _text(self, value: Any, what: str) -> str:
        if not isinstance(value, str):
            raise SensingInputError(f"{what} must be a string, not {type(value).__name__}")
        if len(value) > MAX_TEXT:
            raise SensingInputError(f"{what} is longer than {MAX_TEXT} characters")
        return value

    def _convert(self, es: EntitySet, name: str, value: Any, what: str) -> dict[str, Any]:
        """Column values of one property."""
        prop = es.prop(name)
        assert prop is not None and prop.column is not None
        if prop.kind == "string":
            if name == "metadata" and not isinstance(value, str):
                value = dumps(value)
            text = self._text(value, what)
            if name == "encodingType" and es.name in ("Locations", "FeaturesOfInterest") and text not in GEOJSON_TYPES:
                raise SensingInputError(f"{what} {text[:60]!r} is not {' or '.join(GEOJSON_TYPES)}")
            if name == "observationType" and text not in OBSERVATION_TYPES:
                raise SensingInputError(f"{what} {text[:80]!r} is not one of "
                                        f"{', '.join(t.rsplit('/', 1)[-1] for t in OBSERVATION_TYPES)} "
                                        f"(http://www.opengis.net/def/observationType/OGC-OM/2.0/...)")
            return {prop.column: text}
        if prop.kind == "json":
            if value is None:
                return {prop.column: None}
            if name == "properties" and not isinstance(value, dict):
                raise SensingInputError(f"{what} must be a JSON object")
            if name == "properties" and es.name == "Datastreams":
                parse_thresholds(value, f"{what}.thresholds")
            return {prop.column: dumps(value)}
        if prop.kind == "uom":
            if not isinstance(value, dict) or any(not isinstance(value.get(k, ""), (str, type(None)))
                                                  for k in ("name", "symbol", "definition")):
                raise SensingInputError(f"{what} must be an object with name, symbol and definition strings, e.g. "
                                        f'{{"name": "metre", "symbol": "m", "definition": "http://qudt.org/vocab/unit/M"}}')
            return {prop.column: dumps(value)}
        if prop.kind == "geojson":
            text, wkb = parse_geojson(value, what)
            return {prop.column: text, "geom": wkb}
        if prop.kind == "time":
            return {prop.column: parse_instant(value, what)}
        raise SensingInputError(f"{what} cannot be written")

    def _security(self, properties: Any, what: str) -> str:
        level = properties.get("security", "public") if isinstance(properties, dict) else "public"
        if level not in SECURITY_LEVELS:
            raise SensingInputError(f"{what}.security {str(level)[:40]!r} is not one of {', '.join(SECURITY_LEVELS)}")
        if not self.access.sees(level):
            raise WriteForbiddenError(f"{what}.security {level!r} is above this key's clearance "
                                      f"({self.access.clearance()}); use a key that may see {level} Things")
        return level

    def _insert(self, es: EntitySet, eid: int, columns: dict[str, Any]) -> None:
        """Queue a new row (written by `flush`, one INSERT per table: a single-row INSERT costs DuckDB about as
        much as a thousand-row one)."""
        self._pending.setdefault(es.table, []).append({"id": eid, **columns})
        self._seen.add((es.name, eid))
        self._new.add((es.table, eid))

    def flush(self) -> None:
        """Write the queued rows (before anything reads them: updates, deletes, the end of the transaction)."""
        pending, self._pending = self._pending, {}
        for n, (table, rows) in enumerate(pending.items()):
            names = list(dict.fromkeys(k for r in rows for k in r))
            data = pa.table({k: [r.get(k) for r in rows] for k in names})
            view = f"sensing_pending_{n}"
            self.cur.register(view, data)
            try:
                cols = ", ".join("ST_GeomFromWKB(geom)" if k == "geom" else k for k in names)
                self.cur.execute(f"INSERT INTO {table} ({', '.join(names)}) SELECT {cols} FROM {view}")
            finally:
                self.cur.unregister(view)

    def _count(self) -> None:
        self.created += 1
        if self.created > MAX_DEEP:
            raise SensingInputError(f"one request may create at most {MAX_DEEP} entities")

    # ------------------------------------------------------------------ create
    def reference_or_create(self, nav: Nav, value: Any, what: str, parent: tuple[Nav, EntitySet, int] | None = None
                            ) -> int:
        """The id of a related entity given as a reference (checked) or created now."""
        target = ENTITY_SETS[nav.target]
        if isinstance(value, dict) and ("@iot.id" in value or (set(value) == {"id"})):
            eid = entity_id(value, what)
            self.visible(target, eid, what)
            self.touch(target, eid)
            return eid
        return self.create(target, value, what, parent=parent)

    def create(self, es: EntitySet, doc: Any, what: str | None = None,
               parent: tuple[Nav, EntitySet, int] | None = None) -> int:
        """Create one entity (and what it holds inline); returns its id.

        Args:
            es: its entity set.
            doc: the JSON body.
            what: how to name it in errors.
            parent: (navigation from the parent, parent set, parent id) when posted to a navigation collection.
        """
        what = what or es.singular
        if es.name == "Observations":
            return self.create_observation(doc, what, parent)
        if not isinstance(doc, dict):
            raise SensingInputError(f"{what} must be a JSON object")
        self._count()
        if "@iot.id" in doc or "id" in doc:
            raise SensingInputError(f"{what}: ids are given by the server; remove @iot.id (or reference an existing "
                                    f"entity where a related one is expected)")
        allowed = {p.name for p in es.props if p.writable} | {n.name for n in es.navs}
        readonly = [k for k in doc if es.prop(k) is not None and not es.prop(k).writable]  # type: ignore[union-attr]
        if readonly:
            raise SensingInputError(f"{what}: {', '.join(readonly)} are computed by the server and cannot be written")
        unknown = [k for k in doc if k not in allowed and not k.endswith("@iot.navigationLink")]
        if unknown:
            raise SensingInputError(f"{what} has unknown member(s) {', '.join(map(repr, unknown[:5]))}; a "
                                    f"{es.singular} has {', '.join(sorted(allowed))}")
        columns: dict[str, Any] = {}
        for p in es.props:
            if not p.writable or p.column is None:
                continue
            value = doc.get(p.name, _MISSING)
            if value is _MISSING or (value is None and p.kind != "json"):
                if p.required:
                    if p.name == "time" and es.name == "HistoricalLocations":
                        value = None
                    else:
                        raise SensingInputError(f"{what} has no {p.name}; a {es.singular} needs "
                                                f"{', '.join(q.name for q in es.props if q.required)}")
                if value is None or value is _MISSING:
                    if p.kind == "time":
                        columns[p.column] = self.now
                    elif p.default is not None:
                        columns[p.column] = p.default
                    elif p.kind != "json":
                        columns[p.column] = None
                    continue
            columns.update(self._convert(es, p.name, value, f"{what}.{p.name}"))
        for nav in es.navs:
            if nav.many:
                continue
            if nav.name in doc:
                columns[nav.fk] = self.reference_or_create(nav, doc[nav.name], f"{what}.{nav.name}")  # type: ignore
            elif parent is not None and _reverse(parent[0]) == nav.name:
                columns[nav.fk] = parent[2]  # type: ignore[index]
            elif nav.required:
                raise SensingInputError(f"{what} has no {nav.name}; link one: \"{nav.name}\": {{\"@iot.id\": n}} "
                                        f"or an inline new {nav.name}")
        if es.name == "Things":
            columns["security"] = self._security(doc.get("properties"), f"{what}.properties")
        elif es.name in ("Datastreams", "HistoricalLocations"):
            tid = columns["thing_id"]
            if tid not in self._thing_security:
                row = first_row(self.cur.execute(f"SELECT security FROM {SCHEMA}.things WHERE id = ?", [tid]))
                self._thing_security[tid] = row[0] if row else "public"
            columns["security"] = self._thing_security[tid]
        else:
            columns["security"] = "public"
        if es.name == "Datastreams" and columns.get("properties"):
            parse_thresholds(json.loads(columns["properties"]), f"{what}.properties.thresholds")
        eid = self.next_id(es.table)
        self._insert(es, eid, columns)
        self.touch(es, eid)
        if es.name == "Things":
            self._thing_security[eid] = columns["security"]
        if es.name == "Datastreams":
            self.datastreams_changed.add(eid)
        if parent is not None and parent[0].link is not None:
            self._link(parent[0], parent[2], eid)
            if parent[1].name == "Things" and parent[0].name == "Locations":
                self._historical(parent[2], [eid])
        for nav in es.navs:
            if not nav.many or nav.name not in doc:
                continue
            items = doc[nav.name]
            if not isinstance(items, list):
                raise SensingInputError(f"{what}.{nav.name} must be a list")
            linked: list[int] = []
            for i, item in enumerate(items):
                here = (nav, es, eid)
                if isinstance(item, dict) and ("@iot.id" in item or set(item) == {"id"}):
                    ref = entity_id(item, f"{what}.{nav.name}[{i}]")
                    self.visible(ENTITY_SETS[nav.target], ref, f"{what}.{nav.name}[{i}]")
                    self.touch(ENTITY_SETS[nav.target], ref)
                    self._attach(here, ref)
                    linked.append(ref)
                elif nav.link is not None:
                    linked.append(self.create(ENTITY_SETS[nav.target], item, f"{what}.{nav.name}[{i}]"))
                    self._link(nav, eid, linked[-1])
                else:
                    linked.append(self.create(ENTITY_SETS[nav.target], item, f"{what}.{nav.name}[{i}]",
                                              parent=here))
            if es.name == "Things" and nav.name == "Locations" and linked:
                self._historical(eid, linked)
        return eid

    def create_observation(self, doc: Any, what: str, parent: tuple[Nav, EntitySet, int] | None) -> int:
        """Queue an observation (stored by the batch writer after this transaction); an inline new
        FeatureOfInterest is created now."""
        ds = parent[2] if parent is not None and parent[1].name == "Datastreams" else None
        foi = parent[2] if parent is not None and parent[1].name == "FeaturesOfInterest" else None
        if isinstance(doc, dict) and isinstance(doc.get("FeatureOfInterest"), dict) \
                and "@iot.id" not in doc["FeatureOfInterest"] and "id" not in doc["FeatureOfInterest"]:
            nav = ENTITY_SETS["Observations"].nav("FeatureOfInterest")
            assert nav is not None
            doc = {**doc, "FeatureOfInterest": {"@iot.id": self.create(ENTITY_SETS["FeaturesOfInterest"],
                                                                      doc["FeatureOfInterest"],
                                                                      f"{what}.FeatureOfInterest")}}
        if isinstance(doc, dict) and isinstance(doc.get("Datastream"), dict) and "@iot.id" not in doc["Datastream"] \
                and "id" not in doc["Datastream"]:
            doc = {**doc, "Datastream": {"@iot.id": self.create(ENTITY_SETS["Datastreams"], doc["Datastream"],
                                                               f"{what}.Datastream")}}
        if isinstance(doc, dict) and foi is not None:
            doc = {**doc, "FeatureOfInterest": {"@iot.id": foi}}
        row = parse_observation(doc, what, datastream_id=ds, now=self.now)
        self.visible(ENTITY_SETS["Datastreams"], row.datastream_id, f"{what}.Datastream")
        if row.feature_id is not None:
            self.visible(ENTITY_SETS["FeaturesOfInterest"], row.feature_id, f"{what}.FeatureOfInterest")
        self._count()
        oid = self.next_id(f"{SCHEMA}.observations")
        self.observations.append(row)
        self.observation_ids.append(oid)
        return oid

    def _link(self, nav: Nav, this_id: int, target_id: int) -> None:
        link, this_col, target_col = nav.link  # type: ignore[misc]
        this_table = nav.link and ENTITY_SETS[_owner(nav)].table
        target_table = ENTITY_SETS[nav.target].table
        if (this_table, this_id) in self._new or (target_table, target_id) in self._new:
            # a new entity has no links yet: queue it (once)
            key = (link, this_id, target_id)
            if key not in self._links:
                self._links.add(key)
                self._pending.setdefault(link, []).append({this_col: this_id, target_col: target_id})
            return
        self.cur.execute(f"INSERT INTO {link} ({this_col}, {target_col}) SELECT $1, $2 WHERE NOT EXISTS "
                         f"(SELECT 1 FROM {link} WHERE {this_col} = $1 AND {target_col} = $2)", [this_id, target_id])

    def _attach(self, here: tuple[Nav, EntitySet, int], target_id: int) -> None:
        nav, _, eid = here
        if nav.link is not None:
            self._link(nav, eid, target_id)
        else:  # to-many through a key on the target: move the target here (e.g. a Datastream to this Thing)
            target = ENTITY_SETS[nav.target]
            self.flush()
            self.cur.execute(f"UPDATE {target.table} SET {nav.target_fk} = ? WHERE id = ?", [eid, target_id])
            if target.name == "Datastreams":
                self.datastreams_changed.add(target_id)

    def _historical(self, thing_id: int, location_ids: list[int]) -> None:
        hid = self.next_id(f"{SCHEMA}.historical_locations")
        if thing_id not in self._thing_security:
            self.flush()
            row = first_row(self.cur.execute(f"SELECT security FROM {SCHEMA}.things WHERE id = ?", [thing_id]))
            self._thing_security[thing_id] = row[0] if row else "public"
        self._insert(ENTITY_SETS["HistoricalLocations"], hid,
                     {"thing_id": thing_id, "time": self.now, "security": self._thing_security[thing_id]})
        for lid in sorted(set(location_ids)):
            self._pending.setdefault(f"{SCHEMA}.historical_location_locations", []).append(
                {"historical_location_id": hid, "location_id": lid})

    # ------------------------------------------------------------------ update
    def current(self, es: EntitySet, eid: int) -> dict[str, Any]:
        names = [p.name for p in es.props if p.writable and p.column is not None]
        rows = self.reader.fetch(es, QueryOptions(select=names), self.access, ids=[eid])
        if not rows:
            raise EntityNotFoundError(f"no {es.singular} {eid}")
        return rows[0]

    def update(self, es: EntitySet, eid: int, doc: Any, mode: str, what: str | None = None) -> None:
        """Change an entity: `mode` is `merge` (PATCH JSON), `json-patch` (PATCH RFC 6902) or `put`."""
        what = what or f"{es.singular} {eid}"
        self.flush()
        self.visible(es, eid, what)
        self.touch(es, eid)
        if es.name == "Observations":
            return self.update_observation(eid, doc, mode, what)
        current = self.current(es, eid)
        if mode == "json-patch":
            base = {k: v for k, v in current.items() if "@iot." not in k}
            patched = _apply_patch(current, doc, what)
            doc = {k: v for k, v in patched.items() if base.get(k, _MISSING) != v}
            doc.update({k: None for k in base if k not in patched})
        if not isinstance(doc, dict):
            raise SensingInputError(f"{what}: the body must be a JSON object of the members to change")
        if "@iot.id" in doc or "id" in doc:
            if entity_id(doc.get("@iot.id", doc.get("id")), f"{what}.@iot.id") != eid:
                raise SensingInputError(f"{what}: @iot.id cannot be changed")
            doc = {k: v for k, v in doc.items() if k not in ("@iot.id", "id")}
        if mode == "put":
            missing = [p.name for p in es.props if p.required and p.writable and p.name not in doc]
            if missing:
                raise SensingInputError(f"{what}: PUT replaces the entity and needs {', '.join(missing)}")
            for p in es.props:
                if p.writable and p.column is not None and p.name not in doc:
                    doc[p.name] = p.default
        sets: dict[str, Any] = {}
        for k, v in doc.items():
            prop, nav = es.prop(k), es.nav(k)
            if prop is not None:
                if not prop.writable or prop.column is None:
                    raise SensingInputError(f"{what}: {k} is computed by the server and cannot be written")
                if v is None:
                    if prop.required:
                        raise SensingInputError(f"{what}: {k} cannot be removed")
                    sets[prop.column] = prop.default if prop.kind != "json" else None
                    continue
                sets.update(self._convert(es, k, v, f"{what}.{k}"))
            elif nav is not None and not nav.many:
                sets[nav.fk] = self.reference_or_create(nav, v, f"{what}.{k}")  # type: ignore[index]
            elif nav is not None and es.name == "Things" and k == "Locations":
                if not isinstance(v, list):
                    raise SensingInputError(f"{what}.Locations must be a list of references")
                ids = [self.reference_or_create(nav, item, f"{what}.Locations[{i}]") for i, item in enumerate(v)]
                have = {r[0] for r in self.cur.execute(f"SELECT location_id FROM {SCHEMA}.thing_locations "
                                                       f"WHERE thing_id = ?", [eid]).fetchall()}
                # only the links that change: deleting and re-inserting a primary key conflicts in DuckDB 1.4
                gone = sorted(have - set(ids))
                self.touched.setdefault("locations", set()).update(gone)
                if gone:
                    self.cur.execute(f"DELETE FROM {SCHEMA}.thing_locations WHERE thing_id = ? AND location_id IN "
                                     f"(SELECT unnest(?::BIGINT[]))", [eid, gone])
                for lid in ids:
                    if lid not in have:
                        self._link(nav, eid, lid)
                if ids and set(ids) != have:  # a HistoricalLocation records a move, not a repeated PATCH
                    self._historical(eid, ids)
            elif nav is not None:
                raise SensingInputError(f"{what}: {k} is changed from the other side (PATCH the related entities)")
            else:
                raise SensingInputError(f"{what} has no member {k!r}")
        if es.name == "Things" and "properties" in sets:
            sets["security"] = self._security(json.loads(sets["properties"]) if sets["properties"] else None,
                                              f"{what}.properties")
            self._thing_security.pop(eid, None)
        if es.name == "Datastreams":
            self.datastreams_changed.add(eid)
        if sets:
            assign = ", ".join(f"{c} = ST_GeomFromWKB(?)" if c == "geom" else f"{c} = ?" for c in sets)
            self.cur.execute(f"UPDATE {es.table} SET {assign} WHERE id = ?", [*sets.values(), eid])
        return None

    def update_observation(self, eid: int, doc: Any, mode: str, what: str) -> None:
        es = ENTITY_SETS["Observations"]
        current = self.current(es, eid)
        if mode == "json-patch":
            doc = _apply_patch(current, doc, what)
        elif mode == "merge":
            if not isinstance(doc, dict):
                raise SensingInputError(f"{what}: the body must be a JSON object of the members to change")
            doc = {**current, **doc}
        ds = first_row(self.cur.execute(f"SELECT datastream_id, feature_id FROM {SCHEMA}.observations WHERE id = ?",
                                        [eid]))
        merged = {k: v for k, v in doc.items() if k not in ("@iot.id", "id")}
        merged.setdefault("FeatureOfInterest", {"@iot.id": ds[1]})
        row = parse_observation(merged, what, datastream_id=ds[0], now=self.now)
        self.cur.execute(
            f"UPDATE {SCHEMA}.observations SET phenomenon_time = ?, phenomenon_time_end = ?, result_time = ?, "
            f"result_number = ?, result_json = ?, result_quality = ?, valid_time_start = ?, valid_time_end = ?, "
            f"parameters = ?, feature_id = ? WHERE id = ?", [*row[1:], eid])
        self.datastreams_changed.add(ds[0])
        refresh_latest(self.cur, [ds[0]])

    # ------------------------------------------------------------------ delete
    def delete(self, es: EntitySet, eid: int) -> list[int]:
        """Delete an entity and what depends on it; returns the ids of the Datastreams deleted."""
        self.flush()
        self.visible(es, eid, f"{es.singular} {eid}")
        self.full_refresh = True
        s = SCHEMA
        cur = self.cur
        if es.name == "Observations":
            ds = cur.execute(f"SELECT datastream_id FROM {s}.observations WHERE id = ?", [eid]).fetchall()[0][0]
            cur.execute(f"DELETE FROM {s}.observations WHERE id = ?", [eid])
            refresh_latest(cur, [ds])
            return []
        if es.name == "FeaturesOfInterest":
            dss = [r[0] for r in cur.execute(f"SELECT datastream_id FROM {s}.datastream_features WHERE feature_id = ?",
                                             [eid]).fetchall()]
            cur.execute(f"DELETE FROM {s}.observations WHERE feature_id = ?", [eid])
            cur.execute(f"DELETE FROM {s}.datastream_features WHERE feature_id = ?", [eid])
            cur.execute(f"DELETE FROM {s}.features WHERE id = ?", [eid])
            refresh_latest(cur, dss)
            return []
        if es.name == "HistoricalLocations":
            cur.execute(f"DELETE FROM {s}.historical_location_locations WHERE historical_location_id = ?", [eid])
            cur.execute(f"DELETE FROM {s}.historical_locations WHERE id = ?", [eid])
            return []
        if es.name == "Locations":
            cur.execute(f"DELETE FROM {s}.thing_locations WHERE location_id = ?", [eid])
            cur.execute(f"DELETE FROM {s}.historical_location_locations WHERE location_id = ?", [eid])
            cur.execute(f"UPDATE {s}.features SET location_id = NULL WHERE location_id = ?", [eid])
            cur.execute(f"DELETE FROM {s}.locations WHERE id = ?", [eid])
            return []
        column = {"Things": "thing_id", "Sensors": "sensor_id", "ObservedProperties": "observed_property_id",
                  "Datastreams": "id"}[es.name]
        dss = [r[0] for r in cur.execute(f"SELECT id FROM {s}.datastreams WHERE {column} = ?", [eid]).fetchall()]
        if dss:
            cur.execute(f"DELETE FROM {s}.observations WHERE datastream_id IN (SELECT unnest(?::BIGINT[]))", [dss])
            for table in ("latest", "datastream_features", "alerts"):
                cur.execute(f"DELETE FROM {s}.{table} WHERE datastream_id IN (SELECT unnest(?::BIGINT[]))", [dss])
            cur.execute(f"DELETE FROM {s}.datastreams WHERE id IN (SELECT unnest(?::BIGINT[]))", [dss])
        if es.name == "Things":
            cur.execute(f"DELETE FROM {s}.historical_location_locations WHERE historical_location_id IN "
                        f"(SELECT id FROM {s}.historical_locations WHERE thing_id = ?)", [eid])
            cur.execute(f"DELETE FROM {s}.historical_locations WHERE thing_id = ?", [eid])
            cur.execute(f"DELETE FROM {s}.thing_locations WHERE thing_id = ?", [eid])
        if es.name != "Datastreams":
            cur.execute(f"DELETE FROM {es.table} WHERE id = ?", [eid])
        return dss


LATEST_SELECT = """
SELECT datastream_id, count(*) AS observations, min(phenomenon_time) AS first_time,
       max(coalesce(phenomenon_time_end, phenomenon_time)) AS last_time, min(result_time) AS first_result_time,
       max(result_time) AS last_result_time, arg_max(id, (phenomenon_time, id)) AS observation_id,
       max(phenomenon_time) AS phenomenon_time, arg_max_null(result_number, (phenomenon_time, id)) AS result_number,
       arg_max_null(result_json, (phenomenon_time, id)) AS result_json
FROM {source} GROUP BY datastream_id"""


def refresh_latest(cur: duckdb.DuckDBPyConnection, datastream_ids: list[int]) -> None:
    """Recompute `latest` of some Datastreams from their observations (after a change or a delete)."""
    if not datastream_ids:
        return
    cur.execute(f"DELETE FROM {SCHEMA}.latest WHERE datastream_id IN (SELECT unnest(?::BIGINT[]))", [datastream_ids])
    src = (f"(SELECT * FROM {SCHEMA}.observations WHERE datastream_id IN (SELECT unnest($1::BIGINT[])))")
    cur.execute(f"INSERT INTO {SCHEMA}.latest {LATEST_SELECT.format(source=src)}", [datastream_ids])


def _owner(nav: Nav) -> str:
    """The entity set that has the many-to-many navigation `nav`."""
    return next(es.name for es in ENTITY_SETS.values() if nav in es.navs)


def _reverse(nav: Nav) -> str | None:
    """The to-one navigation back to the parent of a to-many navigation (`Thing.Datastreams` -> `Thing`)."""
    if nav.target_fk is None:
        return None
    target = ENTITY_SETS[nav.target]
    back = next((n for n in target.navs if n.fk == nav.target_fk), None)
    return back.name if back else None


def _apply_patch(current: dict[str, Any], patch: Any, what: str) -> dict[str, Any]:
    import jsonpatch

    doc = {k: v for k, v in current.items() if not k.startswith("@iot.") and "@iot." not in k}
    try:
        return jsonpatch.apply_patch(doc, patch)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, ValueError) as exc:
        raise SensingInputError(f"{what}: the JSON Patch cannot be applied: {exc}") from None


__all__ = ["LATEST_SELECT", "EntityWriter", "refresh_latest"]
