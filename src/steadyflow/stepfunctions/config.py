"""stefuna's configuration: a module (or a dict) of keys over stefuna's defaults, then CLI flags.

Keys and defaults are stefuna's (`stefuna.py`): `name`, `activity_arn`, `processes`, `heartbeat`,
`healthcheck` (8080: on), `maxtasksperchild` (100), `server`, `server_config`, `worker`,
`worker_config`, `loglevel`, `start_method`. steadyflow adds `healthcheck_host` (127.0.0.1),
`grace`, `kill_grace`, `alarm_timeout`, `hard_timeout` and `max_memory` (see `worker start`).

Unlike stefuna, an unknown key is an error (a typo would otherwise be ignored silently), as is any
value out of range; each error is one line naming the key. Attributes of a config module that are
modules themselves (its imports) are not keys.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import logging
import multiprocessing
import os
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .server import Server, activity_name
from .worker import Worker

STEFUNA_DEFAULTS: dict[str, Any] = {
    "name": "StepFunActivityWorker",
    "activity_arn": None,
    "processes": None,
    "heartbeat": 0,
    "healthcheck": 8080,
    "maxtasksperchild": 100,
    "server": None,
    "server_config": {},
    "worker": "UNSET_WORKER_CLASS",
    "worker_config": {},
    "loglevel": "info",
    "start_method": "spawn",
}
STEADYFLOW_DEFAULTS: dict[str, Any] = {
    "healthcheck_host": "127.0.0.1",
    "grace": 30.0,
    "kill_grace": 5.0,
    "alarm_timeout": None,
    "hard_timeout": None,
    "max_memory": None,
}
DEFAULTS = {**STEFUNA_DEFAULTS, **STEADYFLOW_DEFAULTS}
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True)
class Settings:
    """A checked configuration: what `Server(...)` is built with."""

    server_class: type[Server]
    worker_class: type[Worker]
    activity_arn: str
    activity_name: str
    name: str
    loglevel: int
    server_kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self, engine: Any) -> Server:
        return self.server_class(
            name=self.name, activity_arn=self.activity_arn, loglevel=self.loglevel, engine=engine,
            worker_class=self.worker_class, **self.server_kwargs,
        )


def read_config(ref: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """The keys of a config: a dict, a module (dotted name or `.py` path), or a dict inside a module."""
    if ref is None:
        return {}
    if isinstance(ref, Mapping):
        return dict(ref)
    obj = _locate_config(ref)
    if isinstance(obj, types.ModuleType):
        return {k: v for k, v in vars(obj).items() if not k.startswith("_") and not isinstance(v, types.ModuleType)}
    if isinstance(obj, Mapping):
        return dict(obj)
    raise ConfigError(f"--config {ref!r} is {type(obj).__name__}, not a module or a dict")


def _locate_config(ref: str) -> Any:
    if ref.endswith(".py"):
        if not os.path.isfile(ref):
            raise ConfigError(f"--config {ref!r}: no such file")
        spec = importlib.util.spec_from_file_location(os.path.basename(ref)[:-3], ref)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        _run(lambda: spec.loader.exec_module(module), f"--config {ref!r}")  # type: ignore[union-attr]
        return module
    return _locate(ref, "--config")


def _run(func: Any, what: str) -> Any:
    try:
        return func()
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"{what}: {type(exc).__name__}: {exc}") from exc


def _locate(path: str, what: str) -> Any:
    """Import a module, or an attribute of one, by dotted path (pydoc.locate, with errors that say why)."""
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{what}: expected a dotted path, got {path!r}")
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        module_name = ".".join(parts[:i])
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
                continue  # this prefix is not a module: try a shorter one
            raise ConfigError(f"{what}: cannot import {path!r}: {exc}") from exc
        except Exception as exc:
            raise ConfigError(f"{what}: importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
        if i < len(parts) and not hasattr(obj, parts[i]):
            if hasattr(obj, "__path__"):  # a package without that module
                raise ConfigError(f"{what}: cannot import {path!r}: no module named {module_name + '.' + parts[i]!r}")
            raise ConfigError(f"{what}: module {module_name!r} has no attribute {parts[i]!r}")
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                raise ConfigError(f"{what}: {path!r} not found ({'.'.join(parts[:parts.index(attr)])!r} has no {attr!r})")
            obj = getattr(obj, attr)
        return obj
    raise ConfigError(f"{what}: cannot import {path!r}: no module named {parts[0]!r}")


def _class(key: str, value: Any, base: type) -> Any:
    cls = value if isinstance(value, type) else _locate(value, f"config key {key!r}")
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"config key {key!r}: {value!r} is not a subclass of steadyflow.stepfunctions.{base.__name__}")
    return cls


def _number(key: str, value: Any, minimum: float, integer: bool = False, allow_none: bool = True) -> Any:
    if value is None and allow_none:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < minimum:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"config key {key!r} must be {kind} >= {minimum:g}{' or None' if allow_none else ''}, got {value!r}")
    return value


def _dict(key: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"config key {key!r} must be a dict, got {type(value).__name__}")
    return dict(value)


def load_settings(ref: str | Mapping[str, Any] | None = None, **overrides: Any) -> Settings:
    """stefuna's defaults, overridden by the config `ref`, then by the `overrides` that are not None."""
    given = read_config(ref)
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, list(DEFAULTS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(sorted(DEFAULTS))})"
        raise ConfigError(f"unknown config key {key!r}{hint}")
    c = {**DEFAULTS, **given, **{k: v for k, v in overrides.items() if v is not None}}

    if c["worker"] in (None, "", "UNSET_WORKER_CLASS"):
        raise ConfigError("config key 'worker' is not set (give --worker MODULE.Class or worker = '...' in the config)")
    worker_class = _class("worker", c["worker"], Worker)
    server_class = Server if c["server"] in (None, "") else _class("server", c["server"], Server)
    if c["activity_arn"] in (None, ""):
        raise ConfigError("config key 'activity_arn' is not set (give --activity-arn ARN or activity_arn = '...')")
    try:
        name = activity_name(c["activity_arn"])
    except ConfigError as exc:
        raise ConfigError(f"config key 'activity_arn': {exc}") from None
    if not isinstance(c["name"], str) or not c["name"]:
        raise ConfigError(f"config key 'name' must be a non-empty string, got {c['name']!r}")
    level_name = str(c["loglevel"]).lower()
    if level_name not in LOG_LEVELS:
        raise ConfigError(f"config key 'loglevel' must be one of {', '.join(LOG_LEVELS)}, got {c['loglevel']!r}")
    start_method = c["start_method"] or multiprocessing.get_context().get_start_method()
    if start_method not in multiprocessing.get_all_start_methods():
        methods = ", ".join(multiprocessing.get_all_start_methods())
        raise ConfigError(f"config key 'start_method' must be one of {methods} (or ''), got {c['start_method']!r}")
    healthcheck = c["healthcheck"] or None
    if healthcheck is not None and (_number("healthcheck", healthcheck, 1, integer=True) > 65535):
        raise ConfigError(f"config key 'healthcheck' must be a port (1-65535) or 0/None, got {healthcheck!r}")
    kwargs = {
        "processes": _number("processes", c["processes"], 0, integer=True) or None,
        "heartbeat": _number("heartbeat", c["heartbeat"], 0) or 0,
        "maxtasksperchild": _number("maxtasksperchild", c["maxtasksperchild"], 1, integer=True),
        "server_config": _dict("server_config", c["server_config"]),
        "worker_config": _dict("worker_config", c["worker_config"]),
        "healthcheck": healthcheck,
        "start_method": start_method,
        "healthcheck_host": c["healthcheck_host"],
        "grace": _number("grace", c["grace"], 0, allow_none=False),
        "kill_grace": _number("kill_grace", c["kill_grace"], 0, allow_none=False),
        "alarm_timeout": _positive_or_none("alarm_timeout", c["alarm_timeout"]),
        "hard_timeout": _positive_or_none("hard_timeout", c["hard_timeout"]),
        "max_memory": _positive_or_none("max_memory", c["max_memory"]),
    }
    if not isinstance(c["healthcheck_host"], str) or not c["healthcheck_host"]:
        raise ConfigError(f"config key 'healthcheck_host' must be a host name or address, got {c['healthcheck_host']!r}")
    return Settings(
        server_class=server_class,
        worker_class=worker_class,
        activity_arn=c["activity_arn"],
        activity_name=name,
        name=c["name"],
        loglevel=getattr(logging, level_name.upper()),
        server_kwargs=kwargs,
    )


def _positive_or_none(key: str, value: Any) -> float | None:
    if value is not None and (_number(key, value, 0) == 0):
        raise ConfigError(f"config key {key!r} must be a positive number or None, got {value!r}")
    return value


__all__ = ["DEFAULTS", "STEADYFLOW_DEFAULTS", "STEFUNA_DEFAULTS", "Settings", "load_settings", "read_config"]
