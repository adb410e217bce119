"""5,000 tasks through real consumer processes on SQLite, PostgreSQL and SQS (moto_server).

Without failures each task is handled exactly once; with a consumer killed by SIGKILL every
200 ms, each is handled at least once and none is lost. Handlings are recorded by the task itself
in a separate SQLite file (one INSERT each), which survives the kills.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from steadyflow.tasks import TaskManager
from tests.fixtures.moto import moto_server  # noqa: F401 - session fixture
from tests.fixtures.task_handlers import Tally, handled, record_db, stop_worker

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
# The figure is 5,000 tasks per backend, which SQLite and PostgreSQL get by default (a few
# seconds each since consumers reuse their task process). moto_server's SQS spends tens of
# milliseconds of its one GIL-bound core on every message (a deep copy per message received, every
# message's visibility recomputed for each one sent), so SQS gets 1,000 by default, to keep the suite
# within ten minutes on two cores; STEADYFLOW_TASKS_LOAD_COUNT_SQS=5000 runs the full load there
# (measured: both tests pass, in two to six minutes each, depending on what else runs).
COUNT = int(os.environ.get("STEADYFLOW_TASKS_LOAD_COUNT", "5000"))
SQS_COUNT = int(os.environ.get("STEADYFLOW_TASKS_LOAD_COUNT_SQS", "1000"))
# moto's cost per operation grows with the messages in the queue, so the producer keeps only this many
# outstanding there: enough for the consumer's batches to follow each other without a gap.
SQS_BACKLOG = 100
DEADLINE = 900.0  # a guard against hangs, not a speed requirement


@pytest.fixture(params=["sqlite", "postgres", "sqs"])
def queue_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}?queue=load"
    if request.param == "postgres":
        return request.getfixturevalue("pg_schema").url + "&queue=load"
    return request.getfixturevalue("moto_server").queue("load")


def start_worker(url: str, *, visibility: int, batch: int, processes: int = 2) -> subprocess.Popen:
    command = [sys.executable, "-m", "steadyflow", "tasks", "worker", "tests.fixtures.task_handlers", "--queue", url,
               "--processes", str(processes), "--wait-time", "1", "--visibility-timeout", str(visibility), "--batch-size", str(batch),
               "--shutdown-grace", "5"]
    return subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL)


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]


def produce_and_wait(url: str, db: str, task: str, worker: subprocess.Popen, *, sqs: bool, kill_every: float | None):
    """Submit the tasks (on moto, at most SQS_BACKLOG of them outstanding) and wait until each was handled."""
    total = SQS_COUNT if sqs else COUNT
    tm = TaskManager(url, sender_name="load-test")
    submitted, kills = 0, 0
    window = SQS_BACKLOG if sqs else total
    deadline = time.monotonic() + DEADLINE
    next_kill = time.monotonic() + (kill_every or 0)
    tally = Tally(db)
    done: set[int] = set()
    while len(done) < total:
        assert time.monotonic() < deadline, f"only {len(done)} of {total} handled ({submitted} submitted, {kills} kills)"
        assert worker.poll() is None, f"worker exited with {worker.returncode}"
        room = min(total - submitted, window - (submitted - len(done)))
        if room > 0 and (room >= 10 or submitted + room == total):
            tm.send_many(task, [{"db": db, "n": n} for n in range(submitted, submitted + room)])
            submitted += room
        if kill_every and time.monotonic() >= next_kill:
            consumers = children(worker.pid)
            if consumers:
                try:
                    os.kill(consumers[kills % len(consumers)], signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:  # it died and was reaped since it was listed: next time
                    pass
            next_kill += kill_every
        time.sleep(0.02 if sqs else 0.05)
        done = set(tally.poll())
    return tm, kills


def wait_empty(tm: TaskManager, seconds: float = 30) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        attributes = tm.attributes()
        if int(attributes["ApproximateNumberOfMessages"]) == 0 and int(attributes["ApproximateNumberOfMessagesNotVisible"]) == 0:
            return attributes
        assert time.monotonic() < deadline, f"queue not empty: {attributes}"
        time.sleep(0.2)


def test_each_task_is_handled_exactly_once_when_nothing_fails(queue_url, tmp_path):
    db = str(tmp_path / "handled.db")
    record_db(db).close()
    sqs = queue_url.startswith("http")
    # moto_server's ReceiveMessage is not atomic across concurrent requests (two may return the same
    # message; real SQS standard queues may duplicate too, rarely), so SQS gets one consumer here.
    worker = start_worker(queue_url, visibility=10, batch=10 if sqs else 1, processes=1 if sqs else 2)
    try:
        tm, _ = produce_and_wait(queue_url, db, "record", worker, sqs=sqs, kill_every=None)
        wait_empty(tm)
        time.sleep(0.5)  # a duplicate would show up now
    finally:
        stop_worker(worker)
    seen = handled(db)
    assert sorted(seen) == list(range(SQS_COUNT if sqs else COUNT)), f"{len(seen) - len(set(seen))} duplicates"


def test_no_task_is_lost_when_a_consumer_is_killed_every_200ms(queue_url, tmp_path):
    db = str(tmp_path / "handled.db")
    record_db(db).close()
    sqs = queue_url.startswith("http")
    worker = start_worker(queue_url, visibility=3, batch=1)  # a kill strands at most one message
    try:
        tm, kills = produce_and_wait(queue_url, db, "record-short", worker, sqs=sqs, kill_every=0.2)
        wait_empty(tm)
    finally:
        stop_worker(worker)
    assert set(handled(db)) == set(range(SQS_COUNT if sqs else COUNT))
    assert kills >= 5
