"""The execution timeline: bars computed from a history, laid out for an inline SVG Gantt chart.

`bars(events)` reads the events only (no engine), one bar per scheduled activity attempt, timer
and child workflow, each with the moments it was scheduled, started and ended and its outcome.
`layout(bars, start, end)` turns them into coordinates; the template draws them, so every text that
reaches the page is escaped by Jinja, never by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .. import history as h
from ..history import Event

ACTIVITY_CANCELED = "ActivityTaskCanceled"  # SWF's; not written by our engines, read if present
RETRY_TIMER_PREFIX = "__retry-"  # the decider waits out an activity's retry interval on such a timer

#: Outcome -> the colour class the stylesheet knows.
OUTCOME_CLASS = {
    "completed": "ok",
    "fired": "ok",
    "failed": "failed",
    "start_failed": "failed",
    "timed_out": "timed-out",
    "canceled": "canceled",
    "terminated": "canceled",
    "running": "open",
    "scheduled": "open",
}

_CHILD_OUTCOMES = {
    h.CHILD_COMPLETED: "completed",
    h.CHILD_FAILED: "failed",
    h.CHILD_CANCELED: "canceled",
    h.CHILD_TERMINATED: "terminated",
    h.CHILD_TIMED_OUT: "timed_out",
}
_ACTIVITY_OUTCOMES = {
    h.ACTIVITY_TASK_COMPLETED: "completed",
    h.ACTIVITY_TASK_FAILED: "failed",
    h.ACTIVITY_TASK_TIMED_OUT: "timed_out",
    ACTIVITY_CANCELED: "canceled",
}


@dataclass
class Bar:
    """One row of the timeline."""

    kind: str
    """`activity`, `timer` or `child`."""
    key: str
    """The activity id, timer id or child workflow id."""
    name: str
    """Activity name, `timer`, or child workflow type."""
    scheduled: float
    started: float | None = None
    ended: float | None = None
    outcome: str = "scheduled"
    attempt: int | None = None
    note: str = ""
    """Why it ended as it did (failure reason, timeout type), or the timer's duration."""
    child_run_id: str | None = None
    event_id: int = 0
    """The event that opened the bar (scheduled, started or initiated)."""

    @property
    def css(self) -> str:
        return OUTCOME_CLASS.get(self.outcome, "open")

    @property
    def label(self) -> str:
        if self.kind == "activity" and self.attempt and self.attempt > 1:
            return f"{self.key} #{self.attempt}"
        return self.key

    @property
    def short_label(self) -> str:
        """`label` without the module path of simpleflow-style ids (`activity-pkg.mod.fn-1` -> `fn-1`)."""
        key = self.key
        if self.kind == "timer" and key.startswith(RETRY_TIMER_PREFIX + "activity-") and "." in key:
            return "retry " + key.rpartition(".")[2]
        if self.kind == "activity" and key.startswith("activity-") and "." in key:
            short = key.rpartition(".")[2]
            return f"{short} #{self.attempt}" if self.attempt and self.attempt > 1 else short
        return self.label

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "name": self.name,
            "label": self.label,
            "outcome": self.outcome,
            "attempt": self.attempt,
            "scheduled": self.scheduled,
            "started": self.started,
            "ended": self.ended,
            "note": self.note,
            "child_run_id": self.child_run_id,
            "event_id": self.event_id,
        }


def _name(value: Any) -> str:
    """`{"name": ..., "version": ...}` (SWF's type attributes) as a name."""
    if isinstance(value, dict):
        return str(value.get("name", ""))
    return "" if value is None else str(value)


def bars(events: list[Event]) -> list[Bar]:
    """Bars for the activities, timers and children of a history, in the order they were opened."""
    out: list[Bar] = []
    activities: dict[int, Bar] = {}  # by ActivityTaskScheduled event id
    timers: dict[int, Bar] = {}  # by TimerStarted event id
    open_timers: dict[str, Bar] = {}  # by timer id, for events without startedEventId
    children: dict[int, Bar] = {}  # by StartChildWorkflowExecutionInitiated event id
    for ev in events:
        a = ev.attributes
        kind = ev.event_type
        if kind == h.ACTIVITY_TASK_SCHEDULED:
            bar = Bar("activity", str(a.get("activityId", ev.event_id)), _name(a.get("activityType")),
                      ev.timestamp, attempt=h.recorded_attempt(a.get("control")), event_id=ev.event_id)
            activities[ev.event_id] = bar
            out.append(bar)
        elif kind == h.ACTIVITY_TASK_STARTED:
            bar = activities.get(a.get("scheduledEventId", -1))
            if bar is not None:
                bar.started, bar.outcome = ev.timestamp, "running"
        elif kind in _ACTIVITY_OUTCOMES:
            bar = activities.get(a.get("scheduledEventId", -1))
            if bar is not None:
                bar.ended, bar.outcome = ev.timestamp, _ACTIVITY_OUTCOMES[kind]
                bar.note = str(a.get("reason") or a.get("timeoutType") or "")
        elif kind == h.TIMER_STARTED:
            timer_id = str(a.get("timerId", ev.event_id))
            seconds = a.get("startToFireTimeout")
            name = "retry back-off" if timer_id.startswith(RETRY_TIMER_PREFIX) else "timer"
            bar = Bar("timer", timer_id, name, ev.timestamp, started=ev.timestamp, outcome="running",
                      note=f"{seconds:g} s" if isinstance(seconds, (int, float)) else "", event_id=ev.event_id)
            timers[ev.event_id] = open_timers[timer_id] = bar
            out.append(bar)
        elif kind in (h.TIMER_FIRED, h.TIMER_CANCELED):
            bar = timers.get(a.get("startedEventId", -1)) or open_timers.get(str(a.get("timerId")))
            if bar is not None:
                bar.ended, bar.outcome = ev.timestamp, "fired" if kind == h.TIMER_FIRED else "canceled"
                open_timers.pop(bar.key, None)
        elif kind == h.START_CHILD_INITIATED:
            bar = Bar("child", str(a.get("workflowId", ev.event_id)), _name(a.get("workflowType")),
                      ev.timestamp, event_id=ev.event_id)
            children[ev.event_id] = bar
            out.append(bar)
        elif kind == h.CHILD_STARTED:
            bar = children.get(a.get("initiatedEventId", -1))
            if bar is not None:
                bar.started, bar.outcome = ev.timestamp, "running"
                execution = a.get("workflowExecution")
                if isinstance(execution, dict) and execution.get("runId"):
                    bar.child_run_id = str(execution["runId"])
        elif kind in _CHILD_OUTCOMES or kind == h.START_CHILD_FAILED:
            bar = children.get(a.get("initiatedEventId", -1))
            if bar is not None:
                bar.ended = ev.timestamp
                bar.outcome = _CHILD_OUTCOMES.get(kind, "start_failed")
                bar.note = str(a.get("reason") or a.get("cause") or "")
    return out


# -- layout --------------------------------------------------------------------------------------

LABEL_WIDTH = 320
CHART_WIDTH = 640
WIDTH = LABEL_WIDTH + CHART_WIDTH + 20
ROW_HEIGHT = 22
BAR_HEIGHT = 14
TOP = 26
LABEL_CHARS = 40
MIN_BAR = 2.0


def duration(seconds: float | None) -> str:
    """A short human duration: `850 ms`, `12.5 s`, `3m 05s`, `2h 10m`."""
    if seconds is None:
        return ""
    s = max(0.0, seconds)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)}m {int(s % 60):02d}s"
    return f"{int(s // 3600)}h {int(s % 3600 // 60):02d}m"


def _step(span: float, target: int = 5) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving about `target` ticks."""
    raw = span / target
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power  # pragma: no cover - the loop always returns


@dataclass
class Row:
    bar: Bar
    y: float
    text_y: float
    label: str
    title: str
    x: float
    w: float
    wait_x: float
    wait_w: float


@dataclass
class Tick:
    x: float
    label: str


@dataclass
class Layout:
    width: int
    height: int
    label_width: int
    rows: list[Row] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    span: float = 0.0


def _title(bar: Bar, end: float) -> str:
    what = {"activity": "activity", "timer": "timer", "child": "child workflow"}[bar.kind]
    lines = [f"{bar.label} ({what}{': ' + bar.name if bar.name and bar.name != 'timer' else ''})"]
    state = bar.outcome.replace("_", " ")
    times = []
    if bar.kind != "timer" and bar.started is not None:
        times.append(f"waited {duration(bar.started - bar.scheduled)}")
    begin = bar.started if bar.started is not None else bar.scheduled
    if bar.ended is not None:
        times.append(f"{'ran' if bar.kind != 'timer' else 'lasted'} {duration(bar.ended - begin)}")
    elif bar.started is not None:
        times.append(f"for {duration(end - begin)} so far")
    lines.append(f"{state}{': ' + ', '.join(times) if times else ''}")
    if bar.note:
        lines.append(bar.note if len(bar.note) <= 300 else bar.note[:300] + "…")
    return "\n".join(lines)


def layout(items: list[Bar], start: float, end: float) -> Layout:
    """Coordinates for `items` on a chart from `start` to `end` (epoch seconds). A bar still open is
    drawn to `end`; the part between scheduled and started is drawn apart as waiting."""
    span = max(end - start, 1e-3)
    scale = CHART_WIDTH / span

    def x(t: float) -> float:
        return LABEL_WIDTH + min(max(t - start, 0.0), span) * scale

    out = Layout(WIDTH, TOP + ROW_HEIGHT * len(items) + 8, LABEL_WIDTH, span=span)
    step = _step(span)
    n = 0
    while n * step <= span * 1.0001:
        out.ticks.append(Tick(round(x(start + n * step), 1), "0" if n == 0 else "+" + duration(n * step)))
        n += 1
    for i, bar in enumerate(items):
        y = TOP + i * ROW_HEIGHT + (ROW_HEIGHT - BAR_HEIGHT) / 2
        begin = bar.started if bar.started is not None else bar.scheduled
        finish = bar.ended if bar.ended is not None else end
        wait_x = x(bar.scheduled)
        if bar.started is None and bar.ended is None:  # never started (yet): all of it is waiting
            bx = bw = 0.0
            wait_w = max(x(finish) - wait_x, MIN_BAR)
        else:
            bw = max(x(finish) - x(begin), MIN_BAR)
            bx = min(x(begin), LABEL_WIDTH + CHART_WIDTH - bw)
            wait_w = max(x(begin) - wait_x, 0.0) if bar.kind != "timer" else 0.0
        label = bar.short_label
        label = label if len(label) <= LABEL_CHARS else "…" + label[-(LABEL_CHARS - 1):]
        out.rows.append(Row(bar, round(y, 1), round(y + BAR_HEIGHT - 3, 1), label, _title(bar, end),
                            round(bx, 1), round(bw, 1), round(wait_x, 1), round(wait_w, 1)))
    return out
