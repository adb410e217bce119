"""Scaling out on PostgreSQL: real decider and worker processes, each with its own connection pool,
killed with SIGKILL or cut off from the server mid-run. Nothing may be lost or recorded twice.

The workflow and its activity live in `tests/pg.py`, which the spawned processes import.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from steadyflow import history as h
from steadyflow.engines import open_engine
from steadyflow.local import start
from tests import pg
from tests.pg import STEPS, TenSteps

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


class Cluster:
    """Decider and worker processes on one PostgreSQL schema; stops whatever is left on exit."""

    def __init__(self, url: str, task_list: str, logs: Path) -> None:
        self.url, self.task_list, self.logs = url, task_list, logs
        self.deciders: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self.spawned = 0

    def _spawn(self, *args: str) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=str(ROOT), STEADYFLOW_URL=self.url)
        self.spawned += 1
        with open(self.logs / f"{args[0]}-{self.spawned}.log", "w") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "steadyflow", *args],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )

    def check_deciders(self) -> None:
        """Fail at once, with its last log lines, when a decider process has died."""
        for proc in self.deciders:
            if proc.poll() is not None:
                tails = {p.name: p.read_text()[-2000:] for p in sorted(self.logs.glob("decider-*.log"))}
                raise AssertionError(f"a decider exited with code {proc.returncode}: {tails}")

    def decider(self) -> None:
        workflow = f"{TenSteps.__module__}.TenSteps"
        self.deciders.append(self._spawn("decider", "start", "--task-list", self.task_list, workflow))

    def worker(self) -> None:
        self.workers.append(self._spawn("worker", "start", "--task-list", self.task_list, "--processes", "1"))

    def kill_a_worker(self) -> None:
        doomed = self.workers.pop(random.randrange(len(self.workers)))
        os.killpg(doomed.pid, signal.SIGKILL)  # the supervisor and its child, mid-task or not
        doomed.wait()

    def stop(self) -> None:
        procs = self.deciders + self.workers
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.fixture
def cluster(pg_schema, tmp_path):
    c = Cluster(pg_schema.url, "pg-cluster", tmp_path)
    yield c
    c.stop()


def wait_until_all_closed(cluster, engine, timeout: float, every: float, action) -> None:
    """Call `action()` every `every` seconds until no execution is open (fails after `timeout`)."""
    deadline = time.monotonic() + timeout
    next_action = time.monotonic() + every
    while engine.list_executions(status="open", limit=1):
        cluster.check_deciders()
        left = len(engine.list_executions(status="open", limit=10_000))
        assert time.monotonic() < deadline, f"{left} executions still open after {timeout} s"
        if time.monotonic() >= next_action:
            action()
            next_action = time.monotonic() + every
        time.sleep(0.05)


def check_execution(engine, info, base: int) -> collections.Counter:
    """Completed with the right result, every step completed once, no decision applied twice."""
    assert info.status == "completed", (info.workflow_id, info.close_reason, info.close_details)
    assert json.loads(info.result) == base + STEPS
    events = engine.get_history(info.workflow_id)
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))
    by_type = collections.Counter(e.event_type for e in events)
    activity_of = {
        e.event_id: e.attributes["activityId"] for e in events if e.event_type == h.ACTIVITY_TASK_SCHEDULED
    }
    scheduled = collections.Counter(activity_of.values())
    completed = collections.Counter(
        activity_of[e.attributes["scheduledEventId"]]
        for e in events
        if e.event_type == h.ACTIVITY_TASK_COMPLETED
    )
    closed = collections.Counter(
        e.attributes["scheduledEventId"]
        for e in events
        if e.event_type in (h.ACTIVITY_TASK_COMPLETED, h.ACTIVITY_TASK_FAILED, h.ACTIVITY_TASK_TIMED_OUT)
    )
    assert len(completed) == STEPS and set(completed.values()) == {1}, completed  # each step once
    assert set(closed.values()) == {1}, closed  # each attempt closed once
    retried = by_type[h.ACTIVITY_TASK_TIMED_OUT] + by_type[h.ACTIVITY_TASK_FAILED]
    assert sum(scheduled.values()) == STEPS + retried  # a decision applied twice would schedule more
    answered = [
        e.attributes["startedEventId"]
        for e in events
        if e.event_type in (h.DECISION_TASK_COMPLETED, h.DECISION_TASK_FAILED, h.DECISION_TASK_TIMED_OUT)
    ]
    assert len(answered) == len(set(answered)), "a decision task was answered twice"
    return by_type


def test_two_deciders_and_four_killed_workers_run_500_executions_exactly_once(cluster):
    count = 500
    engine = open_engine(cluster.url)
    for i in range(count):
        start(engine, TenSteps, [i * 100], workflow_id=f"chain-{i}", task_list=cluster.task_list)
    for _ in range(2):
        cluster.decider()
    for _ in range(4):
        cluster.worker()
    kills = []

    def kill_and_replace() -> None:
        cluster.kill_a_worker()
        cluster.worker()
        kills.append(1)

    wait_until_all_closed(cluster, engine, timeout=300, every=1.0, action=kill_and_replace)
    cluster.check_deciders()
    closed = engine.list_executions(status="closed", limit=2 * count)
    assert len(closed) == count
    totals = collections.Counter()
    for info in closed:
        totals += check_execution(engine, info, int(info.workflow_id.split("-")[1]) * 100)
    assert len(kills) >= 3
    engine.close()


def test_workers_and_deciders_reconnect_when_the_server_drops_their_connections(cluster, pg_schema):
    count = 100
    engine = open_engine(cluster.url)
    for i in range(count):
        start(engine, TenSteps, [i], workflow_id=f"chain-{i}", task_list=cluster.task_list)
    for _ in range(2):
        cluster.decider()
        cluster.worker()
    terminated = []

    def cut_connections() -> None:
        terminated.append(pg.terminate_backends(pg_schema.name))

    wait_until_all_closed(cluster, engine, timeout=300, every=1.0, action=cut_connections)
    assert all(p.poll() is None for p in cluster.deciders + cluster.workers), "a process gave up"
    assert sum(terminated) > 0
    closed = engine.list_executions(status="closed", limit=2 * count)
    assert len(closed) == count
    for info in closed:
        check_execution(engine, info, int(info.workflow_id.split("-")[1]))
    engine.close()
