"""Task list limits, as every engine enforces them when it hands out activity tasks."""

from __future__ import annotations

import dataclasses

import pytest

from steadyflow.engines.limits import TaskListLimits, parse_rate
from steadyflow.errors import ConfigError
from tests.fixtures.pool_helpers import act, schedule

TL = "limited"


def claim_all(engine) -> list:
    tasks = []
    while (task := engine.poll_activity_task(TL, "w")) is not None:
        tasks.append(task)
    return tasks


def test_concurrency_limit(engine):
    engine.set_task_list_limits(TaskListLimits(TL, concurrency=2))
    schedule(engine, *[act("noop", task_list=TL) for _ in range(5)])
    first = claim_all(engine)
    assert len(first) == 2
    engine.complete_activity_task(first[0].token, "null")
    assert len(claim_all(engine)) == 1
    assert engine.clear_task_list_limits(TL) and not engine.clear_task_list_limits(TL)
    assert len(claim_all(engine)) == 2


def test_per_key_limit(engine):
    engine.set_task_list_limits(TaskListLimits(TL, per_key=2))
    keyed = [("a", 1), ("a", 2), ("a", 3), ("b", 4), (None, 5)]
    schedule(engine, *[dataclasses.replace(act("noop", n, task_list=TL), concurrency_key=key) for key, n in keyed])
    first = claim_all(engine)
    assert len(first) == 4  # a, a, b and the unkeyed one; the third "a" waits
    done = next(t for t in first if '"args":[1]' in t.input.replace(" ", ""))
    engine.complete_activity_task(done.token, "null")
    [third] = claim_all(engine)
    assert "3" in third.input


def test_rate_limit_spaces_starts(engine, clock):
    engine.set_task_list_limits(TaskListLimits(TL, rate_count=2, rate_period=1.0))
    schedule(engine, *[act("noop", task_list=TL) for _ in range(6)])
    assert len(claim_all(engine)) == 1  # a new limit starts with one token
    clock.advance(0.25)
    assert claim_all(engine) == []
    clock.advance(0.25)
    assert len(claim_all(engine)) == 1
    clock.advance(10)  # the bucket holds two tokens: a quiet spell allows no bigger burst
    assert len(claim_all(engine)) == 2


def test_limits_are_listed_and_replaced(engine):
    engine.set_task_list_limits(TaskListLimits("b", concurrency=3))
    engine.set_task_list_limits(TaskListLimits("a", rate_count=100, rate_period=60.0))
    engine.set_task_list_limits(TaskListLimits("b", per_key=1))
    assert engine.task_list_limits() == [TaskListLimits("a", rate_count=100, rate_period=60.0),
                                         TaskListLimits("b", per_key=1)]


@pytest.mark.parametrize(("text", "expected"), [("100/m", (100, 60.0)), ("20/s", (20, 1.0)), ("5/10s", (5, 10.0)),
                                                ("1000/h", (1000, 3600.0))])
def test_rates_parse(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "20", "20/", "0/s", "20/fortnight", "x/s", "-1/s"])
def test_malformed_rates_are_refused(text):
    with pytest.raises(ConfigError, match="malformed rate"):
        parse_rate(text)


def test_a_limit_of_zero_is_refused():
    with pytest.raises(ConfigError, match="at least 1"):
        TaskListLimits(TL, concurrency=0)


def test_activities_carry_their_concurrency_key_from_their_arguments():
    from steadyflow.engines.memory import MemoryEngine
    from steadyflow.local import run_local
    from tests.fixtures import limited_activities as la

    engine = MemoryEngine()
    info = run_local(la.Orders, engine=engine)
    keys = [e.attributes.get("concurrencyKey") for e in engine.get_history(info.workflow_id)
            if e.event_type == "ActivityTaskScheduled"]
    assert keys == ["c0", "c1", "c0", "c1", "c9", "eu", "us"]


def test_waiting_tasks_are_counted_and_tasks_know_when_they_were_scheduled(engine, clock):
    schedule(engine, *[act("noop", task_list=TL) for _ in range(3)])
    scheduled = clock()
    clock.advance(2)
    assert engine.count_waiting_activity_tasks(TL) == 3
    task = engine.poll_activity_task(TL, "w")
    assert engine.count_waiting_activity_tasks(TL) == 2 and engine.count_waiting_activity_tasks("other") == 0
    assert task.scheduled_at == scheduled
