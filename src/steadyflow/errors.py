"""The error hierarchy: everything steadyflow raises on purpose derives from `SteadyflowError`.

The CLI turns any `SteadyflowError` into a one-line message; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

from typing import Any


class SteadyflowError(Exception):
    """Root of every error steadyflow raises on purpose."""


# -- engine ---------------------------------------------------------------------------------------


class EngineError(SteadyflowError):
    """The engine could not do what was asked (bad URL, bad database, broken invariant)."""


class EngineUnavailable(EngineError):
    """The engine's store cannot be reached or opened."""


class UnknownExecution(EngineError):
    """No execution has that workflow id (and run id)."""


class ExecutionClosed(EngineError):
    """The execution is closed, so it cannot take signals, cancellation or decisions."""


class UnknownTask(EngineError):
    """A task token is unknown: its lease ran out, it timed out, or it was already completed.

    Workers and deciders treat this as "somebody else owns this now" and drop their result.
    """


# -- workflows ------------------------------------------------------------------------------------


class WorkflowError(SteadyflowError):
    """A workflow definition or execution is wrong."""


class WorkflowAlreadyStarted(WorkflowError):
    """An open execution already has this workflow id."""

    def __init__(self, workflow_id: str, run_id: str | None = None, reason: str | None = None) -> None:
        self.workflow_id = workflow_id
        self.run_id = run_id
        super().__init__(f"workflow id {workflow_id!r} " + (reason or f"is already running (run {run_id})"))


class NonDeterminismError(WorkflowError):
    """Replaying `run()` asked for something other than what the history records."""

    def __init__(self, event_id: int | None, recorded: str, requested: str) -> None:
        self.event_id = event_id
        self.recorded = recorded
        self.requested = requested
        where = f"event {event_id}" if event_id is not None else "end of history"
        super().__init__(f"non-deterministic workflow at {where}: history has {recorded}, code now asks for {requested}")


class WorkflowNotFound(WorkflowError):
    """A workflow class could not be imported or is not a Workflow."""


class ActivityNotFound(WorkflowError):
    """An activity name does not resolve to a registered or importable activity."""


class WorkflowFailed(WorkflowError):
    """An execution ended in failure; raised by helpers that wait for a result."""

    def __init__(self, workflow_id: str, status: str, reason: str | None, details: Any = None) -> None:
        self.workflow_id = workflow_id
        self.status = status
        self.reason = reason
        self.details = details
        super().__init__(f"workflow {workflow_id} {status}: {reason}")


class ResultTimeout(SteadyflowError, TimeoutError):
    """Waiting for an execution to close gave up after its timeout; the execution itself goes on.

    Also a builtin `TimeoutError`, so code that already catches that catches this too.
    """

    def __init__(self, workflow_id: str, run_id: str | None, timeout: float) -> None:
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.timeout = timeout
        run = f" (run {run_id})" if run_id else ""
        super().__init__(
            f"workflow {workflow_id}{run} is still running after {timeout:g}s; "
            "the execution goes on: wait again, or cancel or terminate it"
        )

    def __reduce__(self) -> tuple[Any, ...]:  # picklable, e.g. across a process pool
        return (type(self), (self.workflow_id, self.run_id, self.timeout))


# -- tasks ----------------------------------------------------------------------------------------


class TaskFailed(SteadyflowError):
    """An activity failed after its last attempt; raised where the workflow reads its result.

    `error` is the exception's class name, `message` its text, `traceback` the formatted traceback
    from the worker, `cause` the text a human reads (Step Functions' word for it).
    """

    def __init__(self, name: str, reason: str | None, details: Any = None) -> None:
        self.name = name
        self.reason = reason
        self.details = details
        info = details if isinstance(details, dict) else {}
        self.error: str | None = info.get("error") or (reason.split(":", 1)[0] if reason else None)
        self.error_type: str | None = info.get("error_type", self.error)
        self.message: str | None = info.get("message")
        tb = info.get("traceback")
        self.traceback: str = "".join(tb) if isinstance(tb, list) else (tb or "")
        self.cause: str = self.traceback or (reason or "")
        super().__init__(name, reason, details)

    def __repr__(self) -> str:
        return f'TaskFailed ({self.name}, "{self.reason}")'

    __str__ = __repr__


class ChildWorkflowFailed(TaskFailed):
    """A child workflow did not complete (failed, canceled, terminated, or could not start)."""

    def __init__(self, workflow_id: str, status: str, reason: str | None = None, details: Any = None) -> None:
        self.workflow_id = workflow_id
        self.status = status
        super().__init__(workflow_id, reason or f"child workflow {status}", details)


class TaskTimedOut(TaskFailed):
    """An activity timed out after its last attempt."""

    def __init__(self, name: str, timeout_type: str, details: Any = None) -> None:
        self.timeout_type = timeout_type
        super().__init__(name, f"TimeoutError: {timeout_type} timeout", details)


class TaskCancelled(TaskFailed):
    """An activity was cancelled."""


# -- payloads -------------------------------------------------------------------------------------


class PayloadError(SteadyflowError):
    """A value could not be encoded or decoded."""


class PayloadTooLarge(PayloadError):
    """A payload is larger than the configured maximum."""


class CancelledError(BaseException):
    """Raised inside `run()` at its next wait once cancellation was requested.

    A `BaseException`, so that `except Exception` in workflow code does not swallow it; catch it
    by name to clean up, then return (the execution completes) or re-raise (it ends canceled).
    """


class ConfigError(SteadyflowError):
    """A command line, URL or configuration value is invalid (usage error, exit code 2)."""


__all__ = [
    "ActivityNotFound",
    "CancelledError",
    "ChildWorkflowFailed",
    "ConfigError",
    "EngineError",
    "EngineUnavailable",
    "ExecutionClosed",
    "NonDeterminismError",
    "PayloadError",
    "PayloadTooLarge",
    "ResultTimeout",
    "SteadyflowError",
    "TaskCancelled",
    "TaskFailed",
    "TaskTimedOut",
    "UnknownExecution",
    "UnknownTask",
    "WorkflowAlreadyStarted",
    "WorkflowError",
    "WorkflowFailed",
    "WorkflowNotFound",
]
