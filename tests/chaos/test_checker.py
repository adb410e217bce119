"""The checker itself: a clean history passes, and each broken promise is reported.

A chaos run with zero violations means something only if the checker sees violations when they
are there, so each invariant is shown failing on a history broken in that one way.
"""

from __future__ import annotations

import dataclasses

import pytest

from steadyflow import history as h
from steadyflow.engines import open_engine
from steadyflow.local import run_local
from tests.chaos import checker
from tests.fixtures import chaos_workflows as cw

pytestmark = pytest.mark.chaos


@pytest.fixture(scope="module")
def done():
    """A completed execution of each shape the checker reads: activities, timers, children, signals."""
    engine = open_engine("memory://")
    runs = {
        "sequential": run_local(cw.ChaosSequential, [5, 2], engine=engine, workflow_id="sequential"),
        "timers": run_local(cw.ChaosTimers, [1], engine=engine, workflow_id="timers"),
        "parent": run_local(cw.ChaosParent, [2], engine=engine, workflow_id="parent"),
    }
    yield engine, runs
    engine.close()


def events_of(engine, wid):
    return engine.get_history(wid)


def renumber(events):
    return [dataclasses.replace(e, event_id=i) for i, e in enumerate(events, 1)]


def test_clean_executions_pass_every_check(done):
    engine, _ = done
    report = checker.check_engine(engine, {}, {"sequential", "timers", "parent"})
    assert report.executions == 5  # three, and the parent's two children
    assert report.violations == []


def test_a_lost_execution_is_reported(done):
    engine, _ = done
    report = checker.check_engine(engine, {}, {"sequential", "never-recorded"})
    assert report.violations == ["never-recorded: started by the driver but unknown to the engine (lost)"]


def test_a_wrong_result_is_reported(done):
    engine, _ = done
    info = dataclasses.replace(engine.describe_execution("sequential"), result="8")
    assert checker.closed_with_expected_result(engine, info) == ["result 8, expected 7"]


def test_an_activity_completion_applied_twice_is_reported(done):
    engine, _ = done
    events = events_of(engine, "sequential")
    completed = next(e for e in events if e.event_type == h.ACTIVITY_TASK_COMPLETED)
    twice = renumber(events[:-1] + [completed, events[-1]])
    problems = checker.activities_once(twice)
    assert any("closed 2 times" in p for p in problems) and any("completed 2 times" in p for p in problems)


def test_an_activity_scheduled_again_while_open_is_a_decision_applied_twice(done):
    engine, _ = done
    events = events_of(engine, "sequential")
    scheduled = next(e for e in events if e.event_type == h.ACTIVITY_TASK_SCHEDULED)
    at = events.index(scheduled) + 1
    problems = checker.activities_once(renumber(events[:at] + [scheduled] + events[at:]))
    assert any("while attempt" in p for p in problems)


def test_a_decision_task_answered_twice_is_reported(done):
    engine, _ = done
    events = events_of(engine, "sequential")
    answer = next(e for e in events if e.event_type == h.DECISION_TASK_COMPLETED)
    problems = checker.decisions_once(events + [dataclasses.replace(answer, event_id=len(events) + 1)])
    assert any("answered 2 times" in p for p in problems)


def test_ids_out_of_order_and_a_second_close_are_reported(done):
    engine, _ = done
    events = events_of(engine, "sequential")
    swapped = [events[1], events[0], *events[2:]]
    assert any("not dense and ordered" in p for p in checker.dense_and_ordered(swapped))
    assert any("2 close events" in p for p in checker.dense_and_ordered(events + [events[-1]]))


def test_a_timer_fired_twice_or_never_is_reported(done):
    engine, _ = done
    events = events_of(engine, "timers")
    fired = [e for e in events if e.event_type == h.TIMER_FIRED]
    assert len(fired) == 2 and checker.timers_once(events) == []
    assert any("fired 2 times" in p for p in checker.timers_once(events + [fired[0]]))
    assert any("never fired" in p for p in checker.timers_once([e for e in events if e is not fired[0]]))


def test_a_child_closed_twice_in_the_parent_is_reported(done):
    engine, _ = done
    events = events_of(engine, "parent")
    closed = next(e for e in events if e.event_type == h.CHILD_COMPLETED)
    assert checker.children_once(events) == []
    assert any("closed 2 times" in p for p in checker.children_once(events + [closed]))


def test_signals_lost_duplicated_or_reordered_are_reported(done):
    engine, _ = done

    def signal(i, value):
        return h.Event(i, h.WORKFLOW_EXECUTION_SIGNALED, 0.0,
                       {"signalName": cw.SIGNAL_NAME, "input": engine.payloads.dumps(value)})

    events = [signal(1, 0), signal(2, 1), signal(3, 2)]
    assert checker.signals_in_order(engine, events, [0, 1, 2]) == []
    assert checker.signals_in_order(engine, events[:2], [0, 1, 2]) == ["signals recorded [0, 1], sent [0, 1, 2]"]
    assert checker.signals_in_order(engine, [events[1], events[0]], [0, 1]) != []
    assert checker.signals_in_order(engine, events + [signal(4, 2)], [0, 1, 2]) != []


def test_summary_fits_a_screen_and_names_the_seed_faults_and_violations():
    report = checker.Report(executions=3, events=40, violations=[f"v{i}" for i in range(30)])
    text = checker.summary("sqlite", 77, report, {"kill_worker": 2}, {"disk_full": "no tmpfs"}, 12.0, [])
    lines = text.splitlines()
    assert "seed 77" in lines[0] and "--chaos-seed 77" in lines[0]
    assert "kill_worker 2" in text and "fault kind skipped: disk_full: no tmpfs" in text
    assert "invariant violations: 30" in text and "... and 15 more" in text
    assert len(lines) <= 25
