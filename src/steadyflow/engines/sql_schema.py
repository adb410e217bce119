"""The SQL engines' statements, schema migrations and dialect description, shared by SQLite and PostgreSQL.

`SQLEngine` (`sql.py`) holds the contract methods; this module holds the SQL they run and the
`SchemaMigrations` mixin that creates, checks and upgrades the schema.

Written in the subset both databases speak, with `?` placeholders (`SQLEngine._sql` turns them into
the driver's style and appends the dialect's row-locking clause where asked). A new contract method
adds its statements to `SQL`; a new column or table is a new `Migration` at the end of `MIGRATIONS`
(a released migration is never edited: databases out there already ran it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import EngineError

APPLICATION = "steadyflow"


@dataclass(frozen=True)
class Migration:
    """One schema version: DDL statements run in order, in one transaction, by `db upgrade`.

    Statements may use the `Dialect.types` placeholders (`{pk}`, `{real}`, `{ref}`, `{bytes}`, `{int64}`).
    """

    version: int
    description: str
    statements: tuple[str, ...]


#: Version 1: executions, events, activity tasks and timers.
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
        execution {ref} NOT NULL REFERENCES steadyflow_executions (id), event_id INTEGER NOT NULL,
        event_type TEXT NOT NULL, timestamp {real} NOT NULL, attributes TEXT NOT NULL,
        PRIMARY KEY (execution, event_id))""",
    """CREATE TABLE steadyflow_activity_tasks (
        id {pk}, execution {ref} NOT NULL REFERENCES steadyflow_executions (id),
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
        id {pk}, execution {ref} NOT NULL REFERENCES steadyflow_executions (id), timer_id TEXT NOT NULL,
        started_event_id INTEGER NOT NULL, fire_at {real} NOT NULL, UNIQUE (execution, timer_id))""",
    "CREATE INDEX steadyflow_timers_fire_at ON steadyflow_timers (fire_at, id)",
)

#: Every schema version, oldest first. `db upgrade` applies the missing ones in order.
#: Version 2: what links executions: parents and children, cancellation requests.
LINKS = (
    "ALTER TABLE steadyflow_executions ADD COLUMN parent_workflow_id TEXT",
    "ALTER TABLE steadyflow_executions ADD COLUMN parent_run_id TEXT",
    "ALTER TABLE steadyflow_executions ADD COLUMN parent_initiated_id INTEGER",
    "ALTER TABLE steadyflow_executions ADD COLUMN parent_close_policy TEXT",
    "ALTER TABLE steadyflow_executions ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0",
    """CREATE INDEX steadyflow_executions_parent ON steadyflow_executions (parent_run_id, status)
        WHERE parent_run_id IS NOT NULL""",
)

#: Version 3: where large payloads and state data live when they stay in the engine's database.
#: Blobs are keyed by the digest of their content; state data mirrors py2sfn's DynamoDB item layout.
DATA = (
    """CREATE TABLE steadyflow_blobs (
        key TEXT NOT NULL, seq INTEGER NOT NULL, created {real} NOT NULL, data {bytes} NOT NULL,
        PRIMARY KEY (key, seq))""",
    """CREATE TABLE steadyflow_state_data (
        table_name TEXT NOT NULL, partition_key TEXT NOT NULL, sort_key {int64} NOT NULL,
        expires_at {int64} NOT NULL, data TEXT NOT NULL, PRIMARY KEY (table_name, partition_key, sort_key))""",
    "CREATE INDEX steadyflow_state_data_expiry ON steadyflow_state_data (expires_at)",
)

#: Version 4: schedules. A row is leased by the scheduler process handling it, so that several
#: schedulers can run and each slot still fires once.
SCHEDULES = (
    """CREATE TABLE steadyflow_schedules (
        name TEXT PRIMARY KEY, spec TEXT NOT NULL, paused INTEGER NOT NULL DEFAULT 0,
        next_slot {real} NOT NULL, pending_slot {real}, running_workflow_id TEXT,
        lease_owner TEXT, lease_until {real}, fired INTEGER NOT NULL DEFAULT 0, missed INTEGER NOT NULL DEFAULT 0,
        last_slot {real}, last_fired_at {real}, created {real} NOT NULL)""",
    "CREATE INDEX steadyflow_schedules_due ON steadyflow_schedules (next_slot)",
)

#: Version 5: concurrency and rate limits per task list, and the per-key concurrency key of a task.
LIMITS = (
    """CREATE TABLE steadyflow_limits (
        task_list TEXT PRIMARY KEY, concurrency INTEGER, rate_count INTEGER, rate_period {real},
        per_key INTEGER, tokens {real} NOT NULL DEFAULT 1, refreshed {real} NOT NULL DEFAULT 0)""",
    "ALTER TABLE steadyflow_activity_tasks ADD COLUMN concurrency_key TEXT",
    """CREATE INDEX steadyflow_activity_running_key ON steadyflow_activity_tasks (task_list, concurrency_key)
        WHERE token IS NOT NULL""",
)

#: Version 6: typed search attributes, one row per execution and name, in the column of its type
#: (`search/values.py`), and the (name, type) pairs in use, which a where-expression is checked against.
SEARCH = (
    """CREATE TABLE steadyflow_search_attributes (
        execution {ref} NOT NULL REFERENCES steadyflow_executions (id), name TEXT NOT NULL, type TEXT NOT NULL,
        text_value TEXT, int_value {int64}, real_value {real}, PRIMARY KEY (execution, name))""",
    "CREATE INDEX steadyflow_search_text ON steadyflow_search_attributes (name, text_value) WHERE text_value IS NOT NULL",
    "CREATE INDEX steadyflow_search_int ON steadyflow_search_attributes (name, int_value) WHERE int_value IS NOT NULL",
    "CREATE INDEX steadyflow_search_real ON steadyflow_search_attributes (name, real_value) WHERE real_value IS NOT NULL",
    "CREATE TABLE steadyflow_search_types (name TEXT NOT NULL, type TEXT NOT NULL, PRIMARY KEY (name, type))",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "executions, events, activity tasks, timers", SCHEMA),
    Migration(2, "child workflows and cancellation requests", LINKS),
    Migration(3, "blobs and state data", DATA),
    Migration(4, "schedules", SCHEDULES),
    Migration(5, "task list limits", LIMITS),
    Migration(6, "search attributes", SEARCH),
)
SCHEMA_VERSION = MIGRATIONS[-1].version

_LEASE = "decision_started_id = ?, decision_started_from = ?, decision_lease = ?, decision_token = ?"
_DUE = (
    "SELECT (SELECT MIN(fire_at) FROM steadyflow_timers),"
    " (SELECT MIN(deadline) FROM steadyflow_activity_tasks WHERE deadline IS NOT NULL),"
    " (SELECT MIN(decision_lease) FROM steadyflow_executions WHERE decision_lease IS NOT NULL)"
)
_READY_DECISION = "decision_scheduled_id IS NOT NULL AND decision_started_id IS NULL"
#: Due timers and timeouts fired per transaction; `fire_due` loops until none are left.
FIRE_BATCH = 200

#: Every statement, parameterised with `?`. A `SELECT` may be run plain, locked (`Dialect.lock`
#: appended) or claimed (`Dialect.claim` appended); a claim over a join locks every row it joins.
SQL = {
    "meta": "SELECT key, value FROM steadyflow_meta",
    "insert_meta": "INSERT INTO steadyflow_meta (key, value) VALUES (?, ?)",
    "update_meta": "UPDATE steadyflow_meta SET value = ? WHERE key = ?",
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
    "set_event_id": "UPDATE steadyflow_executions SET last_event_id = ? WHERE id = ?",
    "next_event_id": """UPDATE steadyflow_executions SET last_event_id = last_event_id + 1 WHERE id = ?
        RETURNING last_event_id""",
    "insert_event": """INSERT INTO steadyflow_events (execution, event_id, event_type, timestamp, attributes)
        VALUES (?, ?, ?, ?, ?)""",
    "events": """SELECT event_id, event_type, timestamp, attributes FROM steadyflow_events
        WHERE execution = ? AND event_id > ? ORDER BY event_id""",
    "events_between": """SELECT event_id, event_type, timestamp, attributes FROM steadyflow_events
        WHERE execution = ? AND event_id > ? AND event_id <= ? ORDER BY event_id""",
    "close": f"""UPDATE steadyflow_executions SET status = ?, close_time = ?, result = ?, close_reason = ?,
        close_details = ?, decision_scheduled_id = NULL, {_LEASE} WHERE id = ?""",
    "drop_activities": "DELETE FROM steadyflow_activity_tasks WHERE execution = ?",
    "drop_timers": "DELETE FROM steadyflow_timers WHERE execution = ?",
    # links between executions (migration 2)
    "set_parent": """UPDATE steadyflow_executions SET parent_workflow_id = ?, parent_run_id = ?,
        parent_initiated_id = ?, parent_close_policy = ? WHERE id = ?""",
    "open_children": "SELECT * FROM steadyflow_executions WHERE parent_run_id = ? AND status = 'open' ORDER BY id",
    "set_cancel_requested": "UPDATE steadyflow_executions SET cancel_requested = 1 WHERE id = ?",
    "cancel_activities": "UPDATE steadyflow_activity_tasks SET cancel_requested = 1 WHERE execution = ?",
    "events_of_type": "SELECT event_id, attributes FROM steadyflow_events WHERE execution = ? AND event_type = ?",
    "latest_closed": """SELECT status FROM steadyflow_executions WHERE workflow_id = ? AND status <> 'open'
        ORDER BY id DESC LIMIT 1""",
    # decision tasks
    "schedule_decision": """UPDATE steadyflow_executions SET decision_scheduled_id = ?, decision_visible_at = ?
        WHERE id = ?""",
    "delay_decision": "UPDATE steadyflow_executions SET decision_visible_at = ? WHERE id = ?",
    "ready_decision": f"""SELECT * FROM steadyflow_executions WHERE task_list = ? AND {_READY_DECISION}
        AND decision_visible_at <= ? ORDER BY decision_visible_at, id LIMIT 1""",
    "ready_decision_of": f"""SELECT * FROM steadyflow_executions WHERE id = ? AND {_READY_DECISION}
        AND decision_visible_at <= ?""",
    "start_decision": f"UPDATE steadyflow_executions SET decision_scheduled_id = NULL, {_LEASE} WHERE id = ?",
    "end_decision": f"UPDATE steadyflow_executions SET {_LEASE}, decision_failures = ? WHERE id = ?",
    "expired_decisions": f"""SELECT * FROM steadyflow_executions
        WHERE decision_lease IS NOT NULL AND decision_lease <= ? ORDER BY id LIMIT {FIRE_BATCH}""",
    # activity tasks
    "insert_activity": """INSERT INTO steadyflow_activity_tasks (execution, scheduled_event_id, activity_id,
        name, version, task_list, input, control, priority, schedule_to_start_timeout, start_to_close_timeout,
        schedule_to_close_timeout, heartbeat_timeout, scheduled_at, deadline, deadline_kind, concurrency_key)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
    # limits (read and updated by the claim under the row's lock, so claims of a task list queue up)
    "limits_of": "SELECT * FROM steadyflow_limits WHERE task_list = ?",
    "all_limits": "SELECT * FROM steadyflow_limits ORDER BY task_list",
    "insert_limits": """INSERT INTO steadyflow_limits (task_list, concurrency, rate_count, rate_period, per_key,
        tokens, refreshed) VALUES (?, ?, ?, ?, ?, 1, ?)""",
    "update_limits": """UPDATE steadyflow_limits SET concurrency = ?, rate_count = ?, rate_period = ?, per_key = ?
        WHERE task_list = ?""",
    "delete_limits": "DELETE FROM steadyflow_limits WHERE task_list = ?",
    "spend_token": "UPDATE steadyflow_limits SET tokens = ?, refreshed = ? WHERE task_list = ?",
    "waiting_on": "SELECT COUNT(*) FROM steadyflow_activity_tasks WHERE task_list = ? AND token IS NULL",
    "running_on": "SELECT COUNT(*) FROM steadyflow_activity_tasks WHERE task_list = ? AND token IS NOT NULL",
    "ready_activity_keyed": """SELECT a.*, e.workflow_id, e.run_id, e.last_event_id AS last_event_id_of_execution
        FROM steadyflow_activity_tasks a
        JOIN steadyflow_executions e ON e.id = a.execution WHERE a.task_list = ? AND a.token IS NULL
        AND (a.concurrency_key IS NULL OR (SELECT COUNT(*) FROM steadyflow_activity_tasks b
            WHERE b.task_list = a.task_list AND b.concurrency_key = a.concurrency_key AND b.token IS NOT NULL) < ?)
        ORDER BY a.priority DESC, a.id LIMIT 1""",
    "peek_activity": """SELECT execution FROM steadyflow_activity_tasks WHERE task_list = ? AND token IS NULL
        ORDER BY priority DESC, id LIMIT 1""",
    "ready_activity": """SELECT a.*, e.workflow_id, e.run_id, e.last_event_id AS last_event_id_of_execution
        FROM steadyflow_activity_tasks a
        JOIN steadyflow_executions e ON e.id = a.execution WHERE a.task_list = ? AND a.token IS NULL
        ORDER BY a.priority DESC, a.id LIMIT 1""",
    "ready_activity_of": """SELECT a.*, e.workflow_id, e.run_id, e.last_event_id AS last_event_id_of_execution
        FROM steadyflow_activity_tasks a
        JOIN steadyflow_executions e ON e.id = a.execution WHERE a.task_list = ? AND a.token IS NULL
        AND a.execution = ? ORDER BY a.priority DESC, a.id LIMIT 1""",
    "lock_execution": "SELECT id FROM steadyflow_executions WHERE id = ?",
    "execution_of_token": """SELECT * FROM steadyflow_executions
        WHERE id = (SELECT execution FROM steadyflow_activity_tasks WHERE token = ?)""",
    "start_activity": """UPDATE steadyflow_activity_tasks SET token = ?, started_event_id = ?, started_at = ?,
        deadline = ?, deadline_kind = ? WHERE id = ?""",
    "activity_by_token": "SELECT * FROM steadyflow_activity_tasks WHERE token = ?",
    "heartbeat": """UPDATE steadyflow_activity_tasks SET last_heartbeat = ?, heartbeat_details = ?, deadline = ?,
        deadline_kind = ? WHERE id = ?""",
    "delete_activity": "DELETE FROM steadyflow_activity_tasks WHERE id = ?",
    "activities_of": "SELECT * FROM steadyflow_activity_tasks WHERE execution = ? ORDER BY id",
    "expired_activities": f"""SELECT a.* FROM steadyflow_activity_tasks a
        JOIN steadyflow_executions e ON e.id = a.execution
        WHERE a.deadline IS NOT NULL AND a.deadline <= ? ORDER BY a.id LIMIT {FIRE_BATCH}""",
    # timers and time
    "timer": "SELECT id, started_event_id FROM steadyflow_timers WHERE execution = ? AND timer_id = ?",
    "insert_timer": """INSERT INTO steadyflow_timers (execution, timer_id, started_event_id, fire_at)
        VALUES (?, ?, ?, ?)""",
    "delete_timer": "DELETE FROM steadyflow_timers WHERE id = ?",
    "due_timers": f"""SELECT t.* FROM steadyflow_timers t JOIN steadyflow_executions e ON e.id = t.execution
        WHERE t.fire_at <= ? ORDER BY t.fire_at, t.id LIMIT {FIRE_BATCH}""",
    "due": _DUE,
    "next_due": f"{_DUE}, (SELECT MIN(decision_visible_at) FROM steadyflow_executions WHERE {_READY_DECISION})",
}


@dataclass(frozen=True)
class Dialect:
    """What differs between SQL databases, beside the hooks of `SQLEngine`."""

    name: str
    #: DDL placeholders: `pk` (auto-increment primary key), `real` (a double), `ref` (a key column).
    types: dict[str, str]
    #: Placeholder style of the driver: "qmark" (`?`) or "format" (`%s`).
    paramstyle: str = "qmark"
    #: Appended to a SELECT to lock its rows until commit ("" when transactions do not interleave).
    lock: str = ""
    #: Appended to a SELECT to claim its rows without waiting for locked ones ("" likewise).
    claim: str = ""
    #: True when INSERT/UPDATE ... RETURNING is available.
    returning: bool = False
    #: True to fire due timers inside the transaction that checks a token (one writer at a time);
    #: False to fire them in transactions of their own when a token's lease is found expired.
    fire_in_lease: bool = True
    #: A condition on `steadyflow_executions` true when its `tags` (a JSON list) hold the tag
    #: given as the one `?` parameter. Exact element match: a substring test on the JSON text
    #: would mistake `", "` for a tag.
    tag_match: str = "EXISTS (SELECT 1 FROM json_each(steadyflow_executions.tags) AS t WHERE t.value = ?)"


Conn = Any  # a DB-API connection


class SchemaMigrations:
    """Schema creation, version checks and `db upgrade`, for `SQLEngine`.

    Uses the engine's `_run`, `_sql`, `_tables`, `_lock_schema`, `dialect` and `where`; reads
    `MIGRATIONS` and `SCHEMA_VERSION` of this module when called (tests add a migration there).
    """

    dialect: Dialect
    where: str
    _run: Callable[..., Any]
    _sql: Callable[..., str]
    _tables: Callable[[Any], list[str]]
    _lock_schema: Callable[[Any], None]

    # -- schema and migrations -------------------------------------------------------------------

    def schema_version(self) -> int | None:
        """The database's schema version; None when it has no steadyflow schema yet.

        Raises `EngineError` when the tables there are not steadyflow's.
        """
        return self._run(self._read_version, write=False)

    def _read_version(self, conn: Conn) -> int | None:
        tables = self._tables(conn)
        if "steadyflow_meta" not in tables:
            if tables:
                shown = ", ".join(sorted(tables)[:5]) + (" ..." if len(tables) > 5 else "")
                raise EngineError(f"{self.where} is not a steadyflow database (it has other tables: {shown})")
            return None
        meta = {r[0]: r[1] for r in conn.execute(self._sql("meta"))}
        if meta.get("application") != APPLICATION:
            raise EngineError(f"{self.where} is not a steadyflow database (steadyflow_meta lacks the marker)")
        version = meta.get("schema_version", "")
        if not version.isdigit() or int(version) < 1:
            raise EngineError(f"{self.where} has an unreadable steadyflow schema version {version!r}")
        return int(version)

    def _too_new(self, version: int) -> EngineError:
        return EngineError(
            f"{self.where} has steadyflow schema version {version}, newer than this steadyflow knows "
            f"({SCHEMA_VERSION}); upgrade steadyflow"
        )

    def upgrade(self) -> list[int]:
        """Bring the schema to `SCHEMA_VERSION` (creating it when new); return the versions applied.

        One transaction, under the dialect's migration lock: safe to run from several hosts at
        once, and a failure leaves the schema as it was.
        """

        def migrate(conn: Conn) -> list[int]:
            self._lock_schema(conn)
            current = self._read_version(conn) or 0
            if current > SCHEMA_VERSION:
                raise self._too_new(current)
            applied = []
            for migration in MIGRATIONS:
                if migration.version <= current:
                    continue
                for statement in migration.statements:
                    conn.execute(statement.format(**self.dialect.types))
                applied.append(migration.version)
            if applied and current == 0:
                conn.execute(self._sql("insert_meta"), ("schema_version", str(SCHEMA_VERSION)))
                conn.execute(self._sql("insert_meta"), ("application", APPLICATION))
            elif applied:
                conn.execute(self._sql("update_meta"), (str(SCHEMA_VERSION), "schema_version"))
            return applied

        return self._run(migrate)

    def _prepare_schema(self) -> None:
        """Create the schema of a new database; refuse one newer or older than this code.

        An older schema is not upgraded behind the operator's back: processes of the older release
        may still be running against it. `steadyflow db upgrade` does it when they are ready.
        """
        version = self.schema_version()
        if version is None:
            self.upgrade()
            version = self.schema_version()
        if version is None:  # pragma: no cover - upgrade() just created it
            raise EngineError(f"{self.where}: the steadyflow schema could not be created")
        if version > SCHEMA_VERSION:
            raise self._too_new(version)
        if version < SCHEMA_VERSION:
            raise EngineError(
                f"{self.where} has steadyflow schema version {version}, older than this steadyflow's "
                f"({SCHEMA_VERSION}); run `steadyflow db upgrade`"
            )
