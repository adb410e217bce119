"""The SQLite engine: the contract kept in one database file that many processes share.

Every write is one short `BEGIN IMMEDIATE` ... `COMMIT` transaction (the file is in WAL mode, so
readers never wait for the writer); nothing sleeps while it holds the write lock. Each thread has
its own connection, reopened after a fork. A poll fires what is due, looks for a task with a plain
read, and only then takes the write lock to claim it, backing off between tries.

The SQL lives in `SCHEMA` and `SQL`, written in the subset SQLite and PostgreSQL share; the few
dialect-specific bits are in `SQLITE_DIALECT`, so a PostgreSQL engine can reuse the same shape.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .. import history as h
from ..decisions import (
    CLOSE_DECISIONS,
    CancelTimer,
    CompleteWorkflowExecution,
    Decision,
    FailWorkflowExecution,
    RecordMarker,
    ScheduleActivityTask,
    StartTimer,
)
from ..errors import (
    ConfigError,
    EngineError,
    EngineUnavailable,
    ExecutionClosed,
    UnknownExecution,
    UnknownTask,
    WorkflowAlreadyStarted,
)
from .base import (
    DEFAULT_DECISION_TIMEOUT,
    OPEN,
    ActivityTask,
    DecisionTask,
    Engine,
    ExecutionInfo,
    activity_deadline,
    decision_retry_delay,
)

SCHEMA_VERSION = 1
APPLICATION = "steadyflow"

#: What differs between dialects. A PostgreSQL engine supplies its own values and turns the `?`
#: placeholders of `SQL` into `%s`.
SQLITE_DIALECT = {
    "pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "real": "REAL",
    "begin_write": "BEGIN IMMEDIATE",
    "begin_read": "BEGIN",
    "list_tables": "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite!_%' ESCAPE '!'",
}

#: `CREATE` statements, run in one transaction when a database is new; `{pk}`, `{real}` from the dialect.
SCHEMA = (
    "CREATE TABLE steadyflow_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE steadyflow_executions (
        id {pk}, workflow_id TEXT NOT NULL, run_id TEXT NOT NULL UNIQUE, workflow_type TEXT NOT NULL,
        version TEXT NOT NULL, task_list TEXT NOT NULL, status TEXT NOT NULL, input TEXT, tags TEXT NOT NULL,
        decision_timeout {real} NOT NULL, start_time {real} NOT NULL, close_time {real}, result TEXT,
        close_reason TEXT, close_details TEXT, last_event_id INTEGER NOT NULL DEFAULT 0,
        decision_scheduled_id INTEGER, decision_visible_at {real}, decision_started_id INTEGER,
        decision_started_from INTEGER, decision_lease {real}, decision_token TEXT,
        decision_failures INTEGER NOT NULL DEFAULT 0)""",
    "CREATE UNIQUE INDEX steadyflow_executions_open ON steadyflow_executions (workflow_id) WHERE status = 'open'",
    "CREATE INDEX steadyflow_executions_workflow ON steadyflow_executions (workflow_id, id)",
    "CREATE INDEX steadyflow_executions_status ON steadyflow_executions (status, id)",
    "CREATE INDEX steadyflow_executions_type ON steadyflow_executions (workflow_type, id)",
    """CREATE INDEX steadyflow_executions_ready ON steadyflow_executions (task_list, decision_visible_at, id)
        WHERE decision_scheduled_id IS NOT NULL AND decision_started_id IS NULL""",
    """CREATE INDEX steadyflow_executions_lease ON steadyflow_executions (decision_lease)
        WHERE decision_lease IS NOT NULL""",
    """CREATE TABLE steadyflow_events (
        execution INTEGER NOT NULL REFERENCES steadyflow_executions (id), event_id INTEGER NOT NULL,
        event_type TEXT NOT NULL, timestamp {real} NOT NULL, attributes TEXT NOT NULL,
        PRIMARY KEY (execution, event_id))""",
    """CREATE TABLE steadyflow_activity_tasks (
        id {pk}, execution INTEGER NOT NULL REFERENCES steadyflow_executions (id),
        scheduled_event_id INTEGER NOT NULL, activity_id TEXT NOT NULL, name TEXT NOT NULL,
        version TEXT NOT NULL, task_list TEXT NOT NULL, input TEXT, control TEXT, priority INTEGER NOT NULL,
        schedule_to_start_timeout {real}, start_to_close_timeout {real}, schedule_to_close_timeout {real},
        heartbeat_timeout {real}, scheduled_at {real} NOT NULL, token TEXT, started_event_id INTEGER,
        started_at {real}, last_heartbeat {real}, heartbeat_details TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0, deadline {real}, deadline_kind TEXT,
        UNIQUE (execution, scheduled_event_id))""",
    """CREATE INDEX steadyflow_activity_ready ON steadyflow_activity_tasks (task_list, priority DESC, id)
        WHERE token IS NULL""",
    "CREATE UNIQUE INDEX steadyflow_activity_token ON steadyflow_activity_tasks (token) WHERE token IS NOT NULL",
    "CREATE INDEX steadyflow_activity_deadline ON steadyflow_activity_tasks (deadline) WHERE deadline IS NOT NULL",
    """CREATE TABLE steadyflow_timers (
        id {pk}, execution INTEGER NOT NULL REFERENCES steadyflow_executions (id), timer_id TEXT NOT NULL,
        started_event_id INTEGER NOT NULL, fire_at {real} NOT NULL, UNIQUE (execution, timer_id))""",
    "CREATE INDEX steadyflow_timers_fire_at ON steadyflow_timers (fire_at, id)",
)

_LEASE = "decision_started_id = ?, decision_started_from = ?, decision_lease = ?, decision_token = ?"
_DUE = (
    "SELECT (SELECT MIN(fire_at) FROM steadyflow_timers),"
    " (SELECT MIN(deadline) FROM steadyflow_activity_tasks WHERE deadline IS NOT NULL),"
    " (SELECT MIN(decision_lease) FROM steadyflow_executions WHERE decision_lease IS NOT NULL)"
)
_READY_DECISION = "decision_scheduled_id IS NOT NULL AND decision_started_id IS NULL"

#: Every statement, parameterised with `?`.
SQL = {
    "meta": "SELECT key, value FROM steadyflow_meta",
    "insert_meta": "INSERT INTO steadyflow_meta (key, value) VALUES (?, ?)",
    # executions and events
    "open_run": "SELECT run_id FROM steadyflow_executions WHERE workflow_id = ? AND status = 'open'",
    "insert_execution": """INSERT INTO steadyflow_executions (workflow_id, run_id, workflow_type, version,
        task_list, input, tags, decision_timeout, start_time, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'open')""",
    "by_run": "SELECT * FROM steadyflow_executions WHERE run_id = ?",
    "by_id": "SELECT * FROM steadyflow_executions WHERE id = ?",
    "latest": "SELECT * FROM steadyflow_executions WHERE workflow_id = ? ORDER BY id DESC LIMIT 1",
    "list": "SELECT * FROM steadyflow_executions {where} ORDER BY id DESC LIMIT ? OFFSET ?",
    "bump_event_id": "UPDATE steadyflow_executions SET last_event_id = last_event_id + 1 WHERE id = ?",
    "last_event_id": "SELECT last_event_id FROM steadyflow_executions WHERE id = ?",
    "insert_event": """INSERT INTO steadyflow_events (execution, event_id, event_type, timestamp, attributes)
        VALUES (?, ?, ?, ?, ?)""",
    "events": """SELECT event_id, event_type, timestamp, attributes FROM steadyflow_events
        WHERE execution = ? AND event_id > ? ORDER BY event_id""",
    "close": f"""UPDATE steadyflow_executions SET status = ?, close_time = ?, result = ?, close_reason = ?,
        close_details = ?, decision_scheduled_id = NULL, {_LEASE} WHERE id = ?""",
    "drop_activities": "DELETE FROM steadyflow_activity_tasks WHERE execution = ?",
    "drop_timers": "DELETE FROM steadyflow_timers WHERE execution = ?",
    # decision tasks
    "schedule_decision": """UPDATE steadyflow_executions SET decision_scheduled_id = ?, decision_visible_at = ?
        WHERE id = ?""",
    "delay_decision": "UPDATE steadyflow_executions SET decision_visible_at = ? WHERE id = ?",
    "ready_decision": f"""SELECT * FROM steadyflow_executions WHERE task_list = ? AND {_READY_DECISION}
        AND decision_visible_at <= ? ORDER BY decision_visible_at, id LIMIT 1""",
    "start_decision": f"UPDATE steadyflow_executions SET decision_scheduled_id = NULL, {_LEASE} WHERE id = ?",
    "end_decision": f"UPDATE steadyflow_executions SET {_LEASE}, decision_failures = ? WHERE id = ?",
    "expired_decisions": """SELECT * FROM steadyflow_executions
        WHERE decision_lease IS NOT NULL AND decision_lease <= ? ORDER BY id""",
    # activity tasks
    "insert_activity": """INSERT INTO steadyflow_activity_tasks (execution, scheduled_event_id, activity_id,
        name, version, task_list, input, control, priority, schedule_to_start_timeout, start_to_close_timeout,
        schedule_to_close_timeout, heartbeat_timeout, scheduled_at, deadline, deadline_kind)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
    "peek_activity": "SELECT id FROM steadyflow_activity_tasks WHERE task_list = ? AND token IS NULL LIMIT 1",
    "ready_activity": """SELECT a.*, e.workflow_id, e.run_id FROM steadyflow_activity_tasks a
        JOIN steadyflow_executions e ON e.id = a.execution WHERE a.task_list = ? AND a.token IS NULL
        ORDER BY a.priority DESC, a.id LIMIT 1""",
    "start_activity": """UPDATE steadyflow_activity_tasks SET token = ?, started_event_id = ?, started_at = ?,
        deadline = ?, deadline_kind = ? WHERE id = ?""",
    "activity_by_token": "SELECT * FROM steadyflow_activity_tasks WHERE token = ?",
    "heartbeat": """UPDATE steadyflow_activity_tasks SET last_heartbeat = ?, heartbeat_details = ?, deadline = ?,
        deadline_kind = ? WHERE id = ?""",
    "delete_activity": "DELETE FROM steadyflow_activity_tasks WHERE id = ?",
    "activities_of": "SELECT * FROM steadyflow_activity_tasks WHERE execution = ? ORDER BY id",
    "expired_activities": """SELECT * FROM steadyflow_activity_tasks
        WHERE deadline IS NOT NULL AND deadline <= ? ORDER BY id""",
    # timers and time
    "timer": "SELECT id, started_event_id FROM steadyflow_timers WHERE execution = ? AND timer_id = ?",
    "insert_timer": """INSERT INTO steadyflow_timers (execution, timer_id, started_event_id, fire_at)
        VALUES (?, ?, ?, ?)""",
    "delete_timer": "DELETE FROM steadyflow_timers WHERE id = ?",
    "due_timers": "SELECT * FROM steadyflow_timers WHERE fire_at <= ? ORDER BY fire_at, id",
    "due": _DUE,
    "next_due": f"{_DUE}, (SELECT MIN(decision_visible_at) FROM steadyflow_executions WHERE {_READY_DECISION})",
}

_KNOWN_DECISIONS = (ScheduleActivityTask, StartTimer, CancelTimer, RecordMarker, *CLOSE_DECISIONS)
_UNAVAILABLE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_CANTOPEN")
_UNAVAILABLE += ("SQLITE_READONLY", "SQLITE_NOTADB", "SQLITE_CORRUPT")
#: Python before 3.11 gives no `sqlite_errorname`: the messages SQLite uses for those codes.
_MESSAGES = {
    "database is locked": "SQLITE_BUSY",
    "database table is locked": "SQLITE_LOCKED",
    "disk I/O error": "SQLITE_IOERR",
    "database or disk is full": "SQLITE_FULL",
    "unable to open database file": "SQLITE_CANTOPEN",
    "attempt to write a readonly database": "SQLITE_READONLY",
    "file is not a database": "SQLITE_NOTADB",
    "database disk image is malformed": "SQLITE_CORRUPT",
}
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_FIRST_BACKOFF, _MAX_BACKOFF = 0.002, 0.05
_INFO_FIELDS = ("workflow_id", "run_id", "workflow_type", "version", "task_list", "status", "start_time")
_INFO_FIELDS += ("close_time", "input", "result", "close_reason", "close_details", "decision_timeout")
_TASK_FIELDS = ("workflow_id", "run_id", "activity_id", "name", "version", "task_list", "input", "control")
_TASK_FIELDS += ("heartbeat_timeout", "start_to_close_timeout")
_TIMEOUTS = ("schedule_to_start_timeout", "start_to_close_timeout", "schedule_to_close_timeout")
_TIMEOUTS += ("heartbeat_timeout",)
_DECISION_GONE = "decision task is no longer leased to this decider (lease expired or already completed)"
_ACTIVITY_GONE = "activity task is no longer leased to this worker (timed out or already closed)"

Row = Any  # sqlite3.Row: read by column name


def _deadline(
    act: Row, started_at: float | None, last_heartbeat: float | None
) -> tuple[float | None, str | None]:
    """`activity_deadline` for an activity task row."""
    return activity_deadline(act["scheduled_at"], started_at, last_heartbeat, *(act[k] for k in _TIMEOUTS))


def _error_name(exc: sqlite3.Error) -> str:
    name = getattr(exc, "sqlite_errorname", None)
    return name or next((v for k, v in _MESSAGES.items() if k in str(exc)), "")


def _earliest(row: Row) -> float | None:
    dues = [v for v in row if v is not None]
    return min(dues) if dues else None


class SQLiteEngine(Engine):
    schemes = ("sqlite",)
    shared = True

    def __init__(
        self, path: str, clock: Callable[[], float] | None = None, synchronous: str = "NORMAL"
    ) -> None:
        super().__init__(clock)
        self.path = os.fspath(path)
        self.synchronous = synchronous.upper()
        if self.synchronous not in _SYNCHRONOUS:
            raise ConfigError(f"synchronous must be one of {', '.join(_SYNCHRONOUS)}, not {synchronous!r}")
        if self.path == ":memory:" or self.path.startswith("file:"):
            raise ConfigError(f"{self.path!r} is not a file path; use memory:// for an in-process engine")
        self._local = threading.local()
        self._lock = threading.Lock()
        # Wakes this process's pollers when one of its own commits may have made work, so that a
        # decider and a worker in one process (standalone, tests) hand over without sleeping.
        self._wake = threading.Condition()
        self._commits = 0
        self._conns: list[tuple[threading.Thread, sqlite3.Connection, int]] = []  # thread, connection, pid
        self._generation = 0
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise EngineUnavailable(f"cannot open {self.path}: directory {parent} does not exist")
        if os.path.isdir(self.path):
            raise EngineUnavailable(f"cannot open {self.path}: it is a directory, not a SQLite database file")
        try:
            self._prepare_schema()
        except BaseException:
            self.close()
            raise

    # -- connections and transactions ------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection; a new one after a fork or `close()`."""
        local, pid = self._local, os.getpid()
        if getattr(local, "conn", None) is None or local.pid != pid or local.generation != self._generation:
            local.conn, local.pid, local.generation = self._connect(), pid, self._generation
        return local.conn

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 30000")
            for attempt in range(100):  # switching a new file to WAL needs a moment alone with it
                try:
                    conn.execute("PRAGMA journal_mode = WAL").fetchone()
                    break
                except sqlite3.OperationalError as exc:
                    if _error_name(exc) not in ("SQLITE_BUSY", "SQLITE_LOCKED") or attempt == 99:
                        raise
                    time.sleep(0.05)
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")  # checked against _SYNCHRONOUS
        except sqlite3.Error as exc:
            conn.close()
            raise self._translate(exc) from exc
        pid = os.getpid()
        with self._lock:  # close what threads that have ended left behind
            ended = [c for c in self._conns if c[2] == pid and not c[0].is_alive()]
            self._conns = [c for c in self._conns if c not in ended]
            self._conns.append((threading.current_thread(), conn, pid))
        for _, old, _ in ended:
            old.close()
        return conn

    def _translate(self, exc: sqlite3.Error) -> EngineError:
        name = _error_name(exc)
        if name == "SQLITE_NOTADB":
            return EngineUnavailable(f"{self.path} is not a SQLite database (or it is encrypted or corrupt)")
        if name == "SQLITE_CORRUPT":
            return EngineUnavailable(f"{self.path} is a corrupt SQLite database: {exc}")
        return EngineUnavailable(f"cannot use SQLite database {self.path}: {exc}")

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn an unreachable, locked or broken database into a one-line `EngineUnavailable`."""
        try:
            yield
        except sqlite3.Error as exc:
            if _error_name(exc).startswith(_UNAVAILABLE):
                raise self._translate(exc) from exc
            raise

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        with self._guard():
            conn = self._conn()
            conn.execute(SQLITE_DIALECT[begin])
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if begin == "begin_write":
                with self._wake:
                    self._commits += 1
                    self._wake.notify_all()

    def _write(self) -> Any:
        """One short write transaction; an exception rolls all of it back."""
        return self._transaction("begin_write")

    def _read(self) -> Any:
        """A read transaction, so that several queries see one snapshot."""
        return self._transaction("begin_read")

    def _query_one(self, sql: str, params: Sequence[Any] = ()) -> Row:
        with self._guard():
            return self._conn().execute(sql, params).fetchone()

    def _prepare_schema(self) -> None:
        if self._schema_ok():
            return
        with self._write() as conn:
            if self._schema_ok():  # another process created it meanwhile
                return
            tables = sorted(r[0] for r in conn.execute(SQLITE_DIALECT["list_tables"]))
            if tables:
                shown = ", ".join(tables[:5]) + (" ..." if len(tables) > 5 else "")
                raise EngineError(f"{self.path} is not a steadyflow database (it has other tables: {shown})")
            for statement in SCHEMA:
                conn.execute(statement.format(**SQLITE_DIALECT))
            conn.execute(SQL["insert_meta"], ("schema_version", str(SCHEMA_VERSION)))
            conn.execute(SQL["insert_meta"], ("application", APPLICATION))

    def _schema_ok(self) -> bool:
        """True when the schema is ours and current, False when there is none; raises otherwise."""
        with self._guard():
            conn = self._conn()
            if "steadyflow_meta" not in {r[0] for r in conn.execute(SQLITE_DIALECT["list_tables"])}:
                return False
            meta = {r["key"]: r["value"] for r in conn.execute(SQL["meta"])}
        if meta.get("application") != APPLICATION:
            raise EngineError(f"{self.path} is not a steadyflow database (steadyflow_meta lacks the marker)")
        version = meta.get("schema_version", "")
        if not version.isdigit() or int(version) < 1:
            raise EngineError(f"{self.path} has an unreadable steadyflow schema version {version!r}")
        if int(version) > SCHEMA_VERSION:
            raise EngineError(
                f"{self.path} has steadyflow schema version {version}, newer than this steadyflow knows "
                f"({SCHEMA_VERSION}); upgrade steadyflow"
            )
        return True

    def close(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
            self._generation += 1
        for _, conn, pid in conns:
            if pid == os.getpid():  # a connection inherited through fork belongs to the parent
                conn.close()

    # -- helpers (inside a write transaction) ----------------------------------------------------

    def _append(self, conn: sqlite3.Connection, execution: int, event_type: str, **attrs: Any) -> int:
        conn.execute(SQL["bump_event_id"], (execution,))  # no RETURNING: SQLite before 3.35 lacks it
        event_id = conn.execute(SQL["last_event_id"], (execution,)).fetchone()[0]
        text = json.dumps({k: v for k, v in attrs.items() if v is not None}, separators=(",", ":"))
        conn.execute(SQL["insert_event"], (execution, event_id, event_type, self.clock(), text))
        return event_id

    def _schedule_decision(self, conn: sqlite3.Connection, execution: int, delay: float = 0.0) -> None:
        ex = conn.execute(SQL["by_id"], (execution,)).fetchone()
        if ex["status"] != OPEN or ex["decision_scheduled_id"] is not None:
            return
        attrs = {"taskList": {"name": ex["task_list"]}, "startToCloseTimeout": ex["decision_timeout"]}
        event_id = self._append(conn, execution, h.DECISION_TASK_SCHEDULED, **attrs)
        conn.execute(SQL["schedule_decision"], (event_id, self.clock() + delay, execution))

    def _end_decision(
        self, conn: sqlite3.Connection, ex: Row, event_type: str, failures: int, **attrs: Any
    ) -> int:
        """Append the event that ends the started decision task, and drop its lease."""
        started = {
            "scheduledEventId": ex["decision_started_from"],
            "startedEventId": ex["decision_started_id"],
        }
        event_id = self._append(conn, ex["id"], event_type, **started, **attrs)
        conn.execute(SQL["end_decision"], (None, None, None, None, failures, ex["id"]))
        return event_id

    def _find(self, conn: sqlite3.Connection, workflow_id: str, run_id: str | None) -> Row:
        if run_id:
            ex = conn.execute(SQL["by_run"], (run_id,)).fetchone()
        else:
            ex = conn.execute(SQL["latest"], (workflow_id,)).fetchone()
        if ex is None or ex["workflow_id"] != workflow_id:
            suffix = f" run {run_id}" if run_id else ""
            raise UnknownExecution(f"no execution with workflow id {workflow_id!r}{suffix}")
        return ex

    def _close(self, conn: sqlite3.Connection, execution: int, status: str, **outcome: str | None) -> None:
        result, reason, details = (outcome.get(k) for k in ("result", "reason", "details"))
        params = (status, self.clock(), result, reason, details, None, None, None, None, execution)
        conn.execute(SQL["close"], params)
        conn.execute(SQL["drop_activities"], (execution,))
        conn.execute(SQL["drop_timers"], (execution,))

    @staticmethod
    def _history(conn: sqlite3.Connection, execution: int, after: int = 0) -> list[h.Event]:
        rows = conn.execute(SQL["events"], (execution, after))
        return [h.Event(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    @staticmethod
    def _info(ex: Row) -> ExecutionInfo:
        fields = {k: ex[k] for k in _INFO_FIELDS}
        return ExecutionInfo(
            **fields, tags=tuple(json.loads(ex["tags"])), next_event_id=ex["last_event_id"] + 1
        )

    def _poll(self, peek: Callable[[], bool], claim: Callable[[sqlite3.Connection], Any], wait: float) -> Any:
        """Fire what is due, peek without the write lock, claim under it; back off until `wait` ends.

        The wait ends by the engine clock or by the real one, whichever comes first, so a frozen
        test clock cannot make a poll hang.
        """
        clock_end, real_end = self.clock() + wait, time.monotonic() + wait
        backoff = _FIRST_BACKOFF
        while True:
            seen = self._commits
            self.fire_due()
            if peek():
                with self._write() as conn:
                    found = claim(conn)
                if found is not None:
                    return found
            if wait <= 0:
                return None
            now = self.clock()
            remaining = min(clock_end - now, real_end - time.monotonic())
            if remaining <= 0:
                return None
            pause = min(backoff, remaining)
            due = self.next_due()
            if due is not None and due > now:
                pause = min(pause, due - now)
            with self._wake:
                if self._commits == seen:  # nothing committed here since the peek: wait for news
                    self._wake.wait(pause)
            backoff = min(backoff * 2, _MAX_BACKOFF)

    def _leased(
        self, lookup: Callable[[sqlite3.Connection], Row], action: Callable[..., Any], gone: str
    ) -> Any:
        """`action(conn, row)` for the leased task that `lookup` finds, after firing what is due.

        A lease that ran out is fired (and committed) before the token is checked, so the token is
        rejected with `UnknownTask`, raised after the commit.
        """
        with self._write() as conn:
            self._fire_locked(conn)
            row = lookup(conn)
            if row is not None:
                return action(conn, row)
        raise UnknownTask(gone)

    @staticmethod
    def _decision_owner(token: str) -> Callable[[sqlite3.Connection], Row]:
        def lookup(conn: sqlite3.Connection) -> Row:
            ex = conn.execute(SQL["by_run"], (token.split("/", 1)[0],)).fetchone()
            ok = ex is not None and ex["status"] == OPEN and ex["decision_token"] == token
            return ex if ok else None

        return lookup

    @staticmethod
    def _activity_owner(token: str) -> Callable[[sqlite3.Connection], Row]:
        return lambda conn: conn.execute(SQL["activity_by_token"], (token,)).fetchone()

    # -- executions ------------------------------------------------------------------------------

    def start_execution(
        self,
        workflow_id: str,
        workflow_type: str,
        version: str,
        task_list: str,
        input: str | None,
        tags: Sequence[str] = (),
        decision_timeout: float = DEFAULT_DECISION_TIMEOUT,
    ) -> str:
        with self._write() as conn:
            running = conn.execute(SQL["open_run"], (workflow_id,)).fetchone()
            if running is not None:
                raise WorkflowAlreadyStarted(workflow_id, running[0])
            run_id = uuid.uuid4().hex
            row = (workflow_id, run_id, workflow_type, version, task_list, input, json.dumps(list(tags)))
            conn.execute(SQL["insert_execution"], (*row, decision_timeout, self.clock()))
            execution = conn.execute(SQL["by_run"], (run_id,)).fetchone()["id"]
            self._append(
                conn,
                execution,
                h.WORKFLOW_EXECUTION_STARTED,
                workflowType={"name": workflow_type, "version": version},
                taskList={"name": task_list},
                input=input,
                tagList=list(tags),
                taskStartToCloseTimeout=decision_timeout,
            )
            self._schedule_decision(conn, execution)
            return run_id

    def describe_execution(self, workflow_id: str, run_id: str | None = None) -> ExecutionInfo:
        with self._guard():
            return self._info(self._find(self._conn(), workflow_id, run_id))

    def list_executions(
        self, status: str | None = None, workflow_type: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[ExecutionInfo]:
        clauses, params = [], []
        if status == "closed":
            clauses.append("status <> 'open'")
        elif status:
            clauses.append("status = ?")
            params.append(status)
        if workflow_type:
            clauses.append("workflow_type = ?")
            params.append(workflow_type)
        sql = SQL["list"].format(where="WHERE " + " AND ".join(clauses) if clauses else "")
        with self._guard():
            return [
                self._info(r) for r in self._conn().execute(sql, (*params, max(limit, 0), max(offset, 0)))
            ]

    def get_history(
        self, workflow_id: str, run_id: str | None = None, after_event_id: int = 0
    ) -> list[h.Event]:
        with self._read() as conn:
            return self._history(conn, self._find(conn, workflow_id, run_id)["id"], after_event_id)

    def signal_execution(
        self, workflow_id: str, run_id: str | None, signal_name: str, input: str | None
    ) -> None:
        with self._write() as conn:
            ex = self._find(conn, workflow_id, run_id)
            if ex["status"] != OPEN:
                raise ExecutionClosed(f"execution {workflow_id} is {ex['status']}; it cannot be signalled")
            self._append(conn, ex["id"], h.WORKFLOW_EXECUTION_SIGNALED, signalName=signal_name, input=input)
            self._schedule_decision(conn, ex["id"])

    def terminate_execution(
        self,
        workflow_id: str,
        run_id: str | None = None,
        reason: str | None = None,
        details: str | None = None,
    ) -> None:
        with self._write() as conn:
            ex = self._find(conn, workflow_id, run_id)
            if ex["status"] != OPEN:
                raise ExecutionClosed(f"execution {workflow_id} is already {ex['status']}")
            self._append(conn, ex["id"], h.WORKFLOW_EXECUTION_TERMINATED, reason=reason, details=details)
            self._close(conn, ex["id"], "terminated", reason=reason, details=details)

    # -- decision tasks --------------------------------------------------------------------------

    def poll_decision_task(
        self, task_list: str, identity: str = "", wait: float = 0.0
    ) -> DecisionTask | None:
        def peek() -> bool:
            return self._query_one(SQL["ready_decision"], (task_list, self.clock())) is not None

        def claim(conn: sqlite3.Connection) -> DecisionTask | None:
            now = self.clock()
            ex = conn.execute(SQL["ready_decision"], (task_list, now)).fetchone()
            if ex is None:
                return None
            scheduled = ex["decision_scheduled_id"]
            attrs = {"scheduledEventId": scheduled, "identity": identity or None}
            started = self._append(conn, ex["id"], h.DECISION_TASK_STARTED, **attrs)
            token = f"{ex['run_id']}/{started}/{uuid.uuid4().hex[:8]}"
            conn.execute(
                SQL["start_decision"], (started, scheduled, now + ex["decision_timeout"], token, ex["id"])
            )
            fields = {k: ex[k] for k in ("workflow_id", "run_id", "workflow_type", "version", "task_list")}
            return DecisionTask(
                token, **fields, started_event_id=started, history=self._history(conn, ex["id"])
            )

        return self._poll(peek, claim, wait)

    def complete_decision_task(
        self, token: str, decisions: Sequence[Decision], execution_context: str | None = None
    ) -> None:
        for i, d in enumerate(decisions):
            if isinstance(d, CLOSE_DECISIONS) and i != len(decisions) - 1:
                raise EngineError("a decision that closes the execution must be the last one")
        for d in decisions:
            if not isinstance(d, _KNOWN_DECISIONS):
                raise EngineError(f"unknown decision {d!r}")

        def apply(conn: sqlite3.Connection, ex: Row) -> None:
            self._apply_decisions(conn, ex, decisions, execution_context)

        self._leased(self._decision_owner(token), apply, _DECISION_GONE)

    def _apply_decisions(
        self, conn: sqlite3.Connection, ex: Row, decisions: Sequence[Decision], ctx: Any
    ) -> None:
        now = self.clock()
        completed = self._end_decision(conn, ex, h.DECISION_TASK_COMPLETED, 0, executionContext=ctx)
        for d in decisions:
            self._apply_decision(conn, ex["id"], d, completed, now)

    def _apply_decision(
        self, conn: sqlite3.Connection, execution: int, d: Decision, completed: int, now: float
    ) -> None:
        def emit(event_type: str, **attrs: Any) -> int:
            return self._append(conn, execution, event_type, **attrs, decisionTaskCompletedEventId=completed)

        if isinstance(d, ScheduleActivityTask):
            eid = emit(
                h.ACTIVITY_TASK_SCHEDULED,
                activityId=d.activity_id,
                activityType={"name": d.name, "version": d.version},
                input=d.input,
                control=d.control,
                taskList={"name": d.task_list},
                taskPriority=d.priority,
                scheduleToStartTimeout=d.schedule_to_start_timeout,
                startToCloseTimeout=d.start_to_close_timeout,
                scheduleToCloseTimeout=d.schedule_to_close_timeout,
                heartbeatTimeout=d.heartbeat_timeout,
            )
            timeouts = [getattr(d, k) for k in _TIMEOUTS]
            row = (
                execution,
                eid,
                d.activity_id,
                d.name,
                d.version,
                d.task_list,
                d.input,
                d.control,
                d.priority,
            )
            deadline = activity_deadline(now, None, None, *timeouts)
            conn.execute(SQL["insert_activity"], (*row, *timeouts, now, *deadline))
        elif isinstance(d, StartTimer):
            if conn.execute(SQL["timer"], (execution, d.timer_id)).fetchone() is not None:
                emit(h.START_TIMER_FAILED, timerId=d.timer_id, cause="TIMER_ID_ALREADY_IN_USE")
                self._schedule_decision(conn, execution)
                return
            eid = emit(h.TIMER_STARTED, timerId=d.timer_id, startToFireTimeout=d.seconds, control=d.control)
            conn.execute(SQL["insert_timer"], (execution, d.timer_id, eid, now + d.seconds))
        elif isinstance(d, CancelTimer):
            timer = conn.execute(SQL["timer"], (execution, d.timer_id)).fetchone()
            if timer is None:
                emit(h.CANCEL_TIMER_FAILED, timerId=d.timer_id, cause="TIMER_ID_UNKNOWN")
                self._schedule_decision(conn, execution)
            else:
                conn.execute(SQL["delete_timer"], (timer["id"],))
                emit(h.TIMER_CANCELED, timerId=d.timer_id, startedEventId=timer["started_event_id"])
        elif isinstance(d, RecordMarker):
            emit(h.MARKER_RECORDED, markerName=d.name, details=d.details)
        elif isinstance(d, CompleteWorkflowExecution):
            emit(h.WORKFLOW_EXECUTION_COMPLETED, result=d.result)
            self._close(conn, execution, "completed", result=d.result)
        elif isinstance(d, FailWorkflowExecution):
            emit(h.WORKFLOW_EXECUTION_FAILED, reason=d.reason, details=d.details)
            self._close(conn, execution, "failed", reason=d.reason, details=d.details)

    def fail_decision_task(self, token: str, cause: str, details: str | None = None) -> None:
        def fail(conn: sqlite3.Connection, ex: Row) -> None:
            failures = ex["decision_failures"] + 1
            self._end_decision(conn, ex, h.DECISION_TASK_FAILED, failures, cause=cause, details=details)
            delay = decision_retry_delay(failures)
            if ex["decision_scheduled_id"] is not None:
                conn.execute(SQL["delay_decision"], (self.clock() + delay, ex["id"]))
            self._schedule_decision(conn, ex["id"], delay)

        self._leased(self._decision_owner(token), fail, _DECISION_GONE)

    # -- activity tasks --------------------------------------------------------------------------

    def poll_activity_task(
        self, task_list: str, identity: str = "", wait: float = 0.0
    ) -> ActivityTask | None:
        def peek() -> bool:
            return self._query_one(SQL["peek_activity"], (task_list,)) is not None

        def claim(conn: sqlite3.Connection) -> ActivityTask | None:
            act = conn.execute(SQL["ready_activity"], (task_list,)).fetchone()
            if act is None:
                return None
            sched = act["scheduled_event_id"]
            attrs = {"scheduledEventId": sched, "identity": identity or None}
            started = self._append(conn, act["execution"], h.ACTIVITY_TASK_STARTED, **attrs)
            now = self.clock()
            token = f"{act['run_id']}/{sched}/{uuid.uuid4().hex[:8]}"
            conn.execute(SQL["start_activity"], (token, started, now, *_deadline(act, now, None), act["id"]))
            fields = {k: act[k] for k in _TASK_FIELDS}
            return ActivityTask(token, **fields, scheduled_event_id=sched, started_event_id=started)

        return self._poll(peek, claim, wait)

    def heartbeat_activity_task(self, token: str, details: str | None = None) -> bool:
        def beat(conn: sqlite3.Connection, act: Row) -> bool:
            now = self.clock()
            kept = details if details is not None else act["heartbeat_details"]
            conn.execute(SQL["heartbeat"], (now, kept, *_deadline(act, act["started_at"], now), act["id"]))
            return bool(act["cancel_requested"])

        return self._leased(self._activity_owner(token), beat, _ACTIVITY_GONE)

    def _close_activity(self, token: str, event_type: str, **attrs: Any) -> None:
        def close(conn: sqlite3.Connection, act: Row) -> None:
            conn.execute(SQL["delete_activity"], (act["id"],))
            started = {
                "scheduledEventId": act["scheduled_event_id"],
                "startedEventId": act["started_event_id"],
            }
            self._append(conn, act["execution"], event_type, **started, **attrs)
            self._schedule_decision(conn, act["execution"])

        self._leased(self._activity_owner(token), close, _ACTIVITY_GONE)

    def complete_activity_task(self, token: str, result: str | None) -> None:
        self._close_activity(token, h.ACTIVITY_TASK_COMPLETED, result=result)

    def fail_activity_task(self, token: str, reason: str | None, details: str | None = None) -> None:
        self._close_activity(token, h.ACTIVITY_TASK_FAILED, reason=reason, details=details)

    def list_activity_tasks(self, workflow_id: str, run_id: str | None = None) -> list[dict[str, Any]]:
        with self._read() as conn:
            ex = self._find(conn, workflow_id, run_id)
            return [
                {
                    "activity_id": a["activity_id"],
                    "name": a["name"],
                    "state": "started" if a["token"] else "scheduled",
                    "scheduled_event_id": a["scheduled_event_id"],
                    "scheduled_at": a["scheduled_at"],
                    "started_at": a["started_at"],
                    "last_heartbeat": a["last_heartbeat"],
                    "heartbeat_details": a["heartbeat_details"],
                }
                for a in conn.execute(SQL["activities_of"], (ex["id"],))
            ]

    # -- time ------------------------------------------------------------------------------------

    def fire_due(self) -> int:
        due = _earliest(self._query_one(SQL["due"]))  # read-only and indexed: cheap when nothing is due
        if due is None or due > self.clock():
            return 0
        with self._write() as conn:
            return self._fire_locked(conn)

    def _fire_locked(self, conn: sqlite3.Connection) -> int:
        now = self.clock()
        due = _earliest(conn.execute(SQL["due"]).fetchone())
        if due is None or due > now:
            return 0
        fired = 0
        for timer in conn.execute(SQL["due_timers"], (now,)).fetchall():
            conn.execute(SQL["delete_timer"], (timer["id"],))
            attrs = {"timerId": timer["timer_id"], "startedEventId": timer["started_event_id"]}
            self._append(conn, timer["execution"], h.TIMER_FIRED, **attrs)
            self._schedule_decision(conn, timer["execution"])
            fired += 1
        for act in conn.execute(SQL["expired_activities"], (now,)).fetchall():
            conn.execute(SQL["delete_activity"], (act["id"],))
            attrs = {"scheduledEventId": act["scheduled_event_id"], "startedEventId": act["started_event_id"]}
            attrs.update(timeoutType=act["deadline_kind"], details=act["heartbeat_details"])
            self._append(conn, act["execution"], h.ACTIVITY_TASK_TIMED_OUT, **attrs)
            self._schedule_decision(conn, act["execution"])
            fired += 1
        for ex in conn.execute(SQL["expired_decisions"], (now,)).fetchall():
            failures = ex["decision_failures"]
            self._end_decision(conn, ex, h.DECISION_TASK_TIMED_OUT, failures, timeoutType="START_TO_CLOSE")
            self._schedule_decision(conn, ex["id"])
            fired += 1
        return fired

    def next_due(self) -> float | None:
        return _earliest(self._query_one(SQL["next_due"]))
