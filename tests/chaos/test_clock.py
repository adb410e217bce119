"""Clock jumps through the test kit's injectable clock: the same workload, decided and run inline
on an engine whose clock (`steadyflow.testing.SkippingClock`) leaps forward and back at random,
between steps and in the middle of activities. Every invariant of the checker must still hold.

A forward jump inside an activity outlives its heartbeat timeout: the engine times the attempt
out, refuses its late result and the decider retries it, as it would for a host whose clock moved.
"""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest

from steadyflow.activity import as_activity
from steadyflow.engines import open_engine
from steadyflow.local import InlineDriver, start
from steadyflow.testing import SkippingClock
from tests.chaos import checker
from tests.chaos.driver import workload
from tests.fixtures import chaos_workflows as cw

pytestmark = pytest.mark.chaos
MAX_STEPS = 20_000


class JumpingClock(SkippingClock):
    """The test kit's clock, which may also jump back (`SkippingClock.advance` only goes forward)."""

    def jump(self, seconds: float) -> None:
        self.offset += seconds


@pytest.mark.parametrize("engine_kind", ["memory", "sqlite"])
def test_clock_jumps_keep_every_invariant(tmp_path, chaos_seed, chaos_size, chaos_report, engine_kind):
    began = time.monotonic()
    rng = random.Random(chaos_seed)
    clock = JumpingClock()
    jumps: Counter = Counter()

    def mid_task_jump() -> None:
        if rng.random() < 0.1:
            clock.jump(cw.HEARTBEAT_TIMEOUT + 1 + rng.random() * 30)
            jumps["forward_mid_activity"] += 1

    def fake(fn):
        def run(*args):
            mid_task_jump()
            return fn(*args)

        return run

    fakes = {
        as_activity(cw.chaos_square).name: fake(lambda x: x * x),
        as_activity(cw.chaos_inc).name: fake(lambda x: x + 1),
        as_activity(cw.chaos_flaky).name: fake(lambda x, fail_times: 3 * x),
        as_activity(cw.chaos_reverse).name: fake(lambda text: text[::-1]),
    }
    url = "memory://" if engine_kind == "memory" else f"sqlite:///{tmp_path / 'clock.db'}"
    engine = open_engine(url, clock=clock)
    driver = InlineDriver(engine, cw.TASK_LIST, cw.WORKFLOWS, fakes=fakes)
    pending = workload(chaos_size, rng)
    started: set[str] = set()
    signals: dict[str, list[int]] = {}
    try:
        for _ in range(MAX_STEPS):
            roll = rng.random()
            if roll < 0.1:
                clock.jump(rng.uniform(1, 120))
                jumps["forward"] += 1
            elif roll < 0.2:
                clock.jump(-rng.uniform(1, 60))
                jumps["backward"] += 1
            waiting = [w for w, sent in signals.items() if len(sent) < 3]
            if waiting and rng.random() < 0.3:
                wid = rng.choice(waiting)
                engine.signal_execution(wid, None, cw.SIGNAL_NAME, engine.payloads.dumps(len(signals[wid])))
                signals[wid].append(len(signals[wid]))
            if pending and rng.random() < 0.5:
                cls, args, wid = pending.pop()
                start(engine, cls, args, workflow_id=wid)
                started.add(wid)
                if cls is cw.ChaosSignals:
                    signals[wid] = []
            if not driver.step():
                due = engine.next_due()
                if due is not None:
                    clock.jump(max(due - clock(), 0.0) + 0.001)  # nothing to do: skip to what is due
                elif not pending and not waiting and not engine.list_executions(status="open", limit=1):
                    break
        else:
            raise AssertionError(f"seed {chaos_seed}: not done after {MAX_STEPS} steps")
        report = checker.check_engine(engine, signals, started)
    finally:
        engine.close()
    chaos_report(checker.summary(f"{engine_kind}, inline, test-kit clock", chaos_seed, report,
                                 {f"clock_jump_{k}": v for k, v in jumps.items()}, {}, time.monotonic() - began, []))
    assert not report.violations, f"seed {chaos_seed}: {report.violations[:10]}"
