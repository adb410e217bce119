"""The SQL engines' shared implementation: every contract method, written once for SQLite and PostgreSQL.

`SQLEngine` holds the engine logic and `SQL` every statement, in the subset both databases speak
(`?` placeholders, no `RETURNING` unless the dialect has it). A dialect subclass (`sqlite.py`,
`postgres.py`) supplies a `Dialect` and a few hooks:

- `_run(fn, write, retry_after_commit, durable)`: run `fn(conn)` in one transaction on a connection
  of its own (connection per thread for SQLite, a pool for PostgreSQL), commit, translate errors;
- `_query_one(sql, params)`: one read outside any write transaction;
- `_wake_token`, `_wait_for_wake`, `_pause`, `_before_waiting`: how an idle poll waits for work
  (in-process commits and back-off for SQLite, `LISTEN/NOTIFY` for PostgreSQL); `_note(kind,
  task_list)` records, inside a transaction, that it made work for a task list;
- `_lock_schema(conn)`, `_tables(conn)`: what migrations need to know (`sql_schema.py`).

Concurrency, for dialects that lock rows (`Dialect.lock`): a transaction that waits for a lock takes
the execution row first and its activity and timer rows after it; claims (`Dialect.claim`, i.e.
`FOR UPDATE SKIP LOCKED`) lock the task and its execution in one statement without waiting. So no
two transactions can wait for each other, a task is claimed once, and a timer or timeout is fired
by whichever process claims it first. SQLite has one writer at a time and needs none of it. Once a
transaction holds an execution's row (`_current`), `_append` numbers its events without reading
the counter back, which saves a round trip per event on a server.

Extending: a new contract method is one public method here, its statements in `SQL`, and, when it
needs new columns or tables, a new entry in `MIGRATIONS` (never edit a released migration).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import history as h
from .. import metrics
from ..decisions import (
    ALL_DECISIONS,
    CLOSE_DECISIONS,
    CancelTimer,
    CancelWorkflowExecution,
    CompleteWorkflowExecution,
    ContinueAsNewWorkflowExecution,
    Decision,
    FailWorkflowExecution,
    RecordMarker,
    ScheduleActivityTask,
    SignalExternalWorkflowExecution,
    StartChildWorkflowExecution,
    StartTimer,
)
from ..errors import (
    EngineError,
    ExecutionClosed,
    UnknownExecution,
    UnknownTask,
    WorkflowAlreadyStarted,
)
from ..search import SEARCH_MARKER, decode_attributes, encode_attributes, parse_where
from .base import (
    DEFAULT_DECISION_TIMEOUT,
    OPEN,
    ActivityClose,
    ActivityTask,
    DecisionTask,
    Engine,
    ExecutionInfo,
    activity_deadline,
    check_reuse,
    decision_retry_delay,
)
from .limits import TaskListLimits, refill
from .sql_links import LinksMixin
from .sql_schema import (  # noqa: F401 - re-exported: the shared SQL is part of this module's API
    APPLICATION,
    FIRE_BATCH,
    MIGRATIONS,
    SCHEMA,
    SCHEMA_VERSION,
    SQL,
    Dialect,
    Migration,
    SchemaMigrations,
)
from .sql_search import SearchMixin

#: Decision types `_apply_decision` knows how to apply; others are refused before anything is written.
KNOWN_DECISIONS = ALL_DECISIONS
_INFO_FIELDS = ("workflow_id", "run_id", "workflow_type", "version", "task_list", "status", "start_time")
_INFO_FIELDS += ("close_time", "input", "result", "close_reason", "close_details", "decision_timeout")
_INFO_FIELDS += ("parent_workflow_id", "parent_run_id")
_TASK_FIELDS = ("workflow_id", "run_id", "activity_id", "name", "version", "task_list", "input", "control")
_TASK_FIELDS += ("heartbeat_timeout", "start_to_close_timeout", "scheduled_at")
_TIMEOUTS = ("schedule_to_start_timeout", "start_to_close_timeout", "schedule_to_close_timeout")
_TIMEOUTS += ("heartbeat_timeout",)
_DECISION_GONE = "decision task is no longer leased to this decider (lease expired or already completed)"
_ACTIVITY_GONE = "activity task is no longer leased to this worker (timed out or already closed)"
_GONE = object()
#: The open run of a workflow id and the status of its latest closed one, in one round trip
#: (a unique index allows one open run per workflow id).
_OPEN_AND_CLOSED = f"SELECT ({SQL['open_run']}), ({SQL['latest_closed']})"

DECISION, ACTIVITY = "decision", "activity"

Row = Any  # a row readable by column name and by position
Conn = Any  # a DB-API connection with `execute(sql, params)` returning a cursor


def _limits(row: Row) -> TaskListLimits:
    return TaskListLimits(row["task_list"], row["concurrency"], row["rate_count"], row["rate_period"], row["per_key"])


def _deadline(
    act: Row, started_at: float | None, last_heartbeat: float | None
) -> tuple[float | None, str | None]:
    """`activity_deadline` for an activity task row."""
    return activity_deadline(act["scheduled_at"], started_at, last_heartbeat, *(act[k] for k in _TIMEOUTS))


def _earliest(row: Row) -> float | None:
    dues = [v for v in row if v is not None]
    return min(dues) if dues else None


def check_decisions(decisions: Sequence[Decision]) -> None:
    """Refuse, before touching the database, what no engine may apply."""
    for i, d in enumerate(decisions):
        if isinstance(d, CLOSE_DECISIONS) and i != len(decisions) - 1:
            raise EngineError("a decision that closes the execution must be the last one")
    for d in decisions:
        if not isinstance(d, KNOWN_DECISIONS):
            raise EngineError(f"unknown decision {d!r}")
        if isinstance(d, RecordMarker) and d.name == SEARCH_MARKER:
            decode_attributes(json.loads(d.details or "null"), removals=True)


class SQLEngine(LinksMixin, SearchMixin, SchemaMigrations, Engine):
    """The contract on a SQL database; subclasses supply the dialect and the hooks below."""

    dialect: Dialect
    #: What errors name the database by: a file path, or a schema and a redacted URL.
    where: str = "the database"
    #: Driver exceptions raised when a concurrent writer won a race for a unique key.
    unique_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        super().__init__(clock)
        self._rendered: dict[tuple[str, str], str] = {}
        self._tx = threading.local()  # what the running transaction of this thread knows
        self._tx.event_ids = {}

    # -- hooks -----------------------------------------------------------------------------------

    @abstractmethod
    def _run(
        self,
        fn: Callable[[Conn], Any],
        write: bool = True,
        retry_after_commit: bool = True,
        durable: bool = True,
    ) -> Any:
        """`fn(conn)` in one transaction, committed when it returns, rolled back when it raises.

        `retry_after_commit=False` tells a dialect that retries after a lost connection not to
        retry when the commit itself may have happened (the operation is not idempotent).
        `durable=False` lets a dialect acknowledge the commit before it is on disk, for writes
        whose loss in a server crash only hands a task out again (claims, heartbeats).
        """

    @abstractmethod
    def _query_one(self, sql: str, params: Sequence[Any] = ()) -> Row:
        """One row of one read, outside any write transaction."""

    def _note(self, kind: str, task_list: str) -> None:
        """Inside a transaction: it made a `kind` task ready on `task_list` (wake its pollers)."""

    def _wake_token(self, kind: str, task_list: str) -> Any:
        """Something that changes when pollers of `task_list` may have work; read before a claim."""
        return None

    def _wait_for_wake(self, kind: str, task_list: str, token: Any, timeout: float) -> None:
        """Wait up to `timeout` seconds unless the wake token already moved on."""
        time.sleep(timeout)

    def _pause(self, attempt: int) -> float:
        """The longest an idle poll waits before it looks again by itself."""
        return min(0.002 * 2**attempt, 0.05)

    def _before_waiting(self) -> None:
        """Called once by a poll that is about to wait (PostgreSQL starts listening here)."""

    def _lock_schema(self, conn: Conn) -> None:
        """Inside the migration transaction: keep other processes from migrating at the same time."""

    @abstractmethod
    def _tables(self, conn: Conn) -> list[str]:
        """Names of the tables where the engine's tables live."""

    # -- SQL -------------------------------------------------------------------------------------

    def _sql(self, key: str, suffix: str = "") -> str:
        """Statement `key` in the driver's placeholder style, with `suffix` ("lock" or "claim")."""
        cached = self._rendered.get((key, suffix))
        if cached is None:
            text = SQL[key] + (getattr(self.dialect, suffix) if suffix else "")
            cached = self._rendered[(key, suffix)] = self._placeholders(text)
        return cached

    def _placeholders(self, text: str) -> str:
        if self.dialect.paramstyle == "format":
            return text.replace("%", "%%").replace("?", "%s")
        return text

    def run_data(self, fn: Callable[[Conn, Callable[[str], str]], Any], write: bool = True) -> Any:
        """`fn(conn, sql)` in one transaction, for stores that keep data beside the engine's tables.

        Blob and state-data stores use it so they share the engine's connections, retries and
        schema; `sql(text)` turns `?` placeholders into the driver's style.
        """
        return self._run(lambda conn: fn(conn, self._placeholders), write=write)

    # -- helpers (inside a transaction) ----------------------------------------------------------

    def _insert_execution(self, conn: Conn, params: Sequence[Any]) -> Row:
        """Insert an execution and return its row, as `_current` knows it (this transaction made it)."""
        if self.dialect.returning:
            row = conn.execute(self._sql("insert_execution") + " RETURNING *", params).fetchone()
        else:
            conn.execute(self._sql("insert_execution"), params)
            row = conn.execute(self._sql("by_run"), (params[1],)).fetchone()
        return self._current(row)

    def _begin(self) -> None:
        """Called by `_run` before each attempt: forget what the last transaction knew."""
        self._tx.event_ids = {}

    def _current(self, ex: Row) -> Row:
        """Note the event counter of an execution row this transaction has locked (so it is current)."""
        self._tx.event_ids[ex["id"]] = ex["last_event_id"]
        return ex

    def _append(self, conn: Conn, execution: int, event_type: str, **attrs: Any) -> int:
        known = self._tx.event_ids
        if execution in known:  # the row is locked by this transaction: no need to read it back
            event_id = known[execution] + 1
            conn.execute(self._sql("set_event_id"), (event_id, execution))
        elif self.dialect.returning:
            event_id = conn.execute(self._sql("next_event_id"), (execution,)).fetchone()[0]
        else:
            conn.execute(self._sql("bump_event_id"), (execution,))
            event_id = conn.execute(self._sql("last_event_id"), (execution,)).fetchone()[0]
        known[execution] = event_id
        text = json.dumps({k: v for k, v in attrs.items() if v is not None}, separators=(",", ":"))
        conn.execute(self._sql("insert_event"), (execution, event_id, event_type, self.clock(), text))
        return event_id

    def _schedule_decision(self, conn: Conn, execution: int, delay: float = 0.0, ex: Row = None) -> None:
        """Schedule a decision task unless one is; `ex`, if given, is the execution's current row."""
        if ex is None:
            ex = conn.execute(self._sql("by_id"), (execution,)).fetchone()
        if ex["status"] != OPEN or ex["decision_scheduled_id"] is not None:
            return
        attrs = {"taskList": {"name": ex["task_list"]}, "startToCloseTimeout": ex["decision_timeout"]}
        event_id = self._append(conn, execution, h.DECISION_TASK_SCHEDULED, **attrs)
        conn.execute(self._sql("schedule_decision"), (event_id, self.clock() + delay, execution))
        if delay <= 0 and ex["decision_started_id"] is None:
            self._note(DECISION, ex["task_list"])

    def _end_decision(self, conn: Conn, ex: Row, event_type: str, failures: int, **attrs: Any) -> int:
        """Append the event that ends the started decision task, and drop its lease."""
        started = {
            "scheduledEventId": ex["decision_started_from"],
            "startedEventId": ex["decision_started_id"],
        }
        event_id = self._append(conn, ex["id"], event_type, **started, **attrs)
        conn.execute(self._sql("end_decision"), (None, None, None, None, failures, ex["id"]))
        if ex["decision_scheduled_id"] is not None:  # scheduled while this one ran: ready now
            self._note(DECISION, ex["task_list"])
        return event_id

    def _find(self, conn: Conn, workflow_id: str, run_id: str | None, lock: bool = False) -> Row:
        suffix = "lock" if lock else ""
        if run_id:
            ex = conn.execute(self._sql("by_run", suffix), (run_id,)).fetchone()
        else:
            ex = conn.execute(self._sql("latest", suffix), (workflow_id,)).fetchone()
        if ex is None or ex["workflow_id"] != workflow_id:
            suffix = f" run {run_id}" if run_id else ""
            raise UnknownExecution(f"no execution with workflow id {workflow_id!r}{suffix}")
        return self._current(ex) if lock else ex

    def _close(self, conn: Conn, execution: int, status: str, **outcome: str | None) -> None:
        result, reason, details = (outcome.get(k) for k in ("result", "reason", "details"))
        params = (status, self.clock(), result, reason, details, None, None, None, None, execution)
        conn.execute(self._sql("close"), params)
        conn.execute(self._sql("drop_activities"), (execution,))
        conn.execute(self._sql("drop_timers"), (execution,))
        self._after_close(conn, execution, status)

    def _history(self, conn: Conn, execution: int, after: int = 0, until: int | None = None) -> list[h.Event]:
        if until is None:
            rows = conn.execute(self._sql("events"), (execution, after))
        else:
            rows = conn.execute(self._sql("events_between"), (execution, after, until))
        return [h.Event(r[0], r[1], r[2], json.loads(r[3])) for r in rows]

    @staticmethod
    def _info(ex: Row) -> ExecutionInfo:
        fields = {k: ex[k] for k in _INFO_FIELDS}
        return ExecutionInfo(
            **fields,
            tags=tuple(json.loads(ex["tags"])),
            next_event_id=ex["last_event_id"] + 1,
            cancel_requested=bool(ex["cancel_requested"]),
        )

    def _poll(
        self,
        kind: str,
        task_list: str,
        peek: Callable[[], tuple[str, Sequence[Any]]],
        claim: Callable[[Conn], Any],
        wait: float,
    ) -> Any:
        """Fire what is due, peek outside a write transaction, claim in one; wait until `wait` ends.

        `peek()` names the statement (a key of `SQL`) that finds a ready task, and its parameters.

        The wait ends by the engine clock or by the real one, whichever comes first, so a frozen
        test clock cannot make a poll hang.
        """
        clock_end, real_end = self.clock() + wait, time.monotonic() + wait
        if wait > 0:
            self._before_waiting()
        attempt = 0
        while True:
            token = self._wake_token(kind, task_list)
            self._tx.retry_at = None
            if self._look(*peek()):
                found = self._run(claim, durable=False)  # a lost claim: the task is handed out again
                if found is not None:
                    return found
            if wait <= 0:
                return None
            now = self.clock()
            remaining = min(clock_end - now, real_end - time.monotonic())
            if remaining <= 0:
                return None
            pause = min(self._pause(attempt), remaining)
            if getattr(self._tx, "retry_at", None) is not None:  # a rate limit said when to look again
                pause = min(pause, max(self._tx.retry_at - now, 0.0005))
            due = self.next_due()
            if due is not None and due > now:
                pause = min(pause, due - now)
            self._wait_for_wake(kind, task_list, token, pause)
            attempt += 1

    def _look(self, peek: str, params: Sequence[Any]) -> bool:
        """Fire what is due, then whether statement `peek` finds a task: one read when nothing is
        due (the usual case), since the due times and the peek are asked for together."""
        sql = self._rendered.get((peek, "look"))
        if sql is None:
            sql = self._rendered[(peek, "look")] = self._placeholders(f"{SQL['due']}, EXISTS ({SQL[peek]})")
        row = self._query_one(sql, params)
        due = _earliest([row[0], row[1], row[2]])
        if due is None or due > self.clock():
            return bool(row[3])
        self.fire_due()
        return self._query_one(self._sql(peek), params) is not None

    def _leased(
        self,
        lookup: Callable[[Conn], Row],
        action: Callable[..., Any],
        gone: str,
        retry_after_commit: bool = True,
        durable: bool = True,
    ) -> Any:
        """`action(conn, row)` for the leased task that `lookup` finds.

        A token whose lease ran out is rejected with `UnknownTask`, raised once the timeout is fired
        and committed: inside the token's transaction for a single writer (`Dialect.fire_in_lease`),
        else in transactions of their own after the lookup found the lease expired.
        """

        def attempt(conn: Conn) -> Any:
            self._tx.timed_out = []
            if self.dialect.fire_in_lease:
                self._fire_batch(conn)
            row = lookup(conn)
            return _GONE if row is None else action(conn, row)

        result = self._run(attempt, retry_after_commit=retry_after_commit, durable=durable)
        self._count_timeouts()
        if result is _GONE:
            if not self.dialect.fire_in_lease:
                self.fire_due()
            raise UnknownTask(gone)
        return result

    def _decision_owner(self, token: str) -> Callable[[Conn], Row]:
        def lookup(conn: Conn) -> Row:
            ex = conn.execute(self._sql("by_run", "lock"), (token.split("/", 1)[0],)).fetchone()
            ok = ex is not None and ex["status"] == OPEN and ex["decision_token"] == token
            return self._current(ex) if ok and not ex["decision_lease"] <= self.clock() else None

        return lookup

    def _activity_owner(self, token: str, lock_execution: bool) -> Callable[[Conn], Row]:
        """`(activity row, execution row or None)` a token leases; the execution is locked first
        (and returned) when asked to, where rows are locked."""

        def lookup(conn: Conn) -> Row:
            ex = None
            if lock_execution and self.dialect.lock:
                # Both locks are asked for before either answer is read (one round trip in pipeline
                # mode); the server still takes them in this order. No execution: no activity either.
                ex_cursor = conn.execute(self._sql("execution_of_token", "lock"), (token,))
                act_cursor = conn.execute(self._sql("activity_by_token", "lock"), (token,))
                ex = ex_cursor.fetchone()
                if ex is None:
                    return None
                self._current(ex)
                act = act_cursor.fetchone()
            else:
                act = conn.execute(self._sql("activity_by_token", "lock"), (token,)).fetchone()
            expired = act is None or (act["deadline"] is not None and act["deadline"] <= self.clock())
            return None if expired else (act, ex)

        return lookup

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
        id_reuse_policy: str = "allow_duplicate",
        search_attributes: Mapping[str, Any] | None = None,
    ) -> str:
        run_id = uuid.uuid4().hex  # chosen before the transaction, so that a retry recognises it
        searched = {"searchAttributes": encode_attributes(search_attributes)} if search_attributes else {}

        def start(conn: Conn) -> str:
            found = conn.execute(self._placeholders(_OPEN_AND_CLOSED), (workflow_id, workflow_id)).fetchone()
            running, last = found[0], found[1]
            if running is not None:
                if running == run_id:  # committed by an attempt whose connection was lost
                    return run_id
                raise WorkflowAlreadyStarted(workflow_id, running)
            check_reuse(id_reuse_policy, workflow_id, last)
            self._new_run(
                conn, workflow_id, workflow_type, version, task_list, input, tags, decision_timeout, run_id,
                **searched,
            )
            return run_id

        try:
            return self._run(start)
        except self.unique_errors:  # another process started the same workflow id meanwhile
            running = self._query_one(self._sql("open_run"), (workflow_id,))
            raise WorkflowAlreadyStarted(workflow_id, running[0] if running else None) from None

    def describe_execution(self, workflow_id: str, run_id: str | None = None) -> ExecutionInfo:
        return self._run(lambda conn: self._infos(conn, [self._find(conn, workflow_id, run_id)])[0], write=False)

    def _infos(self, conn: Conn, rows: Sequence[Row]) -> list[ExecutionInfo]:
        """`_info` of each row, with its search attributes."""
        found = self._search_of(conn, [r["id"] for r in rows])
        return [dataclasses.replace(self._info(r), search_attributes=found[r["id"]]) for r in rows]

    def list_executions(
        self,
        status: str | None = None,
        workflow_type: str | None = None,
        limit: int = 100,
        offset: int = 0,
        tag: str | None = None,
        started_after: float | None = None,
        started_before: float | None = None,
        where: str | None = None,
    ) -> list[ExecutionInfo]:
        query = parse_where(where) if where is not None else None
        clauses: list[str] = []
        params: list[Any] = []
        if status == "closed":
            clauses.append("status <> 'open'")
        elif status:
            clauses.append("status = ?")
            params.append(status)
        if workflow_type:
            clauses.append("workflow_type = ?")
            params.append(workflow_type)
        if tag is not None:
            clauses.append(self.dialect.tag_match)
            params.append(tag)
        if started_after is not None:
            clauses.append("start_time >= ?")
            params.append(float(started_after))
        if started_before is not None:
            clauses.append("start_time < ?")
            params.append(float(started_before))

        def read(conn: Conn) -> list[ExecutionInfo]:
            found, values = list(clauses), list(params)
            if query is not None:
                condition, more = self._where_clause(conn, query)
                found.append(condition)
                values += more
            sql = self._placeholders(SQL["list"].format(where="WHERE " + " AND ".join(found) if found else ""))
            return self._infos(conn, conn.execute(sql, [*values, max(limit, 0), max(offset, 0)]).fetchall())

        return self._run(read, write=False)

    def get_history(
        self, workflow_id: str, run_id: str | None = None, after_event_id: int = 0
    ) -> list[h.Event]:
        def read(conn: Conn) -> list[h.Event]:
            return self._history(conn, self._find(conn, workflow_id, run_id)["id"], after_event_id)

        return self._run(read, write=False)

    def signal_execution(
        self, workflow_id: str, run_id: str | None, signal_name: str, input: str | None
    ) -> None:
        def signal(conn: Conn) -> None:
            ex = self._find(conn, workflow_id, run_id, lock=True)
            if ex["status"] != OPEN:
                raise ExecutionClosed(f"execution {workflow_id} is {ex['status']}; it cannot be signalled")
            self._append(conn, ex["id"], h.WORKFLOW_EXECUTION_SIGNALED, signalName=signal_name, input=input)
            self._schedule_decision(conn, ex["id"])

        self._run(signal, retry_after_commit=False)  # a second try could record the signal twice

    def terminate_execution(
        self,
        workflow_id: str,
        run_id: str | None = None,
        reason: str | None = None,
        details: str | None = None,
    ) -> None:
        def terminate(conn: Conn) -> None:
            ex = self._find(conn, workflow_id, run_id, lock=True)
            if ex["status"] != OPEN:
                raise ExecutionClosed(f"execution {workflow_id} is already {ex['status']}")
            self._append(conn, ex["id"], h.WORKFLOW_EXECUTION_TERMINATED, reason=reason, details=details)
            self._close(conn, ex["id"], "terminated", reason=reason, details=details)

        self._run(terminate, retry_after_commit=False)

    # -- decision tasks --------------------------------------------------------------------------

    def poll_decision_task(
        self, task_list: str, identity: str = "", wait: float = 0.0, known: Mapping[str, int] | None = None
    ) -> DecisionTask | None:
        def peek() -> tuple[str, Sequence[Any]]:
            return "ready_decision", (task_list, self.clock())

        def claim(conn: Conn) -> DecisionTask | None:
            now = self.clock()
            ex = conn.execute(self._sql("ready_decision", "claim"), (task_list, now)).fetchone()
            if ex is None and self.dialect.claim:  # every ready one is locked: wait for the oldest
                first = conn.execute(self._sql("ready_decision"), (task_list, now)).fetchone()
                if first is not None:
                    ex = conn.execute(self._sql("ready_decision_of", "lock"), (first["id"], now)).fetchone()
            if ex is None:
                return None
            self._current(ex)
            scheduled = ex["decision_scheduled_id"]
            attrs = {"scheduledEventId": scheduled, "identity": identity or None}
            started = self._append(conn, ex["id"], h.DECISION_TASK_STARTED, **attrs)
            token = f"{ex['run_id']}/{started}/{uuid.uuid4().hex[:8]}"
            lease = (started, scheduled, now + ex["decision_timeout"], token, ex["id"])
            conn.execute(self._sql("start_decision"), lease)
            fields = {k: ex[k] for k in ("workflow_id", "run_id", "workflow_type", "version", "task_list")}
            return ex["id"], DecisionTask(token, **fields, started_event_id=started)

        found = self._poll(DECISION, task_list, peek, claim, wait)
        if found is None:
            return None
        # Events up to `started` never change: read them after the claim's commit, so that the
        # execution row is not locked (and writers not kept waiting) while a long history is read.
        execution, task = found
        after = min((known or {}).get(task.run_id, 0), task.started_event_id - 1)
        history = self._run(
            lambda conn: self._history(conn, execution, after, until=task.started_event_id), write=False
        )
        return dataclasses.replace(task, history=history, history_after=after)

    def complete_decision_task(
        self, token: str, decisions: Sequence[Decision], execution_context: str | None = None
    ) -> None:
        check_decisions(decisions)

        def apply(conn: Conn, ex: Row) -> None:
            self._apply_decisions(conn, ex, decisions, execution_context)

        self._leased(self._decision_owner(token), apply, _DECISION_GONE)

    def _apply_decisions(self, conn: Conn, ex: Row, decisions: Sequence[Decision], ctx: Any) -> None:
        now = self.clock()
        completed = self._end_decision(conn, ex, h.DECISION_TASK_COMPLETED, 0, executionContext=ctx)
        for d in decisions:
            self._apply_decision(conn, ex["id"], d, completed, now)

    def _apply_decision(self, conn: Conn, execution: int, d: Decision, completed: int, now: float) -> None:
        def emit(event_type: str, **attrs: Any) -> int:
            return self._append(conn, execution, event_type, **attrs, decisionTaskCompletedEventId=completed)

        if isinstance(d, ScheduleActivityTask):
            eid = emit(h.ACTIVITY_TASK_SCHEDULED, **d.event_attributes())
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
            conn.execute(self._sql("insert_activity"), (*row, *timeouts, now, *deadline, d.concurrency_key))
            self._note(ACTIVITY, d.task_list)
        elif isinstance(d, StartTimer):
            if conn.execute(self._sql("timer"), (execution, d.timer_id)).fetchone() is not None:
                emit(h.START_TIMER_FAILED, timerId=d.timer_id, cause="TIMER_ID_ALREADY_IN_USE")
                self._schedule_decision(conn, execution)
                return
            eid = emit(h.TIMER_STARTED, timerId=d.timer_id, startToFireTimeout=d.seconds, control=d.control)
            conn.execute(self._sql("insert_timer"), (execution, d.timer_id, eid, now + d.seconds))
        elif isinstance(d, CancelTimer):
            timer = conn.execute(self._sql("timer", "lock"), (execution, d.timer_id)).fetchone()
            if timer is None:
                emit(h.CANCEL_TIMER_FAILED, timerId=d.timer_id, cause="TIMER_ID_UNKNOWN")
                self._schedule_decision(conn, execution)
            else:
                conn.execute(self._sql("delete_timer"), (timer["id"],))
                emit(h.TIMER_CANCELED, timerId=d.timer_id, startedEventId=timer["started_event_id"])
        elif isinstance(d, RecordMarker):
            emit(h.MARKER_RECORDED, markerName=d.name, details=d.details)
            if d.name == SEARCH_MARKER:
                self._index_marker(conn, execution, d.details)
        elif isinstance(d, SignalExternalWorkflowExecution):
            self._signal_external(conn, execution, d, completed)
        elif isinstance(d, StartChildWorkflowExecution):
            self._start_child(conn, execution, d, completed)
        elif isinstance(d, CancelWorkflowExecution):
            emit(h.WORKFLOW_EXECUTION_CANCELED, details=d.details)
            self._close(conn, execution, "canceled", details=d.details)
        elif isinstance(d, ContinueAsNewWorkflowExecution):
            self._continue_as_new(conn, execution, d, completed)
        elif isinstance(d, CompleteWorkflowExecution):
            emit(h.WORKFLOW_EXECUTION_COMPLETED, result=d.result)
            self._close(conn, execution, "completed", result=d.result)
        elif isinstance(d, FailWorkflowExecution):
            emit(h.WORKFLOW_EXECUTION_FAILED, reason=d.reason, details=d.details)
            self._close(conn, execution, "failed", reason=d.reason, details=d.details)

    def fail_decision_task(self, token: str, cause: str, details: str | None = None) -> None:
        def fail(conn: Conn, ex: Row) -> None:
            failures = ex["decision_failures"] + 1
            self._end_decision(conn, ex, h.DECISION_TASK_FAILED, failures, cause=cause, details=details)
            delay = decision_retry_delay(failures)
            if ex["decision_scheduled_id"] is not None:
                conn.execute(self._sql("delay_decision"), (self.clock() + delay, ex["id"]))
            self._schedule_decision(conn, ex["id"], delay)

        self._leased(self._decision_owner(token), fail, _DECISION_GONE)

    # -- activity tasks --------------------------------------------------------------------------

    def poll_activity_task(
        self, task_list: str, identity: str = "", wait: float = 0.0
    ) -> ActivityTask | None:
        def peek() -> tuple[str, Sequence[Any]]:
            return "peek_activity", (task_list,)

        def claim(conn: Conn) -> ActivityTask | None:
            limits = conn.execute(self._sql("limits_of", "lock"), (task_list,))
            # Where claims skip locked rows, the unlimited claim is sent before the limits answer is
            # read (one round trip in pipeline mode). On a limited task list the row it may lock is
            # this transaction's until commit, and the keyed claim below may still take it.
            ready = conn.execute(self._sql("ready_activity", "claim"), (task_list,)) if self.dialect.claim else None
            row = limits.fetchone()
            if row is not None:
                return self._claim_limited(conn, _limits(row), row, identity)
            if ready is None:
                ready = conn.execute(self._sql("ready_activity", "claim"), (task_list,))
            act = ready.fetchone()
            if act is None and self.dialect.claim:  # every ready one's execution is busy: wait for one
                first = conn.execute(self._sql("peek_activity"), (task_list,)).fetchone()
                if first is not None:
                    conn.execute(self._sql("lock_execution", "lock"), (first["execution"],))
                    of = (task_list, first["execution"])
                    act = conn.execute(self._sql("ready_activity_of", "claim"), of).fetchone()
            return self._start_activity(conn, act, identity) if act is not None else None

        return self._poll(ACTIVITY, task_list, peek, claim, wait)

    def _start_activity(self, conn: Conn, act: Row, identity: str) -> ActivityTask:
        self._tx.event_ids[act["execution"]] = act["last_event_id_of_execution"]
        sched = act["scheduled_event_id"]
        attrs = {"scheduledEventId": sched, "identity": identity or None}
        started = self._append(conn, act["execution"], h.ACTIVITY_TASK_STARTED, **attrs)
        now = self.clock()
        token = f"{act['run_id']}/{sched}/{uuid.uuid4().hex[:8]}"
        conn.execute(self._sql("start_activity"), (token, started, now, *_deadline(act, now, None), act["id"]))
        fields = {k: act[k] for k in _TASK_FIELDS}
        return ActivityTask(token, **fields, scheduled_event_id=sched, started_event_id=started)

    def _claim_limited(self, conn: Conn, limits: TaskListLimits, row: Row, identity: str) -> ActivityTask | None:
        """A claim on a limited task list: its limits row is locked, so claims of this task list
        take turns and the counts below cannot be raced past."""
        task_list, now = limits.task_list, self.clock()
        if limits.concurrency is not None:
            if conn.execute(self._sql("running_on"), (task_list,)).fetchone()[0] >= limits.concurrency:
                return None
        tokens = refill(row["tokens"], row["refreshed"], now, limits)
        if tokens < 1.0:
            self._tx.retry_at = now + (1.0 - tokens) * (limits.interval or 0.0)
            return None
        per_key = limits.per_key if limits.per_key is not None else 2**31 - 1
        act = conn.execute(self._sql("ready_activity_keyed", "claim"), (task_list, per_key)).fetchone()
        if act is None:
            return None
        conn.execute(self._sql("spend_token"), (tokens - 1.0 if limits.interval else 1.0, now, task_list))
        return self._start_activity(conn, act, identity)

    def count_waiting_activity_tasks(self, task_list: str) -> int:
        return int(self._query_one(self._sql("waiting_on"), (task_list,))[0])

    # -- limits ----------------------------------------------------------------------------------

    def set_task_list_limits(self, limits: TaskListLimits) -> None:
        params = (limits.concurrency, limits.rate_count, limits.rate_period, limits.per_key)

        def put(conn: Conn) -> None:
            if conn.execute(self._sql("limits_of", "lock"), (limits.task_list,)).fetchone() is None:
                conn.execute(self._sql("insert_limits"), (limits.task_list, *params, self.clock()))
            else:
                conn.execute(self._sql("update_limits"), (*params, limits.task_list))

        self._run(put)

    def task_list_limits(self) -> list[TaskListLimits]:
        return self._run(lambda conn: [_limits(r) for r in conn.execute(self._sql("all_limits"))], write=False)

    def clear_task_list_limits(self, task_list: str) -> bool:
        def drop(conn: Conn) -> bool:
            if conn.execute(self._sql("limits_of", "lock"), (task_list,)).fetchone() is None:
                return False
            conn.execute(self._sql("delete_limits"), (task_list,))
            return True

        return bool(self._run(drop))

    def heartbeat_activity_task(self, token: str, details: str | None = None) -> bool:
        def beat(conn: Conn, found: tuple[Row, Row]) -> bool:
            act, _ = found
            now = self.clock()
            kept = details if details is not None else act["heartbeat_details"]
            conn.execute(
                self._sql("heartbeat"), (now, kept, *_deadline(act, act["started_at"], now), act["id"])
            )
            return bool(act["cancel_requested"])

        owner = self._activity_owner(token, lock_execution=False)
        return self._leased(owner, beat, _ACTIVITY_GONE, durable=False)  # a lost beat: an earlier deadline

    def _close_activity(self, token: str, event_type: str, **attrs: Any) -> None:
        def close(conn: Conn, found: tuple[Row, Row]) -> None:
            self._record_close(conn, found, event_type, attrs)

        self._leased(self._activity_owner(token, lock_execution=True), close, _ACTIVITY_GONE)

    def _record_close(self, conn: Conn, found: tuple[Row, Row], event_type: str, attrs: dict[str, Any]) -> None:
        act, ex = found
        conn.execute(self._sql("delete_activity"), (act["id"],))
        started = {"scheduledEventId": act["scheduled_event_id"], "startedEventId": act["started_event_id"]}
        self._append(conn, act["execution"], event_type, **started, **attrs)
        self._schedule_decision(conn, act["execution"], ex=ex)

    def close_activity_tasks(self, closes: Sequence[ActivityClose]) -> list[bool]:
        """All in one transaction. A token whose lease is gone is found so before anything of it is
        written, so it only drops out; executions are locked in token (run id) order, the same in
        every worker, so two batches never wait on each other in a circle."""
        if len(closes) <= 1:
            return super().close_activity_tasks(closes)
        order = sorted(range(len(closes)), key=lambda i: closes[i].token)

        def attempt(conn: Conn) -> list[bool]:
            self._tx.timed_out = []
            if self.dialect.fire_in_lease:
                self._fire_batch(conn)
            recorded = [False] * len(closes)
            for i in order:
                c = closes[i]
                found = self._activity_owner(c.token, lock_execution=True)(conn)
                if found is None:
                    continue
                if c.ok:
                    self._record_close(conn, found, h.ACTIVITY_TASK_COMPLETED, {"result": c.result})
                else:
                    self._record_close(conn, found, h.ACTIVITY_TASK_FAILED, {"reason": c.reason, "details": c.details})
                recorded[i] = True
            return recorded

        recorded = self._run(attempt)
        self._count_timeouts()
        if not all(recorded) and not self.dialect.fire_in_lease:
            self.fire_due()
        return recorded

    def complete_activity_task(self, token: str, result: str | None) -> None:
        self._close_activity(token, h.ACTIVITY_TASK_COMPLETED, result=result)

    def fail_activity_task(self, token: str, reason: str | None, details: str | None = None) -> None:
        self._close_activity(token, h.ACTIVITY_TASK_FAILED, reason=reason, details=details)

    def list_activity_tasks(self, workflow_id: str, run_id: str | None = None) -> list[dict[str, Any]]:
        def read(conn: Conn) -> list[dict[str, Any]]:
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
                for a in conn.execute(self._sql("activities_of"), (ex["id"],))
            ]

        return self._run(read, write=False)

    # -- time ------------------------------------------------------------------------------------

    def fire_due(self) -> int:
        due = _earliest(self._query_one(self._sql("due")))  # read-only and indexed: cheap when nothing is due
        if due is None or due > self.clock():
            return 0
        fired = 0
        while True:
            self._tx.timed_out = []
            count = self._run(self._fire_batch)
            self._count_timeouts()
            fired += count
            if count < FIRE_BATCH:
                return fired

    def _count_timeouts(self) -> None:
        """Count the activity timeouts the last committed transaction fired (in this process only)."""
        for name in getattr(self._tx, "timed_out", ()):
            metrics.task_finished(name, "timed_out")
        self._tx.timed_out = []

    def _fire_batch(self, conn: Conn) -> int:
        """Fire what is due and not claimed by another transaction, up to `FIRE_BATCH` of each kind."""
        now = self.clock()
        due = _earliest(conn.execute(self._sql("due")).fetchone())
        if due is None or due > now:
            return 0
        fired = 0
        for timer in conn.execute(self._sql("due_timers", "claim"), (now,)).fetchall():
            conn.execute(self._sql("delete_timer"), (timer["id"],))
            attrs = {"timerId": timer["timer_id"], "startedEventId": timer["started_event_id"]}
            self._append(conn, timer["execution"], h.TIMER_FIRED, **attrs)
            self._schedule_decision(conn, timer["execution"])
            fired += 1
        for act in conn.execute(self._sql("expired_activities", "claim"), (now,)).fetchall():
            conn.execute(self._sql("delete_activity"), (act["id"],))
            attrs = {"scheduledEventId": act["scheduled_event_id"], "startedEventId": act["started_event_id"]}
            attrs.update(timeoutType=act["deadline_kind"], details=act["heartbeat_details"])
            self._append(conn, act["execution"], h.ACTIVITY_TASK_TIMED_OUT, **attrs)
            self._schedule_decision(conn, act["execution"])
            self._tx.__dict__.setdefault("timed_out", []).append(act["name"])
            fired += 1
        for ex in conn.execute(self._sql("expired_decisions", "claim"), (now,)).fetchall():
            failures = ex["decision_failures"]
            self._end_decision(conn, ex, h.DECISION_TASK_TIMED_OUT, failures, timeoutType="START_TO_CLOSE")
            self._schedule_decision(conn, ex["id"])
            fired += 1
        return fired

    def next_due(self) -> float | None:
        return _earliest(self._query_one(self._sql("next_due")))
