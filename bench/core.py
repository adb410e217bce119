"""Core throughput and latency on the SQLite engine, 2 worker processes (issue 2's benchmark).

    python3 bench/core.py [--fanout 2000] [--sequential 200] [--processes 2] [--engine URL]

Runs each workload as `standalone` does: a decider thread and a worker pool in one process, on a
fresh database. Prints one markdown table. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.workloads import FanOutBench, SequentialBench  # noqa: E402
from steadyflow import history as h  # noqa: E402
from steadyflow.decider import Decider  # noqa: E402
from steadyflow.engines import open_engine  # noqa: E402
from steadyflow.local import start  # noqa: E402
from steadyflow.worker import WorkerPool  # noqa: E402


def run_one(url: str, cls, n: int, processes: int) -> dict:
    engine = open_engine(url)
    task_list = f"bench-{cls.name}"
    stop = threading.Event()
    pool = WorkerPool(engine, task_list, processes=processes, modules=("bench.workloads",))
    pool_thread = threading.Thread(target=pool.run, args=(stop,), daemon=True)
    pool_thread.start()
    while pool.alive < processes:  # children spawned before the clock starts
        time.sleep(0.01)
    decider = Decider(engine, task_list, [cls], activity_task_list=task_list)
    dec_thread = threading.Thread(target=decider.run, args=(stop, 0.05), daemon=True)
    dec_thread.start()
    t0 = time.perf_counter()
    wid, rid = start(engine, cls, [n], task_list=task_list)
    while engine.describe_execution(wid, rid).is_open:
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    stop.set()
    dec_thread.join(10)
    pool_thread.join(30)
    info = engine.describe_execution(wid, rid)
    events = engine.get_history(wid, rid)
    scheduled = {e.event_id: e.timestamp for e in events if e.event_type == h.ACTIVITY_TASK_SCHEDULED}
    latencies = [
        e.timestamp - scheduled[e.attributes["scheduledEventId"]]
        for e in events
        if e.event_type == h.ACTIVITY_TASK_COMPLETED
    ]
    engine.close()
    assert info.status == "completed", info
    return {
        "wall": wall,
        "rate": n / wall,
        "p50": statistics.median(latencies) * 1000,
        "p99": sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1000 if latencies else 0.0,
        "events": len(events),
        "decisions": decider.decided,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fanout", type=int, default=2000)
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--engine", help="engine URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    columns = ("workload", "engine", "activities", "wall s", "activities/s", "sched→done p50 ms",
               "sched→done p99 ms", "per step ms", "events", "decisions")
    print(f"steadyflow core, {args.processes} worker processes\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    with tempfile.TemporaryDirectory() as tmp:
        for cls, n in ((FanOutBench, args.fanout), (SequentialBench, args.sequential)):
            url = args.engine or f"sqlite:///{tmp}/{cls.name}.db"
            r = run_one(url, cls, n, args.processes)
            row = (
                cls.name, url.split(":")[0], str(n), f"{r['wall']:.2f}", f"{r['rate']:.0f}", f"{r['p50']:.1f}",
                f"{r['p99']:.1f}", f"{r['wall'] / n * 1000:.2f}", str(r["events"]), str(r["decisions"]),
            )
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
