"""Replay against saved histories: same decisions for the same code, NonDeterminismError otherwise."""

from __future__ import annotations

import json

import pytest

from steadyflow import NonDeterminismError, Workflow, futures
from steadyflow import history as h
from steadyflow.decider import Decider
from steadyflow.engines.memory import MemoryEngine
from steadyflow.local import run_local, start
from steadyflow.replay import Executor
from tests.fixtures import workflows as wf


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def saved_history(cls, args=(), kwargs=None):
    engine = MemoryEngine()
    info = run_local(cls, args, kwargs, engine=engine)
    events = engine.get_history(info.workflow_id, info.run_id)
    # Through JSON, as `workflow history --format json` saves it.
    return [h.Event.from_json(json.loads(json.dumps(e.to_json()))) for e in events]


def test_replaying_a_complete_history_with_the_same_code_passes():
    for cls, args in [(wf.FanOut, [5]), (wf.Sequential, [4]), (wf.Retrying, [2]), (wf.Timers, []), (wf.CatchFailure, [])]:
        events = saved_history(cls, args)
        assert Executor(cls).decide(events) == []


class Reordered(Workflow):
    """Sequential with its first two steps swapped for a different activity."""

    def run(self, n, start=0):
        first = self.submit(wf.square, start).result
        return self.submit(wf.inc, first).result


class DifferentArgs(Workflow):
    def run(self, n, start=0):
        x = start + 100
        for _ in range(n):
            x = self.submit(wf.inc, x).result
        return x


class Shorter(Workflow):
    def run(self, n, start=0):
        return start


def test_reordered_activity_is_non_deterministic_and_names_the_event():
    events = saved_history(wf.Sequential, [2])
    with pytest.raises(NonDeterminismError) as err:
        Executor(Reordered).decide(events)
    first_scheduled = next(e for e in events if e.event_type == h.ACTIVITY_TASK_SCHEDULED)
    assert err.value.event_id == first_scheduled.event_id
    assert "activity-tests.fixtures.workflows.inc-1" in err.value.recorded
    assert "activity-tests.fixtures.workflows.square-1" in err.value.requested
    assert f"event {first_scheduled.event_id}" in str(err.value)


def test_changed_arguments_are_non_deterministic():
    events = saved_history(wf.Sequential, [2])
    with pytest.raises(NonDeterminismError) as err:
        Executor(DifferentArgs).decide(events)
    assert '{"args":[0],"kwargs":{}}' in err.value.recorded
    assert '{"args":[100],"kwargs":{}}' in err.value.requested


def test_removed_activity_is_non_deterministic():
    events = saved_history(wf.Sequential, [2])
    with pytest.raises(NonDeterminismError) as err:
        Executor(Shorter).decide(events)
    assert "nothing" in err.value.requested or "completion" in err.value.requested


def test_decider_gives_back_a_non_deterministic_task_and_the_execution_waits_for_fixed_code():
    clock = Clock()
    engine = MemoryEngine(clock=clock)
    wid, rid = start(engine, wf.Sequential, [2], task_list="t")
    good = Decider(engine, "t", [wf.Sequential])
    assert good.run_once()
    task = engine.poll_activity_task("t")
    engine.complete_activity_task(task.token, "1")

    class Broken(wf.Sequential):
        def run(self, n, start=0):
            return self.submit(wf.square, 7).result

    Broken.__module__, Broken.__qualname__ = wf.Sequential.__module__, wf.Sequential.__qualname__
    bad = Decider(engine, "t", [Broken])
    assert bad.run_once()
    events = engine.get_history(wid, rid)
    failed = [e for e in events if e.event_type == h.DECISION_TASK_FAILED]
    assert len(failed) == 1 and "NonDeterminismError" in failed[0].attributes["cause"]
    assert engine.describe_execution(wid).is_open
    assert engine.poll_decision_task("t") is None  # backing off
    clock.now += 2
    assert good.run_once()  # fixed code takes over and carries on
    task = engine.poll_activity_task("t")
    assert json.loads(task.input) == {"args": [1], "kwargs": {}}


def test_decision_task_that_timed_out_is_skipped_on_replay():
    clock = Clock()
    engine = MemoryEngine(clock=clock)
    wid, rid = start(engine, wf.FanOut, [3], task_list="t")
    lost = engine.poll_decision_task("t")  # a decider that dies before answering
    assert lost is not None
    clock.now += 60
    decider = Decider(engine, "t", [wf.FanOut], activity_task_list="t")
    assert decider.run_once()
    while (task := engine.poll_activity_task("t")) is not None:
        engine.complete_activity_task(task.token, str(json.loads(task.input)["args"][0] ** 2))
    assert decider.run_once()
    info = engine.describe_execution(wid)
    assert info.status == "completed" and json.loads(info.result) == 0 + 1 + 4
    types = [e.event_type for e in engine.get_history(wid)]
    assert h.DECISION_TASK_TIMED_OUT in types
    assert types.count(h.ACTIVITY_TASK_SCHEDULED) == 3  # nothing scheduled twice


class SeesOnlyWhatItSaw(Workflow):
    """Records what it saw at each wake-up: replay must reproduce it exactly."""

    def run(self):
        a = self.submit(wf.inc, 1)
        b = self.submit(wf.inc, 2)
        done, _ = futures.wait(a, b, return_when=futures.FIRST_COMPLETED)
        self.record_marker("saw", [f.result for f in done])
        return futures.wait(a, b)


def test_events_arriving_during_a_decision_are_seen_only_at_the_next_one():
    engine = MemoryEngine()
    wid, rid = start(engine, SeesOnlyWhatItSaw, task_list="t")
    decider = Decider(engine, "t", [SeesOnlyWhatItSaw], activity_task_list="t")
    decider.run_once()
    t1 = engine.poll_activity_task("t")
    t2 = engine.poll_activity_task("t")
    engine.complete_activity_task(t1.token, "2")
    task = engine.poll_decision_task("t")
    engine.complete_activity_task(t2.token, "3")  # arrives while the decider is deciding
    decider.handle(task)
    decider.run_once()
    info = engine.describe_execution(wid)
    assert json.loads(info.result) == [2, 3]
    marker = next(e for e in engine.get_history(wid) if e.event_type == h.MARKER_RECORDED)
    assert marker.attributes["details"] == "[2]"
    # And a full replay agrees with what was recorded.
    assert Executor(SeesOnlyWhatItSaw).decide(engine.get_history(wid)) == []


def test_task_handed_back_by_a_stopping_worker_is_rescheduled_without_using_an_attempt():
    engine = MemoryEngine()
    wid, _ = start(engine, wf.Sequential, [1], task_list="t")  # inc has no retry
    decider = Decider(engine, "t", [wf.Sequential], activity_task_list="t")
    decider.run_once()
    task = engine.poll_activity_task("t")
    engine.fail_activity_task(task.token, "WorkerShutdown: task handed back on shutdown")
    decider.run_once()
    again = engine.poll_activity_task("t")
    assert again.activity_id == task.activity_id and json.loads(again.control) == {"attempt": 1}
    engine.complete_activity_task(again.token, "1")
    decider.run_once()
    assert engine.describe_execution(wid).status == "completed"


def test_no_retry_once_cancellation_was_requested():
    engine = MemoryEngine()
    wid, _ = start(engine, wf.Retrying, [10], task_list="t")  # flaky has retry=3
    decider = Decider(engine, "t", [wf.Retrying], activity_task_list="t")
    decider.run_once()
    task = engine.poll_activity_task("t")
    engine.request_cancel_execution(wid)
    engine.fail_activity_task(task.token, "RuntimeError: attempt 1 fails")
    decider.run_once()
    events = engine.get_history(wid)
    assert sum(e.event_type == h.ACTIVITY_TASK_SCHEDULED for e in events) == 1
    assert engine.describe_execution(wid).status == "canceled"
