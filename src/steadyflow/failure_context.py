"""simpleflow's `TaskFailureContext`: what `Workflow.on_task_failure` is given, and the decision it
hands back.

The executor builds one per failed attempt of an activity (`replay_hooks.py`), in the decider
thread, at the decision point where the failure is first seen, so the hook sees the same context
on every replay. Its fields and decisions are simpleflow's; `exception_class` is steadyflow's
`TaskFailed`.
"""

from __future__ import annotations

import builtins
import enum
import sys
from dataclasses import dataclass
from typing import Any

from .canvas.tasks import ActivityTask
from .errors import TaskFailed
from .futures import Future
from .payload import json as sfjson


class FailedActivityTask(ActivityTask):
    """The activity whose attempt failed, with its arguments, id and attempt (simpleflow's
    `a_task`): `payload` is the activity, `id` its activity id."""

    def __init__(self, activity: Any, args: list[Any], kwargs: dict[str, Any], activity_id: str, attempt: int) -> None:
        super().__init__(activity, *args, **kwargs)
        self.id = activity_id
        self.attempt = attempt

    @property
    def payload(self) -> Any:
        return self.activity


@dataclass(eq=False)
class TaskFailureContext:
    """A failed task, and what to do about it (`decide_*`, or set `decision` directly)."""

    class Decision(enum.Enum):
        none = 0
        abort = 1
        ignore = 2
        retry_now = 3
        retry_later = 4
        cancel = 5
        handled = 6

    a_task: Any
    event: dict[str, Any]
    future: Future | None
    exception_class: type[Exception] = TaskFailed
    history: Any = None
    decision: TaskFailureContext.Decision | None = Decision.none
    retry_wait_timeout: float | None = None
    reason: str | None = None
    details: Any = None
    task_error: str | None = None
    task_message: str | None = None
    task_error_type: type[BaseException] | None = None

    def __post_init__(self) -> None:
        exception = self.exception
        if isinstance(exception, TaskFailed):
            self.reason = exception.reason or self.reason
            details = exception.details
            if isinstance(details, str):
                try:
                    details = sfjson.loads(details)
                except ValueError:
                    pass
            if details:
                self.details = details
            if isinstance(details, dict):
                self.task_error = details.get("error", self.task_error)
                self.task_message = details.get("message", self.task_message)
                if "error_type" in details:
                    self.task_error_type = _known_class(details["error_type"])
        elif exception is not None:
            self.reason = str(exception)

    @property
    def retry_count(self) -> int | None:
        return self.event.get("retry")

    @property
    def attempt_number(self) -> int:
        return int(self.event.get("retry") or 0) + 1

    @property
    def payload(self) -> Any:
        return getattr(self.a_task, "payload", None)

    @property
    def task_name(self) -> str | None:
        payload = self.payload
        if payload is not None:
            return getattr(payload, "name", None)
        return getattr(self.a_task, "name", None)

    @property
    def exception(self) -> BaseException | None:
        return self.future.exception if self.future is not None and self.future.done else None

    @property
    def current_started_decision_id(self) -> int | None:
        return getattr(self.history, "started_decision_id", None)

    @property
    def last_completed_decision_id(self) -> int | None:
        return getattr(self.history, "completed_decision_id", None)

    @property
    def id(self) -> int | None:
        return self.event.get("event_id")

    def decide_abort(self) -> TaskFailureContext:
        self.decision = self.Decision.abort
        return self

    def decide_ignore(self) -> TaskFailureContext:
        self.decision = self.Decision.ignore
        return self

    def decide_cancel(self) -> TaskFailureContext:
        self.decision = self.Decision.cancel
        return self

    def decide_retry(self, retry_wait_timeout: float | None = 0) -> TaskFailureContext:
        self.decision = self.Decision.retry_later if retry_wait_timeout else self.Decision.retry_now
        self.retry_wait_timeout = retry_wait_timeout
        return self

    def decide_handled(self, a_task: Any, future: Future | None = None) -> TaskFailureContext:
        """The hook dealt with it: `future` (a task it submitted, say) stands for the failed task;
        None schedules the failed task again."""
        self.a_task = a_task
        self.future = future
        self.decision = self.Decision.handled
        return self


def _known_class(name: Any) -> type[BaseException] | None:
    """The exception class named `name` if it is a builtin or its module is already imported: the
    decider never imports a module because a failure's details name it."""
    if not isinstance(name, str):
        return None
    module_name, _, attr = name.rpartition(".")
    owner: Any = sys.modules.get(module_name) if module_name else builtins
    cls = getattr(owner, attr, None) if owner is not None else None
    return cls if isinstance(cls, type) and issubclass(cls, BaseException) else None


__all__ = ["FailedActivityTask", "TaskFailureContext"]
