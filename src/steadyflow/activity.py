"""Activities: plain functions with attributes, found again by name in the worker.

`activity` is both a decorator (`@activity`) and this module (`activity.with_attributes(...)`,
simpleflow's spelling), so seed code runs with only its import line changed.
"""

from __future__ import annotations

import contextvars
import datetime as _dt
import functools
import importlib
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ActivityNotFound, ConfigError
from .retry import NO_RETRY, RetryPolicy

DEFAULT_VERSION = "default"
DEFAULT_TASK_LIST = "default"
DEFAULT_HEARTBEAT_TIMEOUT = 30.0
"""The worker's supervisor heartbeats running tasks by itself, so this only has to outlast a
missed beat or two; it bounds how long a task held by a dead worker stays stuck."""

_registry: dict[str, Activity] = {}


def _seconds(value: float | _dt.timedelta | None) -> float | None:
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    return None if value is None else float(value)


@dataclass(frozen=True)
class ActivityOptions:
    """The attributes the decider schedules an activity with."""

    name: str
    version: str = DEFAULT_VERSION
    task_list: str | None = None
    priority: int = 0
    retry_policy: RetryPolicy = NO_RETRY
    start_to_close_timeout: float | None = None
    schedule_to_close_timeout: float | None = None
    schedule_to_start_timeout: float | None = None
    heartbeat_timeout: float | None = DEFAULT_HEARTBEAT_TIMEOUT
    idempotent: bool = False
    raises_on_failure: bool | None = None


class Activity:
    """A function plus its options. Calling it calls the function, so it stays testable."""

    def __init__(self, func: Callable[..., Any], options: ActivityOptions) -> None:
        self.func = func
        self.options = options
        functools.update_wrapper(self, func)

    @property
    def name(self) -> str:
        return self.options.name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Activity({self.options.name!r})"


def default_name(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


def with_attributes(
    name: str | None = None,
    version: str | None = DEFAULT_VERSION,
    task_list: str | None = None,
    task_priority: int | None = None,
    retry: int = 0,
    retry_policy: RetryPolicy | None = None,
    start_to_close_timeout: float | _dt.timedelta | None = None,
    schedule_to_close_timeout: float | _dt.timedelta | None = None,
    schedule_to_start_timeout: float | _dt.timedelta | None = None,
    heartbeat_timeout: float | _dt.timedelta | None = DEFAULT_HEARTBEAT_TIMEOUT,
    idempotent: bool | None = None,
    raises_on_failure: bool | None = None,
    **unsupported: Any,
) -> Callable[[Callable[..., Any]], Activity]:
    """simpleflow's decorator factory, with its parameter names and meanings.

    `retry=N` means N retries (`maximum_attempts=N+1`, at once, as simpleflow does); `retry_policy=`
    gives backoff and non-retryable types instead. `raises_on_failure=True` fails the workflow as
    soon as the last attempt fails; `False` leaves `.exception` set and `.result` None; when not
    given, reading `.result` raises `TaskFailed`.
    """
    if unsupported:
        raise ConfigError(f"unknown activity attribute(s): {', '.join(sorted(unsupported))}")
    if retry_policy is not None and retry:
        raise ConfigError("give either retry=N or retry_policy=, not both")
    policy = retry_policy or (RetryPolicy.from_retry_count(retry) if retry else NO_RETRY)

    def decorator(func: Callable[..., Any]) -> Activity:
        if isinstance(func, Activity):
            func = func.func
        options = ActivityOptions(
            name=name or default_name(func),
            version=version or DEFAULT_VERSION,
            task_list=task_list,
            priority=task_priority or 0,
            retry_policy=policy,
            start_to_close_timeout=_seconds(start_to_close_timeout),
            schedule_to_close_timeout=_seconds(schedule_to_close_timeout),
            schedule_to_start_timeout=_seconds(schedule_to_start_timeout),
            heartbeat_timeout=_seconds(heartbeat_timeout),
            idempotent=bool(idempotent),
            raises_on_failure=raises_on_failure,
        )
        act = Activity(func, options)
        _registry[options.name] = act
        return act

    return decorator


def as_activity(obj: Any) -> Activity:
    """Turn a decorated or plain function into an `Activity` (plain ones get default options)."""
    if isinstance(obj, Activity):
        return obj
    if callable(obj):
        known = _registry.get(default_name(obj))
        return known if known is not None and known.func is obj else with_attributes()(obj)
    raise TypeError(f"{obj!r} is not an activity or a function")


def find_activity(name: str, modules: tuple[str, ...] = ()) -> Activity:
    """The activity registered under `name`, importing `modules` or the name's own module first."""
    if name in _registry:
        return _registry[name]
    for module in modules:
        importlib.import_module(module)
        if name in _registry:
            return _registry[name]
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:i])
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError:
            continue
        if name in _registry:
            return _registry[name]
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            break
        if callable(obj):
            return as_activity(obj)
        break
    raise ActivityNotFound(f"unknown activity {name!r}: not registered and not importable")


# -- inside a running activity -------------------------------------------------------------------


class TaskContext:
    """What a running activity can ask of the worker that runs it."""

    def __init__(self, task: dict[str, Any], send_heartbeat: Callable[[Any], bool] | None = None) -> None:
        self.task = task
        self._send = send_heartbeat
        self.cancel_requested = False

    @property
    def workflow_id(self) -> str:
        return str(self.task.get("workflow_id", ""))

    @property
    def run_id(self) -> str:
        return str(self.task.get("run_id", ""))

    @property
    def activity_id(self) -> str:
        return str(self.task.get("activity_id", ""))

    @property
    def attempt(self) -> int:
        return int(self.task.get("attempt", 1))

    def heartbeat(self, details: Any = None) -> bool:
        if self._send is not None:
            self.cancel_requested = bool(self._send(details)) or self.cancel_requested
        return self.cancel_requested


_current_task: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar("steadyflow_task", default=None)


def context() -> TaskContext:
    """The running activity's context: ids, attempt number, heartbeat. Only inside a task."""
    ctx = _current_task.get()
    if ctx is None:
        raise RuntimeError("steadyflow.context() is only available inside a running activity")
    return ctx


def heartbeat(details: Any = None) -> bool:
    """Report progress from activity code; returns True once cancellation was requested.

    The worker's supervisor already heartbeats running tasks, so calling this is only needed to
    publish progress details. Outside a worker it does nothing.
    """
    ctx = _current_task.get()
    return ctx.heartbeat(details) if ctx is not None else False


class _ActivityModule(types.ModuleType):
    """Lets `@activity` decorate directly while `activity.with_attributes` stays a module function."""

    def __call__(self, func: Callable[..., Any]) -> Activity:
        return with_attributes()(func)


sys.modules[__name__].__class__ = _ActivityModule
