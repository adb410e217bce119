"""stefuna's `Server`: a pool of pre-started worker processes serving one activity.

On steadyflow's engines an activity is addressed by its **name**, the last part of the ARN
(`arn:aws:states:us-east-1:123456789012:activity:hello` -> `hello`); a plain name is accepted too.
The server polls the task list of that name, and runs tasks named so with the configured `Worker`
subclass. A workflow schedules such a task with `self.submit(activity.named("hello"), input)`,
whose task list defaults to the name as well.

Beyond stefuna, the pool replaces dead worker processes and fails their task (retryable) instead
of hanging, enforces `alarm_timeout`/`hard_timeout`, heartbeats without a thread per child, and
shuts down gracefully: the first SIGTERM/SIGINT stops polling and gives running tasks `grace`
seconds, a second hands them back at once. The healthcheck reports the pool's health (503 when it
is not healthy, see `steadyflow.worker.health`) and binds **127.0.0.1**, where stefuna's listens
on all interfaces; set `healthcheck_host` to expose it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from typing import Any, ClassVar

from ..engines import Engine, open_engine
from ..errors import ConfigError
from ..worker import HealthServer, WorkerPool
from ..worker.health import DEFAULT_HOST
from .worker import Worker, WorkerHandler

logger = logging.getLogger("steadyflow.stepfunctions")


def activity_name(activity_arn: str) -> str:
    """The activity's name: the part of an activity ARN after `:activity:`, or a plain name."""
    if not isinstance(activity_arn, str) or not activity_arn.strip():
        raise ConfigError(f"activity_arn must be an activity ARN or name, not {activity_arn!r}")
    if not activity_arn.startswith("arn:"):
        if ":" in activity_arn:
            raise ConfigError(f"activity_arn {activity_arn!r} is neither an ARN (arn:...:activity:NAME) nor a name")
        return activity_arn
    parts = activity_arn.split(":")
    if len(parts) < 7 or parts[2] != "states" or parts[5] != "activity" or not parts[6]:
        raise ConfigError(f"activity_arn {activity_arn!r} is not an activity ARN (arn:aws:states:REGION:ACCOUNT:activity:NAME)")
    return ":".join(parts[6:])


def activity_region(activity_arn: str | None) -> str | None:
    """The region field of an ARN (stefuna passes it to its workers), None for a plain name."""
    parts = (activity_arn or "").split(":")
    return parts[3] if len(parts) >= 4 and parts[0] == "arn" else None


def server_name(name: str) -> str:
    """stefuna's worker name: `<name>-<this host's address>`, else `<name>-<pid>`."""
    try:
        host: Any = socket.gethostbyname(socket.gethostname())
    except OSError:
        host = os.getpid()
    return f"{name}-{host}"


class Server:
    """Serves one activity with a `Worker` subclass; subclass it and override `init(server_config)`.

    The stefuna arguments come first, with stefuna's defaults; `engine` (an `Engine` or a URL,
    default `STEADYFLOW_URL` or the SQLite file) and the rest are steadyflow's.
    """

    worker_class: ClassVar[type[Worker] | None] = None

    def __init__(
        self,
        name: str = "StefunaWorker",
        activity_arn: str | None = None,
        processes: int | None = None,
        heartbeat: float | None = 0,
        maxtasksperchild: int | None = 100,
        server_config: Any = None,
        worker_config: Any = None,
        healthcheck: int | None = None,
        loglevel: int | None = None,
        *,
        engine: Engine | str | None = None,
        worker_class: type[Worker] | None = None,
        start_method: str = "spawn",
        healthcheck_host: str = DEFAULT_HOST,
        grace: float = 30.0,
        alarm_timeout: float | None = None,
        hard_timeout: float | None = None,
        max_memory: float | None = None,
        kill_grace: float = 5.0,
    ) -> None:
        cls = worker_class or type(self).worker_class or Server.worker_class
        if cls is None:
            raise ConfigError("Server.worker_class must be set to a Worker subclass (or pass worker_class=)")
        if activity_arn is None:
            raise ConfigError("activity_arn is not set")
        self.worker_class = cls
        self.config = server_config
        self.activity_arn = activity_arn
        self.activity_name = activity_name(activity_arn)
        self.server_name = server_name(name)
        self.healthcheck = healthcheck
        self.healthcheck_host = healthcheck_host
        self.health: HealthServer | None = None
        self.init(server_config)  # before the workers are created, as stefuna does
        handler = WorkerHandler(cls, worker_config, activity_region(activity_arn), heartbeat or 0)
        self.pool = WorkerPool(
            engine if isinstance(engine, Engine) else open_engine(engine),
            self.activity_name,
            processes=processes or 0,
            identity=self.server_name,
            start_method=start_method,
            handlers={self.activity_name: handler},
            maxtasksperchild=maxtasksperchild,
            max_memory=max_memory,
            alarm_timeout=alarm_timeout,
            hard_timeout=hard_timeout,
            kill_grace=kill_grace,
            grace=grace,
            heartbeat=heartbeat or None,
            log_level=loglevel,
        )
        logger.debug("server %s for activity %r with %d process(es)", self.server_name, self.activity_name, self.pool.processes)

    def init(self, server_config: Any) -> None:
        """Called once in the main process before the workers start. Override it."""

    def run(self) -> None:
        """Serve until `close()` or SIGTERM/SIGINT (handled when run in the main thread)."""
        previous = self._install_signals()
        try:
            if self.healthcheck:
                self.health = HealthServer(self.pool, self.healthcheck, self.healthcheck_host).start()
            logger.info("serving activity %r as %s", self.activity_name, self.server_name)
            self.pool.run()
        finally:
            if self.health is not None:
                self.health.close()
                self.health = None
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def close(self, grace: float | None = None) -> None:
        """Stop the run loop: no more tasks; running ones get `grace` seconds (default: `grace=`)."""
        logger.info("closing server %s", self.server_name)
        self.pool.stop(grace)

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        signalled = threading.Event()

        def on_signal(signum: int, frame: Any) -> None:
            self.close(0 if signalled.is_set() else None)  # a second signal: hand back at once
            signalled.set()

        return {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}


__all__ = ["Server", "activity_name", "activity_region", "server_name"]
