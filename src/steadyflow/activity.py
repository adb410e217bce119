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
from .payload.serializers import get_serializer
from .retry import NO_RETRY, RetryPolicy

DEFAULT_VERSION = "default"
DEFAULT_TASK_LIST = "default"
DEFAULT_HEARTBEAT_TIMEOUT = 30.0
"""The worker's supervisor heartbeats running tasks by itself, so this only has to outlast a
missed beat or two; it bounds how long a task held by a dead worker stays stuck."""


class _FromSettings:
    """The default of a `with_attributes` parameter that `steadyflow.settings` provides
    (a sentinel, since None already means "no timeout")."""

    def __repr__(self) -> str:
        return "<from settings>"


FROM_SETTINGS: Any = _FromSettings()

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
    alarm_timeout: float | None = None
    """Seconds after which the worker raises `TimeoutError` inside the running task (SIGALRM), so
    it can clean up; Python code only: a call stuck in C code does not see it until it returns."""
    hard_timeout: float | None = None
    """Seconds after which the worker kills the process running the task (SIGTERM, then SIGKILL),
    even when it is stuck in C code; the attempt fails with `TimeoutError` and may be retried."""
    serializer: str = "json"
    """How this activity's input and result are encoded ("json", "msgpack", "pickle"); pickle
    must be chosen here explicitly, because the worker refuses pickled input otherwise."""
    store: str | None = None
    """Where its large payloads go (`s3://bucket/prefix`, `file:///dir`, `db`); default: the engine's."""
    concurrency_key: str | Callable[..., Any] | None = None
    """The argument (by name), or a function of the arguments, whose value is this task's key
    for its task list's per-key concurrency limit (at most N running for one customer, say)."""


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
    version: str | None = None,
    task_list: str | None = None,
    task_priority: int | None = None,
    retry: int = 0,
    retry_policy: RetryPolicy | None = None,
    start_to_close_timeout: float | _dt.timedelta | None = None,
    schedule_to_close_timeout: float | _dt.timedelta | None = None,
    schedule_to_start_timeout: float | _dt.timedelta | None = None,
    heartbeat_timeout: float | _dt.timedelta | None = FROM_SETTINGS,
    idempotent: bool | None = None,
    raises_on_failure: bool | None = None,
    alarm_timeout: float | _dt.timedelta | None = None,
    hard_timeout: float | _dt.timedelta | None = None,
    serializer: str = "json",
    store: str | None = None,
    concurrency_key: str | Callable[..., Any] | None = None,
    **unsupported: Any,
) -> _Decorator:
    """simpleflow's decorator factory, with its parameter names and meanings.

    `retry=N` means N retries (`maximum_attempts=N+1`, at once, as simpleflow does); `retry_policy=`
    gives backoff and non-retryable types instead. `raises_on_failure=True` fails the workflow as
    soon as the last attempt fails; `False` leaves `.exception` set and `.result` None; when not
    given, reading `.result` raises `TaskFailed`.

    `alarm_timeout` and `hard_timeout` (sqstaskmaster's names) are enforced by the worker that runs
    the activity, not scheduled with it: the alarm raises `TimeoutError` inside the task, the hard
    timeout kills its process. A worker's `--alarm-timeout`/`--hard-timeout` apply when not given.

    `serializer` and `store` are pyswf's per-class choices: how the input and result are encoded,
    and which blob store holds them when they are too large for the history.

    Not given, `version`, `task_list` and the four timeouts come from `steadyflow.settings`
    (`ACTIVITY_DEFAULT_VERSION`, `ACTIVITY_DEFAULT_TASK_LIST`, `ACTIVITY_*_TIMEOUT`), read when
    the function is decorated; `heartbeat_timeout=None` still means no heartbeat timeout.
    """
    from . import settings

    if unsupported:
        raise ConfigError(f"unknown activity attribute(s): {', '.join(sorted(unsupported))}")
    if retry_policy is not None and retry:
        raise ConfigError("give either retry=N or retry_policy=, not both")
    policy = retry_policy or (RetryPolicy.from_retry_count(retry) if retry else NO_RETRY)
    get_serializer(serializer)  # an unknown name fails at import time, not in the worker
    limits = {"alarm_timeout": _seconds(alarm_timeout), "hard_timeout": _seconds(hard_timeout)}
    for key, value in limits.items():
        if value is not None and value <= 0:
            raise ConfigError(f"{key} must be a positive number of seconds, not {value}")

    def timeout(value: float | _dt.timedelta | None, setting: str) -> float | None:
        return settings.get(setting) if value is None or value is FROM_SETTINGS else _seconds(value)

    def options_for(activity_name: str) -> ActivityOptions:
        return ActivityOptions(
            name=activity_name,
            version=version or settings.get("ACTIVITY_DEFAULT_VERSION"),
            task_list=task_list or settings.get("ACTIVITY_DEFAULT_TASK_LIST"),
            priority=task_priority or 0,
            retry_policy=policy,
            start_to_close_timeout=timeout(start_to_close_timeout, "ACTIVITY_START_TO_CLOSE_TIMEOUT"),
            schedule_to_close_timeout=timeout(schedule_to_close_timeout, "ACTIVITY_SCHEDULE_TO_CLOSE_TIMEOUT"),
            schedule_to_start_timeout=timeout(schedule_to_start_timeout, "ACTIVITY_SCHEDULE_TO_START_TIMEOUT"),
            heartbeat_timeout=None if heartbeat_timeout is None else timeout(heartbeat_timeout, "ACTIVITY_HEARTBEAT_TIMEOUT"),
            idempotent=bool(idempotent),
            raises_on_failure=raises_on_failure,
            serializer=serializer,
            store=store,
            concurrency_key=concurrency_key,
            **limits,
        )

    return _Decorator(name, options_for)


def concurrency_key_of(act: Activity, args: list[Any], kwargs: dict[str, Any]) -> str | None:
    """The task's per-key concurrency key, from its arguments as `concurrency_key` says."""
    key = act.options.concurrency_key
    if key is None:
        return None
    if callable(key):
        value = key(*args, **kwargs)
    elif key in kwargs:
        value = kwargs[key]
    else:
        import inspect

        try:
            value = inspect.signature(act.func).bind_partial(*args, **kwargs).arguments.get(key)
        except (TypeError, ValueError):
            value = None
    return None if value is None else str(value)


class _Decorator:
    """What `with_attributes(...)` returns: decorates (and registers) a function; `named()` also
    uses it to build the options of an activity that has no function here."""

    def __init__(self, name: str | None, options_for: Callable[[str], ActivityOptions]) -> None:
        self.name = name
        self.options_for = options_for

    def __call__(self, func: Callable[..., Any]) -> Activity:
        if isinstance(func, Activity):
            func = func.func
        act = Activity(func, self.options_for(self.name or default_name(func)))
        _registry[act.options.name] = act
        return act


def named(name: str, task_list: str | None = None, version: str | None = DEFAULT_VERSION, **attributes: Any) -> Activity:
    """An activity known only by its name, for a workflow to schedule work another codebase runs.

    `self.submit(activity.named("hello"), {"who": "me"})` schedules a task named `hello` on task
    list `hello` (the task list defaults to the name, which is how a stefuna-style `activity-server`
    polls it). The other attributes are `with_attributes`'s. Calling the returned activity locally
    raises `ActivityNotFound`; it is not registered, so it never hides a real definition.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"an activity name must be a non-empty string, not {name!r}")

    def remote_only(*args: Any, **kwargs: Any) -> Any:
        raise ActivityNotFound(
            f"activity {name!r} is known here only by its name: submit it from a workflow, and a worker "
            f"polling task list {task_list or name!r} that defines it runs it"
        )

    remote_only.__name__ = remote_only.__qualname__ = name
    decorator = with_attributes(name=name, version=version, task_list=task_list or name, **attributes)
    return Activity(remote_only, decorator.options_for(name))


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


class ActivityCancelled(BaseException):  # noqa: N818 - the name says what happened, like CancelledError
    """Raised by `heartbeat(details, raise_on_cancel=True)` once cancellation of the task was requested.

    A `BaseException`, like `CancelledError` in workflows, so that a broad `except Exception` in
    activity code does not swallow it; catch it by name to clean up. The worker reports the attempt
    as failed with reason `ActivityCancelled: ...`.
    """


class TaskContext:
    """What a running activity can ask of the worker that runs it."""

    def __init__(
        self,
        task: dict[str, Any],
        send_heartbeat: Callable[[Any], bool] | None = None,
        payloads: Any = None,
        engine: Any = None,
    ) -> None:
        self.task = task
        self._send = send_heartbeat
        self._cancel = False
        self.payloads = payloads
        self._engine = engine  # the engine, or a function that opens it (a worker child opens it late)
        self._state_data: Any = None

    @property
    def engine(self) -> Any:
        if callable(self._engine) and not hasattr(self._engine, "terminate_execution"):
            self._engine = self._engine()
        if self._engine is None:
            raise RuntimeError("this activity runs without an engine (no stop_execution or state data here)")
        return self._engine

    def stop_execution(self, error: str | None = None, cause: str | None = None) -> None:
        """Stop the whole execution this task belongs to, now (py2sfn's name).

        Recorded as `WorkflowExecutionTerminated` with `error` as the reason and `cause` as the
        details; the task's own result is then dropped, as the execution it would answer is gone.
        """
        self.engine.terminate_execution(self.workflow_id, self.run_id or None, reason=error or "stopped by a task",
                                        details=cause)

    @property
    def state_data_client(self) -> Any:
        """py2sfn's `StateDataClient`, namespaced by this workflow id, over the engine's database
        (or DynamoDB when `STEADYFLOW_STATE_DATA=dynamodb://...`)."""
        if self._state_data is None:
            from .statedata import client_for_task

            self._state_data = client_for_task(self.engine, self.workflow_id)
        return self._state_data

    @property
    def cancel_requested(self) -> bool:
        """True once cancellation was requested; cheap enough to poll in a loop (sends nothing)."""
        if not self._cancel and self._send is not None:
            self._cancel = bool(self._send(None))
        return self._cancel

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

    def heartbeat(self, details: Any = None, raise_on_cancel: bool = False) -> bool:
        """Publish `details` (if not None); return True, or raise `ActivityCancelled` when
        `raise_on_cancel`, once cancellation was requested."""
        if self._send is not None:
            self._cancel = bool(self._send(details)) or self._cancel
        if self._cancel and raise_on_cancel:
            raise ActivityCancelled(f"cancellation of activity {self.activity_id or '?'} was requested")
        return self._cancel


_current_task: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar("steadyflow_task", default=None)


def context() -> TaskContext:
    """The running activity's context: ids, attempt number, heartbeat. Only inside a task."""
    ctx = _current_task.get()
    if ctx is None:
        raise RuntimeError("steadyflow.context() is only available inside a running activity")
    return ctx


def heartbeat(details: Any = None, raise_on_cancel: bool = False) -> bool:
    """Report progress from activity code; returns True once cancellation was requested.

    The worker's supervisor already heartbeats running tasks, so calling this is only needed to
    publish progress details (they are kept with the task and end up in `ActivityTaskTimedOut`)
    and to learn of cancellation. With `raise_on_cancel=True` a requested cancellation raises
    `ActivityCancelled` instead of returning True. Outside a worker it does nothing.
    """
    ctx = _current_task.get()
    return ctx.heartbeat(details, raise_on_cancel) if ctx is not None else False


class _ActivityModule(types.ModuleType):
    """Lets `@activity` decorate directly while `activity.with_attributes` stays a module function."""

    def __call__(self, func: Callable[..., Any]) -> Activity:
        return with_attributes()(func)


sys.modules[__name__].__class__ = _ActivityModule
