"""The OData query options parser: syntax, the trees it builds, and its bounds (a hostile query answers 400)."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from layers.sensing.errors import QueryError
from layers.sensing.odata import (
    MAX_DEPTH,
    MAX_TOKENS,
    BinOp,
    BoolOp,
    Call,
    Literal,
    Not,
    Path,
    parse_expand,
    parse_filter,
    parse_options,
    parse_orderby,
)


def test_precedence_and_literals() -> None:
    tree = parse_filter("result gt 3.5 and phenomenonTime ge 2024-07-20T08:00:00+08:00 or not "
                        "startswith(name, 'it''s')")
    assert isinstance(tree, BoolOp) and tree.op == "or"
    left, right = tree.items
    assert isinstance(left, BoolOp) and left.op == "and"
    assert left.items[0] == BinOp("gt", Path(("result",)), Literal(3.5, "number"))
    # the offset is folded into UTC
    assert left.items[1].right == Literal(datetime(2024, 7, 20, 0, 0), "time")
    assert right == Not(Call("startswith", (Path(("name",)), Literal("it's", "string"))))


def test_arithmetic_binds_tighter_than_comparison() -> None:
    tree = parse_filter("result mul 2 add 1 gt -3")
    assert tree == BinOp("gt", BinOp("add", BinOp("mul", Path(("result",)), Literal(2, "number")),
                                     Literal(1, "number")), Literal(-3, "number"))


def test_geometry_literal_and_navigation_paths() -> None:
    tree = parse_filter("st_within(Thing/Locations/location, geography'POLYGON ((1 1, 2 1, 2 2, 1 1))')")
    assert isinstance(tree, Call) and tree.args[0] == Path(("Thing", "Locations", "location"))
    assert tree.args[1].type == "geometry" and isinstance(tree.args[1].value, bytes)


@pytest.mark.parametrize("text", [
    "result gt", "result gt 1 1", "(result gt 1", "foo(1) eq 2", "length() eq 1", "'unterminated",
    "result gt 1 and", "geo.intersects(location, geography'NOT WKT')", "name eq #", "eq 1",
])
def test_syntax_errors_are_query_errors(text: str) -> None:
    with pytest.raises(QueryError):
        parse_filter(text)


@pytest.mark.parametrize("text", [
    "(" * (MAX_DEPTH + 1) + "id eq 1" + ")" * (MAX_DEPTH + 1),
    "not " * (MAX_DEPTH + 1) + "id eq 1",
    " add ".join(["1"] * (MAX_DEPTH + 2)) + " eq 1",
    "length(" * (MAX_DEPTH + 1) + "name" + ")" * (MAX_DEPTH + 1) + " eq 1",
    " or ".join(["id eq 1"] * (MAX_TOKENS // 3 + 1)),
    "name eq '" + "a" * 20_000 + "'",
])
def test_bounds_answer_quickly(text: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(QueryError):
        parse_filter(text)
    assert time.perf_counter() - t0 < 2.0  # bounded work: never a pathological parse


def test_long_flat_disjunction_within_bounds_is_flat() -> None:
    tree = parse_filter(" or ".join(f"id eq {i}" for i in range(300)))
    assert isinstance(tree, BoolOp) and len(tree.items) == 300


def test_orderby_and_expand() -> None:
    assert [d for _, d in parse_orderby("phenomenonTime desc, id")] == [True, False]
    items = parse_expand("Datastreams($select=name;$expand=Observations($top=1;$orderby=phenomenonTime desc)),"
                         "Locations,Datastreams/Sensor")
    assert [i.nav for i in items] == ["Datastreams", "Locations"]
    ds = items[0].options
    assert ds.select == ["name"]
    assert [e.nav for e in ds.expand] == ["Observations", "Sensor"]
    assert ds.expand[0].options.top == 1 and ds.expand[0].options.orderby[0][1] is True


@pytest.mark.parametrize("params, message", [
    ({"$top": "1000000000"}, "exceeds the maximum"),
    ({"$top": "-1"}, "non-negative"),
    ({"$skip": "abc"}, "non-negative"),
    ({"$count": "yes"}, "true or false"),
    ({"$foo": "1"}, "unknown query option"),
    ({"$expand": "Datastreams($expand=Observations($expand=Datastream($expand=Thing($expand=Locations"
                 "($expand=Things)))))"}, "deeper"),
    ({"$expand": "Datastreams/Observations/Datastream/Thing/Locations"}, "deeper"),
    ({"$expand": ",".join(["Datastreams"] * 40)}, "entries"),
    ({"$expand": "Datastreams($top=1"}, "unbalanced"),
    ({"$select": "name;drop"}, "property names"),
])
def test_bad_options(params: dict[str, str], message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_options(params)


def test_repeated_option_is_refused() -> None:
    with pytest.raises(QueryError, match="twice"):
        parse_options([("$top", "1"), ("$top", "2")])
