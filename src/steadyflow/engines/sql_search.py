"""Search attributes in the SQL engines: the index rows (schema version 6) and where-expressions.

A mixin of `SQLEngine`, used inside its transactions: `_new_run` indexes what the started event
records, `_apply_decision` what a `SEARCH_MARKER` marker records, so the index commits with the
history or not at all. The memory engine (`memory.py`) keeps the same in dictionaries.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..search import Decoded, Where, decode_attributes, encode_attributes, from_columns, to_columns

Conn = Any

_DELETE = "DELETE FROM steadyflow_search_attributes WHERE execution = ? AND name = ?"
_INSERT = """INSERT INTO steadyflow_search_attributes (execution, name, type, text_value, int_value, real_value)
    VALUES (?, ?, ?, ?, ?, ?)"""
_TYPE = "SELECT 1 FROM steadyflow_search_types WHERE name = ? AND type = ?"
_ADD_TYPE = "INSERT INTO steadyflow_search_types (name, type) VALUES (?, ?) ON CONFLICT DO NOTHING"
_TYPES = "SELECT name, type FROM steadyflow_search_types WHERE name IN ({marks})"
_OF = """SELECT execution, name, type, text_value, int_value, real_value FROM steadyflow_search_attributes
    WHERE execution IN ({marks}) ORDER BY name"""


def marks(count: int) -> str:
    return ", ".join("?" * count)


class SearchMixin:
    """Uses `SQLEngine._placeholders`."""

    def _index_search(self, conn: Conn, execution: int, changes: Mapping[str, Decoded | None]) -> None:
        """Set (or, for None, remove) an execution's attributes; note each (name, type) in use."""
        sql = self._placeholders  # type: ignore[attr-defined]
        for name, item in changes.items():
            conn.execute(sql(_DELETE), (execution, name))
            if item is None:
                continue
            kind, text, integer, real = to_columns(item)
            conn.execute(sql(_INSERT), (execution, name, kind, text, integer, real))
            # Read first: the insert, which may wait for another writer of the same pair, is then
            # only ever run the first time a name is used with a type.
            if conn.execute(sql(_TYPE), (name, kind)).fetchone() is None:
                conn.execute(sql(_ADD_TYPE), (name, kind))

    def _index_marker(self, conn: Conn, execution: int, details: str | None) -> None:
        self._index_search(conn, execution, decode_attributes(json.loads(details or "null"), removals=True))

    def _search_of(self, conn: Conn, executions: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Each execution's attributes, name -> Python value."""
        found: dict[int, dict[str, Any]] = {e: {} for e in executions}
        sql = self._placeholders  # type: ignore[attr-defined]
        for start in range(0, len(executions), 500):
            chunk = list(executions[start : start + 500])
            for row in conn.execute(sql(_OF.format(marks=marks(len(chunk)))), chunk):
                found[row[0]][row[1]] = from_columns(row[2], row[3], row[4], row[5])
        return found

    def _encoded_search_of(self, conn: Conn, execution: int) -> dict[str, Any] | None:
        """An execution's attributes in the form a started event records (None when it has none)."""
        return encode_attributes(self._search_of(conn, [execution])[execution]) or None

    def _where_clause(self, conn: Conn, where: Where) -> tuple[str, list[Any]]:
        """The where-expression as a condition on executions, checked against the types in use."""
        return where.sql(self._search_types(conn, where.attribute_names))

    def _search_types(self, conn: Conn, names: Iterable[str]) -> dict[str, set[str]]:
        wanted = sorted(names)
        types: dict[str, set[str]] = {}
        if wanted:
            sql = self._placeholders(_TYPES.format(marks=marks(len(wanted))))  # type: ignore[attr-defined]
            for name, kind in conn.execute(sql, wanted):
                types.setdefault(name, set()).add(kind)
        return types
