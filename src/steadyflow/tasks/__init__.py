"""Task queues without workflows: sqstaskmaster's API on SQS, SQLite and PostgreSQL.

`from sqstaskmaster.task_manager import TaskManager` becomes
`from steadyflow.tasks.task_manager import TaskManager` (or `from steadyflow.tasks import ...`);
the module names `task_manager`, `message_handler` and `local` mirror sqstaskmaster's, so a
migration is `s/sqstaskmaster/steadyflow.tasks/` on the import lines. See docs/tasks.md.
"""

from __future__ import annotations

from .backend import DeadLetter
from .errors import (
    BadMessage,
    HandlerError,
    MissingDependency,
    ReceiptExpired,
    TaskQueueError,
    UnknownTaskName,
)
from .local import LocalMessage, LocalQueue
from .message_handler import MessageHandler
from .registry import Task, TaskOptions, task
from .task_manager import MessageId, TaskManager

__all__ = [
    "BadMessage",
    "DeadLetter",
    "HandlerError",
    "LocalMessage",
    "LocalQueue",
    "MessageHandler",
    "MessageId",
    "MissingDependency",
    "ReceiptExpired",
    "Task",
    "TaskManager",
    "TaskOptions",
    "TaskQueueError",
    "UnknownTaskName",
    "task",
]
