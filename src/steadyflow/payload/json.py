"""JSON as simpleflow writes it, so histories and inputs stay byte-compatible during a migration.

Compact separators and sorted keys make the encoding canonical: replay compares recorded inputs and
marker details as strings, so the same value must always produce the same text.
"""

from __future__ import annotations

import datetime as _dt
import json as _json
import uuid
from typing import Any

from ..errors import PayloadError


def _default(obj: Any) -> Any:
    if isinstance(obj, _dt.datetime):
        text = obj.isoformat(timespec="milliseconds")
        return text.replace("+00:00", "Z")
    if isinstance(obj, (_dt.date, _dt.time)):
        if isinstance(obj, _dt.time):
            return obj.isoformat(timespec="milliseconds")
        return obj.isoformat()
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).decode("utf-8", errors="replace")
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    # A future passed as a value stands for its result (simpleflow does the same).
    result = getattr(obj, "_steadyflow_future_result", None)
    if result is not None:
        return result()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dumps(value: Any, pretty: bool = False) -> str:
    """Encode canonically; raise `PayloadError` naming the type that JSON cannot hold."""
    try:
        if pretty:
            return _json.dumps(value, default=_default, sort_keys=True, indent=4)
        return _json.dumps(value, default=_default, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise PayloadError(str(exc)) from exc


def loads(text: str | bytes | None) -> Any:
    """Decode; `None` and the empty string decode to `None`."""
    if text is None or text == "" or text == b"":
        return None
    try:
        return _json.loads(text)
    except ValueError as exc:
        raise PayloadError(f"invalid JSON: {exc}") from exc


def loads_or_raw(text: str | None) -> Any:
    """Decode, keeping text that is not JSON as it is (simpleflow's `json_loads_or_raw`)."""
    if not text:
        return None
    try:
        return _json.loads(text)
    except ValueError:
        return text
