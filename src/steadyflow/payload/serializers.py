"""Serializers: how a value becomes bytes, chosen per activity or workflow (`serializer=`).

JSON is the default and the only format the history shows as text. msgpack is more compact for
binary-heavy data. Pickle runs code while it loads, so it is never chosen for anyone: a payload
marked as pickled is refused unless the activity or workflow receiving it opted in.
"""

from __future__ import annotations

import pickle
from typing import Any

from ..errors import ConfigError, PayloadError
from . import json as sfjson
from .tagged import TAG, from_tagged, to_native

#: What receivers accept unless they opted in to more.
SAFE = frozenset({"json", "msgpack"})


class Serializer:
    """Turns values into bytes and back; `name` is recorded with every non-JSON payload."""

    name = ""

    def dumps(self, value: Any) -> bytes:
        raise NotImplementedError

    def loads(self, data: bytes) -> Any:
        raise NotImplementedError


class JSONSerializer(Serializer):
    name = "json"

    def dumps(self, value: Any) -> bytes:
        return sfjson.dumps(value).encode("utf-8")

    def loads(self, data: bytes) -> Any:
        return sfjson.loads(data)


class MsgpackSerializer(Serializer):
    """msgpack of the same tagged form as JSON, so the same types round-trip; keys sorted and
    integers beyond 64 bits tagged, so equal values always encode alike (replay compares them)."""

    name = "msgpack"

    def __init__(self) -> None:
        try:
            import msgpack
        except ImportError:
            raise ConfigError("serializer='msgpack' needs msgpack: pip install 'steadyflow[msgpack]'") from None
        self._msgpack = msgpack

    def dumps(self, value: Any) -> bytes:
        try:
            return self._msgpack.packb(_canonical(to_native(value)), use_bin_type=True)
        except (TypeError, ValueError, RecursionError) as exc:
            raise PayloadError(str(exc)) from exc

    def loads(self, data: bytes) -> Any:
        try:
            return self._msgpack.unpackb(data, raw=False, object_hook=from_tagged, strict_map_key=False)
        except (ValueError, TypeError, self._msgpack.UnpackException) as exc:
            raise PayloadError(f"invalid msgpack payload: {exc}") from exc


def _canonical(native: Any) -> Any:
    kind = type(native)
    if kind is dict:
        return {k: _canonical(native[k]) for k in sorted(native)}
    if kind is list:
        return [_canonical(v) for v in native]
    if kind is int and not -(2**63) <= native < 2**64:
        return {TAG: "int", "v": str(native)}
    return native


class PickleSerializer(Serializer):
    name = "pickle"

    def dumps(self, value: Any) -> bytes:
        try:
            return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise PayloadError(f"cannot pickle the value: {exc}") from exc

    def loads(self, data: bytes) -> Any:
        try:
            return pickle.loads(data)  # noqa: S301 - only reached when the receiver opted in
        except Exception as exc:
            raise PayloadError(f"cannot unpickle the payload: {type(exc).__name__}: {exc}") from exc


_KINDS: dict[str, type[Serializer]] = {"json": JSONSerializer, "msgpack": MsgpackSerializer, "pickle": PickleSerializer}
_made: dict[str, Serializer] = {}


def get_serializer(name: str | None) -> Serializer:
    name = name or "json"
    if name not in _made:
        kind = _KINDS.get(name)
        if kind is None:
            raise ConfigError(f"unknown serializer {name!r} (expected one of: {', '.join(_KINDS)})")
        _made[name] = kind()
    return _made[name]


def check_allowed(name: str, allowed: frozenset[str], receiver: str) -> None:
    """Refuse a payload whose format its receiver did not accept, saying how to accept it."""
    if name in allowed:
        return
    if name == "pickle":
        raise PayloadError(
            f"{receiver} received a pickled payload and refuses it: unpickling runs code. If the sender is "
            "trusted, opt in with serializer='pickle' (activity.with_attributes(serializer='pickle') or "
            "the Workflow class attribute serializer = 'pickle')"
        )
    raise PayloadError(f"{receiver} received a payload in format {name!r}, which it does not accept")
