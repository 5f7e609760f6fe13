"""Property-based hostile inputs (Hypothesis, deterministic): the WKB walk, the WKT bound, the CQL2 parser and its
LIKE compilation, the log redaction and every file reader, each against a reference or an invariant.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from cim.errors import CimError
from cim.sources import limits
from cim.sources.limits import MAX_NESTING, check_wkb, check_wkt
from layers.db import connect
from layers.errors import FilterSyntaxError, LayerInputError
from layers.filters import compile_filter
from layers.sources import read_source
from tests.hostile.support import HOSTILE
from tiles.server.redact import redact

# ---------------------------------------------------------------------- geometry values


def _simple(draw: st.DrawFn, dims: int) -> shapely.Geometry:
    coords = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
    kind = draw(st.sampled_from(["point", "line", "polygon", "empty"]))
    if kind == "point":
        return shapely.Point(*[draw(coords) for _ in range(dims)])
    if kind == "line":
        n = draw(st.integers(2, 6))
        return shapely.LineString([[draw(coords) for _ in range(dims)] for _ in range(n)])
    if kind == "polygon":
        x, y = draw(coords), draw(coords)
        ring = [(x, y), (x + 1, y), (x + 1, y + 1), (x, y)]
        return shapely.Polygon([(*p, 0.0) for p in ring] if dims == 3 else ring)
    return shapely.from_wkt("POINT EMPTY")


@st.composite
def geometries(draw: st.DrawFn, max_depth: int = MAX_NESTING + 3) -> tuple[shapely.Geometry, int]:
    """A geometry and its nesting depth (Point 1, MultiPoint 2, a collection of those 3, ...)."""
    dims = draw(st.sampled_from([2, 3]))
    depth = draw(st.integers(1, max_depth))
    if depth == 1:
        return _simple(draw, dims), 1
    if depth == 2 and draw(st.booleans()):
        parts = [_simple(draw, dims) for _ in range(draw(st.integers(1, 3)))]
        parts = [p for p in parts if p.geom_type == "Point" and not p.is_empty] or [shapely.Point(*([0.0] * dims))]
        return shapely.MultiPoint(parts), 2
    g = _simple(draw, dims)
    for _ in range(depth - 1):
        g = shapely.GeometryCollection([g, *([_simple(draw, dims)] if draw(st.booleans()) else [])])
    return g, depth


def _to_wkb(g: shapely.Geometry, big: bool, flavor: str) -> bytes:
    return shapely.to_wkb(g, byte_order=0 if big else 1, flavor=flavor)


@given(st.lists(st.tuples(geometries(), st.booleans(), st.sampled_from(["iso", "extended"])), min_size=1,
                max_size=40))
@settings(HOSTILE, max_examples=60)
def test_the_walk_accepts_exactly_the_well_formed_values_within_the_limits(items: list) -> None:
    values = [_to_wkb(g, big, flavor) for (g, _), big, flavor in items]
    depths = [d for (_, d), _, _ in items]
    # the vectorised walk needs enough values to run: repeat the batch past its scalar threshold
    reps = max(1, 300 // len(values))
    found = check_wkb(pa.array(values * reps, pa.binary()))
    for i, (wkb, depth) in enumerate(zip(values, depths, strict=True)):
        expect = None if depth <= MAX_NESTING else limits._reason_depth()
        assert limits._walk_one(wkb, 0, len(wkb)) == expect
        for r in range(reps):
            assert found.get(r * len(values) + i) == expect
        if expect is None:
            assert shapely.equals_exact(shapely.from_wkb(wkb), shapely.from_wkb(wkb), 0)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    (g, _), big, flavor = draw(geometries(max_depth=5)), draw(st.booleans()), draw(st.sampled_from(["iso", "extended"]))
    b = bytearray(_to_wkb(g, big, flavor))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "count"]))
        if op == "flip" and b:
            b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
        elif op == "cut" and b:
            del b[draw(st.integers(0, len(b) - 1)):]
        elif op == "insert":
            at = draw(st.integers(0, len(b)))
            b[at:at] = draw(st.binary(min_size=1, max_size=12))
        elif len(b) >= 9:  # a count that lies
            at = draw(st.integers(0, len(b) - 4))
            b[at:at + 4] = struct.pack("<I", draw(st.sampled_from([0, 1, 2**31 - 1, 2**32 - 1, 1000])))
    return bytes(b)


@given(st.lists(mutated(), min_size=1, max_size=30))
@settings(HOSTILE, max_examples=80)
def test_whatever_the_walk_passes_parses_safely_everywhere(values: list[bytes]) -> None:
    """Mutated WKB (flipped bytes, cuts, insertions, lying counts): what the walk passes is structurally sound, so
    GEOS and DuckDB parse it (or refuse it, e.g. an unclosed ring, with an error) without crashing the process;
    a pass means the structure, to the byte, agrees with what GEOS reads back."""
    found = check_wkb(pa.array(values * max(1, 300 // len(values)), pa.binary()))
    passed = [v for i, v in enumerate(values) if i not in found]
    for v in passed:
        g = shapely.from_wkb(v, on_invalid="ignore")
        if g is not None and not g.is_empty:
            assert shapely.get_num_coordinates(g) <= len(v) // 16
    if passed:
        con = connect(None)
        try:
            con.register("v", pa.table({"wkb": pa.array(passed, pa.binary())}))
            con.execute("SELECT count(TRY(ST_GeomFromWKB(wkb))) FROM v").fetchone()
        finally:
            con.close()


@given(st.lists(st.sampled_from(["GEOMETRYCOLLECTION(", "POINT(1 2)", "POLYGON((0 0,1 0,1 1,0 0))", ")", ",",
                                 "MULTIPOINT((1 2))", "(", "EMPTY"]), max_size=40))
@settings(HOSTILE, max_examples=150)
def test_wkt_beyond_the_bound_never_reaches_geos(tokens: list[str]) -> None:
    text = "".join(tokens)
    deepest = max(np.cumsum([1 if c == "(" else -1 if c == ")" else 0 for c in text]).tolist() or [0])
    found = check_wkt([text])
    assert (0 in found) == (deepest > MAX_NESTING + 1)
    if 0 not in found:
        shapely.from_wkt(text, on_invalid="ignore")


# ---------------------------------------------------------------------- filters

_CQL = st.sampled_from(["name", "capacity", '"名称"', "nope", "'a'", "'it''s'", "1", "-2.5e3", "TRUE", "NULL",
                        "(", ")", "AND", "OR", "NOT", "=", "<>", "<=", "LIKE", "IN", "BETWEEN", "IS", ",", "CASEI(",
                        "DATE('2024-01-01')", "TIMESTAMP('x')", "'%_\\'", "@", "'unterminated", '"', "\u0000"])


@given(st.lists(_CQL, max_size=60))
@settings(HOSTILE, max_examples=400)
def test_the_filter_parser_only_ever_raises_its_own_error(tokens: list[str]) -> None:
    try:
        compile_filter(" ".join(tokens), ["name", "capacity", "名称"])
    except FilterSyntaxError:
        pass


@given(st.integers(1, 3000), st.sampled_from(["(", "NOT ", "CASEI("]))
@settings(HOSTILE, max_examples=60)
def test_nesting_is_refused_before_python_recursion(depth: int, opener: str) -> None:
    closer = ")" if opener != "NOT " else ""
    text = (opener * depth + ("name" if opener == "CASEI(" else "capacity > 1") + closer * depth
            + (" = 'a'" if opener == "CASEI(" else ""))[:3999]
    try:
        compile_filter(text, ["name", "capacity"])
        assert depth <= 20
    except FilterSyntaxError as exc:
        assert depth > 20 or "expected" in str(exc)


@pytest.fixture(scope="module")
def words_con():
    con = connect(None)
    yield con
    con.close()


@given(st.text(alphabet="ab%_\\", max_size=8), st.lists(st.text(alphabet="ab%_\\A", max_size=7), min_size=1,
                                                          max_size=12), st.booleans())
@settings(HOSTILE, max_examples=300)
def test_like_compilation_matches_duckdb_like_on_short_text(words_con, pattern: str, words: list[str],
                                                            casei: bool) -> None:
    """Reference: DuckDB's own `LIKE ... ESCAPE '\\'`, safe on strings this short."""
    literal = pattern.replace("'", "''")
    text = f"CASEI(w) LIKE CASEI('{literal}')" if casei else f"w LIKE '{literal}'"
    try:
        flt = compile_filter(text, ["w"])
    except FilterSyntaxError:
        assert pattern.endswith("\\") and (len(pattern) - len(pattern.rstrip("\\"))) % 2 == 1
        return
    words_con.register("t", pa.table({"w": words, "i": range(len(words))}))
    got = [r[0] for r in words_con.execute(f"SELECT w FROM t WHERE {flt.sql} ORDER BY i", flt.params).fetchall()]
    ref_left, ref_pat = ("lower(w)", pattern.lower()) if casei else ("w", pattern)
    want = [r[0] for r in words_con.execute(f"SELECT w FROM t WHERE {ref_left} LIKE ? ESCAPE '\\' ORDER BY i",
                                            [ref_pat]).fetchall()]
    assert got == want


# ---------------------------------------------------------------------- log redaction


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-", min_size=20, max_size=43),
       st.sampled_from(["api_key", "api%5Fkey", "api%5fkey", "API_KEY", "apikey", "token", "access_token"]),
       st.lists(st.booleans(), min_size=43, max_size=43), st.booleans())
@settings(HOSTILE, max_examples=200)
def test_no_spelling_of_a_key_survives_redaction(secret: str, param: str, encode: list[bool], twice: bool) -> None:
    key = f"cim_0123abcd_{secret}"
    spelled = "".join(f"%{ord(c):02X}" if e else c for c, e in zip(key, encode + [False] * len(key), strict=False))
    if twice:
        spelled = quote(spelled, safe="")
    for line in (f"127.0.0.1 GET /collections/a/items?{param}={spelled}&limit=5 200 10B 1.0ms",
                 f"Authorization: Bearer {spelled}", f"headers: {{'x-api-key': '{spelled}'}}",
                 f"error with {key} inside"):
        out = redact(line)
        assert secret not in out and secret[:10] not in out
        assert "\n" not in out and "\r" not in out


# ---------------------------------------------------------------------- file readers


def _read(path: Path, **kw: object) -> None:
    try:
        read_source(path, **kw)
    except CimError:
        pass


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                                       max_size=4), max_leaves=30)


@given(st.dictionaries(st.sampled_from(["type", "CityObjects", "vertices", "transform", "metadata", "version"]),
                       json_values, max_size=6),
       st.dictionaries(st.text(max_size=4), st.fixed_dictionaries(
           {"type": st.sampled_from(["Building", "BuildingPart", 3]), "geometry": json_values,
            "attributes": json_values, "children": json_values}), max_size=3))
@settings(HOSTILE, max_examples=150)
def test_cityjson_documents_of_any_shape(tmp_path_factory: pytest.TempPathFactory, doc: dict, objects: dict) -> None:
    doc = {**doc, "type": "CityJSON", "CityObjects": objects} if objects else doc
    p = tmp_path_factory.mktemp("cj") / "x.city.json"
    p.write_text(json.dumps(doc))
    _read(p, crs="EPSG:4547")


@given(st.dictionaries(st.sampled_from(["type", "features", "crs", "bbox"]), json_values, max_size=4),
       st.lists(st.fixed_dictionaries({"type": st.just("Feature"), "geometry": json_values,
                                       "properties": json_values}), max_size=3))
@settings(HOSTILE, max_examples=100)
def test_geojson_documents_of_any_shape(tmp_path_factory: pytest.TempPathFactory, doc: dict, feats: list) -> None:
    doc = {**doc, "type": "FeatureCollection", "features": feats} if feats else doc
    p = tmp_path_factory.mktemp("gj") / "x.geojson"
    p.write_text(json.dumps(doc))
    _read(p)


@given(st.binary(max_size=300), st.sampled_from([".csv", ".geojson", ".gpkg", ".fgb", ".parquet", ".shp",
                                                 ".city.json", ".zip", ".sqlite"]))
@settings(HOSTILE, max_examples=150)
def test_random_bytes_under_every_extension(tmp_path_factory: pytest.TempPathFactory, data: bytes,
                                            suffix: str) -> None:
    p = tmp_path_factory.mktemp("rb") / f"x{suffix}"
    p.write_bytes(data)
    _read(p, crs="EPSG:4490")


@given(st.lists(st.lists(st.text(alphabet="0123456789.-eEnaif,\"x 汉", max_size=8), min_size=1, max_size=4),
                min_size=1, max_size=6), st.sampled_from(["lon,lat,a", "x,y", "wkt,b", "a,a,a", "经度,纬度"]),
       st.sampled_from([None, "gbk", "utf-8", "latin-1"]))
@settings(HOSTILE, max_examples=150)
def test_csv_of_any_content(tmp_path_factory: pytest.TempPathFactory, rows: list, header: str,
                            encoding: str | None) -> None:
    p = tmp_path_factory.mktemp("csv") / "x.csv"
    text = header + "\n" + "\n".join(",".join(r) for r in rows) + "\n"
    p.write_bytes(text.encode(encoding or "utf-8", errors="replace"))
    _read(p, crs="EPSG:4490", encoding=encoding)


def test_lone_surrogates_in_a_filter_are_refused() -> None:
    with pytest.raises(FilterSyntaxError, match="not UTF-8"):
        compile_filter("name = '\udcff'", ["name"])


def test_layer_input_error_is_what_the_store_raises_for_a_type_clash(tmp_path: Path) -> None:
    from layers import LayerStore
    from tests.hostile.corpus import points

    src = tmp_path / "p.gpkg"
    points(5).to_file(src, driver="GPKG")
    with LayerStore(tmp_path / "s.duckdb") as s:
        s.import_file(src, "p", "public_topics")
        with pytest.raises(LayerInputError):
            s.query_arrow("p", where="capacity > 'abc'")
        assert re.search("name", str(s.info("p").field_names()))
