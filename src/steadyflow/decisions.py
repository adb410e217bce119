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


Decision = ScheduleActivityTask | StartTimer | CancelTimer | RecordMarker | CompleteWorkflowExecution | FailWorkflowExecution

CLOSE_DECISIONS = (CompleteWorkflowExecution, FailWorkflowExecution)
