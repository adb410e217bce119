"""Huey with its SQLite storage (`SqliteHuey`), a consumer of 2 worker processes (`-k process -w 2`).

Rows 1 and 5 (the same workload for Huey: N no-op tasks enqueued while the consumer runs, until
every result is stored), 3 (enqueue one task and wait for its result, looking every 1 ms, 200 times).
The consumer's first polling delay is lowered from 0.1 s to 0.01 s (`-d 0.01`), a usual tuning.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from huey import SqliteHuey

huey = SqliteHuey(filename=os.environ.get("BENCH_HUEY_DB", "huey-bench.db"))


@huey.task()
def noop(n):
    return n


def consumer() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "huey.bin.huey_consumer", "huey_peer.huey", "-w", "2", "-k",
                             "process", "-d", "0.01", "-q"], stdin=subprocess.DEVNULL)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(2)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    import huey_peer as m  # the consumer imports this module by name: use its tasks, not __main__'s
    from common import arguments, emit, round_trips, wait_until

    args = arguments(__doc__.splitlines()[0])
    out = {}
    m.huey.storage.flush_all()
    proc = consumer()
    try:
        m.noop(-1).get(blocking=True, timeout=60)  # warm: the consumer is up
        for row, n in ((1, args.fanout), (5, args.tasks)):
            if row in args.rows:
                m.huey.storage.flush_results()
                started = time.perf_counter()
                for i in range(n):
                    m.noop(i)
                wait_until(lambda n=n: m.huey.result_count() >= n, 900, what="Huey results")
                out[row] = {"rate": n / (time.perf_counter() - started)}
        if 3 in args.rows:
            def once(i):
                result = m.noop(i)
                while result.get() is None:  # a 1 ms poll, as the suite's own waiter
                    time.sleep(0.001)
            out[3] = round_trips(args.roundtrips, once)
    finally:
        stop(proc)
    m.huey.storage.flush_all()
    emit(out)


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))  # the consumer imports huey_peer from here
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("BENCH_HUEY_DB", os.path.join(tmp, "huey.db"))
        main()
