"""Settings: simpleflow's `simpleflow.settings`, with its names and the same three layers.

A setting's value is, first found:

1. an environment variable of the setting's own name (`ACTIVITY_HEARTBEAT_TIMEOUT=60`);
2. the attribute of that name in the settings module named by `STEADYFLOW_SETTINGS_MODULE`
   (simpleflow's `SIMPLEFLOW_SETTINGS_MODULE` is read when ours is not set);
3. the default below.

Values are read once per process, on first use (`load()` reads them again), so a worker's child
processes read the same environment as their supervisor. `configure({...})` and `put_setting`
override values in this process, as simpleflow's do; `steadyflow info settings` prints them.

Module attributes work as in simpleflow: `from steadyflow import settings;
settings.ACTIVITY_DEFAULT_TASK_LIST`.

Where steadyflow's defaults differ from simpleflow's, steadyflow's are kept (see
docs/settings.md): activities go to their workflow's task list unless `ACTIVITY_DEFAULT_TASK_LIST`
is set, and activity timeouts are unset (no timeout) except the heartbeat's 30 s, because
steadyflow's supervisor heartbeats running tasks by itself.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pprint import pformat
from typing import Any

from .errors import ConfigError

MODULE_ENV = "STEADYFLOW_SETTINGS_MODULE"
SIMPLEFLOW_MODULE_ENV = "SIMPLEFLOW_SETTINGS_MODULE"


def _text(value: Any) -> str:
    return str(value)


def _optional_text(value: Any) -> str | None:
    return None if value is None or str(value).strip() == "" else str(value)


def _seconds(value: Any) -> float | None:
    """Seconds as simpleflow writes them ("300"), or none: unset, "", "none" (no timeout)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected seconds, not {value!r}")
    seconds = float(value)
    if seconds <= 0:
        raise ValueError(f"expected a positive number of seconds, not {value!r}")
    return seconds


def _paths(value: Any) -> tuple[str, ...]:
    """Dotted paths: a list in a settings module, comma-separated text in the environment."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(str(item).strip() for item in items if str(item).strip())


@dataclass(frozen=True)
class Setting:
    """One setting: its parser (text from the environment, or a module's value) and default."""

    name: str
    parse: Callable[[Any], Any]
    default: Any
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("WORKFLOW_DEFAULT_TASK_LIST", _text, "default",
            "Decision task list of a workflow class without `task_list` (simpleflow's default)."),
    Setting("ACTIVITY_DEFAULT_TASK_LIST", _optional_text, None,
            "Task list of an activity without `task_list`; unset: its workflow's task list."),
    Setting("ACTIVITY_DEFAULT_VERSION", _text, "default", "Version of an activity without `version`."),
    Setting("ACTIVITY_START_TO_CLOSE_TIMEOUT", _seconds, None,
            "Seconds an attempt may run, when the activity does not say; unset: no limit."),
    Setting("ACTIVITY_SCHEDULE_TO_CLOSE_TIMEOUT", _seconds, None,
            "Seconds from scheduling to the end of an attempt; unset: no limit."),
    Setting("ACTIVITY_SCHEDULE_TO_START_TIMEOUT", _seconds, None,
            "Seconds an attempt may wait for a worker; unset: no limit."),
    Setting("ACTIVITY_HEARTBEAT_TIMEOUT", _seconds, 30.0,
            "Seconds without a heartbeat before an attempt times out (the worker beats by itself)."),
    Setting("ACTIVITY_MIDDLEWARES_PRE", _paths, (),
            "Dotted paths of functions every worker calls before each activity attempt: f(context)."),
    Setting("ACTIVITY_MIDDLEWARES_POST", _paths, (),
            "Dotted paths of functions called after each attempt: f(context, result=..., exception=...)."),
)
BY_NAME: Mapping[str, Setting] = {s.name: s for s in SETTINGS}

_lock = threading.RLock()
_values: dict[str, Any] | None = None
_sources: dict[str, str] = {}


def module_name(env: Mapping[str, str] | None = None) -> str | None:
    """The settings module the environment names, if any."""
    env = os.environ if env is None else env
    return env.get(MODULE_ENV) or env.get(SIMPLEFLOW_MODULE_ENV) or None


def load(conf_module_name: str | None = None, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read every setting again (environment, then the settings module, then the default).

    Raises `ConfigError` (one line) when the settings module does not import or a value does
    not parse.
    """
    global _values
    env = os.environ if env is None else env
    name = conf_module_name or module_name(env)
    conf: Any = None
    if name:
        try:
            conf = importlib.import_module(name)
        except Exception as exc:
            var = MODULE_ENV if env.get(MODULE_ENV) else SIMPLEFLOW_MODULE_ENV
            raise ConfigError(
                f"cannot import settings module {name!r} ({var}): {type(exc).__name__}: {exc}"
            ) from exc
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        if setting.name in env:
            raw, source = env[setting.name], "environment"
        elif conf is not None and hasattr(conf, setting.name):
            raw, source = getattr(conf, setting.name), f"module {name}"
        else:
            values[setting.name], sources[setting.name] = setting.default, "default"
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"setting {setting.name} (from the {source}): {exc}") from None
        sources[setting.name] = source
    with _lock:
        _values = values
        _sources.clear()
        _sources.update(sources)
    return dict(values)


def reset() -> None:
    """Forget the values read and any `configure`: the next use reads them again (for tests,
    and for a process whose environment changed)."""
    global _values
    with _lock:
        _values = None
        _sources.clear()


def _loaded() -> dict[str, Any]:
    with _lock:
        if _values is None:
            load()
        assert _values is not None
        return _values


def get(name: str) -> Any:
    """The value of setting `name` (read on first use)."""
    if name not in BY_NAME:
        raise ConfigError(f"unknown setting {name!r} (known: {', '.join(BY_NAME)})")
    return _loaded()[name]


def source(name: str) -> str:
    """Where the value of `name` came from: `environment`, `module X`, `default` or `configure`."""
    _loaded()
    return _sources.get(name, "default")


def put_setting(key: str, value: Any) -> None:
    """Override one setting in this process (simpleflow's name); the value is parsed as the
    setting's own. Child processes read the environment, not this."""
    setting = BY_NAME.get(key)
    if setting is None:
        raise ConfigError(f"unknown setting {key!r} (known: {', '.join(BY_NAME)})")
    try:
        parsed = setting.parse(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {key}: {exc}") from None
    with _lock:
        _loaded()[key] = parsed
        _sources[key] = "configure"


def configure(dct: Mapping[str, Any]) -> None:
    """Override several settings in this process (simpleflow's `configure`)."""
    for key, value in dct.items():
        put_setting(key, value)


def as_dict() -> dict[str, Any]:
    """Every setting and its value, in name order."""
    values = _loaded()
    return {name: values[name] for name in sorted(values)}


def print_settings() -> None:
    """simpleflow's `print_settings`: `NAME=value` lines, in name order."""
    for key, value in as_dict().items():
        print(f"{key}={pformat(value)}")


class _SettingsModule(types.ModuleType):
    """Lets `settings.ACTIVITY_DEFAULT_TASK_LIST` read a setting, as simpleflow's module does."""

    def __getattr__(self, name: str) -> Any:
        if name in BY_NAME:
            return get(name)
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")


sys.modules[__name__].__class__ = _SettingsModule

__all__ = [
    "MODULE_ENV",
    "SETTINGS",
    "SIMPLEFLOW_MODULE_ENV",
    "Setting",
    "as_dict",
    "configure",
    "get",
    "load",
    "module_name",
    "print_settings",
    "put_setting",
    "reset",
    "source",
]
