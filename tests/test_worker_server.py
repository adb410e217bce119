"""The worker as a server: timeouts that work on uncooperative code, recycling, crashes with retries,
cancellation, the healthcheck, and graceful shutdown of the `worker start` process."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request

import pytest

from steadyflow import history as h
from steadyflow.cli import main
from steadyflow.engines import open_engine
from steadyflow.local import start
from steadyflow.worker import HealthServer, PoolConfigError, WorkerPool
from steadyflow.worker.health import assess
from steadyflow.worker.pool import SHUTDOWN_REASON
from steadyflow.worker.state import PoolStatus, heartbeat_interval
from tests.fixtures import server_activities as sa
from tests.fixtures.pool_helpers import (
    Processes,
    act,
    events,
    free_port,
    gone,
    http,
    running_decider,
    running_pool,
    schedule,
    wait_events,
    wait_for,
)

MOD = "tests.fixtures.server_activities"
TL = sa.TASK_LIST
pytestmark = pytest.mark.slow


def task(func, *args, **kwargs):
    return act(f"{MOD}.{func}", *args, task_list=TL, **kwargs)


@pytest.fixture
def engine():
    engine = open_engine("memory://")
    yield engine
    engine.close()


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'server.db'}"


@pytest.fixture
def procs(sqlite_url):
    p = Processes(sqlite_url)
    yield p
    p.stop()


# -- hard and alarm timeouts ---------------------------------------------------------------------


def test_hard_timeout_kills_a_catastrophic_regex_and_the_next_task_gets_a_fresh_process(engine):
    wid = schedule(engine, task("stuck_in_regex"))
    with running_pool(engine, TL, (MOD,), kill_grace=5.0) as pool:
        wait_for(lambda: pool.running == 1, engine, what="the task to start")
        [victim] = pool.pids
        started = time.monotonic()
        [failed] = wait_events(engine, wid, h.ACTIVITY_TASK_FAILED)
        # 2 s of hard timeout, then SIGTERM (SIGKILL 5 s later if need be); generous bound, since
        # the point is that it ends at all, long before 2**40 backtracking steps.
        assert time.monotonic() - started < 2 + 5 + 10
        assert failed.attributes["reason"] == f"TimeoutError: hard_timeout of 2s exceeded (process {victim} killed)"
        details = json.loads(failed.attributes["details"])
        assert details["error"] == "TimeoutError" and details["error_type"] == "TimeoutError"
        wait_for(lambda: gone(victim), what="the stuck process to be gone")

        wid2 = schedule(engine, task("pid"))
        [done] = wait_events(engine, wid2, h.ACTIVITY_TASK_COMPLETED)
        fresh = json.loads(done.attributes["result"])
        assert fresh != victim and fresh in pool.pids
        assert pool.alive == 1


def test_alarm_cannot_stop_a_c_loop_but_the_hard_timeout_does(engine):
    wid = schedule(engine, task("stuck_in_c"))
    with running_pool(engine, TL, (MOD,)) as pool:
        wait_for(lambda: pool.running == 1, engine, what="the task to start")
        [victim] = pool.pids
        [failed] = wait_events(engine, wid, h.ACTIVITY_TASK_FAILED)
    # The 0.5 s alarm fired but its handler never ran inside sum(); the 2 s hard timeout killed it.
    assert failed.attributes["reason"] == f"TimeoutError: hard_timeout of 2s exceeded (process {victim} killed)"


def test_a_task_that_ignores_sigterm_is_killed_after_the_grace_with_the_worker_default(engine):
    wid = schedule(engine, task("stuck_ignoring_sigterm"))
    with running_pool(engine, TL, (MOD,), hard_timeout=0.5, kill_grace=0.5) as pool:
        wait_for(lambda: pool.running == 1, engine, what="the task to start")
        [victim] = pool.pids
        [failed] = wait_events(engine, wid, h.ACTIVITY_TASK_FAILED)
        assert failed.attributes["reason"] == f"TimeoutError: hard_timeout of 0.5s exceeded (process {victim} killed)"
        wait_for(lambda: gone(victim), what="the process to be gone")


def test_alarm_timeout_raises_inside_the_task_so_it_can_clean_up(engine, tmp_path):
    marker = tmp_path / "marker"
    wid = schedule(engine, task("alarmed", str(marker)))
    with running_pool(engine, TL, (MOD,)) as pool:
        [failed] = wait_events(engine, wid, h.ACTIVITY_TASK_FAILED)
        assert failed.attributes["reason"] == "TimeoutError: alarm_timeout of 0.5s exceeded"
        assert marker.read_text() == "cleaned up"
        assert pool.completed == 1 and pool.alive == 1  # the process survives an alarm


def test_supervisor_resolves_timeouts_by_name_and_falls_back_to_its_defaults(engine):
    pool = WorkerPool(engine, TL, processes=1, modules=(MOD,), alarm_timeout=7, hard_timeout=9)
    assert pool.limits(f"{MOD}.stuck_in_c") == (0.5, 2)  # the activity's own
    assert pool.limits(f"{MOD}.pid") == (7, 9)  # declares none: the worker's
    assert pool.limits("no.such.activity") == (7, 9)  # unknown here: the worker's
    assert WorkerPool(engine, TL, processes=1).limits(f"{MOD}.pid") == (None, None)


def test_timeouts_are_validated():
    from steadyflow import activity
    from steadyflow.errors import ConfigError

    with pytest.raises(ConfigError, match="hard_timeout"):
        activity.with_attributes(hard_timeout=0)
    with pytest.raises(PoolConfigError, match="hard_timeout"):
        WorkerPool(open_engine("memory://"), TL, processes=1, hard_timeout=-1)
    with pytest.raises(ValueError, match="maxtasksperchild"):
        WorkerPool(open_engine("memory://"), TL, processes=1, maxtasksperchild=0)


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_other_start_methods_run_tasks_and_enforce_hard_timeouts(engine, method):
    wid = schedule(engine, task("pid", activity_id="first"), task("stuck_in_c", activity_id="stuck"))
    with running_pool(engine, TL, (MOD,), processes=2, start_method=method):
        [done] = wait_events(engine, wid, h.ACTIVITY_TASK_COMPLETED)
        [failed] = wait_events(engine, wid, h.ACTIVITY_TASK_FAILED)
    assert json.loads(done.attributes["result"]) != os.getpid()
    assert "hard_timeout of 2s exceeded" in failed.attributes["reason"]


# -- recycling and crashes -----------------------------------------------------------------------


def test_maxtasksperchild_recycles_processes_and_every_task_completes(engine):
    wid = schedule(engine, *(task("pid", activity_id=f"p{i}") for i in range(10)))
    with running_pool(engine, TL, (MOD,), processes=2, maxtasksperchild=3) as pool:
        done = wait_events(engine, wid, h.ACTIVITY_TASK_COMPLETED, 10)
        wait_for(lambda: pool.alive == 2, what="two children again")
    pids = [json.loads(e.attributes["result"]) for e in done]
    assert len(pids) == 10 and len(set(pids)) >= 4
    assert all(pids.count(p) <= 3 for p in set(pids))
    assert not events(engine, wid, h.ACTIVITY_TASK_FAILED)


def test_a_process_over_max_memory_is_recycled_after_its_task(engine):
    wid = schedule(engine, task("pid", activity_id="before"))
    with running_pool(engine, TL, (MOD,), max_memory=200) as pool:
        [first] = wait_events(engine, wid, h.ACTIVITY_TASK_COMPLETED)
        small = json.loads(first.attributes["result"])
        wid2 = schedule(engine, task("pid", activity_id="same"))
        [second] = wait_events(engine, wid2, h.ACTIVITY_TASK_COMPLETED)
        assert json.loads(second.attributes["result"]) == small  # well under the limit: kept

        wid3 = schedule(engine, task("hog", 300, activity_id="hog"))
        [hogged] = wait_events(engine, wid3, h.ACTIVITY_TASK_COMPLETED)
        assert json.loads(hogged.attributes["result"]) == small  # the task itself completes
        wait_for(lambda: gone(small), what="the bloated process to be recycled")
        wid4 = schedule(engine, task("pid", activity_id="after"))
        [after] = wait_events(engine, wid4, h.ACTIVITY_TASK_COMPLETED)
        assert json.loads(after.attributes["result"]) not in (small, None)
        assert pool.alive == 1


def test_killed_child_is_replaced_and_its_task_retried_by_the_workflow(engine):
    wid, _ = start(engine, sa.KillRetry, [60])
    with running_decider(engine, sa.DECISIONS, [sa.KillRetry]), running_pool(engine, TL, (MOD,), processes=2) as pool:
        started = wait_events(engine, wid, h.ACTIVITY_TASK_STARTED)
        wait_for(lambda: pool.running == 1, what="the task to run")
        [victim] = [c.pid for c in pool._children if c.task is not None]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: not engine.describe_execution(wid).is_open, engine, what="the workflow to complete")
        assert pool.alive == 2 and victim not in pool.pids
    info = engine.describe_execution(wid)
    assert info.status == "completed", info.close_reason
    result = json.loads(info.result)
    assert result["attempt"] == 2 and result["pid"] != victim
    [failed] = events(engine, wid, h.ACTIVITY_TASK_FAILED)
    assert failed.attributes["reason"] == f"process {victim} died: exit code -9"
    assert len(started) == 1 and len(events(engine, wid, h.ACTIVITY_TASK_COMPLETED)) == 1


# -- heartbeats and cancellation -----------------------------------------------------------------


def test_cancel_flag_can_be_polled_without_heartbeating(engine):
    wid = schedule(engine, task("polls_cancel_flag", 20, heartbeat_timeout=1.0))
    with running_pool(engine, TL, (MOD,)) as pool:
        wait_for(lambda: pool.running == 1, engine, what="the task to start")
        engine.request_cancel_execution(wid)
        [done] = wait_events(engine, wid, h.ACTIVITY_TASK_COMPLETED)
    assert done.attributes["result"] == '"saw the flag"'


def test_heartbeat_raise_on_cancel_raises_activity_cancelled(engine):
    wid = schedule(engine, task("raises_on_cancel", 20, heartbeat_timeout=1.0))
    with running_pool(engine, TL, (MOD,)) as pool:
        wait_for(lambda: pool.running == 1, engine, what="the task to start")
        engine.request_cancel_execution(wid)
        [failed] = wait_events(engine, wid, h.ACTIVITY_TASK_FAILED)
        assert pool.alive == 1  # a BaseException in the task does not take its process down
    assert failed.attributes["reason"].startswith("ActivityCancelled: cancellation of activity")
    assert json.loads(failed.attributes["details"])["error"] == "ActivityCancelled"


def test_heartbeat_interval_honours_a_maximum():
    assert heartbeat_interval(30.0) == 10.0
    assert heartbeat_interval(30.0, maximum=2.0) == 2.0
    assert heartbeat_interval(None, maximum=5.0) == 5.0
    assert heartbeat_interval(None) is None


def test_supervisor_heartbeats_a_silent_task_until_it_is_stopped(procs, sqlite_url, tmp_path):
    engine = open_engine(sqlite_url)
    pid_file = tmp_path / "child.pid"
    wid = schedule(engine, task("silent", 60, str(pid_file), heartbeat_timeout=2.0))
    worker = procs.spawn("worker", "start", "-t", TL, "-N", "1", "-m", MOD)
    wait_events(engine, wid, h.ACTIVITY_TASK_STARTED)
    child = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="the child's pid"))
    time.sleep(5.0)  # 2.5 heartbeat timeouts: the supervisor beats every 0.67 s for the silent task
    engine.fire_due()
    assert not events(engine, wid, h.ACTIVITY_TASK_TIMED_OUT)

    os.kill(worker.pid, signal.SIGSTOP)  # a stopped supervisor: the task keeps running, unheard
    try:
        [timed_out] = wait_events(engine, wid, h.ACTIVITY_TASK_TIMED_OUT)
        assert timed_out.attributes["timeoutType"] == h.HEARTBEAT
        assert not gone(child)
    finally:
        os.kill(worker.pid, signal.SIGKILL)
    worker.wait(10)
    wait_for(lambda: gone(child), what="the orphaned child to die with its supervisor")
    engine.close()


# -- healthcheck ---------------------------------------------------------------------------------


def test_healthcheck_reports_a_healthy_pool(engine):
    pool = WorkerPool(engine, TL, processes=2, modules=(MOD,))
    with HealthServer(pool, port=0) as health:
        status, body = http(health.url)
        assert status == 503 and body["status"] == "unhealthy" and body["reason"] == "pool is not running"
        with running_pool(engine, TL, (MOD,), pool=pool):
            wait_for(lambda: pool.alive == 2 and pool.last_poll is not None, engine, what="polling")
            wait_for(lambda: http(health.url)[0] == 200, what="a healthy answer")
            status, body = http(health.url)
            assert body["status"] == "ok" and body["processes"] == 2 and body["alive"] == 2
            assert body["running"] == 0 and 0 <= body["seconds_since_last_poll"] < 60
            assert http(health.url + "anything?x=1")[0] == 200  # any GET, as stefuna answers
            status, body = http(health.url, method="POST")
            assert status == 405 and body["status"] == "error"
            head = urllib.request.urlopen(urllib.request.Request(health.url, method="HEAD"), timeout=10)
            assert head.status == 200 and head.read() == b""
    assert health.host == "127.0.0.1"


def test_healthcheck_is_unhealthy_when_children_cannot_start(engine, monkeypatch):
    monkeypatch.setenv("STEADYFLOW_POOL_TEST_CRASH_CHILD", "1")
    pool = WorkerPool(engine, TL, processes=1, modules=("tests.fixtures.pool_activities",))
    errors = []

    def target():
        try:
            pool.run()
        except Exception as exc:
            errors.append(exc)

    with HealthServer(pool, port=0) as health:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        status, body = wait_for(lambda: (a := http(health.url))[0] == 503 and "start-up" in a[1].get("reason", "")
                                and a, what="an unhealthy answer while children die")
        assert body["status"] == "unhealthy" and "exit code 3" in body["reason"]
        thread.join(30)
        status, body = http(health.url)
        assert status == 503 and body["reason"].startswith("pool stopped: PoolError")
    assert errors and type(errors[0]).__name__ == "PoolError"


def test_health_assessment_rules():
    base = dict(active=True, stopping=False, processes=2, alive=2, ready=2, idle=2, running=0, completed=0,
                seconds_since_last_poll=0.1, short_for=None, start_failures=0, last_exit_code=None, error=None)
    assert assess(PoolStatus(**base)) == (True, None)
    assert assess(PoolStatus(**dict(base, ready=1, short_for=3.0)), shortage_grace=10)[0] is True
    healthy, reason = assess(PoolStatus(**dict(base, ready=1, short_for=30.0)), shortage_grace=10)
    assert not healthy and "only 1 of 2" in reason
    healthy, reason = assess(PoolStatus(**dict(base, seconds_since_last_poll=500.0)), poll_stall=120)
    assert not healthy and "no successful poll" in reason
    assert assess(PoolStatus(**dict(base, idle=0, seconds_since_last_poll=500.0)), poll_stall=120)[0]  # all busy
    assert assess(PoolStatus(**dict(base, stopping=True, ready=0)))[0]


# -- the `worker start` process ------------------------------------------------------------------


def test_worker_start_rejects_bad_settings_in_one_line(capsys):
    for argv, key in (
        (["worker", "start", "-t", TL, "--processes", "-1"], "--processes"),
        (["worker", "start", "-t", TL, "--maxtasksperchild", "0"], "maxtasksperchild"),
        (["worker", "start", "-t", TL, "--hard-timeout", "-2"], "hard_timeout"),
        (["worker", "start", "-t", TL, "--grace", "-1"], "--grace"),
    ):
        assert main(["--engine", "memory://", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("Error:") and key in err and "\n" not in err


def test_sigterm_lets_a_running_task_finish_and_exits_zero(procs, sqlite_url):
    engine = open_engine(sqlite_url)
    wid, _ = start(engine, sa.Sleeper, [1.5])
    with running_decider(engine, sa.DECISIONS, [sa.Sleeper]):
        worker = procs.spawn("worker", "start", "-t", TL, "-N", "1", "-m", MOD, "--grace", "30")
        wait_events(engine, wid, h.ACTIVITY_TASK_STARTED)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
        wait_for(lambda: not engine.describe_execution(wid).is_open, what="the workflow to complete")
    info = engine.describe_execution(wid)
    assert info.status == "completed" and json.loads(info.result)["attempt"] == 1
    assert not events(engine, wid, h.ACTIVITY_TASK_FAILED)
    engine.close()


def test_second_sigterm_hands_back_at_once_and_the_task_completes_on_another_worker(procs, sqlite_url):
    engine = open_engine(sqlite_url)
    wid, _ = start(engine, sa.Sleeper, [3])
    with running_decider(engine, sa.DECISIONS, [sa.Sleeper]):
        first = procs.spawn("worker", "start", "-t", TL, "-N", "1", "-m", MOD, "--grace", "600")
        wait_events(engine, wid, h.ACTIVITY_TASK_STARTED)
        first.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert first.poll() is None  # waiting for its task (up to 600 s)
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0  # long before the grace period
        [failed] = wait_events(engine, wid, h.ACTIVITY_TASK_FAILED)
        assert failed.attributes["reason"] == SHUTDOWN_REASON
        procs.spawn("worker", "start", "-t", TL, "-N", "1", "-m", MOD)
        wait_for(lambda: not engine.describe_execution(wid).is_open, what="the workflow to complete")
    info = engine.describe_execution(wid)
    # Handed back, not failed: rescheduled without using up an attempt.
    assert info.status == "completed" and json.loads(info.result)["attempt"] == 1
    assert len(events(engine, wid, h.ACTIVITY_TASK_SCHEDULED)) == 2
    assert len(events(engine, wid, h.ACTIVITY_TASK_COMPLETED)) == 1
    engine.close()


def test_worker_start_serves_its_healthcheck(procs):
    port = free_port()
    worker = procs.spawn("worker", "start", "-t", TL, "-N", "1", "-m", MOD, "--healthcheck", str(port))
    status, body = wait_for(lambda: _answer(f"http://127.0.0.1:{port}/"), what="the healthcheck")
    assert status == 200 and body["status"] == "ok" and body["processes"] == 1
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0


def _answer(url):
    try:
        result = http(url)
    except OSError:
        return None
    return result if result[0] == 200 else None
