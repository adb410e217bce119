"""What only the PostgreSQL engine promises: a schema of its own, claims that never collide across
processes, wake-ups by NOTIFY, surviving lost connections, migrations, and errors without secrets.

The contract itself is checked by `tests/conformance/` against every engine, this one included.
Every test here needs a server (`tests/pg.py`): skipped without one, failed without one on CI.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from steadyflow import history as h
from steadyflow.decisions import ScheduleActivityTask, StartTimer
from steadyflow.engines import open_engine, sql_schema
from steadyflow.engines.sqlite import SQLiteEngine
from steadyflow.errors import ConfigError, EngineError, EngineUnavailable, UnknownTask
from tests import pg

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "pa55-w0rd-never-shown"
TABLES = {"steadyflow_meta", "steadyflow_executions", "steadyflow_events", "steadyflow_activity_tasks"}
TABLES |= {"steadyflow_timers", "steadyflow_blobs", "steadyflow_state_data", "steadyflow_schedules", "steadyflow_limits"}
TABLES |= {"steadyflow_search_attributes", "steadyflow_search_types"}


@pytest.fixture
def engine(pg_schema):
    from steadyflow.engines.postgres import PostgresEngine

    eng = PostgresEngine(pg_schema.url)
    yield eng
    eng.close()


def act(activity_id: str, task_list: str = "workers", **kw) -> ScheduleActivityTask:
    return ScheduleActivityTask(activity_id, "work", "1", task_list, json.dumps([activity_id]), **kw)


def start_with_activities(engine, count: int, wid: str = "wf-1", **kw) -> None:
    engine.start_execution(wid, "Flow", "1", "deciders", None)
    task = engine.poll_decision_task("deciders", "decider")
    engine.complete_decision_task(task.token, [act(f"a{i}", **kw) for i in range(count)])


def tables_in(schema: str) -> set[str]:
    with pg.admin() as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        )
        return {r[0] for r in rows}


def with_password(url: str, user: str = "postgres") -> str:
    """`url` with `user` and `PASSWORD` (the test server trusts everyone, so any password works)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{user}:{PASSWORD}@{rest.rpartition('@')[2]}"


def wait_listening(engine) -> None:
    """Wait until a poll of `engine` has started its listener and the listener is connected."""
    deadline = time.monotonic() + 60
    while engine._listener is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine._listener is not None and engine._listener.healthy.wait(60)


# -- the schema ----------------------------------------------------------------------------------


def test_the_engine_creates_its_schema_named_in_the_url(pg_schema):
    assert tables_in(pg_schema.name) == set()
    engine = open_engine(pg_schema.url.replace("postgresql://", "postgres://"))
    engine.start_execution("wf-1", "Flow", "1", "deciders", None)
    engine.close()
    assert tables_in(pg_schema.name) == TABLES
    with pg.admin() as conn:
        meta = dict(conn.execute(f'SELECT key, value FROM "{pg_schema.name}".steadyflow_meta').fetchall())
        count = conn.execute(f'SELECT count(*) FROM "{pg_schema.name}".steadyflow_events').fetchone()[0]
    assert meta == {"schema_version": str(sql_schema.SCHEMA_VERSION), "application": "steadyflow"}
    assert count == 2


def test_the_schema_may_come_from_the_environment(pg_schema, monkeypatch):
    monkeypatch.setenv("STEADYFLOW_PG_SCHEMA", pg_schema.name)
    engine = open_engine(pg.server_url())
    assert engine.schema == pg_schema.name
    engine.close()
    assert tables_in(pg_schema.name) == TABLES


def test_a_foreign_schema_is_refused_and_left_alone(pg_schema):
    with pg.admin() as conn:
        conn.execute(f'CREATE SCHEMA "{pg_schema.name}"')
        conn.execute(f'CREATE TABLE "{pg_schema.name}".users (id int)')
    with pytest.raises(EngineError) as info:
        open_engine(pg_schema.url)
    message = str(info.value)
    assert "is not a steadyflow database" in message and "users" in message and pg_schema.name in message
    assert tables_in(pg_schema.name) == {"users"}


def test_libpq_options_in_the_url_reach_the_server(pg_schema):
    url = pg_schema.url + "&options=-c%20synchronous_commit%3Doff&application_name=my%20app"
    engine = open_engine(url)
    settings = engine._run(
        lambda conn: conn.execute(
            "SELECT current_setting('synchronous_commit'), current_setting('application_name')"
        ).fetchone(),
        write=False,
    )
    assert tuple(settings) == ("off", "my app")
    engine.close()


def test_bad_schema_names_and_options_are_config_errors(pg_schema):
    base = pg.server_url()
    for query in ("schema=no-dashes", "schema=" + "x" * 64, "pool_size=lots", "reconnect_timeout=-1"):
        with pytest.raises(ConfigError):
            open_engine(pg.with_schema(base, pg_schema.name) + "&" + query)


# -- migrations ----------------------------------------------------------------------------------

NEXT = sql_schema.Migration(
    sql_schema.SCHEMA_VERSION + 1, "a test column", ("ALTER TABLE steadyflow_timers ADD COLUMN note TEXT",)
)


def _sql_engine(kind: str, pg_schema, tmp_path, prepare: bool = True):
    if kind == "sqlite":
        return SQLiteEngine(str(tmp_path / "steadyflow.db"), prepare=prepare)
    return open_engine(pg_schema.url, prepare=prepare)


@pytest.fixture(params=["sqlite", "postgres"])
def kind(request):
    return request.param


def test_an_older_schema_is_refused_until_db_upgrade_applies_the_missing_migrations(
    kind, request, tmp_path, monkeypatch
):
    schema = request.getfixturevalue("pg_schema") if kind == "postgres" else None
    _sql_engine(kind, schema, tmp_path).close()  # version 1, as released
    monkeypatch.setattr(sql_schema, "MIGRATIONS", (*sql_schema.MIGRATIONS, NEXT))
    monkeypatch.setattr(sql_schema, "SCHEMA_VERSION", NEXT.version)
    with pytest.raises(EngineError, match="older") as info:
        _sql_engine(kind, schema, tmp_path)
    assert "steadyflow db upgrade" in str(info.value) and "\n" not in str(info.value)
    engine = _sql_engine(kind, schema, tmp_path, prepare=False)
    assert engine.schema_version() == NEXT.version - 1
    assert engine.upgrade() == [NEXT.version]
    assert engine.upgrade() == []  # idempotent
    engine.close()
    engine = _sql_engine(kind, schema, tmp_path)
    assert engine.schema_version() == NEXT.version
    assert engine._run(lambda conn: conn.execute("SELECT note FROM steadyflow_timers").fetchall()) == []
    engine.close()


def test_a_migration_that_fails_leaves_the_schema_as_it_was(kind, request, tmp_path, monkeypatch):
    schema = request.getfixturevalue("pg_schema") if kind == "postgres" else None
    _sql_engine(kind, schema, tmp_path).close()
    broken = sql_schema.Migration(
        NEXT.version, "broken", (NEXT.statements[0], "ALTER TABLE no_such_table ADD COLUMN x TEXT")
    )
    monkeypatch.setattr(sql_schema, "MIGRATIONS", (*sql_schema.MIGRATIONS, broken))
    monkeypatch.setattr(sql_schema, "SCHEMA_VERSION", broken.version)
    engine = _sql_engine(kind, schema, tmp_path, prepare=False)
    with pytest.raises(Exception, match="no_such_table"):
        engine.upgrade()
    assert engine.schema_version() == broken.version - 1
    with pytest.raises(Exception, match="note"):  # the first statement was rolled back too
        engine._run(lambda conn: conn.execute("SELECT note FROM steadyflow_timers").fetchall())
    engine.close()


def test_a_newer_schema_is_refused_with_one_line_that_names_it(pg_schema):
    open_engine(pg_schema.url).close()
    with pg.admin() as conn:
        conn.execute(
            f"UPDATE \"{pg_schema.name}\".steadyflow_meta SET value = %s WHERE key = 'schema_version'",
            (str(sql_schema.SCHEMA_VERSION + 1),),
        )
    with pytest.raises(EngineError, match="newer") as info:
        open_engine(with_password(pg_schema.url))
    message = str(info.value)
    assert pg_schema.name in message and PASSWORD not in message and "\n" not in message


def sf(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    full_env.pop("STEADYFLOW_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "steadyflow", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def test_db_upgrade_from_several_hosts_at_once_creates_the_schema_once(pg_schema):
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "steadyflow", "--engine", pg_schema.url, "db", "upgrade"],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    applied = [out for out, _ in outputs if "applied 1" in out]
    assert len(applied) == 1, outputs
    assert sum("up to date" in out for out, _ in outputs) == 3
    status = sf("--engine", pg_schema.url, "db", "status", "--format", "json")
    assert status.returncode == 0, status.stderr
    row = json.loads(status.stdout)[0]
    assert row["schema version"] == sql_schema.SCHEMA_VERSION and row["state"] == "up to date"


def test_db_status_exits_1_until_the_schema_exists(pg_schema):
    status = sf("--engine", pg_schema.url, "db", "status")
    assert status.returncode == 1 and "missing" in status.stdout
    assert tables_in(pg_schema.name) == set()  # status never creates anything


# -- errors: one line, never the password ----------------------------------------------------------


def assert_one_line_error(proc: subprocess.CompletedProcess, *texts: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: ") and "Traceback" not in proc.stderr
    for text in texts:
        assert text in lines[0], lines[0]
    assert PASSWORD not in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    "url, problem",
    [
        (f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/test", "Connection refused"),
        (f"postgresql://postgres:{PASSWORD}@no-such-host.invalid:5432/test", "no-such-host.invalid"),
        (f"postgresql://postgres:{PASSWORD}@127.0.0.1:notaport/test", "port"),
        (f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/test?sslmode=sometimes", "sslmode"),
        (f"postgres-ql://postgres:{PASSWORD}@127.0.0.1:5432/test", "unknown engine URL scheme"),
        (f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/test?password={PASSWORD}&nope=1", "nope"),
    ],
)
def test_bad_urls_give_one_line_without_the_password(url, problem):
    proc = sf("--engine", url, "workflow", "list")
    assert_one_line_error(proc, problem)


def test_wrong_credentials_and_unknown_databases_give_one_line_without_the_password(pg_schema):
    server = pg.server_url()
    proc = sf("--engine", with_password(server, user="no_such_role_sf"), "workflow", "list")
    assert_one_line_error(proc, "no_such_role_sf", "cannot connect to PostgreSQL")
    missing = with_password(server).rpartition("/")[0] + "/no_such_database_sf"
    proc = sf("--engine", missing, "workflow", "list")
    assert_one_line_error(proc, "no_such_database_sf")


def test_a_newer_schema_gives_one_line_in_the_cli(pg_schema):
    open_engine(pg_schema.url).close()
    with pg.admin() as conn:
        conn.execute(
            f"UPDATE \"{pg_schema.name}\".steadyflow_meta SET value = '999' WHERE key = 'schema_version'"
        )
    url = with_password(pg_schema.url)
    for args in (("workflow", "list"), ("db", "upgrade")):
        proc = sf("--engine", url, *args)
        assert_one_line_error(proc, "schema version 999, newer than this steadyflow", pg_schema.name)


def test_without_psycopg_the_error_says_what_to_install(monkeypatch):
    for name in ("psycopg", "psycopg_pool", "steadyflow.engines.postgres"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` now raises ImportError
    with pytest.raises(EngineUnavailable, match=r"pip install 'steadyflow\[postgres\]'"):
        open_engine("postgresql://localhost/db")


# -- concurrency ---------------------------------------------------------------------------------


def test_engines_racing_to_complete_one_task_record_it_once(pg_schema):
    engines = [open_engine(pg_schema.url) for _ in range(4)]
    start_with_activities(engines[0], 1)
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
        t.join(60)
    assert sorted(outcomes) == ["ok", "unknown", "unknown", "unknown"]
    types = [e.event_type for e in engines[2].get_history("wf-1")]
    assert types.count(h.ACTIVITY_TASK_COMPLETED) == 1
    for engine in engines:
        engine.close()


def _worker(url: str, identity: str, barrier, results) -> None:
    """A worker process: poll and complete activity tasks until none come for a second."""
    engine = open_engine(url)
    barrier.wait()
    got = []
    while (task := engine.poll_activity_task("workers", identity, wait=1.0)) is not None:
        engine.complete_activity_task(task.token, json.dumps(identity))
        got.append(task.activity_id)
    engine.close()
    results.put((identity, got))


def test_processes_claiming_with_skip_locked_get_each_task_once(pg_schema):
    count, workers = 300, 4
    engine = open_engine(pg_schema.url)
    for w in range(3):  # several executions, so that claims also spread over execution rows
        start_with_activities(engine, count // 3, wid=f"wf-{w}")
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(pg_schema.url, f"w{i}", barrier, results)) for i in range(workers)
    ]
    for p in procs:
        p.start()
    got = dict(results.get(timeout=180) for _ in procs)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    claimed = [a for ids in got.values() for a in ids]
    assert len(claimed) == count and len(set(claimed)) == count // 3  # each (execution, id) once
    for w in range(3):
        events = engine.get_history(f"wf-{w}")
        assert [e.event_id for e in events] == list(range(1, len(events) + 1))
        started = {e.event_id: e for e in events if e.event_type == h.ACTIVITY_TASK_STARTED}
        completed = [e for e in events if e.event_type == h.ACTIVITY_TASK_COMPLETED]
        assert len(started) == len(completed) == count // 3
        assert len({e.attributes["scheduledEventId"] for e in completed}) == count // 3
        for e in completed:  # recorded once, by the worker that held the lease
            identity = started[e.attributes["startedEventId"]].attributes["identity"]
            assert json.loads(e.attributes["result"]) == identity
    engine.close()


def test_concurrent_fire_due_fires_each_timer_and_timeout_once(pg_schema):
    clock_now = [1_700_000_000.0]
    engines = [open_engine(pg_schema.url, clock=lambda: clock_now[0]) for _ in range(4)]
    for w in range(40):
        engines[0].start_execution(f"wf-{w}", "Flow", "1", "deciders", None)
        task = engines[0].poll_decision_task("deciders")
        decisions = [StartTimer(f"t{i}", 5) for i in range(5)] + [
            act(f"a{i}", schedule_to_start_timeout=5) for i in range(2)
        ]
        engines[0].complete_decision_task(task.token, decisions)
    clock_now[0] += 10
    fired: list[int] = []
    barrier = threading.Barrier(len(engines))

    def fire(engine):
        barrier.wait()
        fired.append(engine.fire_due())

    threads = [threading.Thread(target=fire, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    fired += [e.fire_due() for e in engines]  # anything a busy execution row made them skip
    assert sum(fired) == 40 * 7
    for w in range(40):
        types = [e.event_type for e in engines[1].get_history(f"wf-{w}")]
        assert types.count(h.TIMER_FIRED) == 5 and types.count(h.ACTIVITY_TASK_TIMED_OUT) == 2
        assert types.count(h.DECISION_TASK_SCHEDULED) == 2
    assert all(e.fire_due() == 0 for e in engines)
    for engine in engines:
        engine.close()


# -- wake-ups and lost connections ---------------------------------------------------------------


def _poll_in_thread(engine, task_list: str, wait: float) -> tuple[threading.Thread, dict]:
    found: dict = {}

    def poll():
        found["task"] = engine.poll_activity_task(task_list, "waiter", wait=wait)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    return thread, found


def test_an_idle_poll_is_woken_by_notify_from_another_process(pg_schema, monkeypatch):
    from steadyflow.engines import postgres

    # Without NOTIFY the poll could only find the task by looking again, which it now never does
    # within its wait: so a task found at all was announced by the notification.
    monkeypatch.setattr(postgres, "FALLBACK_POLL", 10_000.0)
    waiter, producer = open_engine(pg_schema.url), open_engine(pg_schema.url)
    thread, found = _poll_in_thread(waiter, "workers", wait=600)
    wait_listening(waiter)
    start_with_activities(producer, 1)  # committed by another engine: no in-process wake-up
    thread.join(120)  # long before the poll would look again by itself
    assert found.get("task") is not None and found["task"].activity_id == "a0"
    waiter.close()
    producer.close()


def test_a_lost_connection_is_replaced_and_the_listener_comes_back(pg_schema, monkeypatch):
    from steadyflow.engines import postgres

    monkeypatch.setattr(postgres, "FALLBACK_POLL", 10_000.0)
    waiter, producer = open_engine(pg_schema.url), open_engine(pg_schema.url)
    start_with_activities(producer, 2)
    first = waiter.poll_activity_task("workers", "w")
    thread, found = _poll_in_thread(waiter, "later", wait=600)
    wait_listening(waiter)
    assert pg.terminate_backends(pg_schema.name) >= 3  # pools of both engines and the listener
    waiter.heartbeat_activity_task(first.token, "still here")  # reconnects transparently
    waiter.complete_activity_task(first.token, "done")
    producer.start_execution("wf-2", "Flow", "1", "deciders", None)
    task = producer.poll_decision_task("deciders")
    while task is not None and task.workflow_id != "wf-2":
        task = producer.poll_decision_task("deciders")
    producer.complete_decision_task(task.token, [act("late", task_list="later")])
    thread.join(120)
    assert found.get("task") is not None and found["task"].activity_id == "late"
    types = [e.event_type for e in producer.get_history("wf-1")]
    assert types.count(h.ACTIVITY_TASK_COMPLETED) == 1
    waiter.close()
    producer.close()


def test_start_execution_is_not_doubled_by_a_retry_after_its_commit(engine, monkeypatch):
    calls = []
    original = engine._run

    def flaky(fn, write=True, retry_after_commit=True):
        result = original(fn, write, retry_after_commit)
        if not calls:  # the first commit went through, then the connection "dropped"
            calls.append(1)
            return original(fn, write, retry_after_commit)
        return result

    monkeypatch.setattr(engine, "_run", flaky)
    run_id = engine.start_execution("wf-1", "Flow", "1", "deciders", None)
    monkeypatch.undo()
    assert engine.describe_execution("wf-1").run_id == run_id
    assert [i.workflow_id for i in engine.list_executions()] == ["wf-1"]


def _forked_child(engine, results) -> None:
    task = engine.poll_activity_task("workers", "child")
    engine.complete_activity_task(task.token, "from child")
    results.put(task.activity_id)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_a_forked_child_opens_its_own_pool(engine):
    start_with_activities(engine, 1)
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    child = ctx.Process(target=_forked_child, args=(engine, results))
    child.start()
    assert results.get(timeout=60) == "a0"
    child.join(60)
    assert child.exitcode == 0
    assert engine.get_history("wf-1")[-2].attributes["result"] == "from child"
