"""simpleflow's workflow hooks (on_task_failure, should_cancel, lifecycle), its timer and marker
spellings, history reads and futures.wait modes, end to end on the memory and SQLite engines."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from steadyflow import history as h
from steadyflow.decider import Decider
from steadyflow.engines import open_engine
from steadyflow.failure_context import TaskFailureContext
from steadyflow.local import InlineDriver, start
from steadyflow.replay import Executor
from steadyflow.replay_hooks import RETRY_TIMER_PREFIX
from steadyflow.workflow_history import History, Marker
from tests.fixtures import hook_workflows as hw


def run(engine, cls, args=(), kwargs=None, cache_size=None, workflow_id=None):
    """Run to the end in this thread; `cache_size=0` replays the whole history at every decision."""
    task_list = f"hooks-{uuid.uuid4().hex}"
    workflow_id, _ = start(engine, cls, args, kwargs, workflow_id=workflow_id, task_list=task_list)
    driver = InlineDriver(engine, task_list, (cls,))
    if cache_size is not None:
        driver.decider = Decider(engine, task_list, [cls], identity="t", activity_task_list=task_list,
                                 cache_size=cache_size)
    assert driver.run_until(lambda: not engine.describe_execution(workflow_id).is_open)
    return engine.describe_execution(workflow_id)


def events(engine, info):
    return engine.get_history(info.workflow_id, info.run_id)


def types(engine, info):
    return [e.event_type for e in events(engine, info)]


def assert_replays(engine, info, cls):
    """A fresh executor replays the whole history without a difference."""
    assert Executor(cls).decide(events(engine, info)) == []


# -- on_task_failure ------------------------------------------------------------------------------


def assert_retried_after_timer(engine, info, wait=2.0):
    evs = events(engine, info)
    kinds = [e.event_type for e in evs]
    scheduled = [i for i, t in enumerate(kinds) if t == h.ACTIVITY_TASK_SCHEDULED]
    started = [e for e in evs if e.event_type == h.TIMER_STARTED]
    fired = [e for e in evs if e.event_type == h.TIMER_FIRED]
    assert len(scheduled) == 2 and len(started) == 1 and len(fired) == 1
    assert started[0].attributes["timerId"].startswith(RETRY_TIMER_PREFIX)
    assert started[0].attributes["startToFireTimeout"] == wait
    # failed -> timer started -> timer fired -> scheduled again, in that order
    failed_at = kinds.index(h.ACTIVITY_TASK_FAILED)
    assert scheduled[0] < failed_at < evs.index(started[0]) < evs.index(fired[0]) < scheduled[1]
    assert fired[0].timestamp - started[0].timestamp >= wait - 0.05
    attempts = [json.loads(evs[i].attributes["control"])["attempt"] for i in scheduled]
    assert attempts == [1, 2]


@pytest.mark.parametrize("cache_size", [None, 0], ids=["cached", "replayed"])
def test_retry_later_reschedules_the_task_after_a_timer(real_engine, cache_size):
    info = run(real_engine, hw.RetryLater, [4], cache_size=cache_size)
    assert info.status == "completed"
    assert json.loads(info.result) == 40
    assert_retried_after_timer(real_engine, info)
    assert_replays(real_engine, info, hw.RetryLater)


@pytest.mark.parametrize("engine_kind", ["memory", "sqlite"])
def test_retry_later_happens_once_after_a_decider_dies_during_the_wait(tmp_path, engine_kind):
    url = "memory://" if engine_kind == "memory" else f"sqlite:///{tmp_path / 'steadyflow.db'}"
    engine = open_engine(url)
    cls = hw.RetryLater
    task_list = f"hooks-{uuid.uuid4().hex}"
    workflow_id, run_id = start(engine, cls, [5], task_list=task_list)

    first = InlineDriver(engine, task_list, (cls,))
    first.run_until(lambda: h.TIMER_STARTED in [e.event_type for e in engine.get_history(workflow_id, run_id)])
    # The timer fires; a decider takes the decision task that follows and dies before answering.
    deadline = time.monotonic() + 30
    while engine.poll_decision_task(task_list, "doomed-decider") is None:
        assert time.monotonic() < deadline, "the retry timer never fired"
        time.sleep(0.05)
    del first
    if engine_kind == "sqlite":  # a new process: a new connection, nothing in memory
        engine.close()
        engine = open_engine(url)

    second = InlineDriver(engine, task_list, (cls,))
    second.decider = Decider(engine, task_list, [cls], identity="restarted", activity_task_list=task_list,
                             cache_size=0)
    assert second.run_until(lambda: not engine.describe_execution(workflow_id).is_open)
    info = engine.describe_execution(workflow_id)
    assert json.loads(info.result) == 50
    assert_retried_after_timer(engine, info)
    evs = engine.get_history(workflow_id, run_id)
    assert any(e.event_type == h.DECISION_TASK_TIMED_OUT for e in evs)
    assert Executor(cls).decide(evs) == []
    engine.close()


def test_ignore_finishes_the_task_with_no_result(real_engine):
    info = run(real_engine, hw.IgnoreFailure)
    assert info.status == "completed"
    assert json.loads(info.result) == {"result": None, "exception": None, "done": True}
    assert types(real_engine, info).count(h.ACTIVITY_TASK_SCHEDULED) == 1


def test_abort_fails_the_workflow_with_the_tasks_reason_without_retrying(real_engine):
    info = run(real_engine, hw.AbortOnFailure)
    assert info.status == "failed"
    assert info.close_reason == (
        'Workflow execution error in activity-tests.fixtures.hook_workflows.always_fails-1: '
        '"RuntimeError: fatal problem"'
    )
    assert json.loads(info.close_details)["message"] == "fatal problem"
    assert types(real_engine, info).count(h.ACTIVITY_TASK_SCHEDULED) == 1  # retry=3 not used
    assert_replays(real_engine, info, hw.AbortOnFailure)


def test_cancel_marks_the_future_cancelled(real_engine):
    info = run(real_engine, hw.CancelOnFailure)
    assert json.loads(info.result) == {"cancelled": True, "exception": None}


def test_retry_now_retries_at_once_then_default_handling_fails_the_task(real_engine):
    info = run(real_engine, hw.RetryNowThenDefault, cache_size=0)
    assert json.loads(info.result) == {"reason": "ValueError: three times"}
    kinds = types(real_engine, info)
    assert kinds.count(h.ACTIVITY_TASK_SCHEDULED) == 3
    assert h.TIMER_STARTED not in kinds


def test_handled_with_a_replacement_future_gives_its_result_and_the_context_fields(real_engine):
    info = run(real_engine, hw.HandledWithReplacement)
    assert json.loads(info.result) == 42
    assert hw.HandledWithReplacement.seen == {
        "task_name": "tests.fixtures.workflows.boom",
        "args": ["replace me"],
        "id": "activity-tests.fixtures.workflows.boom-1",
        "reason": "ValueError: replace me",
        "task_error": "ValueError",
        "task_message": "replace me",
        "task_error_type": "ValueError",
        "attempt": 1,
        "exception": "TaskFailed",
    }
    assert_replays(real_engine, info, hw.HandledWithReplacement)


@pytest.mark.parametrize("cache_size", [None, 0], ids=["cached", "replayed"])
def test_a_hook_may_record_markers_and_they_replay_in_place(real_engine, cache_size):
    info = run(real_engine, hw.HookSchedulesAndRecords, cache_size=cache_size)
    assert json.loads(info.result) == ["failure.seen"]
    assert_replays(real_engine, info, hw.HookSchedulesAndRecords)


def test_failure_context_decisions_and_fields_follow_simpleflow():
    ctx = TaskFailureContext(a_task=None, event={"retry": 2, "event_id": 9}, future=None)
    assert (ctx.retry_count, ctx.attempt_number, ctx.id, ctx.exception) == (2, 3, 9, None)
    assert ctx.decide_retry().decision == TaskFailureContext.Decision.retry_now
    assert ctx.decide_retry(retry_wait_timeout=5).decision == TaskFailureContext.Decision.retry_later
    assert ctx.retry_wait_timeout == 5
    assert ctx.decide_abort().decision.name == "abort"
    assert ctx.decide_handled("task").future is None and ctx.decision.name == "handled"
    assert [d.name for d in TaskFailureContext.Decision] == [
        "none", "abort", "ignore", "retry_now", "retry_later", "cancel", "handled"
    ]


# -- should_cancel and lifecycle hooks ------------------------------------------------------------


def drive(engine, cls, act):
    """Start `cls`, decide until it waits, call `act(workflow_id)`, then run it to its end."""
    task_list = f"hooks-{uuid.uuid4().hex}"
    workflow_id, _ = start(engine, cls, task_list=task_list)
    driver = InlineDriver(engine, task_list, (cls,))
    while driver.step():
        pass
    act(workflow_id)
    assert driver.run_until(lambda: not engine.describe_execution(workflow_id).is_open)
    return engine.describe_execution(workflow_id)


def test_should_cancel_false_ignores_the_cancel_request(real_engine):
    def cancel_then_signal(wid):
        real_engine.request_cancel_execution(wid)
        real_engine.signal_execution(wid, None, "go", json.dumps("went on"))

    info = drive(real_engine, hw.IgnoresCancel, cancel_then_signal)
    assert info.status == "completed"
    assert json.loads(info.result) == "went on"
    assert [name for name, _ in hw.CALLS[info.workflow_id]] == ["should_cancel"]


def test_should_cancel_true_cancels(real_engine):
    info = drive(real_engine, hw.ObeysCancel, real_engine.request_cancel_execution)
    assert info.status == "canceled"


@pytest.mark.parametrize("cache_size", [None, 0], ids=["cached", "replayed"])
def test_lifecycle_hooks_run_once_per_decision_in_simpleflows_order(real_engine, cache_size):
    info = run(real_engine, hw.Lifecycle, cache_size=cache_size)
    assert json.loads(info.result) == 2
    calls = hw.CALLS[info.workflow_id]
    decisions = types(real_engine, info).count(h.DECISION_TASK_STARTED)
    assert decisions == 2
    assert [name for name, _ in calls] == [
        "before_replay", "after_replay",
        "before_replay", "after_replay", "on_completed", "after_closed",
    ]
    # each sees the history up to its decision task
    starts = [e.event_id for e in events(real_engine, info) if e.event_type == h.DECISION_TASK_STARTED]
    assert [n for _, n in calls] == [starts[0], starts[0], starts[1], starts[1], starts[1], starts[1]]


def test_on_failure_gets_the_recorded_reason(real_engine):
    info = run(real_engine, hw.Lifecycle, kwargs={"fail": True})
    assert info.status == "failed"
    names = [name for name, _ in hw.CALLS[info.workflow_id]]
    assert names[-2:] == ["on_failure:Workflow execution failed: asked to", "after_closed"]
    assert "on_completed" not in names


def test_on_canceled_then_after_replay_and_after_closed(real_engine):
    info = drive(real_engine, hw.LifecycleCanceled, real_engine.request_cancel_execution)
    assert info.status == "canceled"
    names = [name for name, _ in hw.CALLS[info.workflow_id]]
    assert names[-4:] == ["before_replay", "on_canceled", "after_replay", "after_closed"]


def test_a_lifecycle_hook_that_asks_for_a_task_is_refused(real_engine):
    task_list = f"hooks-{uuid.uuid4().hex}"
    workflow_id, run_id = start(real_engine, hw.HookAsksForATask, task_list=task_list)
    driver = InlineDriver(real_engine, task_list, (hw.HookAsksForATask,))
    driver.step()
    failed = [e for e in real_engine.get_history(workflow_id, run_id) if e.event_type == h.DECISION_TASK_FAILED]
    assert failed and "lifecycle hook" in failed[0].attributes["cause"]
    assert real_engine.describe_execution(workflow_id).is_open  # waits for fixed code


# -- timers, markers, history reads, futures.wait -------------------------------------------------


def test_timers_and_markers_through_submit_start_and_record_once(real_engine):
    info = run(real_engine, hw.SimpleflowTimers)
    assert json.loads(info.result) == {"fired": True, "cancelled": True, "long_cancelled": True, "timer": "fired"}
    evs = events(real_engine, info)
    started = [e.attributes["timerId"] for e in evs if e.event_type == h.TIMER_STARTED]
    assert started == ["short", "long"]
    assert [e.attributes["timerId"] for e in evs if e.event_type == h.TIMER_CANCELED] == ["long"]
    assert json.loads(next(e for e in evs if e.event_type == h.TIMER_STARTED).attributes["control"]) == {"why": "test"}
    markers = [(e.attributes["markerName"], json.loads(e.attributes["details"]))
               for e in evs if e.event_type == h.MARKER_RECORDED]
    assert markers == [("through-submit", {"n": 1}), ("bare", [1, 2])]
    assert_replays(real_engine, info, hw.SimpleflowTimers)


def test_list_markers_and_get_event_details_read_the_history(real_engine):
    info = drive(real_engine, hw.ReadsHistory,
                 lambda wid: real_engine.signal_execution(wid, None, "hello", json.dumps({"args": ["hi"], "kwargs": {}})))
    result = json.loads(info.result)
    assert result["last"] == [["a", {"v": 2}], ["b", "text"]]
    assert result["all"] == [["a", {"v": 1}], ["a", {"v": 2}], ["b", "text"]]
    assert result["marker"] == {"v": 2}
    assert result["missing"] is None
    assert result["timer"] == "fired"
    assert result["signal"] == {"args": ["hi"], "kwargs": {}}
    context = result["context"]
    assert context["workflow_id"] == info.workflow_id and context["run_id"] == info.run_id
    assert {"name", "version", "domain_name", "tag_list", "continued_execution_run_id", "parent_workflow_id",
            "parent_run_id"} <= set(context)
    assert_replays(real_engine, info, hw.ReadsHistory)


def test_get_event_details_of_an_unknown_type_fails_the_workflow(real_engine):
    info = run(real_engine, hw.BadEventType)
    assert info.status == "failed"
    assert "Unimplemented type 'activity' for get_event_details" in info.close_reason


def test_futures_wait_modes(real_engine):
    info = run(real_engine, hw.WaitModes)
    assert json.loads(info.result) == {
        "all": [2, 3],
        "first_done": [True],
        "first_not_done": [True],
        "exc_done": [True],
        "exc_not_done": [True],
    }
    assert_replays(real_engine, info, hw.WaitModes)


def test_history_view_markers_and_equality():
    evs = [h.Event(1, h.MARKER_RECORDED, 0.0, {"markerName": "x", "details": "[1]"}),
           h.Event(2, h.MARKER_RECORDED, 0.0, {"markerName": "steadyflow.patch", "details": '"p"'})]
    view = History(evs)
    assert view.list_markers() == [Marker("x", [1])]
    assert view.list_markers(all=True) == [Marker("x", [1])]
    assert view.markers["steadyflow.patch"][0]["event_id"] == 2
    with pytest.raises(ValueError, match="Unimplemented type"):
        view.event_details("nothing", "x")


def test_on_task_failure_returning_something_else_gives_the_decision_back(real_engine):
    task_list = f"hooks-{uuid.uuid4().hex}"
    workflow_id, run_id = start(real_engine, hw.HookReturnsNonsense, task_list=task_list)
    driver = InlineDriver(real_engine, task_list, (hw.HookReturnsNonsense,))
    for _ in range(3):
        driver.step()
    failed = [e for e in real_engine.get_history(workflow_id, run_id) if e.event_type == h.DECISION_TASK_FAILED]
    assert failed and "on_task_failure returned bool" in failed[0].attributes["cause"]
    assert real_engine.describe_execution(workflow_id).is_open
