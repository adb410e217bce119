"""`Workflow`: the class users subclass. Its methods only record intent; the executor replays them.

`run()` must be deterministic: the same history must lead it to ask for the same tasks in the same
order. It is plain Python (no sandbox); non-determinism is caught by comparing what replay asks for
with the history.
"""

from __future__ import annotations

import contextvars
import functools
import random as _random
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from .futures import Future
from .payload.converter import Payloads
from .payload.stored import items_of
from .workflow_steps import WorkflowStepMixin

if TYPE_CHECKING:
    from .failure_context import TaskFailureContext
    from .replay import Executor
    from .workflow_history import History, Marker

F = TypeVar("F", bound=Callable[..., Any])

#: The executor replaying the workflow whose `run()` runs in this thread (None elsewhere).
current_executor: contextvars.ContextVar[Executor | None] = contextvars.ContextVar("steadyflow_executor", default=None)


class WorkflowFailure(Exception):
    """Raised by `Workflow.fail()`: ends the execution as failed with the given reason."""

    def __init__(self, reason: str, details: Any = None) -> None:
        self.reason = reason
        self.details = details
        super().__init__(reason)


class ContinueAsNew(BaseException):
    """Raised by `Workflow.continue_as_new()`: closes this run and starts the next with new input."""

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.args_ = args
        self.kwargs_ = kwargs
        super().__init__("continue as new")


class StopExecution(BaseException):
    """Raised by `Workflow.stop_execution()`: ends the execution as canceled, with error and cause."""

    def __init__(self, error: str | None, cause: str | None) -> None:
        self.error = error
        self.cause = cause
        super().__init__(error or "stopped")


def workflow_input(
    cls: type[Workflow], args: Iterable[Any], kwargs: dict[str, Any], trace: dict[str, str] | None = None
) -> str:
    """simpleflow's workflow input: args, kwargs and `__extra.class` for the decider (and
    `__extra.trace`, the trace context it runs in, when it is traced)."""
    extra: dict[str, Any] = {"class": cls.qualified_name()}
    if trace:
        extra["trace"] = trace
    data = {"args": list(args), "kwargs": kwargs, "__extra": extra}
    return Payloads.encode_open(data, cls.serializer)


def query(method: F) -> F:
    """Mark a workflow method as a query: `steadyflow workflow query ID NAME` calls it on the state
    replayed up to the latest event. It must only read that state."""
    method._steadyflow_query = True  # type: ignore[attr-defined]
    return method


def is_query(obj: Any) -> bool:
    return bool(getattr(obj, "_steadyflow_query", False))


def cached(fn: F) -> F:
    """pyswf's `@cached`: inside `run()`, the first call's result is stored in a marker and every
    replay reads it back instead of calling again. Outside a workflow it is a plain call."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        executor = current_executor.get()
        if executor is None:
            return fn(*args, **kwargs)
        return executor.side_effect(fn, args, kwargs)

    return wrapper  # type: ignore[return-value]


nondeterministic = cached
"""pyswf's other name for the same thing: a call whose result must not change on replay."""


class Workflow(WorkflowStepMixin):
    """Subclass it, set `name`, `version`, `task_list`, and write `run()`.

    The hooks below (`on_task_failure`, `should_cancel`, `before_replay`, ...) are simpleflow's;
    docs/hooks.md says when each runs.
    """

    name: str | None = None
    version: str = "default"
    task_list: str | None = None
    decision_tasks_timeout: float | None = None
    #: What happens to this workflow, run as a child, when its parent closes first:
    #: "terminate" (Temporal's default), "request_cancel" or "abandon".
    parent_close_policy: str = "terminate"
    #: How this workflow's input and result are encoded ("json", "msgpack" or, opting in, "pickle").
    serializer: str = "json"
    #: Where its large payloads go (`s3://bucket/prefix`, `file:///dir`, `db`); default: the engine's.
    store: str | None = None

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
        if hasattr(func, "submit_to"):  # a canvas object (Group, Chain, FuncGroup, ...) submits itself
            return func.submit_to(self, *args, **kwargs)
        if isinstance(func, type) and issubclass(func, Workflow):
            return self.executor.submit_child(func, args, kwargs)
        return self.executor.submit(func, args, kwargs)

    def start_child(
        self,
        cls: type[Workflow],
        *args: Any,
        workflow_id: str | None = None,
        parent_close_policy: str | None = None,
        task_list: str | None = None,
        **kwargs: Any,
    ) -> Future:
        """`self.submit(Child, ...)` with options: id, parent-close policy, task list."""
        return self.executor.submit_child(cls, args, kwargs, workflow_id, parent_close_policy, task_list)

    def map(self, func: Any, iterable: Iterable[Any]) -> list[Future]:
        """One task per item. Given what `put_items()` returned (items kept in state data), each
        task receives its item, read by the worker: the history holds only where it is."""
        if isinstance(iterable, dict) and {"table_name", "partition_key", "items"} <= set(iterable):
            iterable = items_of(iterable)
        return [self.submit(func, item) for item in iterable]

    def starmap(self, func: Any, iterable: Iterable[Iterable[Any]]) -> list[Future]:
        return [self.submit(func, *item) for item in iterable]

    # -- timers and markers ----------------------------------------------------------------------

    def start_timer(self, timer_id: str | float, timeout: float | None = None, control: Any = None) -> Future:
        """A future that finishes after a delay: `start_timer(seconds)` or simpleflow's
        `start_timer(timer_id, timeout, control=None)`.

        The timer starts when this is called; `self.submit(self.start_timer("t", 5))`, as simpleflow
        users write it, returns the same future (submitting a future returns it), so it starts once.
        """
        if timeout is None:
            return self.executor.start_timer(None, float(timer_id), control)
        return self.executor.start_timer(str(timer_id), float(timeout), control)

    def sleep(self, seconds: float) -> Future:
        """Like `start_timer(seconds)`, and waits for it."""
        future = self.executor.start_timer(None, float(seconds), None)
        future.result  # noqa: B018 - reading it is the wait
        return future

    def cancel_timer(self, timer_id: str) -> Future:
        """Cancel timer `timer_id`; the future (finished at once) says whether it was running.
        Bare or through `self.submit(...)`, it cancels once."""
        return self.executor.cancel_timer(timer_id)

    def record_marker(self, name: str, details: Any = None) -> Future:
        """Record marker `name` with JSON `details`, bare or through `self.submit(...)` (once)."""
        return self.executor.record_marker(name, details)

    def list_markers(self, all: bool = False) -> list[Marker]:  # noqa: A002 - simpleflow's name
        """The markers recorded before the current decision: the last of each name, or with
        `all=True` every one (steadyflow's own markers are left out)."""
        return self.executor.list_markers(all)

    def get_event_details(self, event_type: str, event_name: str) -> dict[str, Any] | None:
        """The last `"marker"` (details decoded), `"signal"` (input decoded) or `"timer"` (its
        state) of that name in the history so far, as simpleflow's dict; None if there is none."""
        return self.executor.get_event_details(event_type, event_name)

    def upsert_search_attributes(self, **attributes: Any) -> None:
        """Set (None: remove) this execution's search attributes: str, int, float, bool or datetime.

        Recorded as a marker (`search.SEARCH_MARKER`) that the engine indexes when it applies it,
        so replay matches the recorded one and nothing is indexed twice (docs/search.md).
        """
        from .search import SEARCH_MARKER, encode_attributes

        self.executor.record_marker(SEARCH_MARKER, encode_attributes(attributes, removals=True))

    def side_effect(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call `fn` once per execution (its result is kept in a marker and read back on replay)."""
        return self.executor.side_effect(fn, args, kwargs)

    # -- signals ---------------------------------------------------------------------------------

    def signal(
        self,
        name: str,
        *args: Any,
        workflow_id: str | None = None,
        run_id: str | None = None,
        propagate: bool = True,
        **kwargs: Any,
    ) -> Future:
        """Send signal `name` with args/kwargs to `workflow_id`, or, untargeted, to this execution,
        its parent and its running children. The future finishes when the first target has it."""
        return self.executor.signal(name, args, kwargs, workflow_id, run_id, propagate)

    def wait_signal(self, name: str) -> Future:
        """A future for the next signal `name` this code has not waited for yet (none is lost)."""
        return self.executor.wait_signal(name)

    # -- versioning, time and randomness ---------------------------------------------------------

    def patched(self, change_id: str) -> bool:
        """True on executions that reach this point running the new code; False on executions
        that passed it before the change was deployed. Guard changed code with it."""
        return self.executor.patched(change_id)

    def now(self) -> Any:
        """The time of the decision being made: the same on every replay."""
        return self.executor.now()

    def random(self) -> _random.Random:
        """A random generator seeded by the run id: the same numbers on every replay."""
        return self.executor.random()

    # -- ending ----------------------------------------------------------------------------------

    def fail(self, reason: str, details: Any = None) -> None:
        raise WorkflowFailure(reason, details)

    def stop_execution(self, error: str | None = None, cause: str | None = None) -> None:
        """py2sfn's name: end the execution now as canceled, recording `error` and `cause`."""
        raise StopExecution(error, cause)

    def continue_as_new(self, *args: Any, **kwargs: Any) -> None:
        """Close this run and start a fresh one (empty history) of the same id with new input."""
        raise ContinueAsNew(args, kwargs)

    @property
    def cancel_requested(self) -> bool:
        return self.executor.cancel_requested

    def get_run_context(self) -> dict[str, Any]:
        """simpleflow's keys: name, version, domain_name, workflow_id, run_id, tag_list,
        continued_execution_run_id, parent_workflow_id, parent_run_id (and task_list, parent,
        cancel_requested)."""
        return self.executor.run_context()

    # -- hooks (simpleflow's; see docs/hooks.md) --------------------------------------------------

    def on_task_failure(self, failure_context: TaskFailureContext) -> TaskFailureContext | None:
        """Called for each failed attempt of an activity, before its retry policy. Return the
        context with a decision (`decide_abort()`, `decide_ignore()`, `decide_cancel()`,
        `decide_retry(retry_wait_timeout)`, `decide_handled(a_task, future)`), or None (or
        `Decision.none`) for the default handling. Runs in the decider at the decision point where
        the failure arrived, on every replay: decide from the context and the history only."""
        return None

    def should_cancel(self, history: History) -> bool:
        """Called when cancellation is requested; False ignores the request."""
        return True

    def before_replay(self, history: History) -> None:
        """Called once per decision task, before the new events are handed to the workflow."""

    def after_replay(self, history: History) -> None:
        """Called once per decision task, after the decision was worked out (also when it completes
        or cancels the execution, not when it fails it)."""

    def after_closed(self, history: History) -> None:
        """Called after the decision that closes the execution (completed, failed or canceled)."""

    def on_completed(self, history: History) -> None:
        """Called when this decision completes the execution."""

    def on_failure(self, history: History, reason: str, details: str | None = None) -> None:
        """Called when this decision fails the execution, with the reason and details recorded."""

    def on_canceled(self, history: History) -> None:
        """Called when this decision cancels the execution."""


WorkflowClass = type[Workflow]
Factory = Callable[..., Workflow]
