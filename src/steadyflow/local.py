"""Run a workflow to its end in this process: `--local` mode, and the simplest way to test one.

The engine is real (the memory engine by default), the decider is real, and activities run inline
in this thread, one at a time: the same semantics as a deployment, with no processes to manage.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any

from .decider import Decider
from .engines.base import Engine, ExecutionInfo
from .engines.memory import MemoryEngine
from .payload import json as sfjson
from .worker.runner import run_task
from .workflow import Workflow


def workflow_input(cls: type[Workflow], args: list[Any] | tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """simpleflow's workflow input: args, kwargs and `__extra.class` for the decider."""
    return sfjson.dumps({"args": list(args), "kwargs": kwargs, "__extra": {"class": cls.qualified_name()}})


def start(
    engine: Engine,
    cls: type[Workflow],
    args: list[Any] | tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    workflow_id: str | None = None,
    task_list: str | None = None,
    tags: tuple[str, ...] = (),
) -> tuple[str, str]:
    """Start an execution of `cls`; return (workflow_id, run_id)."""
    workflow_id = workflow_id or f"{cls.type_name()}-{uuid.uuid4().hex[:12]}"
    decision_timeout = cls.decision_tasks_timeout
    extra = {"decision_timeout": decision_timeout} if decision_timeout else {}
    run_id = engine.start_execution(
        workflow_id,
        cls.type_name(),
        cls.version,
        task_list or cls.task_list or "default",
        workflow_input(cls, args, kwargs or {}),
        tags=tags,
        **extra,
    )
    return workflow_id, run_id


def run_local(
    cls: type[Workflow],
    args: list[Any] | tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    engine: Engine | None = None,
    workflow_id: str | None = None,
) -> ExecutionInfo:
    """Run one execution to its end on `engine` (a fresh memory engine by default)."""
    engine = engine or MemoryEngine()
    task_list = f"local-{uuid.uuid4().hex}"
    workflow_id, run_id = start(engine, cls, args, kwargs, workflow_id=workflow_id, task_list=task_list)
    decider = Decider(engine, task_list, [cls], identity="local", activity_task_list=task_list)
    while True:
        progressed = decider.run_once()
        task = engine.poll_activity_task(task_list, "local")
        if task is not None:
            progressed = True
            outcome = run_task(dataclasses.asdict(task))
            if outcome.ok:
                engine.complete_activity_task(task.token, outcome.result)
            else:
                engine.fail_activity_task(task.token, outcome.reason, outcome.details)
        info = engine.describe_execution(workflow_id, run_id)
        if not info.is_open:
            return info
        if not progressed:
            due = engine.next_due()
            time.sleep(min(max((due or 0) - engine.clock(), 0.001), 0.1))
