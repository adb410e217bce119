"""The worker pool's child processes: starting, hard timeouts, recycling, reaping and the final
shutdown. A mixin of `WorkerPool` (`pool.py`), which holds the state these methods use.

A child that ends with tasks still in it (killed, crashed, or still busy at shutdown) has each of
them reported failed:

- the task whose `hard_timeout` passed: `TimeoutError: hard_timeout of Ns exceeded (process P killed)`;
- tasks that ran beside it in the same process (a child with `async_concurrency` > 1):
  `process P died: killed by the hard_timeout of <task>`;
- after any other death: `process P died: exit code C` (simpleflow's reason);
- at shutdown, past the grace period: `WorkerShutdown: ...`, which the decider reschedules without
  spending an attempt.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Any

from .child import child_main
from .runner import Outcome, failure
from .state import CHILD_EXIT_TIMEOUT, CRASH_LOOP_LIMIT, MB, SHUTDOWN_REASON, Child, PoolError, Running

if TYPE_CHECKING:
    from .reporter import Reporter

log = logging.getLogger("steadyflow.worker")


class ChildrenMixin:
    """Child-process management for `WorkerPool`; see the module docstring."""

    _children: list[Child]
    _ctx: Any
    _child_config: Any
    _reporter: Reporter
    _spawned: int
    _stopping: bool
    _completed: int
    _crashes: int
    _last_exit_code: int | None
    async_concurrency: int
    kill_grace: float
    maxtasksperchild: float | None
    max_memory: float | None
    modules: tuple[str, ...]

    # -- limits ----------------------------------------------------------------------------------

    def _enforce_hard_timeouts(self) -> None:
        now = time.monotonic()
        for child in list(self._children):
            if child.gone:
                continue
            if child.killed_at is None:
                overdue = next((r for r in child.tasks.values() if r.hard_deadline is not None and now >= r.hard_deadline),
                               None)
                if overdue is not None:
                    self._kill_for(child, overdue, now)
            elif not child.sigkilled and now >= child.killed_at + self.kill_grace:
                child.sigkilled = True
                log.warning("worker process %s ignored SIGTERM for %.1fs; sending SIGKILL", child.pid, self.kill_grace)
                self._signal(child, signal.SIGKILL)

    def _kill_for(self, child: Child, running: Running, now: float) -> None:
        """Kill `child` because `running` overran its hard timeout (its other tasks die with it)."""
        child.killed_at = now
        child.kill_reason = f"process {child.pid} died: killed by the hard_timeout of {running.label}"
        running.kill_message = f"hard_timeout of {running.hard_timeout:g}s exceeded (process {child.pid} killed)"
        log.warning("activity task %s: %s", running.label, running.kill_message)
        if len(child.tasks) > 1:
            log.warning("worker process %s: %d other task(s) running there fail with it", child.pid, len(child.tasks) - 1)
        self._retire(child, replace=True)
        self._signal(child, signal.SIGTERM)

    def _signal(self, child: Child, signum: int) -> None:
        """Signal the child's process group (what its task started, too), else the child alone."""
        try:
            os.killpg(child.pid, signum)
            return
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.kill(child.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def _maybe_recycle(self, child: Child, resident: int | None) -> None:
        if child.retiring:
            return
        why = None
        if self.maxtasksperchild and child.tasks_run >= self.maxtasksperchild:
            why = f"it ran {child.tasks_run} task(s)"
        elif self.max_memory and resident and resident > self.max_memory * MB:
            why = f"its resident memory ({resident / MB:.0f} MB) is over {self.max_memory:g} MB"
        if why is None:
            return
        log.info("recycling worker process %s: %s", child.pid, why)
        self._retire(child, replace=True)
        child.stop_when_done = True

    def _stop_if_done(self, child: Child) -> None:
        """Send `stop` to a recycled child once its last task is reported."""
        if not child.stop_when_done or child.stop_sent or child.tasks:
            return
        child.stop_sent = True
        try:
            child.conn.send(("stop",))
        except (OSError, ValueError):
            child.gone = True

    def _retire(self, child: Child, replace: bool) -> None:
        """Take a child out of service (it is stopping or being killed); start its replacement now."""
        if child.retiring:
            return
        child.retiring = True
        if replace and not self._stopping:
            self._start_child()

    @staticmethod
    def _lost_task(child: Child, running: Running, reason: str) -> Outcome:
        """The failure of a task whose process ended before it sent an outcome."""
        if running.kill_message is not None:
            return failure("TimeoutError", running.kill_message)
        if child.kill_reason is not None:
            return Outcome(False, reason=child.kill_reason)
        return Outcome(False, reason=reason)

    # -- starting and reaping --------------------------------------------------------------------

    def _start_child(self) -> None:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        self._spawned += 1
        process = self._ctx.Process(
            target=child_main,
            args=(child_conn, self._child_config),
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
        limit = int(self.maxtasksperchild) if self.maxtasksperchild else None
        self._children.append(Child(process, parent_conn, capacity=self.async_concurrency, max_tasks=limit))
        log.debug("started worker process %s", process.pid)

    def _reap_gone(self) -> None:
        for child in [c for c in self._children if c.gone]:
            self._reap(child)

    if TYPE_CHECKING:

        def _drain(self, child: Child) -> bool: ...  # pool.py: read what the child sent

    def _reap(self, child: Child) -> None:
        """Collect a child that exited (or closed its pipe); report its tasks; replace it."""
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
        lost, child.tasks = list(child.tasks.values()), {}
        for running in lost:
            self._completed += 1
            self._crashes = 0
            outcome = self._lost_task(child, running, f"process {pid} died: exit code {code}")
            log.warning("activity task %s: %s", running.label, outcome.reason)
            self._reporter.report(running, outcome)
        if not lost and not self._stopping and not child.retiring:
            self._crashes = self._crashes + 1 if child.tasks_run == 0 else 0
            self._last_exit_code = code
            when = "while idle" if child.ready else "during start-up"
            log.warning("worker process %s exited %s (exit code %s)", pid, when, code)
        if self._stopping or child.retiring:
            return
        if self._crashes >= CRASH_LOOP_LIMIT:
            raise PoolError(
                f"worker processes keep dying before running a task ({self._crashes} in a row, last exit "
                f"code {code}); check that modules {list(self.modules)} import in a fresh process"
            )
        self._start_child()

    def _close_children(self) -> None:
        """End every child: `stop` to those with no task, SIGTERM to the others; hand back what
        is still running."""
        children, self._children = list(self._children), []
        try:
            for child in children:
                if not child.tasks:
                    try:  # with "fork", siblings hold copies of this pipe, so EOF alone may not come
                        child.conn.send(("stop",))
                    except (OSError, ValueError):
                        pass
                    child.conn.close()
                elif child.process.exitcode is None:
                    self._signal(child, signal.SIGTERM)
            deadline = time.monotonic() + CHILD_EXIT_TIMEOUT
            for child in children:
                child.process.join(max(0.0, deadline - time.monotonic()))
                if child.process.exitcode is None:
                    self._signal(child, signal.SIGKILL)
                    child.process.join()
        finally:
            for child in children:
                if child.tasks and not child.conn.closed:
                    self._drain(child)  # an outcome sent just before the end still counts
                lost, child.tasks = list(child.tasks.values()), {}
                for running in lost:
                    log.warning("activity task %s still running at shutdown: handed back", running.label)
                    self._reporter.report(running, self._lost_task(child, running, SHUTDOWN_REASON))
                child.conn.close()
                if child.process.exitcode is not None:
                    child.process.close()


__all__ = ["ChildrenMixin"]
