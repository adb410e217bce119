"""Limits hold across worker processes: three `worker start` processes share one SQLite engine."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from steadyflow import history as h
from steadyflow.engines import open_engine
from steadyflow.engines.limits import TaskListLimits
from tests.fixtures import limited_activities as la
from tests.fixtures.cluster import ROOT
from tests.fixtures.pool_helpers import act, events, schedule, wait_for

pytestmark = pytest.mark.slow


def workers(url: str, task_list: str, count: int, processes: int) -> list[subprocess.Popen]:
    command = [sys.executable, "-m", "steadyflow", "--engine", url, "worker", "start", "--task-list", task_list,
               "--processes", str(processes), "-m", "tests.fixtures.limited_activities", "--grace", "5"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(count)]


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(30)


def test_a_concurrency_limit_of_three_holds_across_three_worker_processes(tmp_path):
    url = f"sqlite:///{tmp_path / 'steadyflow.db'}"
    engine = open_engine(url)
    engine.set_task_list_limits(TaskListLimits("limited", concurrency=3))
    counter = str(tmp_path / "counter.db")
    procs = workers(url, "limited", count=3, processes=2)  # six slots, three allowed
    try:
        wid = schedule(engine, *[act(la.counted.name, counter, 0.3, task_list="limited") for _ in range(15)])
        wait_for(lambda: len(events(engine, wid, h.ACTIVITY_TASK_COMPLETED)) == 15, engine, 60, "15 tasks")
    finally:
        stop(procs)
    assert la.peak(counter) == 3


def test_a_rate_limit_of_twenty_per_second_holds_within_ten_percent(tmp_path):
    url = f"sqlite:///{tmp_path / 'steadyflow.db'}"
    engine = open_engine(url)
    engine.set_task_list_limits(TaskListLimits("rated", rate_count=20, rate_period=1.0))
    procs = workers(url, "rated", count=2, processes=2)
    try:
        wid = schedule(engine, *[act(la.noop.name, task_list="rated") for _ in range(240)])
        wait_for(lambda: len(events(engine, wid, h.ACTIVITY_TASK_STARTED)) >= 230, engine, 60, "230 starts")
    finally:
        stop(procs)
    starts = sorted(e.timestamp for e in events(engine, wid, h.ACTIVITY_TASK_STARTED))
    in_ten_seconds = [t for t in starts if starts[0] <= t < starts[0] + 10.0]
    assert 180 <= len(in_ten_seconds) <= 220, len(in_ten_seconds)
