"""`Step`: a named part of a workflow that runs once across executions of the same workflow id.

Submitted, it is a chain of three parts, as simpleflow builds it: an activity that reads whether
the step is done (`get_steps_done`), then, given that answer, either the step's own work followed
by an activity that records it as done, or (already done, or skipped by name) nothing, or the
`activities_if_step_already_done`. A `log.step` marker is recorded when the step is scheduled,
when it completed and when it was skipped, with simpleflow's details (`step`, `status`, `forced`,
`reasons`).

Whether it ran before is an activity's result, so it is in the history: a replay takes the same
branch even if the store changed since. The markers are recorded from the canvas's callbacks, at
the decision points where the answer (or the last task) arrived, so they replay in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..canvas.tasks import ActivityTask, Chain, FuncGroup
from ..workflow import Workflow, current_executor
from .tasks import get_steps_done, mark_step_done
from .utils import (
    get_step_force_reasons,
    get_step_skip_reasons,
    step_is_forced,
    step_is_skipped_by_force,
    step_will_run,
)

STEP_MARKER = "log.step"


def _workflow() -> Any:
    executor = current_executor.get()
    if executor is None:
        raise RuntimeError("a Step runs only inside a workflow's run()")
    return executor.workflow


class Step(Chain):
    """simpleflow's `Step(step_name, activities, force=False, ...)`; `self.step(...)` builds one.

    `activities` is one submittable (an `ActivityTask`, a `Group`, a `Chain`, ...). `force` runs it
    even when done; `force_steps_if_executed` (older name: `dependencies`) are steps forced from then
    on in this execution when this one runs; `emit_signal` sends signal `step.<name>` to this
    execution afterwards; `bubbles_exception_on_failure` lets a failure of the step's work reach
    the step's future (by default it stops the step quietly, and the step stays not done).
    """

    def __init__(
        self,
        step_name: str,
        activities: Any,
        force: bool = False,
        activities_if_step_already_done: Any = None,
        emit_signal: bool = False,
        force_steps_if_executed: Sequence[str] | None = None,
        bubbles_exception_on_failure: bool = False,
        dependencies: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(step_name, str) or not step_name:
            raise ValueError(f"a step name must be a non-empty string, not {step_name!r}")
        self.step_name = step_name
        self.step_activities = activities
        self.force = force
        self.activities_if_step_already_done = activities_if_step_already_done
        self.emit_signal = emit_signal
        self.force_steps_if_executed = list(force_steps_if_executed or dependencies or [])
        self.step_bubbles = bubbles_exception_on_failure
        super().__init__(FuncGroup(self._lookup), FuncGroup(self._decide), send_result=True)

    def _lookup(self) -> ActivityTask:
        wf = _workflow()
        return ActivityTask(wf._step_activity(get_steps_done), wf.get_step_bucket(), wf.get_step_path_prefix(),
                            self.step_name)

    def _decide(self, steps_done: list[str]) -> Chain:
        """Given what is done, the rest of the step (called once the lookup's result is in)."""
        wf: Workflow = _workflow()
        name = self.step_name
        marker: dict[str, Any] = {"step": name, "status": "scheduled", "forced": False, "reasons": []}
        forced, skipped = wf.get_forced_steps(), wf.get_skipped_steps()  # type: ignore[attr-defined]
        if step_will_run(name, forced, skipped, steps_done or [], self.force):
            if step_is_forced(name, forced, self.force):
                marker["forced"] = True
                marker["reasons"] = get_step_force_reasons(name, getattr(wf, "steps_forced_reasons", {}))
            wf.add_forced_steps(self.force_steps_if_executed, f"Dep of {name}")  # type: ignore[attr-defined]
            wf.record_marker(STEP_MARKER, marker)
            done = ActivityTask(wf._step_activity(mark_step_done), wf.get_step_bucket(),  # type: ignore[attr-defined]
                                wf.get_step_path_prefix(), name, _who(wf))  # type: ignore[attr-defined]
            members = [self.step_activities, done, FuncGroup(self._ended, dict(marker, status="completed"),
                                                             _allow_none=True)]
        else:
            marker["status"] = "skipped"
            if step_is_skipped_by_force(name, skipped):
                marker["forced"] = True
                marker["reasons"] = get_step_skip_reasons(name, getattr(wf, "steps_skipped_reasons", {}))
            else:
                marker["reasons"] = ["Step was already played"]
            members = [FuncGroup(self._ended, marker, _allow_none=True)]
            if self.activities_if_step_already_done is not None:
                members.insert(0, self.activities_if_step_already_done)
        return Chain(*members, bubbles_exception_on_failure=self.step_bubbles)

    def _ended(self, marker: dict[str, Any]) -> None:
        wf = _workflow()
        wf.record_marker(STEP_MARKER, marker)
        if self.emit_signal:
            wf.signal(f"step.{self.step_name}", propagate=False)

    def __repr__(self) -> str:
        return f"<Step {self.step_name!r} activities={self.step_activities!r} force={self.force}>"


def _who(wf: Workflow) -> dict[str, Any]:
    context = wf.get_run_context()
    return {k: context.get(k) for k in ("run_id", "workflow_id", "version")}


__all__ = ["STEP_MARKER", "Step"]
