"""What only the SQLite engine promises: one file shared by processes, atomic writes, clear errors.

The contract itself is checked by `tests/conformance/` against every engine, this one included.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from steadyflow import history as h
from steadyflow.decisions import (
    CancelTimer,
    CompleteWorkflowExecution,
    RecordMarker,
    ScheduleActivityTask,
    StartTimer,
)
from steadyflow.engines import open_engine
from steadyflow.engines.memory import MemoryEngine
from steadyflow.engines.sqlite import SCHEMA_VERSION, SQLiteEngine
from steadyflow.errors import ConfigError, EngineError, EngineUnavailable, UnknownTask

TABLES = ("steadyflow_meta", "steadyflow_executions", "steadyflow_events", "steadyflow_activity_tasks")
TABLES += ("steadyflow_timers",)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def db(tmp_path) -> str:
    return str(tmp_path / "steadyflow.db")


def act(activity_id: str, **kw) -> ScheduleActivityTask:
    return ScheduleActivityTask(activity_id, "work", "1", "workers", json.dumps([activity_id]), **kw)


def dump(path: str) -> dict[str, list[tuple]]:
    """Every row of every table, read through a connection of our own."""
    conn = sqlite3.connect(path)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in TABLES}
    finally:
        conn.close()


def start_with_decision(engine) -> str:
    """Start wf-1 and lease its first decision task; return the token."""
    engine.start_execution("wf-1", "Flow", "1", "deciders", None)
    return engine.poll_decision_task("deciders", "decider").token


# -- the file ------------------------------------------------------------------------------------


def test_the_database_is_in_wal_mode_with_a_busy_timeout(db):
    engine = SQLiteEngine(db)
    conn = engine._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    engine.close()
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # kept in the file
    raw.close()


def test_synchronous_full_can_be_chosen_and_nonsense_is_refused(db):
    engine = SQLiteEngine(db, synchronous="full")
    assert engine._conn().execute("PRAGMA synchronous").fetchone()[0] == 2
    engine.close()
    with pytest.raises(ConfigError):
        SQLiteEngine(db, synchronous="sometimes")


def test_a_new_file_gets_the_schema_version_and_marker(db):
    SQLiteEngine(db).close()
    conn = sqlite3.connect(db)
    meta = dict(conn.execute("SELECT key, value FROM steadyflow_meta"))
    conn.close()
    assert meta == {"schema_version": str(SCHEMA_VERSION), "application": "steadyflow"}
    assert all(rows == [] for t, rows in dump(db).items() if t != "steadyflow_meta")


def test_open_engine_selects_sqlite_by_url(tmp_path):
    path = tmp_path / "by-url.db"
    engine = open_engine(f"sqlite:///{path}")
    assert isinstance(engine, SQLiteEngine) and path.exists()
    engine.close()


def test_random_bytes_are_not_a_sqlite_database(tmp_path):
    path = tmp_path / "noise.db"
    path.write_bytes(os.urandom(8192))
    with pytest.raises(EngineUnavailable) as info:
        SQLiteEngine(str(path))
    message = str(info.value)
    assert message.startswith(f"{path} is not a SQLite database") and "\n" not in message


def test_a_foreign_sqlite_database_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(EngineError) as info:
        SQLiteEngine(str(path))
    assert not isinstance(info.value, EngineUnavailable)
    message = str(info.value)
    assert (
        message.startswith(f"{path} is not a steadyflow database")
        and "users" in message
        and "\n" not in message
    )
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["users"]
    conn.close()


def test_a_newer_schema_version_is_refused(db):
    SQLiteEngine(db).close()
    conn = sqlite3.connect(db)
    conn.execute(
        "UPDATE steadyflow_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
    )
    conn.commit()
    conn.close()
    with pytest.raises(EngineError, match="newer") as info:
        SQLiteEngine(db)
    assert db in str(info.value) and "\n" not in str(info.value)


def test_a_missing_directory_is_a_clear_error(tmp_path):
    path = tmp_path / "no" / "such" / "dir" / "x.db"
    with pytest.raises(EngineUnavailable, match="does not exist") as info:
        SQLiteEngine(str(path))
    assert str(path) in str(info.value)
    assert not (tmp_path / "no").exists()


def test_close_closes_the_connections(db):
    engine = SQLiteEngine(db)
    conn = engine._conn()
    engine.close()
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")


def test_connections_of_threads_that_ended_are_closed(db):
    engine = SQLiteEngine(db)
    for _ in range(3):
        threads = [threading.Thread(target=engine.next_due) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(engine._conns) <= 11  # the main thread's and at most one batch still to be pruned
    thread = threading.Thread(target=engine.next_due)
    thread.start()
    thread.join()
    assert len(engine._conns) == 2
    engine.close()
    assert engine._conns == []


# -- transactions --------------------------------------------------------------------------------


def test_a_decision_that_fails_midway_leaves_nothing_behind(db, monkeypatch):
    engine = SQLiteEngine(db)
    token = start_with_decision(engine)
    before = dump(db)
    history = engine.get_history("wf-1")
    original = engine._apply_decision
    calls = []

    def fail_on_third(conn, execution, decision, completed, now):
        calls.append(decision)
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        return original(conn, execution, decision, completed, now)

    monkeypatch.setattr(engine, "_apply_decision", fail_on_third)
    decisions = [act("a1"), StartTimer("t", 5), RecordMarker("m"), act("a2")]
    with pytest.raises(RuntimeError, match="disk on fire"):
        engine.complete_decision_task(token, decisions)
    assert len(calls) == 3  # two decisions were applied (and rolled back) before the failure
    assert dump(db) == before
    assert engine.get_history("wf-1") == history
    assert engine.list_activity_tasks("wf-1") == [] and engine.poll_activity_task("workers") is None

    monkeypatch.undo()
    engine.complete_decision_task(token, decisions)  # the lease survived the rollback
    assert [e.event_type for e in engine.get_history("wf-1")[3:]] == [
        h.DECISION_TASK_COMPLETED, h.ACTIVITY_TASK_SCHEDULED, h.TIMER_STARTED, h.MARKER_RECORDED,
        h.ACTIVITY_TASK_SCHEDULED,
    ]  # fmt: skip
    engine.close()


def test_idle_polls_and_fire_due_never_take_the_write_lock(db):
    engine = SQLiteEngine(db)
    token = start_with_decision(engine)
    engine.complete_decision_task(token, [StartTimer("later", 3600)])
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process is writing
    try:
        assert engine.fire_due() == 0
        assert engine.poll_decision_task("deciders") is None
        assert engine.poll_activity_task("workers") is None
        assert engine.next_due() is not None
        assert len(engine.get_history("wf-1")) == 5
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        engine.close()


def test_reopening_the_file_sees_the_same_state(db):
    clock = Clock()
    first = SQLiteEngine(db, clock=clock)
    token = start_with_decision(first)
    first.complete_decision_task(token, [act("a1", heartbeat_timeout=60), StartTimer("t", 30)])
    task = first.poll_activity_task("workers", "w")
    first.heartbeat_activity_task(task.token, "half")
    history, info, tasks = (
        first.get_history("wf-1"),
        first.describe_execution("wf-1"),
        first.list_activity_tasks("wf-1"),
    )
    first.close()

    second = SQLiteEngine(db, clock=clock)
    assert second.get_history("wf-1") == history
    assert second.describe_execution("wf-1") == info
    assert second.list_activity_tasks("wf-1") == tasks
    assert second.next_due() == clock() + 30
    second.complete_activity_task(task.token, "done")  # a lease survives a restart
    clock.advance(30)
    assert second.fire_due() == 1
    assert [e.event_type for e in second.get_history("wf-1")[-3:]] == [
        h.ACTIVITY_TASK_COMPLETED, h.DECISION_TASK_SCHEDULED, h.TIMER_FIRED,
    ]  # fmt: skip
    second.close()


def test_two_engines_racing_to_complete_one_task_record_it_once(db):
    engines = [SQLiteEngine(db) for _ in range(4)]
    token = start_with_decision(engines[0])
    engines[0].complete_decision_task(token, [act("a1")])
    task = engines[1].poll_activity_task("workers")
    outcomes: list[str] = []
    barrier = threading.Barrier(len(engines))

    def complete(engine):
        barrier.wait()
        try:
            engine.complete_activity_task(task.token, "result")
            outcomes.append("ok")
        except UnknownTask:
            outcomes.append("unknown")

    threads = [threading.Thread(target=complete, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["ok", "unknown", "unknown", "unknown"]
    types = [e.event_type for e in engines[2].get_history("wf-1")]
    assert types.count(h.ACTIVITY_TASK_COMPLETED) == 1
    for engine in engines:
        engine.close()


# -- several processes ---------------------------------------------------------------------------


def _worker(path: str, identity: str, barrier, results) -> None:
    """A worker process: poll and complete activity tasks until none come for half a second."""
    engine = SQLiteEngine(path)
    barrier.wait()
    got = []
    while (task := engine.poll_activity_task("workers", identity, wait=0.5)) is not None:
        engine.complete_activity_task(task.token, json.dumps(identity))
        got.append(task.activity_id)
        time.sleep(0.001)  # a moment of "work", so that one process cannot take every task at once
    engine.close()
    results.put((identity, got))


def test_processes_sharing_one_file_hand_out_each_task_once(db):
    count, workers = 300, 4
    engine = SQLiteEngine(db)
    token = start_with_decision(engine)
    engine.complete_decision_task(token, [act(f"a{i}") for i in range(count)])
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(db, f"w{i}", barrier, results)) for i in range(workers)]
    for p in procs:
        p.start()
    got = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0

    claimed = [a for ids in got.values() for a in ids]
    assert sorted(claimed) == sorted(f"a{i}" for i in range(count))  # each exactly once
    assert sum(1 for ids in got.values() if ids) >= 2, {k: len(v) for k, v in got.items()}  # shared work
    events = engine.get_history("wf-1")
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))
    started = {e.event_id: e for e in events if e.event_type == h.ACTIVITY_TASK_STARTED}
    completed = [e for e in events if e.event_type == h.ACTIVITY_TASK_COMPLETED]
    assert len(started) == len(completed) == count
    assert len({e.attributes["scheduledEventId"] for e in completed}) == count
    for e in completed:  # recorded once, by the worker that held the lease
        assert (
            json.loads(e.attributes["result"])
            == started[e.attributes["startedEventId"]].attributes["identity"]
        )
    assert [e.event_type for e in events].count(h.DECISION_TASK_SCHEDULED) == 2
    assert engine.list_activity_tasks("wf-1") == []
    engine.close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def _forked_child(engine: SQLiteEngine, results) -> None:
    task = engine.poll_activity_task("workers", "child")
    engine.complete_activity_task(task.token, "from child")
    results.put(task.activity_id)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_a_forked_child_opens_its_own_connection(db):
    engine = SQLiteEngine(db)
    token = start_with_decision(engine)
    engine.complete_decision_task(token, [act("a1")])
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    child = ctx.Process(target=_forked_child, args=(engine, results))
    child.start()
    assert results.get(timeout=30) == "a1"
    child.join(30)
    assert child.exitcode == 0
    assert engine.get_history("wf-1")[-2].attributes["result"] == "from child"
    engine.close()


# -- the same behaviour as the reference engine --------------------------------------------------


def _no_run_id(attributes: dict) -> dict:
    """Run ids are random: compare everything else."""
    return {k: v for k, v in attributes.items() if k != "runId"}


def _scenario(engine, clock) -> list:
    """Drive an engine through most of the contract; return everything observable but ids and tokens."""
    seen: list = []
    engine.start_execution("wf-1", "Flow", "1", "deciders", '{"x": 1}', tags=["t"], decision_timeout=5)
    engine.start_execution("wf-2", "Flow", "1", "deciders", None)
    d1 = engine.poll_decision_task("deciders", "decider")
    engine.complete_decision_task(d1.token, [
        act("a1", heartbeat_timeout=10, start_to_close_timeout=30), act("a2", priority=2, schedule_to_start_timeout=3),
        act("a3", schedule_to_close_timeout=20), StartTimer("t1", 4), StartTimer("t1", 1), CancelTimer("nope"),
        RecordMarker("m", "details"),
    ], "ctx")  # fmt: skip
    clock.advance(1)
    engine.signal_execution("wf-1", None, "sig", "payload")
    first = engine.poll_activity_task("workers", "w1")
    seen.append((first.activity_id, first.scheduled_event_id, first.started_event_id))
    seen.append(engine.heartbeat_activity_task(first.token, "hb"))
    d2 = engine.poll_decision_task("deciders", "decider")  # never answered: its lease runs out
    seen.append((d2.workflow_id, [(e.event_id, e.event_type, _no_run_id(e.attributes)) for e in d2.history]))
    second = engine.poll_activity_task("workers", "w2")
    clock.advance(3)
    seen.append(engine.fire_due())
    engine.fail_activity_task(first.token, "Boom", "trace")
    d3 = engine.poll_decision_task("deciders")
    engine.fail_decision_task(d3.token, "bug", "tb")
    seen.append((engine.next_due(), engine.list_activity_tasks("wf-1")))
    clock.advance(15)
    seen.append(engine.fire_due())
    with pytest.raises(UnknownTask):
        engine.complete_activity_task(second.token, "late")
    d4 = engine.poll_decision_task("deciders")
    engine.complete_decision_task(d4.token, [CompleteWorkflowExecution("done")])
    engine.terminate_execution("wf-2", reason="stop", details="now")
    for wid in ("wf-1", "wf-2"):
        info = engine.describe_execution(wid)
        seen.append({k: v for k, v in vars(info).items() if k != "run_id"})
        seen.append([(e.event_id, e.event_type, e.timestamp, _no_run_id(e.attributes)) for e in engine.get_history(wid)])
    seen.append([i.workflow_id for i in engine.list_executions()])
    seen.append(engine.next_due())
    return seen


def test_it_records_exactly_what_the_memory_engine_records(db):
    memory_clock, sqlite_clock = Clock(), Clock()
    expected = _scenario(MemoryEngine(clock=memory_clock), memory_clock)
    engine = SQLiteEngine(db, clock=sqlite_clock)
    assert _scenario(engine, sqlite_clock) == expected
    engine.close()


# -- steadyflow db ---------------------------------------------------------------------------------


def _db_cli(*args: str, cwd) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    env.pop("STEADYFLOW_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "steadyflow", *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )


@pytest.mark.slow
def test_db_status_and_upgrade_on_a_sqlite_file(tmp_path):
    missing = _db_cli("db", "status", cwd=tmp_path)
    assert missing.returncode == 1 and "state: missing" in missing.stdout
    if (tmp_path / "steadyflow.db").exists():  # status created no table
        conn = sqlite3.connect(tmp_path / "steadyflow.db")
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
        conn.close()
    upgraded = _db_cli("db", "upgrade", cwd=tmp_path)
    assert upgraded.returncode == 0 and f"-> {SCHEMA_VERSION}" in upgraded.stdout, upgraded.stderr
    again = _db_cli("db", "upgrade", cwd=tmp_path)
    assert again.returncode == 0 and "up to date" in again.stdout
    status = _db_cli("db", "status", "--format", "json", cwd=tmp_path)
    assert status.returncode == 0 and json.loads(status.stdout)[0]["schema version"] == SCHEMA_VERSION
    conn = sqlite3.connect(tmp_path / "steadyflow.db")
    conn.execute("UPDATE steadyflow_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    conn.close()
    newer = _db_cli("db", "upgrade", cwd=tmp_path)
    assert newer.returncode == 1 and "Traceback" not in newer.stderr
    assert newer.stderr.strip().splitlines() == [newer.stderr.strip()] and "newer than this steadyflow" in newer.stderr
