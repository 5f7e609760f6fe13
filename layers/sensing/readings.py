"""Readings of a `SensingStore` as frames and dicts for notebooks, analyses and the viewer: Datastreams with their
locations, observations in a time window, the latest reading of every Datastream (kept between calls) and its
GeoJSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

from layers.sensing.errors import EntityNotFoundError
from layers.sensing.odata import parse_time
from layers.sensing.schema import SCHEMA
from layers.sensing.values import LOCAL, Access, decode_result, iso

if TYPE_CHECKING:
    import threading

    import geopandas as gpd
    import pandas as pd

    from layers.sensing.store import DatastreamMeta


class ReadingQueries:
    """The reading part of `SensingStore` (a mixin: the store holds the caches it works with, `meta()` and
    `cursor()`)."""

    # what `SensingStore` gives these methods (declared here for readers and type checkers; the store sets them)
    empty: bool
    _meta: dict[int, DatastreamMeta] | None
    _latest: tuple[dict[int, DatastreamMeta], dict[int, dict[str, Any]]] | None
    _latest_dirty: set[int]
    _latest_lock: threading.Lock
    _dirty_lock: threading.Lock
    _geojson: tuple[dict[int, dict[str, Any]] | None, dict[tuple[Any, ...], bytes]]

    if TYPE_CHECKING:
        def cursor(self) -> duckdb.DuckDBPyConnection: ...
        def meta(self) -> dict[int, DatastreamMeta]: ...

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


__all__ = ["LatestReading", "ReadingQueries"]
