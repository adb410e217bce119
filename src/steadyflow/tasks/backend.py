"""What `TaskManager` needs from a queue: the contract every backend (SQS, SQL, local) fulfils.

Messages are duck-typed on boto3's `sqs.Message` resource, because that is what sqstaskmaster's
users hold in their handlers: `.body`, `.attributes` (SQS system attributes as strings, e.g.
`ApproximateReceiveCount`), `.message_attributes`, `.message_id`, `.receipt_handle`,
`change_visibility(VisibilityTimeout=seconds)` and `delete()`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DEAD_LETTER_SUFFIX = "-dead-letter"
REASON_ATTRIBUTE = "dead_letter_reason"
SOURCE_ATTRIBUTE = "source_queue"


@dataclass(frozen=True)
class DeadLetter:
    """One message in a dead-letter queue, as `steadyflow tasks dead-letters list` shows it."""

    message_id: str
    body: str
    reason: str
    receive_count: int | None = None
    source_queue: str | None = None
    dead_lettered_at: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


class Backend(ABC):
    """A queue of task messages with visibility timeouts, plus its dead-letter queue.

    `queue` is the SQS-shaped object sqstaskmaster exposed as `TaskManager.queue` (a boto3
    `Queue`, a `LocalQueue`, or a `SQLQueue`).
    """

    queue: Any
    supports_priority = False
    supports_limits = False
    """True when the queue enforces concurrency and rate limits (database queues; never SQS)."""
    max_delay: float | None = None
    """The longest `delay` a message may have (SQS: 900 seconds), None for no limit."""

    @abstractmethod
    def send(self, body: str, message_attributes: dict[str, Any], *, delay: float = 0, priority: int = 0) -> dict[str, Any]:
        """Enqueue one message; returns at least `{"MessageId": ...}` (SQS's `SendMessage` response)."""

    def send_many(self, bodies: list[str], message_attributes: dict[str, Any], *, delay: float = 0,
                  priority: int = 0) -> list[str]:
        """Enqueue several messages (batched where the queue allows); returns their ids in order."""
        return [self.send(b, message_attributes, delay=delay, priority=priority)["MessageId"] for b in bodies]

    def delete_many(self, messages: list[Any]) -> list[tuple[Any, BaseException]]:
        """Delete received messages (batched where the queue allows); returns those that failed, with why."""
        failures: list[tuple[Any, BaseException]] = []
        for message in messages:
            try:
                message.delete()
            except Exception as exc:  # noqa: BLE001 - reported to the caller
                failures.append((message, exc))
        return failures

    def delete_handles(self, handles: list[tuple[str, str]]) -> int:
        """Delete messages by `(message_id, receipt_handle)` (for a consumer that died); returns how many."""
        return 0

    def release_handles(self, handles: list[tuple[str, str]]) -> int:
        """Make messages visible again at once, by `(message_id, receipt_handle)`; returns how many."""
        return 0

    def release_claim(self, base: str) -> int:
        """Make visible again what one receive that a dead consumer made claimed (database queues)."""
        return 0

    @abstractmethod
    def receive(
        self, *, max_messages: int, wait_time: float, visibility_timeout: float, stop: Callable[[], bool] | None = None
    ) -> list[Any]:
        """Up to `max_messages` messages, each hidden from other consumers for `visibility_timeout`.

        Waits up to `wait_time` seconds for the first one (returns early when `stop()` turns true).
        """

    @abstractmethod
    def dead_letter(self, message: Any, reason: str) -> None:
        """Move a received message to the dead-letter queue with a reason (at-least-once)."""

    @abstractmethod
    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The messages in the dead-letter queue, oldest first, at most `limit`."""

    @abstractmethod
    def retry_dead_letters(self, message_ids: list[str] | None = None) -> int:
        """Move dead letters (all, or those ids) back to the queue as new messages; returns how many."""

    @abstractmethod
    def purge_dead_letters(self) -> int:
        """Delete every dead letter; returns how many there were (approximate on SQS)."""

    @abstractmethod
    def attributes(self) -> dict[str, Any]:
        """Queue attributes in SQS's spelling (`ApproximateNumberOfMessages`, ...)."""

    @abstractmethod
    def purge(self) -> None:
        """Delete every message of the queue (not of its dead-letter queue)."""

    def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release connections; the backend may not be used afterwards."""


def receive_count(message: Any) -> int:
    """How many times the message was received, including this time (0 when unknown)."""
    try:
        return int((message.attributes or {}).get("ApproximateReceiveCount", 0))
    except (TypeError, ValueError):
        return 0


def string_attribute(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}
