"""Replay of what links executions together: signals (sent and awaited) and child workflows.

A mixin of `replay.Executor`, kept apart so each file holds one concern; it uses the executor's
command queue (`_emit`), completion order (`_order`) and argument resolution (`_when_ready`).
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

from . import history as h
from .decisions import SignalExternalWorkflowExecution, StartChildWorkflowExecution
from .errors import ChildWorkflowFailed
from .futures import Future
from .payload import json as sfjson
from .payload.serializers import SAFE
from .workflow import Workflow, workflow_input

if TYPE_CHECKING:
    pass


class LinksMixin:
    """Signals and child workflows for `Executor`."""

    def submit_child(
        self,
        cls: type[Workflow],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        workflow_id: str | None = None,
        parent_close_policy: str | None = None,
        task_list: str | None = None,
    ) -> Future:
        self._child_names[cls.type_name()] += 1
        if workflow_id is None and hasattr(cls, "get_workflow_id"):
            workflow_id = cls.get_workflow_id(*args, **kwargs)
        if workflow_id is None:
            suffix = f"{zlib.adler32(self.run_id.encode()):x}"
            workflow_id = f"workflow-{cls.type_name()}-{self.workflow_id}--{suffix}--{self._child_names[cls.type_name()]}"
        future = Future()
        child = self._new_child(workflow_id, future)
        child.accepts = SAFE | {cls.serializer}
        tl = self.activity_task_list or task_list or cls.task_list or self.task_list
        policy = parent_close_policy or getattr(cls, "parent_close_policy", "terminate")

        def start(a: list[Any], kw: dict[str, Any]) -> None:
            decision = StartChildWorkflowExecution(
                workflow_id=workflow_id,  # type: ignore[arg-type]
                workflow_type=cls.type_name(),
                version=cls.version,
                task_list=tl,
                input=workflow_input(cls, a, kw, self.trace),
                parent_close_policy=policy,
                decision_timeout=cls.decision_tasks_timeout,
            )
            self._emit(decision, lambda e: self._children.__setitem__(e.event_id, child), cls.store)

        self._when_ready(future, args, kwargs, start)
        return future

    def signal(
        self,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        workflow_id: str | None = None,
        run_id: str | None = None,
        propagate: bool = True,
    ) -> Future:
        """Signal another execution, or (untargeted) this one, its parent and its started children."""
        payload = sfjson.dumps({"args": list(args), "kwargs": kwargs, "__propagate": False})
        if workflow_id is not None:
            targets = [(workflow_id, run_id)]
        else:
            targets = [(self.workflow_id, self.run_id)]
            if propagate and self._parent:
                targets.append((self._parent["workflowId"], self._parent.get("runId")))
            if propagate:
                targets += [(c.workflow_id, c.run_id) for c in self._children.values() if c.run_id and c.future.running]
        future = Future()
        sent = (future, {"args": list(args), "kwargs": kwargs})
        for i, (wid, rid) in enumerate(targets):
            # The future follows the first target: this execution, or the one named.
            def recorded(event: h.Event, first: bool = i == 0) -> None:
                if first:
                    self._signal_sends[event.event_id] = sent

            self._emit(SignalExternalWorkflowExecution(wid, rid, name, payload), recorded)
        return future

    def wait_signal(self, name: str) -> Future:
        """The n-th call for `name` resolves with the n-th signal of that name, even an earlier one."""
        index = self._signal_waits[name]
        self._signal_waits[name] += 1
        future = Future()
        received = self._signals.get(name, [])
        if index < len(received):
            future.set_finished(received[index], self._order())
        else:
            self._signal_waiters[(name, index)] = future
        return future

    def _on_signal(self, name: str, value: Any) -> None:
        received = self._signals.setdefault(name, [])
        waiter = self._signal_waiters.pop((name, len(received)), None)
        received.append(value)
        if waiter is not None:
            waiter.set_finished(value, self._order())

    def _on_child(self, event: h.Event) -> None:
        a, t = event.attributes, event.event_type
        child = self._children.get(a.get("initiatedEventId", -1))
        if child is None:
            return
        if t == h.CHILD_STARTED:
            child.run_id = a.get("workflowExecution", {}).get("runId")
            child.future.set_running()
        elif t == h.CHILD_COMPLETED:
            result = self.payloads.loads_or_raw(a.get("result"), child.accepts, f"the parent of {child.workflow_id}")
            child.future.set_finished(result, self._order())
        elif t == h.START_CHILD_FAILED:
            error = ChildWorkflowFailed(child.workflow_id, "not started", f"StartChildWorkflowExecutionFailed: {a.get('cause')}")
            child.future.set_exception(error, self._order())
        else:
            status = next(s for s, name in h.CHILD_CLOSE_EVENTS.items() if name == t)
            details = self.payloads.loads_or_raw(a.get("details"))
            child.future.set_exception(ChildWorkflowFailed(child.workflow_id, status, a.get("reason"), details), self._order())

