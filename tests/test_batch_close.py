"""Several activity outcomes recorded in one transaction (issue 9: fewer commits per task), on every
engine, and a worker pool reporting the outcomes that reach it together through it."""

from __future__ import annotations

import pytest

from steadyflow import history as h
from steadyflow.engines import open_engine
from steadyflow.engines.base import ActivityClose
from tests.fixtures.pool_helpers import act, events, running_pool, schedule, wait_events

MOD = "tests.fixtures.pool_activities"
TASK_LIST = "batch-close"


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def engine(request, tmp_path):
    if request.param == "memory":
        url = "memory://"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'batch.db'}"
    else:
        url = request.getfixturevalue("pg_schema").url
    eng = open_engine(url)
    yield eng
    eng.close()


def test_outcomes_of_two_executions_are_recorded_together_and_a_lapsed_one_drops_out(engine):
    first = schedule(engine, act(f"{MOD}.echo", 1, task_list=TASK_LIST), act(f"{MOD}.echo", 2, task_list=TASK_LIST))
    second = schedule(engine, act(f"{MOD}.echo", 3, task_list=TASK_LIST))
    tasks = [engine.poll_activity_task(TASK_LIST, "test") for _ in range(3)]
    assert all(tasks)
    by_wid = {}
    for t in tasks:
        by_wid.setdefault(t.workflow_id, []).append(t)
    a, b = by_wid[first]
    (c,) = by_wid[second]
    commits = getattr(engine, "_commits", None)
    recorded = engine.close_activity_tasks([
        ActivityClose(c.token, True, result="3"),
        ActivityClose(a.token, True, result="1"),
        ActivityClose("no/such/token", True, result="x"),
        ActivityClose(b.token, False, reason="ValueError: no", details="trace"),
    ])
    assert recorded == [True, True, False, True]
    if commits is not None:  # SQLite counts its commits: the three outcomes took one
        assert engine._commits - commits == 1
    completed = events(engine, first, h.ACTIVITY_TASK_COMPLETED)
    failed = events(engine, first, h.ACTIVITY_TASK_FAILED)
    assert [e.attributes["result"] for e in completed] == ["1"]
    assert [(e.attributes["reason"], e.attributes["details"]) for e in failed] == [("ValueError: no", "trace")]
    assert [e.attributes["result"] for e in events(engine, second, h.ACTIVITY_TASK_COMPLETED)] == ["3"]
    # Two outcomes of one execution schedule one decision task, not two (the other is the start's).
    history = events(engine, first)
    assert sum(e.event_type == h.DECISION_TASK_SCHEDULED for e in history) == 2
    assert [e.event_id for e in history] == list(range(1, len(history) + 1))
    # The tokens are spent: reporting them again records nothing.
    assert engine.close_activity_tasks([ActivityClose(a.token, True, result="1"),
                                        ActivityClose(c.token, True, result="3")]) == [False, False]


def test_a_pool_reports_outcomes_through_the_batch_call_and_each_lands_once(tmp_path, monkeypatch):
    engine = open_engine(f"sqlite:///{tmp_path / 'pool.db'}")
    batches, singles = [], []
    cls = type(engine)
    real_batch, real_single = cls.close_activity_tasks, cls.complete_activity_task

    def batch(self, closes):
        batches.append(len(closes))
        return real_batch(self, closes)

    def single(self, token, result):
        singles.append(token)
        return real_single(self, token, result)

    monkeypatch.setattr(cls, "close_activity_tasks", batch)
    monkeypatch.setattr(cls, "complete_activity_task", single)
    try:
        wid = schedule(engine, *[act(f"{MOD}.echo", i, task_list=TASK_LIST) for i in range(20)])
        with running_pool(engine, TASK_LIST, [MOD], processes=3):
            done = wait_events(engine, wid, h.ACTIVITY_TASK_COMPLETED, count=20)
        assert sorted(int(e.attributes["result"]) for e in done) == list(range(20))
        assert len(events(engine, wid, h.ACTIVITY_TASK_COMPLETED)) == 20
        # Outcomes read in one pass go in one call; one alone takes the single call. Either way
        # each outcome was reported once.
        assert sum(batches) + len(singles) == 20 and all(size > 1 for size in batches)
    finally:
        engine.close()
