"""Steps: named parts of a workflow that run once across its executions (simpleflow's
`simpleflow.step`). See docs/steps.md.

`self.submit(self.step("load", ActivityTask(load, day)))` runs `load` unless an earlier execution
of the same workflow id completed step `load`; `force=True`, `add_forced_steps`/`add_skipped_steps`
or the start command's `--force-steps`/`--skip-steps` change that.
"""

from __future__ import annotations

from ..workflow_steps import STEP_ACTIVITY_PARAMS_DEFAULT, WorkflowStepMixin
from .store import BlobStepStore, S3StepStore, StepStore, open_step_store
from .submittable import STEP_MARKER, Step
from .tasks import UNKNOWN_CONTEXT, get_steps_done, mark_step_done
from .utils import (
    get_step_force_reasons,
    get_step_skip_reasons,
    should_force_step,
    should_skip_step,
    step_is_forced,
    step_is_skipped_by_force,
    step_will_run,
)

__all__ = [
    "STEP_ACTIVITY_PARAMS_DEFAULT",
    "STEP_MARKER",
    "UNKNOWN_CONTEXT",
    "BlobStepStore",
    "S3StepStore",
    "Step",
    "StepStore",
    "WorkflowStepMixin",
    "get_step_force_reasons",
    "get_step_skip_reasons",
    "get_steps_done",
    "mark_step_done",
    "open_step_store",
    "should_force_step",
    "should_skip_step",
    "step_is_forced",
    "step_is_skipped_by_force",
    "step_will_run",
]
