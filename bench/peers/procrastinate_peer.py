"""Procrastinate on PostgreSQL (a database of its own), 2 worker processes (`concurrency=1` each),
`LISTEN/NOTIFY` on (its default).

Rows: 1 (N no-op jobs deferred in one batch, workers warm, until all succeeded), 2 (a job that
defers the next one, N times in a row: steps per second), 3 (defer one job and wait for it to
succeed, looking every 1 ms, 200 times), 5 (as 1, with `delete_jobs="successful"`: until the
queue table is empty).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

from procrastinate import App, PsycopgConnector

logging.getLogger("procrastinate").setLevel(logging.ERROR)  # its notice about the app in __main__
app = App(connector=PsycopgConnector(conninfo=os.environ.get("BENCH_PROCRASTINATE_URL", "")))


@app.task(name="noop", queue="bench")
async def noop(i: int) -> int:
    return i


@app.task(name="step", queue="bench")
async def step(i: int, n: int) -> None:
    if i + 1 < n:
        await step.defer_async(i=i + 1, n=n)


def work(delete: str) -> None:
    """A worker process; `delete`: "never" or "successful"."""
    import procrastinate_peer as m

    with m.app.open():
        m.app.run_worker(queues=["bench"], concurrency=1, delete_jobs=delete, install_signal_handlers=True)


def count(conn, status: str | None = None) -> int:
    if status is None:
        return conn.execute("SELECT count(*) FROM procrastinate_jobs").fetchone()[0]
    return conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status = %s", (status,)).fetchone()[0]


def workers(delete: str) -> list[subprocess.Popen]:
    command = [sys.executable, "-c", f"import procrastinate_peer as m; m.work({delete!r})"]
    return [subprocess.Popen(command, stdin=subprocess.DEVNULL) for _ in range(2)]


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.send_signal(2)
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(args, url: str) -> dict:
    import procrastinate_peer as m
    import psycopg
    from common import round_trips, wait_until

    out = {}
    with m.app.open(), psycopg.connect(url, autocommit=True) as conn:
        m.app.schema_manager.apply_schema()
        for delete in ("never", "successful"):
            rows = ({1, 2, 3} if delete == "never" else {5}) & args.rows
            if not rows:
                continue
            procs = workers(delete)
            try:
                conn.execute("DELETE FROM procrastinate_jobs")
                job = m.noop.defer(i=-1)  # warm: both workers are up and listening
                wait_until(lambda: count(conn, "succeeded") >= 1 or count(conn) == 0, 120, what="warm-up job")
                time.sleep(0.5)
                conn.execute("DELETE FROM procrastinate_jobs")
                if 1 in rows or 5 in rows:
                    n = args.fanout if 1 in rows else args.tasks
                    started = time.perf_counter()
                    m.noop.batch_defer(*({"i": i} for i in range(n)))
                    if delete == "never":
                        wait_until(lambda n=n: count(conn, "succeeded") >= n, 900, what="jobs")
                    else:
                        wait_until(lambda: count(conn) == 0, 900, what="jobs")
                    out[1 if 1 in rows else 5] = {"rate": n / (time.perf_counter() - started)}
                    conn.execute("DELETE FROM procrastinate_jobs")
                if 2 in rows:
                    n = args.sequential
                    started = time.perf_counter()
                    m.step.defer(i=0, n=n)
                    wait_until(lambda n=n: count(conn, "succeeded") >= n, 900, what="sequential jobs")
                    out[2] = {"rate": n / (time.perf_counter() - started)}
                    conn.execute("DELETE FROM procrastinate_jobs")
                if 3 in rows:
                    def once(i):
                        job = m.noop.defer(i=i)
                        query = "SELECT status FROM procrastinate_jobs WHERE id = %s"
                        while conn.execute(query, (job,)).fetchone()[0] != "succeeded":
                            time.sleep(0.001)
                    out[3] = round_trips(args.roundtrips, once)
            finally:
                stop(procs)
        del job
    return out


def main() -> None:
    from common import arguments, emit
    from pgdb import fresh_database

    args = arguments(__doc__.splitlines()[0])
    with fresh_database(args.url, "procrastinate") as url:
        os.environ["BENCH_PROCRASTINATE_URL"] = url
        emit(measure(args, url))


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    main()
