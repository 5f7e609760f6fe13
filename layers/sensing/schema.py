"""The SensorThings API 1.1 data model as tables of the `sensing` schema in the store's DuckDB file.

One table per entity set, one link table per many-to-many relation, plus what the engine keeps beside them:

- `latest`: per datastream, the newest observation (by phenomenon time) and the extent of its phenomenon and result
  times (a Datastream's `phenomenonTime` / `resultTime`), kept by every observation batch, so a "latest reading of
  every sensor" query reads one small table instead of the observations;
- `datastream_features`: which features of interest a datastream's observations have used (its `observedArea`);
- `alerts`: threshold alerts of the four Chinese warning levels (`layers.sensing.alerts`);
- `meta`: the schema version.

Link tables, `latest` and `datastream_features` have no PRIMARY KEY: the one writer keeps them unique, and DuckDB
1.4 refuses to re-insert a key deleted by an earlier transaction while any other cursor may still see it (a
write-write conflict at commit), which link tables do all the time. Entity ids are never reused.

Times are stored as `TIMESTAMP` in UTC (microseconds); geometries as GeoJSON text as the client sent them plus a
`GEOMETRY` in CGCS2000 lon/lat (EPSG:4490, the store's CRS) for spatial filters.

Security: a Thing carries a level (public, internal, confidential). Every other entity keeps a derived `security`
column: a Datastream and a HistoricalLocation have their Thing's; a Location, Sensor, ObservedProperty and
FeatureOfInterest the lowest level of the Things, Datastreams or observations using them (`public` while unused),
so an entity is visible when anything visible uses it. Observations have none: they are visible with their
Datastream. `refresh_security` recomputes the derived levels after every entity write.
"""

from __future__ import annotations

import duckdb

SCHEMA = "sensing"
SCHEMA_VERSION = "1"

DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS {SCHEMA}.things (
    id BIGINT PRIMARY KEY, name VARCHAR NOT NULL, description VARCHAR NOT NULL, properties VARCHAR,
    security VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS {SCHEMA}.locations (
    id BIGINT PRIMARY KEY, name VARCHAR NOT NULL, description VARCHAR NOT NULL, encoding_type VARCHAR NOT NULL,
    location VARCHAR NOT NULL, geom GEOMETRY, properties VARCHAR, security VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS {SCHEMA}.thing_locations (
    thing_id BIGINT NOT NULL, location_id BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS {SCHEMA}.historical_locations (
    id BIGINT PRIMARY KEY, thing_id BIGINT NOT NULL, time TIMESTAMP NOT NULL, security VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS {SCHEMA}.historical_location_locations (
    historical_location_id BIGINT NOT NULL, location_id BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS {SCHEMA}.sensors (
    id BIGINT PRIMARY KEY, name VARCHAR NOT NULL, description VARCHAR NOT NULL, encoding_type VARCHAR NOT NULL,
    metadata VARCHAR NOT NULL, properties VARCHAR, security VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS {SCHEMA}.observed_properties (
    id BIGINT PRIMARY KEY, name VARCHAR NOT NULL, definition VARCHAR NOT NULL, description VARCHAR NOT NULL,
    properties VARCHAR, security VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS {SCHEMA}.datastreams (
    id BIGINT PRIMARY KEY, name VARCHAR NOT NULL, description VARCHAR NOT NULL, observation_type VARCHAR NOT NULL,
    unit_of_measurement VARCHAR NOT NULL, properties VARCHAR, thing_id BIGINT NOT NULL, sensor_id BIGINT NOT NULL,
    observed_property_id BIGINT NOT NULL, security VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS {SCHEMA}.features (
    id BIGINT PRIMARY KEY, name VARCHAR NOT NULL, description VARCHAR NOT NULL, encoding_type VARCHAR NOT NULL,
    feature VARCHAR NOT NULL, geom GEOMETRY, properties VARCHAR, location_id BIGINT, security VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS {SCHEMA}.observations (
    id BIGINT NOT NULL, datastream_id BIGINT NOT NULL, phenomenon_time TIMESTAMP NOT NULL,
    phenomenon_time_end TIMESTAMP, result_time TIMESTAMP, result_number DOUBLE, result_json VARCHAR,
    result_quality VARCHAR, valid_time_start TIMESTAMP, valid_time_end TIMESTAMP, parameters VARCHAR,
    feature_id BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS {SCHEMA}.latest (
    datastream_id BIGINT NOT NULL, observations BIGINT NOT NULL, first_time TIMESTAMP, last_time TIMESTAMP,
    first_result_time TIMESTAMP, last_result_time TIMESTAMP, observation_id BIGINT, phenomenon_time TIMESTAMP,
    result_number DOUBLE, result_json VARCHAR);
CREATE TABLE IF NOT EXISTS {SCHEMA}.datastream_features (
    datastream_id BIGINT NOT NULL, feature_id BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS {SCHEMA}.alerts (
    id BIGINT PRIMARY KEY, datastream_id BIGINT NOT NULL, level VARCHAR NOT NULL, max_level VARCHAR NOT NULL,
    direction VARCHAR NOT NULL, threshold DOUBLE NOT NULL, opened_at TIMESTAMP NOT NULL,
    opened_observation_id BIGINT NOT NULL, opened_result DOUBLE NOT NULL, changed_at TIMESTAMP NOT NULL,
    peak_result DOUBLE NOT NULL, peak_at TIMESTAMP NOT NULL, closed_at TIMESTAMP, closed_observation_id BIGINT,
    closed_result DOUBLE, last_time TIMESTAMP NOT NULL);
"""

# Derived security levels (see the module docstring). A level's rank is its index in SECURITY_LEVELS.
_RANK = "(CASE {c} WHEN 'public' THEN 0 WHEN 'internal' THEN 1 ELSE 2 END)"
_LEVEL = "(CASE {r} WHEN 0 THEN 'public' WHEN 1 THEN 'internal' WHEN 2 THEN 'confidential' ELSE 'public' END)"


def _lowest(sub: str) -> str:
    """SQL: the lowest level among the `security` values a subquery `sub` yields (column `s`); public if none."""
    return _LEVEL.format(r=f"(SELECT min({_RANK.format(c='s')}) FROM ({sub}))")


REFRESH_SECURITY = [
    (f"UPDATE {SCHEMA}.datastreams d SET security = t.security FROM {SCHEMA}.things t "
     f"WHERE t.id = d.thing_id AND d.security <> t.security"),
    (f"UPDATE {SCHEMA}.historical_locations h SET security = t.security FROM {SCHEMA}.things t "
     f"WHERE t.id = h.thing_id AND h.security <> t.security"),
    f"UPDATE {SCHEMA}.locations l SET security = " + _lowest(
        f"SELECT t.security AS s FROM {SCHEMA}.thing_locations tl JOIN {SCHEMA}.things t ON t.id = tl.thing_id "
        f"WHERE tl.location_id = l.id UNION ALL SELECT h.security FROM {SCHEMA}.historical_location_locations hl "
        f"JOIN {SCHEMA}.historical_locations h ON h.id = hl.historical_location_id WHERE hl.location_id = l.id")
    + " WHERE TRUE",
    f"UPDATE {SCHEMA}.sensors x SET security = " + _lowest(
        f"SELECT d.security AS s FROM {SCHEMA}.datastreams d WHERE d.sensor_id = x.id") + " WHERE TRUE",
    f"UPDATE {SCHEMA}.observed_properties x SET security = " + _lowest(
        f"SELECT d.security AS s FROM {SCHEMA}.datastreams d WHERE d.observed_property_id = x.id") + " WHERE TRUE",
    f"UPDATE {SCHEMA}.features f SET security = " + _lowest(
        f"SELECT d.security AS s FROM {SCHEMA}.datastream_features df JOIN {SCHEMA}.datastreams d "
        f"ON d.id = df.datastream_id WHERE df.feature_id = f.id UNION ALL SELECT l.security FROM {SCHEMA}.locations l "
        f"WHERE l.id = f.location_id AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.datastream_features df2 "
        f"WHERE df2.feature_id = f.id)") + " WHERE TRUE",
]


def refresh_feature_security(cur: duckdb.DuckDBPyConnection, feature_ids: list[int]) -> None:
    """Recompute the derived level of some FeaturesOfInterest (after observations used them for the first time)."""
    cur.execute(REFRESH_SECURITY[-1] + " AND f.id IN (SELECT unnest(?::BIGINT[]))", [feature_ids])


def has_schema(con: duckdb.DuckDBPyConnection) -> bool:
    """True when the database holds the sensing tables."""
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = ? AND table_name = 'things'",
                            [SCHEMA]).fetchall()[0][0])


def create_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the sensing schema and its tables when missing (idempotent)."""
    con.execute(DDL)
    if not con.execute(f"SELECT count(*) FROM {SCHEMA}.meta").fetchall()[0][0]:
        con.execute(f"INSERT INTO {SCHEMA}.meta VALUES ('schema_version', ?)", [SCHEMA_VERSION])


_IDS = "(SELECT unnest(${}::BIGINT[]))"
_THING_DS = f"(SELECT id FROM {SCHEMA}.datastreams WHERE thing_id IN {_IDS.format('things')} OR id IN " \
            f"{_IDS.format('datastreams')})"
_THING_LOC = f"(SELECT location_id FROM {SCHEMA}.thing_locations WHERE thing_id IN {_IDS.format('things')})"
# per statement of REFRESH_SECURITY: the rows a write to some entities can change
_SCOPES = [
    f" AND (d.thing_id IN {_IDS.format('things')} OR d.id IN {_IDS.format('datastreams')})",
    f" AND h.thing_id IN {_IDS.format('things')}",
    f" AND (l.id IN {_IDS.format('locations')} OR l.id IN {_THING_LOC})",
    f" AND (x.id IN {_IDS.format('sensors')} OR x.id IN (SELECT sensor_id FROM {SCHEMA}.datastreams "
    f"WHERE id IN {_THING_DS}))",
    f" AND (x.id IN {_IDS.format('observed_properties')} OR x.id IN (SELECT observed_property_id FROM "
    f"{SCHEMA}.datastreams WHERE id IN {_THING_DS}))",
    f" AND (f.id IN {_IDS.format('features')} OR f.location_id IN {_IDS.format('locations')} OR f.location_id IN "
    f"{_THING_LOC} OR f.id IN (SELECT feature_id FROM {SCHEMA}.datastream_features WHERE datastream_id IN "
    f"{_THING_DS}))",
]
SCOPE_KEYS = ("things", "datastreams", "locations", "sensors", "observed_properties", "features")


def refresh_security(cur: duckdb.DuckDBPyConnection, scope: dict[str, set[int]] | None = None) -> None:
    """Recompute derived security levels inside the caller's transaction: all of them, or those a write to the
    entities in `scope` (entity-set table name -> ids: things, datastreams, locations, sensors,
    observed_properties, features) can change."""
    if scope is None:
        for sql in REFRESH_SECURITY:
            cur.execute(sql)
        return
    params = {k: sorted(scope.get(k, ())) for k in SCOPE_KEYS}
    if not any(params.values()):
        return
    for sql, where in zip(REFRESH_SECURITY, _SCOPES, strict=True):
        used = {k: v for k, v in params.items() if f"${k}" in where}
        cur.execute(sql + where, used)


__all__ = ["DDL", "SCHEMA", "SCHEMA_VERSION", "create_schema", "has_schema", "refresh_security"]
