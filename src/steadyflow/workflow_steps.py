"""The step methods of `Workflow` (simpleflow's `WorkflowStepMixin`), and the start options that
force or skip steps by name.

Kept out of `steps/` so that `workflow.py` can inherit it without importing the canvas (which
imports `workflow.py`); the `Step` class is imported when a step is built.
"""

from __future__ import annotations

import inspect
import os
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .activity import Activity
    from .canvas.tasks import ActivityTask
    from .steps.submittable import Step

HOUR, MINUTE = 3600, 60

#: simpleflow's attributes of the two step activities; `get_step_activity_params()` overrides them.
STEP_ACTIVITY_PARAMS_DEFAULT: dict[str, Any] = {
    "schedule_to_start_timeout": 4 * HOUR,
    "start_to_close_timeout": 1 * MINUTE,
    "schedule_to_close_timeout": 4 * HOUR + MINUTE,
    "heartbeat_timeout": 3 * MINUTE,
    "task_priority": 100,
    "version": "1.0",
    "idempotent": True,
    "raises_on_failure": True,
    "retry": 1,
}

#: Workflow kwargs that name steps to force or skip (simpleflow's convention, and `--force-steps`).
STEP_KWARGS = ("force_steps", "skip_steps")
INIT_REASON = "workflow_init"


def _names(steps: Iterable[str] | str | None) -> set[str]:
    if not steps:
        return set()
    return {steps} if isinstance(steps, str) else set(steps)


class WorkflowStepMixin:
    """Steps for a workflow: `self.step(...)`, forced and skipped names, where "done" is kept."""

    #: Where steps are recorded: None for the engine's blob store, or an S3 bucket (simpleflow's
    #: layout, `<bucket>/<workflow id>/steps/<step name>`). Override `get_step_bucket()` to compute it.
    step_bucket: str | None = None

    def get_step_bucket(self) -> str | None:
        return self.step_bucket

    def get_step_path_prefix(self) -> str:
        """Where this workflow's step records go: `<workflow id>/steps/` by default."""
        return os.path.join(self.get_run_context().get("workflow_id") or "default", "steps/")  # type: ignore[attr-defined]

    def get_step_activity_params(self) -> dict[str, Any]:
        """Attributes for the two step activities, merged over `STEP_ACTIVITY_PARAMS_DEFAULT`."""
        return {}

    def _get_step_activity_params(self) -> dict[str, Any]:
        merged = dict(STEP_ACTIVITY_PARAMS_DEFAULT)
        merged.update(self.get_step_activity_params() or {})
        return merged

    def _step_activity(self, base: Activity) -> Activity:
        """`base` with this workflow's step activity attributes (not registered: the worker finds
        the function by its name, and scheduling carries the attributes)."""
        from .activity import Activity, with_attributes

        return Activity(base.func, with_attributes(**self._get_step_activity_params()).options_for(base.name))

    def add_forced_steps(self, steps: Iterable[str] | str | None, reason: str | None = None) -> None:
        """Force these steps (and the steps under them; `*` is every step) from now on."""
        names = _names(steps)
        if not hasattr(self, "steps_forced"):
            self.steps_forced: set[str] = set()
            self.steps_forced_reasons: defaultdict[str, set[str]] = defaultdict(set)
        self.steps_forced |= names
        if reason:
            for name in names:
                self.steps_forced_reasons[name].add(reason)

    def get_forced_steps(self) -> list[str]:
        return sorted(getattr(self, "steps_forced", ()))

    def add_skipped_steps(self, steps: Iterable[str] | str | None, reason: str | None = None) -> None:
        """Skip these steps (and the steps under them) unless forced, done or not."""
        names = _names(steps)
        if not hasattr(self, "steps_skipped"):
            self.steps_skipped: set[str] = set()
            self.steps_skipped_reasons: defaultdict[str, set[str]] = defaultdict(set)
        self.steps_skipped |= names
        if reason:
            for name in names:
                self.steps_skipped_reasons[name].add(reason)

    def get_skipped_steps(self) -> list[str]:
        return sorted(getattr(self, "steps_skipped", ()))

    def step(self, *args: Any, **kwargs: Any) -> Step:
        """A `Step(step_name, activities, force=False, ...)`, to submit with `self.submit(...)`."""
        from .steps.submittable import Step

        return Step(*args, **kwargs)

    def get_steps_done_activity(self) -> ActivityTask:
        """The task listing the steps done under this workflow's path."""
        from .canvas.tasks import ActivityTask
        from .steps.tasks import get_steps_done

        return ActivityTask(self._step_activity(get_steps_done), self.get_step_bucket(), self.get_step_path_prefix())

    def get_steps_done(self) -> list[str]:
        """The steps done so far (runs the listing task and waits for it)."""
        return self.submit(self.get_steps_done_activity()).result  # type: ignore[attr-defined,no-any-return]


def apply_step_options(workflow: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Force and skip the steps named by the input's `force_steps`/`skip_steps` (reason
    `workflow_init`); return the kwargs for `run()`, without those two unless it takes them."""
    given = {k: kwargs[k] for k in STEP_KWARGS if k in kwargs}
    if not given:
        return kwargs
    if given.get("force_steps"):
        workflow.add_forced_steps(given["force_steps"], INIT_REASON)
    if given.get("skip_steps"):
        workflow.add_skipped_steps(given["skip_steps"], INIT_REASON)
    try:
        params = inspect.signature(workflow.run).parameters
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k not in STEP_KWARGS or k in params}


def add_step_options(kwargs: dict[str, Any], force: Iterable[str], skip: Iterable[str]) -> dict[str, Any]:
    """The start command's `--force-steps`/`--skip-steps` (comma-separated, repeatable) added to the
    workflow kwargs, after any the input already names."""
    out = dict(kwargs)
    for key, given in (("force_steps", force), ("skip_steps", skip)):
        names = [n.strip() for item in given for n in item.split(",") if n.strip()]
        if not names:
            continue
        before = out.get(key) or []
        if not isinstance(before, (str, list)) or not all(isinstance(n, str) for n in before):
            raise ConfigError(f"--input: kwargs {key!r} must be a list of step names, not {before!r}")
        before = [before] if isinstance(before, str) else list(before)
        out[key] = before + [n for n in names if n not in before]
    return out


__all__ = ["STEP_ACTIVITY_PARAMS_DEFAULT", "STEP_KWARGS", "WorkflowStepMixin", "add_step_options", "apply_step_options"]
