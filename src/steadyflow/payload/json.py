"""JSON as simpleflow writes it, so histories and inputs stay byte-compatible during a migration.

Values JSON cannot hold (tuples, datetimes, sets, dataclasses...) are tagged, see `tagged`.

Compact separators and sorted keys make the encoding canonical: replay compares recorded inputs and
marker details as strings, so the same value must always produce the same text.
"""

from __future__ import annotations

import json as _json
import os
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from ..errors import PayloadError
from .tagged import from_tagged, to_native

_CANONICAL = _json.JSONEncoder(sort_keys=True, separators=(",", ":"))
DEFAULT_MAX_NESTING = 200
"""How deeply lists and objects may nest in a payload (`STEADYFLOW_MAX_NESTING` changes it). A
payload bomb nested a thousand deep would be stored, then fail every replay that decodes it with
`RecursionError`: it is refused before anything is written instead."""
#: Strings longer than this are escaped in slices of this size rather than in one piece.
_BIG = 1 << 20


class Pieces:
    """A canonical encoding not yet joined, re-iterable: long strings are escaped slice by slice
    each time it is iterated, so a 50 MB string is never held a second time (escaped) while it
    is measured, hashed, compressed and written. Every piece is ASCII."""

    def __init__(self, parts: list[Any]) -> None:
        self._parts = parts  # str fragments and, as 1-tuples, the long strings

    def __iter__(self) -> Any:
        for part in self._parts:
            if isinstance(part, str):
                yield part
                continue
            string = part[0]
            for start in range(0, len(string), _BIG):
                yield encode_basestring_ascii(string[start:start + _BIG])[1:-1]

    def __str__(self) -> str:
        return "".join(self)


def pieces(value: Any) -> Pieces:
    """The canonical encoding of `value`, in pieces (see `Pieces`)."""
    try:
        _check_nesting(value)  # before `to_native`, which recurses
        native = to_native(value)
        big: list[str] = []
        token = os.urandom(6).hex()
        if _has_big(native):
            native = _swap_big(native, big, token)
        text = _CANONICAL.encode(native)
    except (TypeError, ValueError, RecursionError) as exc:
        raise PayloadError(str(exc)) from exc
    parts: list[Any] = []
    for i, string in enumerate(big):
        before, _, text = text.partition(_CANONICAL.encode(f"\0{token}:{i}\0"))
        parts += [before + '"', (string,), '"']
    parts.append(text)
    return Pieces(parts)


def max_nesting() -> int:
    text = os.environ.get("STEADYFLOW_MAX_NESTING", "")
    return int(text) if text.strip().isdigit() else DEFAULT_MAX_NESTING


def _check_nesting(native: Any) -> None:
    """Refuse a value whose lists and objects nest deeper than `max_nesting()` (walked without recursion)."""
    limit = max_nesting()
    if not isinstance(native, _CONTAINERS):
        return
    stack = [(native, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise PayloadError(f"payload nests deeper than {limit} levels (STEADYFLOW_MAX_NESTING)")
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, _CONTAINERS))


_CONTAINERS = (list, dict, tuple, set, frozenset)


def _has_big(native: Any) -> bool:
    if type(native) is str:
        return len(native) > _BIG
    if type(native) is list:
        return any(_has_big(v) for v in native)
    if type(native) is dict:
        return any(_has_big(v) for v in native.values())
    return False


def _swap_big(native: Any, big: list[str], token: str) -> Any:
    """Big strings replaced by placeholders that JSON cannot produce from user data (random token)."""
    if type(native) is str and len(native) > _BIG:
        big.append(native)
        return f"\0{token}:{len(big) - 1}\0"
    if type(native) is list:
        return [_swap_big(v, big, token) for v in native]
    if type(native) is dict:
        return {k: _swap_big(v, big, token) for k, v in native.items()}
    return native


def dumps(value: Any, pretty: bool = False) -> str:
    """Encode canonically; raise `PayloadError` naming the type that JSON cannot hold."""
    if not pretty:
        return str(pieces(value))
    try:
        return _json.dumps(to_native(value), sort_keys=True, indent=4)
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
