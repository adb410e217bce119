"""Schedules: slots in a time zone, overlap policies, catch-up, several schedulers, bad input."""

from __future__ import annotations

import datetime as _dt
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from steadyflow.cli import main
from steadyflow.decider import Decider
from steadyflow.engines import open_engine
from steadyflow.errors import ConfigError
from steadyflow.schedules import Scheduler, Schedules, ScheduleSpec
from steadyflow.schedules.spec import slot_text
from tests.fixtures.cluster import ROOT, wait_for

NAP = "tests.fixtures.scheduled.Nap"
NOOP = "tests.fixtures.scheduled.Noop"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clocked():
    clock = Clock(1_800_000_000.0)  # 2027-01-15T08:00:00Z, on a whole minute
    return clock, open_engine("memory://", clock=clock)


def runs_of(engine, name: str) -> list:
    return [e for e in engine.list_executions(limit=10_000) if f"schedule:{name}" in e.tags]


def test_slots_follow_the_time_zone_across_daylight_saving():
    spec = ScheduleSpec("paris", "30 2 * * *", NOOP, timezone="Europe/Paris")
    start = _dt.datetime(2026, 3, 27, tzinfo=_dt.timezone.utc).timestamp()
    slots = spec.slots(start, start + 4 * 86400)
    # 02:30 does not exist on 2026-03-29 in Paris; other days it is 01:30Z (CET) then 00:30Z (CEST).
    assert [slot_text(s) for s in slots][:2] == ["2026-03-27T01:30:00Z", "2026-03-28T01:30:00Z"]
    assert slot_text(slots[-1]) == "2026-03-30T00:30:00Z"


@pytest.mark.parametrize(("options", "message"), [
    ({"cron": "61 * * * *"}, "invalid cron expression"),
    ({"timezone": "Mars/Olympus"}, "unknown time zone"),
    ({"overlap": "sometimes"}, "unknown overlap policy"),
    ({"jitter": -1}, "jitter must be"),
    ({"catchup_window": -5}, "catchup window"),
])
def test_bad_definitions_are_refused_with_a_message(options, message):
    fields = {"name": "s", "cron": "* * * * *", "workflow": NOOP, **options}
    with pytest.raises(ConfigError, match=message):
        ScheduleSpec(**fields)


@pytest.mark.parametrize("args", [
    ["--cron", "not a cron"],
    ["--cron", "* * * * *", "--timezone", "Nowhere/Land"],
    ["--cron", "* * * * *", "--overlap", "maybe"],
    ["--cron", "* * * * *", "--jitter", "-3"],
])
def test_the_cli_refuses_bad_input_with_exit_2_and_creates_nothing(tmp_path, capsys, args):
    url = f"sqlite:///{tmp_path / 'steadyflow.db'}"
    assert main(["--engine", url, "schedule", "create", "s", NOOP, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len([line for line in err.splitlines() if line.startswith("Error: ")]) == 1 and "Traceback" not in err
    assert Schedules(open_engine(url)).list() == []


def test_each_slot_fires_once_tagged_with_its_schedule_and_slot(clocked):
    clock, engine = clocked
    Schedules(engine).create("tick", "* * * * * *", NOOP, overlap="allow_all")
    scheduler = Scheduler(engine)
    for _ in range(5):
        clock.now += 1
        scheduler.tick()
        scheduler.tick()  # nothing new: the slot already fired
    runs = runs_of(engine, "tick")
    assert len(runs) == 5 and len({r.workflow_id for r in runs}) == 5
    first = sorted(runs, key=lambda r: r.workflow_id)[0]
    assert f"slot:{slot_text(clock.now - 4)}" in first.tags
    assert Schedules(engine).get("tick").fired == 5


def test_catch_up_window_fires_recent_slots_and_counts_older_ones_missed(clocked):
    clock, engine = clocked
    Schedules(engine).create("late", "* * * * * *", NOOP, overlap="allow_all", catchup_window=10)
    clock.now += 100  # the scheduler was down for 100 s
    Scheduler(engine).tick()
    state = Schedules(engine).get("late")
    assert len(runs_of(engine, "late")) == 11 and state.fired == 11 and state.missed == 89


def test_skip_and_buffer_one_while_a_run_is_open(clocked):
    clock, engine = clocked
    schedules = Schedules(engine)
    schedules.create("skipper", "* * * * * *", NOOP, overlap="skip")
    schedules.create("buffer", "* * * * * *", NOOP, overlap="buffer_one")
    scheduler = Scheduler(engine)
    for _ in range(3):  # runs stay open: skip fires 1, buffer fires 1 and keeps 1 pending
        clock.now += 1
        scheduler.tick()
    assert len(runs_of(engine, "skipper")) == 1 and len(runs_of(engine, "buffer")) == 1
    assert schedules.get("buffer").pending_slot is not None
    for run in runs_of(engine, "buffer"):
        engine.terminate_execution(run.workflow_id, reason="done")
    clock.now += 0.5
    scheduler.tick()
    assert len(runs_of(engine, "buffer")) == 2 and schedules.get("buffer").pending_slot is None


def test_cancel_other_asks_the_running_one_to_cancel(clocked):
    clock, engine = clocked
    Schedules(engine).create("canceller", "* * * * * *", NOOP, overlap="cancel_other")
    scheduler = Scheduler(engine)
    clock.now += 1
    scheduler.tick()
    clock.now += 1
    scheduler.tick()
    first = sorted(runs_of(engine, "canceller"), key=lambda r: r.start_time)[0]
    history = engine.get_history(first.workflow_id)
    assert any(e.event_type == "WorkflowExecutionCancelRequested" for e in history)


def test_pause_trigger_backfill_and_delete(clocked):
    clock, engine = clocked
    schedules = Schedules(engine)
    schedules.create("ops", "* * * * * */10", NOOP, overlap="allow_all")
    schedules.pause("ops")
    clock.now += 60
    scheduler = Scheduler(engine)
    scheduler.tick()
    assert runs_of(engine, "ops") == []
    schedules.unpause("ops")  # the paused minute is not caught up
    scheduler.tick()
    assert runs_of(engine, "ops") == []
    manual = schedules.trigger("ops")
    assert "@manual-" in manual
    start = clock.now - 60
    assert len(schedules.backfill("ops", start, start + 30)) == 4  # :00 :10 :20 :30
    assert schedules.backfill("ops", start, start + 30) == []  # already fired: idempotent
    schedules.delete("ops")
    with pytest.raises(ConfigError, match="no schedule named"):
        schedules.get("ops")


def test_the_store_leases_rows_on_postgres(pg_schema):
    engine = open_engine(pg_schema.url)
    schedules = Schedules(engine)
    schedules.create("pg", "* * * * * *", NOOP, overlap="allow_all")
    store = schedules.store
    later = engine.clock() + 5
    [mine] = store.claim(later, "a", 30)
    assert store.claim(later, "b", 30) == []  # leased
    assert not store.save(mine, "b") and store.save(mine, "a")
    assert store.claim(later + 31, "b", 30)  # free again after it is saved
    engine.close()


@pytest.mark.slow
def test_skip_never_runs_two_at_once_with_runs_longer_than_the_interval(tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path / 'steadyflow.db'}")
    Schedules(engine).create("naps", "* * * * * *", NAP, args=[2.5], overlap="skip")
    stop = threading.Event()
    decider = Decider(engine, "naps")
    threads = [threading.Thread(target=Scheduler(engine).run, args=(stop, 0.05)),
               threading.Thread(target=decider.run, args=(stop, 0.05))]
    for t in threads:
        t.start()
    time.sleep(7.5)
    stop.set()
    for t in threads:
        t.join(10)
    runs = sorted(runs_of(engine, "naps"), key=lambda r: r.start_time)
    assert len(runs) >= 2
    for earlier, later in zip(runs, runs[1:]):
        assert earlier.close_time is not None and earlier.close_time <= later.start_time, (earlier, later)
        assert earlier.close_time - earlier.start_time >= 2.5


@pytest.mark.slow
def test_two_schedulers_one_killed_no_slot_twice_and_none_missed(tmp_path):
    url = f"sqlite:///{tmp_path / 'steadyflow.db'}"
    engine = open_engine(url)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "steadyflow", "--engine", url, "schedule", "run", "--lease", "1",
               "-m", "tests.fixtures.scheduled"]
    procs = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(2)]
    try:
        wait_for(lambda: len(runs_of(engine, "declared-every-second")) >= 2, 30, "first slots")
        procs[0].send_signal(signal.SIGKILL)
        killed_at = time.time()
        wait_for(lambda: time.time() > killed_at + 4, 10, "the survivor to go on")
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
            p.wait(15)
    slots = sorted(float(_dt.datetime.fromisoformat(r.workflow_id.split("@")[1].replace("Z", "+00:00")).timestamp())
                   for r in runs_of(engine, "declared-every-second"))
    assert len(slots) == len(set(slots))  # no slot twice
    assert slots == [slots[0] + i for i in range(len(slots))]  # none missed, across the kill
    assert slots[-1] > killed_at + 2
