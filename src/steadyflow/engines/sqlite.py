"""The SQLite engine: the contract kept in one database file that many processes share.

Every write is one short `BEGIN IMMEDIATE` ... `COMMIT` transaction (the file is in WAL mode, so
readers never wait for the writer); nothing sleeps while it holds the write lock. Each thread has
its own connection, reopened after a fork. A poll fires what is due, looks for a task with a plain
read, and only then takes the write lock to claim it, backing off between tries.

The engine logic and its SQL are shared with PostgreSQL (`sql.py`); this module holds only what is
SQLite's: the file, connections per thread, pragmas, error translation and in-process wake-ups.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import ConfigError, EngineError, EngineUnavailable
from .sql import APPLICATION, MIGRATIONS, SCHEMA, SCHEMA_VERSION, SQL, Dialect, SQLEngine
from .wake import WakeChannel

__all__ = ["APPLICATION", "MIGRATIONS", "SCHEMA", "SCHEMA_VERSION", "SQL", "SQLITE_DIALECT", "SQLiteEngine"]

SQLITE_DIALECT = Dialect(
    name="sqlite",
    types={"pk": "INTEGER PRIMARY KEY AUTOINCREMENT", "real": "REAL", "ref": "INTEGER", "bytes": "BLOB", "int64": "INTEGER"},
)
_BEGIN = {True: "BEGIN IMMEDIATE", False: "BEGIN"}
_LIST_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite!_%' ESCAPE '!'"

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
_FIRST_BACKOFF, _MAX_BACKOFF, _CHANNEL_BACKOFF = 0.002, 0.05, 1.0


def _error_name(exc: sqlite3.Error) -> str:
    name = getattr(exc, "sqlite_errorname", None)
    return name or next((v for k, v in _MESSAGES.items() if k in str(exc)), "")


class SQLiteEngine(SQLEngine):
    schemes = ("sqlite",)
    shared = True
    dialect = SQLITE_DIALECT
    unique_errors = (sqlite3.IntegrityError,)

    def __init__(
        self,
        path: str,
        clock: Callable[[], float] | None = None,
        synchronous: str = "NORMAL",
        prepare: bool = True,
        wake_channel: bool = True,
    ) -> None:
        super().__init__(clock)
        self.path = os.fspath(path)
        self.where = self.path
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
        # Wakes pollers in other processes when a commit made work ready (see `wake`).
        self._channel = WakeChannel(self.path) if WakeChannel.available and wake_channel else None
        self._conns: list[tuple[threading.Thread, sqlite3.Connection, int]] = []  # thread, connection, pid
        self._generation = 0
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise EngineUnavailable(f"cannot open {self.path}: directory {parent} does not exist")
        if os.path.isdir(self.path):
            raise EngineUnavailable(f"cannot open {self.path}: it is a directory, not a SQLite database file")
        if prepare:
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
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        with self._guard():
            conn = self._conn()
            conn.execute(_BEGIN[write])
            self._tx.made_work = False
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if write:
                with self._wake:
                    self._commits += 1
                    self._wake.notify_all()
                if self._tx.made_work and self._channel is not None:
                    self._channel.notify()

    def _run(
        self,
        fn: Callable[[Any], Any],
        write: bool = True,
        retry_after_commit: bool = True,
        durable: bool = True,
    ) -> Any:
        """One short transaction (`BEGIN IMMEDIATE` to write); an exception rolls all of it back."""
        self._begin()
        with self._transaction(write) as conn:
            return fn(conn)

    def _query_one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self._guard():
            return self._conn().execute(sql, params).fetchone()

    def _tables(self, conn: Any) -> list[str]:
        return [r[0] for r in conn.execute(_LIST_TABLES)]

    # -- waiting for work ------------------------------------------------------------------------

    def _wake_token(self, kind: str, task_list: str) -> int:
        return self._commits

    def _note(self, kind: str, task_list: str) -> None:
        self._tx.made_work = True

    def _wait_for_wake(self, kind: str, task_list: str, token: Any, timeout: float) -> None:
        if self._channel is not None:
            if self._commits == token:  # every process's new work arrives through the channel
                self._channel.wait(timeout)
            return
        with self._wake:
            if self._commits == token:  # nothing committed here since the peek: wait for news
                self._wake.wait(timeout)

    def wake_waiter(self, kind: str, task_list: str) -> _Waiter:
        """Wake-ups from every process on this file (the wake channel), or, without the channel,
        from this process's own commits only (then `reliable` is False)."""
        return _Waiter(self)

    def _pause(self, attempt: int) -> float:
        """How long an idle poller waits before it looks again by itself: with the wake channel,
        up to a second (wake-ups bring new work sooner); without it, 2 ms growing to 50 ms."""
        ceiling = _CHANNEL_BACKOFF if self._channel is not None else _MAX_BACKOFF
        return min(_FIRST_BACKOFF * 2**attempt, ceiling)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        with self._lock:
            conns, self._conns = self._conns, []
            self._generation += 1
        for _, conn, pid in conns:
            if pid == os.getpid():  # a connection inherited through fork belongs to the parent
                conn.close()


class _Waiter:
    """`SQLiteEngine.wake_waiter`: the channel, or this process's commit counter without one.
    Not per task list: a commit that made work anywhere wakes it (the poller then looks, cheaply)."""

    def __init__(self, engine: SQLiteEngine) -> None:
        self._engine = engine
        self._seen: int | None = None

    @property
    def reliable(self) -> bool:
        return self._engine._channel is not None

    def wait(self, timeout: float) -> bool:
        engine, channel = self._engine, self._engine._channel
        if self._seen is None:  # first call: register, then have the poller look once
            if channel is not None:
                channel.register()
            self._seen = engine._commits
            return True
        if channel is not None:
            return channel.wait(timeout)
        with engine._wake:
            if engine._commits == self._seen:
                engine._wake.wait(timeout)
            woken, self._seen = engine._commits != self._seen, engine._commits
        return woken
