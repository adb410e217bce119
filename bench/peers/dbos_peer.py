"""DBOS Transact on PostgreSQL (a system database of its own), one process: workflows and their
steps run on its threads; queued workflows are dequeued by the same process (queue polling every
10 ms instead of its default 1 s, so that latency is not its polling interval).

Rows: 1 (a workflow that enqueues N one-step workflows and waits for all of them, DBOS's fan-out
idiom), 2 (a workflow of N sequential steps: steps per second), 3 (start a one-step workflow and
wait for its result with `handle.get_result()`, 200 times), 5 (N one-step workflows enqueued from
outside a workflow, until every result is there).
"""

from __future__ import annotations

import logging
import time

from dbos import DBOS

queue = None  # registered after launch (it lives in the system database)


@DBOS.step()
def noop(i: int) -> int:
    return i


@DBOS.workflow()
def one(i: int) -> int:
    return noop(i)


@DBOS.workflow()
def fanout(n: int) -> int:
    handles = [queue.enqueue(one, i) for i in range(n)]
    return len([h.get_result() for h in handles])


@DBOS.workflow()
def sequential(n: int) -> int:
    for i in range(n):
        noop(i)
    return n


def measure(args) -> dict:
    from common import round_trips

    out = {}
    one(-1)  # warm: connections open, tables there
    if 1 in args.rows:
        started = time.perf_counter()
        assert fanout(args.fanout) == args.fanout
        out[1] = {"rate": args.fanout / (time.perf_counter() - started)}
    if 2 in args.rows:
        started = time.perf_counter()
        sequential(args.sequential)
        out[2] = {"rate": args.sequential / (time.perf_counter() - started)}
    if 3 in args.rows:
        out[3] = round_trips(args.roundtrips, lambda i: DBOS.start_workflow(one, i).get_result())
    if 5 in args.rows:
        started = time.perf_counter()
        handles = [queue.enqueue(one, i) for i in range(args.tasks)]
        for handle in handles:
            handle.get_result()
        out[5] = {"rate": args.tasks / (time.perf_counter() - started)}
    return out


def main() -> None:
    from common import arguments, emit
    from pgdb import fresh_database

    args = arguments(__doc__.splitlines()[0])
    with fresh_database(args.url, "dbos") as url:
        DBOS(config={"name": "steadyflow-bench", "system_database_url": url, "log_level": "WARNING",
                     "run_admin_server": False})
        logging.getLogger("dbos").setLevel(logging.WARNING)
        DBOS.launch()
        global queue
        queue = DBOS.register_queue("bench", polling_interval_sec=0.01)
        try:
            out = measure(args)
        finally:
            DBOS.destroy(destroy_registry=True)
    emit(out)


if __name__ == "__main__":
    main()
