"""The worker pool: one supervisor that talks to the engine, N child processes that run activities.

Only the supervisor (the thread that calls `WorkerPool.run`) touches the engine. It leases activity
tasks for idle children, hands each one over a pipe as a plain dict, heartbeats every running task
itself (so activity code never has to), forwards the progress details the activity publishes with
`heartbeat(...)`, and reports the outcome a child sends back. A child that dies while running a task
(SIGKILL, segfault, `os._exit`) gets that task failed with simpleflow's reason
`"process <pid> died: exit code <code>"` and is replaced; the pool keeps serving.

Messages on a child's pipe (tuples, first item the kind):

- child -> supervisor: `("ready", pid)`, `("heartbeat", details_json)`,
  `("outcome", ok, result, reason, details)`
- supervisor -> child: `("task", task_dict)`, `("cancel",)`, `("stop",)`

Children ignore SIGINT (the supervisor coordinates shutdown), die on SIGTERM, leave their loop when
the pipe reaches EOF and exit as soon as the supervisor's process is gone, so they never outlive it.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_ready
from typing import Any

from ..engines.base import ActivityTask, Engine
from ..errors import ConfigError, PayloadError, SteadyflowError, UnknownTask
from ..payload import json as sfjson
from .runner import Outcome, run_task

log = logging.getLogger("steadyflow.worker")

MIN_WAIT = 0.002
"""First wait after an empty poll; doubles up to `poll_interval` while nothing is found."""
MIN_HEARTBEAT_INTERVAL = 0.2
CRASH_LOOP_LIMIT = 5
"""Children dying in a row without running a task before `run` gives up with `PoolError`."""
SHUTDOWN_REASON = "WorkerShutdown: task handed back on shutdown"
REPORT_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
"""Back-off for re-reporting an outcome when the engine raised something other than `UnknownTask`."""
MAX_MESSAGES_PER_WAKE = 100
CHILD_EXIT_TIMEOUT = 5.0
ERROR_LOG_INTERVAL = 5.0


class PoolError(SteadyflowError):
    """The pool cannot keep its child processes alive (they die on start again and again)."""


def heartbeat_interval(heartbeat_timeout: float | None) -> float | None:
    """How often the supervisor heartbeats a task: a third of its timeout, at least 0.2 s."""
    if not heartbeat_timeout or heartbeat_timeout <= 0:
        return None
    return max(MIN_HEARTBEAT_INTERVAL, heartbeat_timeout / 3)


# -- child side ----------------------------------------------------------------------------------


def _exit_with_parent() -> None:
    """Exit this child as soon as the supervisor's process is gone, even in the middle of a task."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait_ready([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="steadyflow-parent-watch", daemon=True).start()


def _run_in_child(conn: Connection, task: dict[str, Any], modules: tuple[str, ...]) -> Any:
    state: dict[str, Any] = {"cancel": False, "last": None}

    def send_heartbeat(details: Any) -> bool:
        try:
            if details is not None:
                try:
                    text: str | None = sfjson.dumps(details)
                except PayloadError as exc:
                    log.warning(
                        "heartbeat details of %s are not JSON-serialisable; not sent: %s", task["name"], exc
                    )
                    text = None
                if text is not None and text != state["last"]:
                    conn.send(("heartbeat", text))
                    state["last"] = text
            while conn.poll():
                msg = conn.recv()
                if msg[0] == "cancel":
                    state["cancel"] = True
        except (EOFError, OSError):
            raise SystemExit(1) from None  # the supervisor is gone: nobody will record the result
        return bool(state["cancel"])

    return run_task(task, send_heartbeat, modules)


def _child_main(conn: Connection, modules: tuple[str, ...]) -> None:
    """A child's life: import the modules, then run the tasks that arrive until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _exit_with_parent()
    try:
        for name in modules:
            importlib.import_module(name)
        conn.send(("ready", os.getpid()))
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            if msg[0] == "task":
                outcome = _run_in_child(conn, msg[1], modules)
                conn.send(("outcome", outcome.ok, outcome.result, outcome.reason, outcome.details))
            elif msg[0] == "stop":
                return
            # A "cancel" for a task that already finished needs nothing.
    except (EOFError, OSError):
        return
    finally:
        conn.close()


# -- supervisor side -----------------------------------------------------------------------------


@dataclass(eq=False)
class _Running:
    """A task leased by the supervisor and handed to a child."""

    token: str
    label: str
    interval: float | None
    last_beat: float
    next_beat: float | None
    details: str | None = None  # latest details from the activity, not yet sent to the engine
    lost: bool = False  # the engine no longer knows the lease
    cancel_sent: bool = False


@dataclass(eq=False)
class _Child:
    process: Any
    conn: Connection
    ready: bool = False
    gone: bool = False  # pipe at EOF or process exited; reaped on the next turn of the loop
    task: _Running | None = None
    tasks_run: int = 0

    @property
    def pid(self) -> int:
        return int(self.process.pid)


@dataclass(eq=False)
class _Report:
    """An outcome whose report failed with an engine error; retried with back-off."""

    running: _Running
    outcome: Outcome
    attempt: int
    due: float


def _validate_modules(modules: tuple[str, ...]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise ConfigError(f"cannot import activity module {name!r}: {type(exc).__name__}: {exc}") from exc


class WorkerPool:
    """A supervisor in the calling thread plus `processes` child processes that run activity code.

    `run()` serves `task_list` until stopped; `stop(grace)` (from any thread or a signal handler)
    ends it: no more polling, running tasks get `grace` seconds to finish, then their children are
    terminated and the tasks failed with `SHUTDOWN_REASON` so the decider retries them.
    """

    def __init__(
        self,
        engine: Engine,
        task_list: str,
        processes: int = 0,
        modules: tuple[str, ...] = (),
        identity: str | None = None,
        start_method: str = "spawn",
        poll_interval: float = 0.05,
    ) -> None:
        if processes < 0:
            raise ValueError(f"processes must be 0 (one per CPU) or more, not {processes}")
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, not {poll_interval}")
        if start_method not in multiprocessing.get_all_start_methods():
            methods = ", ".join(multiprocessing.get_all_start_methods())
            raise ValueError(f"unknown start method {start_method!r} (this platform has: {methods})")
        self.engine = engine
        self.task_list = task_list
        self.processes = processes or os.cpu_count() or 1
        self.modules = (modules,) if isinstance(modules, str) else tuple(modules)
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}"
        self.start_method = start_method
        self.poll_interval = float(poll_interval)
        _validate_modules(self.modules)
        self._ctx = multiprocessing.get_context(start_method)
        self._children: list[_Child] = []
        self._reports: list[_Report] = []
        self._stop_requested = threading.Event()
        self._grace = 30.0
        self._active = False
        self._stopping = False
        self._completed = 0
        self._last_poll: float | None = None
        self._crashes = 0
        self._spawned = 0
        self._last_error_log = 0.0

    def __repr__(self) -> str:
        return f"WorkerPool(task_list={self.task_list!r}, processes={self.processes}, identity={self.identity!r})"

    # -- observability ---------------------------------------------------------------------------

    @property
    def alive(self) -> int:
        """Children started and not yet seen to exit."""
        return sum(1 for c in list(self._children) if not c.gone)

    @property
    def running(self) -> int:
        """Tasks handed to a child and not yet reported."""
        return sum(1 for c in list(self._children) if c.task is not None)

    @property
    def last_poll(self) -> float | None:
        """`time.monotonic()` of the last poll of the engine, None before the first."""
        return self._last_poll

    @property
    def completed(self) -> int:
        """Tasks finished: their outcome (success, failure or the child's death) was reported."""
        return self._completed

    @property
    def pids(self) -> tuple[int, ...]:
        """Process ids of the children counted by `alive`."""
        return tuple(c.pid for c in list(self._children) if not c.gone)

    # -- control ---------------------------------------------------------------------------------

    def stop(self, grace: float = 30.0) -> None:
        """Ask `run()` to shut down, giving running tasks `grace` seconds. Returns at once."""
        self._grace = max(0.0, float(grace))
        self._stop_requested.set()

    def run(self, stop: threading.Event | None = None, max_tasks: int | None = None) -> None:
        """Serve the task list until `stop` is set, `stop()` is called or `max_tasks` tasks finished.

        When `stop` is set without `stop()` being called, running tasks get 30 s of grace.
        Raises `PoolError` when children keep dying before they run a task.
        """
        if self._active:
            raise RuntimeError("WorkerPool.run() is already running")
        self._active = True
        self._stopping = False
        self._crashes = 0
        log.info(
            "worker pool %s: %d process(es) on task list %r", self.identity, self.processes, self.task_list
        )
        try:
            for _ in range(self.processes):
                self._start_child()
            backoff, next_poll = MIN_WAIT, 0.0
            while not self._stop_requested.is_set() and not (stop is not None and stop.is_set()):
                if max_tasks is not None and self._completed >= max_tasks:
                    break
                now = time.monotonic()
                if now >= next_poll and self._can_poll(max_tasks):
                    found, empty = self._dispatch(max_tasks)
                    backoff = MIN_WAIT if found else backoff
                    if empty:  # back off from 2 ms to poll_interval while nothing is found
                        next_poll, backoff = now + backoff, min(backoff * 2, self.poll_interval)
                self._reap_gone()
                self._heartbeat_due()
                self._retry_reports()
                timeout = self._next_timer()
                if self._can_poll(max_tasks):
                    timeout = min(timeout, max(0.0, next_poll - time.monotonic()))
                if self._wait_and_handle(timeout):  # a child is free again: poll at once
                    backoff, next_poll = MIN_WAIT, 0.0
        finally:
            try:
                self._shutdown()
            finally:
                self._active = False
                self._stop_requested.clear()
                self._grace = 30.0
                log.info("worker pool %s stopped after %d task(s)", self.identity, self._completed)

    # -- the loop --------------------------------------------------------------------------------

    def _can_poll(self, max_tasks: int | None) -> bool:
        if max_tasks is not None and self._completed + self.running >= max_tasks:
            return False
        return any(c.ready and not c.gone and c.task is None for c in self._children)

    def _dispatch(self, max_tasks: int | None) -> tuple[int, bool]:
        """Lease a task for every idle child; return how many were handed out and whether a poll
        came back empty."""
        found = 0
        for child in list(self._children):
            if not child.ready or child.gone or child.task is not None:
                continue
            if max_tasks is not None and self._completed + self.running >= max_tasks:
                break
            task = self._poll()
            if task is None:
                return found, True
            self._hand_to(child, task)
            found += 1
        return found, False

    def _poll(self) -> ActivityTask | None:
        self._last_poll = time.monotonic()
        try:
            return self.engine.poll_activity_task(self.task_list, self.identity, wait=0)
        except Exception:
            self._log_error("polling task list %r failed", self.task_list)
            return None

    def _hand_to(self, child: _Child, task: ActivityTask) -> None:
        interval = heartbeat_interval(task.heartbeat_timeout)
        now = time.monotonic()
        label = f"{task.name} (activity {task.activity_id!r} of {task.workflow_id})"
        child.task = _Running(task.token, label, interval, now, now + interval if interval else None)
        log.debug("activity task %s -> process %s", label, child.pid)
        try:
            child.conn.send(("task", dataclasses.asdict(task)))
        except (OSError, ValueError):
            child.gone = True  # it died: reaping it reports the task failed

    def _next_timer(self) -> float:
        """Seconds until the next heartbeat or report retry is due (at most `poll_interval`)."""
        dues = [
            c.task.next_beat for c in self._children if c.task is not None and c.task.next_beat is not None
        ]
        dues += [r.due for r in self._reports]
        if not dues:
            return self.poll_interval
        return max(0.0, min(min(dues) - time.monotonic(), self.poll_interval))

    def _wait_and_handle(self, timeout: float) -> bool:
        """Wait for messages or exits of children; return True when an outcome was handled."""
        owners: dict[Any, _Child] = {}
        for child in self._children:
            if not child.gone:
                owners[child.conn] = child
                owners[child.process.sentinel] = child
        if not owners:
            time.sleep(timeout)
            return False
        handled = False
        for obj in wait_ready(list(owners), timeout):
            child = owners[obj]
            if obj is child.conn:
                handled = self._drain(child) or handled
            else:
                child.gone = True
        self._reap_gone()
        return handled

    def _drain(self, child: _Child) -> bool:
        handled = False
        for _ in range(MAX_MESSAGES_PER_WAKE):
            try:
                if child.conn.closed or not child.conn.poll():
                    break
                msg = child.conn.recv()
            except (EOFError, OSError):
                child.gone = True
                break
            except Exception:
                log.exception("unreadable message from worker process %s; replacing it", child.pid)
                child.gone = True
                break
            handled = self._on_message(child, msg) or handled
        return handled

    def _on_message(self, child: _Child, msg: tuple[Any, ...]) -> bool:
        kind = msg[0]
        if kind == "ready":
            child.ready = True
            log.debug("worker process %s ready", child.pid)
        elif kind == "heartbeat":
            running = child.task
            if running is not None:
                running.details = msg[1]
                if running.next_beat is None and not running.lost:
                    running.next_beat = max(time.monotonic(), running.last_beat + MIN_HEARTBEAT_INTERVAL)
        elif kind == "outcome":
            running, child.task = child.task, None
            if running is None:
                log.warning("worker process %s sent an outcome but runs no task; ignored", child.pid)
                return False
            child.tasks_run += 1
            self._completed += 1
            self._crashes = 0
            outcome = Outcome(*msg[1:])
            if outcome.ok:
                log.debug("activity task %s completed", running.label)
            else:
                log.info("activity task %s failed: %s", running.label, outcome.reason)
            self._report(running, outcome)
            return True
        else:
            log.warning("unknown message %r from worker process %s; ignored", kind, child.pid)
        return False

    def _heartbeat_due(self) -> None:
        now = time.monotonic()
        for child in list(self._children):
            running = child.task
            if running is None or running.lost or running.next_beat is None or running.next_beat > now:
                continue
            details, running.details = running.details, None
            try:
                cancel = self.engine.heartbeat_activity_task(running.token, details)
            except UnknownTask:
                running.lost, running.next_beat = True, None
                log.warning("activity task %s: lease lost (timed out or closed); cancelling", running.label)
                self._send_cancel(child)
                continue
            except Exception:
                running.details = details
                running.next_beat = now + min(running.interval or 1.0, 1.0)
                self._log_error("heartbeat of activity task %s failed", running.label)
                continue
            running.last_beat = now
            running.next_beat = now + running.interval if running.interval else None
            if cancel and not running.cancel_sent:
                log.info("activity task %s: cancellation requested", running.label)
                self._send_cancel(child)

    def _send_cancel(self, child: _Child) -> None:
        if child.task is not None:
            child.task.cancel_sent = True
        try:
            child.conn.send(("cancel",))
        except (OSError, ValueError):
            pass  # best effort: the child is gone or going

    # -- reporting -------------------------------------------------------------------------------

    def _report(self, running: _Running, outcome: Outcome, attempt: int = 0, final: bool = False) -> None:
        what = "result" if outcome.ok else "failure"
        try:
            if outcome.ok:
                self.engine.complete_activity_task(running.token, outcome.result)
            else:
                self.engine.fail_activity_task(running.token, outcome.reason, outcome.details)
        except UnknownTask:
            log.warning(
                "activity task %s: lease lapsed before its %s was reported; dropped", running.label, what
            )
        except Exception:
            if final or attempt >= len(REPORT_RETRY_DELAYS):
                log.exception("activity task %s: could not report its %s; giving up", running.label, what)
            else:
                delay = REPORT_RETRY_DELAYS[attempt]
                msg = "activity task %s: reporting its %s failed; retrying in %.1fs"
                log.warning(msg, running.label, what, delay, exc_info=True)
                due = time.monotonic() + delay
                self._reports.append(_Report(running, outcome, attempt + 1, due))

    def _retry_reports(self, final: bool = False) -> None:
        now = time.monotonic()
        due = [r for r in self._reports if final or r.due <= now]
        if not due:
            return
        self._reports = [r for r in self._reports if r not in due]
        for r in due:
            self._report(r.running, r.outcome, r.attempt, final)

    def _log_error(self, message: str, *args: Any) -> None:
        """Log an engine error with its traceback, at most every few seconds (the loop retries fast)."""
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL:
            self._last_error_log = now
            log.warning(message, *args, exc_info=True)

    # -- children --------------------------------------------------------------------------------

    def _start_child(self) -> None:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        self._spawned += 1
        process = self._ctx.Process(
            target=_child_main,
            args=(child_conn, self.modules),
            name=f"steadyflow-worker-{self._spawned}",
            daemon=False,  # daemonic processes may not start processes, and activities may want to
        )
        try:
            process.start()
        except BaseException:
            parent_conn.close()
            raise
        finally:
            child_conn.close()
        self._children.append(_Child(process, parent_conn))
        log.debug("started worker process %s", process.pid)

    def _reap_gone(self) -> None:
        for child in [c for c in self._children if c.gone]:
            self._reap(child)

    def _reap(self, child: _Child) -> None:
        """Collect a child that exited (or closed its pipe); report its task; replace it."""
        self._drain(child)
        process = child.process
        process.join(CHILD_EXIT_TIMEOUT)
        if process.exitcode is None:
            log.warning("worker process %s closed its pipe but did not exit; killing it", child.pid)
            process.kill()
            process.join()
        code = process.exitcode
        pid = child.pid
        self._children.remove(child)
        child.conn.close()
        process.close()
        running, child.task = child.task, None
        if running is not None:
            self._completed += 1
            self._crashes = 0
            reason = f"process {pid} died: exit code {code}"
            log.warning("activity task %s: %s", running.label, reason)
            self._report(running, Outcome(False, reason=reason))
        elif not self._stopping:
            self._crashes = self._crashes + 1 if child.tasks_run == 0 else 0
            when = "while idle" if child.ready else "during start-up"
            log.warning("worker process %s exited %s (exit code %s)", pid, when, code)
        if self._stopping:
            return
        if self._crashes >= CRASH_LOOP_LIMIT:
            raise PoolError(
                f"worker processes keep dying before running a task ({self._crashes} in a row, last exit "
                f"code {code}); check that modules {list(self.modules)} import in a fresh process"
            )
        self._start_child()

    def _shutdown(self) -> None:
        """Stop polling, let running tasks finish within the grace period, then end every child."""
        self._stopping = True
        grace = self._grace
        try:
            if self.running:
                log.info(
                    "worker pool %s: waiting up to %.1fs for %d task(s)", self.identity, grace, self.running
                )
            deadline = time.monotonic() + grace
            while self.running and time.monotonic() < deadline:
                self._heartbeat_due()
                self._retry_reports()
                remaining = deadline - time.monotonic()
                self._wait_and_handle(max(0.0, min(self._next_timer(), remaining)))
        finally:
            self._close_children()
            self._retry_reports(final=True)

    def _close_children(self) -> None:
        children, self._children = list(self._children), []
        try:
            for child in children:
                if child.task is None:
                    try:  # with "fork", siblings hold copies of this pipe, so EOF alone may not come
                        child.conn.send(("stop",))
                    except (OSError, ValueError):
                        pass
                    child.conn.close()
                elif child.process.exitcode is None:
                    child.process.terminate()
            deadline = time.monotonic() + CHILD_EXIT_TIMEOUT
            for child in children:
                child.process.join(max(0.0, deadline - time.monotonic()))
                if child.process.exitcode is None:
                    child.process.kill()
                    child.process.join()
        finally:
            for child in children:
                if child.task is not None and not child.conn.closed:
                    self._drain(child)  # an outcome sent just before the end still counts
                running, child.task = child.task, None
                if running is not None:
                    log.warning("activity task %s still running at shutdown: handed back", running.label)
                    self._report(running, Outcome(False, reason=SHUTDOWN_REASON))
                child.conn.close()
                if child.process.exitcode is not None:
                    child.process.close()


__all__ = ["SHUTDOWN_REASON", "PoolError", "WorkerPool", "heartbeat_interval"]
