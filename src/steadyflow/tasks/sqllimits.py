"""How a database queue enforces its limits when it hands messages out (mixed into `SQLQueue`).

A queue with limits has a row in `steadyflow_task_limits`. A claim on it first locks that row
(`BEGIN IMMEDIATE` on SQLite, `SELECT ... FOR UPDATE` on PostgreSQL), so claims of one queue take
turns however many consumers and hosts make them, and the counts it reads cannot be raced past:

- concurrency: messages received and still invisible (in flight: being handled, or not yet
  deleted) count; one whose visibility lapsed (its consumer died) frees its place;
- rate: a token bucket in the row (`engines.limits.refill`, the workflow task lists' bucket);
- per key: the key of each claimed message is written to its row (`claim_key`), the in-flight
  ones with the same key are counted. A message without a key is not limited by it.

A queue without limits pays one primary-key read per receive and claims as before.
"""

from __future__ import annotations

import time
from typing import Any

from ..engines.limits import refill
from ..errors import ConfigError
from .limits import QueueLimits

LIMITS_TABLE = "steadyflow_task_limits"
SCAN = 500
"""Ready messages a per-key claim looks through for one whose key has room."""
BUSY_RETRY = 0.05
"""Seconds before a consumer held back by a concurrency limit looks again."""

_LIMIT_COLUMNS = "concurrency, rate_count, rate_period, per_key, key_argument, tokens, refreshed"
_CANDIDATES = ("seq, message_id, body, attributes, receive_count, sent_at, first_received_at, source_queue,"
               " dead_letter_reason, dead_lettered_at, limit_key")


def limits_statements(real: str) -> list[str]:
    """Schema version 2 of the task tables: the limits table, and the keys of messages."""
    return [
        "ALTER TABLE {t} ADD COLUMN limit_key TEXT",
        "ALTER TABLE {t} ADD COLUMN claim_key TEXT",
        "CREATE INDEX IF NOT EXISTS steadyflow_task_messages_in_flight ON {t} (queue, visible_at)",
        f"CREATE TABLE IF NOT EXISTS {{l}} (queue TEXT PRIMARY KEY, concurrency INTEGER, rate_count INTEGER,"
        f" rate_period {real}, per_key INTEGER, key_argument TEXT, tokens {real} NOT NULL DEFAULT 1,"
        f" refreshed {real} NOT NULL DEFAULT 0)",
    ]


def _limits(queue: str, row: tuple) -> QueueLimits:
    return QueueLimits(queue, row[0], row[1], row[2], row[3], row[4])


class QueueLimitsMixin:
    """`set_limits`, `limits`, `clear_limits` and the limited claim of an `SQLQueue`."""

    supports_limits = True
    queue_name: str
    claim_lock: str
    dialect: str

    # provided by SQLQueue
    _transaction: Any
    _statement: Any
    _rows: Any
    _exec: Any
    _move_dead: Any
    _notify: Any
    _message: Any

    def _limits_sql(self, text: str) -> str:
        return text.replace("{l}", self._limits_table)

    @property
    def _limits_table(self) -> str:
        return self._table.replace("steadyflow_task_messages", LIMITS_TABLE)  # type: ignore[attr-defined]

    @property
    def _row_lock(self) -> str:
        return " FOR UPDATE" if self.dialect == "postgresql" else ""

    # -- configuring ----------------------------------------------------------------------------

    def set_limits(self, limits: QueueLimits) -> None:
        """Set (replace) this queue's limits; they hold from the next receive of any consumer."""
        if limits.queue != self.queue_name:
            raise ConfigError(f"limits of queue {limits.queue!r} given to queue {self.queue_name!r}")
        params = (limits.concurrency, limits.rate_count, limits.rate_period, limits.per_key, limits.key)
        with self._transaction(immediate=True) as conn:
            found = self._rows(conn, self._limits_sql(f"SELECT queue FROM {{l}} WHERE queue = ?{self._row_lock}"),
                               (self.queue_name,))
            if found:
                self._exec(conn, self._limits_sql("UPDATE {l} SET concurrency = ?, rate_count = ?, rate_period = ?,"
                                                  " per_key = ?, key_argument = ? WHERE queue = ?"),
                           (*params, self.queue_name))
            else:
                self._exec(conn, self._limits_sql("INSERT INTO {l} (queue, concurrency, rate_count, rate_period,"
                                                  " per_key, key_argument, tokens, refreshed)"
                                                  " VALUES (?, ?, ?, ?, ?, ?, 1, {now})"),
                           (self.queue_name, *params))
            self._notify(conn, self.queue_name)  # limits may have been raised: waiting consumers look again

    def limits(self) -> QueueLimits | None:
        """This queue's limits, None when it has none (one statement: every receive asks)."""
        with self._statement() as conn:
            rows = self._rows(conn, self._limits_sql(f"SELECT {_LIMIT_COLUMNS} FROM {{l}} WHERE queue = ?"),
                              (self.queue_name,))
        return _limits(self.queue_name, rows[0]) if rows else None

    def all_limits(self) -> list[QueueLimits]:
        """The limits of every queue in this database, by queue name."""
        with self._transaction() as conn:
            rows = self._rows(conn, self._limits_sql(f"SELECT queue, {_LIMIT_COLUMNS} FROM {{l}} ORDER BY queue"))
        return [_limits(r[0], r[1:]) for r in rows]

    def clear_limits(self) -> bool:
        """Remove this queue's limits; False when it had none."""
        with self._transaction(immediate=True) as conn:
            removed = self._exec(conn, self._limits_sql("DELETE FROM {l} WHERE queue = ?"), (self.queue_name,))
            if removed:
                self._notify(conn, self.queue_name)
        return bool(removed)

    # -- claiming -------------------------------------------------------------------------------

    def _claim_limited(self, count: int, visibility_timeout: float, base: str) -> tuple[list[Any], float | None]:
        """Claim up to `count` messages within the limits; also how long to wait before trying
        again when the limits (not an empty queue) held every message back (None: wait as usual)."""
        with self._transaction(immediate=True) as conn:
            rows = self._rows(conn, self._limits_sql(f"SELECT {_LIMIT_COLUMNS} FROM {{l}} WHERE queue = ?"
                                                     f"{self._row_lock}"), (self.queue_name,))
            (now,), = self._rows(conn, "SELECT {now}")
            limits = _limits(self.queue_name, rows[0]) if rows else None
            room, tokens = count, None
            if limits is not None and limits.concurrency is not None:
                room = min(room, limits.concurrency - self._in_flight(conn))
                if room <= 0:
                    return [], BUSY_RETRY
            interval = limits.interval if limits is not None else None
            if limits is not None and interval is not None:
                tokens = refill(float(rows[0][5]), float(rows[0][6]), now, limits.task_list_limits())
                if tokens < 1.0:
                    return [], (1.0 - tokens) * interval
                room = min(room, int(tokens))
            per_key = limits is not None and limits.per_key is not None
            candidates = self._rows(
                conn,
                f"SELECT {_CANDIDATES} FROM {{t}} WHERE queue = ? AND +visible_at <= {{now}}"  # the ready index
                f" ORDER BY priority DESC, seq LIMIT ?{self.claim_lock}",
                (self.queue_name, SCAN if per_key else room + 10),
            )
            claimed, running = [], {}
            for row in candidates:
                if len(claimed) >= room:
                    break
                max_receives = getattr(self, "max_receives", None)
                if max_receives and row[4] >= max_receives:
                    self._move_dead(conn, row[0], f"received {row[4]} times (max_receives={max_receives})")
                    continue
                key = limits.key_of(row[10], row[2]) if limits is not None else row[10]
                if per_key and key is not None:
                    if key not in running:
                        running[key] = self._in_flight(conn, key)
                    if running[key] >= limits.per_key:  # type: ignore[union-attr, operator]
                        continue
                    running[key] += 1
                receipt = f"{base}-{row[0]}"
                self._exec(
                    conn,
                    "UPDATE {t} SET visible_at = {now} + ?, receive_count = receive_count + 1, receipt = ?,"
                    " first_received_at = COALESCE(first_received_at, {now}), claim_key = ? WHERE seq = ?",
                    (float(visibility_timeout), receipt, key, row[0]),
                )
                first = row[6] if row[6] is not None else time.time()
                claimed.append(self._message((*row[:4], row[4] + 1, row[5], first), receipt,
                                             time.monotonic() + visibility_timeout))
            if tokens is not None and claimed:
                self._exec(conn, self._limits_sql("UPDATE {l} SET tokens = ?, refreshed = ? WHERE queue = ?"),
                           (tokens - len(claimed), now, self.queue_name))
        if not claimed and per_key and candidates:
            return [], BUSY_RETRY * 4  # every ready message's key is at its limit
        return claimed, None

    def _in_flight(self, conn: Any, key: str | None = None) -> int:
        """Messages of this queue received and still invisible (with this claim key, if given)."""
        sql = "SELECT COUNT(*) FROM {t} WHERE queue = ? AND visible_at > {now} AND receipt IS NOT NULL"
        params: tuple = (self.queue_name,)
        if key is not None:
            sql += " AND claim_key = ?"
            params += (key,)
        (n,), = self._rows(conn, sql, params)
        return int(n)
