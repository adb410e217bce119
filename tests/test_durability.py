"""Nothing is lost when processes die: real deciders and workers on one SQLite file, killed with SIGKILL."""

from __future__ import annotations

import collections
import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from steadyflow import history as h
from steadyflow.engines import open_engine
from steadyflow.local import start
from tests.fixtures import workflows as wf
from tests.fixtures.cluster import wait_for

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def assert_no_duplicate_completions(events: list[h.Event]) -> None:
    closes = collections.Counter(
        e.attributes["scheduledEventId"]
        for e in events
        if e.event_type in (h.ACTIVITY_TASK_COMPLETED, h.ACTIVITY_TASK_FAILED, h.ACTIVITY_TASK_TIMED_OUT)
    )
    assert all(n == 1 for n in closes.values()), closes
    completed_ids = collections.Counter()
    by_scheduled = {e.event_id: e.attributes["activityId"] for e in events if e.event_type == h.ACTIVITY_TASK_SCHEDULED}
    for e in events:
        if e.event_type == h.ACTIVITY_TASK_COMPLETED:
            completed_ids[by_scheduled[e.attributes["scheduledEventId"]]] += 1
    assert all(n == 1 for n in completed_ids.values()), completed_ids
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))


def integrity(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def test_worker_killed_mid_activity_the_task_is_handed_out_again(cluster):
    engine = open_engine(cluster.url)
    wid, rid = start(engine, wf.SlowSquare, [7, 3], task_list="kill-worker")
    cluster.decider("kill-worker", "tests.fixtures.workflows.SlowSquare")
    doomed = cluster.worker("kill-worker")
    wait_for(lambda: any(e.event_type == h.ACTIVITY_TASK_STARTED for e in engine.get_history(wid)), what="task start")
    os.killpg(doomed.pid, signal.SIGKILL)  # the supervisor and its child, mid-activity
    doomed.wait()
    cluster.worker("kill-worker")
    wait_for(lambda: not engine.describe_execution(wid).is_open, what="completion")
    info = engine.describe_execution(wid)
    assert info.status == "completed" and json.loads(info.result) == 49
    events = engine.get_history(wid)
    timed_out = [e for e in events if e.event_type == h.ACTIVITY_TASK_TIMED_OUT]
    assert [e.attributes["timeoutType"] for e in timed_out] == ["HEARTBEAT"]
    assert sum(e.event_type == h.ACTIVITY_TASK_COMPLETED for e in events) == 1
    assert_no_duplicate_completions(events)
    engine.close()
    assert integrity(cluster.db) == "ok"


def test_decider_killed_mid_decision_leaves_no_half_applied_decision(cluster):
    engine = open_engine(cluster.url)
    wid, rid = start(engine, wf.SlowDecision, [4], task_list="kill-decider")
    cluster.worker("kill-decider")
    doomed = cluster.decider("kill-decider", "tests.fixtures.workflows.SlowDecision", env={"SLOW_DECISION": "60"})

    def deciding_after_first_activity():
        events = engine.get_history(wid)
        done = any(e.event_type == h.ACTIVITY_TASK_COMPLETED for e in events)
        return done and events[-1].event_type == h.DECISION_TASK_STARTED and events[-1]

    stuck = wait_for(deciding_after_first_activity, what="the slow decision")
    time.sleep(0.3)
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait()
    cluster.decider("kill-decider", "tests.fixtures.workflows.SlowDecision")
    wait_for(lambda: not engine.describe_execution(wid).is_open, what="completion")
    info = engine.describe_execution(wid)
    assert info.status == "completed" and json.loads(info.result) == 25 + 6
    events = engine.get_history(wid)
    after = [e for e in events if e.event_id > stuck.event_id]
    assert after[0].event_type == h.DECISION_TASK_TIMED_OUT
    assert after[0].attributes["startedEventId"] == stuck.event_id
    answered = {e.attributes["startedEventId"] for e in events if e.event_type == h.DECISION_TASK_COMPLETED}
    assert stuck.event_id not in answered
    scheduled = [e.attributes["activityId"] for e in events if e.event_type == h.ACTIVITY_TASK_SCHEDULED]
    assert sorted(scheduled) == sorted(set(scheduled))  # nothing scheduled twice
    assert_no_duplicate_completions(events)
    engine.close()
    assert integrity(cluster.db) == "ok"


def test_two_deciders_three_workers_two_hundred_fan_out_executions(cluster):
    engine = open_engine(cluster.url)
    expected = {}
    for i in range(200):
        wid, _ = start(engine, wf.FanIn, [i, 4], workflow_id=f"fan-{i}", task_list="many")
        expected[wid] = sum((i + k) ** 2 for k in range(4))
    for _ in range(2):
        cluster.decider("many", "tests.fixtures.workflows.FanIn")
    for _ in range(3):
        cluster.worker("many")
    wait_for(lambda: not engine.list_executions(status="open", limit=1), timeout=300, what="200 executions")
    closed = engine.list_executions(status="closed", limit=1000)
    assert len(closed) == 200
    for info in closed:
        assert info.status == "completed", (info.workflow_id, info.close_reason)
        assert json.loads(info.result) == expected[info.workflow_id]
        events = engine.get_history(info.workflow_id)
        assert_no_duplicate_completions(events)
        assert sum(e.event_type == h.ACTIVITY_TASK_SCHEDULED for e in events) == 5
    engine.close()
    assert integrity(cluster.db) == "ok"
