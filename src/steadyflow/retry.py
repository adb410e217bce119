"""Retry policy: Temporal's field names, applied by the decider so every attempt is in the history."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass


def _seconds(value: float | _dt.timedelta | None) -> float | None:
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    return None if value is None else float(value)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how soon a failed or timed-out activity is tried again.

    `maximum_attempts` counts the first try: 1 means no retry, 0 means no limit. Intervals accept
    seconds or `timedelta`. `non_retryable_error_types` names exception classes (bare or dotted)
    that fail at once.
    """

    initial_interval: float = 1.0
    backoff_coefficient: float = 2.0
    maximum_interval: float | None = None
    maximum_attempts: int = 0
    non_retryable_error_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "initial_interval", _seconds(self.initial_interval) or 0.0)
        object.__setattr__(self, "maximum_interval", _seconds(self.maximum_interval))
        object.__setattr__(self, "non_retryable_error_types", tuple(self.non_retryable_error_types))
        if self.maximum_attempts < 0:
            raise ValueError("maximum_attempts must be >= 0 (0 means unlimited)")
        if self.backoff_coefficient < 1:
            raise ValueError("backoff_coefficient must be >= 1")
        if self.initial_interval < 0:
            raise ValueError("initial_interval must be >= 0")

    @classmethod
    def from_retry_count(cls, retry: int) -> RetryPolicy:
        """simpleflow's `retry=N`: N more tries, at once, as simpleflow reschedules immediately."""
        if retry < 0:
            raise ValueError("retry must be >= 0")
        return cls(initial_interval=0.0, maximum_attempts=retry + 1)

    def should_retry(self, attempt: int, error_type: str | None) -> bool:
        """Whether a failure of try number `attempt` (1-based) gets another try."""
        if self.maximum_attempts and attempt >= self.maximum_attempts:
            return False
        if error_type:
            short = error_type.rsplit(".", 1)[-1]
            for name in self.non_retryable_error_types:
                if name in (error_type, short):
                    return False
        return True

    def delay(self, attempt: int) -> float:
        """Seconds to wait after try number `attempt` failed, before the next one."""
        delay = self.initial_interval * self.backoff_coefficient ** max(attempt - 1, 0)
        ceiling = self.maximum_interval if self.maximum_interval is not None else 100 * self.initial_interval
        return min(delay, ceiling)


NO_RETRY = RetryPolicy(initial_interval=0.0, maximum_attempts=1)
