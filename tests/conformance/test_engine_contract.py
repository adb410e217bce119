"""The engine contract (`steadyflow.engines.base`), checked against every engine.

Each test runs once per engine (fixture `engine`) on a fake clock (`clock.advance(seconds)`), so
timeouts are tested without sleeping.
"""

from __future__ import annotations

import threading
import time

import pytest

from steadyflow import history as h
from steadyflow.decisions import (
    CancelTimer,
    CompleteWorkflowExecution,
    FailWorkflowExecution,
    RecordMarker,
    ScheduleActivityTask,
    StartTimer,
)
from steadyflow.errors import (
    EngineError,
    ExecutionClosed,
    UnknownExecution,
    UnknownTask,
    WorkflowAlreadyStarted,
)

T0 = 1_700_000_000.0  # the fake clock's start


def start(engine, wid="wf-1", workflow_type="Order", input='{"n": 1}', **kw):
    return engine.start_execution(wid, workflow_type, "1.0", "deciders", input, **kw)


def decide(engine, decisions, context=None, task_list="deciders"):
    task = engine.poll_decision_task(task_list, "decider-1")
    assert task is not None, "expected a decision task"
    engine.complete_decision_task(task.token, decisions, context)
    return task


def types(engine, wid="wf-1", after=0):
    return [e.event_type for e in engine.get_history(wid, after_event_id=after)]


def last(engine, wid="wf-1"):
    return engine.get_history(wid)[-1]


def act(activity_id="a1", task_list="workers", **kw):
    return ScheduleActivityTask(activity_id, "charge", "2", task_list, '{"args": [1]}', **kw)


def start_activity(engine, clock=None, **kw):
    """Start wf-1, schedule one activity with `kw` timeouts and lease it; return the task."""
    start(engine)
    decide(engine, [act(**kw)])
    task = engine.poll_activity_task("workers", "worker-1")
    assert task is not None
    return task


# -- executions ----------------------------------------------------------------------------------


def test_start_appends_started_then_decision_scheduled(engine, clock):
    run_id = start(engine, tags=["vip", "eu"], decision_timeout=7.0)
    events = engine.get_history("wf-1")
    assert [(e.event_id, e.event_type) for e in events] == [
        (1, h.WORKFLOW_EXECUTION_STARTED),
        (2, h.DECISION_TASK_SCHEDULED),
    ]
    assert events[0].attributes == {
        "workflowId": "wf-1",
        "runId": run_id,
        "workflowType": {"name": "Order", "version": "1.0"},
        "taskList": {"name": "deciders"},
        "input": '{"n": 1}',
        "tagList": ["vip", "eu"],
        "taskStartToCloseTimeout": 7.0,
    }
    assert events[1].attributes == {"taskList": {"name": "deciders"}, "startToCloseTimeout": 7.0}
    assert all(e.timestamp == T0 for e in events)
    assert isinstance(run_id, str) and run_id


def test_attributes_that_are_none_are_omitted(engine):
    start(engine, input=None)
    assert "input" not in engine.get_history("wf-1")[0].attributes


def test_starting_an_open_workflow_id_raises_already_started(engine):
    run_id = start(engine)
    with pytest.raises(WorkflowAlreadyStarted) as info:
        start(engine)
    assert info.value.workflow_id == "wf-1" and info.value.run_id == run_id
    assert types(engine) == [h.WORKFLOW_EXECUTION_STARTED, h.DECISION_TASK_SCHEDULED]


def test_a_closed_workflow_id_can_start_again_as_a_new_run(engine):
    first = start(engine)
    decide(engine, [CompleteWorkflowExecution("done")])
    second = start(engine, input='{"n": 2}')
    assert second != first
    assert engine.describe_execution("wf-1").run_id == second
    assert engine.describe_execution("wf-1", first).status == "completed"
    assert len(engine.get_history("wf-1", first)) == 5
    assert types(engine) == [h.WORKFLOW_EXECUTION_STARTED, h.DECISION_TASK_SCHEDULED]


def test_describe_returns_the_execution(engine, clock):
    run_id = start(engine, tags=("a",), decision_timeout=3.0)
    info = engine.describe_execution("wf-1")
    assert (info.workflow_id, info.run_id, info.workflow_type, info.version) == (
        "wf-1",
        run_id,
        "Order",
        "1.0",
    )
    assert (info.task_list, info.status, info.is_open) == ("deciders", "open", True)
    assert (info.input, info.tags, info.decision_timeout) == ('{"n": 1}', ("a",), 3.0)
    assert (info.start_time, info.close_time, info.result) == (T0, None, None)
    assert info.next_event_id == 3
    assert engine.describe_execution("wf-1", run_id) == info


def test_unknown_executions_raise_unknown_execution(engine):
    run_id = start(engine)
    start(engine, wid="wf-2")
    with pytest.raises(UnknownExecution):
        engine.describe_execution("nope")
    with pytest.raises(UnknownExecution):
        engine.describe_execution("wf-1", "0" * 32)
    with pytest.raises(UnknownExecution):
        engine.describe_execution("wf-2", run_id)  # a run id of another workflow
    with pytest.raises(UnknownExecution):
        engine.get_history("nope")
    with pytest.raises(UnknownExecution):
        engine.list_activity_tasks("nope")


def test_list_executions_newest_first_with_filters_and_paging(engine, clock):
    for i, wtype in enumerate(["A", "B", "A", "B"]):
        start(engine, wid=f"wf-{i}", workflow_type=wtype)
        clock.advance(1)
    engine.terminate_execution("wf-1", reason="r")
    decide(engine, [CompleteWorkflowExecution()])  # completes wf-0, the oldest decision task

    def ids(**kw):
        return [i.workflow_id for i in engine.list_executions(**kw)]

    assert ids() == ["wf-3", "wf-2", "wf-1", "wf-0"]
    assert ids(status="open") == ["wf-3", "wf-2"]
    assert ids(status="closed") == ["wf-1", "wf-0"]
    assert ids(status="terminated") == ["wf-1"]
    assert ids(status="completed") == ["wf-0"]
    assert ids(workflow_type="A") == ["wf-2", "wf-0"]
    assert ids(status="open", workflow_type="B") == ["wf-3"]
    assert ids(limit=2) == ["wf-3", "wf-2"]
    assert ids(limit=2, offset=1) == ["wf-2", "wf-1"]
    assert ids(offset=4) == []


def test_get_history_after_event_id(engine):
    start(engine)
    decide(engine, [RecordMarker("m")])
    assert [e.event_id for e in engine.get_history("wf-1", after_event_id=3)] == [4, 5]
    assert engine.get_history("wf-1", after_event_id=5) == []


def test_signal_appends_signaled_and_schedules_one_decision(engine):
    start(engine)
    decide(engine, [])
    engine.signal_execution("wf-1", None, "approve", '{"ok": true}')
    engine.signal_execution("wf-1", None, "again", None)
    assert types(engine, after=4) == [
        h.WORKFLOW_EXECUTION_SIGNALED,
        h.DECISION_TASK_SCHEDULED,
        h.WORKFLOW_EXECUTION_SIGNALED,
    ]
    assert engine.get_history("wf-1")[4].attributes == {"signalName": "approve", "input": '{"ok": true}'}
    assert last(engine).attributes == {"signalName": "again"}


def test_signal_closed_or_unknown_execution_raises(engine):
    start(engine)
    engine.terminate_execution("wf-1")
    with pytest.raises(ExecutionClosed):
        engine.signal_execution("wf-1", None, "s", None)
    with pytest.raises(UnknownExecution):
        engine.signal_execution("nope", None, "s", None)


def test_terminate_closes_and_drops_tasks_and_timers(engine, clock):
    start(engine)
    decide(engine, [act("a1", start_to_close_timeout=5), act("a2"), StartTimer("t", 10)])
    task = engine.poll_activity_task("workers")
    clock.advance(1)
    engine.terminate_execution("wf-1", reason="operator", details="cleanup")
    info = engine.describe_execution("wf-1")
    assert (info.status, info.close_reason, info.close_details, info.close_time) == (
        "terminated", "operator", "cleanup", T0 + 1,
    )  # fmt: skip
    assert last(engine).event_type == h.WORKFLOW_EXECUTION_TERMINATED
    assert last(engine).attributes == {"reason": "operator", "details": "cleanup"}
    assert engine.list_activity_tasks("wf-1") == []
    assert engine.next_due() is None
    assert engine.poll_activity_task("workers") is None
    with pytest.raises(UnknownTask):
        engine.complete_activity_task(task.token, "late")
    clock.advance(60)
    assert engine.fire_due() == 0
    assert last(engine).event_type == h.WORKFLOW_EXECUTION_TERMINATED
    with pytest.raises(ExecutionClosed):
        engine.terminate_execution("wf-1")


def test_terminate_while_a_decision_is_started_rejects_its_token_and_never_times_it_out(engine, clock):
    start(engine)
    task = engine.poll_decision_task("deciders")
    engine.terminate_execution("wf-1")
    clock.advance(60)
    assert engine.fire_due() == 0
    assert engine.next_due() is None
    with pytest.raises(UnknownTask):
        engine.complete_decision_task(task.token, [])
    assert last(engine).event_type == h.WORKFLOW_EXECUTION_TERMINATED


# -- decision tasks ------------------------------------------------------------------------------


def test_poll_decision_task_leases_it_with_the_full_history(engine):
    run_id = start(engine)
    assert engine.poll_decision_task("other") is None
    task = engine.poll_decision_task("deciders", "decider-1")
    assert (task.workflow_id, task.run_id, task.workflow_type, task.version) == (
        "wf-1",
        run_id,
        "Order",
        "1.0",
    )
    assert (task.task_list, task.started_event_id) == ("deciders", 3)
    assert task.history == engine.get_history("wf-1")
    assert [e.event_id for e in task.history] == [1, 2, 3]
    assert task.history[-1].attributes == {"scheduledEventId": 2, "identity": "decider-1"}
    assert engine.poll_decision_task("deciders") is None  # leased: not handed out twice


def test_poll_without_identity_omits_it(engine):
    start(engine)
    assert engine.poll_decision_task("deciders").history[-1].attributes == {"scheduledEventId": 2}


def test_complete_decision_task_appends_completed_with_context(engine):
    start(engine)
    decide(engine, [], context="ctx")
    assert last(engine).event_type == h.DECISION_TASK_COMPLETED
    assert last(engine).attributes == {"scheduledEventId": 2, "startedEventId": 3, "executionContext": "ctx"}
    assert engine.poll_decision_task("deciders") is None  # nothing new happened


def test_decision_tasks_are_handed_out_oldest_first(engine, clock):
    for wid in ("wf-a", "wf-b", "wf-c"):
        start(engine, wid=wid)
        clock.advance(1)
    assert [engine.poll_decision_task("deciders").workflow_id for _ in range(3)] == ["wf-a", "wf-b", "wf-c"]


def test_event_during_a_started_decision_schedules_the_next_one_after_it(engine):
    start(engine)
    task = engine.poll_decision_task("deciders")
    engine.signal_execution("wf-1", None, "go", None)
    engine.signal_execution("wf-1", None, "go-again", None)
    assert types(engine, after=3) == [
        h.WORKFLOW_EXECUTION_SIGNALED,
        h.DECISION_TASK_SCHEDULED,
        h.WORKFLOW_EXECUTION_SIGNALED,
    ]
    assert engine.poll_decision_task("deciders") is None  # one started at a time
    engine.complete_decision_task(task.token, [])
    second = engine.poll_decision_task("deciders")
    assert second is not None and second.history[-1].attributes == {"scheduledEventId": 5}
    assert [e.event_id for e in second.history] == list(range(1, 9))


def test_schedule_activity_task_records_its_attributes_and_queues_it(engine):
    start(engine)
    decide(engine, [
        act("a1", control="c", priority=3, schedule_to_start_timeout=1, start_to_close_timeout=2,
            schedule_to_close_timeout=3, heartbeat_timeout=4),
        act("a2"),
    ])  # fmt: skip
    events = engine.get_history("wf-1")[4:]
    assert events[0].event_type == h.ACTIVITY_TASK_SCHEDULED
    assert events[0].attributes == {
        "activityId": "a1",
        "activityType": {"name": "charge", "version": "2"},
        "input": '{"args": [1]}',
        "control": "c",
        "taskList": {"name": "workers"},
        "taskPriority": 3,
        "scheduleToStartTimeout": 1,
        "startToCloseTimeout": 2,
        "scheduleToCloseTimeout": 3,
        "heartbeatTimeout": 4,
        "decisionTaskCompletedEventId": 4,
    }
    assert events[1].attributes == {
        "activityId": "a2",
        "activityType": {"name": "charge", "version": "2"},
        "input": '{"args": [1]}',
        "taskList": {"name": "workers"},
        "taskPriority": 0,
        "decisionTaskCompletedEventId": 4,
    }
    assert [a["activity_id"] for a in engine.list_activity_tasks("wf-1")] == ["a1", "a2"]


def test_timer_fires_once_after_its_seconds(engine, clock):
    start(engine)
    decide(engine, [StartTimer("t1", 30, control="ctl")])
    assert last(engine).attributes == {
        "timerId": "t1", "startToFireTimeout": 30, "control": "ctl", "decisionTaskCompletedEventId": 4,
    }  # fmt: skip
    assert engine.next_due() == T0 + 30
    clock.advance(29.9)
    assert engine.fire_due() == 0
    assert engine.poll_decision_task("deciders") is None
    clock.advance(0.1)
    assert engine.fire_due() == 1
    assert types(engine, after=5) == [h.TIMER_FIRED, h.DECISION_TASK_SCHEDULED]
    assert engine.get_history("wf-1")[5].attributes == {"timerId": "t1", "startedEventId": 5}
    clock.advance(100)
    assert engine.fire_due() == 0
    assert types(engine, after=5) == [h.TIMER_FIRED, h.DECISION_TASK_SCHEDULED]


def test_start_timer_with_an_id_in_use_fails_and_schedules_a_decision(engine):
    start(engine)
    decide(engine, [StartTimer("t", 10), StartTimer("t", 5)])
    assert types(engine, after=4) == [h.TIMER_STARTED, h.START_TIMER_FAILED, h.DECISION_TASK_SCHEDULED]
    assert engine.get_history("wf-1")[5].attributes == {
        "timerId": "t", "cause": "TIMER_ID_ALREADY_IN_USE", "decisionTaskCompletedEventId": 4,
    }  # fmt: skip
    assert engine.next_due() == T0  # the new decision task; the first timer still runs
    assert engine.poll_decision_task("deciders") is not None
    assert engine.next_due() == T0 + 10


def test_a_fired_timer_id_can_be_used_again(engine, clock):
    start(engine)
    decide(engine, [StartTimer("t", 1)])
    clock.advance(1)
    decide(engine, [StartTimer("t", 1)])
    assert last(engine).event_type == h.TIMER_STARTED


def test_cancel_timer_cancels_it(engine, clock):
    start(engine)
    decide(engine, [StartTimer("t", 10)])
    engine.signal_execution("wf-1", None, "stop", None)
    decide(engine, [CancelTimer("t")])
    assert last(engine).event_type == h.TIMER_CANCELED
    assert last(engine).attributes == {"timerId": "t", "startedEventId": 5, "decisionTaskCompletedEventId": 9}
    clock.advance(20)
    assert engine.fire_due() == 0
    assert engine.poll_decision_task("deciders") is None


def test_cancel_unknown_timer_fails_and_schedules_a_decision(engine):
    start(engine)
    decide(engine, [CancelTimer("ghost")])
    assert types(engine, after=4) == [h.CANCEL_TIMER_FAILED, h.DECISION_TASK_SCHEDULED]
    assert engine.get_history("wf-1")[4].attributes == {
        "timerId": "ghost", "cause": "TIMER_ID_UNKNOWN", "decisionTaskCompletedEventId": 4,
    }  # fmt: skip
    assert engine.poll_decision_task("deciders") is not None


def test_record_marker(engine):
    start(engine)
    decide(engine, [RecordMarker("version", '{"v": 2}'), RecordMarker("bare")])
    markers = engine.get_history("wf-1")[4:]
    assert [m.attributes for m in markers] == [
        {"markerName": "version", "details": '{"v": 2}', "decisionTaskCompletedEventId": 4},
        {"markerName": "bare", "decisionTaskCompletedEventId": 4},
    ]


def test_complete_workflow_closes_it_and_drops_its_tasks(engine, clock):
    start(engine)
    clock.advance(2)
    decide(engine, [act("a1"), StartTimer("t", 1), CompleteWorkflowExecution('"ok"')])
    assert last(engine).event_type == h.WORKFLOW_EXECUTION_COMPLETED
    assert last(engine).attributes == {"result": '"ok"', "decisionTaskCompletedEventId": 4}
    info = engine.describe_execution("wf-1")
    assert (info.status, info.result, info.close_time, info.is_open) == ("completed", '"ok"', T0 + 2, False)
    assert engine.poll_activity_task("workers") is None
    assert engine.list_activity_tasks("wf-1") == []
    assert engine.next_due() is None


def test_fail_workflow_closes_it_with_reason_and_details(engine):
    start(engine)
    engine.signal_execution("wf-1", None, "s", None)
    decide(engine, [FailWorkflowExecution("Boom: bad", '{"tb": []}')])
    info = engine.describe_execution("wf-1")
    assert (info.status, info.close_reason, info.close_details) == ("failed", "Boom: bad", '{"tb": []}')
    assert last(engine).attributes == {
        "reason": "Boom: bad",
        "details": '{"tb": []}',
        "decisionTaskCompletedEventId": 5,
    }
    assert engine.poll_decision_task("deciders") is None


def test_a_close_decision_that_is_not_last_is_refused_and_changes_nothing(engine):
    start(engine)
    task = engine.poll_decision_task("deciders")
    with pytest.raises(EngineError):
        engine.complete_decision_task(task.token, [CompleteWorkflowExecution(), RecordMarker("m")])
    with pytest.raises(EngineError):
        engine.complete_decision_task(task.token, ["not a decision"])
    assert len(engine.get_history("wf-1")) == 3
    engine.complete_decision_task(task.token, [RecordMarker("m")])  # the lease is still ours
    assert last(engine).event_type == h.MARKER_RECORDED


def test_a_used_or_unknown_decision_token_is_rejected(engine):
    start(engine)
    task = decide(engine, [])
    for call in (
        lambda: engine.complete_decision_task(task.token, [CompleteWorkflowExecution()]),
        lambda: engine.fail_decision_task(task.token, "cause"),
        lambda: engine.complete_decision_task("garbage", []),
        lambda: engine.complete_decision_task(f"{task.run_id}/3/deadbeef", []),
    ):
        with pytest.raises(UnknownTask):
            call()
    assert types(engine)[-1] == h.DECISION_TASK_COMPLETED
    assert engine.describe_execution("wf-1").is_open


def test_failed_decision_task_comes_back_after_a_growing_back_off(engine, clock):
    start(engine)
    task = engine.poll_decision_task("deciders")
    engine.fail_decision_task(task.token, "NonDeterminismError", "details")
    assert types(engine, after=3) == [h.DECISION_TASK_FAILED, h.DECISION_TASK_SCHEDULED]
    assert engine.get_history("wf-1")[3].attributes == {
        "scheduledEventId": 2, "startedEventId": 3, "cause": "NonDeterminismError", "details": "details",
    }  # fmt: skip
    for delay in (1.0, 2.0, 4.0):
        assert engine.next_due() == pytest.approx(clock() + delay)
        clock.advance(delay - 0.01)
        assert engine.poll_decision_task("deciders") is None
        clock.advance(0.01)
        task = engine.poll_decision_task("deciders")
        assert task is not None
        engine.fail_decision_task(task.token, "again")
    clock.advance(8)
    engine.complete_decision_task(engine.poll_decision_task("deciders").token, [])  # resets the count
    engine.signal_execution("wf-1", None, "s", None)
    engine.fail_decision_task(engine.poll_decision_task("deciders").token, "once more")
    assert engine.next_due() == pytest.approx(clock() + 1.0)


def test_failing_a_decision_delays_one_already_scheduled_behind_it(engine, clock):
    start(engine)
    task = engine.poll_decision_task("deciders")
    engine.signal_execution("wf-1", None, "s", None)
    engine.fail_decision_task(task.token, "bug")
    assert types(engine, after=3) == [
        h.WORKFLOW_EXECUTION_SIGNALED,
        h.DECISION_TASK_SCHEDULED,
        h.DECISION_TASK_FAILED,
    ]
    assert engine.poll_decision_task("deciders") is None
    clock.advance(1)
    assert engine.poll_decision_task("deciders").history[-1].attributes == {"scheduledEventId": 5}


def test_decision_lease_expiry_times_out_and_schedules_a_new_task(engine, clock):
    start(engine, decision_timeout=5.0)
    task = engine.poll_decision_task("deciders")
    assert engine.next_due() == T0 + 5
    clock.advance(4.9)
    assert engine.fire_due() == 0
    clock.advance(0.1)
    assert engine.fire_due() == 1
    assert types(engine, after=3) == [h.DECISION_TASK_TIMED_OUT, h.DECISION_TASK_SCHEDULED]
    assert engine.get_history("wf-1")[3].attributes == {
        "scheduledEventId": 2, "startedEventId": 3, "timeoutType": "START_TO_CLOSE",
    }  # fmt: skip
    with pytest.raises(UnknownTask):
        engine.complete_decision_task(task.token, [CompleteWorkflowExecution()])
    again = engine.poll_decision_task("deciders")
    assert again.history[-1].attributes == {"scheduledEventId": 5}
    engine.complete_decision_task(again.token, [CompleteWorkflowExecution()])
    assert engine.describe_execution("wf-1").status == "completed"


def test_an_expired_decision_token_is_rejected_even_before_anything_fires(engine, clock):
    start(engine, decision_timeout=5.0)
    task = engine.poll_decision_task("deciders")
    clock.advance(5)
    with pytest.raises(UnknownTask):
        engine.complete_decision_task(task.token, [CompleteWorkflowExecution()])
    assert types(engine, after=3) == [h.DECISION_TASK_TIMED_OUT, h.DECISION_TASK_SCHEDULED]
    assert engine.describe_execution("wf-1").is_open


def test_a_decision_completed_within_its_lease_is_accepted(engine, clock):
    start(engine, decision_timeout=5.0)
    task = engine.poll_decision_task("deciders")
    clock.advance(4.99)
    engine.complete_decision_task(task.token, [])
    clock.advance(10)
    assert engine.fire_due() == 0


# -- activity tasks ------------------------------------------------------------------------------


def test_poll_activity_task_leases_it(engine):
    run_id = start(engine)
    decide(engine, [act("a1", control="ctl", heartbeat_timeout=4, start_to_close_timeout=9)])
    assert engine.poll_activity_task("other") is None
    task = engine.poll_activity_task("workers", "worker-1")
    assert (task.workflow_id, task.run_id, task.activity_id, task.name, task.version) == (
        "wf-1", run_id, "a1", "charge", "2",
    )  # fmt: skip
    assert (task.task_list, task.input, task.control) == ("workers", '{"args": [1]}', "ctl")
    assert (task.scheduled_event_id, task.started_event_id) == (5, 6)
    assert (task.heartbeat_timeout, task.start_to_close_timeout) == (4, 9)
    assert last(engine).event_type == h.ACTIVITY_TASK_STARTED
    assert last(engine).attributes == {"scheduledEventId": 5, "identity": "worker-1"}
    assert engine.poll_activity_task("workers") is None


def test_activity_tasks_go_highest_priority_first_then_oldest(engine):
    start(engine)
    decide(engine, [act("low"), act("high-1", priority=5), act("mid", priority=1), act("high-2", priority=5)])
    order = [engine.poll_activity_task("workers").activity_id for _ in range(4)]
    assert order == ["high-1", "high-2", "mid", "low"]
    assert engine.poll_activity_task("workers") is None


def test_complete_activity_appends_completed_and_schedules_a_decision(engine):
    task = start_activity(engine)
    engine.complete_activity_task(task.token, '"paid"')
    assert types(engine, after=6) == [h.ACTIVITY_TASK_COMPLETED, h.DECISION_TASK_SCHEDULED]
    assert engine.get_history("wf-1")[6].attributes == {
        "scheduledEventId": 5,
        "startedEventId": 6,
        "result": '"paid"',
    }
    assert engine.list_activity_tasks("wf-1") == []
    for call in (
        lambda: engine.complete_activity_task(task.token, "twice"),
        lambda: engine.fail_activity_task(task.token, "r"),
        lambda: engine.heartbeat_activity_task(task.token),
        lambda: engine.complete_activity_task("garbage", None),
    ):
        with pytest.raises(UnknownTask):
            call()
    assert len(engine.get_history("wf-1")) == 8


def test_fail_activity_appends_failed_and_schedules_a_decision(engine):
    task = start_activity(engine)
    engine.fail_activity_task(task.token, "ValueError: x", '{"error": "ValueError"}')
    assert types(engine, after=6) == [h.ACTIVITY_TASK_FAILED, h.DECISION_TASK_SCHEDULED]
    assert engine.get_history("wf-1")[6].attributes == {
        "scheduledEventId": 5, "startedEventId": 6, "reason": "ValueError: x", "details": '{"error": "ValueError"}',
    }  # fmt: skip


def test_heartbeats_keep_an_activity_alive_past_its_heartbeat_timeout(engine, clock):
    task = start_activity(engine, heartbeat_timeout=10)
    for _ in range(5):
        clock.advance(8)
        assert engine.heartbeat_activity_task(task.token, None) is False
        assert engine.fire_due() == 0
    assert engine.next_due() == clock() + 10
    engine.complete_activity_task(task.token, None)
    assert types(engine)[-2] == h.ACTIVITY_TASK_COMPLETED


def test_a_missing_heartbeat_times_the_activity_out_with_the_last_details(engine, clock):
    task = start_activity(engine, heartbeat_timeout=10)
    clock.advance(3)
    engine.heartbeat_activity_task(task.token, '{"done": 40}')
    clock.advance(3)
    engine.heartbeat_activity_task(task.token)  # no details: the last ones are kept
    [row] = engine.list_activity_tasks("wf-1")
    assert (row["state"], row["last_heartbeat"], row["heartbeat_details"]) == (
        "started",
        T0 + 6,
        '{"done": 40}',
    )
    clock.advance(9.99)
    assert engine.fire_due() == 0
    clock.advance(0.01)
    assert engine.fire_due() == 1
    assert types(engine, after=6) == [h.ACTIVITY_TASK_TIMED_OUT, h.DECISION_TASK_SCHEDULED]
    assert engine.get_history("wf-1")[6].attributes == {
        "scheduledEventId": 5, "startedEventId": 6, "timeoutType": "HEARTBEAT", "details": '{"done": 40}',
    }  # fmt: skip
    with pytest.raises(UnknownTask):
        engine.complete_activity_task(task.token, "late")


def test_start_to_close_timeout(engine, clock):
    task = start_activity(engine, start_to_close_timeout=30, heartbeat_timeout=100)
    engine.heartbeat_activity_task(task.token, "p")
    clock.advance(30)
    assert engine.fire_due() == 1
    assert engine.get_history("wf-1")[6].attributes == {
        "scheduledEventId": 5, "startedEventId": 6, "timeoutType": "START_TO_CLOSE", "details": "p",
    }  # fmt: skip


def test_schedule_to_start_timeout_for_an_activity_nobody_polls(engine, clock):
    start(engine)
    decide(engine, [act("a1", schedule_to_start_timeout=5, start_to_close_timeout=60)])
    assert engine.next_due() == T0 + 5
    clock.advance(5)
    assert engine.poll_activity_task("workers") is None  # the poll fires the timeout first
    assert types(engine, after=5) == [h.ACTIVITY_TASK_TIMED_OUT, h.DECISION_TASK_SCHEDULED]
    assert engine.get_history("wf-1")[5].attributes == {
        "scheduledEventId": 5,
        "timeoutType": "SCHEDULE_TO_START",
    }


def test_schedule_to_start_no_longer_applies_once_started(engine, clock):
    task = start_activity(engine, schedule_to_start_timeout=5)
    clock.advance(50)
    assert engine.fire_due() == 0
    engine.complete_activity_task(task.token, None)


def test_schedule_to_close_timeout_spans_queueing_and_running(engine, clock):
    start(engine)
    decide(engine, [act("a1", schedule_to_close_timeout=10, start_to_close_timeout=60)])
    clock.advance(6)
    task = engine.poll_activity_task("workers")
    assert engine.next_due() == T0 + 10
    clock.advance(4)
    with pytest.raises(UnknownTask):  # the lease ran out: the token is rejected and the timeout recorded
        engine.complete_activity_task(task.token, "late")
    assert types(engine, after=6) == [h.ACTIVITY_TASK_TIMED_OUT, h.DECISION_TASK_SCHEDULED]
    assert engine.get_history("wf-1")[6].attributes["timeoutType"] == "SCHEDULE_TO_CLOSE"


def test_an_activity_without_timeouts_never_times_out(engine, clock):
    task = start_activity(engine)
    assert engine.next_due() is None
    clock.advance(10**6)
    assert engine.fire_due() == 0
    engine.complete_activity_task(task.token, None)


def test_list_activity_tasks_reports_state_times_and_details(engine, clock):
    start(engine)
    decide(engine, [act("a1"), act("a2")])
    clock.advance(2)
    task = engine.poll_activity_task("workers")
    clock.advance(1)
    engine.heartbeat_activity_task(task.token, "half")
    assert engine.list_activity_tasks("wf-1") == [
        {"activity_id": "a1", "name": "charge", "state": "started", "scheduled_event_id": 5, "scheduled_at": T0,
         "started_at": T0 + 2, "last_heartbeat": T0 + 3, "heartbeat_details": "half"},
        {"activity_id": "a2", "name": "charge", "state": "scheduled", "scheduled_event_id": 6, "scheduled_at": T0,
         "started_at": None, "last_heartbeat": None, "heartbeat_details": None},
    ]  # fmt: skip


# -- time and polling ----------------------------------------------------------------------------


def test_next_due_is_the_earliest_timer_timeout_lease_or_delayed_decision(engine, clock):
    assert engine.next_due() is None
    start(engine, decision_timeout=50)
    assert engine.next_due() == T0  # a decision task is ready now
    task = engine.poll_decision_task("deciders")
    assert engine.next_due() == T0 + 50  # its lease
    engine.complete_decision_task(task.token, [StartTimer("t", 40), act("a1", schedule_to_start_timeout=30)])
    assert engine.next_due() == T0 + 30
    engine.poll_activity_task("workers")
    assert engine.next_due() == T0 + 40


def test_fire_due_fires_everything_due_and_counts_it(engine, clock):
    start(engine, wid="wf-1", decision_timeout=5)
    start(engine, wid="wf-2")
    decide(engine, [StartTimer("t1", 1), StartTimer("t2", 2), act("a1", schedule_to_start_timeout=3)])
    engine.poll_decision_task("deciders")  # wf-2's decision task, leased for 10 s
    assert engine.fire_due() == 0
    clock.advance(10)
    assert engine.fire_due() == 4
    assert types(engine, "wf-1", after=7) == [
        h.TIMER_FIRED, h.DECISION_TASK_SCHEDULED, h.TIMER_FIRED, h.ACTIVITY_TASK_TIMED_OUT,
    ]  # fmt: skip
    assert types(engine, "wf-2", after=3) == [h.DECISION_TASK_TIMED_OUT, h.DECISION_TASK_SCHEDULED]
    assert engine.fire_due() == 0


def test_polling_fires_due_timers_first(engine, clock):
    start(engine)
    decide(engine, [StartTimer("t", 5)])
    clock.advance(5)
    task = engine.poll_decision_task("deciders")
    assert [e.event_type for e in task.history[-3:]] == [
        h.TIMER_FIRED,
        h.DECISION_TASK_SCHEDULED,
        h.DECISION_TASK_STARTED,
    ]


def test_poll_with_wait_returns_a_task_that_arrives_meanwhile(engine):
    found = {}

    def poller():
        found["task"] = engine.poll_decision_task("deciders", "waiter", wait=5.0)

    thread = threading.Thread(target=poller)
    thread.start()
    time.sleep(0.05)
    began = time.monotonic()
    start(engine)
    thread.join(5)
    assert not thread.is_alive()
    assert found["task"] is not None and found["task"].workflow_id == "wf-1"
    assert time.monotonic() - began < 1.0


def test_poll_with_wait_gives_up_when_the_wait_is_over(engine, clock):
    stop = threading.Event()

    def tick():  # the engine measures `wait` on its clock, so move the fake clock along
        while not stop.is_set():
            clock.advance(0.01)
            time.sleep(0.002)

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        began = time.monotonic()
        assert engine.poll_activity_task("workers", wait=0.2) is None
        assert engine.poll_decision_task("deciders", wait=0.2) is None
        assert time.monotonic() - began < 2.0
    finally:
        stop.set()
        ticker.join()


def test_threads_polling_together_get_each_activity_task_once(engine):
    start(engine)
    decide(engine, [act(f"a{i}") for i in range(60)])
    got: list[str] = []
    lock = threading.Lock()

    def worker():
        while (task := engine.poll_activity_task("workers", threading.current_thread().name)) is not None:
            engine.complete_activity_task(task.token, task.activity_id)
            with lock:
                got.append(task.activity_id)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(got) == sorted(f"a{i}" for i in range(60))
    completed = [e for e in engine.get_history("wf-1") if e.event_type == h.ACTIVITY_TASK_COMPLETED]
    assert sorted(e.attributes["result"] for e in completed) == sorted(got)
    assert [e.event_id for e in engine.get_history("wf-1")] == list(
        range(1, len(engine.get_history("wf-1")) + 1)
    )
