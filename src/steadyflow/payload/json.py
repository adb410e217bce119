"""JSON as simpleflow writes it, so histories and inputs stay byte-compatible during a migration.

Values JSON cannot hold (tuples, datetimes, sets, dataclasses...) are tagged, see `tagged`.

Compact separators and sorted keys make the encoding canonical: replay compares recorded inputs and
marker details as strings, so the same value must always produce the same text.
"""

from __future__ import annotations

import json as _json
from typing import Any

from ..errors import PayloadError
from .tagged import from_tagged, to_native


def dumps(value: Any, pretty: bool = False) -> str:
    """Encode canonically; raise `PayloadError` naming the type that JSON cannot hold."""
    try:
        native = to_native(value)
        if pretty:
            return _json.dumps(native, sort_keys=True, indent=4)
        return _json.dumps(native, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        raise PayloadError(str(exc)) from exc


def loads(text: str | bytes | None) -> Any:
    """Decode; `None` and the empty string decode to `None`."""
    if text is None or text == "" or text == b"":
        return None
    try:
        return _json.loads(text, object_hook=from_tagged)
    except RecursionError:
        raise PayloadError("invalid JSON: nested too deeply") from None
    except ValueError as exc:
        raise PayloadError(f"invalid JSON: {exc}") from exc


def loads_or_raw(text: str | None) -> Any:
    """Decode, keeping text that is not JSON as it is (simpleflow's `json_loads_or_raw`)."""
    if not text:
        return None
    try:
        return _json.loads(text, object_hook=from_tagged)
    except PayloadError:
        raise
    except (ValueError, RecursionError):
        return text
