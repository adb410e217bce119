"""A long-lived child process that runs a consumer's tasks one after another (`--max-tasks-per-child`).

Why: forking a child for every task (`supervise.run_in_child`) costs a short task most of its time;
a child that stays costs one pipe round trip per task. What stays the same is everything the
consumer promises about a task, because the parent supervises each task exactly as it supervises a
forked child (`supervise._supervise`): visibility extended while `running()` says true, SIGTERM then
SIGKILL to the child's process group at `hard_timeout` (so C code is stopped too), the message left
to come back when the task fails or its child dies, results and exceptions reported the same way.

What differs, and why it is safe: a child that was interrupted (hard timeout, `running()` false,
shutdown) or died is never given another task: it leaves after reporting or is killed, and the next
task starts a fresh one. A child is also replaced after `max_tasks` tasks. What a task leaves in its
process (module globals, caches, monkey-patching, open files, threads it started) is seen by the
next tasks that child runs, as in Celery or Huey workers; a task that must start clean needs
`--max-tasks-per-child 1` (a fresh fork per task, the previous default).

The child is forked from the consumer (so it has every task the consumer imported) and gets each
task as its task name and the handler's state, with a snapshot of the message (body, attributes,
id: what a `spawn` child gets); the parent keeps the real message and does every queue operation.
Protocol over one duplex pipe: parent to child `("task", name, state, args, kwargs)`; child to
parent the forked child's messages (`supervise.py`), `("running", bool)`, `("send", url, kwargs)`
and `("result", ok, payload)`, never a `running` after its task's `result`.
"""

from __future__ import annotations

import _thread
import logging
import multiprocessing.connection
import os
import pickle
import signal
import threading
import time
from typing import Any

from . import local, supervise

logger = logging.getLogger("steadyflow.tasks")


class _Current:
    """The task the child runs now, shared by its main thread and its watchdog thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.handler: Any = None
        self.next_check = 0.0
        self.interrupted = False


def _child_loop(conn: Any, classes: dict[str, type], parent_pid: int) -> None:
    """The child: run each task it receives until the pipe closes or a task is interrupted."""
    supervise._become_task_child(parent_pid)
    current = _Current()

    def send(message: tuple) -> None:
        with current.lock:
            conn.send(message)

    local._forward = lambda url, send_kwargs: send(("send", url, send_kwargs))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # between tasks, SIGTERM ends the child
    _thread.start_new_thread(_watchdog, (conn, current, parent_pid))

    def on_term(signum: int, frame: Any) -> None:
        current.interrupted = True
        supervise._interrupt(current.handler)

    while not current.interrupted:
        try:
            message = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            break
        _, name, state, args, kwargs = message
        handler = classes[name].__new__(classes[name])
        handler.__dict__.update(state)
        with current.lock:
            current.handler = handler
            current.next_check = time.monotonic() + handler.alarm_timeout
        signal.signal(signal.SIGTERM, on_term)
        report = supervise._run_for_report(handler, args, kwargs)
        supervise._flush_output()
        with current.lock:  # no `running` of this task may follow its result
            current.handler = None
            conn.send(report)
    conn.close()
    os._exit(0)


def _watchdog(conn: Any, current: _Current, parent_pid: int) -> None:
    """Ask the current task's `running()` every `alarm_timeout`; leave when the consumer is gone."""
    while True:
        time.sleep(supervise._WATCH_PERIOD / 5)
        if os.getppid() != parent_pid:
            os._exit(1)
        handler = current.handler
        if handler is None or time.monotonic() < current.next_check:
            continue
        try:
            answer = bool(handler.running())
        except Exception:  # noqa: BLE001 - a running() that raises cannot vouch for run()
            logger.exception("running() raised; treating the handler as stuck")
            answer = False
        with current.lock:
            if current.handler is not handler:
                continue  # its task ended meanwhile: the parent is past it
            current.next_check += handler.alarm_timeout
            try:
                conn.send(("running", answer))
            except (OSError, ValueError):
                return


class _ReusedChild(supervise._ForkedChild):
    """A `_ForkedChild` whose child runs `_child_loop` instead of one task."""

    def __init__(self, conn: Any, other_end: Any, classes: dict[str, type]) -> None:  # noqa: D107
        parent_pid = os.getpid()
        self.exitcode: int | None = None
        self.tasks = 0

        def body() -> None:
            other_end.close()  # so that the consumer closing its end is EOF here
            _child_loop(conn, classes, parent_pid)

        self._fork("steadyflow-task:reused", body)


class ChildPool:
    """One consumer's long-lived child; `run()` hands it a task and supervises it.

    `classes` maps task names to handler classes (what the consumer runs); a handler of another
    class, or one that asks for a start method other than fork, runs in a fresh child as before.
    """

    def __init__(self, classes: dict[str, type], max_tasks: int | None = None) -> None:
        self.classes = dict(classes)
        self.names = {cls: name for name, cls in self.classes.items()}
        self.max_tasks = max_tasks
        self.proc: _ReusedChild | None = None
        self.conn: Any = None
        self.started = 0

    def accepts(self, handler: Any) -> bool:
        return type(handler) in self.names and supervise._direct_fork(handler)

    def _child(self) -> _ReusedChild:
        if self.proc is not None and (not self.proc.is_alive()
                                      or (self.max_tasks and self.proc.tasks >= self.max_tasks)):
            self.retire()
        if self.proc is None:
            supervise._prepare_stdin()
            parent, child = multiprocessing.connection.Pipe(duplex=True)
            try:
                proc = _ReusedChild(child, parent, self.classes)
            except BaseException:
                parent.close()
                child.close()
                raise
            child.close()
            try:
                os.setpgid(proc.pid, proc.pid)
            except OSError:
                pass
            self.proc, self.conn = proc, parent
            self.started += 1
        return self.proc

    def run(self, handler: Any, args: tuple, kwargs: dict) -> Any:
        try:
            task = pickle.dumps(("task", self.names[type(handler)], handler.__getstate__(), args, kwargs))
        except Exception:  # noqa: BLE001 - state only a forked copy can carry (a lock, a client)
            return supervise.run_forked(handler, args, kwargs)
        proc = self._child()
        book = handler.__dict__.get("_book")
        clean = False
        try:
            if book is not None:
                book.child(proc.pid)
            try:
                self.conn.send_bytes(task)
            except (OSError, ValueError):
                pass  # the child is gone: `_supervise` sees it exit and reports that
            proc.tasks += 1
            result = supervise._supervise(handler, proc, self.conn, book, reused=True)
            clean = True
            return result
        except Exception as exc:
            clean = hasattr(exc, "child_traceback")  # what the task raised, reported by a child that goes on
            raise
        finally:
            if not clean or not proc.is_alive():
                self.retire()  # interrupted, died, or a failure of our own: the next task gets a fresh child
            if book is not None:
                book.child(None)

    def retire(self) -> None:
        """Stop the child (SIGKILL to its group when it does not leave on EOF at once) and forget it."""
        proc, conn, self.proc, self.conn = self.proc, self.conn, None, None
        if proc is None:
            return
        conn.close()  # an idle child leaves its loop at EOF
        if proc.is_alive():
            ready = multiprocessing.connection.wait([proc.sentinel], 0.2)
            if not ready:
                supervise._signal_group(proc.pid, signal.SIGKILL)
        else:  # its group may still hold what the task started
            supervise._signal_group(proc.pid, signal.SIGKILL)
        proc.join()
        proc.close()

    close = retire
