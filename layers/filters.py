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
schema, then written as quoted identifiers); every literal becomes a `?` parameter.

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
            return f"(NOT {self.factor()})"
        if self.accept("punct", "("):
            inner = self.expr()
            self.expect("punct", ")")
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
            return f"({left} {nt}LIKE {self.operand()})"
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
            inner = self.operand()
            self.expect("punct", ")")
            return f"lower({inner})"
        return self.literal()

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
    parser = _Parser(text, {f.casefold(): f for f in fields})
    sql = parser.parse()
    return SqlFilter(sql, parser.params, parser.used)


__all__ = ["SqlFilter", "compile_filter", "tokenize"]
