"""Core throughput and latency of an engine, 2 worker processes (issue 2's benchmark).

    python3 bench/core.py [--fanout 2000] [--sequential 200] [--processes 2] [--engine URL ...]

Runs each workload as `standalone` does: a decider thread and a worker pool in one process, on a
fresh database: a new SQLite file, or, for a `postgresql://` URL, a new schema (dropped after).
`--split` runs them as deployed instead: `steadyflow decider start` and `steadyflow worker start`,
each a process of its own (after a warm-up execution, so that start-up is not measured).
`--engine` may be given several times to compare engines in one table; `--engine sqlite` (the
default) is a new SQLite file per workload, e.g.

    python3 bench/core.py --engine sqlite --engine postgresql://postgres@127.0.0.1:5432/test

Prints one markdown table. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.workloads import FanOutBench, OneStep, SequentialBench, noop  # noqa: E402
from steadyflow import history as h  # noqa: E402
from steadyflow.client import Client  # noqa: E402
from steadyflow.decider import Decider  # noqa: E402
from steadyflow.engines import open_engine  # noqa: E402
from steadyflow.local import start  # noqa: E402
from steadyflow.worker import WorkerPool  # noqa: E402


@contextmanager
def fresh_engine_url(base: str | None, tmp: str, name: str) -> Iterator[str]:
    """A URL naming an empty database for one workload: a new SQLite file or PostgreSQL schema."""
    if base in (None, "sqlite"):
        yield f"sqlite:///{tmp}/{name}.db"
        return
    if not base.startswith(("postgresql://", "postgres://")):
        yield base
        return
    import psycopg
    from psycopg import sql

    schema = f"sf_bench_{name.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    try:
        yield f"{base}{'&' if '?' in base else '?'}schema={schema}"
    finally:
        with psycopg.connect(_libpq_url(base), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _libpq_url(url: str) -> str:
    """`url` without the query options only steadyflow understands."""
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k not in ("schema", "pool_size", "reconnect_timeout")]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, quote_via=urllib.parse.quote)))


def measure(engine, wid: str, rid: str, n: int, wall: float) -> dict:
    info = engine.describe_execution(wid, rid)
    assert info.status == "completed", info
    events = engine.get_history(wid, rid)
    scheduled = {e.event_id: e.timestamp for e in events if e.event_type == h.ACTIVITY_TASK_SCHEDULED}
    latencies = [
        e.timestamp - scheduled[e.attributes["scheduledEventId"]]
        for e in events
        if e.event_type == h.ACTIVITY_TASK_COMPLETED
    ]
    return {
        "wall": wall,
        "rate": n / wall,
        "p50": statistics.median(latencies) * 1000,
        "p99": sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1000 if latencies else 0.0,
        "events": len(events),
        "decisions": sum(e.event_type == h.DECISION_TASK_COMPLETED for e in events),
    }


def run_until_closed(engine, cls, n: int, task_list: str) -> tuple[str, str, float]:
    t0 = time.perf_counter()
    wid, rid = start(engine, cls, [n], task_list=task_list)
    while engine.describe_execution(wid, rid).is_open:
        time.sleep(0.005)
    return wid, rid, time.perf_counter() - t0


@contextmanager
def split(url: str, cls, task_list: str, processes: int) -> Iterator[tuple]:
    """`steadyflow decider start` and `steadyflow worker start --processes N`, each a process of
    its own as deployed, up and warm (one execution of `cls` ran). Yields (engine, the decider
    process's CPU seconds so far: a callable)."""
    engine = open_engine(url)
    env = dict(os.environ, PYTHONPATH=str(ROOT), STEADYFLOW_URL=url, LOG_LEVEL="WARNING")
    commands = (
        ["decider", "start", "--task-list", task_list, f"{cls.__module__}.{cls.__name__}"],
        ["worker", "start", "--task-list", noop.options.task_list, "--processes", str(processes), "-m", "bench.workloads"],
    )
    procs = [subprocess.Popen([sys.executable, "-m", "steadyflow", *c], env=env, cwd=ROOT) for c in commands]
    try:
        run_until_closed(engine, cls, 1, task_list)  # warm-up: both processes are up and polling
        yield engine, lambda: process_cpu(procs[0].pid)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(60)
        engine.close()


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux `/proc/<pid>/stat`)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_split(url: str, cls, n: int, processes: int) -> dict:
    """`run_one` with the decider and the worker pool in processes of their own."""
    return run_one(url, cls, n, processes, in_process=False)


@contextmanager
def standalone(url: str, workflows, task_list: str, processes: int) -> Iterator[tuple]:
    """An engine with a decider thread and a worker pool of `processes` children, all running (the
    children spawned before this yields). Yields (engine, decider CPU seconds so far: a callable)."""
    engine = open_engine(url)
    stop = threading.Event()
    pool = WorkerPool(engine, task_list, processes=processes, modules=("bench.workloads",))
    pool_thread = threading.Thread(target=pool.run, args=(stop,), daemon=True)
    pool_thread.start()
    while pool.alive < processes or pool.last_poll is None:  # children spawned before the clock starts
        time.sleep(0.01)
    decider = Decider(engine, task_list, list(workflows), activity_task_list=task_list)
    cpu = {"start": None, "now": None}

    def decide() -> None:  # the decider's own CPU time: its thread's, not the process's
        cpu["start"] = time.thread_time()
        try:
            decider.run(stop, 1.0)
        finally:
            cpu["now"] = time.thread_time() - cpu["start"]

    dec_thread = threading.Thread(target=decide, name="bench-decider", daemon=True)
    dec_thread.start()
    try:
        yield engine, lambda: _thread_cpu(dec_thread, cpu)
    finally:
        stop.set()
        dec_thread.join(10)
        pool_thread.join(30)
        engine.close()


def _thread_cpu(thread: threading.Thread, cpu: dict) -> float:
    """CPU seconds the decider thread used so far (`time.pthread_getcpuclockid` while it runs)."""
    if cpu["now"] is not None:
        return cpu["now"]
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident)) - cpu["start"]


def run_one(url: str, cls, n: int, processes: int, in_process: bool = True) -> dict:
    """One execution of `cls` over `n` no-op activities; also the decider's CPU seconds for it.
    `in_process`: decider thread and pool in this process (as `standalone`), else `split`."""
    task_list = f"bench-{cls.name}"
    shape = standalone(url, [cls], task_list, processes) if in_process else split(url, cls, task_list, processes)
    with shape as (engine, decider_cpu):
        before = decider_cpu()
        wid, rid, wall = run_until_closed(engine, cls, n, task_list)
        result = measure(engine, wid, rid, n, wall)
        result["decider_cpu"] = decider_cpu() - before
    return result


def round_trips(url: str, runs: int, processes: int, in_process: bool = True) -> dict:
    """Start a one-activity workflow and wait for its result, `runs` times (after one warm-up):
    milliseconds per round trip. The waiter looks every millisecond, as the peers' waiters do."""
    task_list = f"bench-{OneStep.name}"
    shape = standalone(url, [OneStep], task_list, processes) if in_process else split(url, OneStep, task_list, processes)
    with shape as (engine, _):
        client = Client(engine=engine)
        times = []
        for i in range(runs + 1):
            t0 = time.perf_counter()
            handle = client.start(OneStep, i, task_list=task_list)
            while engine.describe_execution(handle.workflow_id, handle.run_id).is_open:
                time.sleep(0.001)
            assert handle.result() == i
            times.append((time.perf_counter() - t0) * 1000)
    return latency_summary(times[1:])


def latency_summary(times_ms: list[float]) -> dict:
    ordered = sorted(times_ms)
    return {"p50": statistics.median(ordered), "p99": ordered[max(0, round(len(ordered) * 0.99) - 1)],
            "runs": len(ordered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fanout", type=int, default=2000)
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--engine", action="append", help="engine URL, repeatable (default: a fresh SQLite file)"
    )
    parser.add_argument("--split", action="store_true", help="decider and workers in processes of their own")
    args = parser.parse_args()
    columns = ("workload", "engine", "activities", "wall s", "activities/s", "sched→done p50 ms",
               "sched→done p99 ms", "per step ms", "events", "decisions")
    shape = "decider and worker processes of their own" if args.split else "decider thread and worker pool in one process"
    print(f"steadyflow core, {args.processes} worker processes, {shape}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    with tempfile.TemporaryDirectory() as tmp:
        for base in args.engine or [None]:
            for cls, n in ((FanOutBench, args.fanout), (SequentialBench, args.sequential)):
                with fresh_engine_url(base, tmp, cls.name) as url:
                    r = (run_split if args.split else run_one)(url, cls, n, args.processes)
                row = (
                    cls.name, url.split(":")[0], str(n), f"{r['wall']:.2f}", f"{r['rate']:.0f}", f"{r['p50']:.1f}",
                    f"{r['p99']:.1f}", f"{r['wall'] / n * 1000:.2f}", str(r["events"]), str(r["decisions"]),
                )
                print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
