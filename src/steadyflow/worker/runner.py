"""Run one activity task in this process and turn what happened into a completion or a failure.

Nothing here talks to the engine: the worker's supervisor (or the local runner) does, so a task
that crashes its process cannot leave a half-reported result behind.

Most tasks name a decorated function, found with `find_activity`. A `TaskHandler` runs the tasks
of one activity name instead: the worker pool takes a `handlers` mapping (name -> handler), which
is how a stefuna `Worker` subclass serves an activity known only by name
(`steadyflow.stepfunctions`). A handler builds its own `Outcome`, so it decides how results and
failures are encoded.

An `async def` activity runs as a coroutine: `run_task_async` awaits it on the caller's event loop
(a worker process with `async_concurrency` > 1 runs many at once, see `aio.py`); `run_task` runs it
to its end with `asyncio.run` (one at a time: a plain worker process, the local runner). Either
way its input and result go through the payload layer as a plain function's do, and its
`alarm_timeout` cancels the coroutine (`asyncio.timeout`) instead of raising SIGALRM.

A function activity (plain or `async def`) runs between the pre- and post-execution middlewares
its process installed (`middlewares.py`; a worker child installs them at start).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import logging
import signal
import threading
import traceback
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from .. import tracing
from ..activity import Activity, ActivityCancelled, TaskContext, _current_task, find_activity
from ..errors import PayloadError, PayloadTooLarge
from ..payload import json as sfjson
from ..payload.converter import default_payloads
from ..payload.serializers import SAFE
from ..payload.stored import has_stored_items, resolve_stored_items
from . import middlewares

log = logging.getLogger("steadyflow.worker")

REASON_LIMIT = 256
_INPUT_KEYS = frozenset({"args", "kwargs", "__extra"})
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """`ok` with `result` (JSON text), or a failure with `reason` and `details` (JSON text)."""

    ok: bool
    result: str | None = None
    reason: str | None = None
    details: str | None = None


class TaskHandler:
    """Runs the tasks of one activity name in a worker process, in place of a function lookup.

    An instance is pickled into every child process of the pool; `start()` runs once there before
    the first task (a failure stops that process from starting), then `run(task)` once per task,
    inside the task's context (`steadyflow.heartbeat()` and `context()` work) and under its alarm.
    """

    def start(self) -> None:
        """Prepare this process (build the per-process instance). The default does nothing."""

    def run(self, task: dict[str, Any]) -> Outcome:
        """Run one task (the fields of `engines.base.ActivityTask` as a dict); never raise for the
        task's own errors: turn them into a failed `Outcome`."""
        raise NotImplementedError


def decode_input(
    text: str | None, payloads: Any = None, accepts: frozenset[str] = SAFE, receiver: str = "the activity"
) -> tuple[list[Any], dict[str, Any]]:
    """simpleflow's input: `{"args": [...], "kwargs": {...}}`; a list is positional arguments.

    Any other JSON value (an object with other keys, as a Step Functions input is) is the one
    positional argument. pyswf's `[[args], {kwargs}]` is read as args and kwargs.
    """
    payloads = payloads or default_payloads()
    return split_input(payloads.loads(text, accepts, receiver) if text else {})


def split_input(data: Any) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments of a decoded input (see `decode_input`)."""
    if isinstance(data, list) and len(data) == 2 and isinstance(data[0], list) and isinstance(data[1], dict):
        return list(data[0]), dict(data[1])
    if isinstance(data, list):
        return data, {}
    if isinstance(data, dict) and set(data) <= _INPUT_KEYS:
        return list(data.get("args") or ()), dict(data.get("kwargs") or {})
    return [data], {}


def attempt_of(control: str | None) -> int:
    try:
        data = json.loads(control) if control else {}
    except ValueError:
        return 1
    return int(data.get("attempt", 1)) if isinstance(data, dict) else 1


def failure_outcome(exc: BaseException, tb: list[str] | None = None) -> Outcome:
    """simpleflow's failure format: `reason = "<Class>: <message>"`, details with the traceback."""
    cls = type(exc)
    error_type = cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    return failure(
        cls.__name__,
        str(exc),
        tb if tb is not None else traceback.format_exception(cls, exc, exc.__traceback__),
        error_type=error_type,
    )


def failure(error: str, message: str, tb: list[str] | None = None, error_type: str | None = None, **extra: Any) -> Outcome:
    """A failed outcome with `reason = "<error>: <message>"` (cut to 256 characters) and details
    holding `error`, `error_type`, `message`, `traceback` and any `extra` fields."""
    reason = f"{error}: {message}"
    if len(reason) > REASON_LIMIT:
        reason = reason[: REASON_LIMIT - 4] + " ..."
    details = {"error": error, "error_type": error_type or error, "message": message, "traceback": tb or [], **extra}
    return Outcome(False, reason=reason, details=sfjson.dumps(details))


@contextmanager
def alarm(seconds: float | None) -> Iterator[None]:
    """Raise `TimeoutError("alarm_timeout of Ns exceeded")` in this thread after `seconds`.

    SIGALRM runs its handler between bytecodes of the main thread, so code stuck in one C call
    sees it only when the call returns: the worker's hard timeout is for that case. Outside the
    main thread (where signals cannot be handled) nothing is armed.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError(f"alarm_timeout of {seconds:g}s exceeded")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def is_async(activity: Activity) -> bool:
    """True when the activity's function is an `async def` (its tasks run as coroutines)."""
    return inspect.iscoroutinefunction(activity.func)


def _arguments(task: dict[str, Any], activity: Activity, payloads: Any) -> tuple[list[Any], dict[str, Any], Any]:
    """(args, kwargs, trace carrier) of the task's input."""
    opts = activity.options
    text = task.get("input")
    data = payloads.loads(text, SAFE | {opts.serializer}, f"activity {opts.name}") if text else {}
    args, kwargs = split_input(data)
    if has_stored_items((args, kwargs)):
        ctx = _current_task.get()
        args, kwargs = resolve_stored_items((args, kwargs), ctx.state_data_client if ctx else None)
    return args, kwargs, tracing.carrier_of(data)


def _span(task: dict[str, Any], carrier: Any) -> Any:
    return tracing.span(f"RunActivity:{task['name']}", carrier, workflow_id=task.get("workflow_id"),
                        run_id=task.get("run_id"), activity_id=task.get("activity_id"),
                        attempt=attempt_of(task.get("control")))


def _encoded(task: dict[str, Any], activity: Activity, result: Any, payloads: Any) -> Outcome:
    opts = activity.options
    try:
        return Outcome(True, result=payloads.dumps(result, opts.serializer, opts.store))
    except PayloadTooLarge as exc:
        return failure_outcome(PayloadTooLarge(f"result of activity {task['name']}: {exc}"), tb=[])
    except PayloadError as exc:
        label = "JSON" if opts.serializer == "json" else opts.serializer
        return failure_outcome(PayloadError(f"result of activity {task['name']} is not {label}-serialisable: {exc}"), tb=[])


def run_function(task: dict[str, Any], modules: tuple[str, ...] = (), payloads: Any = None) -> Outcome:
    """The default way to run a task: find the activity by name, call it, encode its result.

    A missing or corrupt input blob fails the attempt like any error (it is retried as the
    activity's policy says); the execution itself is untouched. An activity that returns an
    awaitable (an `async def` behind a plain wrapper) has it run to its end here.
    """
    payloads = payloads or default_payloads()
    activity = find_activity(task["name"], modules)
    args, kwargs, carrier = _arguments(task, activity, payloads)
    with _span(task, carrier):
        result = _through_middlewares(task, activity, args, kwargs, lambda: _call(activity, args, kwargs))
    return _encoded(task, activity, result, payloads)


def _call(activity: Activity, args: list[Any], kwargs: dict[str, Any]) -> Any:
    result = activity.func(*args, **kwargs)
    if inspect.isawaitable(result):
        result = run_coroutine(_awaited(result))
    return result


def _through_middlewares(task: dict[str, Any], activity: Activity, args: list[Any], kwargs: dict[str, Any],
                         call: Callable[[], T]) -> T:
    """`call()`, between the pre- and post-execution middlewares this process installed
    (`worker/middlewares.py`), if any."""
    loaded = middlewares.active()
    if loaded is None:
        return call()
    return loaded.around(middlewares.activity_context(task, activity.options.version, args, kwargs), call)


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


async def run_function_async(
    task: dict[str, Any], activity: Activity, payloads: Any = None, alarm_timeout: float | None = None
) -> Outcome:
    """`run_function` for an `async def` activity, awaited on the running loop; `alarm_timeout`
    cancels it and raises `TimeoutError("alarm_timeout of Ns exceeded")` (there is no SIGALRM
    for one coroutine among many)."""
    payloads = payloads or default_payloads()
    args, kwargs, carrier = _arguments(task, activity, payloads)
    timeout = asyncio.timeout(alarm_timeout or None)
    try:
        with _span(task, carrier):
            async with timeout:
                loaded = middlewares.active()
                if loaded is None:
                    result = await activity.func(*args, **kwargs)
                else:
                    context = middlewares.activity_context(task, activity.options.version, args, kwargs)
                    result = await loaded.around_async(context, lambda: activity.func(*args, **kwargs))
    except TimeoutError:
        if timeout.expired():
            raise TimeoutError(f"alarm_timeout of {alarm_timeout:g}s exceeded") from None
        raise
    return _encoded(task, activity, result, payloads)


def run_coroutine(coro: Awaitable[T]) -> T:
    """Run a coroutine to its end from synchronous code: `asyncio.run` in this thread, or in a
    helper thread (with this thread's context) when an event loop already runs here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    with ThreadPoolExecutor(1, thread_name_prefix="steadyflow-coroutine") as helper:
        return helper.submit(contextvars.copy_context().run, asyncio.run, coro).result()


def run_task(
    task: dict[str, Any],
    send_heartbeat: Callable[[Any], bool] | None = None,
    modules: tuple[str, ...] = (),
    handlers: Mapping[str, TaskHandler] | None = None,
    alarm_timeout: float | None = None,
    payloads: Any = None,
    engine: Any = None,
) -> Outcome:
    """Run one task with the handler registered for its name, or as a function activity.

    `task` carries the fields of `engines.base.ActivityTask` as a dict (it crosses process pipes).
    Whatever the task raises becomes a failed outcome; nothing else is affected. `engine` (or a
    function that opens it) serves `context().stop_execution()` and `context().state_data_client`.
    An `async def` activity is run to its end with `asyncio.run` (see `run_coroutine`).
    """
    payloads = payloads or default_payloads()
    ctx = TaskContext(dict(task, attempt=attempt_of(task.get("control"))), send_heartbeat, payloads, engine)
    token = _current_task.set(ctx)
    handler = (handlers or {}).get(task["name"])
    try:
        if handler is None:
            activity = find_activity(task["name"], modules)
            if is_async(activity):
                return run_coroutine(run_function_async(task, activity, payloads, alarm_timeout))
        with alarm(alarm_timeout):
            if handler is not None:
                return handler.run(task)
            return run_function(task, modules, payloads)
    except (Exception, ActivityCancelled) as exc:
        return failure_outcome(exc)
    finally:
        _current_task.reset(token)


async def run_task_async(
    task: dict[str, Any],
    activity: Activity,
    send_heartbeat: Callable[[Any], bool] | None = None,
    alarm_timeout: float | None = None,
    payloads: Any = None,
    engine: Any = None,
) -> Outcome:
    """`run_task` for an `async def` activity, awaited on the running loop.

    Run it as its own asyncio task: the task's context is a copy, so the `TaskContext` set here
    (what `steadyflow.heartbeat()` and `context()` find) is this task's alone.
    """
    payloads = payloads or default_payloads()
    ctx = TaskContext(dict(task, attempt=attempt_of(task.get("control"))), send_heartbeat, payloads, engine)
    token = _current_task.set(ctx)
    try:
        return await run_function_async(task, activity, payloads, alarm_timeout)
    except (Exception, ActivityCancelled, asyncio.CancelledError) as exc:
        return failure_outcome(exc)
    finally:
        _current_task.reset(token)
