"""`steadyflow task info`: one activity of a run, as its history recorded it (simpleflow's
`task.info`); and `find_task`, which `activity rerun` shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from .. import history as h
from ..errors import ConfigError
from ..history import Event
from ..payload.converter import Payloads, shown
from .common import Context, emit_record, format_option, header_option, pass_ctx, ts

#: Event type -> the state it leaves an attempt in (simpleflow's state names).
STATES = {
    h.ACTIVITY_TASK_SCHEDULED: "scheduled",
    h.ACTIVITY_TASK_STARTED: "started",
    h.ACTIVITY_TASK_COMPLETED: "completed",
    h.ACTIVITY_TASK_FAILED: "failed",
    h.ACTIVITY_TASK_TIMED_OUT: "timed_out",
    "ActivityTaskCanceled": "canceled",
}


@dataclass
class RecordedTask:
    """One attempt of an activity: its `ActivityTaskScheduled` event and what followed it."""

    activity_id: str
    name: str
    version: str | None
    scheduled_id: int
    input: str | None
    control: str | None
    task_list: str | None
    scheduled: float
    attempts: int
    """Attempts of this activity id up to and including this one."""
    state: str = "scheduled"
    started: float | None = None
    closed: float | None = None
    result: str | None = None
    reason: str | None = None
    details: str | None = None


def recorded_tasks(events: list[Event]) -> list[RecordedTask]:
    """Every activity attempt of a history, in the order they were scheduled."""
    out: list[RecordedTask] = []
    by_scheduled: dict[int, RecordedTask] = {}
    tries: dict[str, int] = {}
    for e in events:
        a = e.attributes
        if e.event_type == h.ACTIVITY_TASK_SCHEDULED:
            activity_id = str(a.get("activityId", e.event_id))
            tries[activity_id] = tries.get(activity_id, 0) + 1
            kind = a.get("activityType") or {}
            task = RecordedTask(
                activity_id, str(kind.get("name", "")), kind.get("version"), e.event_id, a.get("input"),
                a.get("control"), (a.get("taskList") or {}).get("name"), e.timestamp,
                h.recorded_attempt(a.get("control")) or tries[activity_id],
            )
            by_scheduled[e.event_id] = task
            out.append(task)
        elif e.event_type in STATES:
            task = by_scheduled.get(a.get("scheduledEventId", -1))  # type: ignore[arg-type]
            if task is None:
                continue
            task.state = STATES[e.event_type]
            if e.event_type == h.ACTIVITY_TASK_STARTED:
                task.started = e.timestamp
                continue
            task.closed = e.timestamp
            task.result = a.get("result")
            task.reason = a.get("reason") or (f"timed out ({a['timeoutType']})" if a.get("timeoutType") else None)
            task.details = a.get("details")
    return out


def find_task(
    events: list[Event], workflow_id: str, activity_id: str | None = None, scheduled_id: int | None = None
) -> RecordedTask:
    """The attempt scheduled by event `scheduled_id`, or the last attempt of `activity_id`.

    Raises a one-line `ConfigError` naming what was looked for when the run has no such task.
    """
    if (activity_id is None) == (scheduled_id is None):
        raise ConfigError("give either an activity id or a scheduled event id")
    for task in reversed(recorded_tasks(events)):
        if task.scheduled_id == scheduled_id or (activity_id is not None and task.activity_id == activity_id):
            return task
    what = f"activity id {activity_id!r}" if activity_id is not None else f"scheduled event id {scheduled_id}"
    raise ConfigError(f"workflow {workflow_id} has no activity task with {what}")


def task_row(task: RecordedTask, payloads: Payloads, details: bool = False) -> dict[str, Any]:
    """simpleflow's `task.info` columns (type, id, name, version, state, timestamp, input, result,
    reason), then the attempt's number, scheduled event id and its three times."""
    row: dict[str, Any] = {
        "type": "activity",
        "id": task.activity_id,
        "name": task.name,
        "version": task.version,
        "state": task.state,
        "timestamp": ts(task.closed or task.started or task.scheduled),
        "input": shown(payloads, task.input),
        "result": shown(payloads, task.result),
        "reason": task.reason,
        "attempt": task.attempts,
        "scheduled_id": task.scheduled_id,
        "scheduled_timestamp": ts(task.scheduled),
        "started_timestamp": ts(task.started),
        "closed_timestamp": ts(task.closed),
    }
    if details:
        row["details"] = shown(payloads, task.details)
    return row


@click.group("task")
def task_group() -> None:
    """Look at one task of an execution."""


@task_group.command("info")
@click.argument("workflow_id")
@click.argument("task_id")
@click.option("--run-id", help="A specific run (default: the latest).")
@click.option("--details/--no-details", default=False, help="Also show the failure's details (traceback).")
@format_option
@header_option
@pass_ctx
def info_cmd(ctx: Context, workflow_id: str, task_id: str, run_id: str | None, details: bool, fmt: str,
             header: bool) -> None:
    """State, input, result or reason, times and attempts of activity TASK_ID (its last attempt;
    a number that is no activity id is read as the scheduled event id of one attempt)."""
    client = ctx.client()
    events = client.get_handle(workflow_id, run_id).history()
    try:
        task = find_task(events, workflow_id, activity_id=task_id)
    except ConfigError as missing:
        if not task_id.isdigit():
            raise
        try:
            task = find_task(events, workflow_id, scheduled_id=int(task_id))
        except ConfigError:
            raise missing from None
    emit_record(task_row(task, client.engine.payloads, details), fmt, header=header)


__all__ = ["RecordedTask", "find_task", "recorded_tasks", "task_group", "task_row"]
