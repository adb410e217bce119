"""Run workflows to their end in this process: `--local` mode, the test kit, and small scripts.

The engine is real (the memory engine by default), the decider is real, and activities run inline
in this thread, one at a time: the same semantics as a deployment, with no processes to manage.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from . import settings, tracing
from .decider import Decider
from .engines.base import ActivityTask, Engine, ExecutionInfo
from .engines.memory import MemoryEngine
from .errors import UnknownTask, WorkflowError
from .worker.runner import Outcome, decode_input, failure_outcome, run_task
from .workflow import Workflow, workflow_input

__all__ = ["InlineDriver", "run_local", "start", "workflow_input"]


def start(
    engine: Engine,
    cls: type[Workflow],
    args: list[Any] | tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    workflow_id: str | None = None,
    task_list: str | None = None,
    tags: tuple[str, ...] = (),
    id_reuse_policy: str = "allow_duplicate",
    search_attributes: Mapping[str, Any] | None = None,
) -> tuple[str, str]:
    """Start an execution of `cls`; return (workflow_id, run_id)."""
    workflow_id = workflow_id or f"{cls.type_name()}-{uuid.uuid4().hex[:12]}"
    decision_timeout = cls.decision_tasks_timeout
    extra: dict[str, Any] = {"decision_timeout": decision_timeout} if decision_timeout else {}
    if id_reuse_policy != "allow_duplicate":
        extra["id_reuse_policy"] = id_reuse_policy
    if search_attributes:
        extra["search_attributes"] = search_attributes
    with tracing.span(f"StartWorkflow:{cls.type_name()}", workflow_id=workflow_id):
        text = workflow_input(cls, args, kwargs or {}, tracing.carrier())
        run_id = engine.start_execution(
            workflow_id,
            cls.type_name(),
            cls.version,
            task_list or cls.task_list or settings.get("WORKFLOW_DEFAULT_TASK_LIST"),
            engine.payloads.seal(text, cls.store),
            tags=tags,
            **extra,
        )
    return workflow_id, run_id


class InlineDriver:
    """Decides and runs activities of one task list in this thread until a condition holds.

    `fakes` maps activity names to callables that run instead of the real activity (the test kit's
    way to replace activities). `on_idle` is called when nothing could be done; it waits for the
    next timer (really, or by moving a test clock) and returns False when there is nothing to wait for.
    """

    def __init__(
        self,
        engine: Engine,
        task_list: str,
        workflows: tuple[type[Workflow], ...] = (),
        fakes: Mapping[str, Callable[..., Any]] | None = None,
        on_idle: Callable[[], bool] | None = None,
    ) -> None:
        self.engine = engine
        self.task_list = task_list
        self.fakes = dict(fakes or {})
        self.decider = Decider(engine, task_list, workflows, identity="inline", activity_task_list=task_list)
        self.on_idle = on_idle or self.sleep_until_due

    def sleep_until_due(self) -> bool:
        due = self.engine.next_due()
        if due is None:
            return False
        time.sleep(min(max(due - self.engine.clock(), 0.001), 0.1))
        return True

    def run_activity(self, task: ActivityTask) -> Outcome:
        fake = self.fakes.get(task.name)
        payloads = self.engine.payloads
        if fake is None:
            return run_task(dataclasses.asdict(task), payloads=payloads, engine=self.engine)
        try:
            args, kwargs = decode_input(task.input, payloads)
            return Outcome(True, result=payloads.dumps(fake(*args, **kwargs)))
        except Exception as exc:  # a fake fails like the real thing would
            return failure_outcome(exc)

    def step(self) -> bool:
        """One decision and one activity, if any; True when something was done."""
        progressed = self.decider.run_once()
        task = self.engine.poll_activity_task(self.task_list, "inline")
        if task is not None:
            progressed = True
            outcome = self.run_activity(task)
            try:
                if outcome.ok:
                    self.engine.complete_activity_task(task.token, outcome.result)
                else:
                    self.engine.fail_activity_task(task.token, outcome.reason, outcome.details)
            except UnknownTask:  # the task stopped its own execution (context().stop_execution())
                pass
        return progressed

    def run_until(self, done: Callable[[], bool]) -> bool:
        """Work until `done()`; False when it stopped because nothing more could happen."""
        while not done():
            if not self.step() and not self.on_idle():
                return done()
        return True


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
    driver = InlineDriver(engine, task_list, (cls,))
    if not driver.run_until(lambda: not engine.describe_execution(workflow_id).is_open):
        # Nothing runnable and no timer due: it waits for a signal, and only a shared engine can
        # deliver one. Say so instead of waiting forever.
        raise WorkflowError(
            f"workflow {workflow_id} waits for something from outside (a signal?) and nothing is scheduled: "
            "run it on an engine (standalone, or workflow start with a decider) to signal it"
        )
    return engine.describe_execution(workflow_id)
