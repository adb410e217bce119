"""Statements and server waits per engine operation on PostgreSQL (issue 9's round-trip count).

    python3 -m bench.pg_roundtrips [--postgres URL]

Runs each hot operation once on a fresh schema (dropped after) and counts, in the calling thread
only, two things psycopg does for it:

- **statements**: `Connection.execute` calls (each one SQL statement);
- **waits**: `Connection.wait` calls, i.e. how often psycopg hands the socket to the OS to send or
  receive; in pipeline mode several statements share one wait, so this is the round-trip figure.

Warm-up runs first, so that the pool is open, the schema exists and psycopg has prepared what it
prepares. Prints one markdown table; `tests/test_pg_roundtrips.py` pins the same counts.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import psycopg  # noqa: E402

from steadyflow.decisions import CompleteWorkflowExecution, ScheduleActivityTask  # noqa: E402
from steadyflow.engines.postgres import PostgresEngine  # noqa: E402

DEFAULT_POSTGRES = os.environ.get("STEADYFLOW_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"
OPERATIONS = (
    "start_execution",
    "poll_decision_task",
    "complete_decision_task (schedule 1 activity)",
    "poll_activity_task",
    "complete_activity_task",
    "fail_activity_task",
    "complete_decision_task (complete workflow)",
    "describe_execution",
    "poll_activity_task (empty)",
)


class Counter:
    """Counts `execute` and `wait` calls of psycopg connections made by one thread."""

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.statements = 0
        self.waits = 0

    @contextmanager
    def installed(self) -> Iterator[Counter]:
        real_execute, real_wait = psycopg.Connection.execute, psycopg.Connection.wait
        counter = self

        def execute(conn: Any, *args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is counter.thread:
                counter.statements += 1
            return real_execute(conn, *args, **kwargs)

        def wait(conn: Any, *args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is counter.thread:
                counter.waits += 1
            return real_wait(conn, *args, **kwargs)

        psycopg.Connection.execute, psycopg.Connection.wait = execute, wait  # type: ignore[method-assign]
        try:
            yield self
        finally:
            psycopg.Connection.execute, psycopg.Connection.wait = real_execute, real_wait  # type: ignore[method-assign]

    def measure(self, fn: Callable[[], Any]) -> tuple[Any, int, int]:
        """`fn()`, and the statements and waits it took."""
        self.thread, self.statements, self.waits = threading.current_thread(), 0, 0
        try:
            result = fn()
        finally:
            self.thread = None
        return result, self.statements, self.waits


def one_round(engine: PostgresEngine, counter: Counter) -> dict[str, tuple[int, int]]:
    """Each operation of `OPERATIONS` once, on one new execution: name -> (statements, waits)."""
    counts: dict[str, tuple[int, int]] = {}
    task_list = f"rt-{uuid.uuid4().hex[:8]}"

    def step(name: str, fn: Callable[[], Any]) -> Any:
        result, statements, waits = counter.measure(fn)
        counts[name] = (statements, waits)
        return result

    wid = f"rt-{uuid.uuid4().hex[:8]}"
    step(OPERATIONS[0], lambda: engine.start_execution(wid, "rt", "1", task_list, "[]"))
    task = step(OPERATIONS[1], lambda: engine.poll_decision_task(task_list))
    schedule = [ScheduleActivityTask(f"a{i}", "noop", "1", task_list, "[]") for i in (1, 2)]
    step(OPERATIONS[2], lambda: engine.complete_decision_task(task.token, schedule[:1]))
    act = step(OPERATIONS[3], lambda: engine.poll_activity_task(task_list))
    step(OPERATIONS[4], lambda: engine.complete_activity_task(act.token, "1"))
    # A second activity, so that failing one is measured too (claimed without counting).
    task = engine.poll_decision_task(task_list)
    engine.complete_decision_task(task.token, schedule[1:])
    act = engine.poll_activity_task(task_list)
    step(OPERATIONS[5], lambda: engine.fail_activity_task(act.token, "boom"))
    task = engine.poll_decision_task(task_list)
    step(OPERATIONS[6], lambda: engine.complete_decision_task(task.token, [CompleteWorkflowExecution("1")]))
    step(OPERATIONS[7], lambda: engine.describe_execution(wid))
    step(OPERATIONS[8], lambda: engine.poll_activity_task(task_list))
    return counts


@contextmanager
def fresh_engine(url: str) -> Iterator[PostgresEngine]:
    schema = f"sf_rt_{uuid.uuid4().hex[:10]}"
    engine = PostgresEngine(url, schema=schema)
    try:
        yield engine
    finally:
        engine.close()
        with psycopg.connect(engine._conninfo, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(schema)))


def count(url: str, warmup: int = 6) -> dict[str, tuple[int, int]]:
    """The counts of the last of `warmup + 1` rounds on a fresh schema."""
    counter = Counter()
    with fresh_engine(url) as engine, counter.installed():
        for _ in range(warmup):
            one_round(engine, counter)
        return one_round(engine, counter)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="PostgreSQL server URL")
    args = parser.parse_args()
    counts = count(args.postgres)
    print("| operation | statements | waits |")
    print("|---|---:|---:|")
    for name in OPERATIONS:
        statements, waits = counts[name]
        print(f"| {name} | {statements} | {waits} |")


if __name__ == "__main__":
    main()
