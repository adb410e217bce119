"""Pin the public names, so that moving code between modules cannot change what users import."""

from __future__ import annotations

import steadyflow

EXPECTED = {
    "Activity", "ActivityNotFound", "ConfigError", "EngineError", "EngineUnavailable", "ExecutionClosed",
    "NonDeterminismError", "PayloadError", "PayloadTooLarge", "RetryPolicy", "SteadyflowError", "TaskFailed",
    "TaskTimedOut", "UnknownExecution", "UnknownTask", "Workflow", "WorkflowAlreadyStarted", "WorkflowError",
    "WorkflowFailed", "WorkflowNotFound", "activity", "context", "futures", "heartbeat",
    "CancelledError", "ChildWorkflowFailed", "cached", "nondeterministic", "query",
    "Client", "AsyncClient", "WorkflowHandle", "ResultTimeout",
    "Group", "Chain", "FuncGroup", "ActivityTask", "WorkflowTask", "AggregateException",
    "TaskFailureContext", "Step", "SearchAttributeError", "SearchQueryError",
}


def test_public_names_are_exported():
    assert set(steadyflow.__all__) == EXPECTED
    for name in EXPECTED:
        assert hasattr(steadyflow, name), name


def test_errors_share_one_root():
    for name in EXPECTED:
        obj = getattr(steadyflow, name)
        if isinstance(obj, type) and issubclass(obj, BaseException) and obj is not steadyflow.CancelledError:
            assert issubclass(obj, steadyflow.SteadyflowError), name


def test_activity_is_both_a_decorator_and_simpleflows_module():
    @steadyflow.activity
    def plain(x):
        return x

    @steadyflow.activity.with_attributes(task_list="t", version="2", retry=2)
    def attributed(x):
        return x

    assert plain(3) == 3 and attributed(4) == 4
    assert plain.options.name.endswith("plain") and plain.options.retry_policy.maximum_attempts == 1
    assert attributed.options.task_list == "t" and attributed.options.retry_policy.maximum_attempts == 3
    from steadyflow.activity import with_attributes  # the module still imports as one

    assert with_attributes is steadyflow.activity.with_attributes


def test_seed_import_line_works():
    from steadyflow import Workflow, activity, futures  # simpleflow's quickstart line, renamed

    assert callable(activity.with_attributes) and callable(futures.wait) and Workflow.version == "default"
