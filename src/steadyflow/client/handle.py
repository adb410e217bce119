"""`WorkflowHandle`: one execution, addressed by workflow id (and run id), from application code.

Which run a handle addresses:

- `client.get_handle(workflow_id)`: the latest run of that workflow id, whatever it is when called.
- `client.get_handle(workflow_id, run_id)`: exactly that run (signalling it once it closed raises
  `ExecutionClosed`).
- the handle `client.start(...)` returns: the run it started and, once that run continued as new,
  the runs that followed it. So a long-lived workflow that continues as new keeps answering
  through the handle, and a later execution reusing the workflow id is never mistaken for it.

`result()` and `wait()` always follow continue-as-new to the end of the chain: the result of a
workflow is the result of its last run.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..engines.base import Engine, ExecutionInfo
from ..errors import EngineError, ExecutionClosed, PayloadError, ResultTimeout, WorkflowFailed
from ..history import WORKFLOW_EXECUTION_CONTINUED_AS_NEW, Event
from .dual import Awaiting, Blocking, Op, call, operation, sleep

if TYPE_CHECKING:
    from .client import ClientBase

CONTINUED = "continued_as_new"
#: First and longest pause between two looks at an open execution, and the growth between them:
#: the engine does not push closes, so waiting polls, starting fast (a short workflow answers in a
#: few milliseconds, and one look costs a fraction of one) and backing off gently, so that a result
#: is seen soon after it is recorded while many waiters still cost little.
FIRST_POLL = 0.001
MAX_POLL = 0.5
GROWTH = 1.5


class HandleBase:
    """The operations of a handle, written once (see `steadyflow.client.dual`)."""

    def __init__(
        self, client: ClientBase[Any], workflow_id: str, run_id: str | None = None, *, follow_runs: bool = False
    ) -> None:
        self.client = client
        self.workflow_id = workflow_id
        #: The run this handle was made for (None: the latest run).
        self.run_id = run_id
        self._follow = follow_runs and run_id is not None
        self._current = run_id  # for a followed chain: its latest run seen so far

    def __repr__(self) -> str:
        run = f", run_id={self.run_id!r}" if self.run_id else ""
        return f"{type(self).__name__}(workflow_id={self.workflow_id!r}{run})"

    # -- operations ------------------------------------------------------------------------------

    @operation
    def describe(self) -> Op[ExecutionInfo]:
        """The execution's `ExecutionInfo`: status, ids, type, tags, times, raw input and result."""
        engine = yield from self.client._connect()
        return (yield from self._describe(engine))

    @operation
    def history(self) -> Op[list[Event]]:
        """The events of the run this handle addresses, in order."""
        engine = yield from self.client._connect()
        run = (yield from self._describe(engine)).run_id if self._follow else self.run_id
        return (yield from call(engine.get_history, self.workflow_id, run))

    @operation
    def wait(self, timeout: float | None = None) -> Op[ExecutionInfo]:
        """Wait until the execution closes (following continue-as-new); return its last run's info.

        Whatever the status: `result()` is this plus decoding the result or raising the failure.
        Raises `ResultTimeout` after `timeout` seconds (0: look once); the execution goes on.
        """
        engine = yield from self.client._connect()
        return (yield from self._wait(engine, timeout))

    @operation
    def result(self, timeout: float | None = None) -> Op[Any]:
        """Wait until the execution closes (following continue-as-new) and return its result.

        Raises `WorkflowFailed` (with `status`, `reason`, `details`) when it failed, was canceled,
        terminated or timed out, and `ResultTimeout` (a `TimeoutError` too) when `timeout` seconds
        pass first: the execution is not affected and can be waited for again.
        """
        engine = yield from self.client._connect()
        info = yield from self._wait(engine, timeout)
        if info.status == "completed":
            return (yield from call(engine.payloads.loads, info.result))
        details: Any = info.close_details
        try:
            details = yield from call(engine.payloads.loads_or_raw, info.close_details)
        except PayloadError:  # encrypted without the key, say: the raw text is better than nothing
            pass
        raise WorkflowFailed(info.workflow_id, info.status, info.close_reason, details)

    @operation
    def signal(self, name: str, /, *args: Any, **kwargs: Any) -> Op[None]:
        """Send signal `name`; `wait_signal(name)` in `run()` gets `{"args": [...], "kwargs": {...}}`."""
        engine = yield from self.client._connect()
        yield from self._signal(engine, name, {"args": list(args), "kwargs": kwargs})

    @operation
    def signal_value(self, name: str, value: Any = None) -> Op[None]:
        """Send signal `name` whose input is `value` as it is (what `wait_signal` returns), as the
        command line's `workflow signal --input JSON` does; None sends no input."""
        engine = yield from self.client._connect()
        yield from self._signal(engine, name, value)

    @operation
    def query(self, name: str, /, *args: Any) -> Op[Any]:
        """Call `@query` method `name` on the replayed state of the open execution; nothing is recorded."""
        from ..decider import query_workflow  # here: `import steadyflow` stays light

        engine = yield from self.client._connect()

        def ask(workflow_id: str, run_id: str | None) -> Any:
            return query_workflow(engine, workflow_id, run_id, name, args)

        return (yield from self._on_run(engine, ask))

    @operation
    def cancel(self) -> Op[None]:
        """Ask the execution to cancel: `run()` gets `CancelledError` at its next wait."""
        engine = yield from self.client._connect()
        yield from self._on_run(engine, engine.request_cancel_execution)

    @operation
    def terminate(self, reason: str | None = None) -> Op[None]:
        """End the open execution at once, recording `reason`; its code gets no say."""
        engine = yield from self.client._connect()

        def terminate(workflow_id: str, run_id: str | None) -> None:
            engine.terminate_execution(workflow_id, run_id, reason=reason)

        yield from self._on_run(engine, terminate)

    # -- helpers (generators, run inside the operations above) -----------------------------------

    def _describe(self, engine: Engine) -> Op[ExecutionInfo]:
        info = yield from call(engine.describe_execution, self.workflow_id, self._current)
        while self._follow and info.status == CONTINUED:
            self._current = yield from self._successor(engine, info)
            info = yield from call(engine.describe_execution, self.workflow_id, self._current)
        return info

    def _signal(self, engine: Engine, name: str, value: Any) -> Op[None]:
        text = None if value is None else (yield from call(engine.payloads.dumps, value))
        yield from self._on_run(engine, engine.signal_execution, name, text)

    def _wait(self, engine: Engine, timeout: float | None) -> Op[ExecutionInfo]:
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        run = self.run_id
        delay = FIRST_POLL
        while True:
            info = yield from call(engine.describe_execution, self.workflow_id, run)
            if info.status == CONTINUED:
                run = yield from self._successor(engine, info)
                continue
            if not info.is_open:
                return info
            run = info.run_id  # keep to this run: a later execution reusing the id is another one
            if deadline is None:
                pause = delay
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ResultTimeout(self.workflow_id, run, float(timeout or 0.0))
                pause = min(delay, left)
            yield from sleep(pause)
            delay = min(delay * GROWTH, MAX_POLL)

    def _successor(self, engine: Engine, info: ExecutionInfo) -> Op[str]:
        """The run that `info`'s run (closed by continue-as-new) continued as."""
        last = yield from call(engine.get_history, info.workflow_id, info.run_id, max(info.next_event_id - 2, 0))
        events = [e for e in last if e.event_type == WORKFLOW_EXECUTION_CONTINUED_AS_NEW]
        if not events:  # not the last event after all: look through the whole history
            everything = yield from call(engine.get_history, info.workflow_id, info.run_id)
            events = [e for e in everything if e.event_type == WORKFLOW_EXECUTION_CONTINUED_AS_NEW]
        new_run = events[-1].attributes.get("newExecutionRunId") if events else None
        if not new_run:
            raise EngineError(
                f"run {info.run_id} of {info.workflow_id} continued as new, but its history names no new run"
            )
        return str(new_run)

    def _on_run(self, engine: Engine, fn: Any, *args: Any) -> Op[Any]:
        """`fn(workflow_id, run_id, *args)` on the run this handle addresses; for a followed
        chain, when that run turns out to have continued as new, again on its successor."""
        while True:
            run = self._current
            try:
                return (yield from call(fn, self.workflow_id, run, *args))
            except ExecutionClosed:
                if not self._follow:
                    raise
                info = yield from call(engine.describe_execution, self.workflow_id, run)
                if info.status != CONTINUED:
                    raise
                self._current = yield from self._successor(engine, info)


class WorkflowHandle(HandleBase, Blocking):
    """An execution, from application code: `result()`, `signal()`, `query()`, `cancel()`,
    `terminate()`, `describe()`, `history()` (see `HandleBase` for which run it addresses)."""


class AsyncWorkflowHandle(HandleBase, Awaiting):
    """`WorkflowHandle` whose methods are awaited: `await handle.result()`."""


__all__ = ["AsyncWorkflowHandle", "HandleBase", "WorkflowHandle"]
