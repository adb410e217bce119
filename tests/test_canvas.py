"""The canvas (Group, Chain, FuncGroup, ActivityTask, WorkflowTask) end to end on each engine."""

from __future__ import annotations

import json
import uuid

import pytest

from steadyflow import (
    ActivityTask,
    AggregateException,
    Chain,
    FuncGroup,
    Group,
    TaskFailed,
    Workflow,
    WorkflowTask,
)
from steadyflow import history as h
from steadyflow.canvas import WAKE_UP_TIMER, ChildWorkflowTask
from steadyflow.decider import Decider
from steadyflow.engines import open_engine
from steadyflow.local import InlineDriver, run_local, start
from steadyflow.replay import Executor
from tests.fixtures import canvas_workflows as cw
from tests.fixtures.workflows import inc, square

CLOSING = {
    h.ACTIVITY_TASK_COMPLETED,
    h.ACTIVITY_TASK_FAILED,
    h.ACTIVITY_TASK_TIMED_OUT,
    "ActivityTaskCanceled",
}


class BatchDriver(InlineDriver):
    """Takes every open activity task before the next decision and completes them last-first, so a
    decision sees several completions at once, out of order."""

    def step(self) -> bool:
        progressed = self.decider.run_once()
        tasks = []
        while (task := self.engine.poll_activity_task(self.task_list, "batch")) is not None:
            tasks.append(task)
        for task in reversed(tasks):
            outcome = self.run_activity(task)
            if outcome.ok:
                self.engine.complete_activity_task(task.token, outcome.result)
            else:
                self.engine.fail_activity_task(task.token, outcome.reason, outcome.details)
        return progressed or bool(tasks)


def run(engine, cls, args=(), cache_size=None, driver_cls=InlineDriver):
    """Run to the end; `cache_size=0` replays the whole history at every decision."""
    task_list = f"canvas-{uuid.uuid4().hex}"
    workflow_id, _ = start(engine, cls, args, task_list=task_list)
    driver = driver_cls(engine, task_list, (cls,))
    if cache_size is not None:
        driver.decider = Decider(
            engine, task_list, [cls], identity="test", activity_task_list=task_list, cache_size=cache_size
        )
    assert driver.run_until(lambda: not engine.describe_execution(workflow_id).is_open)
    return engine.describe_execution(workflow_id)


def history(engine, info):
    return engine.get_history(info.workflow_id, info.run_id)


def of_type(engine, info, event_type):
    return [e for e in history(engine, info) if e.event_type == event_type]


def open_counts(events):
    """Activity tasks scheduled and not closed, after each event, walking the history in order."""
    open_tasks: set[int] = set()
    counts = []
    for e in events:
        if e.event_type == h.ACTIVITY_TASK_SCHEDULED:
            open_tasks.add(e.event_id)
        elif e.event_type in CLOSING:
            open_tasks.discard(e.attributes["scheduledEventId"])
        counts.append(len(open_tasks))
    return counts


def inputs(engine, info):
    return [
        json.loads(e.attributes["input"])["args"] for e in of_type(engine, info, h.ACTIVITY_TASK_SCHEDULED)
    ]


def assert_replays(engine, info, cls):
    """A fresh executor replays the whole history without a difference (what the Replayer does)."""
    assert Executor(cls).decide(history(engine, info)) == []


# -- max_parallel ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cache_size", [None, 0], ids=["cached", "replayed"])
def test_group_never_has_more_than_max_parallel_tasks_open(real_engine, cache_size):
    info = run(real_engine, cw.ParallelGroup, [12, 3], cache_size=cache_size)
    assert info.status == "completed"
    assert json.loads(info.result) == [i * i for i in range(12)]
    counts = open_counts(history(real_engine, info))
    assert max(counts) == 3
    assert len(of_type(real_engine, info, h.ACTIVITY_TASK_SCHEDULED)) == 12
    assert_replays(real_engine, info, cw.ParallelGroup)


def test_group_max_parallel_holds_when_tasks_finish_together_and_out_of_order(real_engine):
    info = run(real_engine, cw.ParallelGroup, [12, 3], cache_size=0, driver_cls=BatchDriver)
    assert json.loads(info.result) == [i * i for i in range(12)]
    counts = open_counts(history(real_engine, info))
    assert max(counts) == 3
    # Each decision saw three completions and scheduled three more: four waves of three.
    waves = [e for e in history(real_engine, info) if e.event_type == h.DECISION_TASK_COMPLETED]
    assert len(waves) == 5  # four waves, then the completion


@pytest.mark.parametrize("engine_kind", ["memory", "sqlite"])
def test_group_max_parallel_holds_across_a_decider_killed_mid_decision_and_restarted(tmp_path, engine_kind):
    url = "memory://" if engine_kind == "memory" else f"sqlite:///{tmp_path / 'steadyflow.db'}"
    engine = open_engine(url)
    cls = cw.ParallelGroupShortLease
    task_list = f"canvas-{uuid.uuid4().hex}"
    workflow_id, run_id = start(engine, cls, [12, 3], task_list=task_list)

    first = InlineDriver(engine, task_list, (cls,))  # its decider keeps run() in memory between decisions
    for _ in range(4):
        assert first.step()
    # The decider takes the next decision task and dies before answering it.
    assert engine.poll_decision_task(task_list, "doomed-decider") is not None
    del first
    if engine_kind == "sqlite":  # a new process: a new connection, nothing in memory
        engine.close()
        engine = open_engine(url)

    second = InlineDriver(engine, task_list, (cls,))
    second.decider = Decider(
        engine, task_list, [cls], identity="restarted", activity_task_list=task_list, cache_size=0
    )
    assert second.run_until(lambda: not engine.describe_execution(workflow_id).is_open)

    info = engine.describe_execution(workflow_id)
    events = engine.get_history(workflow_id, run_id)
    assert info.status == "completed"
    assert json.loads(info.result) == [i * i for i in range(12)]
    assert max(open_counts(events)) == 3
    assert any(e.event_type == h.DECISION_TASK_TIMED_OUT for e in events)  # the killed decider's task
    started_by = {e.attributes.get("identity") for e in events if e.event_type == h.DECISION_TASK_STARTED}
    assert {"inline", "doomed-decider", "restarted"} <= started_by
    ids = [e.attributes["activityId"] for e in events if e.event_type == h.ACTIVITY_TASK_SCHEDULED]
    assert ids == [f"activity-tests.fixtures.workflows.square-{i}" for i in range(1, 13)]  # none twice
    assert Executor(cls).decide(events) == []  # and the whole history replays without a difference
    engine.close()


# -- chains ---------------------------------------------------------------------------------------


def test_chain_send_result_passes_each_result_to_the_next_of_five_activities(real_engine):
    info = run(real_engine, cw.ChainOfIncrements, [5])
    assert json.loads(info.result) == [1, 2, 3, 4, 5]
    assert inputs(real_engine, info) == [[0], [1], [2], [3], [4]]
    assert max(open_counts(history(real_engine, info))) == 1  # one link at a time


def test_chain_break_on_failure_stops_the_chain_and_fails_the_workflow_with_simpleflows_reason(real_engine):
    info = run(real_engine, cw.ChainBreaks)
    assert info.status == "failed"
    assert (
        info.close_reason
        == 'Workflow execution error in activity-tests.fixtures.workflows.boom-1: "ValueError: link 2 broke"'
    )
    assert json.loads(info.close_details)["message"] == "link 2 broke"
    assert inputs(real_engine, info) == [[1], ["link 2 broke"]]  # the third link never ran


def test_chain_failure_raises_task_failed_from_the_chain_future(real_engine):
    info = run(real_engine, cw.ChainBreaksCaught)
    assert json.loads(info.result) == {
        "type": "AggregateException",
        "name": "activity-tests.fixtures.workflows.boom-1",
        "reason": "ValueError: link 2 broke",
        "exceptions": [None, "activity-tests.fixtures.workflows.boom-1"],
        "futures": 2,
    }


def test_chain_with_a_quiet_failure_stops_without_raising(real_engine):
    info = run(real_engine, cw.ChainBreaksQuietly)
    assert json.loads(info.result) == {"results": [2, None], "exception": "AggregateException"}


def test_chain_without_break_on_failure_goes_on_after_a_failure(real_engine):
    info = run(real_engine, cw.ChainGoesOn)
    assert json.loads(info.result) == {"results": [2, None, 6], "failures": [False, True, False]}


def test_send_result_with_break_on_failure_false_is_a_value_error():
    with pytest.raises(ValueError, match="send_result=True with break_on_failure=False"):
        Chain((inc, 1), inc, send_result=True, break_on_failure=False)


def test_send_result_into_a_group_is_refused_when_submitted(real_engine):
    class PassesToGroup(Workflow):
        def run(self):
            return self.submit(Chain((inc, 1), Group((inc, 2)), send_result=True)).result

    info = run_local(PassesToGroup, engine=real_engine)
    assert info.status == "failed"
    assert "cannot pass a result to a Group" in info.close_reason
    assert of_type(real_engine, info, h.ACTIVITY_TASK_SCHEDULED) == []


# -- groups ---------------------------------------------------------------------------------------


def test_group_failure_raises_an_aggregate_of_member_failures(real_engine):
    info = run(real_engine, cw.GroupWithFailure)
    assert json.loads(info.result) == {"raised": [None, "ValueError: member broke", None]}


def test_group_without_bubbling_reports_none_for_the_failed_member(real_engine):
    info = run(real_engine, cw.GroupWithFailure, [False])
    assert json.loads(info.result) == {"results": [2, None, 4]}


def test_group_raises_on_failure_false_mutes_its_members(real_engine):
    info = run(real_engine, cw.GroupRaisesOnFailureFalse)
    assert json.loads(info.result) == {"results": [2, None], "exception": "AggregateException"}


def test_groups_and_chains_nest_and_func_group_builds_from_earlier_results(real_engine):
    info = run(real_engine, cw.Nested)
    assert json.loads(info.result) == [
        [[2, 3], [11, 12, 13]],  # a group of chains
        [[4, 9], [2]],  # a chain of groups
        [[1, 2, 3], [1, 4, 9], 14],  # a group, a group built from its results, a total of those
    ]
    assert_replays(real_engine, info, cw.Nested)


@pytest.mark.parametrize("cache_size", [None, 0], ids=["cached", "replayed"])
def test_nested_canvas_decides_the_same_with_and_without_the_decider_cache(real_engine, cache_size):
    info = run(real_engine, cw.Nested, cache_size=cache_size, driver_cls=BatchDriver)
    assert json.loads(info.result)[2] == [[1, 2, 3], [1, 4, 9], 14]
    assert_replays(real_engine, info, cw.Nested)


def test_tuples_append_and_iadd_build_a_group(real_engine):
    info = run(real_engine, cw.Appended)
    assert json.loads(info.result) == [4, 3, 10, 30, 25]


def test_workflow_tasks_run_as_children_inside_a_group(real_engine):
    info = run(real_engine, cw.GroupWithChildren)
    assert json.loads(info.result) == [9, 16, 25]
    children = [e for e in real_engine.list_executions() if e.parent_workflow_id == info.workflow_id]
    assert len(children) == 2 and all(c.status == "completed" for c in children)


def test_func_group_waits_for_futures_among_its_arguments(real_engine):
    info = run(real_engine, cw.FuncGroupFromFutures)
    assert json.loads(info.result) == [0, 1, 4]


def test_func_group_whose_function_raises_fails_that_member(real_engine):
    info = run(real_engine, cw.FuncGroupFails)
    assert info.status == "failed"
    assert info.close_reason == (
        'Workflow execution error in FuncGroup(tests.fixtures.canvas_workflows.broken_builder): "RuntimeError: cannot build"'
    )


def test_task_deferred_on_a_canvas_that_finishes_inside_a_decider_callback_still_runs(real_engine):
    info = run(real_engine, cw.WaitsOnCanvas)
    assert json.loads(info.result) == 3  # the chain's result [2, 3, []] has three members
    timers = of_type(real_engine, info, h.TIMER_STARTED)
    assert [t.attributes["timerId"] for t in timers] == [f"{WAKE_UP_TIMER}-1"]
    assert_replays(real_engine, info, cw.WaitsOnCanvas)


# -- building -------------------------------------------------------------------------------------


def test_group_members_from_every_spelling():
    group = Group((square, 2), inc, cw.SquareChild, ActivityTask(inc, 1), WorkflowTask(cw.SquareChild, 3))
    group += [(cw.add, 1, 2)]
    group.append(FuncGroup(cw.squares_of, [1]))
    kinds = [type(m).__name__ for m in group.activities]
    assert kinds == [
        "ActivityTask",
        "ActivityTask",
        "WorkflowTask",
        "ActivityTask",
        "WorkflowTask",
        "ActivityTask",
        "FuncGroup",
    ]
    assert group.activities[0].args == [2] and group.activities[5].args == [1, 2]
    assert WorkflowTask(None, cw.SquareChild, 4).args == [4]  # simpleflow's (executor, Child, *args)
    assert ChildWorkflowTask is WorkflowTask
    with pytest.raises(ValueError, match="args, kwargs not supported"):
        group.append(Group(), 1)
    with pytest.raises(ValueError, match="should be a Submittable"):
        group.append(42)
    with pytest.raises(ValueError, match="max_parallel"):
        Group(max_parallel=-1)
    with pytest.raises(TypeError):
        WorkflowTask(square, 1)


def test_chain_that_does_not_raise_does_not_bubble_by_default():
    assert Chain(raises_on_failure=False).bubbles_exception_on_failure is False
    assert Chain().bubbles_exception_on_failure is True
    assert (
        Chain(raises_on_failure=False, bubbles_exception_on_failure=True).bubbles_exception_on_failure is True
    )


def test_aggregate_exception_is_a_task_failed_carrying_the_first_failure():
    first = TaskFailed("activity-a-1", "ValueError: a")
    second = TaskFailed("activity-b-1", "KeyError: b")
    nested = AggregateException([None, AggregateException([first, None]), second])
    assert isinstance(nested, TaskFailed)
    assert (nested.name, nested.reason) == ("activity-a-1", "ValueError: a")
    assert nested.flatten().exceptions == [first, second]
    with pytest.raises(AggregateException) as caught:
        nested.flatten().handle(lambda ex: ex is first)
    assert caught.value.exceptions == [second]
    assert str(AggregateException([None, first])).startswith("AggregateException([")


def test_submitting_a_group_with_arguments_is_a_type_error(real_engine):
    class Wrong(Workflow):
        def run(self):
            return self.submit(Group((inc, 1)), 2).result

    info = run_local(Wrong, engine=real_engine)
    assert info.status == "failed" and "takes no arguments when submitted" in info.close_reason


def test_activity_task_submitted_alone_is_a_plain_submit(real_engine):
    class AloneCatches(Workflow):
        def run(self):
            return self.submit(ActivityTask(inc, 41)).result

    info = run_local(AloneCatches, engine=real_engine)
    assert json.loads(info.result) == 42
    assert inputs(real_engine, info) == [[41]]


def test_group_raises_on_failure_true_fails_the_workflow_at_once(real_engine):
    info = run(real_engine, cw.GroupFailsFast)
    assert info.status == "failed"
    assert info.close_reason == (
        'Workflow execution error in activity-tests.fixtures.workflows.boom-1: "ValueError: fatal member"'
    )


def test_raises_on_failure_false_mutes_a_failed_child_workflow(real_engine):
    info = run(real_engine, cw.QuietChildren)
    assert json.loads(info.result) == {"results": [None, 9], "failed": [True, False]}


def test_empty_groups_and_chains_finish_at_once_with_empty_results(real_engine):
    info = run(real_engine, cw.EmptyCanvas)
    assert json.loads(info.result) == [[], [], [[]]]
    assert [e.event_type for e in history(real_engine, info)].count(h.DECISION_TASK_COMPLETED) == 1
