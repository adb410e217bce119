"""A worker process that runs many tasks at once: `async def` activities on an asyncio event loop.

A child started with `async_concurrency` > 1 (`worker start --async-concurrency N`) accepts up to N
tasks from its supervisor at a time (the supervisor keeps the count) and serves them here:

- an `async def` activity runs as its own asyncio task on an event loop in a second thread of the
  child, so hundreds that wait on I/O run side by side. Each asyncio task has its own copy of the
  context, so `steadyflow.heartbeat()` and `context()` see that task alone. Its `alarm_timeout`
  cancels the coroutine (`asyncio.timeout`) and fails the attempt with `TimeoutError`: SIGALRM
  cannot target one coroutine among many;
- any other task (a plain function, a `TaskHandler`) runs in the child's main thread exactly as in
  a one-task child: one at a time, in arrival order, under SIGALRM for its alarm. A plain task
  that arrives while another runs waits its turn; the supervisor prefers to hand plain tasks to
  children that are not running one.

The loop thread alone reads the pipe; it records cancellation requests per task token, which the
activity sees at its next `heartbeat()` or `cancel_requested`. Writes to the pipe from both
threads go through one lock. Each task starts with `("started", token)`, from which the supervisor
counts its hard timeout (a plain task may have waited in the queue before that).

A hard timeout kills the whole process: every task in flight there fails with it (the one that
overran with `TimeoutError: hard_timeout ...`, the others with `process <pid> died: ...`) and the
workflows' retry policies decide what follows. An `async def` activity that blocks the loop (CPU
work or a blocking call without `await`) holds up every other coroutine of the process and cannot
be cancelled by its alarm until it yields; only the hard timeout stops it.

Alternatives rejected: running plain tasks in a thread pool beside the loop (SIGALRM reaches the
main thread only, so their alarm would stop working, and "one at a time per process" is what plain
activities were written against); running the loop in the main thread (the same loss for plain
tasks, or a loop blocked by each of them).
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from ..activity import Activity, find_activity
from .child import ChildConfig, heartbeat_text, resident_bytes
from .runner import Outcome, is_async, run_task, run_task_async

log = logging.getLogger("steadyflow.worker")

LOOP_STOP_TIMEOUT = 5.0


class _Outbox:
    """The child's end of the pipe for writing, shared by the main thread and the loop thread."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()

    def send(self, msg: tuple[Any, ...]) -> None:
        in_main = threading.current_thread() is threading.main_thread()
        # A plain task's alarm must not interrupt a half-written message: hold SIGALRM meanwhile
        # (the other threads block it for good, so the kernel cannot hand it to them instead).
        if in_main:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            with self._lock:
                self.conn.send(msg)
        except (OSError, ValueError):
            if in_main:
                raise SystemExit(1) from None  # the supervisor is gone: nobody will record a result
            os._exit(1)
        finally:
            if in_main:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})


class ConcurrentChild:
    """Serves one child process's pipe with an event loop thread and the main thread (see above)."""

    def __init__(self, conn: Connection, config: ChildConfig, engine: Callable[[], Any] | None) -> None:
        self.conn = conn
        self.config = config
        self.engine = engine
        self.outbox = _Outbox(conn)
        self.active: set[str] = set()  # tokens of the tasks handed here and not yet reported
        self.cancelled: set[str] = set()
        self.plain: queue.SimpleQueue[tuple[dict[str, Any], float | None] | None] = queue.SimpleQueue()
        self.loop = asyncio.new_event_loop()
        self._running: set[asyncio.Task[None]] = set()  # the loop keeps weak references only
        self._closed = False

    def serve(self) -> None:
        """Run plain tasks in this (the main) thread until `stop` or the pipe's end; the loop
        thread runs the rest."""
        thread = threading.Thread(target=self._loop_main, name="steadyflow-asyncio", daemon=True)
        thread.start()
        try:
            while (item := self.plain.get()) is not None:
                task, alarm_timeout = item
                token = task.get("token")
                self.outbox.send(("started", token))
                outcome = run_task(task, self._sender(task), self.config.modules, self.config.handlers,
                                   alarm_timeout, self.config.payloads, self.engine)
                self._report(token, outcome)
        finally:
            try:
                self.loop.call_soon_threadsafe(self.loop.stop)
            except RuntimeError:
                pass  # the loop is closed already
            thread.join(LOOP_STOP_TIMEOUT)

    # -- the loop thread -------------------------------------------------------------------------

    def _loop_main(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})  # inherited by its helper threads
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.add_reader(self.conn.fileno(), self._on_readable)
            self.loop.run_forever()
        finally:
            self._close()  # however the loop ended, the main thread must not wait for tasks forever
            self.loop.close()

    def _on_readable(self) -> None:
        try:
            while not self._closed and self.conn.poll():
                self._on_message(self.conn.recv())
        except (EOFError, OSError):
            self._close()
        except Exception:
            log.exception("worker process %s: unreadable message from the supervisor; stopping", os.getpid())
            self._close()

    def _on_message(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "task":
            task, alarm_timeout = msg[1], msg[2]
            self.active.add(task.get("token"))
            activity = self._async_activity(task["name"])
            if activity is None:
                self.plain.put((task, alarm_timeout))
                return
            self.outbox.send(("started", task.get("token")))
            running = self.loop.create_task(self._run(task, activity, alarm_timeout), name=f"steadyflow-{task['name']}")
            self._running.add(running)
            running.add_done_callback(self._running.discard)
        elif kind == "cancel":
            if len(msg) > 1 and msg[1] in self.active:  # not for one already reported
                self.cancelled.add(msg[1])
        elif kind == "stop":
            self._close()

    def _async_activity(self, name: str) -> Activity | None:
        """The activity when it is an `async def`; None for the rest (run in the main thread, which
        also reports one that cannot be found)."""
        if name in self.config.handlers:
            return None
        try:
            activity = find_activity(name, self.config.modules)
        except Exception:
            return None
        return activity if is_async(activity) else None

    async def _run(self, task: dict[str, Any], activity: Activity, alarm_timeout: float | None) -> None:
        outcome = await run_task_async(task, activity, self._sender(task), alarm_timeout, self.config.payloads,
                                       self.engine)
        self._report(task.get("token"), outcome)

    def _close(self) -> None:
        """No more messages: let the main thread finish (the supervisor sends `stop` only to a
        child with no task left; at the pipe's end the supervisor is gone)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.loop.remove_reader(self.conn.fileno())
        except (OSError, ValueError):
            pass
        self.plain.put(None)

    # -- both threads ----------------------------------------------------------------------------

    def _sender(self, task: dict[str, Any]) -> Callable[[Any], bool]:
        """What `steadyflow.heartbeat(details)` calls for this task: forward new details; return
        True once the supervisor asked to cancel it."""
        token = task.get("token")
        last: list[str | None] = [None]

        def send_heartbeat(details: Any) -> bool:
            text = heartbeat_text(details, task, self.config.payloads)
            if text is not None and text != last[0]:
                self.outbox.send(("heartbeat", text, token))
                last[0] = text
            return token in self.cancelled

        return send_heartbeat

    def _report(self, token: str | None, outcome: Outcome) -> None:
        self.active.discard(token)  # type: ignore[arg-type]
        self.cancelled.discard(token)  # type: ignore[arg-type]
        self.outbox.send(("outcome", outcome.ok, outcome.result, outcome.reason, outcome.details, resident_bytes(),
                          token))


__all__ = ["ConcurrentChild"]
