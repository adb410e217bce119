"""Running a handler's `run()` in a child process the consumer supervises.

Why a child process: sqstaskmaster interrupts `run()` with SIGALRM in the same process, and its own
tests document that C code which never returns to the interpreter is not interrupted (a regular
expression that backtracks, a solver, a BLAS call). A child can always be stopped: SIGTERM first,
which `run()` sees as an exception so it can clean up, then SIGKILL to its whole process group.

Start method: `fork` by default (a handler class attribute `start_method` may say `spawn` or
`forkserver`). Fork is the only method under which sqstaskmaster's code runs unchanged: handler
classes are often defined in the consuming script itself, next to a module-level consume loop
that `spawn` would re-run on import, and the message object is not picklable. Under `spawn`, the
handler must be importable and picklable; it gets a snapshot of the message (body, attributes).
Connections a task queue holds are never used or closed by the child (each queue opens its own per
process), and the child leaves through `os._exit` so no inherited finalizer runs.

Protocol, child to parent over one pipe: `("running", bool)` every `alarm_timeout` from a watchdog
thread calling `running()` (where `run()` keeps its state); `("send", url, kwargs)` for LocalQueue
sends; `("result", ok, payload)` once. The parent extends the message's visibility at each tick while
the last answer was true, even when `run()` holds the GIL in C code and the watchdog cannot answer
(the hard timeout bounds that); it interrupts `run()` when `running()` says false or `hard_timeout`
passes. The child dies with its consumer (`PR_SET_PDEATHSIG` on Linux, a parent check elsewhere).

Under `steadyflow tasks worker`, a handler carries the consumer's `ChildPool` (`reuse.py`): its tasks
run one after another in a long-lived child, supervised by the same `_supervise` loop.
"""

from __future__ import annotations

import _thread
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import local
from .errors import HandlerError

logger = logging.getLogger("steadyflow.tasks")

_in_child = False
_shutdown_at: float | None = None
_WATCH_PERIOD = 0.5


class HandedBack(BaseException):  # noqa: N818 - a control-flow signal, like KeyboardInterrupt
    """The consumer is shutting down: `run()` was stopped and its message handed back to the queue."""


def in_child() -> bool:
    return _in_child


def request_shutdown(grace: float) -> None:
    """Stop supervised `run()`s that are still running `grace` seconds from now (hand them back)."""
    global _shutdown_at
    at = time.monotonic() + max(0.0, grace)
    _shutdown_at = at if _shutdown_at is None else min(_shutdown_at, at)


# -- child side ------------------------------------------------------------------------------------


def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()


def _set_parent_death_signal(signum: int = signal.SIGKILL) -> None:
    """Linux: the kernel sends `signum` to this process when the thread that forked it ends."""
    try:
        if _LIBC is not None:
            _LIBC.prctl(1, signum, 0, 0, 0)  # PR_SET_PDEATHSIG
    except AttributeError:
        pass


def _exception_payload(exc: BaseException) -> tuple[bytes | None, str, str, str]:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        data: bytes | None = pickle.dumps(exc)
    except Exception:  # noqa: BLE001 - anything unpicklable is sent as text
        data = None
    return data, type(exc).__qualname__, str(exc), text


def _become_task_child(parent_pid: int) -> None:
    """A task's child leads its own process group (a hard timeout kills what it started too) and
    dies with its consumer; a consumer already gone means there is nobody to report to."""
    global _in_child
    _in_child = True
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    _set_parent_death_signal()
    if os.getppid() != parent_pid:
        os._exit(1)


def _run_for_report(handler: Any, args: tuple, kwargs: dict) -> tuple:
    """Run the task; the `("result", ok, payload)` message for the parent. SIGTERM is back at its
    default before the report is built, so a late interrupt cannot break the report."""
    try:
        result = handler.run(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - everything is reported to the parent
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        return ("result", False, _exception_payload(exc))
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        data = pickle.dumps(result)
    except Exception:  # noqa: BLE001 - an unpicklable return value is dropped
        data = pickle.dumps(None)
    return ("result", True, data)


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass


def _child_main(handler: Any, args: tuple, kwargs: dict, writer: Any, parent_pid: int) -> None:
    _become_task_child(parent_pid)
    lock = threading.Lock()

    def send(message: tuple) -> None:
        with lock:
            writer.send(message)

    local._forward = lambda url, send_kwargs: send(("send", url, send_kwargs))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: _interrupt(handler))
    # A bare thread: `threading.Thread` costs a short task a few hundred microseconds more here (its
    # start-up handshake and objects, in a freshly forked process where every page written is copied).
    _thread.start_new_thread(_watchdog, (handler, send, parent_pid))
    send(_run_for_report(handler, args, kwargs))
    writer.close()
    _flush_output()
    os._exit(0)


def _interrupt(handler: Any) -> None:
    if time.time() - handler._start_time >= handler.hard_timeout - 0.05:
        raise TimeoutError("Hit Hard Timeout for message handler")
    raise RuntimeError(f"Handler interrupted (stuck, or the consumer is shutting down): {handler}")


def _watchdog(handler: Any, send: Any, parent_pid: int) -> None:
    next_check = time.monotonic() + handler.alarm_timeout
    while True:
        time.sleep(min(_WATCH_PERIOD, max(0.01, next_check - time.monotonic())))
        if os.getppid() != parent_pid:
            os._exit(1)
        if time.monotonic() < next_check:
            continue
        next_check += handler.alarm_timeout
        try:
            answer = bool(handler.running())
        except Exception:  # noqa: BLE001 - a running() that raises cannot vouch for run()
            logger.exception("running() raised; treating the handler as stuck")
            answer = False
        try:
            send(("running", answer))
        except (OSError, ValueError):
            return


# -- parent side -----------------------------------------------------------------------------------


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def _load_exception(payload: tuple) -> BaseException:
    data, type_name, message, text = payload
    exc: BaseException | None = None
    if data is not None:
        try:
            exc = pickle.loads(data)
        except Exception:  # noqa: BLE001 - e.g. an exception whose __init__ takes other arguments
            exc = None
    if exc is None or not isinstance(exc, Exception):
        # BaseExceptions of the child (SystemExit, KeyboardInterrupt) must not stop the consumer.
        exc = HandlerError(f"{type_name}: {message}" if message else type_name, type_name, text)
    try:
        exc.child_traceback = text  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001
        pass
    return exc


class _ForkedChild:
    """A child made by `os.fork()` directly: the part of `multiprocessing.Process` `_supervise` uses.

    `multiprocessing`'s fork start method costs a task about a millisecond more (two more pipes,
    a finalizer, its bootstrap in the child), which is most of a short task's overhead. The child
    is watched through a pidfd, so its exit is seen exactly (not when the last copy of a pipe
    closes) and it is reaped by `join()`.
    """

    def __init__(self, handler: Any, args: tuple, kwargs: dict, writer: Any) -> None:
        parent_pid = os.getpid()
        self.exitcode: int | None = None
        self._fork(f"steadyflow-task:{type(handler).__name__}",
                   lambda: _child_main(handler, args, kwargs, writer, parent_pid))

    def _fork(self, name: str, body: Callable[[], None]) -> None:
        """Fork a child that runs `body()` and exits; keep its pid and a pidfd to watch it by."""
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns
            try:
                _forked_child_setup(name)
                body()
            finally:
                os._exit(1)
        try:
            self.sentinel = os.pidfd_open(self.pid)
        except OSError:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            raise

    def _reap(self, flags: int) -> None:
        if self.exitcode is None:
            pid, status = os.waitpid(self.pid, flags)
            if pid:
                self.exitcode = os.waitstatus_to_exitcode(status)

    def is_alive(self) -> bool:
        self._reap(os.WNOHANG)
        return self.exitcode is None

    def join(self) -> None:
        self._reap(0)

    def close(self) -> None:
        os.close(self.sentinel)


_devnull_stdin: Any = None


def _prepare_stdin() -> None:
    """Open, in the consumer and once, the /dev/null stream that replaces `sys.stdin` in children."""
    global _devnull_stdin
    if _devnull_stdin is None and sys.stdin is not None:
        try:
            _devnull_stdin = open(os.open(os.devnull, os.O_RDONLY), encoding="utf-8")  # noqa: SIM115 - kept open
        except OSError:
            _devnull_stdin = False


def _forked_child_setup(name: str) -> None:
    """What `multiprocessing` does in a child it forks, apart from its own bookkeeping."""
    from multiprocessing import util

    try:
        multiprocessing.current_process().name = name
    except Exception:  # noqa: BLE001 - cosmetic
        pass
    if sys.stdin is not None and _devnull_stdin:  # as multiprocessing's `_close_stdin()`, with a stream made beforehand
        try:
            sys.stdin.close()
        except (OSError, ValueError):
            pass
        sys.stdin = _devnull_stdin
    elif sys.stdin is not None:
        util._close_stdin()  # type: ignore[attr-defined]
    util._finalizer_registry.clear()  # type: ignore[attr-defined]
    util._run_after_forkers()  # type: ignore[attr-defined]


def _direct_fork(handler: Any) -> bool:
    return handler.start_method == "fork" and hasattr(os, "pidfd_open") and hasattr(os, "waitstatus_to_exitcode")


def run_in_child(handler: Any, args: tuple, kwargs: dict) -> Any:
    """Run `handler.run(*args, **kwargs)` in a child process, keeping the message invisible meanwhile."""
    pool = handler.__dict__.get("_pool")  # the worker consumer's long-lived child (see reuse.py)
    if pool is not None and pool.accepts(handler):
        return pool.run(handler, args, kwargs)
    return run_forked(handler, args, kwargs)


def run_forked(handler: Any, args: tuple, kwargs: dict) -> Any:
    """`run_in_child` in a child made for this one task."""
    if _direct_fork(handler):
        _prepare_stdin()
        reader, writer = multiprocessing.connection.Pipe(duplex=False)
        try:
            proc: Any = _ForkedChild(handler, args, kwargs, writer)
        except BaseException:
            reader.close()
            writer.close()
            raise
    else:
        ctx = multiprocessing.get_context(handler.start_method)
        reader, writer = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child_main, args=(handler, args, kwargs, writer, os.getpid()),
                           name=f"steadyflow-task:{type(handler).__name__}")
        proc.start()
    writer.close()
    try:
        os.setpgid(proc.pid, proc.pid)
    except OSError:
        pass
    book = handler.__dict__.get("_book")  # the worker consumer's (see ledger.py)
    try:
        if book is not None:
            book.child(proc.pid)
        return _supervise(handler, proc, reader, book)
    finally:
        if proc.is_alive():
            _signal_group(proc.pid, signal.SIGKILL)
        proc.join()
        if isinstance(proc, _ForkedChild):
            proc.close()
        reader.close()
        if book is not None:
            book.child(None)


def _supervise(handler: Any, proc: Any, reader: Any, book: Any = None, reused: bool = False) -> Any:
    """Watch `proc` run `handler.run()` until it reports and exits (`reused`: until it reports; a
    child that was interrupted leaves after reporting, so it is awaited as a forked one is)."""
    now = time.monotonic()
    hard_at = now + (handler._start_time + handler.hard_timeout - time.time())
    next_tick = now + handler.alarm_timeout
    kill_at = float("inf")
    last_running = True
    interrupted: str | None = None
    outcome: tuple | None = None
    exited = False
    sources = [reader]
    # The consumer's own work that waits until a child runs: deletes of earlier tasks' messages.
    background_at = now if book is not None else float("inf")
    while not exited:
        now = time.monotonic()
        if now >= background_at:
            try:
                background_at = book.while_running(now)
            except Exception:  # noqa: BLE001 - never let it disturb the supervision
                logger.exception("background work of the consumer failed")
                background_at = float("inf")
            now = time.monotonic()
        if interrupted is None:
            if now >= hard_at:
                interrupted = "timeout"
            elif _shutdown_at is not None and now >= _shutdown_at:
                interrupted = "shutdown"
            elif now >= next_tick:
                if not last_running:
                    interrupted = "stuck"
                else:
                    handler._extend_timeout(handler.sqs_timeout)
                    while next_tick <= now:
                        next_tick += handler.alarm_timeout
            if interrupted is not None:
                logger.warning("stopping run() of %s (%s): SIGTERM, then SIGKILL after %gs",
                               handler._message_id(), interrupted, handler.kill_grace)
                _signal_group(proc.pid, signal.SIGTERM)
                kill_at = now + handler.kill_grace
        elif now >= kill_at:
            _signal_group(proc.pid, signal.SIGKILL)
            kill_at = float("inf")
        deadlines = [kill_at] if interrupted else [hard_at, next_tick, _shutdown_at or float("inf")]
        deadlines.append(background_at)
        timeout = max(0.0, min(min(deadlines) - now, 5.0))
        ready = multiprocessing.connection.wait([proc.sentinel, *sources], timeout)
        if sources and (reader in ready or proc.sentinel in ready):
            while True:
                try:
                    if not reader.poll(0):
                        break
                    message = reader.recv()
                except (EOFError, OSError):
                    sources = []
                    break
                if message[0] == "running":
                    last_running = message[1]
                elif message[0] == "send":
                    local.LocalQueue(message[1]).send_message(**message[2])
                elif message[0] == "result":
                    outcome = message
        exited = proc.sentinel in ready
        if reused and outcome is not None and interrupted is None:
            break
    if exited:
        proc.join()
    if interrupted == "timeout":
        raise TimeoutError("Hit Hard Timeout for message handler")
    if interrupted == "stuck":
        raise RuntimeError(f"Handler is stuck on {handler}")
    if interrupted == "shutdown":
        raise HandedBack(f"consumer shutting down: run() of {handler._message_id()} stopped and handed back")
    if outcome is None:
        code = proc.exitcode
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        raise HandlerError(f"run() process {how} without reporting a result")
    if outcome[1]:
        return pickle.loads(outcome[2])
    raise _load_exception(outcome[2])
