"""An idle worker pool takes a task scheduled by another process at once, not at its next poll.

The pools here poll by themselves only every 5 s (`MIN_WAIT` and `poll_interval` both 5 s), so a
task picked up within 2 s of being scheduled can only have come through a wake-up: the SQLite
wake channel or PostgreSQL `LISTEN/NOTIFY`. Without wake-ups the pool still finds its tasks, by
polling.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from steadyflow import history as h
from steadyflow.engines import open_engine
from steadyflow.engines.wake import WakeChannel
from steadyflow.errors import ConfigError
from steadyflow.worker import pool as pool_module
from tests.fixtures.pool_helpers import act, events, running_pool, schedule, wait_events, wait_for

ROOT = Path(__file__).resolve().parents[1]
MOD = "tests.fixtures.pool_activities"
TASK_LIST = "wake-tests"
FALLBACK = 5.0
# Another process starts an execution and answers its first decision with one activity task.
SCHEDULER = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from steadyflow.engines import open_engine
from tests.fixtures.pool_helpers import act, schedule
engine = open_engine(sys.argv[1])
print(schedule(engine, act({MOD + '.echo'!r}, 7, task_list={TASK_LIST!r})), flush=True)
engine.close()
"""

linux_only = pytest.mark.skipif(not WakeChannel.available, reason="the SQLite wake channel is Linux-only")


def schedule_elsewhere(url: str) -> str:
    out = subprocess.run([sys.executable, "-c", SCHEDULER, url], capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip().splitlines()[-1]


def pickup_latency(engine, wid: str) -> float:
    """Seconds from ActivityTaskScheduled to ActivityTaskStarted (the pool's lease), once completed."""
    wait_events(engine, wid, h.ACTIVITY_TASK_COMPLETED)
    scheduled = events(engine, wid, h.ACTIVITY_TASK_SCHEDULED)[0].timestamp
    return events(engine, wid, h.ACTIVITY_TASK_STARTED)[0].timestamp - scheduled


def assert_woken(engine, url: str, monkeypatch) -> None:
    monkeypatch.setattr(pool_module, "MIN_WAIT", FALLBACK)  # no quick polls after an empty one
    with running_pool(engine, TASK_LIST, (MOD,), poll_interval=FALLBACK) as pool:
        wait_for(lambda: pool.last_poll is not None and pool.alive == 1, what="the pool's first poll")
        for _ in range(2):
            time.sleep(0.3)  # the pool sits in its 5 s back-off
            latency = pickup_latency(engine, schedule_elsewhere(url))
            # Only a wake-up can explain this; polling alone would take up to 5 s.
            assert latency < 2.0, f"picked up after {latency:.3f}s"


@linux_only
def test_idle_pool_on_sqlite_is_woken_by_a_task_from_another_process(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'wake.db'}"
    engine = open_engine(url)
    try:
        assert engine.wake_waiter("activity", TASK_LIST).reliable
        assert_woken(engine, url, monkeypatch)
    finally:
        engine.close()


def test_idle_pool_on_postgres_is_woken_through_listen_notify(pg_schema, monkeypatch):
    engine = open_engine(pg_schema.url)
    try:
        assert_woken(engine, pg_schema.url, monkeypatch)
    finally:
        engine.close()


@pytest.mark.parametrize("how", ["no channel", "broken waiter"])
def test_without_wake_ups_the_pool_finds_tasks_by_polling(tmp_path, monkeypatch, how):
    url = f"sqlite:///{tmp_path / 'poll.db'}"
    if how == "no channel":
        monkeypatch.setattr(WakeChannel, "available", False)
    engine = open_engine(url)
    if how == "broken waiter":

        class Broken:
            reliable = True

            def wait(self, timeout):
                raise OSError("wake channel gone")

        monkeypatch.setattr(engine, "wake_waiter", lambda kind, task_list: Broken())
    try:
        assert engine.wake_waiter("activity", TASK_LIST).reliable is (how == "broken waiter")
        with running_pool(engine, TASK_LIST, (MOD,)) as pool:
            wait_for(lambda: pool.last_poll is not None, what="the pool's first poll")
            time.sleep(0.3)
            assert pickup_latency(engine, schedule_elsewhere(url)) < 10.0
            assert pool._poll_ceiling() == pool_module.DEFAULT_POLL_INTERVAL  # wake-ups not relied on
    finally:
        engine.close()


def test_pool_on_an_engine_without_wake_ups_polls():
    engine = open_engine("memory://")
    try:
        assert engine.wake_waiter("activity", TASK_LIST) is None
        with running_pool(engine, TASK_LIST, (MOD,)) as pool:
            wid = schedule(engine, act(f"{MOD}.echo", 1, task_list=TASK_LIST))
            assert pickup_latency(engine, wid) < 10.0
            assert pool._poll_ceiling() == pool_module.DEFAULT_POLL_INTERVAL
    finally:
        engine.close()


def test_sqlite_synchronous_is_chosen_in_the_url(tmp_path):
    for value, expected in (("full", 2), ("NORMAL", 1)):
        engine = open_engine(f"sqlite:///{tmp_path / 'sync.db'}?synchronous={value}")
        try:
            assert engine.synchronous == value.upper()
            assert engine._conn().execute("PRAGMA synchronous").fetchone()[0] == expected
        finally:
            engine.close()
    assert open_engine(f"sqlite:///{tmp_path / 'default.db'}").synchronous == "NORMAL"


@pytest.mark.parametrize(
    ("query", "message"),
    [("synchronous=sometimes", "synchronous must be one of OFF, NORMAL, FULL, EXTRA, not 'sometimes'"),
     ("fsync=1", "unknown option 'fsync' in sqlite URL (known: synchronous)")],
)
def test_bad_sqlite_url_options_are_one_line_errors(tmp_path, query, message):
    with pytest.raises(ConfigError) as info:
        open_engine(f"sqlite:///{tmp_path / 'bad.db'}?{query}")
    assert str(info.value) == message


def test_a_decision_scheduling_many_activities_is_one_commit(tmp_path):
    """Fewer commits per task: the 50 activities of one decision share its transaction (and the
    single wake-up it sends)."""
    engine = open_engine(f"sqlite:///{tmp_path / 'batch.db'}")
    try:
        engine.start_execution("wf", "T", "1", "decisions", None)
        task = engine.poll_decision_task("decisions", "test")
        before = engine._commits
        engine.complete_decision_task(task.token, [act(f"{MOD}.echo", i, task_list=TASK_LIST) for i in range(50)])
        assert engine._commits - before == 1
        assert engine.count_waiting_activity_tasks(TASK_LIST) == 50
    finally:
        engine.close()
