"""Celery with Redis as broker and result backend, a prefork worker of 2 processes (`-c 2`),
on a queue of its own (removed after, with the results).

Rows: 1 (a `group` of N no-op tasks, until its result is complete), 3 (`delay()` one task and
`.get()` its result, 200 times), 5 (N `delay()` calls, until every result is there).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from celery import Celery, group

URL = os.environ.get("BENCH_CELERY_URL", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("BENCH_CELERY_QUEUE", "steadyflow-bench")
app = Celery("celery_peer", broker=URL, backend=URL)
app.conf.update(task_default_queue=QUEUE, result_expires=3600, worker_hijack_root_logger=False,
                broker_connection_retry_on_startup=True)


@app.task(name="bench.noop")
def noop(i):
    return i


def once(m, ids: list[str], i: int) -> None:
    result = m.noop.delay(i)
    ids.append(result.id)
    result.get(timeout=60)


def measure(args) -> dict:
    import celery_peer as m
    from common import round_trips

    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_peer", "worker", "-c", "2", "-P", "prefork", "-Q", m.QUEUE,
         "-l", "WARNING", "--without-heartbeat", "--without-gossip", "--without-mingle"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ids: list[str] = []
    out = {}
    try:
        warm = m.noop.delay(-1)  # warm: the worker is up
        ids.append(warm.id)
        warm.get(timeout=120)
        if 1 in args.rows:
            started = time.perf_counter()
            result = group(m.noop.s(i) for i in range(args.fanout)).apply_async()
            result.get(timeout=900)
            out[1] = {"rate": args.fanout / (time.perf_counter() - started)}
            ids += [r.id for r in result.results]
        if 3 in args.rows:
            out[3] = round_trips(args.roundtrips, lambda i: once(m, ids, i))
        if 5 in args.rows:
            started = time.perf_counter()
            results = [m.noop.delay(i) for i in range(args.tasks)]
            for r in results:
                r.get(timeout=900)
            out[5] = {"rate": args.tasks / (time.perf_counter() - started)}
            ids += [r.id for r in results]
    finally:
        worker.terminate()
        worker.wait(60)
        client = m.app.backend.client
        client.delete(m.QUEUE, f"_kombu.binding.{m.QUEUE}", f"_kombu.binding_permanent.{m.QUEUE}")
        keys = [f"celery-task-meta-{i}" for i in ids]
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start:start + 1000])
    return out


def main() -> None:
    from common import arguments, emit

    args = arguments(__doc__.splitlines()[0])
    emit(measure(args))


if __name__ == "__main__":
    import uuid

    args_url = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--url=")), None)
    os.environ.setdefault("BENCH_CELERY_URL", args_url or URL)
    os.environ.setdefault("BENCH_CELERY_QUEUE", f"steadyflow-bench-{uuid.uuid4().hex[:8]}")
    here = os.path.dirname(os.path.abspath(__file__))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, here)
    main()
