"""The history as simpleflow's hooks see it: `History` (events plus markers, signals, timers and
activities gathered by name) and `Marker`.

A hook is given the events replay has gone through when it runs (up to the decision point that
calls it), never events after: so `should_cancel`, `on_task_failure`, `list_markers()` and
`get_event_details()` read the same history on every replay of that point. The dictionaries have
simpleflow's keys (`History.markers`, `.signals`, `.timers`, `.activities`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from . import history as h
from .payload import json as sfjson

INTERNAL_MARKER_PREFIX = "steadyflow."
"""Markers steadyflow records for itself (side effects, patches): not listed as the user's."""


class Marker:
    """A marker: its name and decoded details (simpleflow's `simpleflow.marker.Marker`)."""

    def __init__(self, name: str, details: Any) -> None:
        self.name = name
        self.details = details

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Marker) and (self.name, self.details) == (other.name, other.details)

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} details={self.details!r}>"


def decode(text: Any) -> Any:
    """A payload field as simpleflow's `format.decode` gives it: JSON when it parses, else the text."""
    if not isinstance(text, str):
        return text
    try:
        return sfjson.loads(text)
    except ValueError:
        return text


class History:
    """A read-only view of an execution's events, with simpleflow's aggregates."""

    def __init__(self, events: Sequence[h.Event]) -> None:
        # No copy now (the executor makes one per decision; most hooks never read it): the first
        # `len(events)` events, even if the list given grows afterwards.
        self._source = events
        self._count = len(events)

    @cached_property
    def events(self) -> list[h.Event]:
        return list(self._source[: self._count])

    def __len__(self) -> int:
        return self._count

    @cached_property
    def started_decision_id(self) -> int | None:
        return next((e.event_id for e in reversed(self.events) if e.event_type == h.DECISION_TASK_STARTED), None)

    @cached_property
    def completed_decision_id(self) -> int | None:
        return next((e.event_id for e in reversed(self.events) if e.event_type == h.DECISION_TASK_COMPLETED), None)

    @cached_property
    def cancel_requested_id(self) -> int | None:
        return next(
            (e.event_id for e in self.events if e.event_type == h.WORKFLOW_EXECUTION_CANCEL_REQUESTED), None
        )

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_requested_id is not None

    @cached_property
    def markers(self) -> dict[str, list[dict[str, Any]]]:
        """Marker name -> every recording of it, oldest first (details as recorded, undecoded)."""
        found: dict[str, list[dict[str, Any]]] = {}
        for e in self.events:
            if e.event_type == h.MARKER_RECORDED:
                name = e.attributes.get("markerName", "")
                found.setdefault(name, []).append(
                    {
                        "type": "marker",
                        "name": name,
                        "state": "recorded",
                        "details": e.attributes.get("details"),
                        "event_id": e.event_id,
                        "timestamp": e.timestamp,
                    }
                )
        return found

    @cached_property
    def signals(self) -> dict[str, dict[str, Any]]:
        """Signal name -> its last reception (input decoded)."""
        found: dict[str, dict[str, Any]] = {}
        for e in self.events:
            if e.event_type == h.WORKFLOW_EXECUTION_SIGNALED:
                a = e.attributes
                sender = a.get("externalWorkflowExecution") or {}
                found[a.get("signalName", "")] = {
                    "type": "signal",
                    "name": a.get("signalName", ""),
                    "state": "signaled",
                    "external_workflow_id": sender.get("workflowId"),
                    "external_run_id": sender.get("runId"),
                    "input": decode(a.get("input")),
                    "event_id": e.event_id,
                    "timestamp": e.timestamp,
                }
        return found

    @cached_property
    def timers(self) -> dict[str, dict[str, Any]]:
        """Timer id -> its state (`started`, `fired`, `canceled`, `start_failed`) and event ids."""
        found: dict[str, dict[str, Any]] = {}
        for e in self.events:
            a, t = e.attributes, e.event_type
            timer_id = a.get("timerId")
            if t == h.TIMER_STARTED:
                found[timer_id] = {
                    "type": "timer",
                    "id": timer_id,
                    "state": "started",
                    "start_to_fire_timeout": a.get("startToFireTimeout"),
                    "control": a.get("control"),
                    "started_event_id": e.event_id,
                    "started_event_timestamp": e.timestamp,
                    "decision_task_completed_event_id": a.get("decisionTaskCompletedEventId"),
                }
            elif t == h.TIMER_FIRED and timer_id in found:
                found[timer_id].update(state="fired", fired_event_id=e.event_id, fired_event_timestamp=e.timestamp)
            elif t == h.TIMER_CANCELED and timer_id in found:
                found[timer_id].update(state="canceled", canceled_event_id=e.event_id,
                                       canceled_event_timestamp=e.timestamp)
            elif t == h.START_TIMER_FAILED:
                found.setdefault(timer_id, {"type": "timer", "id": timer_id}).update(
                    state="start_failed", cause=a.get("cause"), start_failed_event_id=e.event_id,
                    start_failed_event_timestamp=e.timestamp,
                )
        return found

    @cached_property
    def activities(self) -> dict[str, dict[str, Any]]:
        """Activity id -> its last attempt: state, result or reason, and `retry` (attempts - 1)."""
        found: dict[str, dict[str, Any]] = {}
        by_scheduled: dict[int, dict[str, Any]] = {}
        closed = {
            h.ACTIVITY_TASK_COMPLETED: "completed",
            h.ACTIVITY_TASK_FAILED: "failed",
            h.ACTIVITY_TASK_TIMED_OUT: "timed_out",
        }
        for e in self.events:
            a, t = e.attributes, e.event_type
            if t == h.ACTIVITY_TASK_SCHEDULED:
                activity_id = a.get("activityId", "")
                known = found.get(activity_id)
                entry = known if known is not None else {"type": "activity", "id": activity_id, "retry": -1}
                entry.update(
                    name=a.get("activityType", {}).get("name"),
                    version=a.get("activityType", {}).get("version"),
                    state="scheduled",
                    scheduled_id=e.event_id,
                    scheduled_timestamp=e.timestamp,
                    input=a.get("input"),
                    task_list=(a.get("taskList") or {}).get("name"),
                    control=a.get("control"),
                    retry=entry["retry"] + 1,
                )
                found[activity_id] = entry
                by_scheduled[e.event_id] = entry
            elif t in (h.ACTIVITY_TASK_STARTED, *closed):
                entry = by_scheduled.get(a.get("scheduledEventId", -1))
                if entry is None:
                    continue
                if t == h.ACTIVITY_TASK_STARTED:
                    entry.update(state="started", started_id=e.event_id, identity=a.get("identity"))
                    continue
                entry.update(state=closed[t], **{f"{closed[t]}_id": e.event_id})
                if t == h.ACTIVITY_TASK_COMPLETED:
                    entry["result"] = a.get("result")
                elif t == h.ACTIVITY_TASK_FAILED:
                    entry.update(reason=a.get("reason"), details=a.get("details"))
                else:
                    entry.update(timeout_type=a.get("timeoutType"), timeout_value=None)
        return found

    # -- what the Workflow methods of the same names return ---------------------------------------

    def list_markers(self, all: bool = False) -> list[Marker]:  # noqa: A002 - simpleflow's parameter name
        """The user's markers: the last recording of each name, or with `all=True` every recording."""
        rows = [(name, recs) for name, recs in self.markers.items() if not name.startswith(INTERNAL_MARKER_PREFIX)]
        if all:
            return [Marker(name, decode(m["details"])) for name, recs in rows for m in recs]
        return [Marker(name, decode(recs[-1]["details"])) for name, recs in rows]

    def event_details(self, event_type: str, name: str) -> dict[str, Any] | None:
        if event_type == "signal":
            return self.signals.get(name)
        if event_type == "marker":
            recorded = self.markers.get(name)
            if not recorded:
                return None
            return dict(recorded[-1], details=decode(recorded[-1]["details"]))
        if event_type == "timer":
            return self.timers.get(name)
        raise ValueError(f"Unimplemented type {event_type!r} for get_event_details")

    def __repr__(self) -> str:
        return f"<History {len(self.events)} events>"


__all__ = ["History", "Marker"]
