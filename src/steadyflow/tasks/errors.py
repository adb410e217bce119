"""Errors of the task queues; all but `HandlerError` are `SteadyflowError`s (one-line CLI errors)."""

from __future__ import annotations

from ..errors import ConfigError, SteadyflowError


class TaskQueueError(SteadyflowError):
    """A task queue could not do what was asked (unreachable, bad response, missing driver)."""


class MissingDependency(ConfigError):
    """A backend needs a package that is not installed; the message names the pip command."""


class BadMessage(TaskQueueError):
    """A received message cannot be a task: not JSON, no task name, kwargs not an object.

    Such a message goes to the dead-letter queue with this error's text as the reason.
    """


class UnknownTaskName(TaskQueueError):
    """A message names a task that no `@task` in the worker registers."""


class ReceiptExpired(TaskQueueError):
    """The message was redelivered to another consumer: this receipt can no longer change or delete it."""


class HandlerError(Exception):
    """`run()` failed in its child process with an exception that could not be sent back as is.

    Also raised when the child process died without reporting (killed, segfault, `os._exit`).
    `error_type` is the original class name and `child_traceback` the traceback text, when known.
    An `Exception`, so the handler's `__exit__` suppresses it like any failure of `run()`.
    """

    def __init__(self, message: str, error_type: str | None = None, child_traceback: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type
        self.child_traceback = child_traceback

    def __reduce__(self):  # keep the extra fields when pickled
        return (type(self), (str(self), self.error_type, self.child_traceback))


__all__ = [
    "BadMessage",
    "HandlerError",
    "MissingDependency",
    "ReceiptExpired",
    "TaskQueueError",
    "UnknownTaskName",
]
