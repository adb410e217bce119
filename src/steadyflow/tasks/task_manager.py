"""`TaskManager`: sqstaskmaster's producer and consumer API, on SQS, SQLite, PostgreSQL or in memory.

    tm = TaskManager("sqlite:///jobs.db?queue=jobs")        # or an SQS URL, or postgresql://...
    tm.submit("MyTask", some="kwarg")                          # -> message id
    for task, kwargs, message in tm.task_generator(sqs_timeout=30):
        with MyHandler(message, sqs_timeout=30, alarm_timeout=25, **kwargs) as handler:
            handler.run()

Deviation from sqstaskmaster, the safe choice: a message that is not a task (not JSON, no task
name, kwargs not an object) is moved to the dead-letter queue with the reason, after `notify()`
and a log line, instead of coming back every visibility timeout forever.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import ConfigError
from . import body as message_body
from .backend import Backend, DeadLetter, string_attribute
from .errors import BadMessage
from .ledger import MessageBook
from .limits import QueueLimits, check_limit_key
from .local import LocalBackend, LocalQueue
from .urls import open_backend, redact

logger = logging.getLogger("steadyflow.tasks")

MAX_WAIT_TIME = 20
MAX_SQS_TIMEOUT = 12 * 60 * 60
_NO_LIMITS = ("this queue cannot enforce limits (SQS hands a message to whoever asks, and an in-memory queue"
              " is one process's): use a sqlite:// or postgresql:// queue for concurrency, rate and per-key limits")


class MessageId(str):
    """The id of a sent message; also answers `["MessageId"]` like the response sqstaskmaster returned."""

    response: dict[str, Any]

    def __new__(cls, response: dict[str, Any]) -> MessageId:
        value = super().__new__(cls, str(response.get("MessageId", "")))
        value.response = dict(response)
        return value

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return self.response[key]
        return str.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return self.response.get(key, default)


class TaskManager:
    """Submits tasks to a queue and yields received ones; the queue is chosen by `sqs_url`.

    Args:
        sqs_url: an SQS queue URL, `sqlite:///FILE.db?queue=NAME` or `postgresql://...?queue=NAME`.
        notify: called as `notify(exception, context=...)` for messages that cannot be read.
        queue_constructor: `LocalQueue` (or a subclass) for an in-memory queue; None otherwise.
        sender_name: the `service_name` message attribute (default `"Unknown sender to: <url>"`).
    """

    def __init__(self, sqs_url: str, notify: Callable[..., Any] | None = None,
                 queue_constructor: type | None = None, sender_name: str | None = None) -> None:
        self.url = sqs_url
        self.sender_name = sender_name
        self._notify = notify
        if queue_constructor is None:
            self.backend: Backend = open_backend(sqs_url)
        elif isinstance(queue_constructor, type) and issubclass(queue_constructor, LocalQueue):
            self.backend = LocalBackend(sqs_url, queue_constructor)
        else:
            raise TypeError(
                f"TaskManager invalid queue_constructor type {queue_constructor}: Options are None for a queue "
                "named by the URL or steadyflow.tasks.LocalQueue"
            )
        self.queue = self.backend.queue
        if hasattr(self.backend, "sqs"):
            self.sqs = self.backend.sqs

    # -- producing ------------------------------------------------------------------------------

    def submit(self, task: str, *, delay: float | None = None, priority: int | None = None,
               limit_key: Any = None, **kwargs: Any) -> MessageId:
        """Send `{"task": task, "kwargs": kwargs}`; returns the message id.

        `delay` (seconds before it can be received; at most 900 on SQS), `priority` (higher is
        received first; SQL queues only) and `limit_key` (the key of the queue's per-key limit,
        instead of the argument the limit names; SQL queues only) are delivery options, not task
        arguments: a task whose arguments use those names is sent with `send(task, {"delay": ...})`.
        """
        return self.send(task, kwargs, delay=delay, priority=priority, limit_key=limit_key)

    def send(self, task: str, kwargs: dict[str, Any], *, delay: float | None = None,
             priority: int | None = None, limit_key: Any = None) -> MessageId:
        """`submit()` with the task's arguments as one dict, so any argument name is allowed."""
        delay, priority = self._check_options(task, delay, priority)
        extra = self._limit_key(limit_key)
        response = self.backend.send(message_body.encode(task, kwargs), self._attributes(), delay=delay,
                                     priority=priority, **extra)
        return MessageId(response)

    def send_many(self, task: str, kwargs_list: list[dict[str, Any]], *, delay: float | None = None,
                  priority: int | None = None, limit_key: Any = None) -> list[str]:
        """Send one message per kwargs dict, in batches (10 per request on SQS); returns the ids."""
        delay, priority = self._check_options(task, delay, priority)
        extra = self._limit_key(limit_key)
        bodies = [message_body.encode(task, kwargs) for kwargs in kwargs_list]
        return self.backend.send_many(bodies, self._attributes(), delay=delay, priority=priority, **extra)

    def _limit_key(self, limit_key: Any) -> dict[str, Any]:
        if limit_key is None:
            return {}
        self._needs_limits()
        return {"limit_key": check_limit_key(limit_key)}

    def _attributes(self) -> dict[str, Any]:
        return {"service_name": string_attribute(self.sender_name or "Unknown sender to: " + self.url)}

    def _check_options(self, task: str, delay: float | None, priority: int | None) -> tuple[float, int]:
        if not isinstance(task, str) or not task:
            raise ConfigError(f"task name must be a non-empty string, not {task!r}")
        delay = float(delay or 0)
        if delay < 0 or (self.backend.max_delay is not None and delay > self.backend.max_delay):
            limit = "" if self.backend.max_delay is None else f" and at most {self.backend.max_delay:g}"
            raise ConfigError(f"delay={delay:g} must be at least 0{limit} seconds on this queue")
        if priority and not self.backend.supports_priority:
            raise ConfigError("this queue has no priorities (SQS): use a separate queue for urgent tasks")
        return delay, int(priority or 0)

    # -- consuming ------------------------------------------------------------------------------

    def notify(self, exception: BaseException, context: dict[str, Any] | None = None) -> None:
        if self._notify:
            self._notify(exception, context=context)

    def task_generator(self, wait_time: float = 20, sqs_timeout: float = 20) -> Iterator[tuple[str, dict[str, Any], Any]]:
        """Yield `(task, kwargs, message)` forever, one message at a time, as sqstaskmaster does.

        Each message is hidden from other consumers for `sqs_timeout` seconds; the handler extends
        that while it works and deletes the message when it succeeds.
        """
        return self.messages(wait_time=wait_time, sqs_timeout=sqs_timeout)

    def messages(self, wait_time: float = 20, sqs_timeout: float = 20, *, batch_size: int = 1,
                 stop: Callable[[], bool] | None = None,
                 book: MessageBook | None = None) -> Iterator[tuple[str, dict[str, Any], Any]]:
        """`task_generator()` with more options: receive `batch_size` (≤ 10) messages per call,
        end when `stop()` turns true (checked between messages), and `book`, where the worker's
        consumer notes what it holds (its pending deletes are sent before a receive that waits)."""
        if 0 > wait_time or wait_time > MAX_WAIT_TIME:
            raise ValueError(f"Invalid polling wait time {wait_time}; must be between 0 and 20")
        if 0 > sqs_timeout or sqs_timeout > MAX_SQS_TIMEOUT:
            raise ValueError(f"Invalid sqs timeout {sqs_timeout} seconds; must be between 0 and 12 hours")
        if not 1 <= batch_size <= 10:
            raise ValueError(f"Invalid batch size {batch_size}; must be between 1 and 10")
        stop = stop or (lambda: False)
        return self._messages(wait_time, sqs_timeout, batch_size, stop, book)

    def _messages(self, wait_time: float, sqs_timeout: float, batch_size: int, stop: Callable[[], bool],
                  book: MessageBook | None) -> Iterator[tuple[str, dict[str, Any], Any]]:
        import time

        while not stop():
            messages = []
            if book is not None and len(book):
                # Deletes are pending: take more work if there is some now (they go out while it runs),
                # else send them before waiting.
                if book.due() > time.monotonic():
                    messages = self.backend.receive(max_messages=batch_size, wait_time=0,
                                                    visibility_timeout=sqs_timeout, stop=stop)
                if not messages:
                    book.flush()
            if not messages:
                messages = self.backend.receive(max_messages=batch_size, wait_time=wait_time,
                                                visibility_timeout=sqs_timeout, stop=stop)
            if book is not None:
                book.received(messages)
            if not messages:
                logger.debug("waiting for work from %s", redact(self.url))
            received = time.monotonic()
            for message in messages:
                if getattr(message, "visible_until", None) is None:
                    try:
                        message.visible_until = received + math.ceil(sqs_timeout)
                    except AttributeError:
                        pass
                try:
                    task, kwargs = message_body.decode(message.body)
                except BadMessage as exc:
                    self.reject(message, exc)
                    if book is not None:
                        book.released(message)
                    continue
                yield task, kwargs, message

    def reject(self, message: Any, error: BaseException, reason: str | None = None) -> bool:
        """Notify, log and dead-letter a message that cannot be handled; True if it was moved."""
        reason = reason or str(error)
        self.notify(error, context={"body": message.body, **(message.attributes or {})})
        logger.error("message %s cannot be handled (%s): moving it to the dead-letter queue",
                     getattr(message, "message_id", "?"), reason)
        try:
            self.backend.dead_letter(message, reason)
        except Exception as exc:  # noqa: BLE001 - it comes back after its visibility timeout instead
            logger.error("could not dead-letter message %s (%s: %s); it will be received again",
                         getattr(message, "message_id", "?"), type(exc).__name__, exc)
            return False
        return True

    # -- limits ---------------------------------------------------------------------------------

    def set_limits(self, concurrency: int | None = None, rate: str | None = None, per_key: int | None = None,
                   key: str | None = None) -> QueueLimits:
        """Limit this queue across every consumer and host (SQLite and PostgreSQL queues).

        `concurrency`: at most this many messages in flight (received and not yet deleted);
        `rate`: at most this many receives per period (`"100/m"`, `"10/s"`, `"5/10s"`);
        `per_key`: at most this many in flight with one key, the value of the task argument `key`
        (or the `limit_key` given at submit). Replaces any earlier limits of the queue.
        """
        limits = QueueLimits.parse(self._needs_limits().queue_name, concurrency, rate, per_key, key)
        self.backend.set_limits(limits)  # type: ignore[attr-defined]
        return limits

    def limits(self) -> QueueLimits | None:
        """This queue's limits (None: none; always None on SQS, which cannot enforce them)."""
        if not self.backend.supports_limits:
            return None
        return self.backend.limits()  # type: ignore[attr-defined]

    def clear_limits(self) -> bool:
        """Remove this queue's limits; False when it had none."""
        return bool(self._needs_limits().clear_limits())

    def _needs_limits(self) -> Any:
        if not self.backend.supports_limits:
            raise ConfigError(f"{redact(self.url)}: {_NO_LIMITS}")
        return self.backend

    # -- queue ----------------------------------------------------------------------------------

    def attributes(self) -> dict[str, Any]:
        return self.backend.attributes()

    def purge(self) -> None:
        self.backend.purge()

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self.backend.dead_letters(limit)

    def retry_dead_letters(self, message_ids: list[str] | None = None) -> int:
        return self.backend.retry_dead_letters(message_ids)

    def purge_dead_letters(self) -> int:
        return self.backend.purge_dead_letters()

    def close(self) -> None:
        self.backend.close()

    def __repr__(self) -> str:
        return f"TaskManager({redact(self.url)!r})"
