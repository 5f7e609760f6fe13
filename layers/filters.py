"""The attribute filter language of `--where`: a subset of OGC CQL2-text, compiled to parameterised SQL.

Grammar (keywords case-insensitive; a property is a bare name, Chinese allowed, or a "double-quoted" name):

    expr       := term (OR term)*
    term       := factor (AND factor)*
    factor     := NOT factor | '(' expr ')' | predicate
    predicate  := operand op operand                    op: = <> != < <= > >=
                | operand [NOT] LIKE operand            % and _ wildcards
                | operand [NOT] IN '(' literal, ... ')'
                | operand [NOT] BETWEEN operand AND operand
                | operand IS [NOT] NULL
    operand    := property | 'string' | number | TRUE | FALSE | DATE('...') | TIMESTAMP('...') | CASEI(operand)

Safety: the user's text never reaches SQL. Properties must be fields of the layer (looked up in its catalogue
schema, then written as quoted identifiers); every literal becomes a `?` parameter. The work a filter can ask for
is bounded: at most `MAX_LENGTH` characters, `MAX_TOKENS` tokens and `MAX_DEPTH` levels of nesting (parentheses,
NOT, CASEI), checked by the parser before any recursion could reach Python's limit; and a LIKE pattern (a string
literal, as CQL2 requires) is compiled to a linear-time match: DuckDB's own LIKE backtracks on `_` mixed with `%`
(`'%a_%a_%b'` over 1,000 strings of 200 characters took 50 s), so only the forms DuckDB turns into a prefix, suffix
or substring test (`'abc'`, `'abc%'`, `'%abc'`, `'%abc%'`) stay LIKE, and every other pattern becomes an RE2
`regexp_full_match`, whose time is linear in the text. A backslash escapes `%`, `_` and itself in patterns (CQL2).

    >>> compile_filter("pop > 1000 AND name LIKE '东%'", ["pop", "name"]).sql
    '(("pop" > ?) AND ("name" LIKE ?))'
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from layers.errors import FilterSyntaxError

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")+")
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<op><>|!=|<=|>=|=|<|>)
  | (?P<punct>[(),-])
  | (?P<word>[^\W\d]\w*)
""", re.VERBOSE | re.UNICODE)
_KEYWORDS = {"AND", "OR", "NOT", "LIKE", "IN", "BETWEEN", "IS", "NULL", "TRUE", "FALSE", "CASEI", "DATE",
             "TIMESTAMP"}
MAX_LENGTH = 4000
MAX_TOKENS = 1000
MAX_DEPTH = 20
MAX_SINGLE_WILDCARDS = 1000  # `_` in one pattern (RE2 counts repetitions up to 1000)


@dataclass(frozen=True)
class Token:
    kind: str  # string, quoted, number, op, punct, word, keyword, end
    value: str
    pos: int


@dataclass
class SqlFilter:
    """A compiled filter: a SQL boolean expression with `?` placeholders and its parameters in order."""

    sql: str
    params: list[Any] = field(default_factory=list)
    fields: set[str] = field(default_factory=set)


def tokenize(text: str) -> list[Token]:
    """Split a filter into tokens.

    Raises:
        FilterSyntaxError: a character that starts no token.
    """
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise FilterSyntaxError(f"--where: unexpected {text[pos]!r} at position {pos + 1} in {text!r}")
        kind = m.lastgroup or ""
        value = m.group()
        if kind == "word" and value.upper() in _KEYWORDS:
            kind, value = "keyword", value.upper()
        if kind != "ws":
            tokens.append(Token(kind, value, pos))
            if len(tokens) > MAX_TOKENS:
                raise FilterSyntaxError(f"--where: more than {MAX_TOKENS} tokens; split the question into several "
                                        f"queries or use IN (...) lists of fewer values")
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str, fields: dict[str, str]) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.fields = fields  # casefolded name -> stored name
        self.params: list[Any] = []
        self.used: set[str] = set()
        self.depth = 0

    def nested(self) -> None:
        """Count one more level of nesting (parentheses, NOT, CASEI); refuse beyond MAX_DEPTH."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterSyntaxError(f"--where: nested more than {MAX_DEPTH} levels deep (parentheses, NOT, CASEI) "
                                    f"at position {self.tok.pos + 1}; write the filter flatter")

    # -- token helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def error(self, expected: str) -> FilterSyntaxError:
        t = self.tok
        got = "end of filter" if t.kind == "end" else repr(t.value)
        return FilterSyntaxError(f"--where: expected {expected} at position {t.pos + 1}, got {got} in {self.text!r}")

    def accept(self, kind: str, value: str | None = None) -> Token | None:
        t = self.tok
        if t.kind == kind and (value is None or t.value == value):
            self.i += 1
            return t
        return None

    def expect(self, kind: str, value: str | None = None, what: str | None = None) -> Token:
        t = self.accept(kind, value)
        if t is None:
            raise self.error(what or (value or kind))
        return t

    # -- grammar
    def parse(self) -> str:
        sql = self.expr()
        if self.tok.kind != "end":
            raise self.error("AND, OR or the end of the filter")
        return sql

    def expr(self) -> str:
        parts = [self.term()]
        while self.accept("keyword", "OR"):
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def term(self) -> str:
        parts = [self.factor()]
        while self.accept("keyword", "AND"):
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def factor(self) -> str:
        if self.accept("keyword", "NOT"):
            self.nested()
            inner = self.factor()
            self.depth -= 1
            return f"(NOT {inner})"
        if self.accept("punct", "("):
            self.nested()
            inner = self.expr()
            self.expect("punct", ")")
            self.depth -= 1
            return inner
        return self.predicate()

    def predicate(self) -> str:
        left = self.operand()
        t = self.tok
        if t.kind == "op":
            self.i += 1
            op = "<>" if t.value == "!=" else t.value
            return f"({left} {op} {self.operand()})"
        negate = bool(self.accept("keyword", "NOT"))
        nt = "NOT " if negate else ""
        if self.accept("keyword", "LIKE"):
            return f"({nt}{self.like(left)})"
        if self.accept("keyword", "IN"):
            self.expect("punct", "(")
            items = [self.literal()]
            while self.accept("punct", ","):
                items.append(self.literal())
            self.expect("punct", ")")
            return f"({left} {nt}IN ({', '.join(items)}))"
        if self.accept("keyword", "BETWEEN"):
            low = self.operand()
            self.expect("keyword", "AND")
            return f"({left} {nt}BETWEEN {low} AND {self.operand()})"
        if not negate and self.accept("keyword", "IS"):
            isnot = "NOT " if self.accept("keyword", "NOT") else ""
            self.expect("keyword", "NULL")
            return f"({left} IS {isnot}NULL)"
        raise self.error("a comparison (=, <>, <, <=, >, >=, LIKE, IN, BETWEEN, IS NULL)")

    def operand(self) -> str:
        t = self.tok
        if t.kind in ("word", "quoted"):
            self.i += 1
            name = t.value[1:-1].replace('""', '"') if t.kind == "quoted" else t.value
            stored = self.fields.get(name.casefold())
            if stored is None:
                known = ", ".join(sorted(self.fields.values()))
                raise FilterSyntaxError(f"--where: {name!r} is not a field of the layer; fields: {known}")
            self.used.add(stored)
            return '"' + stored.replace('"', '""') + '"'
        if self.accept("keyword", "CASEI"):
            self.expect("punct", "(")
            self.nested()
            inner = self.operand()
            self.expect("punct", ")")
            self.depth -= 1
            return f"lower({inner})"
        return self.literal()

    def like(self, left: str) -> str:
        """`left LIKE pattern`: the pattern is a string literal or CASEI of one (CQL2's patternExpression)."""
        casei = bool(self.accept("keyword", "CASEI"))
        if casei:
            self.expect("punct", "(")
        t = self.expect("string", what="a quoted LIKE pattern")
        if casei:
            self.expect("punct", ")")
        pattern = t.value[1:-1].replace("''", "'")
        if casei:
            pattern = pattern.lower()
        parts = like_parts(pattern)
        if parts is None:  # a prefix, suffix or substring test: DuckDB's LIKE is linear there
            self.params.append(pattern)
            return f"{left} LIKE ?"
        self.params.append(like_regex(parts))
        return f"regexp_full_match({left}, ?, 's')"

    def literal(self) -> str:
        t = self.tok
        value: Any
        if t.kind == "string":
            value = t.value[1:-1].replace("''", "'")
        elif t.kind == "number" or (t.kind == "punct" and t.value == "-"):
            sign = -1 if self.accept("punct", "-") else 1
            num = self.expect("number", what="a number").value
            value = sign * (float(num) if any(c in num for c in ".eE") else int(num))
            self.params.append(value)
            return "?"
        elif t.kind == "keyword" and t.value in ("TRUE", "FALSE"):
            value = t.value == "TRUE"
        elif t.kind == "keyword" and t.value in ("DATE", "TIMESTAMP"):
            self.i += 1
            self.expect("punct", "(")
            text = self.expect("string", what="a quoted date").value[1:-1]
            self.expect("punct", ")")
            try:
                value = (dt.date.fromisoformat(text) if t.value == "DATE"
                         else dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
            except ValueError as exc:
                raise FilterSyntaxError(f"--where: {t.value}({text!r}) is not an ISO 8601 value") from exc
            self.params.append(value)
            return "?"
        else:
            raise self.error("a field name or a value")
        self.i += 1
        self.params.append(value)
        return "?"


def like_parts(pattern: str) -> list[str | tuple[int, bool]] | None:
    """A CQL2 LIKE pattern as literal text runs and wildcard runs `(single wildcards, any length)`; None when the
    pattern is plain text with `%` at most at its ends (and no `_` or backslash), which DuckDB's LIKE answers in linear
    time.

    Raises:
        FilterSyntaxError: more than MAX_SINGLE_WILDCARDS `_`, or a pattern ending in a lone backslash.
    """
    core = pattern[1:] if pattern.startswith("%") else pattern
    core = core[:-1] if core.endswith("%") else core
    if not any(c in core for c in "%_\\"):
        return None
    parts: list[str | tuple[int, bool]] = []
    text: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 == len(pattern):
                raise FilterSyntaxError(f"--where: LIKE pattern {pattern!r} ends in a lone escape \\; write \\\\ for a "
                                        f"backslash")
            text.append(pattern[i + 1])
            i += 2
            continue
        if c in "%_":
            if text:
                parts.append("".join(text))
                text = []
            single, anything = 0, False
            while i < len(pattern) and pattern[i] in "%_":  # '_%_' is '__%': a run is n characters, or n or more
                single += pattern[i] == "_"
                anything |= pattern[i] == "%"
                i += 1
            parts.append((single, anything))
            continue
        text.append(c)
        i += 1
    if text:
        parts.append("".join(text))
    if sum(p[0] for p in parts if isinstance(p, tuple)) > MAX_SINGLE_WILDCARDS:
        raise FilterSyntaxError(f"--where: LIKE pattern with more than {MAX_SINGLE_WILDCARDS} _ wildcards")
    return parts


def like_regex(parts: list[str | tuple[int, bool]]) -> str:
    """The RE2 regex (for `regexp_full_match(.., 's')`) of `like_parts`: letters and digits as they are, every other
    character as a `\\x{..}` escape, wildcard runs as `.{n}` or `.{n,}`."""
    out = []
    for p in parts:
        if isinstance(p, tuple):
            single, anything = p
            out.append(f".{{{single},}}" if anything else f".{{{single}}}")
        else:
            out.append("".join(c if c.isascii() and c.isalnum() else f"\\x{{{ord(c):x}}}" for c in p))
    return "".join(out)


def compile_filter(text: str, fields: Iterable[str]) -> SqlFilter:
    """Compile a `--where` filter against a layer's field names.

    Args:
        text: the filter, e.g. `"类型 = '学校' AND capacity >= 500"`.
        fields: the names the filter may use (the layer's catalogue schema, plus `fid`).

    Returns:
        SQL with `?` placeholders, the parameters in order, and the fields used.

    Raises:
        FilterSyntaxError: the text does not parse, or names an unknown field.
    """
    if len(text) > MAX_LENGTH:
        raise FilterSyntaxError(f"--where: filter longer than {MAX_LENGTH} characters")
    if not text.strip():
        raise FilterSyntaxError("--where: empty filter")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise FilterSyntaxError(f"--where: not UTF-8 text (character {exc.start + 1}); check the terminal's "
                                f"encoding") from exc
    parser = _Parser(text, {f.casefold(): f for f in fields})
    sql = parser.parse()
    return SqlFilter(sql, parser.params, parser.used)


__all__ = ["MAX_DEPTH", "MAX_LENGTH", "MAX_TOKENS", "SqlFilter", "compile_filter", "like_parts", "like_regex", "tokenize"]
