"""Round trips per hot operation on PostgreSQL, pinned (issue 9): counted statements, not time.

The counts come from `bench/pg_roundtrips.py` (`python3 -m bench.pg_roundtrips` prints them). Each
bound is what the engine reaches today: an extra round trip in a hot path fails here, and a saving
should lower the bound. The write transactions run in pipeline mode with one Sync each, so the
error paths of that (rollback, the first error raised, no warning logged) are checked too.
"""

from __future__ import annotations

import logging

import psycopg
import pytest

# The counter hooks psycopg's pipeline internals: a psycopg without them cannot count, which says
# nothing about the engine.
pytest.importorskip("psycopg._pipeline_base", reason="this psycopg has no pipeline internals to count with")

from bench.pg_roundtrips import OPERATIONS, Counter, one_round  # noqa: E402
from steadyflow.engines.postgres import PostgresEngine  # noqa: E402
from steadyflow.errors import WorkflowAlreadyStarted  # noqa: E402

#: operation -> (statements, round trips) at most. Statements include the BEGIN and COMMIT of
#: each write transaction; round trips are the waits for the server (see `Counter`).
BOUNDS = {
    "start_execution": (10, 3),
    "poll_decision_task": (9, 4),
    "complete_decision_task (schedule 1 activity)": (10, 2),
    "poll_activity_task": (9, 3),
    "complete_activity_task": (11, 2),
    "fail_activity_task": (11, 2),
    "complete_decision_task (complete workflow)": (13, 3),
    "describe_execution": (2, 2),
    "poll_activity_task (empty)": (1, 1),
}


@pytest.fixture
def engine(pg_schema):
    eng = PostgresEngine(pg_schema.url)
    yield eng
    eng.close()


def test_hot_operations_stay_within_their_round_trips(engine):
    counter = Counter()
    with counter.installed():
        one_round(engine, counter)  # warm-up: pool open, statements prepared
        counts = one_round(engine, counter)
    assert set(counts) == set(OPERATIONS) == set(BOUNDS)
    over = {name: (counts[name], BOUNDS[name]) for name in OPERATIONS if counts[name] > BOUNDS[name]}
    assert not over, f"more (statements, round trips) than pinned, as (counted, bound): {over}"
    # A write is one round trip for its answers at most plus one Sync: completing a task reads
    # one answer (the locked rows) and commits.
    assert counts["complete_activity_task"][1] == 2


def _limits_rows(engine: PostgresEngine) -> int:
    return engine._run(lambda c: c.execute("SELECT count(*) FROM steadyflow_limits").fetchone()[0], write=False)


def _insert_then(engine: PostgresEngine, task_list: str, then):
    def body(conn):
        conn.execute(
            "INSERT INTO steadyflow_limits (task_list, tokens, refreshed) VALUES (%s, 1, 0)", (task_list,)
        )
        return then(conn)

    return engine._run(body)


def test_a_failed_transaction_is_rolled_back_without_warnings(engine, caplog):
    caplog.set_level(logging.WARNING)

    def read_error(conn):
        return conn.execute("SELECT 1 / 0").fetchone()

    def unread_error(conn):
        conn.execute("SELECT 1 / 0")  # its answer is not read: the error comes at the Sync
        return "not committed"

    def python_error(conn):
        raise KeyError("raised by the transaction's body")

    with pytest.raises(psycopg.errors.DivisionByZero):
        _insert_then(engine, "a", read_error)
    with pytest.raises(psycopg.errors.DivisionByZero):
        _insert_then(engine, "b", unread_error)
    with pytest.raises(KeyError):
        _insert_then(engine, "c", python_error)
    assert _limits_rows(engine) == 0  # all three rolled back
    _insert_then(engine, "d", lambda conn: None)  # the pooled connections are clean and usable
    assert _limits_rows(engine) == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_start_execution_twice_names_the_running_run(engine):
    run_id = engine.start_execution("rt-twice", "t", "1", "tl", "[]")
    with pytest.raises(WorkflowAlreadyStarted) as raised:
        engine.start_execution("rt-twice", "t", "1", "tl", "[]")
    assert run_id in str(raised.value)
    info = engine.describe_execution("rt-twice")
    assert (info.run_id, info.status, info.next_event_id) == (run_id, "open", 3)
