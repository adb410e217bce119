"""What application code sees (issue 11's measure): client round trips and schedule lateness.

    python3 bench/client.py [--runs 200] [--schedules 10] [--seconds 20] [--engine URL ...]

- **round trip**: `client.start(OneStep, i)` then `handle.result(timeout=30)`, a one-activity
  workflow, with a decider thread and a worker pool running (as `bench/core.py` runs them), after
  one warm-up execution. `result()` is the client's own wait (it polls `describe_execution`,
  backing off from 5 ms to 500 ms), so the figure is what a caller of the client waits, polling
  included.
- **schedule lateness**: for each slot, the start time the engine recorded for the slot's
  execution minus the slot's time. The cron spec's finest grain is one second, so 200 slots at
  one schedule would take 200 s; instead `--schedules` schedules fire every second for
  `--seconds` seconds (10 x 20 = 200 slots in 20 s), handled by one scheduler thread ticking every
  0.1 s (`steadyflow schedule run`'s default). Slots of all schedules fall on the same second, so
  the later ones of each second wait for the starts before them: the figure includes that queueing.
  Overlap is `allow_all` and no decider runs, so every slot starts an execution whatever
  became of the previous one; a slot that never started is counted as missed.

`--engine sqlite` (the default, with the PostgreSQL of the tests when it answers) is a new SQLite
file; a `postgresql://` URL a new schema, dropped after. Prints one markdown table. Not a test:
numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.core import fresh_engine_url, latency_summary, standalone  # noqa: E402
from bench.workloads import OneStep  # noqa: E402
from steadyflow.client import Client  # noqa: E402
from steadyflow.engines import open_engine  # noqa: E402
from steadyflow.errors import UnknownExecution  # noqa: E402
from steadyflow.schedules import Schedules  # noqa: E402
from steadyflow.schedules.scheduler import Scheduler  # noqa: E402

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def round_trips(url: str, runs: int, processes: int) -> dict:
    """Milliseconds from `client.start` to `handle.result()` returning, `runs` times."""
    task_list = f"bench-{OneStep.name}"
    with standalone(url, [OneStep], task_list, processes) as (engine, _):
        client = Client(engine=engine)
        times = []
        for i in range(runs + 1):
            t0 = time.perf_counter()
            handle = client.start(OneStep, i, task_list=task_list)
            assert handle.result(timeout=30) == i
            times.append((time.perf_counter() - t0) * 1000)
    return {**latency_summary(times[1:]), "max": max(times[1:])}


def lateness(url: str, schedules: int, seconds: int) -> dict:
    """Milliseconds between each slot and the start of its execution, over schedules x seconds slots."""
    engine = open_engine(url)
    try:
        api = Schedules(engine)
        specs = [
            api.create(
                f"bench-{k}", "* * * * * *", OneStep, args=[k], overlap="allow_all", task_list="bench-idle"
            ).spec
            for k in range(schedules)
        ]
        scheduler = Scheduler(engine)
        stop = threading.Event()
        thread = threading.Thread(target=scheduler.run, args=(stop, 0.1), name="bench-scheduler", daemon=True)
        first = float(int(engine.clock()) + 2)  # whole seconds from here on are measured
        last = first + seconds - 1
        thread.start()
        while engine.clock() < last + 2:  # the last slot, and time for its start
            time.sleep(0.2)
        stop.set()
        thread.join(10)
        late, missed = [], 0
        for spec in specs:
            for slot in spec.slots(first, last):
                try:
                    info = engine.describe_execution(spec.workflow_id(slot))
                except UnknownExecution:
                    missed += 1
                    continue
                late.append((info.start_time - slot) * 1000)
        summary = latency_summary(late) if late else {"p50": float("nan"), "p99": float("nan"), "runs": 0}
        summary["missed"] = missed
        summary["max"] = max(late, default=float("nan"))
        return summary
    finally:
        engine.close()


def reachable(url: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3):
            return True
    except Exception:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="round trips per engine")
    parser.add_argument("--processes", type=int, default=1, help="worker processes")
    parser.add_argument("--schedules", type=int, default=10, help="schedules firing every second")
    parser.add_argument("--seconds", type=int, default=20, help="seconds of slots to measure")
    parser.add_argument(
        "--engine", action="append", help="engine URL, repeatable (default: sqlite and the tests' PostgreSQL)"
    )
    args = parser.parse_args()
    engines = args.engine or ["sqlite"] + ([DEFAULT_POSTGRES] if reachable(DEFAULT_POSTGRES) else [])
    print(
        f"steadyflow client: decider thread + {args.processes} worker process(es); "
        f"{args.schedules} schedules x {args.seconds} s of 1 s slots, one scheduler\n"
    )
    columns = ("measure", "engine", "samples", "p50 ms", "p99 ms", "max ms", "missed")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    with tempfile.TemporaryDirectory() as tmp:
        for base in engines:
            name = base.split(":")[0]
            with fresh_engine_url(base, tmp, "round-trip") as url:
                r = round_trips(url, args.runs, args.processes)
            row = (
                "start + result round trip",
                name,
                str(r["runs"]),
                f"{r['p50']:.1f}",
                f"{r['p99']:.1f}",
                f"{r['max']:.1f}",
                "",
            )
            print("| " + " | ".join(row) + " |", flush=True)
            with fresh_engine_url(base, tmp, "lateness") as url:
                r = lateness(url, args.schedules, args.seconds)
            row = (
                "schedule fire lateness",
                name,
                str(r["runs"]),
                f"{r['p50']:.1f}",
                f"{r['p99']:.1f}",
                f"{r['max']:.1f}",
                str(r["missed"]),
            )
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
