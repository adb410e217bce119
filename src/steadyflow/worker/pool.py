"""The worker pool: one supervisor that talks to the engine, N child processes that run activities.

Only the supervisor (the thread that calls `WorkerPool.run`) touches the engine. It leases activity
tasks for idle children, hands each one over a pipe as a plain dict (`child.py` is the other end),
heartbeats every running task itself (so activity code never has to), forwards the progress details
the activity publishes with `heartbeat(...)` and any cancellation request the engine answers with,
and reports the outcome a child sends back.

Processes come and go without losing a task:

- a child that dies while running a task (SIGKILL, segfault, OOM killer, `os._exit`) gets that task
  failed with simpleflow's reason `"process <pid> died: exit code <code>"` and is replaced;
- a task past its `hard_timeout` has its process group killed (SIGTERM, then SIGKILL after
  `kill_grace`), which works on code stuck in C that never returns to the interpreter (the
  `alarm_timeout` raised inside the task cannot); the attempt fails with `TimeoutError` and the
  workflow's retry policy decides what follows;
- a child that ran `maxtasksperchild` tasks, or whose resident memory passed `max_memory` MB after a
  task, is retired and replaced at once;
- `stop(grace)` stops polling, lets running tasks finish for `grace` seconds, then kills their
  processes and hands the tasks back (`WorkerShutdown: ...`) so that they are retried elsewhere.

With `async_concurrency` N > 1 each child takes up to N tasks at once and runs `async def`
activities side by side on an event loop (`aio.py`); the supervisor tracks every task by its token
(heartbeats, cancellation, hard timeouts, outcomes) and prefers to hand a plain (sync) task to a
child that runs none, since a child runs those one at a time. Starting, killing, recycling and
reaping children is in `children.py`.

An idle supervisor does not poll often: it blocks on its children and on the engine's wake-ups for
its task list (`wakeup.py`: the SQLite wake channel between processes, PostgreSQL `LISTEN/NOTIFY`),
so a new task is leased within milliseconds; after an empty poll it looks again by itself only
after a back-off from 2 ms up to `poll_interval` (1 s while wake-ups work, else 50 ms).

The supervisor learns a task's alarm and hard timeouts by resolving the activity by name in its own
process; the worker-wide defaults apply when it cannot (a handler activity, a module this worker
does not have), so nothing about them travels with the scheduled task.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Mapping
from multiprocessing.connection import wait as wait_ready
from typing import Any

from .. import metrics
from ..activity import find_activity
from ..engines.base import ActivityTask, Engine
from ..errors import ConfigError, UnknownTask
from .child import ChildConfig
from .children import ChildrenMixin
from .middlewares import Middlewares
from .reporter import Reporter
from .runner import Outcome, TaskHandler, is_async
from .state import (
    MAX_MESSAGES_PER_WAKE,
    MIN_HEARTBEAT_INTERVAL,
    MIN_WAIT,
    SHUTDOWN_REASON,
    Child,
    PoolConfigError,
    PoolError,
    PoolStatus,
    Running,
    heartbeat_interval,
    positive,
)
from .wakeup import Waker

log = logging.getLogger("steadyflow.worker")
#: Seconds between two refreshes of the tasks-waiting gauge.
GAUGE_INTERVAL = 5.0

DEFAULT_POLL_INTERVAL = 0.05
"""Longest back-off between polls of an idle pool without engine wake-ups."""
FALLBACK_POLL_INTERVAL = 1.0
"""Longest back-off between polls of an idle pool whose engine wakes it (a safety net only)."""
TICK = 0.05
"""Longest wait of the loop: it checks the stop flags this often (no engine query, only flags)."""

MAX_HANDOUTS_PER_TURN = 50
"""Tasks leased in one turn of the loop before heartbeats and outcomes get their turn."""


def _validate_modules(modules: tuple[str, ...]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise ConfigError(f"cannot import activity module {name!r}: {type(exc).__name__}: {exc}") from exc


class WorkerPool(ChildrenMixin):
    """A supervisor in the calling thread plus `processes` child processes that run activity code.

    `run()` serves `task_list` until stopped; `stop(grace)` (from any thread or a signal handler)
    ends it: no more polling, running tasks get `grace` seconds to finish (a later `stop(0)` cuts
    that short), then their processes are killed and the tasks failed with `SHUTDOWN_REASON` so the
    decider retries them.

    `handlers` maps activity names to `TaskHandler`s that run those tasks instead of a function
    (see `runner.py`); `alarm_timeout`/`hard_timeout` are the defaults for activities that do not
    set their own; `heartbeat` caps the seconds between the supervisor's heartbeats.
    `async_concurrency` is how many tasks each child takes at once (`async def` activities run
    concurrently; others one at a time per child), 1 by default. `middlewares`
    (`worker.middlewares.Middlewares`) run around every activity attempt in the children; by
    default the settings' `ACTIVITY_MIDDLEWARES_PRE` / `ACTIVITY_MIDDLEWARES_POST`.
    """

    def __init__(
        self,
        engine: Engine,
        task_list: str,
        processes: int = 0,
        modules: tuple[str, ...] = (),
        identity: str | None = None,
        start_method: str = "spawn",
        poll_interval: float | None = None,
        *,
        handlers: Mapping[str, TaskHandler] | None = None,
        maxtasksperchild: int | None = None,
        max_memory: float | None = None,
        alarm_timeout: float | None = None,
        hard_timeout: float | None = None,
        kill_grace: float = 5.0,
        grace: float = 30.0,
        heartbeat: float | None = None,
        log_level: int | None = None,
        async_concurrency: int = 1,
        middlewares: Middlewares | None = None,
    ) -> None:
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 0:
            raise PoolConfigError(f"processes must be 0 (one per CPU) or more, not {processes!r}")
        if poll_interval is not None and poll_interval <= 0:
            raise PoolConfigError(f"poll_interval must be positive, not {poll_interval}")
        if start_method not in multiprocessing.get_all_start_methods():
            methods = ", ".join(multiprocessing.get_all_start_methods())
            raise PoolConfigError(f"unknown start method {start_method!r} (this platform has: {methods})")
        if kill_grace < 0 or grace < 0:
            raise PoolConfigError("grace periods must be >= 0 seconds")
        self.engine = engine
        self.task_list = task_list
        self.processes = processes or os.cpu_count() or 1
        self.modules = (modules,) if isinstance(modules, str) else tuple(modules)
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}"
        self.start_method = start_method
        self.poll_interval = float(poll_interval) if poll_interval is not None else None
        self.handlers = dict(handlers or {})
        self.maxtasksperchild = positive("maxtasksperchild", maxtasksperchild, integer=True)
        self.max_memory = positive("max_memory (MB)", max_memory)
        self.alarm_timeout = positive("alarm_timeout", alarm_timeout)
        self.hard_timeout = positive("hard_timeout", hard_timeout)
        self.heartbeat = positive("heartbeat", heartbeat or None)
        self.async_concurrency = int(positive("async_concurrency", async_concurrency, integer=True) or 1)
        self.kill_grace = float(kill_grace)
        self.grace = float(grace)
        _validate_modules(self.modules)
        # Activity middlewares (worker/middlewares.py): the settings' unless given; imported here
        # first, so that a bad dotted path is one ConfigError before any child starts.
        self.middlewares = Middlewares.from_settings() if middlewares is None else middlewares
        self.middlewares.load()
        self._child_config = ChildConfig(self.modules, self.handlers, log_level, engine.payloads, engine.source_url,
                                         self.async_concurrency, self.middlewares)
        self._ctx = multiprocessing.get_context(start_method)
        self._children: list[Child] = []
        self._reporter = Reporter(engine)
        #: Outcomes read during one `_wait_and_handle` pass, reported together at its end (None:
        #: report each at once, as the reaping and shutdown paths do).
        self._outcomes: list[tuple[Running, Outcome]] | None = None
        self._profiles: dict[str, tuple[float | None, float | None, bool]] = {}
        self._stop_requested = threading.Event()
        self._grace = self.grace
        self._active = False
        self._stopping = False
        self._completed = 0
        self._next_gauge = 0.0
        self._last_poll: float | None = None
        self._started_at: float | None = None
        self._short_since: float | None = None
        self._crashes = 0
        self._last_exit_code: int | None = None
        self._error: str | None = None
        self._spawned = 0
        self._waker: Waker | None = None

    def __repr__(self) -> str:
        concurrency = f", async_concurrency={self.async_concurrency}" if self.async_concurrency > 1 else ""
        return f"WorkerPool(task_list={self.task_list!r}, processes={self.processes}{concurrency}, identity={self.identity!r})"

    # -- observability ---------------------------------------------------------------------------

    @property
    def alive(self) -> int:
        """Children started and not yet seen to exit (those retiring not counted)."""
        return sum(1 for c in list(self._children) if not c.gone and not c.retiring)

    @property
    def running(self) -> int:
        """Tasks handed to a child and not yet reported."""
        return sum(len(c.tasks) for c in list(self._children))

    @property
    def last_poll(self) -> float | None:
        """`time.monotonic()` of the last successful poll of the engine, None before the first."""
        return self._last_poll

    @property
    def completed(self) -> int:
        """Tasks finished: their outcome (success, failure or the child's death) was reported."""
        return self._completed

    @property
    def pids(self) -> tuple[int, ...]:
        """Process ids of the children counted by `alive`."""
        return tuple(c.pid for c in list(self._children) if not c.gone and not c.retiring)

    def status(self) -> PoolStatus:
        """A snapshot for the healthcheck; safe to call from another thread."""
        now = time.monotonic()
        children = [c for c in list(self._children) if not c.gone and not c.retiring]
        ready = [c for c in children if c.ready]
        last_poll, short_since = self._last_poll, self._short_since  # read once: the loop writes them
        since = last_poll if last_poll is not None else self._started_at
        return PoolStatus(
            active=self._active,
            stopping=self._stopping,
            processes=self.processes,
            alive=len(children),
            ready=len(ready),
            idle=sum(1 for c in ready if c.idle),
            running=self.running,
            completed=self._completed,
            seconds_since_last_poll=None if since is None else round(now - since, 3),
            short_for=None if short_since is None else now - short_since,
            start_failures=self._crashes,
            last_exit_code=self._last_exit_code,
            error=self._error,
        )

    # -- control ---------------------------------------------------------------------------------

    def stop(self, grace: float | None = None) -> None:
        """Ask `run()` to shut down, giving running tasks `grace` seconds (default: the pool's
        `grace`); callable again, e.g. `stop(0)` on a second signal. Returns at once."""
        self._grace = max(0.0, float(self.grace if grace is None else grace))
        self._stop_requested.set()

    def run(self, stop: threading.Event | None = None, max_tasks: int | None = None) -> None:
        """Serve the task list until `stop` is set, `stop()` is called or `max_tasks` tasks finished.

        When `stop` is set without `stop()` being called, running tasks get the pool's `grace`.
        Raises `PoolError` when children keep dying before they run a task.
        """
        if self._active:
            raise RuntimeError("WorkerPool.run() is already running")
        self._active, self._stopping, self._error = True, False, None
        self._crashes, self._started_at, self._short_since = 0, time.monotonic(), None
        log.info("worker pool %s: %d process(es) x %d task(s) on task list %r", self.identity, self.processes,
                 self.async_concurrency, self.task_list)
        try:
            for _ in range(self.processes):
                self._start_child()
            self._waker = self._start_waker()
            backoff, next_poll = MIN_WAIT, 0.0
            while not self._stop_requested.is_set() and not (stop is not None and stop.is_set()):
                if max_tasks is not None and self._completed >= max_tasks:
                    break
                now = time.monotonic()
                if now >= next_poll and self._can_poll(max_tasks):
                    found, empty = self._dispatch(max_tasks)
                    backoff = MIN_WAIT if found else backoff
                    if empty:  # back off from 2 ms to the poll interval while nothing is found
                        next_poll, backoff = now + backoff, min(backoff * 2, self._poll_ceiling())
                self._housekeeping()
                timeout = self._next_timer()
                if self._can_poll(max_tasks):
                    timeout = min(timeout, max(0.0, next_poll - time.monotonic()))
                if self._wait_and_handle(timeout, self._waker):  # a child is free again or work came
                    backoff, next_poll = MIN_WAIT, 0.0
        except BaseException as exc:
            self._error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            waker, self._waker = self._waker, None
            if waker is not None:
                waker.close()
            try:
                self._shutdown()
            finally:
                self._active = False
                self._stop_requested.clear()
                self._grace = self.grace
                log.info("worker pool %s stopped after %d task(s)", self.identity, self._completed)

    # -- the loop --------------------------------------------------------------------------------

    def _start_waker(self) -> Waker | None:
        try:
            waiter = self.engine.wake_waiter("activity", self.task_list)
        except Exception as exc:  # noqa: BLE001 - no wake-ups: the pool polls as it always could
            log.warning("no wake-ups for task list %r (%s); polling", self.task_list, exc)
            return None
        return Waker(waiter) if waiter is not None else None

    def _poll_ceiling(self) -> float:
        """The longest back-off between two polls that found nothing."""
        if self.poll_interval is not None:
            return self.poll_interval
        waker = self._waker
        return FALLBACK_POLL_INTERVAL if waker is not None and waker.reliable else DEFAULT_POLL_INTERVAL

    def _can_poll(self, max_tasks: int | None) -> bool:
        if max_tasks is not None and self._completed + self.running >= max_tasks:
            return False
        return any(c.idle for c in self._children)

    def _dispatch(self, max_tasks: int | None) -> tuple[int, bool]:
        """Lease a task for every free slot of the children (up to `MAX_HANDOUTS_PER_TURN`);
        return how many were handed out and whether a poll came back empty."""
        found = 0
        while found < MAX_HANDOUTS_PER_TURN and self._can_poll(max_tasks):
            task = self._poll()
            if task is None:
                return found, True
            self._hand_to(self._place(task), task)
            found += 1
        return found, False

    def _poll(self) -> ActivityTask | None:
        try:
            task = self.engine.poll_activity_task(self.task_list, self.identity, wait=0)
        except Exception:
            self._reporter.log_error("polling task list %r failed", self.task_list)
            return None
        self._last_poll = time.monotonic()
        return task

    def limits(self, name: str) -> tuple[float | None, float | None]:
        """(alarm_timeout, hard_timeout) for tasks of activity `name`: the activity's own when this
        process can resolve it, else the pool's defaults. Resolved once per name."""
        return self._profile(name)[:2]

    def _profile(self, name: str) -> tuple[float | None, float | None, bool]:
        """`limits(name)` plus whether it is an `async def` activity (False when unknown here)."""
        if name not in self._profiles:
            alarm = hard = None
            asynchronous = False
            if name not in self.handlers:
                try:
                    activity = find_activity(name, self.modules)
                    alarm, hard = activity.options.alarm_timeout, activity.options.hard_timeout
                    asynchronous = is_async(activity)
                except Exception as exc:  # not importable here: the defaults apply
                    log.debug("activity %r not resolvable in the supervisor (%s); default timeouts apply", name, exc)
            self._profiles[name] = (
                alarm if alarm is not None else self.alarm_timeout,
                hard if hard is not None else self.hard_timeout,
                asynchronous,
            )
        return self._profiles[name]

    def _place(self, task: ActivityTask) -> Child:
        """The child with room that gets `task`: the least busy, and for a plain task one that
        runs no other plain task if there is one (it would wait its turn there)."""
        candidates = [c for c in self._children if c.idle]
        if not self._profile(task.name)[2]:
            candidates = [c for c in candidates if not c.plain_tasks] or candidates
        return max(candidates, key=lambda c: c.room)  # the first of the least busy

    def _hand_to(self, child: Child, task: ActivityTask) -> None:
        interval = heartbeat_interval(task.heartbeat_timeout, self.heartbeat)
        alarm, hard, asynchronous = self._profile(task.name)
        now = time.monotonic()
        label = f"{task.name} (activity {task.activity_id!r} of {task.workflow_id})"
        # A one-task child starts at once; a concurrent one says when ("started"): a plain task
        # may wait there behind another.
        deadline = now + hard if hard and child.capacity == 1 else None
        child.tasks[task.token] = Running(
            task.token, label, interval, now, now + interval if interval else None,
            hard_timeout=hard, hard_deadline=deadline, is_async=asynchronous, activity=task.name,
            handed_at=time.monotonic(),
        )
        waited = self.engine.clock() - task.scheduled_at if task.scheduled_at is not None else None
        metrics.task_started(task.name, task.task_list, schedule_to_start=waited)
        log.debug("activity task %s -> process %s", label, child.pid)
        try:
            child.conn.send(("task", dataclasses.asdict(task), alarm))
        except (OSError, ValueError):
            child.gone = True  # it died: reaping it reports the task failed

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if metrics.available() and now >= self._next_gauge:  # one COUNT every few seconds, not per poll
            self._next_gauge = now + GAUGE_INTERVAL
            try:
                metrics.set_tasks_waiting(self.task_list, self.engine.count_waiting_activity_tasks(self.task_list))
            except Exception as exc:  # an engine hiccup must not stop the pool; the next turn retries
                log.debug("could not count waiting tasks: %s", exc)
        self._reap_gone()
        self._heartbeat_due()
        self._enforce_hard_timeouts()
        self._reporter.retry_due()
        ready = sum(1 for c in self._children if c.ready and not c.gone and not c.retiring)
        if ready >= self.processes:
            self._short_since = None
        elif self._short_since is None:
            self._short_since = time.monotonic()

    def _next_timer(self) -> float:
        """Seconds until the next heartbeat, kill or report retry is due (at most `TICK`)."""
        dues: list[float] = self._reporter.dues()
        for c in self._children:
            for r in c.tasks.values():
                if r.next_beat is not None:
                    dues.append(r.next_beat)
                if c.killed_at is None and r.hard_deadline is not None:
                    dues.append(r.hard_deadline)
            if c.killed_at is not None and not c.sigkilled:
                dues.append(c.killed_at + self.kill_grace)
        if not dues:
            return TICK
        return max(0.0, min(min(dues) - time.monotonic(), TICK))

    def _wait_and_handle(self, timeout: float, waker: Waker | None = None) -> bool:
        """Wait for messages or exits of children, or for `waker`; return True when an outcome was
        handled or the waker says new tasks may be ready (either way: poll at once)."""
        owners: dict[Any, Child | None] = {}
        for child in self._children:
            if not child.gone:
                owners[child.conn] = child
                owners[child.process.sentinel] = child
        if waker is not None:
            owners[waker] = None
        if not owners:
            time.sleep(timeout)
            return False
        handled = False
        # Outcomes read in this pass are reported together, in one transaction (`_on_message`).
        self._outcomes = []
        try:
            for obj in wait_ready(list(owners), timeout):
                child = owners[obj]
                if child is None:  # drained before the poll it causes: a later wake-up is not lost
                    waker.drain()
                    handled = True
                elif obj is child.conn:
                    handled = self._drain(child) or handled
                else:
                    child.gone = True
        finally:
            outcomes, self._outcomes = self._outcomes, None
            self._reporter.report_many(outcomes)
        self._reap_gone()
        return handled

    def _drain(self, child: Child) -> bool:
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

    def _on_message(self, child: Child, msg: tuple[Any, ...]) -> bool:
        kind = msg[0]
        if kind == "ready":
            child.ready = True
            log.debug("worker process %s ready", child.pid)
        elif kind == "heartbeat":
            running = self._task_of(child, msg[2] if len(msg) > 2 else None)
            if running is not None:
                running.details = msg[1]
                if running.next_beat is None and not running.lost:
                    running.next_beat = max(time.monotonic(), running.last_beat + MIN_HEARTBEAT_INTERVAL)
        elif kind == "started":
            running = self._task_of(child, msg[1])
            if running is not None and running.hard_timeout and running.hard_deadline is None:
                running.hard_deadline = time.monotonic() + running.hard_timeout
        elif kind == "outcome":
            running = self._task_of(child, msg[6] if len(msg) > 6 else None)
            if running is None:
                log.warning("worker process %s sent an outcome for no task it runs; ignored", child.pid)
                return False
            del child.tasks[running.token]
            child.tasks_run += 1
            self._completed += 1
            self._crashes = 0
            outcome = Outcome(*msg[1:5])
            if outcome.ok:
                log.debug("activity task %s completed", running.label)
            else:
                log.info("activity task %s failed: %s", running.label, outcome.reason)
            if self._outcomes is not None:
                self._outcomes.append((running, outcome))
            else:
                self._reporter.report(running, outcome)
            self._maybe_recycle(child, msg[5] if len(msg) > 5 else None)
            self._stop_if_done(child)
            return True
        else:
            log.warning("unknown message %r from worker process %s; ignored", kind, child.pid)
        return False

    @staticmethod
    def _task_of(child: Child, token: str | None) -> Running | None:
        """The child's task with this token (its only task when a message carries none)."""
        if token is None:
            return child.task if len(child.tasks) == 1 else None
        return child.tasks.get(token)

    def _heartbeat_due(self) -> None:
        now = time.monotonic()
        for child in list(self._children):
            for running in list(child.tasks.values()):
                if running.lost or running.next_beat is None or running.next_beat > now:
                    continue
                self._heartbeat(child, running, now)

    def _heartbeat(self, child: Child, running: Running, now: float) -> None:
        details, running.details = running.details, None
        try:
            cancel = self.engine.heartbeat_activity_task(running.token, details)
        except UnknownTask:
            running.lost, running.next_beat = True, None
            log.warning("activity task %s: lease lost (timed out or closed); cancelling", running.label)
            self._send_cancel(child, running)
            return
        except Exception:
            running.details = details
            running.next_beat = now + min(running.interval or 1.0, 1.0)
            self._reporter.log_error("heartbeat of activity task %s failed", running.label)
            return
        running.last_beat = now
        running.next_beat = now + running.interval if running.interval else None
        if cancel and not running.cancel_sent:
            log.info("activity task %s: cancellation requested", running.label)
            self._send_cancel(child, running)

    def _send_cancel(self, child: Child, running: Running) -> None:
        running.cancel_sent = True
        try:
            child.conn.send(("cancel", running.token))
        except (OSError, ValueError):
            pass  # best effort: the child is gone or going

    # -- shutdown --------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Stop polling, let running tasks finish within the grace period, then end every child."""
        self._stopping = True
        started = time.monotonic()
        try:
            if self.running:
                log.info("worker pool %s: waiting up to %.1fs for %d task(s)", self.identity, self._grace, self.running)
            while self.running and time.monotonic() < started + self._grace:  # stop(0) cuts it short
                self._heartbeat_due()
                self._enforce_hard_timeouts()
                self._reporter.retry_due()
                remaining = started + self._grace - time.monotonic()
                self._wait_and_handle(max(0.0, min(self._next_timer(), remaining)))
        finally:
            self._close_children()
            self._reporter.retry_due(final=True)


__all__ = ["SHUTDOWN_REASON", "PoolConfigError", "PoolError", "PoolStatus", "WorkerPool", "heartbeat_interval"]
