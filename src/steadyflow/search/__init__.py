"""Typed search attributes and the where-language that lists executions by them (docs/search.md)."""

from __future__ import annotations

from .compile import Where, parse_where
from .query import SearchQueryError
from .values import (
    BUILTINS,
    SEARCH_MARKER,
    TYPES,
    Decoded,
    SearchAttributeError,
    decode_attributes,
    encode_attributes,
    from_columns,
    shown,
    to_columns,
    upsert,
)

__all__ = [
    "BUILTINS",
    "SEARCH_MARKER",
    "TYPES",
    "Decoded",
    "SearchAttributeError",
    "SearchQueryError",
    "Where",
    "decode_attributes",
    "encode_attributes",
    "from_columns",
    "parse_where",
    "shown",
    "to_columns",
    "upsert",
]
