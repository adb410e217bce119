"""History events: the append-only record of an execution, and its only source of truth.

Event and attribute names are Amazon SWF's (camelCase attributes), so that the SWF engine is a
plain mapping and a history printed by `workflow history --format json` reads like SWF's.
Timeouts are numbers of seconds (or None), not SWF's strings. `WorkflowExecutionStarted` also
records the execution's own `workflowId` and `runId`, so a saved history replays on its own.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import WorkflowError

# Execution lifecycle
WORKFLOW_EXECUTION_STARTED = "WorkflowExecutionStarted"
WORKFLOW_EXECUTION_COMPLETED = "WorkflowExecutionCompleted"
WORKFLOW_EXECUTION_FAILED = "WorkflowExecutionFailed"
WORKFLOW_EXECUTION_TERMINATED = "WorkflowExecutionTerminated"
WORKFLOW_EXECUTION_SIGNALED = "WorkflowExecutionSignaled"
WORKFLOW_EXECUTION_CANCELED = "WorkflowExecutionCanceled"
WORKFLOW_EXECUTION_CANCEL_REQUESTED = "WorkflowExecutionCancelRequested"
WORKFLOW_EXECUTION_CONTINUED_AS_NEW = "WorkflowExecutionContinuedAsNew"
# Signals sent by a decision
SIGNAL_EXTERNAL_INITIATED = "SignalExternalWorkflowExecutionInitiated"
EXTERNAL_WORKFLOW_SIGNALED = "ExternalWorkflowExecutionSignaled"
SIGNAL_EXTERNAL_FAILED = "SignalExternalWorkflowExecutionFailed"
# Child workflows
START_CHILD_INITIATED = "StartChildWorkflowExecutionInitiated"
START_CHILD_FAILED = "StartChildWorkflowExecutionFailed"
CHILD_STARTED = "ChildWorkflowExecutionStarted"
CHILD_COMPLETED = "ChildWorkflowExecutionCompleted"
CHILD_FAILED = "ChildWorkflowExecutionFailed"
CHILD_CANCELED = "ChildWorkflowExecutionCanceled"
CHILD_TERMINATED = "ChildWorkflowExecutionTerminated"
CHILD_TIMED_OUT = "ChildWorkflowExecutionTimedOut"
# Decision tasks
DECISION_TASK_SCHEDULED = "DecisionTaskScheduled"
DECISION_TASK_STARTED = "DecisionTaskStarted"
DECISION_TASK_COMPLETED = "DecisionTaskCompleted"
DECISION_TASK_TIMED_OUT = "DecisionTaskTimedOut"
DECISION_TASK_FAILED = "DecisionTaskFailed"
# Activity tasks
ACTIVITY_TASK_SCHEDULED = "ActivityTaskScheduled"
ACTIVITY_TASK_STARTED = "ActivityTaskStarted"
ACTIVITY_TASK_COMPLETED = "ActivityTaskCompleted"
ACTIVITY_TASK_FAILED = "ActivityTaskFailed"
ACTIVITY_TASK_TIMED_OUT = "ActivityTaskTimedOut"
# Timers and markers
TIMER_STARTED = "TimerStarted"
TIMER_FIRED = "TimerFired"
TIMER_CANCELED = "TimerCanceled"
START_TIMER_FAILED = "StartTimerFailed"
CANCEL_TIMER_FAILED = "CancelTimerFailed"
MARKER_RECORDED = "MarkerRecorded"

CLOSE_EVENTS = {
    WORKFLOW_EXECUTION_COMPLETED: "completed",
    WORKFLOW_EXECUTION_FAILED: "failed",
    WORKFLOW_EXECUTION_TERMINATED: "terminated",
    WORKFLOW_EXECUTION_CANCELED: "canceled",
    WORKFLOW_EXECUTION_CONTINUED_AS_NEW: "continued_as_new",
}

#: What the parent's history records when a child closes with a given status.
CHILD_CLOSE_EVENTS = {
    "completed": CHILD_COMPLETED,
    "failed": CHILD_FAILED,
    "canceled": CHILD_CANCELED,
    "terminated": CHILD_TERMINATED,
    "timed_out": CHILD_TIMED_OUT,
}

# Events written because a decision asked for them; replay matches them against what `run()` asks.
COMMAND_EVENTS = frozenset(
    {
        ACTIVITY_TASK_SCHEDULED,
        TIMER_STARTED,
        TIMER_CANCELED,
        START_TIMER_FAILED,
        CANCEL_TIMER_FAILED,
        MARKER_RECORDED,
        SIGNAL_EXTERNAL_INITIATED,
        START_CHILD_INITIATED,
        WORKFLOW_EXECUTION_COMPLETED,
        WORKFLOW_EXECUTION_FAILED,
        WORKFLOW_EXECUTION_CANCELED,
        WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
    }
)

# Timeout types, as SWF names them.
SCHEDULE_TO_START = "SCHEDULE_TO_START"
START_TO_CLOSE = "START_TO_CLOSE"
SCHEDULE_TO_CLOSE = "SCHEDULE_TO_CLOSE"
HEARTBEAT = "HEARTBEAT"


@dataclass(frozen=True)
class Event:
    """One history event. `event_id` is dense and starts at 1; `timestamp` is epoch seconds."""

    event_id: int
    event_type: str
    timestamp: float
    attributes: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "eventId": self.event_id,
            "eventType": self.event_type,
            "eventTimestamp": format_timestamp(self.timestamp),
            "attributes": self.attributes,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        """Read our own JSON form, or SWF's (attributes under `<eventType>EventAttributes`).

        A saved history comes from outside: an event of the wrong shape is refused here with
        `WorkflowError` naming it, rather than failing somewhere deep in replay.
        """
        if not isinstance(data, dict):
            raise WorkflowError(f"malformed history: an event must be a JSON object, not {type(data).__name__}")
        event_type, event_id = data.get("eventType"), data.get("eventId")
        if isinstance(event_id, str) and event_id.isascii() and event_id.isdigit():
            event_id = int(event_id)
        if not isinstance(event_type, str) or not event_type:
            raise WorkflowError(f"malformed history: event {event_id!r} has no eventType")
        if type(event_id) is not int or event_id < 1:
            raise WorkflowError(f"malformed history: {event_type} has eventId {event_id!r}, not a whole number >= 1")
        attrs = data.get("attributes")
        if attrs is None:
            key = event_type[0].lower() + event_type[1:] + "EventAttributes"
            attrs = data.get(key, {})
        _check_attributes(event_id, event_type, attrs)
        try:
            timestamp = parse_timestamp(data.get("eventTimestamp"))
        except (ValueError, TypeError, OverflowError, OSError):
            raise WorkflowError(f"malformed history: event {event_id} has eventTimestamp "
                                f"{str(data.get('eventTimestamp'))[:40]!r}") from None
        return cls(event_id, event_type, timestamp, dict(attrs))


#: The type every attribute replay reads must have in a saved history (others are kept as they are).
_TEXT_ATTRIBUTES = frozenset({"input", "result", "details", "control", "reason", "cause", "markerName", "timerId",
                              "activityId", "signalName", "workflowId", "runId", "timeoutType", "name", "version"})
_OBJECT_ATTRIBUTES = frozenset({"activityType", "workflowType", "taskList", "workflowExecution"})
_LIST_ATTRIBUTES = frozenset({"tagList"})


def _check_attributes(event_id: int, event_type: str, attrs: Any, where: str = "") -> None:
    if not isinstance(attrs, dict):
        raise WorkflowError(f"malformed history: the attributes of event {event_id} ({event_type}) are not an object")
    for key, value in attrs.items():
        wrong = None
        if key.endswith("EventId") and value is not None and type(value) is not int:
            wrong = "a whole number"
        elif key in _TEXT_ATTRIBUTES and value is not None and not isinstance(value, str):
            wrong = "text"
        elif key in _LIST_ATTRIBUTES and value is not None and not isinstance(value, list):
            wrong = "a list"
        elif key in _OBJECT_ATTRIBUTES:
            if not isinstance(value, dict):
                wrong = "an object"
            else:
                _check_attributes(event_id, event_type, value, f"{where}{key}.")
        if wrong:
            raise WorkflowError(f"malformed history: attribute {where}{key} of event {event_id} ({event_type}) "
                                f"must be {wrong}, not {type(value).__name__}")


def format_timestamp(ts: float | None) -> str | None:
    if ts is None:
        return None
    moment = _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, (int, float)):
        return float(value)
    return _dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def recorded_attempt(control: object) -> int | None:
    """The attempt number a decider records in an activity's `control` (`{"attempt": n}`), if any."""
    if not isinstance(control, str) or not control.startswith("{"):
        return None
    try:
        value = json.loads(control)
    except ValueError:
        return None
    attempt = value.get("attempt") if isinstance(value, dict) else None
    return attempt if isinstance(attempt, int) else None
