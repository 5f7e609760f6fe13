"""The OData query options SensorThings API 1.1 asks for, parsed into small syntax trees, within hard bounds.

    >>> opts = parse_options({"$filter": "result gt 3.5 and phenomenonTime ge 2024-07-20T00:00:00Z",
    ...                       "$orderby": "phenomenonTime desc", "$top": "10"})
    >>> opts.top, opts.orderby[0][1]
    (10, True)

`$filter` grammar (OData 4 as STA 1.1 profiles it): `or` < `and` < `not` < comparisons (`eq ne gt ge lt le`) <
`add sub` < `mul div mod` < unary minus < primaries (literals, property paths such as `Datastream/Thing/name` or
`properties/owner`, function calls, parentheses). Literals: `'text'` (with `''` for a quote), numbers, `true`,
`false`, `null`, times (`2024-07-20T08:00:00Z`, `+08:00` offsets), dates, and `geography'POINT (113.3 40.1)'`
(WKT, also `geometry'...'`).

Every input is bounded, so a hostile request costs at most a few milliseconds and is answered 400 (`QueryError`):
the text length, the number of tokens, the nesting depth (parentheses, `not`, function calls and operator chains),
the size of geometry literals, and the depth and breadth of `$expand`. The tokenizer's regular expressions have no
nested quantifiers, so no input makes them backtrack more than linearly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple

import shapely

from layers.sensing.errors import QueryError

MAX_TEXT = 16_384  # characters of one query option
MAX_TOKENS = 2_000  # tokens of one $filter / $orderby
MAX_DEPTH = 32  # nesting of parentheses, `not`, function calls and operator chains
MAX_GEOMETRY_POINTS = 10_000  # coordinates of one geometry literal
MAX_EXPAND_DEPTH = 4
MAX_EXPAND_ITEMS = 16
MAX_SELECT = 64
MAX_ORDERBY = 8
MAX_SKIP = 10**9


class Literal(NamedTuple):
    value: Any
    type: str  # string number bool null time date geometry


class Path(NamedTuple):
    segments: tuple[str, ...]


class Call(NamedTuple):
    name: str
    args: tuple[Any, ...]


class BinOp(NamedTuple):
    op: str  # eq ne gt ge lt le add sub mul div mod
    left: Any
    right: Any


class BoolOp(NamedTuple):
    op: str  # and, or
    items: tuple[Any, ...]


class Not(NamedTuple):
    item: Any


class Neg(NamedTuple):
    item: Any


Node = Literal | Path | Call | BinOp | BoolOp | Not | Neg

COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")
ARITHMETIC = ("add", "sub", "mul", "div", "mod")
KEYWORDS = frozenset(("and", "or", "not", "true", "false", "null", *COMPARISONS, *ARITHMETIC))

# name -> (least, most) arguments
FUNCTIONS: dict[str, tuple[int, int]] = {
    "substringof": (2, 2), "contains": (2, 2), "startswith": (2, 2), "endswith": (2, 2), "length": (1, 1),
    "indexof": (2, 2), "substring": (2, 3), "tolower": (1, 1), "toupper": (1, 1), "trim": (1, 1),
    "concat": (2, 2), "year": (1, 1), "month": (1, 1), "day": (1, 1), "hour": (1, 1), "minute": (1, 1),
    "second": (1, 1), "fractionalseconds": (1, 1), "date": (1, 1), "time": (1, 1), "totaloffsetminutes": (1, 1),
    "now": (0, 0), "mindatetime": (0, 0), "maxdatetime": (0, 0), "round": (1, 1), "floor": (1, 1),
    "ceiling": (1, 1), "geo.distance": (2, 2), "geo.length": (1, 1), "geo.intersects": (2, 2),
    "st_equals": (2, 2), "st_disjoint": (2, 2), "st_touches": (2, 2), "st_within": (2, 2), "st_overlaps": (2, 2),
    "st_crosses": (2, 2), "st_intersects": (2, 2), "st_contains": (2, 2),
}

_TOKEN = re.compile(r"""
 (?P<ws>\s+)
|(?P<geo>(?:geography|geometry)'[^']*')
|(?P<string>'(?:[^']|'')*')
|(?P<time>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2}))
|(?P<date>\d{4}-\d{2}-\d{2})
|(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
|(?P<name>[A-Za-z_@$][A-Za-z0-9_.@$-]*(?:/[A-Za-z_@$][A-Za-z0-9_.@$-]*)*)
|(?P<punct>[(),])
|(?P<minus>-)
""", re.VERBOSE)


class Token(NamedTuple):
    kind: str
    text: str
    pos: int


def tokenize(text: str, what: str = "$filter") -> list[Token]:
    """Split a filter or orderby into tokens.

    Raises:
        QueryError: unknown characters, an unterminated string, or more than MAX_TOKENS tokens.
    """
    if len(text) > MAX_TEXT:
        raise QueryError(f"{what} is {len(text)} characters long; at most {MAX_TEXT} are accepted")
    out: list[Token] = []
    pos, n = 0, len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            near = text[pos:pos + 20]
            hint = " (unterminated string?)" if text[pos] == "'" else ""
            raise QueryError(f"{what}: cannot read {near!r} at character {pos}{hint}")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(Token(kind, m.group(), pos))
            if len(out) > MAX_TOKENS:
                raise QueryError(f"{what} has more than {MAX_TOKENS} tokens; split the query")
        pos = m.end()
    return out


def parse_time(text: str, what: str = "time") -> datetime:
    """An ISO 8601 time (with `Z` or an offset; a time without one is taken as UTC) as a naive UTC datetime.

    Raises:
        QueryError: not an ISO 8601 time.
    """
    s = text.strip()
    try:
        if "." in s:  # Python reads at most 6 fractional digits
            head, _, tail = s.partition(".")
            digits = len(tail) - len(tail.lstrip("0123456789"))
            s = head + "." + tail[:min(digits, 6)].ljust(1, "0") + tail[digits:]
        t = datetime.fromisoformat(s)
    except ValueError:
        raise QueryError(f"{what} {text!r} is not an ISO 8601 time such as 2024-07-20T08:00:00Z") from None
    if t.tzinfo is not None:
        t = t.astimezone(UTC).replace(tzinfo=None)
    return t


def parse_geometry(wkt: str, what: str = "geometry") -> bytes:
    """A WKT geometry literal (an `SRID=4326;` prefix is allowed) as WKB, bounded in size.

    Raises:
        QueryError: not WKT, empty, or more than MAX_GEOMETRY_POINTS coordinates.
    """
    text = wkt.strip()
    if text[:5].upper() == "SRID=":
        srid, _, text = text.partition(";")
        if srid[5:].strip() not in ("4326", "4490", "4258"):
            raise QueryError(f"{what}: {srid!r} is not a lon/lat CRS; give WKT in lon/lat degrees (EPSG:4326)")
    if text.count(",") + 1 > MAX_GEOMETRY_POINTS:
        raise QueryError(f"{what} has more than {MAX_GEOMETRY_POINTS} coordinates")
    try:
        geom = shapely.from_wkt(text)
    except shapely.errors.ShapelyError as exc:
        raise QueryError(f"{what} {text[:60]!r} is not WKT: {exc}") from None
    if geom is None or geom.is_empty:
        raise QueryError(f"{what} {text[:60]!r} is empty")
    return shapely.to_wkb(geom)


class _Parser:
    def __init__(self, tokens: list[Token], what: str) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0
        self.what = what

    # -------------------------------------------------------------- helpers
    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise QueryError(f"{self.what} ends too early")
        self.i += 1
        return tok

    def keyword(self, *words: str) -> str | None:
        tok = self.peek()
        if tok is not None and tok.kind == "name" and tok.text in words:
            self.i += 1
            return tok.text
        return None

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text:
            raise QueryError(f"{self.what}: expected {text!r} at character {tok.pos}, found {tok.text!r}")

    def enter(self, steps: int = 1) -> None:
        self.depth += steps
        if self.depth > MAX_DEPTH:
            raise QueryError(f"{self.what} nests deeper than {MAX_DEPTH} levels; simplify it")

    # -------------------------------------------------------------- grammar
    def expression(self) -> Node:
        items = [self.conjunction()]
        while self.keyword("or"):
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def conjunction(self) -> Node:
        items = [self.negation()]
        while self.keyword("and"):
            items.append(self.negation())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def negation(self) -> Node:
        if self.keyword("not"):
            self.enter()
            node = Not(self.negation())
            self.depth -= 1
            return node
        return self.comparison()

    def comparison(self) -> Node:
        left = self.additive()
        op = self.keyword(*COMPARISONS)
        if op is None:
            return left
        return BinOp(op, left, self.additive())

    def additive(self) -> Node:
        node, chain = self.multiplicative(), 0
        while (op := self.keyword("add", "sub")) is not None:
            chain += 1
            self.enter()
            node = BinOp(op, node, self.multiplicative())
        self.depth -= chain
        return node

    def multiplicative(self) -> Node:
        node, chain = self.unary(), 0
        while (op := self.keyword("mul", "div", "mod")) is not None:
            chain += 1
            self.enter()
            node = BinOp(op, node, self.unary())
        self.depth -= chain
        return node

    def unary(self) -> Node:
        tok = self.peek()
        if tok is not None and tok.kind == "minus":
            self.take()
            self.enter()
            node = Neg(self.unary())
            self.depth -= 1
            return node
        return self.primary()

    def primary(self) -> Node:
        tok = self.take()
        k, text = tok.kind, tok.text
        if k == "punct" and text == "(":
            self.enter()
            node = self.expression()
            self.expect(")")
            self.depth -= 1
            return node
        if k == "string":
            return Literal(text[1:-1].replace("''", "'"), "string")
        if k == "number":
            try:
                value: Any = int(text) if re.fullmatch(r"-?\d+", text) else float(text)
            except ValueError:
                raise QueryError(f"{self.what}: {text!r} is not a number") from None
            return Literal(value, "number")
        if k == "time":
            return Literal(parse_time(text), "time")
        if k == "date":
            try:
                return Literal(date.fromisoformat(text), "date")
            except ValueError:
                raise QueryError(f"{self.what}: {text!r} is not a date") from None
        if k == "geo":
            return Literal(parse_geometry(text[text.index("'") + 1:-1], f"{self.what} geometry"), "geometry")
        if k == "name":
            if text in ("true", "false"):
                return Literal(text == "true", "bool")
            if text == "null":
                return Literal(None, "null")
            if text in KEYWORDS:
                raise QueryError(f"{self.what}: unexpected {text!r} at character {tok.pos}")
            nxt = self.peek()
            if nxt is not None and nxt.text == "(":
                return self.call(tok)
            return Path(tuple(text.split("/")))
        raise QueryError(f"{self.what}: unexpected {text!r} at character {tok.pos}")

    def call(self, tok: Token) -> Call:
        name = tok.text.lower()
        if name not in FUNCTIONS:
            raise QueryError(f"{self.what}: unknown function {tok.text!r}; supported: {', '.join(sorted(FUNCTIONS))}")
        self.expect("(")
        self.enter()
        args: list[Node] = []
        if self.peek() is not None and self.peek().text != ")":  # type: ignore[union-attr]
            args.append(self.expression())
            while self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                self.take()
                args.append(self.expression())
        self.expect(")")
        self.depth -= 1
        least, most = FUNCTIONS[name]
        if not least <= len(args) <= most:
            want = str(least) if least == most else f"{least} to {most}"
            raise QueryError(f"{self.what}: {name}() takes {want} argument(s), got {len(args)}")
        return Call(name, tuple(args))


def parse_filter(text: str) -> Node:
    """The syntax tree of a `$filter` expression.

    Raises:
        QueryError: a syntax error or a bound exceeded (the message says which and where).
    """
    tokens = tokenize(text)
    if not tokens:
        raise QueryError("$filter is empty")
    p = _Parser(tokens, "$filter")
    node = p.expression()
    if p.peek() is not None:
        tok = p.peek()
        raise QueryError(f"$filter: unexpected {tok.text!r} at character {tok.pos}")  # type: ignore[union-attr]
    return node


def parse_orderby(text: str) -> list[tuple[Node, bool]]:
    """`$orderby` as (expression, descending) pairs."""
    tokens = tokenize(text, "$orderby")
    p = _Parser(tokens, "$orderby")
    out: list[tuple[Node, bool]] = []
    while True:
        node = p.additive()
        tok = p.peek()
        desc = False
        if tok is not None and tok.kind == "name" and tok.text.lower() in ("asc", "desc"):  # FROST's client: ASC
            p.take()
            desc = tok.text.lower() == "desc"
        out.append((node, desc))
        if len(out) > MAX_ORDERBY:
            raise QueryError(f"$orderby has more than {MAX_ORDERBY} keys")
        tok = p.peek()
        if tok is None:
            return out
        if tok.text != ",":
            raise QueryError(f"$orderby: unexpected {tok.text!r} at character {tok.pos}")
        p.take()


def _split_top(text: str, sep: str, what: str) -> list[str]:
    """Split at `sep` outside parentheses and quotes."""
    parts, depth, start, quoted = [], 0, 0, False
    for i, ch in enumerate(text):
        if ch == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise QueryError(f"{what}: unbalanced ')' at character {i}")
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth or quoted:
        raise QueryError(f"{what}: unbalanced parentheses or quotes")
    parts.append(text[start:])
    return [p.strip() for p in parts]


@dataclass
class ExpandItem:
    """One `$expand` entry: a navigation property and the options applied to it."""

    nav: str
    options: QueryOptions


@dataclass
class QueryOptions:
    """Parsed query options of one request (or of one `$expand` entry)."""

    filter: Node | None = None
    orderby: list[tuple[Node, bool]] = field(default_factory=list)
    select: list[str] | None = None
    expand: list[ExpandItem] = field(default_factory=list)
    top: int | None = None
    skip: int = 0
    count: bool = False
    result_format: str | None = None


_OPTIONS = ("$filter", "$orderby", "$select", "$expand", "$top", "$skip", "$count", "$resultFormat")


def _int_option(name: str, text: str, most: int, hint: str) -> int:
    if not re.fullmatch(r"\s*\d{1,12}\s*", text):
        raise QueryError(f"{name}={text[:40]!r} is not a non-negative integer")
    value = int(text)
    if value > most:
        raise QueryError(f"{name}={value} exceeds the maximum {most}; {hint}")
    return value


def parse_options(params: Mapping[str, str] | Iterable[tuple[str, str]], *, max_top: int = 10_000,
                  _depth: int = 0, _what: str = "") -> QueryOptions:
    """Parse query options (`$filter`, `$expand`, ...); parameters not starting with `$` are ignored.

    Args:
        params: the query parameters (a mapping, or pairs, where a repeated option is an error).
        max_top: the largest `$top` accepted (the server's page limit).

    Raises:
        QueryError: an unknown, repeated or malformed option, or a bound exceeded.
    """
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    seen: dict[str, str] = {}
    for k, v in pairs:
        if not k.startswith("$"):
            continue
        if k not in _OPTIONS:
            raise QueryError(f"unknown query option {_what}{k!r}; supported: {', '.join(_OPTIONS)}")
        if k in seen:
            raise QueryError(f"query option {_what}{k} is given twice")
        if len(v) > MAX_TEXT:
            raise QueryError(f"query option {_what}{k} is {len(v)} characters long; at most {MAX_TEXT}")
        seen[k] = v
    opts = QueryOptions()
    if "$filter" in seen:
        opts.filter = parse_filter(seen["$filter"])
    if "$orderby" in seen:
        opts.orderby = parse_orderby(seen["$orderby"])
    if "$select" in seen:
        names = [s.strip() for s in seen["$select"].split(",")]
        if len(names) > MAX_SELECT or not all(re.fullmatch(r"[@A-Za-z][A-Za-z0-9_.@]{0,63}", s) for s in names):
            raise QueryError(f"$select={seen['$select'][:60]!r}: give up to {MAX_SELECT} property names, "
                             f"comma-separated")
        opts.select = names
    if "$top" in seen:
        opts.top = _int_option("$top", seen["$top"], max_top, "page through the rest with @iot.nextLink")
    if "$skip" in seen:
        opts.skip = _int_option("$skip", seen["$skip"], MAX_SKIP, "narrow the query with $filter")
    if "$count" in seen:
        if seen["$count"] not in ("true", "false"):
            raise QueryError(f"$count={seen['$count'][:20]!r} is not true or false")
        opts.count = seen["$count"] == "true"
    if "$resultFormat" in seen:
        if seen["$resultFormat"] not in ("dataArray", "default"):
            raise QueryError(f"$resultFormat={seen['$resultFormat'][:20]!r}: supported are dataArray and default")
        opts.result_format = seen["$resultFormat"]
    if "$expand" in seen:
        opts.expand = parse_expand(seen["$expand"], max_top=max_top, depth=_depth)
    return opts


def parse_expand(text: str, *, max_top: int = 10_000, depth: int = 0) -> list[ExpandItem]:
    """`$expand`: `Datastreams($filter=...;$expand=Observations($top=1)),Locations` or `Datastreams/Sensor`.

    Raises:
        QueryError: malformed, deeper than MAX_EXPAND_DEPTH or wider than MAX_EXPAND_ITEMS.
    """
    if depth >= MAX_EXPAND_DEPTH:
        raise QueryError(f"$expand nests deeper than {MAX_EXPAND_DEPTH} levels")
    items: list[ExpandItem] = []
    for part in _split_top(text, ",", "$expand"):
        if not part:
            raise QueryError("$expand has an empty entry")
        path, _, rest = part.partition("(")
        options = QueryOptions()
        if rest:
            if not rest.endswith(")"):
                raise QueryError(f"$expand entry {part[:60]!r} does not end with ')'")
            pairs = []
            for opt in _split_top(rest[:-1], ";", "$expand"):
                if not opt:
                    continue
                k, eq, v = opt.partition("=")
                if not eq:
                    raise QueryError(f"$expand option {opt[:40]!r} is not $name=value")
                pairs.append((k.strip(), v.strip()))
            options = parse_options(pairs, max_top=max_top, _depth=depth + 1, _what=f"$expand {path.strip()}: ")
        segments = [s.strip() for s in path.split("/")]
        if not all(re.fullmatch(r"[A-Za-z]{1,40}", s) for s in segments):
            raise QueryError(f"$expand path {path[:60]!r} is not a navigation path such as Datastreams/Sensor")
        if len(segments) + depth > MAX_EXPAND_DEPTH:
            raise QueryError(f"$expand nests deeper than {MAX_EXPAND_DEPTH} levels")
        # `A/B(opts)` expands A with B inside it; the options belong to the last segment
        item = ExpandItem(segments[-1], options)
        for seg in reversed(segments[:-1]):
            item = ExpandItem(seg, QueryOptions(expand=[item]))
        merged = next((i for i in items if i.nav == item.nav and len(segments) > 1), None)
        if merged is not None:
            merged.options.expand.extend(item.options.expand)
        else:
            items.append(item)
        if len(items) > MAX_EXPAND_ITEMS:
            raise QueryError(f"$expand has more than {MAX_EXPAND_ITEMS} entries")
    return items


__all__ = ["COMPARISONS", "FUNCTIONS", "MAX_DEPTH", "MAX_TOKENS", "BinOp", "BoolOp", "Call", "ExpandItem",
           "Literal", "Neg", "Not", "Path", "QueryOptions", "parse_expand", "parse_filter", "parse_geometry",
           "parse_options", "parse_orderby", "parse_time", "tokenize"]
