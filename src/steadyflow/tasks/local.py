"""`LocalQueue`: sqstaskmaster's in-memory queue for tests of producer and consumer code.

As in sqstaskmaster, one queue per URL in a class-level dict shared by every `LocalQueue` of the
process; messages come out in FIFO order; `change_visibility()` and `delete()` are no-ops, and
there is no redelivery, no visibility timeout and no retry. It checks what a message says, not
how a system behaves: use a SQLite URL for that (it is as easy to set up and behaves like SQS).

Two additions: a message sent from inside a handler's `run()` (which runs in a child process)
is forwarded to the consuming process, so chains of tasks still work in tests; and a
`-dead-letter` queue per URL receives the messages the consumer refuses, with the reason.
"""

from __future__ import annotations

import logging
import queue
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from .backend import (
    DEAD_LETTER_SUFFIX,
    REASON_ATTRIBUTE,
    SOURCE_ATTRIBUTE,
    Backend,
    DeadLetter,
    string_attribute,
)

logger = logging.getLogger("steadyflow.tasks")

_forward: Callable[[str, dict[str, Any]], None] | None = None
"""Set in a handler's child process: sends `send_message` calls to the consuming process."""


class LocalMessage:
    """The parts of boto3's `sqs.Message` that handlers use; visibility and deletion are no-ops."""

    def __init__(self, body: str, attributes: dict[str, Any], message_attributes: dict[str, Any]) -> None:
        self._body = body
        self._attributes = attributes
        self._message_attributes = message_attributes
        self.message_id = str(uuid.uuid4())
        self.receipt_handle = self.message_id

    @property
    def attributes(self) -> dict[str, Any]:
        return self._attributes

    @property
    def body(self) -> str:
        return self._body

    @property
    def message_attributes(self) -> dict[str, Any]:
        return self._message_attributes

    def change_visibility(self, *args: Any, **kwargs: Any) -> None:
        logger.debug("LocalMessage.change_visibility is a no-op (%s, %s)", args, kwargs)

    def delete(self) -> None:
        logger.debug("LocalMessage.delete is a no-op")

    def __str__(self) -> str:
        return f"LocalMessage(body: {self.body}; attributes: {self.attributes}; message_attributes: {self.message_attributes})"


class LocalQueue:
    """The parts of boto3's SQS `Queue` that `TaskManager` uses, in memory, FIFO, per URL."""

    local_queues: defaultdict[str, queue.Queue] = defaultdict(queue.Queue)

    def __init__(self, url: str) -> None:
        self.url = url
        self._queue = self.local_queues[url]

    def load(self) -> None:
        logger.debug("LocalQueue.load is a no-op")

    @property
    def queue(self) -> queue.Queue:
        return self._queue

    @property
    def attributes(self) -> dict[str, Any]:
        return {
            "QueueArn": "LocalQueue replacing: " + self.url,
            "ApproximateNumberOfMessages": self.queue.qsize(),
            "ApproximateNumberOfMessagesNotVisible": 0,
            "ApproximateNumberOfMessagesDelayed": 0,
            "FifoQueue": True,
            "ContentBasedDeduplication": False,
        }

    def purge(self) -> None:
        while True:
            try:
                self.queue.get_nowait()
            except queue.Empty:
                break

    def send_message(self, **kwargs: Any) -> dict[str, Any]:
        """Takes `MessageBody` and optional `MessageAttributes`, as boto3's `Queue.send_message`."""
        if _forward is not None:
            _forward(self.url, kwargs)
            return {"MD5OfMessageBody": "Fake LocalMessage MD5 Body", "MessageId": str(uuid.uuid4())}
        message = LocalMessage(kwargs["MessageBody"], {}, kwargs.get("MessageAttributes", {}))
        logger.debug("Sending message: %s", message)
        self.queue.put_nowait(message)
        return {"MD5OfMessageBody": "Fake LocalMessage MD5 Body", "MessageId": message.message_id}

    def receive_messages(self, **kwargs: Any) -> list[LocalMessage]:
        """Honours `WaitTimeSeconds` and `MaxNumberOfMessages`; ignores `VisibilityTimeout`."""
        time_remaining = kwargs.get("WaitTimeSeconds", 20)
        result: list[LocalMessage] = []
        tic = time.perf_counter()
        for _ in range(kwargs.get("MaxNumberOfMessages", 1)):
            time_remaining = max(0, time_remaining - time.perf_counter() + tic)
            try:
                result.append(self.queue.get(block=True, timeout=time_remaining))
            except queue.Empty:
                break
        return result


class LocalBackend(Backend):
    """`TaskManager(url, queue_constructor=LocalQueue)`."""

    def __init__(self, url: str, queue_constructor: type[LocalQueue] = LocalQueue) -> None:
        self.url = url
        self.queue = queue_constructor(url)
        self._dead = queue_constructor(url + DEAD_LETTER_SUFFIX)

    def send(self, body: str, message_attributes: dict[str, Any], *, delay: float = 0, priority: int = 0) -> dict[str, Any]:
        if delay:
            logger.debug("LocalQueue ignores delay=%s", delay)
        return self.queue.send_message(MessageBody=body, MessageAttributes=message_attributes)

    def receive(self, *, max_messages, wait_time, visibility_timeout, stop=None) -> list[Any]:
        return self.queue.receive_messages(
            AttributeNames=["All"], MaxNumberOfMessages=max_messages, WaitTimeSeconds=wait_time,
            VisibilityTimeout=visibility_timeout,
        )

    def dead_letter(self, message: Any, reason: str) -> None:
        attributes = dict(getattr(message, "message_attributes", None) or {})
        attributes[REASON_ATTRIBUTE] = string_attribute(reason)
        attributes[SOURCE_ATTRIBUTE] = string_attribute(self.url)
        self._dead.send_message(MessageBody=message.body, MessageAttributes=attributes)

    def _snapshot(self) -> list[LocalMessage]:
        with self._dead.queue.mutex:
            return list(self._dead.queue.queue)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = []
        for message in self._snapshot()[:limit]:
            attrs = message.message_attributes or {}
            rows.append(DeadLetter(
                message_id=message.message_id, body=message.body,
                reason=attrs.get(REASON_ATTRIBUTE, {}).get("StringValue", ""),
                source_queue=attrs.get(SOURCE_ATTRIBUTE, {}).get("StringValue"), attributes=attrs,
            ))
        return rows

    def retry_dead_letters(self, message_ids: list[str] | None = None) -> int:
        wanted = None if message_ids is None else set(message_ids)
        keep, moved = [], 0
        while True:
            try:
                message = self._dead.queue.get_nowait()
            except queue.Empty:
                break
            if wanted is None or message.message_id in wanted:
                attrs = {k: v for k, v in (message.message_attributes or {}).items()
                         if k not in (REASON_ATTRIBUTE, SOURCE_ATTRIBUTE)}
                self.queue.send_message(MessageBody=message.body, MessageAttributes=attrs)
                moved += 1
            else:
                keep.append(message)
        for message in keep:
            self._dead.queue.put_nowait(message)
        return moved

    def purge_dead_letters(self) -> int:
        count = self._dead.queue.qsize()
        self._dead.purge()
        return count

    def attributes(self) -> dict[str, Any]:
        self.queue.load()
        return self.queue.attributes

    def purge(self) -> None:
        self.queue.purge()
