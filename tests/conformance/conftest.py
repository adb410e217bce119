"""Fixtures for the engine conformance suite: every engine, each on a fake clock the test moves.

The `postgres` engine needs a server (see `tests/pg.py`): each test gets a fresh schema, dropped after.
"""

from __future__ import annotations

import threading

import pytest

from steadyflow.engines.base import Engine
from steadyflow.engines.memory import MemoryEngine
from steadyflow.engines.sqlite import SQLiteEngine
from tests import pg

ENGINES = ("memory", "sqlite", "postgres")


class FakeClock:
    """A clock that only moves when told to: `clock.advance(seconds)`."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._now += seconds
            return self._now


def make_engine(name: str, clock: FakeClock, tmp_path, url: str | None = None) -> Engine:
    if name == "memory":
        return MemoryEngine(clock=clock)
    if name == "sqlite":
        return SQLiteEngine(str(tmp_path / "steadyflow.db"), clock=clock)
    if name == "postgres":
        from steadyflow.engines.postgres import PostgresEngine

        return PostgresEngine(url, clock=clock)
    raise ValueError(name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=ENGINES)
def engine(request, clock, tmp_path):
    if request.param == "postgres":
        with pg.fresh_schema() as (url, _schema):
            eng = make_engine("postgres", clock, tmp_path, url)
            yield eng
            eng.close()
        return
    eng = make_engine(request.param, clock, tmp_path)
    yield eng
    eng.close()
