"""Shared fixtures: real engines with the real clock, for workflow-level tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from steadyflow.engines import open_engine

ROOT = Path(__file__).resolve().parent.parent
# Spawned worker processes import test activities as `tests.fixtures...` and examples as `examples...`.
for path in (str(ROOT),):
    if path not in sys.path:
        sys.path.insert(0, path)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))

# The chaos suite's --chaos-seed/--chaos-size and its summary, however pytest is started (tests/chaos/plugin.py).
from tests.chaos.plugin import pytest_addoption, pytest_terminal_summary  # noqa: E402,F401


def pytest_collection_modifyitems(items):
    """Long multi-process tests first, so that no test process is left with one of them at the end."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("slow") or item.get_closest_marker("chaos") else 1)


@pytest.fixture(params=["memory", "sqlite"])
def real_engine(request, tmp_path):
    """An engine on the wall clock: workflow tests run on each engine."""
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'steadyflow.db'}"
    engine = open_engine(url)
    yield engine
    engine.close()


@pytest.fixture
def pg_schema():
    """A fresh PostgreSQL schema (`.url`, `.name`) dropped after the test; see `tests/pg.py`.

    Skips when no server answers, and fails instead when `CI=true`.
    """
    from tests import pg

    with pg.fresh_schema() as schema:
        yield schema


@pytest.fixture
def cluster(tmp_path):
    """Decider and worker processes on one SQLite file (`tests/fixtures/cluster.py`), stopped after."""
    from tests.fixtures.cluster import Cluster

    c = Cluster(tmp_path / "steadyflow.db")
    yield c
    c.stop()
