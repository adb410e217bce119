"""Views of one run computed from its history alone: the rows of `workflow tasks` and `workflow profile`.

Pure functions of the events (no engine, no clock unless given), so they are tested on histories.

`workflow profile` is simpleflow's `workflow.profile` (`simpleflow.swf.stats`: `WorkflowStats`
and `pretty.profile`), with the same eight columns in the same order:

- **Time Scheduled**: seconds from `ActivityTaskScheduled` to `ActivityTaskStarted` (waiting for a
  worker). For an attempt that never started: to its end (a schedule-to-start timeout), or to now
  while the run is open.
- **Time Running**: seconds from `ActivityTaskStarted` to the attempt's last event (completed,
  failed, timed out, canceled); to now for an attempt still running in an open run.
- **Percentage of total time**: `Time Running / total * 100`, where `total` is the time from the
  run's first event to its last one (simpleflow's `WorkflowStats.total_time`); to now while the run
  is open. So when activities ran one after another the percentages add up to nearly 100: what is
  missing is the time spent deciding and waiting for workers.

Rows are sorted by Time Running, longest first, as simpleflow sorts them, and `--nb-tasks N` keeps
the first N. Where steadyflow differs: one row per *attempt* (a retried activity has one row per try;
simpleflow keeps the last one), attempts that have not run yet are listed too (simpleflow drops rows
without a running time), times are the ISO timestamps every other view prints (simpleflow prints
`%Y-%m-%d %H:%M`), and an `Attempt` column follows the eight simpleflow columns. Child workflows
are profiled as simpleflow does, from their initiation, start and close events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import history as h
from ..history import Event
from .common import ts

ACTIVITY_TASK_CANCELED = "ActivityTaskCanceled"  # SWF's; our engines do not write it, read if present
WORKFLOW_EXECUTION_TIMED_OUT = "WorkflowExecutionTimedOut"  # SWF's, likewise

#: Event type -> the state it leaves an activity attempt in.
ACTIVITY_STATES = {
    h.ACTIVITY_TASK_SCHEDULED: "scheduled",
    h.ACTIVITY_TASK_STARTED: "started",
    h.ACTIVITY_TASK_COMPLETED: "completed",
    h.ACTIVITY_TASK_FAILED: "failed",
    h.ACTIVITY_TASK_TIMED_OUT: "timed_out",
    ACTIVITY_TASK_CANCELED: "canceled",
}
#: Event type -> the state it leaves a child workflow in.
CHILD_STATES = {
    h.START_CHILD_INITIATED: "initiated",
    h.CHILD_STARTED: "started",
    h.CHILD_COMPLETED: "completed",
    h.CHILD_FAILED: "failed",
    h.CHILD_CANCELED: "canceled",
    h.CHILD_TERMINATED: "terminated",
    h.CHILD_TIMED_OUT: "timed_out",
    h.START_CHILD_FAILED: "start_failed",
}
OPENING_STATES = frozenset({"scheduled", "initiated"})
RUNNING_STATES = frozenset({"started"})
DONE_STATES = frozenset({"completed"})
#: Events that close a run (its last event).
RUN_CLOSE_EVENTS = frozenset({*h.CLOSE_EVENTS, WORKFLOW_EXECUTION_TIMED_OUT})

PROFILE_COLUMNS = (
    "Task", "Last State", "Scheduled", "Time Scheduled", "Start", "Time Running", "End",
    "Percentage of total time", "Attempt",
)
TASK_COLUMNS = ("Tasks", "Last State", "Last State Time", "Scheduled Time", "Attempts", "Last Heartbeat")


@dataclass
class Attempt:
    """One scheduled activity attempt or one child workflow, as its events left it."""

    kind: str
    """`activity` or `child`."""
    task: str
    """The activity id or the child's workflow id."""
    name: str
    """Activity type name, or child workflow type name."""
    scheduled: float
    """When it was scheduled (activity) or initiated (child)."""
    attempt: int | None = None
    state: str = "scheduled"
    started: float | None = None
    ended: float | None = None
    details: Any = None
    """`details` of a timeout (the last heartbeat), for `workflow tasks`."""

    @property
    def is_open(self) -> bool:
        return self.ended is None


def _type_name(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("name", ""))
    return "" if value is None else str(value)


def attempts(events: list[Event]) -> list[Attempt]:
    """Every activity attempt and child workflow of a history, in the order they were scheduled."""
    out: list[Attempt] = []
    activities: dict[int, Attempt] = {}  # by ActivityTaskScheduled event id
    children: dict[int, Attempt] = {}  # by StartChildWorkflowExecutionInitiated event id
    tries: dict[str, int] = {}  # schedules seen per activity id, when control has no attempt
    for e in events:
        a = e.attributes
        if e.event_type == h.ACTIVITY_TASK_SCHEDULED:
            task = str(a.get("activityId", e.event_id))
            tries[task] = tries.get(task, 0) + 1
            number = h.recorded_attempt(a.get("control")) or tries[task]
            activities[e.event_id] = item = Attempt("activity", task, _type_name(a.get("activityType")),
                                                    e.timestamp, attempt=number)
            out.append(item)
        elif e.event_type == h.START_CHILD_INITIATED:
            children[e.event_id] = item = Attempt("child", str(a.get("workflowId", e.event_id)),
                                                  _type_name(a.get("workflowType")), e.timestamp, state="initiated")
            out.append(item)
        elif e.event_type in ACTIVITY_STATES:
            found = activities.get(a.get("scheduledEventId", -1))
            if found is not None:
                _move(found, ACTIVITY_STATES[e.event_type], e)
        elif e.event_type in CHILD_STATES:
            found = children.get(a.get("initiatedEventId", -1))
            if found is not None:
                _move(found, CHILD_STATES[e.event_type], e)
    return out


def _move(item: Attempt, state: str, e: Event) -> None:
    item.state = state
    if state == "started":
        item.started = e.timestamp
    else:
        item.ended = e.timestamp
        if state == "timed_out":
            item.details = e.attributes.get("details")


def task_rows(events: list[Event]) -> list[dict[str, Any]]:
    """`workflow tasks`: each activity's last attempt and its state, newest first (simpleflow's
    `workflow.tasks`), with the number of attempts so far."""
    rows: dict[str, dict[str, Any]] = {}
    for item in attempts(events):
        if item.kind != "activity":
            continue
        row = rows.setdefault(item.task, {"Tasks": item.task, "Attempts": 0, "Scheduled Time": ts(item.scheduled)})
        row["Attempts"] += 1
        row["Last State"] = item.state
        row["Last State Time"] = ts(item.ended or item.started or item.scheduled)
        row["Last Heartbeat"] = item.details if item.state == "timed_out" else None
    return [{k: r.get(k) for k in TASK_COLUMNS} for r in reversed(rows.values())]


def total_time(events: list[Event], now: float | None = None) -> float:
    """Seconds from the run's first event to its last one (to `now` when given: an open run)."""
    if not events:
        return 0.0
    end = now if now is not None else events[-1].timestamp
    return max(end - events[0].timestamp, 0.0)


def profile_rows(events: list[Event], now: float | None = None) -> list[dict[str, Any]]:
    """`workflow profile`: one row per activity attempt and child workflow, longest running first.

    `now`: the current time, for a run still open (what has not ended is measured up to it);
    None for a closed run. See the module docstring for what each column means.
    """
    total = total_time(events, now)
    rows: list[tuple[float | None, float, dict[str, Any]]] = []
    for item in attempts(events):
        until = item.ended if item.ended is not None else now
        waited_until = item.started if item.started is not None else until
        waited = None if waited_until is None else max(waited_until - item.scheduled, 0.0)
        running = None if item.started is None or until is None else max(until - item.started, 0.0)
        percent = None if running is None or total <= 0 else running / total * 100.0
        row = {
            "Task": item.task,
            "Last State": item.state,
            "Scheduled": ts(item.scheduled),
            "Time Scheduled": None if waited is None else round(waited, 3),
            "Start": ts(item.started),
            "Time Running": None if running is None else round(running, 3),
            "End": ts(item.ended),
            "Percentage of total time": None if percent is None else round(percent, 2),
            "Attempt": item.attempt,
        }
        rows.append((running, item.scheduled, row))
    rows.sort(key=lambda r: (r[0] is None, -(r[0] or 0.0), r[1]))
    return [row for _, _, row in rows]


def is_closed(events: list[Event]) -> bool:
    """Whether the history ends with the run's close event."""
    return bool(events) and events[-1].event_type in RUN_CLOSE_EVENTS


__all__ = [
    "PROFILE_COLUMNS",
    "TASK_COLUMNS",
    "Attempt",
    "attempts",
    "is_closed",
    "profile_rows",
    "task_rows",
    "total_time",
]
