"""Task queues in a database table, with SQS's semantics: SQLite and PostgreSQL share this code.

One table, `steadyflow_task_messages`, holds the messages of every queue of the database, apart
from the workflow engine's tables. A message is visible when `visible_at <= now`. Receiving one
claims it in a transaction (`BEGIN IMMEDIATE` on SQLite, `FOR UPDATE SKIP LOCKED` on PostgreSQL):
`visible_at` moves to now + the visibility timeout, `receive_count` goes up by one and a new
`receipt` is drawn. Like an SQS receipt handle, the receipt is what `change_visibility()` and
`delete()` must present: a consumer whose claim lapsed and was taken over can no longer extend or
delete the message (`ReceiptExpired`; a stale delete is a logged no-op, as on SQS).

Dead letters stay in the same table, moved to the queue `<queue>-dead-letter` with the reason
and the source queue, so a dead-letter queue is a queue like any other. A consumer moves a message
there when it cannot be a task, and the claim itself moves a message received `max_receives`
times already (the queue URL's `max_receives=N`; no limit when absent, as on SQS without a
redrive policy).

Time is the database's clock (`julianday('now')` / `clock_timestamp()`), so consumers on
several hosts agree on visibility. Messages are ordered by `priority` (higher first), then by
the order they were sent. All SQL is parameterised; identifiers are fixed or validated.

A queue may have concurrency, rate and per-key limits, enforced by the claim (`sqllimits.py`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from .backend import DEAD_LETTER_SUFFIX, Backend, DeadLetter
from .errors import ReceiptExpired
from .sqllimits import QueueLimitsMixin, limits_statements

logger = logging.getLogger("steadyflow.tasks")

TABLE = "steadyflow_task_messages"
META = "steadyflow_task_meta"
SCHEMA_VERSION = 2
"""1: messages; 2: limits (`sqllimits.py`). Older tables are brought up to date when a queue opens."""
_COLUMNS = "seq, message_id, body, attributes, receive_count, sent_at, first_received_at, source_queue, dead_letter_reason, dead_lettered_at"


class SQLMessage:
    """A received message, shaped like boto3's `sqs.Message`."""

    def __init__(self, queue: SQLQueue, row: tuple, receipt: str | None, visible_until: float | None) -> None:
        (_, self.message_id, self.body, attrs, count, sent_at, first_received, *_rest) = row
        self._queue = queue
        self.queue_url = queue.url
        self.receipt_handle = receipt
        self.message_attributes = json.loads(attrs or "{}")
        self.attributes = {
            "ApproximateReceiveCount": str(count),
            "SentTimestamp": str(int(sent_at * 1000)),
            "ApproximateFirstReceiveTimestamp": str(int((first_received or time.time()) * 1000)),
        }
        self.visible_until = visible_until
        """Local `time.monotonic()` when the claim lapses, as far as this process knows."""

    def change_visibility(self, VisibilityTimeout: float) -> None:  # noqa: N803 - boto3's spelling
        self._queue.change_visibility(self, VisibilityTimeout)

    def delete(self) -> None:
        self._queue.delete_message(self)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_queue": None}

    def __repr__(self) -> str:
        return f"SQLMessage(id={self.message_id}, queue={self.queue_url})"


class SQLQueue(QueueLimitsMixin, Backend, ABC):
    """The SQL of a task queue; subclasses supply connections and the dialect's few differences."""

    supports_priority = True
    placeholder = "?"
    now_sql = ""
    claim_lock = ""
    dialect = ""

    def __init__(self, url: str, display_url: str, queue_name: str, max_receives: int | None) -> None:
        self.url = display_url
        self.queue_name = queue_name
        self.dead_queue_name = queue_name + DEAD_LETTER_SUFFIX
        self.max_receives = max_receives
        self.queue = self  # sqstaskmaster's `TaskManager.queue`: send_message/receive_messages below
        self.on_claim: Callable[[str], None] | None = None
        self._lock = threading.RLock()
        self._table = TABLE

    # -- dialect hooks --------------------------------------------------------------------------

    @abstractmethod
    def _transaction(self, immediate: bool = False) -> AbstractContextManager[Any]:
        """A transaction on this process's connection; yields an object with `execute(sql, params)`."""

    def _statement(self) -> AbstractContextManager[Any]:
        """Where one data-changing statement runs: its own transaction (PostgreSQL: autocommit)."""
        return self._transaction()

    @abstractmethod
    def _wait(self, timeout: float) -> None:
        """Sleep up to `timeout` seconds, waking early when a message may have arrived."""

    def _notify(self, conn: Any, queue_name: str) -> None:
        """Tell waiting consumers (inside the sending transaction) that `queue_name` has a message."""

    def _sql(self, text: str) -> str:
        text = text.replace("{t}", self._table).replace("{now}", self.now_sql)
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def _rows(self, conn: Any, text: str, params: tuple = ()) -> list[tuple]:
        return list(conn.execute(self._sql(text), params).fetchall())

    def _exec(self, conn: Any, text: str, params: tuple = ()) -> int:
        return conn.execute(self._sql(text), params).rowcount

    # -- sending --------------------------------------------------------------------------------

    def send(self, body: str, message_attributes: dict[str, Any], *, delay: float = 0, priority: int = 0,
             limit_key: str | None = None) -> dict[str, Any]:
        message_id = str(uuid.uuid4())
        with self._transaction() as conn:
            self._exec(
                conn,
                "INSERT INTO {t} (message_id, queue, body, attributes, priority, sent_at, visible_at, limit_key)"
                " VALUES (?, ?, ?, ?, ?, {now}, {now} + ?, ?)",
                (message_id, self.queue_name, body, json.dumps(message_attributes), int(priority), float(delay),
                 limit_key),
            )
            if not delay:
                self._notify(conn, self.queue_name)
        return {"MessageId": message_id}

    def send_many(self, bodies: list[str], message_attributes: dict[str, Any], *, delay: float = 0,
                  priority: int = 0, limit_key: str | None = None) -> list[str]:
        ids = [str(uuid.uuid4()) for _ in bodies]
        attributes = json.dumps(message_attributes)
        with self._transaction() as conn:
            for message_id, body in zip(ids, bodies):
                self._exec(
                    conn,
                    "INSERT INTO {t} (message_id, queue, body, attributes, priority, sent_at, visible_at, limit_key)"
                    " VALUES (?, ?, ?, ?, ?, {now}, {now} + ?, ?)",
                    (message_id, self.queue_name, body, attributes, int(priority), float(delay), limit_key),
                )
            if not delay and ids:
                self._notify(conn, self.queue_name)
        return ids

    def send_message(self, MessageBody: str, MessageAttributes: dict | None = None, DelaySeconds: float = 0,  # noqa: N803
                     Priority: int = 0) -> dict[str, Any]:  # noqa: N803
        """boto3's `Queue.send_message` spelling, for code that used `TaskManager.queue` directly."""
        return self.send(MessageBody, MessageAttributes or {}, delay=DelaySeconds, priority=Priority)

    # -- receiving ------------------------------------------------------------------------------

    def receive(self, *, max_messages: int, wait_time: float, visibility_timeout: float,
                stop: Callable[[], bool] | None = None) -> list[Any]:
        deadline = time.monotonic() + max(0.0, wait_time)
        # Every receipt this call hands out starts with `base`: a consumer's supervisor that knows it
        # (`on_claim`) can hand back what a consumer that died in the middle of a claim had claimed.
        base = uuid.uuid4().hex
        if self.on_claim is not None:
            self.on_claim(base)
        while True:
            held_back = None
            if self.limits() is None:
                messages = self._claim(max_messages, visibility_timeout, base)
            else:
                messages, held_back = self._claim_limited(max_messages, visibility_timeout, base)
            remaining = deadline - time.monotonic()
            if messages or remaining <= 0 or (stop is not None and stop()):
                return messages
            if held_back is None:
                self._wait(min(remaining, 1.0))
            else:  # a limit, not an empty queue: look again when it may let one through
                time.sleep(min(remaining, held_back, 1.0))

    def _message(self, row: tuple, receipt: str, visible_until: float) -> SQLMessage:
        return SQLMessage(self, row, receipt, visible_until)

    def receive_messages(self, MaxNumberOfMessages: int = 1, WaitTimeSeconds: float = 0,  # noqa: N803
                         VisibilityTimeout: float = 30, **_: Any) -> list[Any]:  # noqa: N803
        """boto3's `Queue.receive_messages` spelling."""
        return self.receive(max_messages=MaxNumberOfMessages, wait_time=WaitTimeSeconds, visibility_timeout=VisibilityTimeout)

    def _claim(self, count: int, visibility_timeout: float, base: str) -> list[SQLMessage]:
        claimed: list[SQLMessage] = []
        with self._transaction(immediate=True) as conn:
            for _ in range(100):  # each round moves at least one over-received message, or ends
                rows = self._rows(
                    conn,
                    # `+visible_at`: walk the ready index in order; SQLite would otherwise pick the
                    # (queue, visible_at) index and sort the whole backlog on every claim.
                    f"SELECT {_COLUMNS} FROM {{t}} WHERE queue = ? AND +visible_at <= {{now}}"
                    f" ORDER BY priority DESC, seq LIMIT ?{self.claim_lock}",
                    (self.queue_name, count - len(claimed)),
                )
                moved = 0
                for row in rows:
                    if self.max_receives and row[4] >= self.max_receives:
                        self._move_dead(conn, row[0], f"received {row[4]} times (max_receives={self.max_receives})")
                        moved += 1
                        continue
                    receipt = f"{base}-{row[0]}"
                    self._exec(
                        conn,
                        "UPDATE {t} SET visible_at = {now} + ?, receive_count = receive_count + 1, receipt = ?,"
                        " first_received_at = COALESCE(first_received_at, {now}) WHERE seq = ?",
                        (float(visibility_timeout), receipt, row[0]),
                    )
                    first = row[6] if row[6] is not None else time.time()
                    claimed.append(SQLMessage(self, (*row[:4], row[4] + 1, row[5], first), receipt,
                                              time.monotonic() + visibility_timeout))
                if not moved or len(claimed) >= count:
                    break
        return claimed

    def change_visibility(self, message: SQLMessage, seconds: float) -> None:
        with self._statement() as conn:
            changed = self._exec(
                conn, "UPDATE {t} SET visible_at = {now} + ? WHERE message_id = ? AND receipt = ?",
                (float(seconds), message.message_id, message.receipt_handle),
            )
        if not changed:
            raise ReceiptExpired(f"message {message.message_id} was redelivered or deleted: its receipt has expired")
        message.visible_until = time.monotonic() + seconds

    def delete_message(self, message: SQLMessage) -> None:
        with self._statement() as conn:
            deleted = self._exec(conn, "DELETE FROM {t} WHERE message_id = ? AND receipt = ?",
                                 (message.message_id, message.receipt_handle))
        if not deleted:
            self._not_deleted(message)

    def delete_many(self, messages: list[Any]) -> list[tuple[Any, BaseException]]:
        """One transaction for all of them."""
        if len(messages) <= 1 or not all(isinstance(m, SQLMessage) for m in messages):
            return super().delete_many(messages)
        with self._transaction() as conn:
            missed = [m for m in messages if not self._exec(conn, "DELETE FROM {t} WHERE message_id = ? AND receipt = ?",
                                                             (m.message_id, m.receipt_handle))]
        for message in missed:
            self._not_deleted(message)
        return []

    def delete_handles(self, handles: list[tuple[str, str]]) -> int:
        with self._transaction() as conn:
            return sum(self._exec(conn, "DELETE FROM {t} WHERE message_id = ? AND receipt = ?", h) for h in handles)

    def release_claim(self, base: str) -> int:
        with self._transaction() as conn:
            released = self._exec(conn, "UPDATE {t} SET visible_at = {now} WHERE queue = ? AND receipt LIKE ?"
                                  " AND visible_at > {now}", (self.queue_name, base + "-%"))
            if released:
                self._notify(conn, self.queue_name)
        return released

    def release_handles(self, handles: list[tuple[str, str]]) -> int:
        with self._transaction() as conn:
            released = sum(self._exec(conn, "UPDATE {t} SET visible_at = {now} WHERE message_id = ? AND receipt = ?", h)
                           for h in handles)
            if released:
                self._notify(conn, self.queue_name)
        return released

    @staticmethod
    def _not_deleted(message: SQLMessage) -> None:
        logger.warning("message %s was not deleted: it was redelivered after its visibility timeout "
                       "or deleted already", message.message_id)

    # -- dead letters ---------------------------------------------------------------------------

    def _move_dead(self, conn: Any, seq: int, reason: str) -> None:
        self._exec(
            conn,
            "UPDATE {t} SET queue = ?, source_queue = queue, dead_letter_reason = ?, dead_lettered_at = {now},"
            " visible_at = {now}, receipt = NULL WHERE seq = ?",
            (self.dead_queue_name, reason, seq),
        )
        logger.warning("message seq %s moved to %s: %s", seq, self.dead_queue_name, reason)

    def dead_letter(self, message: Any, reason: str) -> None:
        with self._transaction() as conn:
            rows = self._rows(conn, "SELECT seq FROM {t} WHERE message_id = ? AND receipt = ?",
                              (message.message_id, message.receipt_handle))
            if not rows:
                raise ReceiptExpired(f"message {message.message_id} was redelivered or deleted: cannot dead-letter it")
            self._move_dead(conn, rows[0][0], reason)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self._transaction() as conn:
            rows = self._rows(conn, f"SELECT {_COLUMNS} FROM {{t}} WHERE queue = ? ORDER BY seq LIMIT ?",
                              (self.dead_queue_name, int(limit)))
        return [DeadLetter(message_id=r[1], body=r[2], reason=r[8] or "", receive_count=r[4], source_queue=r[7],
                           dead_lettered_at=r[9], attributes=json.loads(r[3] or "{}")) for r in rows]

    def retry_dead_letters(self, message_ids: list[str] | None = None) -> int:
        sql = ("UPDATE {t} SET queue = ?, source_queue = NULL, dead_letter_reason = NULL, dead_lettered_at = NULL,"
               " receive_count = 0, first_received_at = NULL, receipt = NULL, visible_at = {now} WHERE queue = ?")
        moved = 0
        with self._transaction(immediate=True) as conn:
            if message_ids is None:
                moved = self._exec(conn, sql, (self.queue_name, self.dead_queue_name))
            else:
                for message_id in message_ids:
                    moved += self._exec(conn, sql + " AND message_id = ?", (self.queue_name, self.dead_queue_name, message_id))
            if moved:
                self._notify(conn, self.queue_name)
        return moved

    def purge_dead_letters(self) -> int:
        with self._transaction() as conn:
            return self._exec(conn, "DELETE FROM {t} WHERE queue = ?", (self.dead_queue_name,))

    # -- queue ----------------------------------------------------------------------------------

    def attributes(self) -> dict[str, Any]:
        with self._transaction() as conn:
            (visible, in_flight, delayed), = self._rows(
                conn,
                "SELECT COALESCE(SUM(CASE WHEN visible_at <= {now} THEN 1 ELSE 0 END), 0),"
                " COALESCE(SUM(CASE WHEN visible_at > {now} AND receipt IS NOT NULL THEN 1 ELSE 0 END), 0),"
                " COALESCE(SUM(CASE WHEN visible_at > {now} AND receipt IS NULL THEN 1 ELSE 0 END), 0)"
                " FROM {t} WHERE queue = ?",
                (self.queue_name,),
            )
            (dead,), = self._rows(conn, "SELECT COUNT(*) FROM {t} WHERE queue = ?", (self.dead_queue_name,))
        return {
            "QueueArn": f"steadyflow:{self.dialect}:{self.queue_name}",
            "ApproximateNumberOfMessages": str(visible),
            "ApproximateNumberOfMessagesNotVisible": str(in_flight),
            "ApproximateNumberOfMessagesDelayed": str(delayed),
            "DeadLetterMessages": str(dead),
            "MaxReceives": str(self.max_receives or 0),
            "FifoQueue": "false",
        }

    def load(self) -> None:
        """boto3's `Queue.load()`; `attributes()` reads fresh figures anyway."""

    def purge(self) -> None:
        with self._transaction() as conn:
            self._exec(conn, "DELETE FROM {t} WHERE queue = ?", (self.queue_name,))

    # -- schema ---------------------------------------------------------------------------------

    def _schema_statements(self, types: dict[str, str]) -> Iterator[str]:
        yield (
            f"CREATE TABLE IF NOT EXISTS {{t}} (seq {types['pk']}, message_id TEXT NOT NULL UNIQUE,"
            " queue TEXT NOT NULL, body TEXT NOT NULL, attributes TEXT NOT NULL DEFAULT '{}',"
            f" priority INTEGER NOT NULL DEFAULT 0, sent_at {types['real']} NOT NULL,"
            f" visible_at {types['real']} NOT NULL, receive_count INTEGER NOT NULL DEFAULT 0,"
            f" first_received_at {types['real']}, receipt TEXT, source_queue TEXT, dead_letter_reason TEXT,"
            f" dead_lettered_at {types['real']})"
        )
        yield f"CREATE INDEX IF NOT EXISTS {TABLE}_ready ON {{t}} (queue, priority DESC, seq)"
        yield f"CREATE TABLE IF NOT EXISTS {self._table.replace(TABLE, META)} (key TEXT PRIMARY KEY, value TEXT NOT NULL)"

    def _migrate(self, conn: Any, real: str) -> None:
        """Bring the tables (created above as version 1) up to `SCHEMA_VERSION`, inside the caller's
        schema transaction (which holds SQLite's write lock or PostgreSQL's DDL advisory lock)."""
        meta = self._table.replace(TABLE, META)
        rows = self._rows(conn, f"SELECT value FROM {meta} WHERE key = 'schema_version'")
        if not rows:
            self._exec(conn, f"INSERT INTO {meta} (key, value) VALUES ('schema_version', '1')")
        version = int(rows[0][0]) if rows else 1
        steps = {2: limits_statements(real)}
        for number in range(version + 1, SCHEMA_VERSION + 1):
            for statement in steps[number]:
                self._exec(conn, self._limits_sql(statement))
            self._exec(conn, f"UPDATE {meta} SET value = ? WHERE key = 'schema_version'", (str(number),))

