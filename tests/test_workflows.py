"""The programming model end to end: decider + inline activities on each engine."""

from __future__ import annotations

import json

import pytest

from steadyflow import history as h
from steadyflow.local import run_local
from tests.fixtures import workflows as wf


def events_of(engine, info, event_type):
    return [e for e in engine.get_history(info.workflow_id, info.run_id) if e.event_type == event_type]


def test_fan_out_returns_sum_of_results(real_engine):
    info = run_local(wf.FanOut, [10], engine=real_engine)
    assert info.status == "completed"
    assert json.loads(info.result) == sum(i * i for i in range(10))
    scheduled = events_of(real_engine, info, h.ACTIVITY_TASK_SCHEDULED)
    assert [e.attributes["activityId"] for e in scheduled] == [
        f"activity-tests.fixtures.workflows.square-{i}" for i in range(1, 11)
    ]
    assert scheduled[0].attributes["activityType"] == {"name": "tests.fixtures.workflows.square", "version": "test"}
    assert scheduled[3].attributes["input"] == '{"args":[3],"kwargs":{}}'


def test_sequential_steps_each_see_previous_result(real_engine):
    info = run_local(wf.Sequential, [5], {"start": 10}, engine=real_engine)
    assert json.loads(info.result) == 15
    assert len(events_of(real_engine, info, h.ACTIVITY_TASK_COMPLETED)) == 5


def test_future_argument_is_resolved_before_scheduling(real_engine):
    info = run_local(wf.Chained, [2], engine=real_engine)
    assert json.loads(info.result) == 9
    inputs = [e.attributes["input"] for e in events_of(real_engine, info, h.ACTIVITY_TASK_SCHEDULED)]
    assert inputs == ['{"args":[2],"kwargs":{}}', '{"args":[3],"kwargs":{}}']


def test_failed_activity_raises_task_failed_that_run_can_catch(real_engine):
    info = run_local(wf.CatchFailure, engine=real_engine)
    assert json.loads(info.result) == {
        "name": "activity-tests.fixtures.workflows.boom-1",
        "error": "ValueError",
        "message": "bad things",
        "has_tb": True,
    }
    failed = events_of(real_engine, info, h.ACTIVITY_TASK_FAILED)[0]
    assert failed.attributes["reason"] == "ValueError: bad things"
    details = json.loads(failed.attributes["details"])
    assert details["error"] == "ValueError" and details["message"] == "bad things"
    assert any("raise ValueError(message)" in line for line in details["traceback"])


def test_raises_on_failure_true_fails_the_workflow_at_once(real_engine):
    info = run_local(wf.FatalFailure, engine=real_engine)
    assert info.status == "failed"
    assert info.close_reason == 'Workflow execution error in activity-tests.fixtures.workflows.boom_fatal-1: "ValueError: fatal"'
    assert json.loads(info.close_details)["message"] == "fatal"


def test_raises_on_failure_false_sets_exception_and_none_result(real_engine):
    info = run_local(wf.QuietFailure, engine=real_engine)
    assert json.loads(info.result) == [True, None, "TaskFailed"]


def test_uncaught_task_failure_fails_workflow_with_simpleflow_reason(real_engine):
    info = run_local(wf.Uncaught, engine=real_engine)
    assert info.status == "failed"
    assert info.close_reason == 'Workflow execution error in activity-tests.fixtures.workflows.boom-1: "ValueError: nobody catches me"'


def test_retry_count_reschedules_same_activity_id_and_every_attempt_is_in_history(real_engine):
    info = run_local(wf.Retrying, [2], engine=real_engine)
    assert json.loads(info.result) == 3
    scheduled = events_of(real_engine, info, h.ACTIVITY_TASK_SCHEDULED)
    assert [e.attributes["activityId"] for e in scheduled] == ["activity-tests.fixtures.workflows.flaky-1"] * 3
    assert [json.loads(e.attributes["control"])["attempt"] for e in scheduled] == [1, 2, 3]
    assert len(events_of(real_engine, info, h.ACTIVITY_TASK_FAILED)) == 2
    assert events_of(real_engine, info, h.TIMER_STARTED) == []  # simpleflow's retry=N retries at once


def test_retries_exhausted_fail_the_task(real_engine):
    info = run_local(wf.Retrying, [10], engine=real_engine)
    assert info.status == "failed"
    assert len(events_of(real_engine, info, h.ACTIVITY_TASK_FAILED)) == 4  # retry=3 -> 4 attempts
    assert "RuntimeError: attempt 4 fails" in info.close_reason


def test_retry_policy_backoff_waits_on_timers(real_engine):
    info = run_local(wf.RetryingBackoff, [2], engine=real_engine)
    assert json.loads(info.result) == 3
    timers = events_of(real_engine, info, h.TIMER_STARTED)
    assert [t.attributes["startToFireTimeout"] for t in timers] == [0.05, 0.1]
    assert len(events_of(real_engine, info, h.TIMER_FIRED)) == 2


def test_non_retryable_error_type_fails_after_one_attempt(real_engine):
    info = run_local(wf.NonRetryable, engine=real_engine)
    assert info.status == "failed"
    assert len(events_of(real_engine, info, h.ACTIVITY_TASK_SCHEDULED)) == 1


def test_result_that_is_not_json_fails_only_that_task(real_engine):
    info = run_local(wf.NotJson, engine=real_engine)
    assert info.status == "completed"
    reason = json.loads(info.result)
    assert "not JSON-serialisable" in reason and "object" in reason


def test_workflow_result_that_is_not_json_fails_the_workflow_clearly(real_engine):
    info = run_local(wf.BadResult, engine=real_engine)
    assert info.status == "failed"
    assert info.close_reason.startswith("PayloadError: workflow result is not JSON-serialisable")


def test_wait_first_completed_returns_when_one_is_done(real_engine):
    info = run_local(wf.FirstCompleted, engine=real_engine)
    # Inline activities run one at a time in scheduling order: the workflow must return as soon as
    # the first one is recorded, without waiting for the other.
    completed = events_of(real_engine, info, h.ACTIVITY_TASK_COMPLETED)
    assert len(completed) == 1
    assert json.loads(info.result) == [json.loads(completed[0].attributes["result"])]


def test_as_completed_yields_in_completion_order(real_engine):
    engine = real_engine
    info = run_local(wf.AsCompleted, engine=engine)
    # Inline activities run in scheduling order, so "late" finishes first here; the order must
    # follow the history, whatever it is.
    completed = [
        json.loads(e.attributes["result"]) for e in events_of(engine, info, h.ACTIVITY_TASK_COMPLETED)
    ]
    assert json.loads(info.result) == completed


def test_idempotent_activities_share_one_task(real_engine):
    info = run_local(wf.Idempotent, engine=real_engine)
    assert json.loads(info.result) == [True, 1, 2]
    ids = [e.attributes["activityId"] for e in events_of(real_engine, info, h.ACTIVITY_TASK_SCHEDULED)]
    assert len(ids) == 2 and all(len(i.rsplit("-", 1)[1]) == 32 for i in ids)


def test_timers_markers_and_cancel(real_engine):
    info = run_local(wf.Timers, engine=real_engine)
    assert json.loads(info.result) == [True, True, True]
    marker = events_of(real_engine, info, h.MARKER_RECORDED)[0]
    assert marker.attributes == {"markerName": "checkpoint", "details": '{"a":1,"b":2}', "decisionTaskCompletedEventId": marker.attributes["decisionTaskCompletedEventId"]}
    assert [e.attributes["timerId"] for e in events_of(real_engine, info, h.TIMER_CANCELED)] == ["long"]


def test_print_in_run_appears_once_despite_replays(real_engine, capsys):
    info = run_local(wf.Printer, [3], engine=real_engine)
    assert json.loads(info.result) == 3
    out = capsys.readouterr().out
    assert out.splitlines() == ["step 0 -> 1", "step 1 -> 2", "step 2 -> 3"]


def test_kwargs_input(real_engine):
    info = run_local(wf.KwargsWorkflow, [1], {"c": 5}, engine=real_engine)
    assert json.loads(info.result) == 16


def test_custom_activity_name_is_found_in_registry(real_engine):
    info = run_local(wf.CustomName, ["x"], engine=real_engine)
    assert json.loads(info.result) == "custom:x"
    scheduled = events_of(real_engine, info, h.ACTIVITY_TASK_SCHEDULED)[0]
    assert scheduled.attributes["activityType"]["name"] == "custom.named.activity"


def test_quickstart_example_prints_and_returns(real_engine, capsys):
    from examples.basic import BasicWorkflow

    info = run_local(BasicWorkflow, [1, 0], engine=real_engine)
    assert json.loads(info.result) == 4
    assert capsys.readouterr().out == "(1 + 1) * 2 = 4\n"


@pytest.mark.parametrize("n", [0, 1])
def test_event_ids_are_dense_and_decisions_answer_each_start(real_engine, n):
    info = run_local(wf.Sequential, [n], engine=real_engine)
    events = real_engine.get_history(info.workflow_id, info.run_id)
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))
    starts = [e.event_id for e in events if e.event_type == h.DECISION_TASK_STARTED]
    answered = [e.attributes["startedEventId"] for e in events if e.event_type == h.DECISION_TASK_COMPLETED]
    assert starts == answered


def test_local_run_waiting_for_a_signal_stops_with_a_clear_error_instead_of_hanging():
    from steadyflow import WorkflowError
    from tests.fixtures.features import Greeter

    with pytest.raises(WorkflowError, match="waits for something from outside"):
        run_local(Greeter)
