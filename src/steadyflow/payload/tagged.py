"""Values JSON cannot hold, as small tagged objects, so that they come back as the same type.

Plain JSON would turn a tuple into a list, a datetime into a string and a set into an error; a
workflow that compares what it sent with what came back would then see a different value after a
replay. Every non-JSON type supported here becomes `{"__sf__": TYPE, "v": ...}`; values that JSON
holds natively keep their natural form, so payloads of plain data stay byte-compatible with
simpleflow's. A user dict that happens to use the tag key is itself tagged (as `dict`), so the tag
can never be forged by data.

Dataclasses and enums are rebuilt only from classes already imported in the decoding process:
a payload names its class but cannot make a process import anything.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import decimal
import enum
import json
import sys
import uuid
from typing import Any

from ..errors import PayloadError
from .stored import StoredItem

TAG = "__sf__"
_PLAIN = (str, int, float, bool, type(None))


def to_native(value: Any) -> Any:
    """`value` as JSON-native data (dicts with str keys, lists, scalars), tagging the rest."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is list:
        return [to_native(v) for v in value]
    if kind is dict:
        if all(type(k) is str for k in value) and TAG not in value:
            return {k: to_native(v) for k, v in value.items()}
        pairs = [[to_native(k), to_native(v)] for k, v in value.items()]
        return {TAG: "dict", "v": sorted(pairs, key=lambda kv: _sort_key(kv[0]))}  # canonical, like sort_keys
    return _tag(value)


def _tag(value: Any) -> Any:
    # A future passed as a value stands for its result (simpleflow does the same).
    result = getattr(value, "_steadyflow_future_result", None)
    if result is not None:
        return to_native(result())
    if isinstance(value, StoredItem):
        return {TAG: "stored_item", "v": [value.table_name, value.partition_key, value.index]}
    if isinstance(value, enum.Enum):
        return {TAG: "enum", "cls": _class_path(type(value)), "v": to_native(value.value)}
    if isinstance(value, _PLAIN):  # subclasses of str/int/float that are not enums
        return value
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return {TAG: "tuple", "v": [to_native(v) for v in value]}
    if isinstance(value, list):
        return [to_native(v) for v in value]
    if isinstance(value, dict):
        return to_native(dict(value))
    if isinstance(value, _dt.datetime):
        return {TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, _dt.date):
        return {TAG: "date", "v": value.isoformat()}
    if isinstance(value, _dt.time):
        return {TAG: "time", "v": value.isoformat()}
    if isinstance(value, _dt.timedelta):
        return {TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, decimal.Decimal):
        return {TAG: "decimal", "v": str(value)}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", "v": str(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {TAG: "bytes", "v": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (set, frozenset)):
        items = sorted((to_native(v) for v in value), key=_sort_key)
        return {TAG: "frozenset" if isinstance(value, frozenset) else "set", "v": items}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: to_native(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {TAG: "dataclass", "cls": _class_path(type(value)), "v": fields}
    if isinstance(value, tuple):  # a namedtuple: its fields, as a tuple
        return {TAG: "tuple", "v": [to_native(v) for v in value]}
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _sort_key(native: Any) -> str:
    """Sets have no order; sorting by the encoded text makes their encoding canonical."""
    return json.dumps(native, sort_keys=True, separators=(",", ":"))


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _loaded_class(path: Any, what: str) -> type:
    if not isinstance(path, str):
        raise PayloadError(f"malformed tagged {what}: class path {path!r} is not a string")
    module_name, _, qualname = path.partition(":")
    module = sys.modules.get(module_name)
    if module is None:
        raise PayloadError(
            f"the payload holds a {what} of class {path}, but module {module_name} is not imported in this "
            "process; import it in the worker or decider (e.g. from the activity's module)"
        )
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise PayloadError(f"the payload holds a {what} of class {path}, which module {module_name} does not define")
    return obj


def from_tagged(obj: dict[str, Any]) -> Any:
    """`json.loads` object hook: rebuild a tagged value (its contents are already rebuilt)."""
    kind = obj.get(TAG)
    if kind is None or len(obj) > 3:
        return obj
    v = obj.get("v")
    try:
        if kind == "tuple":
            return tuple(v)
        if kind == "int":  # msgpack's way to carry integers beyond 64 bits
            return int(v)
        if kind == "dict":
            return {_hashable(k): val for k, val in v}
        if kind == "datetime":
            return _dt.datetime.fromisoformat(v)
        if kind == "date":
            return _dt.date.fromisoformat(v)
        if kind == "time":
            return _dt.time.fromisoformat(v)
        if kind == "timedelta":
            return _dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2])
        if kind == "decimal":
            return decimal.Decimal(v)
        if kind == "uuid":
            return uuid.UUID(v)
        if kind == "bytes":
            return base64.b64decode(v, validate=True)
        if kind == "set":
            return {_hashable(x) for x in v}
        if kind == "frozenset":
            return frozenset(_hashable(x) for x in v)
        if kind == "stored_item":
            return StoredItem(str(v[0]), str(v[1]), int(v[2]))
        if kind == "enum":
            cls = _loaded_class(obj["cls"], "enum")
            if not (isinstance(cls, type) and issubclass(cls, enum.Enum)):
                raise PayloadError(f"{obj['cls']} is not an Enum; refusing to call it from a payload")
            return cls(v)
        if kind == "dataclass":
            return _dataclass(obj["cls"], v)
    except PayloadError:
        raise
    except Exception as exc:  # whatever the constructors raise on bad data
        raise PayloadError(f"malformed tagged value of type {kind!r}: {type(exc).__name__}: {exc}") from None
    raise PayloadError(f"unknown tagged type {kind!r} in payload (written by a newer steadyflow?)")


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


def _dataclass(path: str, fields: dict[str, Any]) -> Any:
    cls = _loaded_class(path, "dataclass")
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise PayloadError(f"{path} is not a dataclass; refusing to build it from a payload")
    init = {f.name: fields[f.name] for f in dataclasses.fields(cls) if f.init and f.name in fields}
    instance = cls(**init)
    for f in dataclasses.fields(cls):
        if not f.init and f.name in fields:
            object.__setattr__(instance, f.name, fields[f.name])
    return instance
