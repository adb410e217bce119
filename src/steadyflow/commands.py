"""Commands: decisions that `run()` asked for, waiting to be matched against the history.

Replay compares each command event of the history with the next command, in order; the first
difference is a `NonDeterminismError` that quotes both sides with these descriptions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from . import history as h
from .decisions import (
    CancelTimer,
    CancelWorkflowExecution,
    CompleteWorkflowExecution,
    ContinueAsNewWorkflowExecution,
    Decision,
    RecordMarker,
    ScheduleActivityTask,
    SignalExternalWorkflowExecution,
    StartChildWorkflowExecution,
    StartTimer,
)

#: The payload field of each decision that carries one (sealed before it reaches the engine).
PAYLOAD_FIELDS: dict[type, str] = {
    ScheduleActivityTask: "input",
    RecordMarker: "details",
    SignalExternalWorkflowExecution: "input",
    StartChildWorkflowExecution: "input",
    ContinueAsNewWorkflowExecution: "input",
    CompleteWorkflowExecution: "result",
}


def _equal(recorded: str | None, new: str | None) -> bool:
    return recorded == new


@dataclass
class Command:
    """A decision in open form (payloads as canonical text), with where its payload may be stored."""

    decision: Decision
    on_recorded: Callable[[h.Event], None] | None = None
    store: str | None = None

    def sealed(self, payloads: Any) -> Decision:
        """The decision as the engine gets it: its payload through codecs, offloaded when large."""
        name = PAYLOAD_FIELDS.get(type(self.decision))
        value = getattr(self.decision, name) if name else None
        if value is None:
            return self.decision
        return replace(self.decision, **{name: payloads.seal(value, self.store)})  # type: ignore[arg-type]

    def describe(self) -> str:
        d = self.decision
        if isinstance(d, ScheduleActivityTask):
            return f"activity {d.activity_id} ({d.name}) with input {d.input}"
        if isinstance(d, StartTimer):
            return f"timer {d.timer_id}"
        if isinstance(d, CancelTimer):
            return f"cancel of timer {d.timer_id}"
        if isinstance(d, RecordMarker):
            return f"marker {d.name} with details {d.details}"
        if isinstance(d, SignalExternalWorkflowExecution):
            return f"signal {d.signal_name} to {d.workflow_id} with input {d.input}"
        if isinstance(d, StartChildWorkflowExecution):
            return f"child workflow {d.workflow_id} ({d.workflow_type}) with input {d.input}"
        if isinstance(d, CompleteWorkflowExecution):
            return "completion of the workflow"
        if isinstance(d, CancelWorkflowExecution):
            return "cancellation of the workflow"
        if isinstance(d, ContinueAsNewWorkflowExecution):
            return f"continue-as-new with input {d.input}"
        return f"failure of the workflow ({d.reason})"

    def matches(self, event: h.Event, same: Callable[[str | None, str | None], bool] = _equal) -> bool:
        """Is `event` what this command recorded? `same` compares a recorded payload with ours."""
        d, a, t = self.decision, event.attributes, event.event_type
        if isinstance(d, ScheduleActivityTask):
            return (
                t == h.ACTIVITY_TASK_SCHEDULED
                and a.get("activityId") == d.activity_id
                and a.get("activityType", {}).get("name") == d.name
                and same(a.get("input"), d.input)
            )
        if isinstance(d, StartTimer):
            return t in (h.TIMER_STARTED, h.START_TIMER_FAILED) and a.get("timerId") == d.timer_id
        if isinstance(d, CancelTimer):
            return t in (h.TIMER_CANCELED, h.CANCEL_TIMER_FAILED) and a.get("timerId") == d.timer_id
        if isinstance(d, RecordMarker):
            return t == h.MARKER_RECORDED and a.get("markerName") == d.name and same(a.get("details"), d.details)
        if isinstance(d, SignalExternalWorkflowExecution):
            return (
                t == h.SIGNAL_EXTERNAL_INITIATED
                and a.get("workflowId") == d.workflow_id
                and a.get("signalName") == d.signal_name
                and same(a.get("input"), d.input)
            )
        if isinstance(d, StartChildWorkflowExecution):
            return (
                t == h.START_CHILD_INITIATED
                and a.get("workflowId") == d.workflow_id
                and a.get("workflowType", {}).get("name") == d.workflow_type
                and same(a.get("input"), d.input)
            )
        if isinstance(d, CompleteWorkflowExecution):
            return t == h.WORKFLOW_EXECUTION_COMPLETED
        if isinstance(d, CancelWorkflowExecution):
            return t == h.WORKFLOW_EXECUTION_CANCELED
        if isinstance(d, ContinueAsNewWorkflowExecution):
            return t == h.WORKFLOW_EXECUTION_CONTINUED_AS_NEW
        return t == h.WORKFLOW_EXECUTION_FAILED


def describe_event(event: h.Event) -> str:
    a = event.attributes
    if event.event_type == h.ACTIVITY_TASK_SCHEDULED:
        return f"activity {a.get('activityId')} ({a.get('activityType', {}).get('name')}) with input {a.get('input')}"
    if event.event_type in (h.TIMER_STARTED, h.START_TIMER_FAILED, h.TIMER_CANCELED, h.CANCEL_TIMER_FAILED):
        return f"{event.event_type} {a.get('timerId')}"
    if event.event_type == h.MARKER_RECORDED:
        return f"marker {a.get('markerName')} with details {a.get('details')}"
    if event.event_type == h.SIGNAL_EXTERNAL_INITIATED:
        return f"signal {a.get('signalName')} to {a.get('workflowId')} with input {a.get('input')}"
    if event.event_type == h.START_CHILD_INITIATED:
        return f"child workflow {a.get('workflowId')} ({a.get('workflowType', {}).get('name')}) with input {a.get('input')}"
    return event.event_type


