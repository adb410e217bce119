"""The chaos suite's command-line options and the summary it prints at the end of a pytest run.

`tests/conftest.py` imports these hooks, so that they are there however pytest is started: with
xdist, from the directory above, or on `tests/chaos` alone.

    pytest tests/chaos                           # the CI size, a random seed (printed)
    pytest tests/chaos --chaos-seed 1234         # the same storm of faults again
    pytest tests/chaos --chaos-size 5            # five times the executions, a longer storm
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos", "steadyflow chaos suite")
    group.addoption("--chaos-seed", type=int, default=None, help="Seed of the faults (default: random, printed).")
    group.addoption("--chaos-size", type=int, default=1, help="Scale of the workload and the storm (default 1: CI).")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    texts = [
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for key, value in getattr(report, "user_properties", ())
        if key == "chaos_summary"
    ]
    if texts:
        terminalreporter.section("steadyflow chaos summary")
        for text in texts:
            terminalreporter.write_line(text)
