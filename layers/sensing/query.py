"""Reading the SensorThings API: resource paths and query options turned into parameterised SQL and JSON.

    >>> reader = Reader(cursor, base="http://127.0.0.1:8000/sta/v1.1")            # doctest: +SKIP
    >>> reader.read("Things(1)/Datastreams", {"$top": "2", "$expand": "Observations($top=1)"}, access)

Request text never becomes SQL: entity set, property and function names are looked up in fixed tables
(`layers.sensing.entities`, `layers.sensing.odata.FUNCTIONS`) and every value is a numbered parameter (`$n`).

Visibility is applied everywhere rows are read: the collection or entity asked for, every entity on the way of a
navigation path (`Things(7)/Datastreams` is 404 when Thing 7 is hidden), every `$expand`, and every hop of a
`$filter` path (`Locations?$filter=Things/name eq 'x'` does not reveal hidden Things).

`$filter` semantics beyond plain comparisons:
- a path through a to-many navigation (`Things?$filter=Datastreams/name eq 'x'`) is true when *any* related entity
  matches (an `EXISTS` per hop);
- an interval (`phenomenonTime` of an observation with an end, a Datastream's `phenomenonTime`) compared with an
  instant: `gt`/`ge` compare its start, `lt`/`le` its end, `eq` needs both to equal the instant;
- `result` compares as a number against numbers and as text against strings;
- `properties/a/b` reads JSON members, compared as text, number or boolean after the literal it meets.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import duckdb

from layers.db import first_row
from layers.sensing.entities import ENTITY_SETS, EntitySet, Nav, Prop
from layers.sensing.errors import EntityNotFoundError, QueryError
from layers.sensing.odata import (
    COMPARISONS,
    BinOp,
    BoolOp,
    Call,
    ExpandItem,
    Literal,
    Neg,
    Not,
    Path,
    QueryOptions,
    parse_options,
)
from layers.sensing.schema import SCHEMA
from layers.sensing.values import Access, decode_result, interval, iso

STA_VERSION = "v1.1"
CONFORMANCE = [
    "http://www.opengis.net/spec/iot_sensing/1.1/req/datamodel",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/resource-path/resource-path-to-entities",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/create-update-delete",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/data-array/data-array",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/create-observations-via-mqtt/observations-creation",
]
_SEGMENT = re.compile(r"^([A-Za-z]{1,40})(?:\((?:(\d{1,18})|'(\d{1,18})')\))?$")
_JSON_KEY = re.compile(r"^[A-Za-z0-9_@$.\-\u0080-\uffff]{1,64}$")
_DUCKDB_INPUT_ERRORS = (duckdb.ConversionException, duckdb.BinderException, duckdb.InvalidInputException,
                        duckdb.OutOfRangeException, duckdb.TypeMismatchException)


class Params:
    """Numbered SQL parameters: `add(value)` returns its placeholder (`$3`)."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


@dataclass
class Val:
    """A compiled value: SQL, its type, the to-many/to-one hops it needs (EXISTS), and for intervals the end and
    for results the JSON text column."""

    sql: str
    type: str  # number string bool time date geometry json result interval null
    hops: list[tuple[str, str]]
    end: str | None = None
    alt: str | None = None


@dataclass
class Step:
    """One resolved segment of a resource path."""

    es: EntitySet
    id: int | None = None
    parent: tuple[Nav, EntitySet, int] | None = None  # how a collection hangs off the previous entity


class Compiler:
    """$filter and $orderby of one entity set to SQL over alias `e` (numbered parameters in `params`)."""

    def __init__(self, es: EntitySet, alias: str, params: Params, access: Access) -> None:
        self.es = es
        self.alias = alias
        self.params = params
        self.access = access
        self._aliases = itertools.count(1)
        self._levels: str | None = None

    # ------------------------------------------------------------------ helpers
    def levels(self) -> str:
        if self._levels is None:
            self._levels = self.params.add(list(self.access.levels))
        return self._levels

    def visible(self, es: EntitySet, alias: str) -> str:
        """SQL: the caller may see this row of `es` (TRUE when the caller sees everything)."""
        if self.access.full:
            return "TRUE"
        return es.visibility(alias).replace("?", self.levels(), 1)

    def new_alias(self) -> str:
        return f"{self.alias}_{next(self._aliases)}"

    # ------------------------------------------------------------------ paths
    def column(self, es: EntitySet, alias: str, prop: Prop, rest: Sequence[str]) -> Val:
        if prop.kind == "id":
            return Val(f"{alias}.id", "number", [])
        if prop.kind in ("json", "uom"):
            if not rest:
                return Val(f"{alias}.{prop.column}", "json", [], alt="")
            if len(rest) > 8 or not all(_JSON_KEY.match(k) for k in rest):
                raise QueryError(f"$filter: {'/'.join(rest)[:60]!r} is not a JSON member path (letters, digits, "
                                 f"_ - . @ $, at most 8 levels)")
            path = self.params.add("$" + "".join(f'."{k}"' for k in rest))
            return Val(f"json_extract({alias}.{prop.column}, {path})", "json", [],
                       alt=f"json_extract_string({alias}.{prop.column}, {path})")
        if rest:
            raise QueryError(f"$filter: {es.singular} property {prop.name!r} has no member {rest[0]!r}")
        if prop.kind == "string":
            return Val(f"{alias}.{prop.column}", "string", [])
        if prop.kind == "time":
            return Val(f"{alias}.{prop.column}", "time", [])
        if prop.kind == "result":
            return Val(f"{alias}.result_number", "result", [], alt=f"{alias}.result_json")
        if prop.kind == "interval":
            if es.name == "Datastreams":
                sub = f"(SELECT {{c}} FROM {SCHEMA}.latest WHERE datastream_id = {alias}.id)"
                return Val(sub.format(c=prop.column), "interval", [], end=sub.format(c=prop.end))
            return Val(f"{alias}.{prop.column}", "interval", [], end=f"{alias}.{prop.end}")
        if prop.kind == "geojson":
            if prop.column is None:  # Datastream.observedArea
                return Val(f"(SELECT ST_Envelope_Agg(f.geom) FROM {SCHEMA}.datastream_features df JOIN "
                           f"{SCHEMA}.features f ON f.id = df.feature_id WHERE df.datastream_id = {alias}.id)",
                           "geometry", [])
            return Val(f"{alias}.geom", "geometry", [])
        raise QueryError(f"$filter cannot use {prop.name!r}")

    def path(self, segments: Sequence[str]) -> Val:
        es, alias = self.es, self.alias
        hops: list[tuple[str, str]] = []
        for i, seg in enumerate(segments):
            nav = es.nav(seg)
            if nav is not None:
                target = ENTITY_SETS[nav.target]
                a = self.new_alias()
                if nav.fk is not None:
                    from_, where = f"{target.table} AS {a}", f"{a}.id = {alias}.{nav.fk}"
                elif nav.target_fk is not None:
                    from_, where = f"{target.table} AS {a}", f"{a}.{nav.target_fk} = {alias}.id"
                else:
                    link, this_col, target_col = nav.link  # type: ignore[misc]
                    from_ = f"{link} AS {a}_l JOIN {target.table} AS {a} ON {a}.id = {a}_l.{target_col}"
                    where = f"{a}_l.{this_col} = {alias}.id"
                hops.append((from_, f"{where} AND {self.visible(target, a)}"))
                es, alias = target, a
                continue
            name = "id" if seg in ("@iot.id", "id") else seg
            prop = es.prop(name)
            if prop is None:
                raise QueryError(f"$filter/$orderby: {es.singular} has no property or navigation {seg!r}; "
                                 f"properties: {', '.join(p.name for p in es.props)}; "
                                 f"navigation: {', '.join(n.name for n in es.navs)}")
            val = self.column(es, alias, prop, segments[i + 1:])
            val.hops = hops + val.hops
            return val
        raise QueryError(f"$filter/$orderby: {'/'.join(segments)!r} ends on an entity; name a property "
                         f"(e.g. {'/'.join(segments)}/id)")

    # ------------------------------------------------------------------ values
    def literal(self, node: Literal) -> Val:
        if node.type == "null":
            return Val("NULL", "null", [])
        if node.type == "geometry":
            return Val(f"ST_GeomFromWKB({self.params.add(node.value)})", "geometry", [])
        if node.type == "bool":
            return Val("TRUE" if node.value else "FALSE", "bool", [])
        if node.type == "time":
            return Val(f"{self.params.add(node.value)}::TIMESTAMP", "time", [])
        if node.type == "date":
            return Val(f"{self.params.add(node.value)}::DATE", "date", [])
        if node.type == "number":
            return Val(f"{self.params.add(node.value)}::DOUBLE", "number", [])
        return Val(f"{self.params.add(node.value)}::VARCHAR", "string", [])

    def value(self, node: Any) -> Val:
        if isinstance(node, Literal):
            return self.literal(node)
        if isinstance(node, Path):
            return self.path(node.segments)
        if isinstance(node, Neg):
            v = self.number(self.value(node.item), "-")
            return Val(f"(-{v.sql})", "number", v.hops)
        if isinstance(node, BinOp) and node.op not in COMPARISONS:
            a, b = self.number(self.value(node.left), node.op), self.number(self.value(node.right), node.op)
            op = {"add": "+", "sub": "-", "mul": "*", "div": "/", "mod": "%"}[node.op]
            sql = f"({a.sql} {op} NULLIF({b.sql}, 0))" if op in "/%" else f"({a.sql} {op} {b.sql})"
            return Val(sql, "number", a.hops + b.hops)
        if isinstance(node, Call):
            return self.call(node)
        if isinstance(node, (BinOp, BoolOp, Not)):
            return Val(self.condition(node, wrap=False), "bool", [])
        raise QueryError("$filter: unsupported expression")

    def number(self, v: Val, op: str) -> Val:
        if v.type in ("number", "null"):
            return v
        if v.type == "result":
            return Val(v.sql, "number", v.hops)
        if v.type == "json":
            return Val(f"TRY_CAST({v.alt} AS DOUBLE)", "number", v.hops)
        raise QueryError(f"$filter: {op!r} needs numbers, not a {v.type} value")

    def text(self, v: Val, fn: str) -> Val:
        if v.type in ("string", "null"):
            return v
        if v.type == "json":
            return Val(v.alt or v.sql, "string", v.hops)
        if v.type == "result":
            return Val(f"json_extract_string({v.alt}, '$')", "string", v.hops)
        raise QueryError(f"$filter: {fn}() needs text, not a {v.type} value")

    def instant(self, v: Val, fn: str) -> str:
        if v.type in ("time", "interval"):
            return v.sql
        if v.type == "date":
            return f"CAST({v.sql} AS TIMESTAMP)"
        raise QueryError(f"$filter: {fn}() needs a time, not a {v.type} value")

    def geometry(self, v: Val, fn: str) -> Val:
        if v.type != "geometry":
            raise QueryError(f"$filter: {fn}() needs geometries (a location or geography'...'), not a {v.type} "
                             f"value")
        return v

    def call(self, node: Call) -> Val:
        name, args = node.name, [self.value(a) for a in node.args]
        hops = [h for a in args for h in a.hops]
        if name in ("substringof", "contains", "startswith", "endswith", "indexof", "concat"):
            a, b = (self.text(x, name) for x in args)
            sql = {"substringof": f"contains({b.sql}, {a.sql})", "contains": f"contains({a.sql}, {b.sql})",
                   "startswith": f"starts_with({a.sql}, {b.sql})", "endswith": f"suffix({a.sql}, {b.sql})",
                   "indexof": f"(strpos({a.sql}, {b.sql}) - 1)", "concat": f"concat({a.sql}, {b.sql})"}[name]
            return Val(sql, "string" if name == "concat" else "number" if name == "indexof" else "bool", hops)
        if name in ("length", "tolower", "toupper", "trim"):
            a = self.text(args[0], name)
            sql = {"length": f"length({a.sql})", "tolower": f"lower({a.sql})", "toupper": f"upper({a.sql})",
                   "trim": f"trim({a.sql})"}[name]
            return Val(sql, "number" if name == "length" else "string", hops)
        if name == "substring":
            s = self.text(args[0], name)
            start = self.number(args[1], name)
            if len(args) == 3:
                n = self.number(args[2], name)
                return Val(f"substr({s.sql}, CAST({start.sql} AS BIGINT) + 1, CAST({n.sql} AS BIGINT))", "string",
                           hops)
            return Val(f"substr({s.sql}, CAST({start.sql} AS BIGINT) + 1)", "string", hops)
        if name in ("year", "month", "day", "hour", "minute", "second"):
            return Val(f"{name}({self.instant(args[0], name)})", "number", hops)
        if name == "fractionalseconds":
            return Val(f"(microsecond({self.instant(args[0], name)}) % 1000000) / 1e6", "number", hops)
        if name == "date":
            return Val(f"CAST({self.instant(args[0], name)} AS DATE)", "date", hops)
        if name == "time":
            return Val(f"CAST({self.instant(args[0], name)} AS TIME)", "string", hops)
        if name == "totaloffsetminutes":
            self.instant(args[0], name)
            return Val("0", "number", hops)  # times are stored in UTC
        if name == "now":
            from layers.sensing.values import now_utc

            return Val(f"{self.params.add(now_utc())}::TIMESTAMP", "time", [])
        if name == "mindatetime":
            return Val("TIMESTAMP '0001-01-01 00:00:00'", "time", [])
        if name == "maxdatetime":
            return Val("TIMESTAMP '9999-12-31 23:59:59.999999'", "time", [])
        if name in ("round", "floor", "ceiling"):
            a = self.number(args[0], name)
            return Val(f"{'ceil' if name == 'ceiling' else name}({a.sql})", "number", hops)
        if name == "geo.distance":
            a, b = (self.geometry(x, name) for x in args)
            return Val(f"ST_Distance({a.sql}, {b.sql})", "number", hops)
        if name == "geo.length":
            return Val(f"ST_Length({self.geometry(args[0], name).sql})", "number", hops)
        fn = {"geo.intersects": "ST_Intersects", "st_intersects": "ST_Intersects", "st_equals": "ST_Equals",
              "st_disjoint": "ST_Disjoint", "st_touches": "ST_Touches", "st_within": "ST_Within",
              "st_overlaps": "ST_Overlaps", "st_crosses": "ST_Crosses", "st_contains": "ST_Contains"}[name]
        a, b = (self.geometry(x, name) for x in args)
        return Val(f"coalesce({fn}({a.sql}, {b.sql}), FALSE)", "bool", hops)

    # ------------------------------------------------------------------ conditions
    def compare(self, op: str, a: Val, b: Val) -> str:
        sql_op = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}[op]
        if a.type == "null" and b.type != "null":
            a, b = b, a
            sql_op = {">": "<", ">=": "<=", "<": ">", "<=": ">="}.get(sql_op, sql_op)
        if b.type == "null":
            if op not in ("eq", "ne"):
                raise QueryError(f"$filter: null can only be compared with eq or ne, not {op}")
            neg = "NOT " if op == "ne" else ""
            if a.type == "result":
                return f"{neg}({a.sql} IS NULL AND {a.alt} IS NULL)"
            if a.type == "interval":
                return f"{neg}({a.sql} IS NULL)"
            if a.type == "json":
                return f"{neg}({a.sql} IS NULL OR json_type({a.sql}) = 'NULL')"
            return f"{a.sql} IS {'NOT ' if op == 'ne' else ''}NULL"
        if "interval" in (a.type, b.type):
            return self._compare_interval(op, sql_op, a, b)
        if a.type == "result" or b.type == "result":
            r, other = (a, b) if a.type == "result" else (b, a)
            if other.type in ("number", "result"):
                r = Val(r.sql, "number", r.hops)
                if other.type == "result":
                    other = Val(other.sql, "number", other.hops)
            elif other.type == "string":
                r = Val(f"json_extract_string({r.alt}, '$')", "string", r.hops)
            elif other.type == "bool":
                r = Val(f"({r.alt} = 'true')", "bool", r.hops)
            else:
                raise QueryError(f"$filter: result cannot be compared with a {other.type} value")
            a, b = (r, other) if a.type == "result" else (other, r)
        if a.type == "json" or b.type == "json":
            j, other = (a, b) if a.type == "json" else (b, a)
            if other.type == "number":
                j = Val(f"TRY_CAST({j.alt} AS DOUBLE)", "number", j.hops)
            elif other.type == "bool":
                j = Val(f"TRY_CAST({j.alt} AS BOOLEAN)", "bool", j.hops)
            elif other.type in ("string", "time", "date"):
                j = Val(j.alt or j.sql, "string", j.hops)
                if other.type != "string":
                    j = Val(f"TRY_CAST({j.sql} AS TIMESTAMP)", "time", j.hops)
            else:
                j = Val(j.alt or j.sql, "string", j.hops)
            a, b = (j, other) if a.type == "json" else (other, j)
        kinds = {a.type, b.type}
        if kinds <= {"time", "date"} or kinds <= {"number"} or kinds <= {"string"} or kinds <= {"bool"}:
            return f"({a.sql} {sql_op} {b.sql})"
        if kinds == {"time", "string"}:  # a time compared with a quoted time
            s = b if b.type == "string" else a
            return f"({a.sql} {sql_op} {b.sql})".replace(s.sql, f"TRY_CAST({s.sql} AS TIMESTAMP)", 1)
        if kinds == {"geometry"} and op in ("eq", "ne"):
            return f"({'NOT ' if op == 'ne' else ''}ST_Equals({a.sql}, {b.sql}))"
        raise QueryError(f"$filter: cannot compare a {a.type} value with a {b.type} value")

    def _compare_interval(self, op: str, sql_op: str, a: Val, b: Val) -> str:
        if a.type != "interval":  # instant op interval -> interval (reversed op) instant
            a, b = b, a
            sql_op = {">": "<", ">=": "<=", "<": ">", "<=": ">="}.get(sql_op, sql_op)
        if b.type not in ("time", "date", "interval", "string"):
            raise QueryError(f"$filter: a time interval cannot be compared with a {b.type} value")
        other = b.sql if b.type != "string" else f"TRY_CAST({b.sql} AS TIMESTAMP)"
        end = f"coalesce({a.end}, {a.sql})"
        other_end = f"coalesce({b.end}, {other})" if b.type == "interval" else other
        if sql_op in (">", ">="):
            return f"({a.sql} {sql_op} {other_end})"
        if sql_op in ("<", "<="):
            return f"({end} {sql_op} {other})"
        same = f"({a.sql} = {other} AND {end} = {other_end})"
        return same if sql_op == "=" else f"(NOT {same})"

    def condition(self, node: Any, wrap: bool = True) -> str:
        if isinstance(node, BoolOp):
            return "(" + f" {node.op.upper()} ".join(self.condition(i) for i in node.items) + ")"
        if isinstance(node, Not):
            return f"(NOT coalesce({self.condition(node.item)}, FALSE))"
        if isinstance(node, BinOp) and node.op in COMPARISONS:
            a, b = self.value(node.left), self.value(node.right)
            return self.exists(self.compare(node.op, a, b), a.hops + b.hops)
        v = self.value(node)
        if v.type == "bool":
            return self.exists(v.sql, v.hops)
        if v.type == "json":
            return self.exists(f"coalesce(TRY_CAST({v.alt} AS BOOLEAN), FALSE)", v.hops)
        raise QueryError("$filter must be a condition (a comparison, a boolean function, and/or/not)")

    @staticmethod
    def exists(sql: str, hops: list[tuple[str, str]]) -> str:
        for from_, where in reversed(hops):
            sql = f"EXISTS (SELECT 1 FROM {from_} WHERE {where} AND {sql})"
        return sql

    def order(self, node: Any, desc: bool) -> list[str]:
        v = self.value(node)
        if v.hops:
            raise QueryError("$orderby: give a property of the entity itself (navigation paths are not ordered)")
        direction = " DESC NULLS LAST" if desc else " ASC NULLS FIRST"
        if v.type == "result":
            return [v.sql + direction, v.alt + direction]  # type: ignore[operator]
        if v.type == "geometry":
            raise QueryError("$orderby cannot order by a geometry")
        if v.type == "json":
            return [(v.alt or v.sql) + direction]
        return [v.sql + direction]


# ---------------------------------------------------------------------- reading rows
@dataclass(frozen=True)
class Column:
    """A selected property: its SQL expressions and how they become JSON."""

    prop: Prop
    sql: tuple[str, ...]


def _columns(es: EntitySet, alias: str) -> list[Column]:
    out = []
    for p in es.props:
        if p.kind == "id":
            continue
        if p.kind == "interval":
            if es.name == "Datastreams":
                out.append(Column(p, (f"{alias}_s.{p.column}", f"{alias}_s.{p.end}")))
            else:
                out.append(Column(p, (f"{alias}.{p.column}", f"{alias}.{p.end}")))
        elif p.kind == "result":
            out.append(Column(p, (f"{alias}.result_number", f"{alias}.result_json")))
        elif p.kind == "geojson" and p.column is None:
            area = (f"(SELECT ST_AsGeoJSON(CASE WHEN count(*) = 1 THEN any_value(f.geom) ELSE "
                    f"ST_Envelope_Agg(f.geom) END) FROM {SCHEMA}.datastream_features df "
                    f"JOIN {SCHEMA}.features f ON f.id = df.feature_id WHERE df.datastream_id = {alias}.id)")
            out.append(Column(p, (area,)))
        else:
            out.append(Column(p, (f"{alias}.{p.column}",)))
    return out


def _format(prop: Prop, values: Sequence[Any]) -> Any:
    v = values[0]
    if prop.kind == "interval":
        return interval(v, values[1])
    if prop.kind == "time":
        return iso(v)
    if prop.kind == "result":
        return decode_result(v, values[1])
    if prop.kind in ("json", "geojson", "uom"):
        return json.loads(v) if v is not None else None
    return v


class Reader:
    """Answers GET requests of the SensorThings API from a DuckDB cursor.

    Args:
        cursor: a cursor on the store (this thread's).
        base: the service root URL (`http://host/sta/v1.1`), for self and navigation links.
        default_top: page size without `$top`.
        max_top: the largest `$top` accepted.
    """

    def __init__(self, cursor: duckdb.DuckDBPyConnection, base: str, *, default_top: int = 100,
                 max_top: int = 10_000) -> None:
        self.cur = cursor
        self.base = base.rstrip("/")
        self.default_top = default_top
        self.max_top = max_top

    # ------------------------------------------------------------------ entry
    def read(self, path: str, params: Mapping[str, str] | Iterable[tuple[str, str]], access: Access,
             *, link_query: str = "") -> Any:
        """The JSON document of a GET on `path` (relative to the service root).

        Args:
            path: `Things`, `Things(1)`, `Things(1)/Datastreams`, `Datastreams(1)/Thing/name`, `.../$value`,
                `Things/$ref`, or "" for the service document.
            params: query parameters (options starting with `$`; others are ignored).
            access: the caller.
            link_query: query text carried into generated links (e.g. `api_key=...`).

        Returns:
            A JSON-able document, or a `RawValue` for `$value`.

        Raises:
            EntityNotFoundError: a missing or hidden entity on the path (404).
            QueryError: a bad path or option (400).
        """
        pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
        self.link_query = link_query
        segments = [s for s in path.strip("/").split("/") if s]
        if not segments:
            return self.service_document()
        opts = parse_options(pairs, max_top=self.max_top)
        steps, tail = self.resolve(segments, access)
        last = steps[-1]
        try:
            if tail and tail[0] not in ("$ref",):
                return self.property_value(last, tail, access)
            if last.id is not None:
                if tail:
                    return {"@iot.selfLink": self.self_link(last.es, last.id)}
                rows = self.fetch(last.es, opts, access, ids=[last.id], single=True)
                if not rows:
                    raise EntityNotFoundError(f"no {last.es.singular} {last.id}")
                return rows[0]
            return self.collection(last, opts, access, pairs, segments, ref=bool(tail))
        except _DUCKDB_INPUT_ERRORS as exc:
            raise QueryError(f"the query cannot be evaluated on these values: {str(exc).splitlines()[0][:200]}"
                             ) from None

    def service_document(self) -> dict[str, Any]:
        return {"value": [{"name": n, "url": f"{self.base}/{n}"} for n in ENTITY_SETS],
                "serverSettings": {"conformance": CONFORMANCE}}

    # ------------------------------------------------------------------ paths
    def resolve(self, segments: list[str], access: Access) -> tuple[list[Step], list[str]]:
        """Resolve entity and navigation segments; return the steps and the tail (property, `$value`, `$ref`)."""
        if len(segments) > 12:
            raise QueryError(f"resource path has {len(segments)} segments; at most 12")
        steps: list[Step] = []
        for i, seg in enumerate(segments):
            m = _SEGMENT.match(seg)
            if seg in ("$ref", "$value") or (steps and steps[-1].id is not None and m and m.group(1)
                                             and steps[-1].es.prop(m.group(1)) and not m.group(2)):
                return steps, segments[i:]
            if m is None:
                raise QueryError(f"resource path segment {seg[:60]!r} is not an entity set, an entity "
                                 f"(Things(1)) or a property")
            name, ident = m.group(1), m.group(2) or m.group(3)
            eid = int(ident) if ident else None
            if not steps:
                es = ENTITY_SETS.get(name)
                if es is None:
                    raise EntityNotFoundError(f"no entity set {name!r}; the service has "
                                              f"{', '.join(ENTITY_SETS)}")
                step = Step(es, eid)
            else:
                prev = steps[-1]
                if prev.id is None:
                    raise QueryError(f"{seg!r} follows a collection; navigate from one entity, e.g. "
                                     f"{prev.es.name}(1)/{seg}")
                nav = prev.es.nav(name)
                if nav is None:
                    raise EntityNotFoundError(f"{prev.es.singular} has no navigation property or property {name!r}")
                target = ENTITY_SETS[nav.target]
                if nav.many:
                    step = Step(target, eid, parent=(nav, prev.es, prev.id))
                else:
                    if eid is not None:
                        raise QueryError(f"{name} is a single entity; drop the ({eid})")
                    fk = first_row(self.cur.execute(f"SELECT {nav.fk} FROM {prev.es.table} WHERE id = $1", [prev.id]))
                    if fk is None or fk[0] is None:
                        raise EntityNotFoundError(f"{prev.es.singular} {prev.id} has no {name}")
                    step = Step(target, int(fk[0]))
            if step.id is not None and not self.exists(step, access):
                raise EntityNotFoundError(f"no {step.es.singular} {step.id}"
                                          + (f" of {step.parent[1].singular} {step.parent[2]}" if step.parent else ""))
            steps.append(step)
        return steps, []

    def exists(self, step: Step, access: Access) -> bool:
        """True when the entity exists, the caller may see it, and it belongs to the step's parent."""
        p = Params()
        comp = Compiler(step.es, "e", p, access)
        where = [f"e.id = {p.add(step.id)}", comp.visible(step.es, "e")]
        if step.parent is not None:
            where.append(self.parent_condition(step.parent, "e", p))
        row = first_row(self.cur.execute(f"SELECT 1 FROM {step.es.table} e WHERE {' AND '.join(where)} LIMIT 1",
                                         p.values))
        return row is not None

    @staticmethod
    def parent_condition(parent: tuple[Nav, EntitySet, int], alias: str, p: Params) -> str:
        nav, _, pid = parent
        if nav.target_fk is not None:
            return f"{alias}.{nav.target_fk} = {p.add(pid)}"
        link, this_col, target_col = nav.link  # type: ignore[misc]
        return f"{alias}.id IN (SELECT {target_col} FROM {link} WHERE {this_col} = {p.add(pid)})"

    def property_value(self, step: Step, tail: list[str], access: Access) -> Any:
        name = tail[0]
        prop = step.es.prop("id" if name in ("id", "@iot.id") else name)
        if step.id is None or prop is None or len(tail) > 2 or (len(tail) == 2 and tail[1] != "$value"):
            raise QueryError(f"{'/'.join(tail)[:60]!r}: ask for one property of one entity, e.g. "
                             f"{step.es.name}(1)/name or {step.es.name}(1)/name/$value")
        row = self.fetch(step.es, QueryOptions(select=[prop.name]), access, ids=[step.id], single=True)[0]
        value = row.get("@iot.id") if prop.kind == "id" else row.get(prop.name)
        if len(tail) == 2:
            return RawValue(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        return {prop.name: value}

    # ------------------------------------------------------------------ links
    def self_link(self, es: EntitySet, eid: int) -> str:
        return f"{self.base}/{es.name}({eid})"

    def next_link(self, segments: list[str], pairs: list[tuple[str, str]], skip: int, top: int) -> str:
        keep = [(k, v) for k, v in pairs if k not in ("$skip", "$top")]
        keep += [("$top", str(top)), ("$skip", str(skip))]
        return f"{self.base}/{'/'.join(segments)}?{urlencode(keep, quote_via=quote, safe=':,()$')}"

    # ------------------------------------------------------------------ collections
    def collection(self, step: Step, opts: QueryOptions, access: Access, pairs: list[tuple[str, str]],
                   segments: list[str], *, ref: bool = False) -> dict[str, Any]:
        top = self.default_top if opts.top is None else opts.top
        raw: list[tuple[Any, ...]] = []
        rows, more = self.fetch_page(step, opts, access, top, raw)
        doc: dict[str, Any] = {}
        if opts.count:
            doc["@iot.count"] = self.count(step, opts, access)
        if more and top > 0:  # $top=0 asks for the count alone: no page follows
            doc["@iot.nextLink"] = self.next_link(segments, pairs, opts.skip + top, top)
        if ref:
            doc["value"] = [{"@iot.selfLink": r["@iot.selfLink"]} for r in rows]
        elif opts.result_format == "dataArray" and step.es.name == "Observations":
            doc["value"] = self.data_array(rows, [r[1] for r in raw[:len(rows)]], opts)
        else:
            doc["value"] = rows
        return doc

    def where(self, es: EntitySet, opts: QueryOptions, access: Access, p: Params,
              parent: tuple[Nav, EntitySet, int] | None, alias: str = "e") -> tuple[list[str], Compiler]:
        comp = Compiler(es, alias, p, access)
        where = [comp.visible(es, alias)]
        if parent is not None:
            where.append(self.parent_condition(parent, alias, p))
        if opts.filter is not None:
            where.append(comp.condition(opts.filter))
        return where, comp

    def count(self, step: Step, opts: QueryOptions, access: Access) -> int:
        p = Params()
        where, _ = self.where(step.es, opts, access, p, step.parent)
        return int(self.cur.execute(f"SELECT count(*) FROM {step.es.table} e WHERE {' AND '.join(where)}",
                                    p.values).fetchall()[0][0])

    def fetch_page(self, step: Step, opts: QueryOptions, access: Access, top: int,
                   raw: list[tuple[Any, ...]] | None = None) -> tuple[list[dict[str, Any]], bool]:
        rows = self.fetch(step.es, opts, access, parent=step.parent, limit=top + 1, offset=opts.skip, raw_out=raw)
        return rows[:top], len(rows) > top

    def _select(self, es: EntitySet, select: list[str] | None) -> tuple[list[Column], list[Nav], bool, bool]:
        """Selected columns, selected navigation links, and whether @iot.id / @iot.selfLink are selected."""
        cols = _columns(es, "e")
        if select is None:
            return cols, list(es.navs), True, True
        names = set()
        for s in select:
            n = "id" if s == "@iot.id" else s
            if n not in ("id", "@iot.selfLink") and es.prop(n) is None and es.nav(n) is None:
                raise QueryError(f"$select: {es.singular} has no property {s!r}; properties: "
                                 f"{', '.join(p.name for p in es.props)}")
            names.add(n)
        return ([c for c in cols if c.prop.name in names], [n for n in es.navs if n.name in names],
                "id" in names, "@iot.selfLink" in names)

    def fetch(self, es: EntitySet, opts: QueryOptions, access: Access, *, ids: Sequence[int] | None = None,
              parent: tuple[Nav, EntitySet, int] | None = None, limit: int | None = None, offset: int = 0,
              single: bool = False, raw_out: list[tuple[Any, ...]] | None = None) -> list[dict[str, Any]]:
        """Rows of `es` as STA JSON (with `$expand` applied); `raw_out` receives the raw rows (id, foreign keys,
        columns)."""
        p = Params()
        where, comp = self.where(es, opts, access, p, parent)
        if ids is not None:
            where.append(f"e.id IN (SELECT unnest({p.add(list(ids))}::BIGINT[]))")
        cols, navs, with_id, with_self = self._select(es, opts.select)
        order = [o for node, desc in opts.orderby for o in comp.order(node, desc)] + ["e.id ASC"]
        fks = [n for n in es.navs if n.fk is not None]
        sql = (f"SELECT e.id, {', '.join([f'e.{n.fk}' for n in fks] + [s for c in cols for s in c.sql]) or 'NULL'} "
               f"FROM {es.table} e"
               + (f" LEFT JOIN {SCHEMA}.latest e_s ON e_s.datastream_id = e.id" if es.name == "Datastreams" else "")
               + f" WHERE {' AND '.join(where)} ORDER BY {', '.join(order)}")
        if limit is not None:
            sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
        raw = self.cur.execute(sql, p.values).fetchall()
        if raw_out is not None:
            raw_out.extend(raw)
        rows = [self.format_row(es, r, cols, navs, fks, with_id, with_self) for r in raw]
        if opts.expand and rows:
            self.expand(es, rows, [r[0] for r in raw], {n.name: [r[1 + i] for r in raw] for i, n in enumerate(fks)},
                        opts.expand, access)
        return rows

    def format_row(self, es: EntitySet, r: Sequence[Any], cols: list[Column], navs: list[Nav], fks: list[Nav],
                   with_id: bool, with_self: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        eid = r[0]
        if with_id:
            out["@iot.id"] = eid
        if with_self:
            out["@iot.selfLink"] = f"{self.base}/{es.name}({eid})"
        i = 1 + len(fks)
        for c in cols:
            n = len(c.sql)
            value = _format(c.prop, r[i:i + n])
            i += n
            if value is None and c.prop.kind in ("json", "geojson") and c.prop.name != "location":
                continue
            out[c.prop.name] = value
        for nav in navs:
            out[f"{nav.name}@iot.navigationLink"] = f"{self.base}/{es.name}({eid})/{nav.name}"
        return out

    # ------------------------------------------------------------------ $expand
    def expand(self, es: EntitySet, rows: list[dict[str, Any]], ids: list[int], fk_values: dict[str, list[Any]],
               items: list[ExpandItem], access: Access) -> None:
        for item in items:
            nav = es.nav(item.nav)
            if nav is None:
                raise QueryError(f"$expand: {es.singular} has no navigation property {item.nav!r}; it has "
                                 f"{', '.join(n.name for n in es.navs)}")
            target = ENTITY_SETS[nav.target]
            if not nav.many:
                wanted = sorted({v for v in fk_values[nav.name] if v is not None})
                found = {r["@iot.id"]: r for r in self.fetch(target, _with_id(item.options), access, ids=wanted)}
                for row, fk in zip(rows, fk_values[nav.name], strict=True):
                    if fk in found:
                        row[nav.name] = _strip_id(found[fk], item.options)
                continue
            grouped, more, counts = self.expand_many(nav, target, ids, item.options, access)
            top = self.default_top if item.options.top is None else item.options.top
            for row, pid in zip(rows, ids, strict=True):
                row[nav.name] = grouped.get(pid, [])
                if item.options.count:
                    row[f"{nav.name}@iot.count"] = counts.get(pid, 0)
                if pid in more:
                    q = f"$top={top}&$skip={item.options.skip + top}"
                    row[f"{nav.name}@iot.nextLink"] = f"{self.base}/{es.name}({pid})/{nav.name}?{q}"

    def expand_many(self, nav: Nav, target: EntitySet, ids: list[int], opts: QueryOptions, access: Access
                    ) -> tuple[dict[int, list[dict[str, Any]]], set[int], dict[int, int]]:
        p = Params()
        where, comp = self.where(target, opts, access, p, None)
        if nav.target_fk is not None:
            parent_col, join = f"e.{nav.target_fk}", ""
        else:
            link, this_col, target_col = nav.link  # type: ignore[misc]
            parent_col, join = f"x_l.{this_col}", f" JOIN {link} x_l ON x_l.{target_col} = e.id"
        where.append(f"{parent_col} IN (SELECT unnest({p.add(list(ids))}::BIGINT[]))")
        top = self.default_top if opts.top is None else opts.top
        cols, navs, _, with_self = self._select(target, _with_id(opts).select)
        order = [o for node, desc in opts.orderby for o in comp.order(node, desc)] + ["e.id ASC"]
        fks = [n for n in target.navs if n.fk is not None]
        select = ", ".join([f"e.{n.fk}" for n in fks] + [s for c in cols for s in c.sql]) or "NULL"
        sql = (f"SELECT e.id, {select}, {parent_col} AS x_parent, row_number() OVER (PARTITION BY {parent_col} "
               f"ORDER BY {', '.join(order)}) AS x_rank FROM {target.table} e{join}"
               + (f" LEFT JOIN {SCHEMA}.latest e_s ON e_s.datastream_id = e.id" if target.name == "Datastreams" else "")
               + f" WHERE {' AND '.join(where)} QUALIFY x_rank > {int(opts.skip)} AND x_rank <= "
               f"{int(opts.skip) + top + 1} ORDER BY x_parent, x_rank")
        raw = self.cur.execute(sql, p.values).fetchall()
        grouped: dict[int, list[dict[str, Any]]] = {}
        more: set[int] = set()
        kept: list[tuple[Any, ...]] = []
        for r in raw:
            pid, rank = r[-2], r[-1]
            if rank > opts.skip + top:
                more.add(pid)
                continue
            kept.append(r)
        rows = [self.format_row(target, r[:-2], cols, navs, fks, True, with_self) for r in kept]
        if opts.expand and rows:
            self.expand(target, rows, [r[0] for r in kept],
                        {n.name: [r[1 + i] for r in kept] for i, n in enumerate(fks)}, opts.expand, access)
        for r, row in zip(kept, rows, strict=True):
            grouped.setdefault(r[-2], []).append(_strip_id(row, opts))
        counts: dict[int, int] = {}
        if opts.count:
            p2 = Params()
            where2, _ = self.where(target, opts, access, p2, None)
            where2.append(f"{parent_col} IN (SELECT unnest({p2.add(list(ids))}::BIGINT[]))")
            counts = dict(self.cur.execute(f"SELECT {parent_col}, count(*) FROM {target.table} e{join} "
                                           f"WHERE {' AND '.join(where2)} GROUP BY 1", p2.values).fetchall())
        return grouped, more, counts

    # ------------------------------------------------------------------ dataArray
    def data_array(self, rows: list[dict[str, Any]], datastreams: list[int], opts: QueryOptions
                   ) -> list[dict[str, Any]]:
        """Observations grouped per Datastream in the Data Array format (STA 1.1, 14.3)."""
        names = ["id", "phenomenonTime", "result", "resultTime"] if opts.select is None else \
            ["id" if s == "@iot.id" else s for s in opts.select]
        groups: dict[Any, list[list[Any]]] = {}
        for r, ds in zip(rows, datastreams, strict=True):
            groups.setdefault(ds, []).append([r.get("@iot.id") if n == "id" else r.get(n) for n in names])
        out = []
        for ds, data in groups.items():
            entry: dict[str, Any] = {}
            if ds is not None:
                entry["Datastream@iot.navigationLink"] = f"{self.base}/Datastreams({ds})"
            entry.update({"components": names, "dataArray@iot.count": len(data), "dataArray": data})
            out.append(entry)
        return out


class RawValue(str):
    """The text of a `$value` request (sent as text/plain)."""


def _with_id(opts: QueryOptions) -> QueryOptions:
    """The same options with `id` selected (expanding needs every row's id)."""
    if opts.select is None or "id" in opts.select or "@iot.id" in opts.select:
        return opts
    return QueryOptions(filter=opts.filter, orderby=opts.orderby, select=[*opts.select, "id"], expand=opts.expand,
                        top=opts.top, skip=opts.skip, count=opts.count, result_format=opts.result_format)


def _strip_id(row: dict[str, Any], opts: QueryOptions) -> dict[str, Any]:
    if opts.select is not None and "id" not in opts.select and "@iot.id" not in opts.select:
        return {k: v for k, v in row.items() if k != "@iot.id"}
    return row


__all__ = ["CONFORMANCE", "STA_VERSION", "Compiler", "Params", "RawValue", "Reader"]

