"""Task queues in a SQLite file: `sqlite:///path/to/file.db?queue=NAME&max_receives=N`.

WAL mode, so producers and consumers in many processes of one machine share the file; claims take
the write lock up front (`BEGIN IMMEDIATE`) so two consumers never claim the same row, and
`busy_timeout` makes them queue for it instead of failing. `synchronous=NORMAL`: a committed
message survives a crash of any process (not a power cut, which needs `synchronous=FULL`).

Each process opens its own connection: after a `fork` the inherited one is left untouched (never
used or closed in the child, as SQLite requires) and a new one is opened. Waiting consumers poll,
backing off from 10 ms to 250 ms; a send from the same process wakes them at once.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .sqlqueue import SQLQueue

BUSY_TIMEOUT_MS = 60_000
_MIN_POLL, _MAX_POLL = 0.01, 0.25
_inherited: list[Any] = []
"""Connections inherited through `fork`: kept referenced so the child never closes them."""


class SQLiteQueue(SQLQueue):
    placeholder = "?"
    now_sql = "((julianday('now') - 2440587.5) * 86400.0)"
    claim_lock = ""
    dialect = "sqlite"

    def __init__(self, path: str, display_url: str, queue_name: str, max_receives: int | None) -> None:
        super().__init__(path, display_url, queue_name, max_receives)
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._wake = threading.Event()
        self._poll = _MIN_POLL
        with self._transaction(immediate=True) as conn:
            for statement in self._schema_statements({"pk": "INTEGER PRIMARY KEY AUTOINCREMENT", "real": "REAL"}):
                conn.execute(self._sql(statement))
            self._migrate(conn, "REAL")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            if self._conn is not None:
                _inherited.append(self._conn)
            directory = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(directory, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    @contextmanager
    def _transaction(self, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _notify(self, conn: Any, queue_name: str) -> None:
        self._wake.set()

    def _claim(self, count, visibility_timeout, base):
        messages = super()._claim(count, visibility_timeout, base)
        self._poll = _MIN_POLL if messages else min(_MAX_POLL, self._poll * 2)
        return messages

    def _wait(self, timeout: float) -> None:
        if self._wake.wait(min(timeout, self._poll)):
            self._wake.clear()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
