"""State data in the SQLite or PostgreSQL engine's own database (`steadyflow_state_data`, schema v3).

The store borrows the engine's transactions through `engine.run_data`, so it gets the engine's
connections, retries and schema for free and needs no configuration of its own. Statements use
only what both databases speak (`?` placeholders converted by the engine, `ON CONFLICT ... DO
UPDATE`), so there is no dialect code here.

The column is TEXT, so there is no size limit and nothing spills to S3; py2sfn's 390,000-byte
threshold only exists because of DynamoDB's 400 KB item limit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .store import StateStore

_TABLE = "steadyflow_state_data"
_KEY = "table_name = ? AND partition_key = ?"
_UPSERT = (
    f"INSERT INTO {_TABLE} (table_name, partition_key, sort_key, expires_at, data) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (table_name, partition_key, sort_key)"
    " DO UPDATE SET expires_at = excluded.expires_at, data = excluded.data"
)
_GET = f"SELECT data FROM {_TABLE} WHERE {_KEY} AND sort_key = ?"
_GET_ALL = f"SELECT data FROM {_TABLE} WHERE {_KEY} ORDER BY sort_key"
_COUNT = f"SELECT count(*) FROM {_TABLE} WHERE {_KEY}"
_DELETE_EXPIRED = f"DELETE FROM {_TABLE} WHERE expires_at < ?"

Sql = Callable[[str], str]


class SQLStateStore(StateStore):
    """State data beside an SQL engine's tables; `engine` is any engine with `run_data`."""

    def __init__(self, engine: Any) -> None:
        if not hasattr(engine, "run_data"):
            raise TypeError(f"{type(engine).__name__} has no run_data(): not a steadyflow SQL engine")
        self.engine = engine

    def put(self, table: str, partition_key: str, index: int, text: str, expires_at: int) -> None:
        def write(conn: Any, sql: Sql) -> None:
            conn.execute(sql(_UPSERT), (table, partition_key, index, expires_at, text))

        self.engine.run_data(write, write=True)

    def put_many(self, table: str, partition_key: str, texts: list[str], expires_at: int) -> None:
        if not texts:
            return
        rows = [(table, partition_key, i, expires_at, text) for i, text in enumerate(texts)]

        def write(conn: Any, sql: Sql) -> None:
            conn.cursor().executemany(sql(_UPSERT), rows)

        self.engine.run_data(write, write=True)

    def get(self, table: str, partition_key: str, index: int) -> str | None:
        def read(conn: Any, sql: Sql) -> str | None:
            row = conn.execute(sql(_GET), (table, partition_key, index)).fetchone()
            return None if row is None else row[0]

        return self.engine.run_data(read, write=False)

    def get_all(self, table: str, partition_key: str) -> list[str]:
        def read(conn: Any, sql: Sql) -> list[str]:
            return [row[0] for row in conn.execute(sql(_GET_ALL), (table, partition_key)).fetchall()]

        return self.engine.run_data(read, write=False)

    def count(self, table: str, partition_key: str) -> int:
        def read(conn: Any, sql: Sql) -> int:
            return int(conn.execute(sql(_COUNT), (table, partition_key)).fetchone()[0])

        return self.engine.run_data(read, write=False)

    def purge_expired(self, now: float) -> int:
        # `expires_at` is whole seconds, so `< ceil(now)` is `< now` without mixing in a float.
        cutoff = math.ceil(now)

        def delete(conn: Any, sql: Sql) -> Any:
            return conn.execute(sql(_DELETE_EXPIRED), (cutoff,))

        cursor = self.engine.run_data(delete, write=True)
        # Read after the commit: inside psycopg's pipeline mode the count is only known once the
        # pipeline has synced (-1 before); SQLite knows it at once. RETURNING would need SQLite 3.35.
        return max(cursor.rowcount, 0)


__all__ = ["SQLStateStore"]
