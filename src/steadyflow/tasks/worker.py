"""`steadyflow tasks worker`: consumer processes that run `@task`s by name.

A supervisor process imports the task modules, then forks `processes` consumers (so each starts
in milliseconds with the tasks already imported) and restarts any that dies: at once when it was
killed by a signal, with a growing delay when it exited with an error (a crash loop must not
spin). Each consumer receives messages and dispatches them by task name; a message it cannot run
(no such task, arguments that do not fit, received more than the task's `max_receives`) goes to
the dead-letter queue with the reason, and the consumer goes on.

SIGTERM or Ctrl-C on the supervisor: consumers stop taking messages; a task still running after
`shutdown_grace` seconds is stopped and its message handed back (made visible again at once).

A consumer deletes the messages of tasks that succeeded in batches, while the next task runs, and
keeps the record of what it holds in memory it shares with the supervisor, which settles it if the
consumer dies (see `ledger.py`). Its tasks run one after another in one long-lived child process,
replaced after `max_tasks_per_child` tasks or when a task is interrupted or the child dies; with
`max_tasks_per_child=1` each task gets a fresh fork (see `reuse.py`).
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from . import registry, supervise
from .backend import receive_count
from .errors import UnknownTaskName
from .ledger import MessageBook, SharedSlot, holds_any, settle
from .reuse import ChildPool
from .task_manager import TaskManager
from .urls import redact

logger = logging.getLogger("steadyflow.tasks")


@dataclass(frozen=True)
class WorkerOptions:
    """The consumer's settings, shared by the CLI flags and `serve()`."""

    url: str
    processes: int = 1
    wait_time: float = 10
    visibility_timeout: float = 30
    batch_size: int = 1
    shutdown_grace: float = 30
    depth_interval: float | None = None
    """Seconds between two readings of the queue's depth into the metrics (None: never)."""
    max_tasks_per_child: int | None = None
    """Tasks one child process runs before it is replaced (None: no limit; 1: a fresh fork per task)."""


class Consumer:
    """Receives messages from one queue and runs each one's registered task."""

    def __init__(self, options: WorkerOptions, tasks: dict[str, registry.Task] | None = None,
                 notify: Callable[..., Any] | None = None, manager: TaskManager | None = None,
                 shared: SharedSlot | None = None) -> None:
        self.options = options
        self.tasks = registry.registered() if tasks is None else tasks
        self.manager = manager or TaskManager(options.url, notify=notify)
        # What it holds, for its supervisor should it die; deletes it batches (see ledger.py).
        self.book = MessageBook(self.manager.backend, shared=shared)
        if options.max_tasks_per_child is not None and options.max_tasks_per_child < 1:
            raise ConfigError("--max-tasks-per-child must be at least 1")
        # Tasks run one after another in a long-lived child, unless each must get a fresh fork (reuse.py).
        self.pool = None if options.max_tasks_per_child == 1 else ChildPool(
            {name: t.handler_class for name, t in self.tasks.items()}, options.max_tasks_per_child)
        self.stopping = False
        self.handled = 0

    def stop(self) -> None:
        self.stopping = True

    def run(self) -> None:
        options = self.options
        messages = self.manager.messages(options.wait_time, options.visibility_timeout,
                                         batch_size=options.batch_size, stop=lambda: self.stopping,
                                         book=self.book)
        try:
            for name, kwargs, message in messages:
                self.handle(name, kwargs, message)
                if self.stopping:
                    break
        finally:
            self.book.flush()
            if self.pool is not None:
                self.pool.close()

    def handle(self, name: str, kwargs: dict[str, Any], message: Any) -> None:
        if self.book.due() <= time.monotonic():
            self.book.flush()
        try:
            self._handle(name, kwargs, message)
        finally:
            self.book.finished(message)

    def _handle(self, name: str, kwargs: dict[str, Any], message: Any) -> None:
        task = self.tasks.get(name)
        if task is None:
            known = ", ".join(sorted(self.tasks)) or "none"
            self.manager.reject(message, UnknownTaskName(f"unknown task {name!r} (this worker runs: {known})"))
            return
        limit = task.options.max_receives
        count = receive_count(message)
        if limit and count > limit:
            reason = f"received {count} times (max_receives={limit} for task {name!r})"
            self.manager.reject(message, UnknownTaskName(reason), reason)
            return
        problem = task.check_arguments(kwargs)
        if problem:
            self.manager.reject(message, TypeError(problem), problem)
            return
        try:
            handler = task.handler(message, kwargs)
            handler._book = self.book  # type: ignore[attr-defined] - deletes it later, with others
            if self.pool is not None:
                handler._pool = self.pool  # type: ignore[attr-defined]
            with handler:
                handler.run()
        except supervise.HandedBack:
            self.stopping = True
        except Exception as exc:  # noqa: BLE001 - raised by __enter__: the message comes back
            logger.error("could not start task %s for message %s (%s: %s)", name,
                         getattr(message, "message_id", "?"), type(exc).__name__, exc)
        self.handled += 1


def import_modules(modules: list[str]) -> None:
    """Import the modules that define the tasks (`ConfigError` naming the one that fails)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"cannot import task module {module!r}: {exc}") from exc
    if not registry.registered():
        raise ConfigError(f"no @task is registered by {', '.join(modules)}")


def _consumer_main(options: WorkerOptions, manager: TaskManager, shared: SharedSlot | None = None) -> None:
    supervise._set_parent_death_signal(signal.SIGTERM)  # the supervisor died: stop gracefully
    consumer = Consumer(options, manager=manager, shared=shared)

    def on_term(signum: int, frame: Any) -> None:
        supervise.request_shutdown(0 if consumer.stopping else options.shutdown_grace)
        consumer.stop()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        consumer.run()
    finally:
        consumer.manager.close()


def _publish_depth(manager: TaskManager) -> None:
    """Read the queue's depth into `steadyflow_task_queue_depth`; a failure is logged, not raised."""
    from .depth import depth_of, publish

    try:
        publish(depth_of(manager))
    except Exception as exc:  # noqa: BLE001 - the consumers go on; the gauge keeps its last value
        logger.warning("cannot read the depth of %s (%s: %s)", redact(manager.url), type(exc).__name__, exc)


def serve(options: WorkerOptions, on_start: Callable[[list[int]], None] | None = None) -> int:
    """Run `options.processes` consumers until SIGTERM/SIGINT; returns the exit code."""
    if options.processes < 1:
        raise ConfigError("--processes must be at least 1")
    if options.max_tasks_per_child is not None and options.max_tasks_per_child < 1:
        raise ConfigError("--max-tasks-per-child must be at least 1")
    # Built once, before forking: a bad URL fails here, and a restarted consumer starts in milliseconds
    # (a boto3 resource takes ~0.1 s to build). Each child opens its own connections on first use.
    manager = TaskManager(options.url)
    ctx = multiprocessing.get_context("fork")
    # Where each consumer keeps the record of the messages it holds, settled here should it die.
    shared = {slot: SharedSlot() for slot in range(options.processes)}
    settler: list[Any] = []  # the supervisor's own queue connection, made when first needed
    children: dict[int, Any] = {}
    restart_at: dict[int, float] = {}
    delays: dict[int, float] = {}
    stopping: list[bool] = []

    def on_signal(signum: int, frame: Any) -> None:
        if stopping:  # a second Ctrl-C / SIGTERM: consumers hand their tasks back now
            for proc in children.values():
                if proc.is_alive():
                    os.kill(proc.pid, signal.SIGTERM)
        stopping.append(True)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}

    def start(slot: int) -> None:
        shared[slot].clear()
        proc = ctx.Process(target=_consumer_main, args=(options, manager, shared[slot]),
                           name=f"steadyflow-tasks-consumer-{slot}")
        proc.start()
        children[slot] = proc
        restart_at.pop(slot, None)

    def settle_for(pid: int, record: bytes, child: int | None) -> None:
        """Delete the messages a dead consumer had handled, hand back the others (see ledger.py)."""
        if not holds_any(record):
            return
        try:
            if not settler:
                settler.append(TaskManager(options.url).backend)
        except Exception as exc:  # noqa: BLE001 - its messages come back after their visibility timeout
            logger.warning("cannot settle the messages of consumer %s (%s: %s)", pid, type(exc).__name__, exc)
            return
        deleted, handed_back = settle(record, child, settler[0])
        if deleted or handed_back:
            logger.warning("consumer %s died holding messages: deleted %d whose tasks had succeeded, handed back %d",
                           pid, deleted, handed_back)

    try:
        for slot in range(options.processes):
            start(slot)
        if on_start:
            on_start([p.pid for p in children.values()])
        logger.info("%d consumer(s) on %s", options.processes, redact(options.url))
        depth_due = time.monotonic()
        while not stopping:
            now = time.monotonic()
            if options.depth_interval and now >= depth_due:
                depth_due = now + options.depth_interval
                _publish_depth(manager)
            for slot, at in list(restart_at.items()):
                if now >= at:
                    start(slot)
            alive = [p.sentinel for s, p in children.items() if s not in restart_at]
            multiprocessing.connection.wait(alive, timeout=0.2)
            for slot, proc in list(children.items()):
                if slot in restart_at or proc.is_alive():
                    continue
                proc.join()
                record, child = shared[slot].read(), shared[slot].read_child()
                code = proc.exitcode or 0
                if code < 0:
                    delays[slot] = 0.0
                    logger.warning("consumer %s was killed by signal %s; restarting it", proc.pid, -code)
                    start(slot)
                else:
                    delays[slot] = min(30.0, max(1.0, delays.get(slot, 0.0) * 2))
                    logger.error("consumer %s exited with code %s; restarting it in %gs", proc.pid, code, delays[slot])
                    restart_at[slot] = time.monotonic() + delays[slot]
                settle_for(proc.pid, record, child)
        for proc in children.values():
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + options.shutdown_grace + 10
        for proc in children.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
