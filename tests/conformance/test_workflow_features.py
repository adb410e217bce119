"""Signals, timers, children, cancellation, continue-as-new, side effects, versioning, queries and
the test kit, on every engine (memory, sqlite, postgres), each with a time-skipping clock."""

from __future__ import annotations

import json

import pytest

from steadyflow import (
    ExecutionClosed,
    NonDeterminismError,
    UnknownExecution,
    WorkflowAlreadyStarted,
    WorkflowError,
    WorkflowFailed,
)
from steadyflow import history as h
from steadyflow.decider import Decider, query_workflow
from steadyflow.decisions import CompleteWorkflowExecution
from steadyflow.local import start
from steadyflow.replay import Executor
from steadyflow.testing import Replayer, WorkflowEnvironment
from tests.fixtures import features as ft
from tests.fixtures import workflows as wf
from tests.pg import fresh_schema


@pytest.fixture(autouse=True, params=["cached", "replayed"])
def decider_cache(request, monkeypatch):
    """Every feature holds with the decider's cache on and off: it must not change a decision."""
    monkeypatch.setenv("STEADYFLOW_DECIDER_CACHE", "500" if request.param == "cached" else "0")


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def env(request, tmp_path):
    if request.param == "postgres":
        with fresh_schema() as schema:
            environment = WorkflowEnvironment(engine_url=schema.url)
            yield environment
            environment.engine.close()
        return
    url = None if request.param == "memory" else f"sqlite:///{tmp_path / 'features.db'}"
    environment = WorkflowEnvironment(engine_url=url)
    yield environment
    environment.engine.close()


def types(env, wid, run_id=None):
    return [e.event_type for e in env.engine.get_history(wid, run_id)]


# -- signals ----------------------------------------------------------------------------------------


def test_two_signals_of_one_name_are_observed_in_order(env):
    wid = env.start(ft.Greeter)
    assert env.describe(wid).is_open
    env.signal(wid, "greet", "ann")
    env.signal(wid, "greet", name="bob")
    assert env.result(wid) == [{"args": ["ann"], "kwargs": {}}, {"args": [], "kwargs": {"name": "bob"}}]


def test_signal_sent_before_the_wait_is_not_lost(env):
    wid = env.start(ft.EarlySignal)  # waits on a 60 s timer; time skipping would fire it, so signal now
    env.engine.signal_execution(wid, None, "go", '"early"')
    assert env.result(wid) == "early"


def test_signals_sent_while_no_decider_runs_are_delivered_when_one_comes_back(env):
    wid, _ = start(env.engine, ft.Greeter, task_list="down")
    env.engine.signal_execution(wid, None, "greet", '{"args": [1], "kwargs": {}}')
    env.engine.signal_execution(wid, None, "greet", '{"args": [2], "kwargs": {}}')
    decider = Decider(env.engine, "down", [ft.Greeter])
    while decider.run_once():
        pass
    info = env.describe(wid)
    assert info.status == "completed"
    assert json.loads(info.result) == [{"args": [1], "kwargs": {}}, {"args": [2], "kwargs": {}}]


def test_untargeted_signal_reaches_self_submitted_as_simpleflow_writes_it(env):
    assert env.run(ft.SelfSignal) == [{"args": [1], "kwargs": {"colour": "blue"}}] * 2


def test_untargeted_signal_reaches_running_children(env):
    wid = env.start(ft.Broadcaster)
    mine, child = env.result(wid)
    assert mine == child == {"args": ["hello child"], "kwargs": {}}


def test_signalling_an_unknown_or_closed_execution_is_a_clear_error(env):
    with pytest.raises(UnknownExecution, match="no-such"):
        env.engine.signal_execution("no-such", None, "x", None)
    wid = env.start(wf.Sequential, 1)
    with pytest.raises(ExecutionClosed, match="cannot be signalled"):
        env.engine.signal_execution(wid, None, "x", None)


# -- timers, side effects ---------------------------------------------------------------------------


def test_thirty_day_sleep_finishes_at_once_with_time_skipping(env):
    assert env.run(ft.Sleeper, 30) >= 30 * 86400
    assert h.TIMER_FIRED in types(env, env.engine.list_executions()[0].workflow_id)


def test_side_effects_run_once_and_are_read_back_on_replay(env):
    wid = env.start(ft.SideEffects)
    token, number, rnd = env.result(wid)
    markers = [e for e in env.history(wid) if e.event_type == h.MARKER_RECORDED]
    assert [json.loads(m.attributes["details"]) for m in markers] == [token, number]
    # Replay with a different side effect implementation: the recorded values win.
    replayed = Executor(ft.SideEffects)
    assert replayed.decide(env.history(wid)) == []
    assert replayed._instance is not None


# -- children ---------------------------------------------------------------------------------------


def test_child_result_and_child_failure_reach_the_parent(env):
    result = env.run(ft.Parent, 3)
    assert result[0] == 9
    assert result[1][0] == "failed" and "child broke" in result[1][1]
    children = [e for e in env.engine.list_executions() if e.parent_workflow_id]
    assert len(children) == 2 and all(c.parent_workflow_id.startswith("tests.fixtures.features.Parent") for c in children)
    assert children[-1].workflow_id.startswith("workflow-child-")


def test_parent_close_policy_terminate_abandon_request_cancel(env):
    assert env.run(ft.Abandoner) == "parent done"
    assert env.describe("child-terminate").status == "terminated"
    assert env.describe("child-abandon").is_open
    cancelled = env.describe("child-cancel")
    assert cancelled.status == "completed" and json.loads(cancelled.result) == "cleaned patient"


# -- cancellation and ending ------------------------------------------------------------------------


def test_cancel_reaches_run_which_cleans_up_and_completes(env):
    wid = env.start(ft.Cancellable)
    env.cancel(wid)
    info = env.describe(wid)
    assert info.status == "completed" and json.loads(info.result) == "cleaned resources"
    assert h.WORKFLOW_EXECUTION_CANCEL_REQUESTED in types(env, wid)


def test_cancel_not_caught_ends_the_execution_canceled(env):
    wid = env.start(ft.CancelNotCaught)
    env.cancel(wid)
    assert env.describe(wid).status == "canceled"
    assert types(env, wid)[-1] == h.WORKFLOW_EXECUTION_CANCELED


def test_cancelling_a_closed_or_unknown_execution_is_a_clear_error(env):
    wid = env.start(wf.Sequential, 1)
    with pytest.raises(ExecutionClosed, match="cannot be cancelled"):
        env.engine.request_cancel_execution(wid)
    with pytest.raises(UnknownExecution):
        env.engine.request_cancel_execution("nope")


def test_running_activity_learns_of_cancellation_at_its_heartbeat(env):
    wid, _ = start(env.engine, ft.Cancellable, task_list="hb")
    Decider(env.engine, "hb", [ft.Cancellable]).run_once()
    env.engine.signal_execution(wid, None, "unrelated", None)
    # schedule an activity directly to have one running
    task = env.engine.poll_decision_task("hb")
    from steadyflow.decisions import ScheduleActivityTask

    env.engine.complete_decision_task(task.token, [ScheduleActivityTask("a-1", "x", "1", "hb", "{}", heartbeat_timeout=60)])
    act = env.engine.poll_activity_task("hb")
    assert env.engine.heartbeat_activity_task(act.token) is False
    env.engine.request_cancel_execution(wid)
    assert env.engine.heartbeat_activity_task(act.token) is True


def test_stop_execution_ends_canceled_with_error_and_cause(env):
    wid = env.start(ft.Stopper)
    info = env.describe(wid)
    assert info.status == "canceled"
    assert json.loads(info.close_details) == {"error": "Feature.Off", "cause": "flag is off"}


def test_continue_as_new_chains_runs_and_the_id_addresses_the_latest(env):
    wid = env.start(ft.Counter, 0, 3)
    assert env.result(wid) == 3
    runs = [e for e in env.engine.list_executions(limit=10) if e.workflow_id == wid]
    assert [r.status for r in runs] == ["completed", "continued_as_new", "continued_as_new", "continued_as_new"]
    first = runs[-1]
    assert types(env, wid, first.run_id)[-1] == h.WORKFLOW_EXECUTION_CONTINUED_AS_NEW


def test_terminate_ends_at_once(env):
    wid = env.start(ft.Cancellable)
    env.engine.terminate_execution(wid, reason="enough")
    info = env.describe(wid)
    assert info.status == "terminated" and info.close_reason == "enough"


# -- versioning -------------------------------------------------------------------------------------


def test_patched_lets_changed_code_replay_old_histories(env):
    wid = env.start(ft.V1)
    assert env.result(wid) == 2
    old = env.history(wid)
    Replayer([ft.V2Guarded]).replay(old)  # old path: patched() is False
    with pytest.raises(NonDeterminismError) as err:
        Executor(ft.V2Unguarded).decide(old)
    assert "square" in err.value.requested
    new = env.start(ft.V2Guarded)
    assert env.result(new) == 4  # new executions take the new path
    Replayer([ft.V2Guarded]).replay(env.history(new))
    with pytest.raises(NonDeterminismError):
        Executor(ft.V1).decide(env.history(new))


# -- queries ----------------------------------------------------------------------------------------


def test_query_answers_from_state_after_the_latest_event_and_records_nothing(env):
    wid = env.start(ft.Stateful)
    env.signal(wid, "add", 5)
    assert env.query(wid, "total") == 5
    env.engine.signal_execution(wid, None, "add", '{"args": [7], "kwargs": {}}')  # no decider has run
    before = len(env.history(wid))
    assert env.query(wid, "items") == [5, 7]
    assert len(env.history(wid)) == before
    env.signal(wid, "add", "stop")
    assert env.result(wid) == [5, 7]


def test_a_query_during_a_decision_sees_a_signal_sent_meanwhile(env):
    wid = env.start(ft.Stateful)
    env.signal(wid, "add", 5)
    env.engine.signal_execution(wid, None, "add", '{"args": [6], "kwargs": {}}')
    task = env.engine.poll_decision_task(env.engine.describe_execution(wid).task_list, "busy-decider")
    assert task is not None  # a decider holds it and has not answered yet
    env.engine.signal_execution(wid, None, "add", '{"args": [7], "kwargs": {}}')
    assert env.query(wid, "items") == [5, 6, 7]


def test_query_errors_are_clear(env):
    wid = env.start(ft.Stateful)
    with pytest.raises(WorkflowError, match="has no query 'nope'.*items, total"):
        env.query(wid, "nope")
    with pytest.raises(UnknownExecution):
        query_workflow(env.engine, "missing", None, "total")
    env.signal(wid, "add", "stop")
    with pytest.raises(ExecutionClosed, match="only open executions answer queries"):
        env.query(wid, "total")


# -- ids --------------------------------------------------------------------------------------------


def test_id_reuse_policies(env):
    def begin(cls, wid, policy="allow_duplicate"):
        start(env.engine, cls, [0] if cls is wf.Sequential else [], workflow_id=wid, task_list=env.task_list,
              id_reuse_policy=policy)

    begin(wf.Sequential, "once")
    with pytest.raises(WorkflowAlreadyStarted, match="already running"):
        begin(wf.Sequential, "once")
    env.run_until_idle()
    with pytest.raises(WorkflowAlreadyStarted, match="reject_duplicate"):
        begin(wf.Sequential, "once", "reject_duplicate")
    with pytest.raises(WorkflowAlreadyStarted, match="allow_duplicate_failed_only"):
        begin(wf.Sequential, "once", "allow_duplicate_failed_only")
    begin(wf.Uncaught, "failing")
    env.run_until_idle()
    begin(wf.Uncaught, "failing", "allow_duplicate_failed_only")
    begin(wf.Sequential, "once")  # the default allows it
    env.run_until_idle()
    assert [e.status for e in env.engine.list_executions(limit=10)] == ["completed", "failed", "failed", "completed"]


# -- the test kit and replay of everything ----------------------------------------------------------


def test_fake_activities_replace_real_ones(env):
    env.fake_activity(wf.inc, lambda x: x + 100)
    assert env.run(wf.Sequential, 2) == 200


def test_failed_run_raises_workflow_failed(env):
    with pytest.raises(WorkflowFailed, match="nobody catches me"):
        env.run(wf.Uncaught)


def test_every_feature_replays_to_the_same_decisions(env):
    wid = env.start(ft.Everything, 1)
    env.signal(wid, "outside", "hi")
    result = env.result(wid)
    assert result == [4, {"args": ["fixed"], "kwargs": {}}, {"args": ["hi"], "kwargs": {}}, True, 1]
    events = env.history(wid)
    saved = json.loads(json.dumps([e.to_json() for e in events]))
    Replayer([ft.Everything]).replay(saved)
    # Each decision, replayed from the history up to its DecisionTaskStarted, asks for exactly
    # the commands that were recorded after it.
    for done in (e for e in events if e.event_type == h.DECISION_TASK_COMPLETED):
        started = done.attributes["startedEventId"]
        prefix = [e for e in events if e.event_id <= started]
        decisions = Executor(ft.Everything, wid).decide(prefix)
        recorded = [
            e.event_type
            for e in events
            if e.event_type in h.COMMAND_EVENTS and e.attributes.get("decisionTaskCompletedEventId") == done.event_id
        ]
        assert len(decisions) == len(recorded), (started, decisions, recorded)
        if decisions and isinstance(decisions[-1], CompleteWorkflowExecution):
            assert decisions[-1].result == json.dumps(result, separators=(",", ":"), sort_keys=True)
