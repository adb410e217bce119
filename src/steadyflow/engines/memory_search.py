"""The memory engine's search index: values live on each execution, this keeps the types in use.

Indexed under the engine's lock, by the same calls that append the started event or the
`SEARCH_MARKER` marker, as the SQL engines do in their transactions (`sql_search.py`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..decisions import Decision, RecordMarker
from ..search import SEARCH_MARKER, Decoded, Where, decode_attributes, encode_attributes, parse_where, upsert


class MemorySearch:
    def __init__(self) -> None:
        self.types: dict[str, set[str]] = {}

    @staticmethod
    def started(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
        """The started event's `searchAttributes` (checked), as keyword arguments of `_new_run`."""
        return {"searchAttributes": encode_attributes(attributes)} if attributes else {}

    @staticmethod
    def of_decisions(decisions: Sequence[Decision]) -> dict[int, dict[str, Decoded | None]]:
        """The changes each search marker among `decisions` makes, by the decision's id();
        `SearchAttributeError` for a malformed one, before anything is applied."""
        return {
            id(d): decode_attributes(json.loads(d.details or "null"), removals=True)
            for d in decisions
            if isinstance(d, RecordMarker) and d.name == SEARCH_MARKER
        }

    def index(self, current: dict[str, Decoded], changes: Any, decoded: bool = False) -> None:
        """Apply `changes` (the JSON form, or decoded) to an execution's attributes."""
        if not changes:
            return
        found = changes if decoded else decode_attributes(changes, removals=True)
        upsert(current, found)
        for name, item in found.items():
            if item is not None:
                self.types.setdefault(name, set()).add(item[0])

    @staticmethod
    def encoded(current: Mapping[str, Decoded]) -> dict[str, Any] | None:
        return encode_attributes({name: value for name, (_, value) in current.items()}) or None

    @staticmethod
    def parse(where: str | None) -> Where | None:
        return parse_where(where) if where is not None else None

    def predicate(self, query: Where) -> Callable[[Any, Mapping[str, Decoded]], bool]:
        """`matches(execution, attributes)`; the execution has the built-in fields by name."""
        return query.predicate({n: set(self.types[n]) for n in query.attribute_names if n in self.types})
