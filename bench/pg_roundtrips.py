"""Statements and round trips per engine operation on PostgreSQL (issue 9's round-trip count).

    python3 -m bench.pg_roundtrips [--postgres URL]

Runs each hot operation once on a fresh schema (dropped after) and counts, in the calling thread
only, what psycopg does for it (see `Counter`):

- **statements**: `Connection.execute` calls (each one SQL statement);
- **round trips**: the times the client waits for the server's answer before it goes on; in
  pipeline mode, statements whose answers are not read travel together, so this is the smaller
  figure, and the one latency follows.

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
from psycopg._pipeline_base import BasePipeline  # noqa: E402

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
    """Counts, for one thread, the statements psycopg sends and the round trips they cost.

    A round trip is a point where the client must wait for the server's answer before it goes on:
    a statement outside pipeline mode, and in pipeline mode each Sync (a commit, leaving the
    pipeline) and each flush request (reading an answer before the transaction ends). Counting
    these rather than time or socket reads makes the figure the same on every run.
    """

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.statements = 0
        self.round_trips = 0

    def _mine(self) -> bool:
        return threading.current_thread() is self.thread

    @contextmanager
    def installed(self) -> Iterator[Counter]:
        counter = self
        real_execute = psycopg.Connection.execute
        real_sync, real_fetch = BasePipeline._enqueue_sync, BasePipeline._fetch_gen

        def execute(conn: Any, *args: Any, **kwargs: Any) -> Any:
            if counter._mine():
                counter.statements += 1
                if conn._pipeline is None:
                    counter.round_trips += 1
            return real_execute(conn, *args, **kwargs)

        def enqueue_sync(pipeline: Any) -> None:
            if counter._mine():
                counter.round_trips += 1
            real_sync(pipeline)

        def fetch_gen(pipeline: Any, *, flush: bool) -> Any:
            queue = pipeline.result_queue  # ending in None: the answer a Sync already counted
            if flush and queue and queue[-1] is not None and counter._mine():
                counter.round_trips += 1
            return real_fetch(pipeline, flush=flush)

        psycopg.Connection.execute = execute  # type: ignore[method-assign]
        BasePipeline._enqueue_sync, BasePipeline._fetch_gen = enqueue_sync, fetch_gen  # type: ignore[method-assign]
        try:
            yield self
        finally:
            psycopg.Connection.execute = real_execute  # type: ignore[method-assign]
            BasePipeline._enqueue_sync, BasePipeline._fetch_gen = real_sync, real_fetch  # type: ignore[method-assign]

    def measure(self, fn: Callable[[], Any]) -> tuple[Any, int, int]:
        """`fn()`, and the statements and round trips it took."""
        self.thread, self.statements, self.round_trips = threading.current_thread(), 0, 0
        try:
            result = fn()
        finally:
            self.thread = None
        return result, self.statements, self.round_trips


def one_round(engine: PostgresEngine, counter: Counter) -> dict[str, tuple[int, int]]:
    """Each operation of `OPERATIONS` once, on one new execution: name -> (statements, round_trips)."""
    counts: dict[str, tuple[int, int]] = {}
    task_list = f"rt-{uuid.uuid4().hex[:8]}"

    def step(name: str, fn: Callable[[], Any]) -> Any:
        result, statements, round_trips = counter.measure(fn)
        counts[name] = (statements, round_trips)
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
    print("| operation | statements | round trips |")
    print("|---|---:|---:|")
    for name in OPERATIONS:
        statements, round_trips = counts[name]
        print(f"| {name} | {statements} | {round_trips} |")


if __name__ == "__main__":
    main()
