"""Wake-ups between processes that share a SQLite file, so an idle poller needs no busy polling.

A thread that waits for work owns a Unix datagram socket (Linux abstract namespace: no path, no
file left behind by a crash) and registers it as an empty file in `<database>.wake/`. A process
whose commit made work ready sends one byte to every registered socket. A registration whose
socket is gone (its process died) is removed by the first sender that notices.

Wake-ups are hints: a waiter always looks at the database again, and pollers still look by
themselves now and then, so a lost datagram costs latency, never work. Where abstract sockets
do not exist (not Linux), `WakeChannel.available` is False and pollers fall back to back-off.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import select
import socket
import sys
import threading
import uuid
from typing import Protocol


class WakeWaiter(Protocol):
    """What an engine hands an idle poller (`Engine.wake_waiter`): one thread blocks in `wait`.

    `wait(timeout)` returns True when tasks may have become ready since the last call (the first
    call always returns True: wake-ups before it were not seen, so look once), False when the
    timeout passed quietly. `reliable` is False while wake-ups from other processes may be missed
    (no channel, a listener reconnecting): the poller should then poll at its short interval.
    """

    @property
    def reliable(self) -> bool: ...

    def wait(self, timeout: float) -> bool: ...


class WakeChannel:
    available = sys.platform.startswith("linux")

    def __init__(self, database_path: str) -> None:
        self.directory = os.path.abspath(database_path) + ".wake"
        self._prefix = "steadyflow-wake-" + hashlib.sha1(self.directory.encode()).hexdigest()[:16] + "-"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._owned: list[tuple[str, socket.socket, int]] = []  # name, socket, pid that made it

    def _socket(self) -> socket.socket:
        local = self._local
        if getattr(local, "sock", None) is None or local.pid != os.getpid():
            name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind("\0" + self._prefix + name)
            sock.setblocking(False)
            os.makedirs(self.directory, exist_ok=True)
            with open(os.path.join(self.directory, name), "a"):
                pass
            local.sock, local.pid = sock, os.getpid()
            with self._lock:
                self._owned.append((name, sock, os.getpid()))
        return local.sock

    def register(self) -> None:
        """Register the calling thread: from now on, every `notify` reaches its next `wait`."""
        self._socket()

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` s for a wake-up (one that came since the last wait counts); True if woken."""
        sock = self._socket()
        ready, _, _ = select.select([sock], [], [], max(timeout, 0.0))
        if not ready:
            return False
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while sock.recv(16):
                pass
        return True

    def notify(self) -> None:
        """Wake every registered waiter (of every process using this database)."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as out:
            out.setblocking(False)
            for name in names:
                try:
                    out.sendto(b"!", "\0" + self._prefix + name)
                except (BlockingIOError, InterruptedError):
                    continue  # its queue is full: a wake-up is already waiting for it
                except OSError as exc:
                    if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):  # its process is gone
                        with contextlib.suppress(OSError):
                            os.unlink(os.path.join(self.directory, name))

    def close(self) -> None:
        with self._lock:
            owned, self._owned = self._owned, []
        for name, sock, pid in owned:
            if pid == os.getpid():  # a child of a fork leaves its parent's registrations alone
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.directory, name))
            sock.close()
        self._local = threading.local()
