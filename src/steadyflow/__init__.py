"""steadyflow: durable workflows and task workers for Python.

The public API, re-exported; nothing else lives here.
"""

from __future__ import annotations

# `activity` is the module, made callable so that both `@activity` and
# `@activity.with_attributes(...)` work (simpleflow's spelling).
from . import (
    activity,  # noqa: E402,I001
    futures,
)
from .activity import Activity, context, heartbeat
from .canvas import ActivityTask, AggregateException, Chain, FuncGroup, Group, WorkflowTask
from .client import AsyncClient, Client, WorkflowHandle
from .errors import (
    ActivityNotFound,
    CancelledError,
    ChildWorkflowFailed,
    ConfigError,
    EngineError,
    EngineUnavailable,
    ExecutionClosed,
    NonDeterminismError,
    PayloadError,
    PayloadTooLarge,
    ResultTimeout,
    SteadyflowError,
    TaskFailed,
    TaskTimedOut,
    UnknownExecution,
    UnknownTask,
    WorkflowAlreadyStarted,
    WorkflowError,
    WorkflowFailed,
    WorkflowNotFound,
)
from .failure_context import TaskFailureContext
from .retry import RetryPolicy
from .search import SearchAttributeError, SearchQueryError
from .steps import Step
from .workflow import Workflow, cached, nondeterministic, query

__version__ = "0.1.0"

__all__ = [
    "Activity",
    "ActivityNotFound",
    "ActivityTask",
    "AggregateException",
    "AsyncClient",
    "CancelledError",
    "Chain",
    "ChildWorkflowFailed",
    "Client",
    "ConfigError",
    "EngineError",
    "EngineUnavailable",
    "ExecutionClosed",
    "FuncGroup",
    "Group",
    "NonDeterminismError",
    "PayloadError",
    "PayloadTooLarge",
    "ResultTimeout",
    "RetryPolicy",
    "SearchAttributeError",
    "SearchQueryError",
    "Step",
    "SteadyflowError",
    "TaskFailed",
    "TaskFailureContext",
    "TaskTimedOut",
    "UnknownExecution",
    "UnknownTask",
    "Workflow",
    "WorkflowAlreadyStarted",
    "WorkflowError",
    "WorkflowFailed",
    "WorkflowHandle",
    "WorkflowNotFound",
    "WorkflowTask",
    "activity",
    "cached",
    "context",
    "futures",
    "heartbeat",
    "nondeterministic",
    "query",
]
