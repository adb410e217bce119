"""The decider's cache: decisions continue from memory, and fall back to replay when they must."""

from __future__ import annotations

import pytest

from steadyflow.decider import Decider
from steadyflow.engines import open_engine
from steadyflow.local import InlineDriver, start
from tests.fixtures import workflows as wf


@pytest.fixture
def engine(tmp_path):
    eng = open_engine(f"sqlite:///{tmp_path / 'steadyflow.db'}")
    yield eng
    eng.close()


def finish(engine, driver, wid):
    assert driver.run_until(lambda: not engine.describe_execution(wid).is_open)
    info = engine.describe_execution(wid)
    assert info.status == "completed", info.close_reason
    return engine.payloads.loads(info.result)


def test_a_sequential_workflow_is_decided_from_the_cache_after_its_first_decision(engine):
    wid, _ = start(engine, wf.Sequential, [30], task_list="seq")
    driver = InlineDriver(engine, "seq", (wf.Sequential,))
    assert finish(engine, driver, wid) == 30
    cache = driver.decider.cache
    assert cache.misses == 1 and cache.hits == 30 and len(cache) == 0  # closed: let go


def test_two_deciders_taking_turns_still_decide_the_same(engine):
    wid, _ = start(engine, wf.Sequential, [12], task_list="turns")
    first, second = (Decider(engine, "turns", [wf.Sequential], identity=n) for n in ("a", "b"))
    driver = InlineDriver(engine, "turns", (wf.Sequential,))
    turn = 0
    while engine.describe_execution(wid).is_open:
        (first if turn % 3 else second).run_once()
        turn += 1
        while (task := engine.poll_activity_task("turns", "w")) is not None:
            outcome = driver.run_activity(task)
            engine.complete_activity_task(task.token, outcome.result)
    assert engine.payloads.loads(engine.describe_execution(wid).result) == 12
    # A decider that fell behind catches up from its cache too: it replays the other one's
    # decisions from the new events only.
    assert first.cache.hits > 0 and second.cache.hits > 0 and first.cache.misses == second.cache.misses == 1


def test_a_decision_that_was_not_applied_is_replayed_not_trusted(engine):
    wid, _ = start(engine, wf.Sequential, [3], task_list="lost")
    decider = Decider(engine, "lost", [wf.Sequential])
    task = engine.poll_decision_task("lost", "d")
    decider.decide(task)  # decided and cached, but never reported: the lease will run out
    engine.clock = lambda: 10**10  # far in the future: the decision task times out
    engine.fire_due()
    driver = InlineDriver(engine, "lost", (wf.Sequential,))
    driver.decider = decider
    assert finish(engine, driver, wid) == 3
    assert decider.cache.misses >= 2


def test_the_cache_is_bounded(engine):
    decider = Decider(engine, "many", [wf.Sequential], cache_size=3)
    for _ in range(5):
        start(engine, wf.Sequential, [2], task_list="many")
    while decider.run_once():
        pass
    assert len(decider.cache) == 3


def test_cache_off(engine, monkeypatch):
    monkeypatch.setenv("STEADYFLOW_DECIDER_CACHE", "0")
    decider = Decider(engine, "off", [wf.Sequential])
    assert decider.cache is None
    wid, _ = start(engine, wf.Sequential, [2], task_list="off")
    driver = InlineDriver(engine, "off", (wf.Sequential,))
    driver.decider = decider
    assert finish(engine, driver, wid) == 2  # every decision replays the whole history
