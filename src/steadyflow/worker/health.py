"""The worker's HTTP healthcheck: `GET /` answers how the pool is doing, as JSON.

```
200 {"status": "ok", "processes": 4, "alive": 4, "running": 1, "seconds_since_last_poll": 0.02, ...}
503 {"status": "unhealthy", "reason": "worker processes die during start-up (3 in a row, ...)", ...}
```

The pool is unhealthy when it is not running (before `run()`, or after it ended, e.g. with
`PoolError`), when its children die during start-up, when fewer children than configured have been
ready for longer than `shortage_grace`, or when a child sits idle but the engine has not been
polled successfully for `poll_stall` seconds. While the pool shuts down gracefully the answer stays
200 with `"stopping": true`, so an orchestrator's liveness probe does not kill it mid-grace.

stefuna answers any GET with `{"status": "ok"}` from a server bound to **all interfaces**; this
one binds **127.0.0.1** unless told otherwise (`--healthcheck-host 0.0.0.0` in a container), since
a healthcheck has nothing to say to the rest of the network. Any GET path is answered, as
stefuna's is; other methods get 405 (or the standard library's 501 for unknown verbs), and a
failure inside the handler is a 500 with a JSON body, never a traceback.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..errors import ConfigError
from .pool import WorkerPool
from .state import PoolStatus

log = logging.getLogger("steadyflow.worker.health")

DEFAULT_PORT = 8080
"""stefuna's default healthcheck port (its config turns the healthcheck on with it)."""
DEFAULT_HOST = "127.0.0.1"
SHORTAGE_GRACE = 15.0
POLL_STALL = 120.0


def assess(status: PoolStatus, shortage_grace: float = SHORTAGE_GRACE, poll_stall: float = POLL_STALL) -> tuple[bool, str | None]:
    """(healthy, reason when not) for a pool snapshot."""
    if status.error is not None and not status.active:
        return False, f"pool stopped: {status.error}"
    if not status.active:
        return False, "pool is not running"
    if status.stopping:
        return True, None
    if status.start_failures and status.ready < status.processes:
        code = status.last_exit_code
        return False, f"worker processes die during start-up ({status.start_failures} in a row, last exit code {code})"
    if status.short_for is not None and status.short_for > shortage_grace:
        return False, f"only {status.ready} of {status.processes} worker processes ready for {status.short_for:.0f}s"
    since = status.seconds_since_last_poll
    if status.idle and since is not None and since > poll_stall:
        return False, f"no successful poll of the engine for {since:.0f}s"
    return True, None


def health_body(pool: WorkerPool, shortage_grace: float = SHORTAGE_GRACE, poll_stall: float = POLL_STALL) -> tuple[int, dict[str, Any]]:
    """The HTTP status code and JSON body for `pool`'s current state."""
    status = pool.status()
    healthy, reason = assess(status, shortage_grace, poll_stall)
    body: dict[str, Any] = {
        "status": "ok" if healthy else "unhealthy",
        "processes": status.processes,
        "alive": status.alive,
        "running": status.running,
        "seconds_since_last_poll": status.seconds_since_last_poll,
        "ready": status.ready,
        "completed": status.completed,
        "stopping": status.stopping,
        "task_list": pool.task_list,
    }
    if reason is not None:
        body["reason"] = reason
    return (200 if healthy else 503), body


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "steadyflow-healthcheck"

    def do_GET(self) -> None:  # noqa: N802 - the standard library's naming
        self._answer(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        try:
            code, body = health_body(self.server.pool, self.server.shortage_grace, self.server.poll_stall)
        except Exception as exc:  # a bug here must not look like a dead worker's traceback page
            log.exception("healthcheck failed")
            code, body = 500, {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}
        self._send(code, body, send_body)

    def _not_allowed(self) -> None:
        self._send(405, {"status": "error", "reason": f"method {self.command} not allowed; use GET"}, True, allow=True)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed  # noqa: N815

    def _send(self, code: int, body: dict[str, Any], send_body: bool, allow: bool = False) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if allow:
            self.send_header("Allow", "GET, HEAD")
        self.end_headers()
        if send_body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the standard library's signature
        log.debug("healthcheck from %s: %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], pool: WorkerPool, shortage_grace: float, poll_stall: float) -> None:
        self.pool = pool
        self.shortage_grace = shortage_grace
        self.poll_stall = poll_stall
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("healthcheck connection from %s failed", client_address, exc_info=True)


class HealthServer:
    """Serves `pool`'s health on `host:port` from a daemon thread; `port=0` picks a free port.

    Use as a context manager, or `start()` / `close()`.
    """

    def __init__(
        self,
        pool: WorkerPool,
        port: int = DEFAULT_PORT,
        host: str = DEFAULT_HOST,
        shortage_grace: float = SHORTAGE_GRACE,
        poll_stall: float = POLL_STALL,
    ) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"healthcheck port must be 0-65535, not {port!r}")
        self.pool = pool
        self.host = host
        self.requested_port = port
        self.shortage_grace = shortage_grace
        self.poll_stall = poll_stall
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port listened on (the chosen one when started with port 0)."""
        return self._server.server_address[1] if self._server is not None else self.requested_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> HealthServer:
        try:
            self._server = _Server((self.host, self.requested_port), self.pool, self.shortage_grace, self.poll_stall)
        except OSError as exc:
            raise ConfigError(f"healthcheck cannot listen on {self.host}:{self.requested_port}: {exc.strerror or exc}") from exc
        self._thread = threading.Thread(target=self._server.serve_forever, name="steadyflow-healthcheck", daemon=True)
        self._thread.start()
        log.info("healthcheck on %s", self.url)
        return self

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "HealthServer", "assess", "health_body"]
