"""The worker pool against a real engine: child processes, heartbeats, crashes and shutdown."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from steadyflow import history as h
from steadyflow.decisions import ScheduleActivityTask
from steadyflow.engines import open_engine
from steadyflow.errors import ConfigError
from steadyflow.worker import PoolError, WorkerPool
from steadyflow.worker.pool import SHUTDOWN_REASON
from tests.fixtures import pool_helpers
from tests.fixtures.pool_helpers import events, schedule

# Children are spawned with this process's sys.path; they import the fixtures as `tests.fixtures...`.
ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

MOD = "tests.fixtures.pool_activities"
TASK_LIST = "pool-tests"
DEADLINE = 30.0

try:
    import steadyflow.engines.sqlite  # noqa: F401

    HAVE_SQLITE = True
except ImportError:
    HAVE_SQLITE = False

pytestmark = pytest.mark.slow


@pytest.fixture
def memory_engine():
    engine = open_engine("memory://")
    yield engine
    engine.close()


@pytest.fixture(
    params=[
        "memory",
        pytest.param("sqlite", marks=pytest.mark.skipif(not HAVE_SQLITE, reason="no SQLite engine yet")),
    ]
)
def engine(request, tmp_path):
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'pool.db'}"
    engine = open_engine(url)
    yield engine
    engine.close()


# -- helpers -------------------------------------------------------------------------------------


def act(activity_id, func, *args, heartbeat_timeout=10.0, **kwargs):
    return ScheduleActivityTask(
        activity_id=activity_id,
        name=f"{MOD}.{func}",
        version="default",
        task_list=TASK_LIST,
        input=json.dumps({"args": list(args), "kwargs": kwargs}),
        heartbeat_timeout=heartbeat_timeout,
    )


def wait_for(engine, predicate, timeout=DEADLINE, what="condition"):
    """Poll `predicate` (keeping the engine's timers moving) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        engine.fire_due()
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_events(engine, wid, event_type, count=1):
    return wait_for(
        engine,
        lambda: (found := events(engine, wid, event_type)) and len(found) >= count and found,
        what=f"{count} {event_type} event(s) in {wid}",
    )


def running_pool(engine, processes=1, grace=10.0, **kwargs):
    """The shared helper, on this module's task list and activities."""
    return pool_helpers.running_pool(engine, TASK_LIST, (MOD,), processes=processes, grace=grace, **kwargs)


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# -- results -------------------------------------------------------------------------------------


def test_result_is_recorded(engine):
    wid = schedule(engine, act("a1", "add", 1, 2))
    with running_pool(engine, identity="pool-test-worker") as pool:
        [done] = wait_events(engine, wid, h.ACTIVITY_TASK_COMPLETED)
        assert done.attributes["result"] == "3"
        assert pool.completed == 1
        assert pool.last_poll is not None and pool.last_poll <= time.monotonic()
    [started] = events(engine, wid, h.ACTIVITY_TASK_STARTED)
    assert started.attributes["identity"] == "pool-test-worker"
    assert not events(engine, wid, h.ACTIVITY_TASK_FAILED)


def test_twenty_tasks_over_two_processes_complete_exactly_once(engine):
    wid = schedule(engine, *(act(f"t{i}", "tagged", i) for i in range(20)))
    with running_pool(engine, processes=2) as pool:
        wait_for(engine, lambda: pool.alive == 2, what="two children")
        done = wait_events(engine, wid, h.ACTIVITY_TASK_COMPLETED, 20)
        pids = set(pool.pids)
        time.sleep(0.2)  # nothing more may arrive
        assert len(events(engine, wid, h.ACTIVITY_TASK_COMPLETED)) == 20
        assert pool.completed == 20
    results = [json.loads(e.attributes["result"]) for e in done]
    assert sorted(r["x"] for r in results) == list(range(20))
    assert len({e.attributes["scheduledEventId"] for e in done}) == 20
    assert {r["pid"] for r in results} <= pids
    assert len(events(engine, wid, h.ACTIVITY_TASK_STARTED)) == 20
    assert not events(engine, wid, h.ACTIVITY_TASK_FAILED)


def test_run_returns_after_max_tasks(memory_engine):
    engine = memory_engine
    wid = schedule(engine, *(act(f"m{i}", "add", i, i) for i in range(3)))
    pool = WorkerPool(engine, TASK_LIST, processes=2, modules=(MOD,))
    thread = threading.Thread(target=pool.run, kwargs={"max_tasks": 3}, daemon=True)
    thread.start()
    thread.join(DEADLINE)
    assert not thread.is_alive()
    assert pool.completed == 3 and pool.alive == 0
    done = events(engine, wid, h.ACTIVITY_TASK_COMPLETED)
    assert sorted(e.attributes["result"] for e in done) == ["0", "2", "4"]


def test_failing_activity_is_reported_with_traceback(engine):
    wid = schedule(engine, act("b1", "boom", "bad input"))
    with running_pool(engine):
        [failed] = wait_events(engine, wid, h.ACTIVITY_TASK_FAILED)
    assert failed.attributes["reason"] == "ValueError: bad input"
    details = json.loads(failed.attributes["details"])
    assert details["error"] == "ValueError"
    assert details["message"] == "bad input"
    assert "boom" in "".join(details["traceback"])


def test_result_json_cannot_hold_fails_the_task(memory_engine):
    wid = schedule(memory_engine, act("n1", "not_json"))
    with running_pool(memory_engine):
        [failed] = wait_events(memory_engine, wid, h.ACTIVITY_TASK_FAILED)
    assert "not JSON-serialisable" in failed.attributes["reason"]
    assert not events(memory_engine, wid, h.ACTIVITY_TASK_COMPLETED)


def test_report_is_retried_after_an_engine_error(memory_engine):
    engine = _FlakyComplete(memory_engine)
    wid = schedule(memory_engine, act("r1", "add", 20, 22))
    with running_pool(engine):
        [done] = wait_events(memory_engine, wid, h.ACTIVITY_TASK_COMPLETED)
    assert done.attributes["result"] == "42"
    assert engine.failures == 1


class _FlakyComplete:
    """An engine whose first `complete_activity_task` fails like a locked database would."""

    def __init__(self, engine):
        self._engine = engine
        self.failures = 0

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def complete_activity_task(self, token, result):
        if not self.failures:
            self.failures += 1
            raise RuntimeError("database is locked")
        return self._engine.complete_activity_task(token, result)


# -- crashes -------------------------------------------------------------------------------------


def test_killed_child_fails_its_task_and_is_replaced(engine):
    wid = schedule(engine, act("k1", "sleep_then", 60, "never"))
    with running_pool(engine, processes=1) as pool:
        wait_for(engine, lambda: pool.running == 1, what="the task to start")
        [victim] = pool.pids
        os.kill(victim, signal.SIGKILL)
        [failed] = wait_events(engine, wid, h.ACTIVITY_TASK_FAILED)
        assert failed.attributes["reason"] == f"process {victim} died: exit code -9"

        wid2 = schedule(engine, act("k2", "pid"))
        [done] = wait_events(engine, wid2, h.ACTIVITY_TASK_COMPLETED)
        new_pid = json.loads(done.attributes["result"])
        assert new_pid != victim and new_pid in pool.pids
        assert pool.alive == 1
    assert gone(victim) and gone(new_pid)


def test_children_dying_on_start_raise_pool_error(memory_engine, monkeypatch):
    monkeypatch.setenv("STEADYFLOW_POOL_TEST_CRASH_CHILD", "1")
    pool = WorkerPool(memory_engine, TASK_LIST, processes=1, modules=(MOD,))
    errors = []
    thread = threading.Thread(target=lambda: _catch(errors, pool.run), daemon=True)
    thread.start()
    thread.join(DEADLINE)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], PoolError)
    assert "exit code 3" in str(errors[0])
    assert pool.alive == 0


def _catch(errors, func):
    try:
        func()
    except Exception as exc:
        errors.append(exc)


# -- heartbeats ----------------------------------------------------------------------------------


def test_supervisor_heartbeats_a_silent_task_past_its_timeout(engine):
    wid = schedule(engine, act("s1", "sleep_then", 2.5, "done", heartbeat_timeout=1.0))
    beats = []
    with running_pool(engine, processes=2):

        def finished():
            for info in engine.list_activity_tasks(wid):
                if info.get("last_heartbeat"):
                    beats.append(info["last_heartbeat"])
            assert not events(engine, wid, h.ACTIVITY_TASK_TIMED_OUT), "the task was not heartbeated"
            return events(engine, wid, h.ACTIVITY_TASK_COMPLETED)

        [done] = wait_for(engine, finished, what="the slow task to complete")
    assert done.attributes["result"] == '"done"'
    assert not events(engine, wid, h.ACTIVITY_TASK_TIMED_OUT)
    assert len(set(beats)) >= 3  # one every third of the timeout, for 2.5 s


@pytest.mark.parametrize("timeout", [1.0, None])
def test_heartbeat_details_reach_the_engine(memory_engine, timeout):
    """Details are forwarded on the supervisor's next beat (right away when the task has no timeout)."""
    engine = memory_engine
    wid = schedule(engine, act("d1", "beat", 3, 0.02, 1.5, heartbeat_timeout=timeout))
    with running_pool(engine):
        wait_for(
            engine,
            lambda: [i for i in engine.list_activity_tasks(wid) if i.get("heartbeat_details") == '{"i":2}'],
            what="the last heartbeat details",
        )
        [done] = wait_events(engine, wid, h.ACTIVITY_TASK_COMPLETED)
    assert done.attributes["result"] == "3"


def test_heartbeat_details_survive_in_a_timeout(memory_engine):
    """When the supervisor goes away, the task times out carrying the details it last published."""
    engine = memory_engine
    wid = schedule(engine, act("d2", "beat", 2, 0.02, 60, heartbeat_timeout=1.0))
    with running_pool(engine, grace=0.0) as pool:
        wait_for(
            engine,
            lambda: [i for i in engine.list_activity_tasks(wid) if i.get("heartbeat_details") == '{"i":1}'],
            what="heartbeat details",
        )
        # Simulate a supervisor that stops heartbeating: the lease lapses and the result is dropped.
        pool.engine = _NoHeartbeats(engine)
        [timed_out] = wait_events(engine, wid, h.ACTIVITY_TASK_TIMED_OUT)
    assert timed_out.attributes["timeoutType"] == h.HEARTBEAT
    assert timed_out.attributes["details"] == '{"i":1}'
    assert not events(engine, wid, h.ACTIVITY_TASK_FAILED)  # the handback found no lease


class _NoHeartbeats:
    def __init__(self, engine):
        self._engine = engine

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def heartbeat_activity_task(self, token, details=None):
        return False


def test_cancellation_reaches_the_activity(memory_engine):
    engine = memory_engine
    wid = schedule(engine, act("c1", "until_cancelled", 20, heartbeat_timeout=1.0))
    with running_pool(engine) as pool:
        wait_for(engine, lambda: pool.running == 1, what="the task to start")
        engine.request_cancel_execution(wid)  # flags the execution's open activity tasks
        [done] = wait_events(engine, wid, h.ACTIVITY_TASK_COMPLETED)
    assert done.attributes["result"] == '"cancelled"'


# -- shutdown ------------------------------------------------------------------------------------


def test_shutdown_hands_back_a_running_task(engine):
    wid = schedule(engine, act("w1", "sleep_then", 60, "never"))
    with running_pool(engine, grace=0.5) as pool:
        wait_for(engine, lambda: pool.running == 1, what="the task to start")
        [child] = pool.pids
        started = time.monotonic()
    assert time.monotonic() - started < 15
    [failed] = events(engine, wid, h.ACTIVITY_TASK_FAILED)
    assert failed.attributes["reason"] == SHUTDOWN_REASON
    assert failed.attributes["reason"].startswith("WorkerShutdown")
    assert not events(engine, wid, h.ACTIVITY_TASK_COMPLETED)
    assert gone(child)


def test_shutdown_lets_a_task_finish_within_grace(memory_engine):
    engine = memory_engine
    wid = schedule(engine, act("w2", "sleep_then", 1.0, "finished"))
    with running_pool(engine, grace=20.0) as pool:
        wait_for(engine, lambda: pool.running == 1, what="the task to start")
        started = time.monotonic()
    assert time.monotonic() - started < 15
    [done] = events(engine, wid, h.ACTIVITY_TASK_COMPLETED)
    assert done.attributes["result"] == '"finished"'
    assert not events(engine, wid, h.ACTIVITY_TASK_FAILED)


def test_stop_event_ends_an_idle_pool(memory_engine):
    pool = WorkerPool(memory_engine, TASK_LIST, processes=2, modules=(MOD,))
    stop = threading.Event()
    thread = threading.Thread(target=pool.run, args=(stop,), daemon=True)
    thread.start()
    wait_for(memory_engine, lambda: pool.alive == 2 and pool.last_poll is not None, what="polling")
    pids = pool.pids
    stop.set()
    thread.join(DEADLINE)
    assert not thread.is_alive()
    assert pool.alive == 0 and pool.completed == 0
    assert all(gone(p) for p in pids)


# -- configuration -------------------------------------------------------------------------------


def test_negative_processes_is_rejected(memory_engine):
    with pytest.raises(ValueError, match="processes"):
        WorkerPool(memory_engine, TASK_LIST, processes=-1)


def test_zero_processes_means_one_per_cpu(memory_engine):
    pool = WorkerPool(memory_engine, TASK_LIST)
    assert pool.processes == (os.cpu_count() or 1)
    assert pool.identity == f"{__import__('socket').gethostname()}:{os.getpid()}"


def test_module_that_does_not_import_is_a_config_error(memory_engine):
    with pytest.raises(ConfigError, match="no_such_module_for_pool_tests"):
        WorkerPool(memory_engine, TASK_LIST, processes=1, modules=("no_such_module_for_pool_tests",))
