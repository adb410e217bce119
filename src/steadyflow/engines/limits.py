"""Limits on a task list: how many of its tasks run at once (in all, and per key) and how fast
they may start. The engine enforces them when it hands out a task, so adding workers or hosts
never breaks them.

A rate is a token bucket holding at most two tokens: tasks start evenly spaced (`20/s`: one
every 50 ms) rather than in bursts, and a start that comes a little late (its worker was polling)
is made up by the next one, so over any window the count stays within two tasks of the rate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*([a-z]+)\s*$")


@dataclass(frozen=True)
class TaskListLimits:
    task_list: str
    concurrency: int | None = None
    rate_count: int | None = None
    rate_period: float | None = None
    per_key: int | None = None

    def __post_init__(self) -> None:
        for name in ("concurrency", "per_key", "rate_count"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name.replace('_', ' ')} limit must be a whole number of at least 1, not {value!r}")
        if (self.rate_count is None) != (self.rate_period is None) or (self.rate_period is not None and self.rate_period <= 0):
            raise ConfigError("a rate needs a count and a positive period")

    @property
    def interval(self) -> float | None:
        """Seconds between two starts under the rate limit."""
        if self.rate_count is None or self.rate_period is None:
            return None
        return self.rate_period / self.rate_count

    @property
    def rate(self) -> str | None:
        if self.rate_count is None or self.rate_period is None:
            return None
        return f"{self.rate_count}/{self.rate_period:g}s"


def parse_rate(text: str) -> tuple[int, float]:
    """`"100/m"`, `"20/s"`, `"5/10s"`, `"1000/h"` -> (count, period in seconds)."""
    match = _RATE.match(text.lower())
    if not match or match.group(3) not in _UNITS:
        raise ConfigError(f"malformed rate {text!r} (expected COUNT/UNIT such as 100/m, 20/s, 5/10s; units s, m, h, d)")
    count, multiple, unit = int(match.group(1)), match.group(2), match.group(3)
    period = (float(multiple) if multiple else 1.0) * _UNITS[unit]
    if count < 1 or period <= 0:
        raise ConfigError(f"malformed rate {text!r}: count and period must be positive")
    return count, period


#: Tokens a rate bucket holds at most (see the module's docstring).
BUCKET = 2.0


def refill(tokens: float, refreshed: float, now: float, limits: TaskListLimits) -> float:
    """The bucket's tokens at `now` (at most `BUCKET`)."""
    interval = limits.interval
    if interval is None:
        return BUCKET
    return min(BUCKET, tokens + max(now - refreshed, 0.0) / interval)
