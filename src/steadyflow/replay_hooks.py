"""Replay of simpleflow's workflow hooks: `on_task_failure`, `should_cancel`, and the lifecycle
hooks (`before_replay`, `after_replay`, `on_completed`, `on_failure`, `on_canceled`,
`after_closed`).

A mixin of `replay.Executor`. Two kinds of hook, two rules:

- `on_task_failure` and `should_cancel` change what the execution does, so they run where the
  event they answer is handed to the workflow: at the decision point where the original decider saw
  it, in the decider thread, before `run()` resumes, with the history up to that point. Every
  replay asks them the same question at the same place; what they decide (a retry timer, a
  rescheduled task, a failed workflow) becomes commands that replay matches against the history
  like any other. A decider restarted mid-way replays the failure, asks the hook again, finds the
  retry timer it asked for already in the history, and schedules the task once the timer fired —
  exactly once.
- The lifecycle hooks only observe: they run once per decision task actually decided (never for
  the decision points replay goes through on the way), and may not ask for anything (a task, a
  timer, a marker): what they asked would be missing from every later replay. Doing so raises
  `WorkflowError`, which gives the decision task back.

Alternatives rejected: calling `on_task_failure` once per failure *event* globally (remembering
answered failures across decisions) would need state outside the history, and would not survive a
decider restart; calling the lifecycle hooks at every replayed decision point would repeat their
side effects N times per decision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from . import history as h
from .activity import Activity
from .decisions import (
    CancelWorkflowExecution,
    CompleteWorkflowExecution,
    Decision,
    FailWorkflowExecution,
    StartTimer,
)
from .errors import TaskFailed, WorkflowError
from .failure_context import FailedActivityTask, TaskFailureContext
from .futures import Future
from .payload import json as sfjson
from .payload.serializers import SAFE
from .worker.runner import split_input
from .workflow import Workflow, current_executor
from .workflow_history import History

if TYPE_CHECKING:
    from .replay import _ActivityState

RETRY_TIMER_PREFIX = "__simpleflow_task_"
"""Timers that `retry_later` starts are named `<prefix><activity id>-<attempt>` (simpleflow's prefix)."""

Decided = TaskFailureContext.Decision


class HooksMixin:
    """Workflow hooks for `Executor` (see the module docstring)."""

    _seen: list[h.Event]
    _instance: Workflow | None
    _observing: bool

    # -- the history hooks see -------------------------------------------------------------------

    def history_view(self) -> History:
        """The events replay has gone through so far, as simpleflow's `History`."""
        return History(self._seen)

    def list_markers(self, all: bool = False) -> list[Any]:  # noqa: A002 - simpleflow's name
        return self.history_view().list_markers(all)

    def get_event_details(self, event_type: str, name: str) -> dict[str, Any] | None:
        return self.history_view().event_details(event_type, name)

    @property
    def workflow(self) -> Workflow:
        """The workflow instance this executor replays (made on first use)."""
        if self._instance is None:
            self._instance = self.workflow_cls(self)  # type: ignore[attr-defined]
        return self._instance

    @contextmanager
    def _in_workflow(self) -> Iterator[None]:
        """Run hook code as `run()` runs: `@cached`, `self.submit` and the canvas find this executor."""
        token = current_executor.set(self)  # type: ignore[arg-type]
        try:
            yield
        finally:
            current_executor.reset(token)

    # -- lifecycle hooks -------------------------------------------------------------------------

    def _observe(self, name: str, *args: Any) -> None:
        """Call lifecycle hook `name`; it may not ask for tasks, timers or markers."""
        method = getattr(self.workflow, name, None)
        if method is None or getattr(type(self.workflow), name, None) is getattr(Workflow, name, None):
            return  # not written: nothing to call
        self._observing = True
        try:
            with self._in_workflow():
                method(*args)
        except NotImplementedError:
            if name not in ("on_completed", "on_failure"):  # simpleflow lets those two be unwritten
                raise
        finally:
            self._observing = False

    def _check_not_observing(self, decision: Decision) -> None:
        if self._observing:
            raise WorkflowError(
                f"a lifecycle hook (before_replay, after_replay, on_completed, ...) asked for {type(decision).__name__}: "
                "they run once per decision and only observe; ask for it in run() or on_task_failure"
            )

    def _before_decision(self, prior: int, history: list[h.Event]) -> None:
        """`before_replay` with every event up to this decision task (the first `prior` events
        seen were seen by earlier decisions, `history` are this one's)."""
        if type(self.workflow).before_replay is not Workflow.before_replay:
            self._observe("before_replay", History([*self._seen[:prior], *history]))

    def _after_decision(self, decisions: list[Decision]) -> None:
        """The hooks for how this decision leaves the execution, in simpleflow's order."""
        view = self.history_view()
        last = decisions[-1] if decisions else None
        if isinstance(last, CompleteWorkflowExecution):
            self._observe("after_replay", view)
            self._observe("on_completed", view)
            self._observe("after_closed", view)
        elif isinstance(last, FailWorkflowExecution):
            self._observe("on_failure", view, last.reason, last.details)
            self._observe("after_closed", view)
        elif isinstance(last, CancelWorkflowExecution):
            self._observe("on_canceled", view)
            self._observe("after_replay", view)
            self._observe("after_closed", view)
        else:
            self._observe("after_replay", view)

    # -- should_cancel ---------------------------------------------------------------------------

    def _accepts_cancel(self) -> bool:
        """Ask `should_cancel(history)` whether the cancel request just delivered is obeyed."""
        if type(self.workflow).should_cancel is Workflow.should_cancel:
            return True
        with self._in_workflow():
            return bool(self.workflow.should_cancel(self.history_view()))

    # -- on_task_failure -------------------------------------------------------------------------

    def _on_task_failure(self, state: _ActivityState, exc: TaskFailed, event: h.Event) -> bool:
        """Ask the workflow's `on_task_failure`; True when its decision was applied, False for the
        default handling (retry policy, then `raises_on_failure`)."""
        workflow = self.workflow
        if type(workflow).on_task_failure is Workflow.on_task_failure:
            return False  # not written: nothing to ask (and no context to build)
        failed = Future()
        failed.set_exception(exc)
        context = TaskFailureContext(
            a_task=self._failed_task(state),
            event=_failure_event(state, event),
            future=failed,
            exception_class=TaskFailed,
            history=self.history_view(),
        )
        with self._in_workflow():
            answer = workflow.on_task_failure(context)
        if answer is not None:
            if not isinstance(answer, TaskFailureContext):
                raise WorkflowError(
                    f"on_task_failure returned {type(answer).__name__}: return the failure context (or None)"
                )
            context = answer
        decision = context.decision
        if decision is None or decision == Decided.none:
            return False
        self._apply_failure_decision(state, exc, context, failed)
        return True

    def _failed_task(self, state: _ActivityState) -> FailedActivityTask:
        accepts = SAFE | {state.options.serializer}
        data = self.payloads.loads_or_raw(state.input, accepts) if state.input else {}  # type: ignore[attr-defined]
        args, kwargs = split_input(data if isinstance(data, dict) else {})
        act = state.activity if state.activity is not None else Activity(_unknown, state.options)
        return FailedActivityTask(act, args, kwargs, state.activity_id, state.attempt)

    def _apply_failure_decision(
        self, state: _ActivityState, exc: TaskFailed, context: TaskFailureContext, failed: Future
    ) -> None:
        decision = context.decision
        if decision == Decided.abort:
            self._fail_task(state, exc, abort=True)
        elif decision == Decided.ignore:
            state.future.set_finished(None, self._order())  # type: ignore[attr-defined]
        elif decision == Decided.cancel:
            state.future.set_cancelled(self._order())  # type: ignore[attr-defined]
        elif decision == Decided.retry_now or (decision == Decided.retry_later and not context.retry_wait_timeout):
            state.attempt += 1
            self._schedule(state)  # type: ignore[attr-defined]
        elif decision == Decided.retry_later:
            state.attempt += 1
            self._retry_after(state, float(context.retry_wait_timeout or 0))
        elif decision == Decided.handled:
            replacement = context.future
            if replacement is None:  # simpleflow: "not in SWF": schedule it again
                state.attempt += 1
                self._schedule(state)  # type: ignore[attr-defined]
            elif replacement is failed or replacement is state.future:
                self._fail_task(state, exc, abort=False)
            else:
                self._follow(state.future, replacement)
        else:
            raise ValueError(f"Unexpected TaskFailureContext decision: {decision}")

    def _retry_after(self, state: _ActivityState, seconds: float) -> None:
        """A timer in the history, then the task again once it fired (replays find both)."""
        timer_id = f"{RETRY_TIMER_PREFIX}{state.activity_id}-{state.attempt}"
        control = sfjson.dumps({"activity_id": state.activity_id, "attempt": state.attempt})

        def recorded(event: h.Event) -> None:
            if event.event_type == h.START_TIMER_FAILED:
                self._fail_task(state, TaskFailed(state.activity_id, f"StartTimerFailed: {timer_id}"), abort=False)
            else:
                self._timers[timer_id] = lambda: self._schedule(state)  # type: ignore[attr-defined]

        self._emit(StartTimer(timer_id, max(seconds, 0.0), control), recorded)  # type: ignore[attr-defined]

    def _fail_task(self, state: _ActivityState, exc: TaskFailed, abort: bool) -> None:
        """The task's future fails; the workflow fails with the task's reason when `abort` (unless
        the activity says `raises_on_failure=False`) or when the activity says `True`."""
        raises = state.options.raises_on_failure
        state.future.set_exception(exc, self._order(), raises=raises is not False)  # type: ignore[attr-defined]
        if raises is True or (abort and raises is not False):
            details = exc.details if isinstance(exc.details, str) or exc.details is None else sfjson.dumps(exc.details)
            self._emit(  # type: ignore[attr-defined]
                FailWorkflowExecution(f'Workflow execution error in {state.activity_id}: "{exc.reason}"', details)
            )

    def _follow(self, future: Future, source: Future) -> None:
        """`future` finishes as `source` does (a task the hook submitted in place of the failed one)."""
        finish: Callable[[list[Any], dict[str, Any]], None] = lambda a, kw: future.set_finished(a[0], self._order())  # type: ignore[attr-defined]  # noqa: E731
        self._when_ready(future, (source,), {}, finish)  # type: ignore[attr-defined]


def _unknown(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("this activity is known only by its options here")


def _failure_event(state: _ActivityState, event: h.Event) -> dict[str, Any]:
    """The failed attempt as simpleflow's history gives an activity (`retry` = attempts before)."""
    a = event.attributes
    failed = event.event_type == h.ACTIVITY_TASK_FAILED
    return {
        "type": "activity",
        "id": state.activity_id,
        "activity_id": state.activity_id,
        "name": state.options.name,
        "version": state.options.version,
        "state": "failed" if failed else "timed_out",
        "event_id": event.event_id,
        "scheduled_id": a.get("scheduledEventId"),
        "started_id": a.get("startedEventId"),
        "input": state.input,
        "task_list": state.task_list,
        "retry": state.attempt - 1,
        "reason": a.get("reason") if failed else None,
        "details": a.get("details"),
        "timeout_type": None if failed else a.get("timeoutType"),
    }


__all__ = ["RETRY_TIMER_PREFIX", "HooksMixin"]
