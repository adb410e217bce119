"""Typed search attributes: names, types, and the one JSON form every engine and history records.

A search attribute is a named, typed value an execution carries so that executions can be listed
by it (`client.list(where="Customer = 'acme' AND Amount > 100")`). It is set at start and changed
by the workflow itself (`Workflow.upsert_search_attributes`), which records a marker named
`SEARCH_MARKER` in the history; the engine indexes the marker's details in the transaction that
appends it, so the index never disagrees with the history and a replay records nothing new.

Types are those of the value (Temporal's Keyword, Int, Double, Bool, Datetime) and recorded with
it; there is no registry to declare them in first. Alternatives rejected: a declared registry
(Temporal's `operator search-attribute create`) would make a workflow's upsert fail in the engine,
long after the code was written, when another execution used the name with another type; untyped
JSON values would make `n > 3` compare text on one engine and numbers on another.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError

SEARCH_MARKER = "steadyflow.search_attributes"
"""The reserved marker name whose details (`encode_attributes`) the engines index."""

TYPES = ("keyword", "int", "float", "bool", "datetime")
#: The column of the index table each type is kept in (SQL engines).
COLUMNS = {
    "keyword": "text_value",
    "int": "int_value",
    "bool": "int_value",
    "float": "real_value",
    "datetime": "real_value",
}

BUILTINS: dict[str, tuple[str, str]] = {
    "WorkflowId": ("workflow_id", "keyword"),
    "WorkflowType": ("workflow_type", "keyword"),
    "TaskList": ("task_list", "keyword"),
    "ExecutionStatus": ("status", "keyword"),
    "StartTime": ("start_time", "datetime"),
    "CloseTime": ("close_time", "datetime"),
}
"""Names a where-expression may use for what every execution has (name -> column, type); reserved."""

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}\Z")
MAX_PER_CALL = 100
MAX_KEYWORD = 2048
INT64 = 2**63

Decoded = tuple[str, Any]
"""(type, value) with the value as Python holds it: str, int, float, bool or an aware datetime."""


class SearchAttributeError(ConfigError):
    """A search attribute has a bad name or a value of no supported type."""


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise SearchAttributeError(
            f"bad search attribute name {name!r}: letters, digits and _, starting with a letter or _, at most 100"
        )
    if name in BUILTINS:
        raise SearchAttributeError(
            f"search attribute name {name!r} is reserved (built-in: {', '.join(BUILTINS)})"
        )
    return name


def utc(value: _dt.datetime) -> _dt.datetime:
    """An aware datetime in UTC; a naive one is taken as UTC (as the command line shows times)."""
    return (
        value.replace(tzinfo=_dt.timezone.utc) if value.tzinfo is None else value.astimezone(_dt.timezone.utc)
    )


def parse_datetime(text: str) -> _dt.datetime | None:
    """ISO 8601 text (a trailing Z allowed) as an aware UTC datetime; None when it is not one."""
    text = text.strip()
    if not re.match(r"\d{4}-\d{2}-\d{2}", text):
        return None
    try:
        return utc(_dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text))
    except ValueError:
        return None


def typed(name: str, value: Any) -> Decoded:
    """(type, value) of a Python value; `SearchAttributeError` for anything else."""
    if isinstance(value, bool):
        return "bool", value
    if isinstance(value, int):
        if not -INT64 <= value < INT64:
            raise SearchAttributeError(f"search attribute {name!r}: {value} does not fit in 64 bits")
        return "int", value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SearchAttributeError(f"search attribute {name!r}: {value} is not a finite number")
        return "float", value
    if isinstance(value, str):
        if len(value) > MAX_KEYWORD:
            raise SearchAttributeError(
                f"search attribute {name!r}: keyword longer than {MAX_KEYWORD} characters"
            )
        return "keyword", value
    if isinstance(value, _dt.datetime):
        return "datetime", utc(value)
    raise SearchAttributeError(
        f"search attribute {name!r}: {type(value).__name__} is not a search attribute type "
        "(str, int, float, bool, datetime)"
    )


def encode_attributes(attributes: Mapping[str, Any], removals: bool = False) -> dict[str, Any]:
    """The JSON form: `{name: {"type": t, "value": v}}`, datetimes as ISO 8601 UTC text.

    With `removals`, a None value stays None: the upsert removes that attribute.
    """
    if not isinstance(attributes, Mapping):
        raise SearchAttributeError(
            f"search attributes must be a mapping of names to values, not {attributes!r}"
        )
    if len(attributes) > MAX_PER_CALL:
        raise SearchAttributeError(f"at most {MAX_PER_CALL} search attributes at once, got {len(attributes)}")
    encoded: dict[str, Any] = {}
    for name, value in attributes.items():
        check_name(name)
        if value is None and removals:
            encoded[name] = None
            continue
        kind, value = typed(name, value)
        encoded[name] = {"type": kind, "value": value.isoformat() if kind == "datetime" else value}
    return encoded


def decode_attributes(encoded: Any, removals: bool = False) -> dict[str, Decoded | None]:
    """The JSON form back to (type, value), checked as strictly as `encode_attributes` (the engine
    reads it from decisions it did not write)."""
    if not isinstance(encoded, Mapping):
        raise SearchAttributeError(f"search attributes must be a JSON object, not {encoded!r}")
    decoded: dict[str, Decoded | None] = {}
    for name, item in encoded.items():
        check_name(name)
        if item is None and removals:
            decoded[name] = None
            continue
        if not isinstance(item, Mapping) or item.get("type") not in TYPES or "value" not in item:
            raise SearchAttributeError(f"search attribute {name!r}: {item!r} is not a typed value")
        kind, value = item["type"], item["value"]
        if kind == "datetime":
            value = parse_datetime(value) if isinstance(value, str) else None
        elif kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # JSON writes 2.0 as 2.0, but a hand-written one may say 2
        found = typed(name, value) if value is not None else (None, None)
        if found[0] != kind:
            raise SearchAttributeError(f"search attribute {name!r}: {item['value']!r} is not a {kind}")
        decoded[name] = found
    return decoded


def upsert(current: dict[str, Decoded], changes: Mapping[str, Decoded | None]) -> None:
    """Apply decoded changes: set each value, remove those that are None."""
    for name, item in changes.items():
        if item is None:
            current.pop(name, None)
        else:
            current[name] = item


def to_columns(item: Decoded) -> tuple[str, str | None, int | None, float | None]:
    """(type, text_value, int_value, real_value) of the SQL index row."""
    kind, value = item
    if kind == "keyword":
        return kind, value, None, None
    if kind in ("int", "bool"):
        return kind, None, int(value), None
    if kind == "datetime":
        return kind, None, None, value.timestamp()
    return kind, None, None, float(value)


def from_columns(kind: str, text: str | None, integer: int | None, real: float | None) -> Any:
    if kind == "keyword":
        return text
    if kind == "int":
        return int(integer)  # type: ignore[arg-type]
    if kind == "bool":
        return bool(integer)
    if kind == "datetime":
        return _dt.datetime.fromtimestamp(real, tz=_dt.timezone.utc)  # type: ignore[arg-type]
    return float(real)  # type: ignore[arg-type]


def shown(value: Any) -> Any:
    """A value as JSON output shows it (datetimes as ISO text)."""
    return value.isoformat() if isinstance(value, _dt.datetime) else value
