"""The thread that runs a workflow's `run()`, handing control back and forth with the decider.

Only one of the two runs at a time, so `run()` stays deterministic. While history is being
replayed, what `run()` prints is dropped, so each line appears once per execution.

An `async def run()` is driven in the same thread by `drive`: awaiting a steadyflow future parks
the thread inside the `await` exactly as reading `.result` does, so the coroutine is plain
sequential code to the decider and replays the same way.

Alternative rejected: running the coroutine on an asyncio event loop, with the decider resolving
asyncio futures. The loop's own scheduling (call_soon order, its clock) would become part of what
`run()` sees, and every `await` would need a loop-aware twin of the thread hand-off above.
"""

from __future__ import annotations

import inspect
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from .errors import WorkflowError
from .futures import current_waiter


def drive(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run the coroutine of an `async def run()` to its end in this thread; return its value.

    A steadyflow future (or `futures.wait(...)`) never suspends the coroutine: it parks the thread
    inside the `await` until the decider has its outcome. `await asyncio.sleep(0)` is allowed and
    does nothing. Anything else that suspends (an asyncio future, a task, `asyncio.sleep(1)`)
    belongs to an event loop that a workflow does not have: `WorkflowError` is raised at that
    `await` (use `self.sleep()`/`self.start_timer()` for time, activities for I/O).
    """
    error: BaseException | None = None
    try:
        while True:
            try:
                yielded = coro.send(None) if error is None else coro.throw(error)
            except StopIteration as stop:
                return stop.value
            error = None
            if yielded is not None:
                error = WorkflowError(
                    f"run() awaited {yielded!r}, which needs an asyncio event loop: a workflow can await only "
                    "steadyflow futures (submit, timers, signals, children) and futures.wait(...)"
                )
    finally:
        coro.close()


class Abandon(BaseException):
    """Unwinds a parked `run()` whose decision is done; user code should not catch it."""


class WorkflowThread:
    """Runs `run()` in a thread that hands control back and forth with the decider thread."""

    def __init__(
        self,
        target: Callable[[], Any],
        name: str,
        on_wait: Callable[[], None] | None = None,
        setup: Callable[[], None] | None = None,
    ) -> None:
        self._target = target
        self._on_wait = on_wait  # may raise into run() (cancellation arrives at the next wait)
        self._setup = setup  # runs first in the new thread (context variables are per thread)
        self._name = name
        self._to_workflow = threading.Semaphore(0)
        self._to_decider = threading.Semaphore(0)
        self._thread: threading.Thread | None = None
        self.finished = False
        self.abandoned = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.quiet = False

    def resume(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)
            self._thread.steadyflow_quiet = self.quiet  # type: ignore[attr-defined]
            self._thread.start()
        else:
            self._thread.steadyflow_quiet = self.quiet  # type: ignore[attr-defined]
            self._to_workflow.release()
        self._to_decider.acquire()

    def _main(self) -> None:
        current_waiter.set(self.wait_until)
        if self._setup is not None:
            self._setup()
        try:
            result = self._target()
            self.result = drive(result) if inspect.iscoroutine(result) else result
        except Abandon:
            pass
        except BaseException as exc:  # noqa: BLE001 - every outcome of run() is reported
            self.error = exc
        finally:
            self.finished = True
            self._to_decider.release()

    def wait_until(self, predicate: Callable[[], bool]) -> None:
        if self._on_wait is not None:
            self._on_wait()
        while not predicate():
            if self.abandoned:
                raise Abandon()
            self._to_decider.release()
            self._to_workflow.acquire()
            if self.abandoned:
                raise Abandon()
            if self._on_wait is not None:
                self._on_wait()

    def abandon(self) -> None:
        if self._thread is not None and not self.finished:
            self.abandoned = True
            self._to_workflow.release()
            self._thread.join(timeout=2.0)


class QuietStdout:
    """Drops what a workflow prints while it replays, so each line appears once per execution."""

    def __init__(self, wrapped: Any) -> None:
        self._wrapped = wrapped

    def write(self, text: str) -> int:
        if getattr(threading.current_thread(), "steadyflow_quiet", False):
            return len(text)
        return self._wrapped.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


def install_quiet_stdout() -> None:
    if not isinstance(sys.stdout, QuietStdout):
        sys.stdout = QuietStdout(sys.stdout)


