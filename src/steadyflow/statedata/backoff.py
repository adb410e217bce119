"""Retrying AWS calls the way py2sfn does (exponential back-off, at most 5 tries), minus its one
surprise: py2sfn gives up on every HTTP 4xx, throttling included, although DynamoDB throttles
with a 400. Here throttling is retried like a 5xx, and any other 4xx (a missing table, a type
mismatch, a bad request) fails at once, since trying again cannot fix it.

botocore retries a few times by itself underneath; this outer loop is what keeps a task alive
through a longer throttling episode.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

MAX_TRIES = 5
BASE_DELAY = 0.1
MAX_DELAY = 5.0
#: Error codes AWS sends with a 4xx status that mean "slow down", not "wrong request".
THROTTLING = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
    }
)


def is_retryable(exc: BaseException) -> bool:
    """A botocore `ClientError` that may succeed later: a 5xx, or throttling."""
    response: Any = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    code = response.get("Error", {}).get("Code", "")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return code in THROTTLING or int(status) >= 500


def delay(attempt: int) -> float:
    """Seconds to wait after failed try `attempt` (1-based): full jitter, as the `backoff` package."""
    return random.uniform(0, min(MAX_DELAY, BASE_DELAY * 2 ** (attempt - 1)))


def retrying(call: Callable[[], T], tries: int = MAX_TRIES, sleep: Callable[[float], None] = time.sleep) -> T:
    """`call()`, tried again after a retryable `ClientError` until `tries` tries have failed."""
    from botocore.exceptions import ClientError

    attempt = 1
    while True:
        try:
            return call()
        except ClientError as exc:
            if attempt >= tries or not is_retryable(exc):
                raise
        sleep(delay(attempt))
        attempt += 1


__all__ = ["MAX_TRIES", "THROTTLING", "delay", "is_retryable", "retrying"]
