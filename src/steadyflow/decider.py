"""The decider: polls decision tasks, replays the workflow, answers with its decisions.

A decider that cannot decide (the class does not import, the code no longer matches the history)
gives the task back with `fail_decision_task`: the execution waits, with back-off, for fixed code
instead of being failed or silently re-run.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Iterable
from typing import Any

from . import logs, metrics, tracing
from .decider_cache import ExecutorCache, size_from_env
from .engines.base import DecisionTask, Engine
from .errors import EngineUnavailable, ExecutionClosed, PayloadError, UnknownTask, WorkflowNotFound
from .history import WORKFLOW_EXECUTION_STARTED, Event
from .replay import Executor
from .workflow import Workflow

log = logging.getLogger("steadyflow.decider")
UNAVAILABLE_MAX_DELAY = 5.0
"""Longest pause, in seconds, of a decider whose engine is unavailable before it polls again."""


def load_workflow(path: str) -> type[Workflow]:
    """Import `module.Class` and check that it is a Workflow subclass (one-line errors otherwise)."""
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise WorkflowNotFound(f"{path!r} is not a dotted path MODULE.Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise WorkflowNotFound(f"cannot import module {module_name!r}: {exc}") from exc
    cls = getattr(module, attr, None)
    if cls is None:
        raise WorkflowNotFound(f"module {module_name!r} has no attribute {attr!r}")
    if not (isinstance(cls, type) and issubclass(cls, Workflow)):
        raise WorkflowNotFound(f"{path} is not a Workflow subclass")
    return cls


def default_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Decider:
    """Decides for the workflows it knows, on one task list."""

    def __init__(
        self,
        engine: Engine,
        task_list: str,
        workflows: Iterable[type[Workflow]] = (),
        identity: str | None = None,
        activity_task_list: str | None = None,
        cache_size: int | None = None,
    ) -> None:
        """`cache_size`: executions whose `run()` stays in memory between decisions (default
        `STEADYFLOW_DECIDER_CACHE` or 500; 0: replay the whole history at every decision)."""
        self.engine = engine
        self.task_list = task_list
        self.identity = identity or default_identity()
        self.activity_task_list = activity_task_list
        self._by_name: dict[str, type[Workflow]] = {}
        for cls in workflows:
            self._by_name[cls.qualified_name()] = cls
            self._by_name[cls.type_name()] = cls
        self.decided = 0
        size = size_from_env() if cache_size is None else cache_size
        self.cache = ExecutorCache(size) if size > 0 else None

    def class_for(self, history: list[Event], workflow_type: str | None = None) -> type[Workflow]:
        """The class named by the input's `__extra.class` (simpleflow), else by the type name."""
        first = history[0] if history else None
        path = None
        if first is not None and first.event_type == WORKFLOW_EXECUTION_STARTED:
            try:
                data = self.engine.payloads.loads_or_raw(first.attributes.get("input"))
            except PayloadError:  # pickled, say: the class is then found by its type name
                data = None
            if isinstance(data, dict):
                path = (data.get("__extra") or {}).get("class")
            workflow_type = workflow_type or first.attributes.get("workflowType", {}).get("name")
        for key in (path, workflow_type):
            if key and key in self._by_name:
                return self._by_name[key]
        for key in (path, workflow_type):
            if key and "." in key:
                cls = load_workflow(key)
                self._by_name[key] = cls
                return cls
        raise WorkflowNotFound(f"unknown workflow type {workflow_type!r}")

    def decide(self, task: DecisionTask) -> list:
        kept = self.cache.take(task.run_id) if self.cache is not None else None
        if kept is not None:
            carrier = kept.trace
        else:
            first = task.history[0] if task.history and task.history_after == 0 else None
            carrier = self._trace_of(first)
        with tracing.span(f"Decide:{task.workflow_type}", carrier, workflow_id=task.workflow_id, run_id=task.run_id,
                          decision_task=task.started_event_id):
            return self._decide(task, kept)

    def _trace_of(self, first: Event | None) -> dict[str, str] | None:
        if first is None or first.event_type != WORKFLOW_EXECUTION_STARTED:
            return None
        try:
            return tracing.carrier_of(self.engine.payloads.loads_or_raw(first.attributes.get("input")))
        except PayloadError:
            return None

    def _decide(self, task: DecisionTask, kept: Executor | None) -> list:
        cache = self.cache
        if kept is not None and task.history_after > (kept.last_decided or 0):
            kept.release()  # the task starts after what it knows: cannot happen unless misused
            kept = None
        if kept is not None:
            new = [e for e in task.history if e.event_id > (kept.last_decided or 0)]
            try:
                decisions = kept.decide_more(new)
            except Exception:  # stale, or anything odd: a full replay decides (and reports) it right
                kept.release()
            else:
                cache.hits += 1  # type: ignore[union-attr]
                metrics.cache_hit()
                self._keep(task, kept)
                return decisions
        if task.history_after:  # the cached state is gone after all: replay needs the whole history
            history = self.engine.get_history(task.workflow_id, task.run_id)
            task = dataclasses.replace(task, history=[e for e in history if e.event_id <= task.started_event_id],
                                       history_after=0)
        cls = self.class_for(task.history, task.workflow_type)
        executor = Executor(cls, task.workflow_id, task.run_id, task.task_list, self.activity_task_list,
                            self.engine.payloads)
        if cache is not None:
            cache.misses += 1
            metrics.cache_miss()
        decisions = executor.decide(task.history, keep=cache is not None)
        self._keep(task, executor)
        return decisions

    def _keep(self, task: DecisionTask, executor: Executor) -> None:
        if self.cache is not None and executor.resumable:
            self.cache.put(task.run_id, executor, len(task.history))

    def handle(self, task: DecisionTask) -> None:
        """Decide one task and report the answer; never raises for a workflow's own problems."""
        started = time.monotonic()
        try:
            with logs.ids(workflow_id=task.workflow_id, run_id=task.run_id):
                self._handle(task)
        finally:
            metrics.decision(time.monotonic() - started)

    def _handle(self, task: DecisionTask) -> None:
        try:
            decisions = self.decide(task)
        except Exception as exc:  # bad code, non-determinism, an unknown class: give the task back
            log.error("cannot decide %s (%s): %s", task.workflow_id, task.run_id, exc)
            try:
                self.engine.fail_decision_task(task.token, f"{type(exc).__name__}: {exc}", traceback.format_exc())
            except UnknownTask:
                pass
            return
        try:
            self.engine.complete_decision_task(task.token, decisions)
            self.decided += 1
            log.debug("decision task %s: %d decision(s)", task.started_event_id, len(decisions))
        except UnknownTask:
            log.warning("decision for %s dropped: its lease ran out and another decider owns it", task.workflow_id)

    def run_once(self, wait: float = 0.0) -> bool:
        known = self.cache.known() if self.cache is not None else None
        task = self.engine.poll_decision_task(self.task_list, self.identity, wait=wait, known=known)
        if task is None:
            return False
        self.handle(task)
        return True

    def run(self, stop: threading.Event | None = None, poll_wait: float = 1.0) -> None:
        stop = stop or threading.Event()
        log.info("decider %s polling task list %r", self.identity, self.task_list)
        failures = 0
        while not stop.is_set():
            try:
                self.run_once(wait=poll_wait)
                failures = 0
            except EngineUnavailable as exc:  # a full disk, a dropped server: wait, never exit
                failures += 1
                delay = min(0.1 * 2**failures, UNAVAILABLE_MAX_DELAY)
                log.warning("decider %s: engine unavailable (%s); trying again in %.1f s", self.identity, exc, delay)
                stop.wait(delay)


def query_workflow(
    engine: Engine,
    workflow_id: str,
    run_id: str | None,
    name: str,
    args: tuple[Any, ...] = (),
    workflows: Decider | None = None,
) -> Any:
    """Answer a `@query` method of an open execution from its replayed state; nothing is recorded."""
    info = engine.describe_execution(workflow_id, run_id)
    if not info.is_open:
        raise ExecutionClosed(f"execution {workflow_id} is {info.status}; only open executions answer queries")
    history = engine.get_history(workflow_id, info.run_id)
    decider = workflows or Decider(engine, info.task_list)
    cls = decider.class_for(history, info.workflow_type)
    executor = Executor(cls, info.workflow_id, info.run_id, info.task_list, payloads=engine.payloads)
    return executor.query(history, name, tuple(args))
