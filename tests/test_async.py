"""asyncio: `async def` activities run many at once in one worker process, with heartbeats,
cancellation and timeouts as for plain ones; `async def run()` workflows await futures."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid

import pytest

from steadyflow import history as h
from steadyflow.cli import main
from steadyflow.decisions import ScheduleActivityTask
from steadyflow.engines import open_engine
from steadyflow.local import run_local
from steadyflow.testing import Replayer, WorkflowEnvironment
from steadyflow.worker import PoolConfigError, WorkerPool
from steadyflow.worker.pool import SHUTDOWN_REASON
from steadyflow.worker.runner import run_task
from tests.fixtures import async_activities as aa
from tests.fixtures.pool_helpers import Processes, events, running_pool, schedule, wait_events, wait_for

MOD = "tests.fixtures.async_activities"
TL = aa.TASK_LIST


def task(func, *args, heartbeat_timeout=10.0, start_to_close_timeout=None, **kwargs):
    return ScheduleActivityTask(
        activity_id=f"{func}-{uuid.uuid4().hex[:6]}",
        name=f"{MOD}.{func}",
        version="default",
        task_list=TL,
        input=json.dumps({"args": list(args), "kwargs": kwargs}),
        heartbeat_timeout=heartbeat_timeout,
        start_to_close_timeout=start_to_close_timeout,
    )


@pytest.fixture
def engine():
    engine = open_engine("memory://")
    yield engine
    engine.close()


def pool(engine, processes=1, concurrency=20, **kwargs):
    return running_pool(engine, TL, (MOD,), processes=processes, async_concurrency=concurrency, **kwargs)


def results(done):
    return [json.loads(e.attributes["result"]) for e in done]


def max_overlap(intervals):
    """The most intervals open at one instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                   key=lambda edge: (edge[0], edge[1]))
    open_now = most = 0
    for _, step in edges:
        open_now += step
        most = max(most, open_now)
    return most


# -- many at once --------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_hundred_sleeping_activities_run_at_once_in_one_worker_process(tmp_path):
    """`worker start -N 1 --async-concurrency 200`, for real, on a SQLite file."""
    url = f"sqlite:///{tmp_path / 'async.db'}"
    engine = open_engine(url)
    procs = Processes(url)
    try:
        wid = schedule(engine, *(task("nap", 1, i) for i in range(200)))
        worker = procs.spawn("worker", "start", "-t", TL, "-N", "1", "-m", MOD, "--async-concurrency", "200")
        done = wait_events(engine, wid, h.ACTIVITY_TASK_COMPLETED, 200)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0
    finally:
        procs.stop()
    naps = results(done)
    assert sorted(n["tag"] for n in naps) == list(range(200))
    assert len({n["pid"] for n in naps}) == 1 and naps[0]["pid"] != worker.pid
    assert max_overlap([(n["start"], n["end"]) for n in naps]) >= 100
    assert len({n["id"] for n in naps}) == 200  # each saw its own context()
    assert not events(engine, wid, h.ACTIVITY_TASK_FAILED)
    engine.close()


def test_async_concurrency_flag_must_be_positive(capsys):
    assert main(["--engine", "memory://", "worker", "start", "-t", TL, "--async-concurrency", "0"]) == 2
    assert "--async-concurrency must be >= 1, got 0" in capsys.readouterr().err


@pytest.mark.slow
def test_plain_activities_run_one_at_a_time_beside_async_ones(engine):
    wid = schedule(engine, *(task("plain_sleep", 0.4, f"s{i}") for i in range(3)),
                   *(task("nap", 1.0, f"a{i}") for i in range(6)))
    with pool(engine, concurrency=10):
        done = results(wait_events(engine, wid, h.ACTIVITY_TASK_COMPLETED, 9))
    plain = [d for d in done if str(d["tag"]).startswith("s")]
    naps = [d for d in done if str(d["tag"]).startswith("a")]
    assert len({d["pid"] for d in done}) == 1
    assert all(d["main_thread"] for d in plain)  # where SIGALRM reaches them, as before
    assert max_overlap([(d["start"], d["end"]) for d in plain]) == 1
    assert max_overlap([(d["start"], d["end"]) for d in naps]) == 6  # the loop was not blocked


@pytest.mark.slow
def test_plain_activities_go_to_processes_not_running_one(engine):
    with pool(engine, processes=2, concurrency=5) as p:
        wait_for(lambda: p.status().ready == 2, what="two ready children")
        wid = schedule(engine, *(task("plain_sleep", 1.0, f"s{i}") for i in range(2)))
        done = results(wait_events(engine, wid, h.ACTIVITY_TASK_COMPLETED, 2))
    assert len({d["pid"] for d in done}) == 2
    assert max_overlap([(d["start"], d["end"]) for d in done]) == 2


# -- heartbeats, cancellation, failures ----------------------------------------------------------


@pytest.mark.slow
def test_heartbeats_and_context_are_per_task(engine):
    wids = [schedule(engine, task("beat", 10, 0.05, 0.8, heartbeat_timeout=1.0)) for _ in range(10)]
    ids = {wid: events(engine, wid, h.ACTIVITY_TASK_SCHEDULED)[0].attributes["activityId"] for wid in wids}
    seen = {}

    def last_details():
        for wid in wids:
            for info in engine.list_activity_tasks(wid):
                if info.get("heartbeat_details"):
                    seen[wid] = json.loads(info["heartbeat_details"])
        return all(seen.get(wid, {}).get("i") == 9 for wid in wids)

    with pool(engine):
        wait_for(last_details, engine, what="the last heartbeat details of every task")
        for wid in wids:
            [done] = wait_events(engine, wid, h.ACTIVITY_TASK_COMPLETED)
            assert json.loads(done.attributes["result"]) == ids[wid]
    assert seen == {wid: {"i": 9, "id": ids[wid]} for wid in wids}


@pytest.mark.slow
def test_cancellation_reaches_only_the_cancelled_task(engine):
    polite = schedule(engine, task("until_cancelled", 20, heartbeat_timeout=1.0))
    strict = schedule(engine, task("raises_on_cancel", 20, heartbeat_timeout=1.0))
    bystander = schedule(engine, task("until_cancelled", 1.5, heartbeat_timeout=1.0))
    with pool(engine) as p:
        wait_for(lambda: p.running == 3, engine, what="three tasks running")
        engine.request_cancel_execution(polite)
        engine.request_cancel_execution(strict)
        [done] = wait_events(engine, polite, h.ACTIVITY_TASK_COMPLETED)
        [failed] = wait_events(engine, strict, h.ACTIVITY_TASK_FAILED)
        [other] = wait_events(engine, bystander, h.ACTIVITY_TASK_COMPLETED)
        assert p.alive == 1
    assert done.attributes["result"] == '"cancelled"'
    assert failed.attributes["reason"].startswith("ActivityCancelled: cancellation of activity")
    assert json.loads(failed.attributes["details"])["error"] == "ActivityCancelled"
    assert other.attributes["result"] == '"not cancelled"'


@pytest.mark.slow
def test_failure_and_alarm_timeout_fail_one_task_and_spare_the_rest(engine):
    wid = schedule(engine, task("boom", "bad input"), task("overrun", 30), task("plain_overrun", 30),
                   task("nap", 1.0, "fine"))
    with pool(engine) as p:
        failed = wait_events(engine, wid, h.ACTIVITY_TASK_FAILED, 3)
        [done] = wait_events(engine, wid, h.ACTIVITY_TASK_COMPLETED)
        pids = p.pids
    reasons = sorted(e.attributes["reason"] for e in failed)
    assert reasons == ["TimeoutError: alarm_timeout of 0.5s exceeded"] * 2 + ["ValueError: bad input"]
    boom = next(json.loads(e.attributes["details"]) for e in failed if e.attributes["reason"].startswith("Value"))
    assert boom["error"] == "ValueError" and boom["message"] == "bad input"
    assert "raise ValueError(message)" in "".join(boom["traceback"])
    assert json.loads(done.attributes["result"])["pid"] in pids  # the same process lived on


@pytest.mark.slow
def test_hard_timeout_kills_the_process_and_fails_every_task_in_it(engine):
    wid = schedule(engine, task("blocks_the_loop", 30), task("nap", 30, "bystander"))
    with pool(engine) as p:
        wait_for(lambda: p.running == 2, engine, what="two tasks running")
        [victim] = p.pids
        failed = wait_events(engine, wid, h.ACTIVITY_TASK_FAILED, 2)
        wait_for(lambda: p.alive == 1 and victim not in p.pids, what="a replacement process")
    reasons = sorted(e.attributes["reason"] for e in failed)
    assert reasons[0] == f"TimeoutError: hard_timeout of 1.5s exceeded (process {victim} killed)"
    assert reasons[1].startswith(f"process {victim} died: killed by the hard_timeout of {MOD}.blocks_the_loop")


@pytest.mark.slow
def test_start_to_close_and_heartbeat_timeouts_apply_to_async_tasks(engine):
    slow = schedule(engine, task("nap", 30, start_to_close_timeout=1.0))
    quiet = schedule(engine, task("beat", 2, 0.02, 60, heartbeat_timeout=1.0))
    with pool(engine, grace=0.0) as p:
        [timed_out] = wait_events(engine, slow, h.ACTIVITY_TASK_TIMED_OUT)
        assert timed_out.attributes["timeoutType"] == h.START_TO_CLOSE
        wait_for(lambda: [i for i in engine.list_activity_tasks(quiet) if '"i":1' in (i.get("heartbeat_details") or "")],
                 engine, what="heartbeat details")
        p.engine = _NoHeartbeats(engine)  # a supervisor that went silent: the lease lapses
        [lapsed] = wait_events(engine, quiet, h.ACTIVITY_TASK_TIMED_OUT)
    assert lapsed.attributes["timeoutType"] == h.HEARTBEAT
    assert json.loads(lapsed.attributes["details"])["i"] == 1


@pytest.mark.slow
def test_a_large_async_result_is_offloaded_like_a_plain_one(tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path / 'payloads.db'}")
    wid = schedule(engine, task("big", 200_000))
    with pool(engine):
        [done] = wait_events(engine, wid, h.ACTIVITY_TASK_COMPLETED)
    result = done.attributes["result"]
    assert result.startswith("steadyflow+file:") and len(result) < 300
    assert len(engine.payloads.loads(result)["text"]) == 200_000
    engine.close()


@pytest.mark.slow
def test_shutdown_hands_back_every_task_of_a_process(engine):
    wid = schedule(engine, *(task("nap", 60, i) for i in range(3)), task("plain_sleep", 60))
    with pool(engine, grace=0.3) as p:
        wait_for(lambda: p.running == 4, engine, what="four tasks running")
    failed = events(engine, wid, h.ACTIVITY_TASK_FAILED)
    assert [e.attributes["reason"] for e in failed] == [SHUTDOWN_REASON] * 4


@pytest.mark.slow
def test_maxtasksperchild_recycles_a_process_once_its_tasks_are_done(engine):
    wid = schedule(engine, *(task("nap", 0.3, i) for i in range(6)))
    with pool(engine, concurrency=4, maxtasksperchild=3) as p:
        done = results(wait_events(engine, wid, h.ACTIVITY_TASK_COMPLETED, 6))
        wait_for(lambda: p.alive == 1, what="one process in service")
    pids = [d["pid"] for d in done]
    assert len(set(pids)) >= 2 and all(pids.count(pid) <= 3 for pid in set(pids))
    assert not events(engine, wid, h.ACTIVITY_TASK_FAILED)


class _NoHeartbeats:
    def __init__(self, engine):
        self._engine = engine

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def heartbeat_activity_task(self, token, details=None):
        return False


def test_async_concurrency_must_be_a_positive_integer(engine):
    with pytest.raises(PoolConfigError, match="async_concurrency"):
        WorkerPool(engine, TL, processes=1, async_concurrency=0)
    assert "async_concurrency=8" in repr(WorkerPool(engine, TL, processes=1, async_concurrency=8))


# -- without a pool: run_task, the local runner, async workflows ---------------------------------


def test_run_task_runs_a_coroutine_with_its_alarm():
    start = time.monotonic()
    outcome = run_task({"name": f"{MOD}.too_slow", "input": "[]", "token": "t"}, alarm_timeout=0.2)
    assert time.monotonic() - start < 2
    assert outcome.reason == "TimeoutError: alarm_timeout of 0.2s exceeded"
    done = run_task({"name": f"{MOD}.double", "input": '{"args": [21]}', "token": "t"})
    assert done.ok and done.result == "42"


def test_run_task_works_from_code_that_already_runs_an_event_loop():
    async def caller():
        return run_task({"name": f"{MOD}.double", "input": '{"args": [4]}', "token": "t"})

    assert asyncio.run(caller()).result == "8"


def test_async_workflow_awaits_submit_wait_timer_and_signal():
    env = WorkflowEnvironment()
    wid = env.start(aa.AsyncFanOut, 3)
    assert env.describe(wid).is_open  # waiting for the signal, an hour of timer already skipped
    env.signal(wid, "go", "now")
    assert env.result(wid) == {
        "first": 2, "values": [0, 2, 4], "done": 3, "not_done": 0, "total": 8, "again": [0, 2, 4],
        "signal": {"args": ["now"], "kwargs": {}},
    }
    fired = [e for e in env.history(wid) if e.event_type == h.TIMER_FIRED]
    assert len(fired) == 1
    Replayer([aa.AsyncFanOut]).replay(env.history(wid))


def test_async_workflow_runs_locally_with_async_activities(real_engine):
    info = run_local(aa.AsyncFanOut, [2, 0.05], engine=real_engine)
    assert info.status == "completed", info.close_reason
    assert json.loads(info.result)["total"] == 4
    info = run_local(aa.AsyncCatches, engine=real_engine)
    assert json.loads(info.result) == {"reason": "ValueError: nope", "plain": 3}


def test_cancellation_reaches_an_async_run_at_its_await():
    env = WorkflowEnvironment()
    wid = env.start(aa.AsyncCancelled)
    env.cancel(wid)
    env.run_until_idle()
    assert env.describe(wid).status == "canceled"
    completed = [e for e in env.history(wid) if e.event_type == h.ACTIVITY_TASK_COMPLETED]
    assert [e.attributes["result"] for e in completed] == ["42"]


def test_awaiting_asyncio_in_a_workflow_fails_it_clearly():
    env = WorkflowEnvironment()
    sleeps, waits = env.start(aa.AwaitsAsyncio, "sleep"), env.start(aa.AwaitsAsyncio, "future")
    assert env.describe(sleeps).close_reason == "Cannot replay the workflow: RuntimeError(no running event loop)"
    reason = env.describe(waits).close_reason
    assert reason.startswith("Cannot replay the workflow: WorkflowError(run() awaited <Future pending>")
    assert "a workflow can await only steadyflow futures" in reason
