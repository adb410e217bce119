"""The child side of the worker pool: a process that runs the activity tasks its supervisor hands it.

Messages on the pipe (tuples, first item the kind; `token` is the task's lease token):

- child -> supervisor: `("ready", pid)`, `("heartbeat", details_json, token)`,
  `("started", token)` (a child with `async_concurrency` > 1 only: the task begins now),
  `("outcome", ok, result, reason, details, resident_bytes, token)`
- supervisor -> child: `("task", task_dict, alarm_timeout)`, `("cancel", token)`, `("stop",)`

A child runs one task at a time, unless `async_concurrency` > 1: then `aio.py` serves it, running
up to that many tasks at once (`async def` activities on an event loop, the others one by one).

A child leads its own process group, so a hard timeout can kill what the task started too (a
program run by `steadyflow.execute`); a side effect is that a terminal's Ctrl-C or Ctrl-Z reaches
the supervisor only, which is what coordinates the children anyway. It ignores SIGINT (the supervisor coordinates shutdown), dies
on SIGTERM, leaves its loop when the pipe reaches EOF, and never outlives the supervisor: on Linux
the kernel kills it when the supervisor dies (even in the middle of a C call that holds the GIL),
and everywhere a watcher thread exits as soon as the supervisor's process is gone.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_ready
from typing import Any

from .. import logs
from ..errors import PayloadError
from ..payload import json as sfjson
from .middlewares import Middlewares
from .middlewares import install as install_middlewares
from .runner import Outcome, TaskHandler, run_task

log = logging.getLogger("steadyflow.worker")

LOG_FORMAT = "%(asctime)s [%(levelname)s][%(processName)s/%(process)d] %(name)s: %(message)s"
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ChildConfig:
    """What every child process is started with (pickled for `spawn` and `forkserver`)."""

    modules: tuple[str, ...] = ()
    handlers: Mapping[str, TaskHandler] = field(default_factory=dict)
    log_level: int | None = None
    payloads: Any = None
    #: The engine's URL, opened in the child only when a task needs it (stop_execution, state data).
    engine_url: str | None = None
    #: Tasks the supervisor may hand this child at once (`async def` activities run concurrently).
    async_concurrency: int = 1
    #: Pre- and post-execution middlewares, run around every attempt in this child.
    middlewares: Middlewares = field(default_factory=Middlewares)


def resident_bytes() -> int | None:
    """This process's resident memory (current on Linux, peak elsewhere), or None if unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError):
        return None
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _die_with_parent() -> None:
    """Exit as soon as the supervisor's process is gone, even in the middle of a task."""
    parent = multiprocessing.parent_process()
    if sys.platform.startswith("linux"):
        try:  # the kernel's way: works while the main thread holds the GIL in a C loop
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if parent is None:
        return

    def watch() -> None:  # also catches a supervisor that died before prctl above
        # SIGALRM (a task's alarm) is for the main thread: left unblocked here, the kernel could
        # deliver it to this thread while the main thread holds it off around a pipe write.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        wait_ready([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="steadyflow-parent-watch", daemon=True).start()


def heartbeat_text(details: Any, task: dict[str, Any], payloads: Any = None) -> str | None:
    """Heartbeat details as the JSON text sent to the supervisor (sealed when payloads encrypt);
    None when there are none or they cannot be encoded (logged)."""
    if details is None:
        return None
    try:
        text = sfjson.dumps(details)
        if payloads is not None and payloads.encryption is not None:  # no plaintext at rest
            text = payloads.seal(text)
        return text
    except PayloadError as exc:
        log.warning("heartbeat details of %s are not JSON-serialisable; not sent: %s", task["name"], exc)
        return None


def _heartbeat_sender(conn: Connection, task: dict[str, Any], payloads: Any = None) -> Any:
    """The function `steadyflow.heartbeat(details)` calls in this child: forward new details to the
    supervisor, and read any cancellation it sent; return True once cancellation was requested."""
    state: dict[str, Any] = {"cancel": False, "last": None}
    in_main = threading.current_thread() is threading.main_thread()

    def send_heartbeat(details: Any) -> bool:
        text = heartbeat_text(details, task, payloads)
        # The alarm must not interrupt a half-written message: hold SIGALRM until the pipe is done.
        if in_main:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            if text is not None and text != state["last"]:
                conn.send(("heartbeat", text, task.get("token")))
                state["last"] = text
            while conn.poll():
                if conn.recv()[0] == "cancel":
                    state["cancel"] = True
        except (EOFError, OSError):
            raise SystemExit(1) from None  # the supervisor is gone: nobody will record the result
        finally:
            if in_main:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
        return bool(state["cancel"])

    return send_heartbeat


def _lazy_engine(url: str | None) -> Callable[[], Any] | None:
    """Opens the engine on first use only: most tasks never need it, and a connection pool per
    child would cost every worker process. Once per process, whichever thread asks first."""
    if url is None:
        return None
    opened: list[Any] = []
    lock = threading.Lock()

    def engine() -> Any:
        with lock:
            if not opened:
                from ..engines import open_engine

                opened.append(open_engine(url))
        return opened[0]

    return engine


def child_main(conn: Connection, config: ChildConfig) -> None:
    """A child's life: import the modules, start the handlers, run the tasks that arrive until the
    pipe closes or a `stop` comes."""
    try:
        os.setpgid(0, 0)
    except OSError:
        pass  # already a group leader (or not allowed): the supervisor falls back to os.kill
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()
    if config.log_level is not None and not logging.getLogger().handlers:
        logs.configure(config.log_level)  # the format (text or JSON) comes from the environment
    try:
        for name in config.modules:
            importlib.import_module(name)
        for name, handler in config.handlers.items():
            try:
                handler.start()
            except Exception:
                log.exception("worker process %s: the handler of activity %r failed to start", os.getpid(), name)
                raise SystemExit(4) from None
        try:
            install_middlewares(config.middlewares.load() if config.middlewares else None)
        except Exception:
            log.exception("worker process %s: a middleware failed to import", os.getpid())
            raise SystemExit(4) from None
        engine = _lazy_engine(config.engine_url)
        conn.send(("ready", os.getpid()))
        if config.async_concurrency > 1:
            from .aio import ConcurrentChild  # imports this module: not at the top

            ConcurrentChild(conn, config, engine).serve()
            return
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            if msg[0] == "task":
                task, alarm_timeout = msg[1], msg[2]
                outcome: Outcome = run_task(task, _heartbeat_sender(conn, task, config.payloads), config.modules, config.handlers,
                                            alarm_timeout, config.payloads, engine)
                conn.send(("outcome", outcome.ok, outcome.result, outcome.reason, outcome.details, resident_bytes(),
                           task.get("token")))
            elif msg[0] == "stop":
                return
            # A "cancel" for a task that already finished needs nothing.
    except (EOFError, OSError):
        return
    finally:
        conn.close()


__all__ = ["LOG_FORMAT", "ChildConfig", "child_main", "heartbeat_text", "resident_bytes"]
