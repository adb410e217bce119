"""Wake-ups for the pool's supervisor: new activity tasks end its idle wait at once.

The supervisor waits on its children's pipes with `multiprocessing.connection.wait`; an engine's
wake-ups (`Engine.wake_waiter`: the SQLite wake channel, PostgreSQL `LISTEN/NOTIFY`) are not
something it can wait on there. So a thread blocks on the engine's waiter and, when woken, writes
one byte into a pipe the supervisor also waits on. The supervisor drains the pipe before it polls,
so a wake-up that arrives during a poll leaves the pipe readable and causes one more poll: none is
lost. The thread never touches the database itself except through the waiter.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from typing import Any

log = logging.getLogger("steadyflow.worker")

SLICE = 0.5
"""Longest single wait of the thread, so that it notices `close()` soon."""


class Waker:
    """A pipe that becomes readable when the engine says activity tasks may be ready."""

    def __init__(self, waiter: Any, name: str = "steadyflow-pool-wake") -> None:
        self._waiter = waiter
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._lock = threading.Lock()
        self._closed = False
        self.failed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def reliable(self) -> bool:
        """True while wake-ups from other processes arrive (the supervisor may then poll rarely)."""
        if self.failed:
            return False
        try:
            return bool(self._waiter.reliable)
        except Exception:  # noqa: BLE001 - a waiter that cannot tell is not relied on
            return False

    def fileno(self) -> int:
        return self._read

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError, OSError):
            while os.read(self._read, 512):
                pass

    def _signal(self) -> None:
        with self._lock:
            if not self._closed:
                with contextlib.suppress(BlockingIOError, InterruptedError):  # full: already readable
                    os.write(self._write, b"!")

    def _loop(self) -> None:
        try:
            while not self._closed:
                if self._waiter.wait(SLICE) and not self._closed:
                    self._signal()
        except Exception as exc:  # the engine went away or its channel broke: back to plain polling
            if not self._closed:
                self.failed = True
                log.warning("wake-ups for new activity tasks stopped (%s: %s); polling instead",
                            type(exc).__name__, exc)
                self._signal()

    def close(self) -> None:
        """Stop the thread (it ends within `SLICE` s) and close the pipe; the thread never writes
        after this, so a reused file descriptor is safe."""
        with self._lock:
            self._closed = True
            fds, self._read, self._write = (self._read, self._write), -1, -1
        for fd in fds:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
