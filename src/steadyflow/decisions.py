"""Decisions: what a decider answers after replaying `run()`.

The engine applies the decisions of one decision task in one transaction, in order, each one
appending the command event named in its docstring. A close decision must be the last one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScheduleActivityTask:
    """Appends `ActivityTaskScheduled` and queues the task on `task_list`."""

    activity_id: str
    name: str
    version: str
    task_list: str
    input: str
    control: str | None = None
    priority: int = 0
    schedule_to_start_timeout: float | None = None
    start_to_close_timeout: float | None = None
    schedule_to_close_timeout: float | None = None
    heartbeat_timeout: float | None = None
    #: Tasks with the same key share the task list's per-key concurrency limit.
    concurrency_key: str | None = None

    def event_attributes(self) -> dict[str, object]:
        """The attributes of the `ActivityTaskScheduled` it appends (every engine writes the same)."""
        return {
            "activityId": self.activity_id,
            "activityType": {"name": self.name, "version": self.version},
            "input": self.input,
            "control": self.control,
            "taskList": {"name": self.task_list},
            "taskPriority": self.priority,
            "scheduleToStartTimeout": self.schedule_to_start_timeout,
            "startToCloseTimeout": self.start_to_close_timeout,
            "scheduleToCloseTimeout": self.schedule_to_close_timeout,
            "heartbeatTimeout": self.heartbeat_timeout,
            "concurrencyKey": self.concurrency_key,
        }


@dataclass(frozen=True)
class StartTimer:
    """Appends `TimerStarted`; the engine appends `TimerFired` after `seconds`."""

    timer_id: str
    seconds: float
    control: str | None = None


@dataclass(frozen=True)
class CancelTimer:
    """Appends `TimerCanceled` (or `CancelTimerFailed` when no such timer is open)."""

    timer_id: str


@dataclass(frozen=True)
class RecordMarker:
    """Appends `MarkerRecorded`."""

    name: str
    details: str | None = None


@dataclass(frozen=True)
class CompleteWorkflowExecution:
    """Appends `WorkflowExecutionCompleted` and closes the execution."""

    result: str | None = None


@dataclass(frozen=True)
class FailWorkflowExecution:
    """Appends `WorkflowExecutionFailed` and closes the execution."""

    reason: str | None = None
    details: str | None = None


@dataclass(frozen=True)
class CancelWorkflowExecution:
    """Appends `WorkflowExecutionCanceled` and closes the execution as canceled."""

    details: str | None = None


@dataclass(frozen=True)
class ContinueAsNewWorkflowExecution:
    """Closes this run (`WorkflowExecutionContinuedAsNew`) and starts the next one of the same id.

    The new run keeps the workflow id, type, parent and tags; its history starts afresh with `input`.
    """

    input: str | None = None
    task_list: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class SignalExternalWorkflowExecution:
    """Appends `SignalExternalWorkflowExecutionInitiated`; the target (possibly this very execution)
    gets `WorkflowExecutionSignaled`, and this one `ExternalWorkflowExecutionSignaled` or
    `SignalExternalWorkflowExecutionFailed` (unknown or closed target), in the same transaction."""

    workflow_id: str
    run_id: str | None
    signal_name: str
    input: str | None = None
    control: str | None = None


PARENT_CLOSE_POLICIES = ("terminate", "request_cancel", "abandon")


@dataclass(frozen=True)
class StartChildWorkflowExecution:
    """Appends `StartChildWorkflowExecutionInitiated` and starts the child in the same transaction.

    The parent then records `ChildWorkflowExecutionStarted` (or `StartChildWorkflowExecutionFailed`
    when the id is already running) and, when the child closes, `ChildWorkflowExecution<Status>`.
    When the parent closes first, `parent_close_policy` is applied to the open child.
    """

    workflow_id: str
    workflow_type: str
    version: str
    task_list: str
    input: str | None = None
    control: str | None = None
    parent_close_policy: str = "terminate"
    tags: tuple[str, ...] = ()
    decision_timeout: float | None = None


Decision = (
    ScheduleActivityTask
    | StartTimer
    | CancelTimer
    | RecordMarker
    | SignalExternalWorkflowExecution
    | StartChildWorkflowExecution
    | CompleteWorkflowExecution
    | FailWorkflowExecution
    | CancelWorkflowExecution
    | ContinueAsNewWorkflowExecution
)

CLOSE_DECISIONS = (
    CompleteWorkflowExecution,
    FailWorkflowExecution,
    CancelWorkflowExecution,
    ContinueAsNewWorkflowExecution,
)

ALL_DECISIONS = (
    ScheduleActivityTask,
    StartTimer,
    CancelTimer,
    RecordMarker,
    SignalExternalWorkflowExecution,
    StartChildWorkflowExecution,
    *CLOSE_DECISIONS,
)
