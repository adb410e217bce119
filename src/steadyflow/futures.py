"""Futures as simpleflow's workflows use them, and the ways to wait on them.

Reading `.result` of an unfinished future inside `run()` parks the workflow until the decider has
news for it; outside a workflow that would wait forever, so it raises instead.

In an `async def run()`, `await future` is the same wait as `future.result`, and `await
futures.wait(...)` the same as `futures.wait(...)`: the workflow thread parks inside the `await`
(see `workflow_thread.drive`), so the coroutine never gives control to an event loop and replays
exactly as plain code does.
"""

from __future__ import annotations

import contextvars
import inspect
import sys
from collections.abc import Callable, Generator, Iterator
from typing import Any, NamedTuple

from .errors import WorkflowError

PENDING = "PENDING"
RUNNING = "RUNNING"
FINISHED = "FINISHED"
CANCELLED = "CANCELLED"

ALL_COMPLETED = "ALL_COMPLETED"
FIRST_COMPLETED = "FIRST_COMPLETED"
FIRST_EXCEPTION = "FIRST_EXCEPTION"

# Set in the thread that runs a workflow's `run()`: a callable that parks until a predicate holds.
current_waiter: contextvars.ContextVar[Callable[[Callable[[], bool]], None] | None] = contextvars.ContextVar(
    "steadyflow_waiter", default=None
)


def block_until(predicate: Callable[[], bool]) -> None:
    """Park the running workflow until `predicate()` holds."""
    if predicate():
        return
    waiter = current_waiter.get()
    if waiter is None:
        raise WorkflowError("this future is not finished, and no workflow is running to wait for it")
    waiter(predicate)


class Future:
    """The eventual outcome of a task, timer, marker or signal."""

    def __init__(self) -> None:
        self._state = PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._raises = True
        self._done_order = 0

    # -- reading ---------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        return self._state

    @property
    def finished(self) -> bool:
        return self._state in (FINISHED, CANCELLED)

    @property
    def done(self) -> bool:
        return self.finished

    @property
    def pending(self) -> bool:
        return self._state == PENDING

    @property
    def running(self) -> bool:
        return self._state == RUNNING

    @property
    def cancelled(self) -> bool:
        return self._state == CANCELLED

    @property
    def exception(self) -> BaseException | None:
        """The failure, once finished (simpleflow's property: it does not wait)."""
        return self._exception

    @property
    def result(self) -> Any:
        """The value; waits for it inside `run()`, raises the task's failure if it failed."""
        block_until(lambda: self.finished)
        if self._exception is not None and self._raises:
            raise self._exception
        return self._result

    def wait(self) -> Any:
        return self.result

    def _steadyflow_future_result(self) -> Any:
        return self.result

    def __await__(self) -> Generator[None, None, Any]:
        """`await future` in an `async def run()`: waits and returns (or raises) as `.result` does."""
        yield from ()  # never suspends: the workflow thread parks inside `.result` instead
        return self.result

    # -- writing (the executor's side) -----------------------------------------------------------

    def set_running(self) -> None:
        if not self.finished:
            self._state = RUNNING

    def set_finished(self, result: Any, order: int = 0) -> None:
        self._state, self._result, self._done_order = FINISHED, result, order

    def set_exception(self, exc: BaseException, order: int = 0, raises: bool = True) -> None:
        self._state, self._exception, self._raises, self._done_order = FINISHED, exc, raises, order

    def set_cancelled(self, order: int = 0) -> None:
        self._state, self._done_order = CANCELLED, order

    def __repr__(self) -> str:
        return f"<Future {self._state} result={self._result!r} exception={self._exception!r}>"


class DoneAndNotDone(NamedTuple):
    done: list[Any]
    not_done: list[Any]


def _finished(f: Any) -> bool:
    return not isinstance(f, Future) or f.finished


def _failed(f: Any) -> bool:
    return isinstance(f, Future) and f.finished and f.exception is not None


_ASYNC_CODE = inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR


def wait(*fs: Any, return_when: str = ALL_COMPLETED) -> Any:
    """Wait for futures.

    `ALL_COMPLETED` (the default) returns the list of their results, as simpleflow does; the other
    two return `(done, not_done)` as `concurrent.futures.wait` does, in submission order.

    Called directly from an `async def` (`await futures.wait(...)` in `async def run()`), it
    returns an awaitable that waits when awaited; called from plain code (a sync `run()`, or a
    helper function that an async `run()` calls) it waits and returns as above.
    """
    if return_when not in (ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION):
        raise ValueError(f"unknown return_when {return_when!r}")
    if sys._getframe(1).f_code.co_flags & _ASYNC_CODE:
        return _wait_async(fs, return_when)
    return _wait(fs, return_when)


async def _wait_async(fs: tuple[Any, ...], return_when: str) -> Any:
    return _wait(fs, return_when)


def _wait(fs: tuple[Any, ...], return_when: str) -> Any:
    if len(fs) == 1 and isinstance(fs[0], (list, tuple)):
        fs = tuple(fs[0])
    if return_when == ALL_COMPLETED:
        for f in fs:  # one at a time: linear in the number of futures, however often it wakes
            block_until(lambda f=f: _finished(f))
        return [f.result if isinstance(f, Future) else f for f in fs]
    if return_when == FIRST_COMPLETED:
        block_until(lambda: not fs or any(_finished(f) for f in fs))
    else:  # FIRST_EXCEPTION
        block_until(lambda: all(_finished(f) for f in fs) or any(_failed(f) for f in fs))
    return DoneAndNotDone([f for f in fs if _finished(f)], [f for f in fs if not _finished(f)])


def as_completed(*fs: Any) -> Iterator[Any]:
    """Yield futures as they finish, in the order the history finished them."""
    if len(fs) == 1 and isinstance(fs[0], (list, tuple)):
        fs = tuple(fs[0])
    remaining = list(fs)
    while remaining:
        block_until(lambda: any(_finished(f) for f in remaining))
        ready = sorted((f for f in remaining if _finished(f)), key=lambda f: getattr(f, "_done_order", 0))
        for f in ready:
            remaining.remove(f)
            yield f


def futures_in(value: Any) -> list[Future]:
    """Futures among arguments, also inside lists, tuples and dicts (a fan-in passes a list)."""
    if isinstance(value, Future):
        return [value]
    if isinstance(value, (list, tuple)):
        return [f for v in value for f in futures_in(v)]
    if isinstance(value, dict):
        return [f for v in value.values() for f in futures_in(v)]
    return []


def resolved(value: Any) -> Any:
    """Arguments with each (finished) future replaced by its result."""
    if isinstance(value, Future):
        return value.result
    if isinstance(value, (list, tuple)):
        return [resolved(v) for v in value]
    if isinstance(value, dict):
        return {k: resolved(v) for k, v in value.items()}
    return value
