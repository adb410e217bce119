"""Activity middlewares: functions a worker calls around every activity attempt (simpleflow's
`--middleware-pre-execution` / `--middleware-post-execution`).

A pre-middleware is called as `f(context)` before the activity's function; a post-middleware as
`f(context, result=result)` after it returns, as simpleflow calls them. Where simpleflow skips
post-middlewares when the activity raises, steadyflow also calls those that accept an `exception`
keyword (or `**kwargs`): `f(context, result=None, exception=exc)`; the others are skipped, as in
simpleflow. `context` is simpleflow's activity context dict: `name`, `version`, `activity_id`,
`input` (decoded), `workflow_id`, `run_id`, `activity_task_list` and `attempt`.

They run in the worker's child process, once per attempt, in the order given. A middleware that
raises fails the attempt like the activity raising would (a pre-middleware's error stops the
activity from running): middlewares are the user's code, and a silent failure would hide, say, an
authorisation check that refused the task.

Dotted paths come from the worker command line or from the settings `ACTIVITY_MIDDLEWARES_PRE` /
`ACTIVITY_MIDDLEWARES_POST`; they are imported by the supervisor first (a bad path is a one-line
`ConfigError` before any process starts), then in each child.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import ConfigError

T = TypeVar("T")


def import_path(path: str, kind: str = "middleware") -> Callable[..., Any]:
    """The callable named by `module.function` (simpleflow's `import_from_module`)."""
    module_name, _, attr = path.strip().rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"{kind} {path!r} is not a dotted path (module.function)")
    try:
        obj: Any = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:
        raise ConfigError(f"cannot import {kind} {path!r}: {type(exc).__name__}: {exc}") from exc
    if not callable(obj):
        raise ConfigError(f"{kind} {path!r} is not callable")
    return obj  # type: ignore[no-any-return]


def _takes_exception(func: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is p.VAR_KEYWORD or p.name == "exception" for p in params)


@dataclass(frozen=True)
class Middlewares:
    """Dotted paths of the pre- and post-execution middlewares (what crosses to child processes)."""

    pre: tuple[str, ...] = ()
    post: tuple[str, ...] = ()

    @classmethod
    def of(cls, pre: Iterable[str] = (), post: Iterable[str] = ()) -> Middlewares:
        return cls(tuple(p for p in pre if p), tuple(p for p in post if p))

    @classmethod
    def from_settings(cls) -> Middlewares:
        from .. import settings

        return cls.of(settings.get("ACTIVITY_MIDDLEWARES_PRE"), settings.get("ACTIVITY_MIDDLEWARES_POST"))

    def __bool__(self) -> bool:
        return bool(self.pre or self.post)

    def load(self) -> Loaded:
        """Import every middleware; `ConfigError` names the first that does not import."""
        return Loaded(
            [import_path(p, "pre-execution middleware") for p in self.pre],
            [import_path(p, "post-execution middleware") for p in self.post],
        )


@dataclass
class Loaded:
    """The imported middlewares of one process."""

    pre: list[Callable[..., Any]] = field(default_factory=list)
    post: list[Callable[..., Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._on_error = [f for f in self.post if _takes_exception(f)]

    def around(self, context: dict[str, Any], call: Callable[[], T]) -> T:
        """Run `call()` between the pre- and post-middlewares; its result, or its exception."""
        self._before(context)
        try:
            result = call()
        except BaseException as exc:
            self._failed(context, exc)
            raise
        return self._after(context, result)

    async def around_async(self, context: dict[str, Any], call: Callable[[], Awaitable[T]]) -> T:
        """`around` for an `async def` activity: the middlewares are plain functions."""
        self._before(context)
        try:
            result = await call()
        except BaseException as exc:
            self._failed(context, exc)
            raise
        return self._after(context, result)

    def _before(self, context: dict[str, Any]) -> None:
        for func in self.pre:
            func(context)

    def _failed(self, context: dict[str, Any], exc: BaseException) -> None:
        for func in self._on_error:
            func(context, result=None, exception=exc)

    def _after(self, context: dict[str, Any], result: T) -> T:
        for func in self.post:
            func(context, result=result)
        return result


_active: Loaded | None = None


def install(loaded: Loaded | None) -> None:
    """Make `loaded` the middlewares every activity attempt of this process runs through (the
    worker child calls it once, at start)."""
    global _active
    _active = loaded if loaded is not None and (loaded.pre or loaded.post) else None


def active() -> Loaded | None:
    """This process's middlewares, if any were installed."""
    return _active


def activity_context(task: dict[str, Any], version: str | None, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """simpleflow's activity context for a task (the dict its middlewares receive)."""
    from .runner import attempt_of

    return {
        "name": task.get("name"),
        "version": version,
        "activity_id": task.get("activity_id"),
        "input": {"args": list(args), "kwargs": dict(kwargs)},
        "workflow_id": task.get("workflow_id"),
        "run_id": task.get("run_id"),
        "activity_task_list": task.get("task_list"),
        "attempt": attempt_of(task.get("control")),
    }


__all__ = ["Loaded", "Middlewares", "activity_context", "active", "import_path", "install"]
