"""The worker consumer's book of the messages it holds, and its deletes, sent in batches.

Deletes. A message is still deleted only after its task succeeded; what changes is when. The
consumer notes it here, and the delete is sent while the consumer waits anyway — during the next
task's run in its child process — in one request for up to 10 messages (SQS `DeleteMessageBatch`;
one transaction on SQLite and PostgreSQL). A pending delete goes out at the latest `max_delay`
seconds after its task ended and `margin` seconds before the message's visibility runs out, and at
once when the queue has nothing more to hand out or the consumer stops.

Holdings. Under `steadyflow tasks worker`, the book is also written, after each change, to memory
the supervisor shares with the consumer (`SharedSlot`): which messages the consumer received and
has not settled, which of them succeeded and wait for their delete, and the pid of the task's
child process. When the consumer dies (SIGKILL, a crash), the supervisor `settle()`s that record:
it deletes the messages whose tasks succeeded and makes the others visible again at once — once
the task's child process is gone, so a task never runs twice at the same time — instead of leaving
them invisible for their whole visibility timeout. Whatever it cannot settle (the record is gone
with the whole worker, a request fails) comes back after its visibility timeout and runs again:
delivery stays at-least-once, as for a consumer that dies just before deleting.
"""

from __future__ import annotations

import json
import logging
import math
import mmap
import os
import signal
import struct
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("steadyflow.tasks")

OnError = Callable[[BaseException], None]
BATCH = 10  # SQS's limit per DeleteMessageBatch / ChangeMessageVisibilityBatch


class SharedSlot:
    """A consumer's record, in anonymous shared memory made by the supervisor before it forks.

    Two fields, each in two halves with a one-byte index of the complete one: the consumer writes the
    other half, then flips the index, so a consumer killed in the middle of a write leaves the previous
    value whole. One field is the pid of the task's child process (written twice per task, so cheap),
    the other the messages, as JSON.
    """

    SIZE = 1 << 18
    _RECORD = 32
    _HALF = (SIZE - _RECORD) // 2

    def __init__(self) -> None:
        self.buf = mmap.mmap(-1, self.SIZE)  # MAP_SHARED: forked children write, the parent reads

    def clear(self) -> None:
        self.write_child(None)
        self.write(b"")

    def write_child(self, pid: int | None) -> None:
        half = 1 - self.buf[0]
        struct.pack_into("<q", self.buf, 8 + 8 * half, pid or 0)
        self.buf[0] = half

    def read_child(self) -> int | None:
        (pid,) = struct.unpack_from("<q", self.buf, 8 + 8 * self.buf[0])
        return pid or None

    def write(self, data: bytes) -> None:
        if len(data) > self._HALF - 4:
            data = b""  # too much to record: the supervisor leaves those messages to their timeout
        half = 1 - self.buf[24]
        offset = self._RECORD + half * self._HALF
        struct.pack_into("<I", self.buf, offset, len(data))
        self.buf[offset + 4:offset + 4 + len(data)] = data
        self.buf[24] = half

    def read(self) -> bytes:
        offset = self._RECORD + self.buf[24] * self._HALF
        (length,) = struct.unpack_from("<I", self.buf, offset)
        return bytes(self.buf[offset + 4:offset + 4 + min(length, self._HALF - 4)])


def _handle(message: Any) -> str:
    """`[message_id, receipt_handle]` as JSON ("" when the message has no receipt)."""
    message_id, receipt = getattr(message, "message_id", None), getattr(message, "receipt_handle", None)
    return json.dumps([str(message_id), str(receipt)]) if message_id and receipt else ""


class MessageBook:
    """Messages a consumer holds; deletes it defers and batches (see the module docstring)."""

    def __init__(self, backend: Any, max_delay: float = 0.5, margin: float = 2.0,
                 shared: SharedSlot | None = None) -> None:
        self.backend = backend
        self.max_delay = max_delay
        self.margin = margin
        self.shared = shared
        # id(message) -> (message, its handle): received and not settled; of those, succeeded (to delete)
        self._held: dict[int, tuple[Any, str]] = {}
        self._done: dict[int, tuple[Any, str]] = {}
        self._pending: list[tuple[Any, OnError]] = []  # succeeded, to delete, in order
        self._due = math.inf
        self._claim: str | None = None
        if getattr(backend, "on_claim", False) is None:  # a database queue: note each claim before it is made
            backend.on_claim = self.claiming

    # -- holdings -------------------------------------------------------------------------------

    def claiming(self, base: str) -> None:
        """A receive is about to claim messages, with receipts that start with `base`."""
        self._claim = base
        self._publish()

    def received(self, messages: list[Any]) -> None:
        for message in messages:
            self._held[id(message)] = (message, _handle(message) if self.shared is not None else "")
        self._claim = None
        self._publish()

    def released(self, message: Any) -> None:
        """The consumer is done with a message without deleting it (failed, handed back, dead-lettered)."""
        if self._held.pop(id(message), None) is not None:
            self._publish()

    def finished(self, message: Any) -> None:
        """The consumer is done with a message: released unless its delete is pending."""
        if id(message) not in self._done:
            self.released(message)

    def child(self, pid: int | None) -> None:
        """The pid of the child process running the current task (None when it has ended)."""
        if self.shared is not None:
            self.shared.write_child(pid)

    def _publish(self) -> None:
        if self.shared is None:
            return
        held = ",".join(h for _, h in self._held.values() if h)
        done = ",".join(h for _, h in self._done.values() if h)
        self.shared.write(f'{{"claim": {json.dumps(self._claim)}, "held": [{held}], "done": [{done}]}}'.encode())

    # -- deletes --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._pending)

    def succeeded(self, message: Any, on_error: OnError) -> None:
        """Its task succeeded: delete it soon; `on_error(exception)` if that fails (it then comes back)."""
        now = time.monotonic()
        due = now + self.max_delay
        until = getattr(message, "visible_until", None)
        if isinstance(until, (int, float)):
            due = min(due, until - self.margin)
        entry = self._held.pop(id(message), None) or (message, _handle(message) if self.shared is not None else "")
        self._done[id(message)] = entry
        self._pending.append((message, on_error))
        self._due = min(self._due, max(now, due))
        self._publish()

    def due(self) -> float:
        """`time.monotonic()` by which the pending deletes must be sent (infinity when none)."""
        return self._due

    def while_running(self, now: float) -> float:
        """Called by the supervising loop while a task's child runs: flush a full batch, or when due.

        Returns when to be called again (infinity when nothing is pending).
        """
        if self._pending and (len(self._pending) >= BATCH or now >= self._due):
            self.flush()
        return self._due

    def flush(self) -> None:
        """Delete every pending message now (errors go to each message's `on_error`)."""
        if not self._pending:
            return
        pending, self._pending, self._due = self._pending, [], math.inf
        for start in range(0, len(pending), BATCH):
            chunk = pending[start:start + BATCH]
            try:
                failures = self.backend.delete_many([message for message, _ in chunk])
            except Exception as exc:  # noqa: BLE001 - they come back after their visibility timeout
                failures = [(message, exc) for message, _ in chunk]
            callbacks = {id(message): on_error for message, on_error in chunk}
            for message, exc in failures:
                try:
                    callbacks[id(message)](exc)
                except Exception:  # noqa: BLE001 - a failing notify() must not stop the consumer
                    logger.exception("on_error for message %s raised", getattr(message, "message_id", "?"))
            for message, _ in chunk:
                self._done.pop(id(message), None)
        self._publish()


# -- the supervisor's side -----------------------------------------------------------------------------


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] in (b"Z", b"X")
    except FileNotFoundError:
        return True
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def holds_any(data: bytes) -> bool:
    """Whether a record (`SharedSlot.read()`) names any message."""
    try:
        record = json.loads(data or b"{}")
    except ValueError:
        return False
    return bool(record.get("held") or record.get("done") or record.get("claim"))


def settle(data: bytes, child: int | None, backend: Any, child_wait: float = 5.0) -> tuple[int, int]:
    """Settle what a consumer that died held (`SharedSlot.read()`, `.read_child()`): delete the
    messages whose tasks succeeded, hand back the others.

    Returns (deleted, handed back). Never raises: what is not settled comes back on its own.
    """
    try:
        record = json.loads(data or b"{}")
    except ValueError:
        return 0, 0
    done = [tuple(h) for h in record.get("done", [])]
    held = [tuple(h) for h in record.get("held", [])]
    deleted = handed_back = 0
    if record.get("claim"):  # it died during a receive: what that claimed was never run
        try:
            handed_back += backend.release_claim(record["claim"])
        except Exception as exc:  # noqa: BLE001
            logger.warning("could not hand back the messages a dead consumer was receiving (%s: %s)",
                           type(exc).__name__, exc)
    if done:
        try:
            deleted = backend.delete_handles(done)
        except Exception as exc:  # noqa: BLE001
            logger.warning("could not delete %d messages of a dead consumer (%s: %s); they will run again",
                           len(done), type(exc).__name__, exc)
    if held and child:
        # The task's child process got SIGKILL when the consumer died (PR_SET_PDEATHSIG); what it may
        # have started in its process group did not: stop that too before the task can run again.
        try:
            os.killpg(int(child), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        deadline = time.monotonic() + child_wait
        while not _gone(int(child)):
            if time.monotonic() > deadline:
                logger.warning("the task process %s of a dead consumer is still running: its messages are left "
                               "to come back after their visibility timeout", child)
                return deleted, handed_back
            time.sleep(0.005)
    if held:
        try:
            handed_back += backend.release_handles(held)
        except Exception as exc:  # noqa: BLE001
            logger.warning("could not hand back %d messages of a dead consumer (%s: %s); they come back after "
                           "their visibility timeout", len(held), type(exc).__name__, exc)
    return deleted, handed_back
