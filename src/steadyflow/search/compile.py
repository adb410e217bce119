"""Where-expressions checked against the attribute types in use, then compiled twice: to a
parameterised SQL condition (SQLite and PostgreSQL) and to a Python predicate (memory engine).

Both give the same answers: a comparison is true only for an execution that has the attribute
with a value of a type the literal compares with (so `n != 3` skips executions without `n`, as
SQL's NULL would), and `NOT` negates that two-valued answer. Keywords and bools compare with
`=`, `!=` and `IN` only: the databases would otherwise order text by their collation, Python by
code point.
"""

from __future__ import annotations

import datetime as _dt
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .query import And, Literal, Node, Not, Or, SearchQueryError, names, parse
from .values import BUILTINS, COLUMNS, Decoded, parse_datetime

_EQUALITY = ("=", "!=", "in", "notin")
_SQL_OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "in": "IN", "notin": "NOT IN"}
_PY_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_KIND_NAMES = {
    "string": "a string",
    "int": "an int",
    "float": "a float",
    "bool": "a bool",
    "datetime": "a datetime",
}
_TABLE = "steadyflow_search_attributes"
_EXECUTION = "steadyflow_executions"


def _convert(literal: Literal, kind: str) -> Any:
    """The literal as a value of attribute type `kind`, or None when it does not compare with it."""
    if kind == "keyword":
        return literal.value if literal.kind == "string" else None
    if kind in ("int", "float"):
        return literal.value if literal.kind in ("int", "float") else None
    if kind == "bool":
        return literal.value if literal.kind == "bool" else None
    if literal.kind == "datetime":
        return literal.value
    return parse_datetime(literal.value) if literal.kind == "string" else None


@dataclass(frozen=True)
class Term:
    """A comparison resolved: for each attribute type it applies to, the values to compare with."""

    name: str
    op: str
    column: str | None  # an executions column for a built-in name, else None
    cases: tuple[tuple[str, tuple[Any, ...]], ...]


Resolved = Any  # a tree of And / Or / Not over Terms


def resolve(node: Node, types: Mapping[str, set[str]]) -> Resolved:
    """Check every comparison against the types its attribute holds; `SearchQueryError` if one
    names an unknown attribute or compares with a value of another type."""
    if isinstance(node, And):
        return And(tuple(resolve(p, types) for p in node.parts))
    if isinstance(node, Or):
        return Or(tuple(resolve(p, types) for p in node.parts))
    if isinstance(node, Not):
        return Not(resolve(node.expr, types))
    if node.name in BUILTINS:
        column, kind = BUILTINS[node.name]
        held = {kind}
    else:
        column, held = None, set(types.get(node.name, ()))
        if not held:
            raise SearchQueryError(
                f"unknown search attribute {node.name!r}: no execution has set it "
                f"(built-in names: {', '.join(BUILTINS)})"
            )
    cases = []
    for kind in sorted(held):
        values = tuple(_convert(v, kind) for v in node.values)
        if all(v is not None for v in values):
            cases.append((kind, values))
    if not cases:
        shown = ", ".join(sorted(held))
        bad = next((v for v in node.values if all(_convert(v, k) is None for k in held)), node.values[0])
        raise SearchQueryError(
            f"type mismatch: search attribute {node.name!r} holds {shown} values; {bad.text} is {_KIND_NAMES[bad.kind]}"
        )
    if node.op not in _EQUALITY:
        ordered = [c for c in cases if c[0] not in ("keyword", "bool")]
        if not ordered:
            raise SearchQueryError(
                f"{node.op!r} does not apply to {cases[0][0]} attribute {node.name!r}: use =, != or IN"
            )
        cases = ordered
    return Term(node.name, node.op, column, tuple(cases))


def _sql_value(kind: str, value: Any) -> Any:
    if kind == "datetime":
        return value.timestamp()
    if kind == "bool":
        return int(value)
    return value


def _sql_test(column: str, op: str, kind: str, values: tuple[Any, ...], params: list[Any]) -> str:
    params.extend(_sql_value(kind, v) for v in values)
    if op in ("in", "notin"):
        return f"{column} {_SQL_OPS[op]} ({', '.join('?' * len(values))})"
    return f"{column} {_SQL_OPS[op]} ?"


def to_sql(tree: Resolved, params: list[Any]) -> str:
    """A condition on `steadyflow_executions` with `?` placeholders; their values go to `params`.

    Every name and operator in the text comes from this module's fixed tables.
    """
    if isinstance(tree, And):
        return "(" + " AND ".join(to_sql(p, params) for p in tree.parts) + ")"
    if isinstance(tree, Or):
        return "(" + " OR ".join(to_sql(p, params) for p in tree.parts) + ")"
    if isinstance(tree, Not):
        return f"NOT {to_sql(tree.expr, params)}"
    if tree.column is not None:
        kind, values = tree.cases[0]
        column = f"{_EXECUTION}.{tree.column}"
        return f"({column} IS NOT NULL AND {_sql_test(column, tree.op, kind, values, params)})"
    params.append(tree.name)
    tests = []
    for kind, values in tree.cases:
        params.append(kind)
        tests.append(f"(s.type = ? AND {_sql_test('s.' + COLUMNS[kind], tree.op, kind, values, params)})")
    return (
        f"EXISTS (SELECT 1 FROM {_TABLE} s WHERE s.execution = {_EXECUTION}.id AND s.name = ?"
        f" AND ({' OR '.join(tests)}))"
    )


def _test(op: str, value: Any, values: tuple[Any, ...]) -> bool:
    if op == "in":
        return value in values
    if op == "notin":
        return value not in values
    return _PY_OPS[op](value, values[0])


def to_predicate(tree: Resolved) -> Callable[[Any, Mapping[str, Decoded]], bool]:
    """`matches(info, attributes)`: `info` has the built-in fields (an `ExecutionInfo`), `attributes`
    maps names to (type, value)."""
    if isinstance(tree, And):
        parts = [to_predicate(p) for p in tree.parts]
        return lambda info, attrs: all(p(info, attrs) for p in parts)
    if isinstance(tree, Or):
        parts = [to_predicate(p) for p in tree.parts]
        return lambda info, attrs: any(p(info, attrs) for p in parts)
    if isinstance(tree, Not):
        inner = to_predicate(tree.expr)
        return lambda info, attrs: not inner(info, attrs)
    term: Term = tree

    def matches(info: Any, attrs: Mapping[str, Decoded]) -> bool:
        if term.column is not None:
            kind, values = term.cases[0]
            value = getattr(info, term.column)
            if value is None:
                return False
            if kind == "datetime":
                value = _dt.datetime.fromtimestamp(value, tz=_dt.timezone.utc)
            return _test(term.op, value, values)
        found = attrs.get(term.name)
        if found is None:
            return False
        for kind, values in term.cases:
            if found[0] == kind:
                return _test(term.op, found[1], values)
        return False

    return matches


@dataclass(frozen=True)
class Where:
    """A parsed where-expression; `resolve` it against the types in use to compile it."""

    text: str
    tree: Node

    @property
    def attribute_names(self) -> set[str]:
        """The custom (not built-in) names it compares: whose types the engine must look up."""
        return {n for n in names(self.tree) if n not in BUILTINS}

    def sql(self, types: Mapping[str, set[str]]) -> tuple[str, list[Any]]:
        params: list[Any] = []
        return to_sql(resolve(self.tree, types), params), params

    def predicate(self, types: Mapping[str, set[str]]) -> Callable[[Any, Mapping[str, Decoded]], bool]:
        return to_predicate(resolve(self.tree, types))


def parse_where(text: str) -> Where:
    return Where(text, parse(text))


__all__ = ["Term", "Where", "parse_where", "resolve", "to_predicate", "to_sql"]
