"""Fixtures of the chaos suite; its options and summary hooks are in `plugin.py`."""

from __future__ import annotations

import random

import pytest


@pytest.fixture
def chaos_seed(request: pytest.FixtureRequest) -> int:
    seed = request.config.getoption("--chaos-seed", None)
    return seed if seed is not None else random.SystemRandom().randrange(1, 10**6)


@pytest.fixture
def chaos_size(request: pytest.FixtureRequest) -> int:
    size = request.config.getoption("--chaos-size", 1) or 1
    if size < 1:
        raise pytest.UsageError(f"--chaos-size must be >= 1, got {size}")
    return size


@pytest.fixture
def chaos_report(request: pytest.FixtureRequest):
    """Call it with a run's summary text: it is printed now (-s) and in the terminal summary.

    It travels as a user property of the test's report, so that it reaches the terminal summary
    from an xdist worker too.
    """

    def report(text: str) -> None:
        request.node.user_properties.append(("chaos_summary", text))
        print(text)

    return report
