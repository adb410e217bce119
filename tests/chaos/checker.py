"""Reads every history after a chaos run and checks the promises: exactly-once state transitions,
at-least-once activities whose completions count once, nothing lost.

Each check returns the violations it found as one-line strings (empty: the promise held), so that
a run reports every broken invariant, not only the first.
"""

from __future__ import annotations

import collections
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steadyflow import history as h
from steadyflow.engines.base import Engine, ExecutionInfo
from steadyflow.payload.converter import INLINE, PREFIX
from tests.fixtures import chaos_workflows as cw

_ACTIVITY_CLOSES = (h.ACTIVITY_TASK_COMPLETED, h.ACTIVITY_TASK_FAILED, h.ACTIVITY_TASK_TIMED_OUT)
_DECISION_CLOSES = (h.DECISION_TASK_COMPLETED, h.DECISION_TASK_FAILED, h.DECISION_TASK_TIMED_OUT)


@dataclass
class Report:
    executions: int = 0
    events: int = 0
    attempts_retried: int = 0
    offloaded: int = 0
    violations: list[str] = field(default_factory=list)


def check_engine(engine: Engine, signals_sent: dict[str, list[int]], started: set[str]) -> Report:
    """Check every execution the engine holds; `started` are the top-level ids the driver started,
    `signals_sent` the signal values it sent to each, in order."""
    report = Report()
    infos = engine.list_executions(limit=100_000)
    seen = {i.workflow_id for i in infos}
    for wid in sorted(started - seen):
        report.violations.append(f"{wid}: started by the driver but unknown to the engine (lost)")
    for info in infos:
        report.executions += 1
        events = engine.get_history(info.workflow_id, info.run_id)
        report.events += len(events)
        report.attempts_retried += sum(e.event_type in _ACTIVITY_CLOSES[1:] for e in events)
        report.offloaded += sum(is_reference(v) for e in events for v in e.attributes.values())
        for problem in check_execution(engine, info, events, signals_sent.get(info.workflow_id)):
            report.violations.append(f"{info.workflow_id}: {problem}")
    return report


def check_execution(
    engine: Engine, info: ExecutionInfo, events: list[h.Event], signals: list[int] | None
) -> list[str]:
    problems: list[str] = []
    problems += closed_with_expected_result(engine, info)
    problems += dense_and_ordered(events)
    problems += activities_once(events)
    problems += decisions_once(events)
    problems += timers_once(events)
    problems += children_once(events)
    if signals is not None:
        problems += signals_in_order(engine, events, signals)
    return problems


def is_reference(value: Any) -> bool:
    """A payload kept in the blob store, not in the history (see `payload.converter.Reference`)."""
    return isinstance(value, str) and value.startswith(PREFIX) and not value.startswith(INLINE)


def closed_with_expected_result(engine: Engine, info: ExecutionInfo) -> list[str]:
    if info.status != "completed":
        return [f"status {info.status!r} ({info.close_reason}), expected completed"]
    args = engine.payloads.loads(info.input)["args"]
    got, want = engine.payloads.loads(info.result), cw.expected(info.workflow_type, args)
    return [] if got == want else [f"result {got!r}, expected {want!r}"]


def dense_and_ordered(events: list[h.Event]) -> list[str]:
    problems = []
    ids = [e.event_id for e in events]
    if ids != list(range(1, len(events) + 1)):
        problems.append(f"event ids not dense and ordered: {ids[:50]}")
    if not events or events[0].event_type != h.WORKFLOW_EXECUTION_STARTED:
        problems.append("history does not start with WorkflowExecutionStarted")
    closes = [e for e in events if e.event_type in h.CLOSE_EVENTS]
    if len(closes) != 1 or closes[0] is not events[-1]:
        problems.append(f"{len(closes)} close events, expected one, last: {[e.event_id for e in closes]}")
    return problems


def activities_once(events: list[h.Event]) -> list[str]:
    """Every attempt closed at most once, every activity completed exactly once, and a new
    attempt scheduled only after the previous one closed (a decision applied twice would not)."""
    problems = []
    activity_of = {e.event_id: e.attributes["activityId"] for e in events if e.event_type == h.ACTIVITY_TASK_SCHEDULED}
    closes = collections.Counter(e.attributes["scheduledEventId"] for e in events if e.event_type in _ACTIVITY_CLOSES)
    problems += [f"activity attempt {s} closed {n} times" for s, n in closes.items() if n > 1]
    starts = collections.Counter(e.attributes["scheduledEventId"] for e in events if e.event_type == h.ACTIVITY_TASK_STARTED)
    problems += [f"activity attempt {s} started {n} times" for s, n in starts.items() if n > 1]
    completed = collections.Counter(
        activity_of.get(e.attributes["scheduledEventId"]) for e in events if e.event_type == h.ACTIVITY_TASK_COMPLETED
    )
    problems += [f"activity {a} completed {n} times" for a, n in completed.items() if n != 1]
    problems += [f"activity {a} never completed" for a in set(activity_of.values()) - set(completed)]
    open_attempt: dict[str, int] = {}
    for e in events:
        if e.event_type == h.ACTIVITY_TASK_SCHEDULED:
            aid = e.attributes["activityId"]
            if aid in open_attempt:
                problems.append(f"activity {aid} scheduled at {e.event_id} while attempt {open_attempt[aid]} was open")
            open_attempt[aid] = e.event_id
        elif e.event_type in _ACTIVITY_CLOSES:
            open_attempt.pop(activity_of.get(e.attributes["scheduledEventId"]), None)
    return problems


def decisions_once(events: list[h.Event]) -> list[str]:
    """Each started decision task answered (completed, failed or timed out) at most once, and
    every command event belongs to a DecisionTaskCompleted that precedes it."""
    problems = []
    answered = collections.Counter(e.attributes.get("startedEventId") for e in events if e.event_type in _DECISION_CLOSES)
    problems += [f"decision task {s} answered {n} times" for s, n in answered.items() if n > 1]
    completed = {e.event_id for e in events if e.event_type == h.DECISION_TASK_COMPLETED}
    for e in events:
        if e.event_type in h.COMMAND_EVENTS:
            owner = e.attributes.get("decisionTaskCompletedEventId")
            if owner not in completed or owner >= e.event_id:
                problems.append(f"{e.event_type} {e.event_id} not from a completed decision (owner {owner})")
    return problems


def timers_once(events: list[h.Event]) -> list[str]:
    problems = []
    started = collections.Counter(e.attributes["timerId"] for e in events if e.event_type == h.TIMER_STARTED)
    fired = collections.Counter(e.attributes["timerId"] for e in events if e.event_type == h.TIMER_FIRED)
    problems += [f"timer {t} started {n} times" for t, n in started.items() if n > 1]
    problems += [f"timer {t} fired {n} times" for t, n in fired.items() if n != 1]
    problems += [f"timer {t} fired but never started" for t in set(fired) - set(started)]
    problems += [f"timer {t} never fired" for t in set(started) - set(fired)]
    return problems


def children_once(events: list[h.Event]) -> list[str]:
    initiated = collections.Counter(e.attributes["workflowId"] for e in events if e.event_type == h.START_CHILD_INITIATED)
    closed = collections.Counter(
        e.attributes["workflowExecution"]["workflowId"] if "workflowExecution" in e.attributes else e.attributes.get("workflowId")
        for e in events
        if e.event_type in h.CHILD_CLOSE_EVENTS.values()
    )
    problems = [f"child {c} started {n} times" for c, n in initiated.items() if n > 1]
    problems += [f"child {c} closed {n} times in the parent's history" for c, n in closed.items() if n != 1]
    return problems


def signals_in_order(engine: Engine, events: list[h.Event], sent: list[int]) -> list[str]:
    got = [
        engine.payloads.loads(e.attributes.get("input"))
        for e in events
        if e.event_type == h.WORKFLOW_EXECUTION_SIGNALED and e.attributes.get("signalName") == cw.SIGNAL_NAME
    ]
    return [] if got == sent else [f"signals recorded {got}, sent {sent}"]


def integrity(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def summary(
    engine_name: str, seed: int, report: Report, faults: dict[str, int], skipped: dict[str, str],
    wall: float, crashes: list[str], extra: dict[str, Any] | None = None,
) -> str:
    """The one-screen summary printed after a run."""
    lines = [
        f"chaos run on {engine_name}: seed {seed} (replay with --chaos-seed {seed}), {wall:.1f} s wall",
        f"  executions checked: {report.executions} ({report.events} events, "
        f"{report.attempts_retried} activity attempts failed or timed out and retried, "
        f"{report.offloaded} payloads offloaded to the blob store)",
        "  faults injected: " + (", ".join(f"{k} {v}" for k, v in sorted(faults.items())) or "none"),
    ]
    for kind, reason in sorted(skipped.items()):
        lines.append(f"  fault kind skipped: {kind}: {reason}")
    for key, value in (extra or {}).items():
        lines.append(f"  {key}: {value}")
    lines.append(f"  processes that exited by themselves (restarted): {len(crashes)}")
    lines += [f"    {c}" for c in crashes[:5]]
    lines.append(f"  invariant violations: {len(report.violations)}")
    lines += [f"    {v}" for v in report.violations[:15]]
    if len(report.violations) > 15:
        lines.append(f"    ... and {len(report.violations) - 15} more")
    return "\n".join(lines)
