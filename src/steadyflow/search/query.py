"""The where-language: a small, safe parser for `--where` expressions, into a tree `compile.py` checks.

    Customer = 'acme' AND (Amount > 100 OR Priority IN (1, 2)) AND NOT Archived = true

Grammar (keywords are case-insensitive, attribute names are not):

    expr     := and (OR and)*
    and      := unary (AND unary)*
    unary    := NOT unary | '(' expr ')' | NAME op value | NAME [NOT] IN '(' value (',' value)* ')'
    op       := = | != | <> | < | <= | > | >=
    value    := 'text' | "text" | 42 | -1.5e3 | true | false | 2026-05-01 | 2026-05-01T12:00:00Z

Hand-written recursive descent, not `eval` or a SQL fragment passed through: values only ever
become parameters, and names only ever become parameters or keys of a fixed table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .values import INT64, parse_datetime

MAX_LENGTH = 4000
MAX_DEPTH = 40
MAX_TERMS = 100


class SearchQueryError(ConfigError):
    """A where-expression is malformed, names an unknown attribute, or compares mismatched types."""


@dataclass(frozen=True)
class Literal:
    """A value written in the expression: kind is string, int, float, bool or datetime."""

    kind: str
    value: Any
    text: str


@dataclass(frozen=True)
class Compare:
    """`name op value`; op is one of = != < <= > >= in notin (for IN, several values)."""

    name: str
    op: str
    values: tuple[Literal, ...]


@dataclass(frozen=True)
class Not:
    expr: Node


@dataclass(frozen=True)
class And:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Node, ...]


Node = Compare | Not | And | Or

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    |(?P<datetime>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|z|[+-]\d{2}:?\d{2})?)?(?![\w:.-]))
    |(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w.]))
    |(?P<op><=|>=|!=|<>|=|<|>)
    |(?P<lparen>\()|(?P<rparen>\))|(?P<comma>,)
    |(?P<word>[A-Za-z_][A-Za-z0-9_]*)""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "true", "false"}
_ESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    column: int


def tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            char = text[pos]
            if char in "'\"":
                raise _error(text, pos, "unterminated string")
            raise _error(text, pos, f"unexpected character {char!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            word = m.group()
            if kind == "word" and word.lower() in _KEYWORDS:
                kind = word.lower()
            tokens.append(_Token(kind, word, pos + 1))
        pos = m.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


def _error(text: str, pos: int, message: str) -> SearchQueryError:
    return SearchQueryError(f"bad where-expression at column {pos + 1}: {message} (in {text!r})")


def parse(text: str) -> Node:
    """The tree of a where-expression; `SearchQueryError` (one line) for anything malformed."""
    if not isinstance(text, str) or not text.strip():
        raise SearchQueryError("empty where-expression (e.g. Customer = 'acme' AND Amount > 100)")
    if len(text) > MAX_LENGTH:
        raise SearchQueryError(f"where-expression longer than {MAX_LENGTH} characters")
    parser = _Parser(text, tokenize(text))
    node = parser.expr(0)
    parser.expect("end", "end of expression")
    if parser.terms > MAX_TERMS:
        raise SearchQueryError(f"where-expression with more than {MAX_TERMS} comparisons")
    return node


class _Parser:
    def __init__(self, text: str, tokens: list[_Token]) -> None:
        self.text, self.tokens, self.pos, self.terms = text, tokens, 0, 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.pos]

    def fail(self, expected: str) -> SearchQueryError:
        t = self.token
        got = "the end" if t.kind == "end" else repr(t.text)
        return _error(self.text, t.column - 1, f"expected {expected}, got {got}")

    def expect(self, kind: str, what: str) -> _Token:
        if self.token.kind != kind:
            raise self.fail(what)
        self.pos += 1
        return self.tokens[self.pos - 1]

    def expr(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise _error(self.text, self.token.column - 1, f"nested more than {MAX_DEPTH} deep")
        parts = [self.conjunction(depth)]
        while self.token.kind == "or":
            self.pos += 1
            parts.append(self.conjunction(depth))
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def conjunction(self, depth: int) -> Node:
        parts = [self.unary(depth)]
        while self.token.kind == "and":
            self.pos += 1
            parts.append(self.unary(depth))
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def unary(self, depth: int) -> Node:
        t = self.token
        if t.kind == "not":
            self.pos += 1
            if depth > MAX_DEPTH:
                raise _error(self.text, t.column - 1, f"nested more than {MAX_DEPTH} deep")
            return Not(self.unary(depth + 1))
        if t.kind == "lparen":
            self.pos += 1
            node = self.expr(depth + 1)
            self.expect("rparen", "')'")
            return node
        name = self.expect("word", "an attribute name, NOT or '('").text
        self.terms += 1
        if self.token.kind in ("in", "not"):
            negated = self.token.kind == "not"
            self.pos += 1
            if negated:
                self.expect("in", "IN after NOT")
            self.expect("lparen", "'(' after IN")
            values = [self.literal()]
            while self.token.kind == "comma":
                self.pos += 1
                values.append(self.literal())
            self.expect("rparen", "',' or ')'")
            return Compare(name, "notin" if negated else "in", tuple(values))
        op = self.expect("op", "a comparison (= != < <= > >= IN)").text
        return Compare(name, "!=" if op == "<>" else op, (self.literal(),))

    def literal(self) -> Literal:
        t = self.token
        self.pos += 1
        if t.kind == "string":
            return Literal("string", _ESCAPE.sub(r"\1", t.text[1:-1]), t.text)
        if t.kind in ("true", "false"):
            return Literal("bool", t.kind == "true", t.text)
        if t.kind == "datetime":
            value = parse_datetime(t.text)
            if value is None:
                raise _error(self.text, t.column - 1, f"{t.text} is not a valid date or datetime")
            return Literal("datetime", value, t.text)
        if t.kind == "number":
            if re.fullmatch(r"-?\d+", t.text):
                value = int(t.text)
                if not -INT64 <= value < INT64:
                    raise _error(self.text, t.column - 1, f"{t.text} does not fit in 64 bits")
                return Literal("int", value, t.text)
            number = float(t.text)
            if number in (float("inf"), float("-inf")):
                raise _error(self.text, t.column - 1, f"{t.text} is too large")
            return Literal("float", number, t.text)
        self.pos -= 1
        raise self.fail("a value (a quoted string, a number, true, false or an ISO date)")


def names(node: Node) -> set[str]:
    """Every attribute name the expression compares."""
    if isinstance(node, Compare):
        return {node.name}
    if isinstance(node, Not):
        return names(node.expr)
    return set().union(*(names(p) for p in node.parts))
