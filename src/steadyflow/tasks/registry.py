"""`@task`: register a function (or a `MessageHandler` subclass) under a task name.

    @task(hard_timeout=600, max_receives=5)
    def resize(path, width):
        ...

    resize.submit(path="a.png", width=100)   # to the decorator's queue or STEADYFLOW_TASKS_URL
    resize("a.png", 100)                     # still a plain function call

`steadyflow tasks worker MODULE --queue URL` imports MODULE and runs each message's task by name,
so consumers need no `if task == ...` chain. Options resolve call > decorator > worker default.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .message_handler import DEFAULT_HARD_TIMEOUT, MessageHandler, validate_timeouts

URL_VARIABLE = "STEADYFLOW_TASKS_URL"
_registry: dict[str, Task] = {}
_managers: dict[tuple[int, str], Any] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class TaskOptions:
    """How a task is handled; `alarm_timeout` defaults to a third of `sqs_timeout`."""

    sqs_timeout: float = 30
    alarm_timeout: float | None = None
    hard_timeout: float = DEFAULT_HARD_TIMEOUT
    max_receives: int | None = None
    kill_grace: float | None = None
    queue: str | None = None
    priority: int = 0

    def timeouts(self) -> tuple[float, float, float]:
        alarm = self.alarm_timeout if self.alarm_timeout is not None else max(0.1, (self.sqs_timeout - 1) / 3)
        return self.sqs_timeout, alarm, self.hard_timeout


class FunctionHandler(MessageHandler):
    """Runs a `@task` function with the message's kwargs."""

    function: Callable[..., Any]

    def run(self) -> Any:
        return type(self).function(**getattr(self, "kwargs", {}))


class Task:
    """A registered task: its name, its code, its options; `submit()` sends it."""

    def __init__(self, target: Any, name: str, options: TaskOptions) -> None:
        self.target = target
        self.name = name
        self.options = options
        self.is_handler = isinstance(target, type) and issubclass(target, MessageHandler)
        if self.is_handler:
            self.handler_class: type[MessageHandler] = target
        else:
            attributes: dict[str, Any] = {"function": staticmethod(target), "__module__": getattr(target, "__module__", None)}
            if options.kill_grace is not None:
                attributes["kill_grace"] = options.kill_grace
            self.handler_class = type(f"{name}Handler", (FunctionHandler,), attributes)
        try:
            self._signature: inspect.Signature | None = inspect.signature(target)
        except (TypeError, ValueError):
            self._signature = None
        if options.max_receives is not None and options.max_receives < 1:
            raise ConfigError(f"task {name!r}: max_receives must be at least 1")
        try:
            validate_timeouts(*options.timeouts())
        except ValueError as exc:
            raise ConfigError(f"task {name!r}: {exc}") from None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.target(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<task {self.name!r} {getattr(self.target, '__qualname__', self.target)!r}>"

    # -- producing ------------------------------------------------------------------------------

    def manager(self, url: str | None = None) -> Any:
        """This process's `TaskManager` for the task's queue."""
        from .task_manager import TaskManager

        url = url or self.options.queue or os.environ.get(URL_VARIABLE)
        if not url:
            raise ConfigError(f"task {self.name!r} has no queue: pass queue= to @task or set {URL_VARIABLE}")
        key = (os.getpid(), url)
        with _lock:
            if key not in _managers:
                _managers[key] = TaskManager(url)
            return _managers[key]

    def submit(self, *, delay: float | None = None, priority: int | None = None, **kwargs: Any) -> str:
        """Send this task with `kwargs`; `delay` and `priority` are delivery options."""
        return self.send(kwargs, delay=delay, priority=priority)

    def send(self, kwargs: dict[str, Any], *, delay: float | None = None, priority: int | None = None,
             queue: str | None = None) -> str:
        """`submit()` with the arguments as one dict (any names), optionally to another queue."""
        problem = self.check_arguments(kwargs)
        if problem:
            raise TypeError(problem)
        priority = self.options.priority if priority is None else priority
        return self.manager(queue).send(self.name, kwargs, delay=delay, priority=priority or None)

    # -- consuming ------------------------------------------------------------------------------

    def check_arguments(self, kwargs: dict[str, Any]) -> str | None:
        """Why `kwargs` cannot call this task, or None."""
        if self.is_handler or self._signature is None:
            return None
        try:
            self._signature.bind(**kwargs)
        except TypeError as exc:
            return f"bad arguments for task {self.name!r}: {exc}"
        return None

    def handler(self, message: Any, kwargs: dict[str, Any]) -> MessageHandler:
        sqs_timeout, alarm_timeout, hard_timeout = self.options.timeouts()
        return self.handler_class(message, sqs_timeout=sqs_timeout, alarm_timeout=alarm_timeout,
                                  hard_timeout=hard_timeout, **kwargs)


def task(target: Any = None, *, name: str | None = None, queue: str | None = None, sqs_timeout: float = 30,
         alarm_timeout: float | None = None, hard_timeout: float = DEFAULT_HARD_TIMEOUT, max_receives: int | None = None,
         kill_grace: float | None = None, priority: int = 0) -> Any:
    """Register a task by name (default: the function's `__name__`); usable bare or with options.

    Decorating a function returns a `Task`; decorating a `MessageHandler` subclass registers it
    and returns the class unchanged (its `Task` is `steadyflow.tasks.registry.get(name)`).
    """
    options = TaskOptions(sqs_timeout=sqs_timeout, alarm_timeout=alarm_timeout, hard_timeout=hard_timeout,
                          max_receives=max_receives, kill_grace=kill_grace, queue=queue, priority=priority)

    def register(obj: Any) -> Any:
        if not callable(obj):
            raise ConfigError(f"@task decorates a function or a MessageHandler subclass, not {obj!r}")
        task_name = name or obj.__name__
        entry = Task(obj, task_name, options)
        with _lock:
            existing = _registry.get(task_name)
            if existing is not None and _origin(existing.target) != _origin(obj):
                raise ConfigError(f"task name {task_name!r} is already registered by {_origin(existing.target)}")
            _registry[task_name] = entry
        return obj if entry.is_handler else entry

    return register(target) if target is not None else register


def _origin(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def get(name: str) -> Task | None:
    return _registry.get(name)


def registered() -> dict[str, Task]:
    """A copy of the registry: task name -> `Task`."""
    return dict(_registry)
