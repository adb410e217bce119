"""Idle pollers of a SQLite engine in other processes are woken by commits, not by polling."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from steadyflow.engines import open_engine
from steadyflow.engines.wake import WakeChannel

pytestmark = pytest.mark.skipif(not WakeChannel.available, reason="abstract Unix sockets are Linux-only")

POLLER = """
import sys, time
from steadyflow.engines import open_engine
engine = open_engine(sys.argv[1])
print("ready", flush=True)
for _ in range(3):
    task = engine.poll_decision_task("tl", "poller", wait=30)
    print(time.time() - float(task.workflow_id), flush=True)
    engine.complete_decision_task(task.token, [])
"""


def test_a_poller_in_another_process_takes_new_work_without_waiting_out_its_back_off(tmp_path):
    url = f"sqlite:///{tmp_path / 'steadyflow.db'}"
    engine = open_engine(url)
    poller = subprocess.Popen([sys.executable, "-c", POLLER, url], stdout=subprocess.PIPE, text=True)
    try:
        assert poller.stdout.readline().strip() == "ready"
        for _ in range(3):
            time.sleep(1.2)  # long enough for the poller to sit in its 1 s back-off
            engine.start_execution(repr(time.time()), "T", "1", "tl", None)
            latency = float(poller.stdout.readline())
            # Without a wake-up the poller would look again only after up to a second.
            assert latency < 0.5, f"picked up after {latency:.3f}s"
    finally:
        poller.kill()
        poller.wait()


def test_registrations_of_dead_processes_are_removed(tmp_path):
    channel = WakeChannel(str(tmp_path / "steadyflow.db"))
    channel.wait(0)  # registers this thread
    Path(channel.directory, "999999-deadbeef").touch()
    channel.notify()
    names = sorted(p.name for p in Path(channel.directory).iterdir())
    assert len(names) == 1 and not names[0].startswith("999999")
    assert channel.wait(0) is True  # the notification reached the live one
    channel.close()
    assert list(Path(channel.directory).iterdir()) == []
