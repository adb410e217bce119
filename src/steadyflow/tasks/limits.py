"""Limits on a database task queue: how many of its messages are handled at once (in all, and per
key) and how fast they may be received. The queue enforces them when it hands a message out (see
`sqllimits.py`), so they hold however many consumers, processes and hosts read the queue.

The parsing and validation are the workflow task lists' (`steadyflow.engines.limits`): the same
rate strings (`"100/m"`, `"5/10s"`), the same refusal of a limit of 0, the same token bucket.
SQS cannot enforce any of this (it hands a message to whoever asks), so SQS queues refuse limits.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..engines.limits import TaskListLimits, parse_rate
from ..errors import ConfigError

_KEY_ARGUMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class QueueLimits:
    """The limits of one queue; `key` names the task argument whose value is the per-key key."""

    queue: str
    concurrency: int | None = None
    rate_count: int | None = None
    rate_period: float | None = None
    per_key: int | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        self.task_list_limits()  # the task lists' validation, so both refuse the same values
        if self.concurrency is None and self.rate_count is None and self.per_key is None:
            raise ConfigError("give at least one of concurrency, rate, per_key")
        if self.key is not None and (not isinstance(self.key, str) or not _KEY_ARGUMENT.match(self.key)):
            raise ConfigError(f"key must name a task argument (letters, digits, _), not {self.key!r}")
        if self.key is not None and self.per_key is None:
            raise ConfigError("key names the argument of a per-key limit: give per_key too")

    @classmethod
    def parse(cls, queue: str, concurrency: int | None = None, rate: str | None = None,
              per_key: int | None = None, key: str | None = None) -> QueueLimits:
        """From the spellings users write (`rate="100/m"`); `ConfigError` for anything wrong."""
        count, period = parse_rate(rate) if rate is not None else (None, None)
        return cls(queue, concurrency, count, period, per_key, key)

    def task_list_limits(self) -> TaskListLimits:
        """The same limits as a task list's (what `engines.limits.refill` reads)."""
        return TaskListLimits(self.queue, self.concurrency, self.rate_count, self.rate_period, self.per_key)

    @property
    def interval(self) -> float | None:
        return self.task_list_limits().interval

    @property
    def rate(self) -> str | None:
        return self.task_list_limits().rate

    def key_of(self, explicit: str | None, body: str) -> str | None:
        """The per-key key of a message: the one given at submit, else its `key` argument's value."""
        if explicit is not None:
            return explicit
        if self.key is None:
            return None
        try:
            kwargs = json.loads(body).get("kwargs")
        except (ValueError, AttributeError):
            return None
        if not isinstance(kwargs, dict) or kwargs.get(self.key) is None:
            return None
        return key_text(kwargs[self.key])


def key_text(value: Any) -> str:
    """A key as stored: a string as it is, anything else as its JSON (`7` and `"7"` are one key)."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:MAX_KEY_LENGTH]


def check_limit_key(value: Any) -> str | None:
    """A key given at submit (`limit_key=`): None, or a non-empty value that becomes a string."""
    if value is None:
        return None
    text = key_text(value)
    if not text:
        raise ConfigError("limit_key must not be empty")
    return text
