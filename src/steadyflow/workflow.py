"""`Workflow`: the class users subclass. Its methods only record intent; the executor replays them.

`run()` must be deterministic: the same history must lead it to ask for the same tasks in the same
order. It is plain Python (no sandbox); non-determinism is caught by comparing what replay asks for
with the history.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .futures import Future

if TYPE_CHECKING:
    from .replay import Executor


class WorkflowFailure(Exception):
    """Raised by `Workflow.fail()`: ends the execution as failed with the given reason."""

    def __init__(self, reason: str, details: Any = None) -> None:
        self.reason = reason
        self.details = details
        super().__init__(reason)


class Workflow:
    """Subclass it, set `name`, `version`, `task_list`, and write `run()`."""

    name: str | None = None
    version: str = "default"
    task_list: str | None = None
    decision_tasks_timeout: float | None = None

    def __init__(self, executor: Executor | None = None) -> None:
        self._executor = executor

    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.run() is not written")

    # -- identity --------------------------------------------------------------------------------

    @classmethod
    def type_name(cls) -> str:
        return cls.name or cls.qualified_name()

    @classmethod
    def qualified_name(cls) -> str:
        return f"{cls.__module__}.{cls.__qualname__}"

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            raise RuntimeError("this workflow is not running under a steadyflow executor")
        return self._executor

    # -- tasks -----------------------------------------------------------------------------------

    def submit(self, func: Any, *args: Any, **kwargs: Any) -> Future:
        """Schedule an activity and return its future; a future passed in is returned as is.

        Futures among the arguments are waited for first: the task is scheduled once they finish.
        """
        if isinstance(func, Future):
            return func
        return self.executor.submit(func, args, kwargs)

    def map(self, func: Any, iterable: Iterable[Any]) -> list[Future]:
        return [self.submit(func, item) for item in iterable]

    def starmap(self, func: Any, iterable: Iterable[Iterable[Any]]) -> list[Future]:
        return [self.submit(func, *item) for item in iterable]

    # -- timers and markers ----------------------------------------------------------------------

    def start_timer(self, timer_id: str | float, timeout: float | None = None, control: Any = None) -> Future:
        """A future that finishes after a delay: `start_timer(seconds)` or simpleflow's
        `start_timer(timer_id, timeout, control=None)`."""
        if timeout is None:
            return self.executor.start_timer(None, float(timer_id), control)
        return self.executor.start_timer(str(timer_id), float(timeout), control)

    def sleep(self, seconds: float) -> Future:
        """Like `start_timer(seconds)`, and waits for it."""
        future = self.executor.start_timer(None, float(seconds), None)
        future.result  # noqa: B018 - reading it is the wait
        return future

    def cancel_timer(self, timer_id: str) -> Future:
        return self.executor.cancel_timer(timer_id)

    def record_marker(self, name: str, details: Any = None) -> Future:
        return self.executor.record_marker(name, details)

    # -- time and ending -------------------------------------------------------------------------

    def now(self) -> Any:
        """The time of the decision being made: the same on every replay."""
        return self.executor.now()

    def fail(self, reason: str, details: Any = None) -> None:
        raise WorkflowFailure(reason, details)

    def get_run_context(self) -> dict[str, Any]:
        return self.executor.run_context()


WorkflowClass = type[Workflow]
Factory = Callable[..., Workflow]
