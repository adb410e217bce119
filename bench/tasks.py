"""Task-queue throughput: submit -> handle -> delete, 2 consumer processes, steadyflow vs Huey.

    python3 bench/tasks.py [--tasks 2000] [--postgres URL] [--no-sqs] [--no-huey]

For each steadyflow queue (a SQLite file, a fresh PostgreSQL schema, SQS on a local moto_server)
it starts `steadyflow tasks worker bench.tasks --processes 2`, lets it handle one task, then
submits the tasks and times until the queue is empty; every task is a no-op run in the consumer's
long-lived task process (the default; `--max-tasks-per-child 1` forks one per task). The same workload then runs on Huey with its SQLite storage and a
2-process consumer (`bench/peers/huey_peer.py`, in the benchmark's own virtualenv: see
`bench/peers.sh`). Row 5 of the suite (`python3 -m bench`) is this measure. moto_server's SQS operations cost time proportional
to the queue's length, so on SQS the producer keeps at most 60 messages queued (noted in the
table). Prints one markdown table. Not a test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from steadyflow.tasks import task  # noqa: E402

PEERS_VENV = Path(tempfile.gettempdir()) / "steadyflow-bench-peers"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@task(name="bench-noop", sqs_timeout=30, alarm_timeout=10)
def noop(n: int) -> int:
    return n


def _worker(url: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    batch = "10" if url.startswith("http") else "1"
    return subprocess.Popen(
        [sys.executable, "-m", "steadyflow", "tasks", "worker", "bench.tasks", "--queue", url, "--processes", "2",
         "--wait-time", "1", "--batch-size", batch], cwd=ROOT, env=env, stdin=subprocess.DEVNULL)


def _outstanding(tm) -> int:
    attributes = tm.attributes()
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def run_steadyflow(url: str, count: int, window: int | None, warm: bool = False) -> float:
    """Seconds from the first submit until the queue is empty again. `warm`: the worker is started
    and has handled one task before the clock starts (steady state, as the suite measures peers);
    otherwise its start-up is part of the time."""
    from steadyflow.tasks import TaskManager

    tm = TaskManager(url)
    tm.purge()
    worker = _worker(url) if warm else None
    if worker is not None:
        tm.send_many("bench-noop", [{"n": -1}])
        while _outstanding(tm):
            if worker.poll() is not None:
                raise SystemExit(f"worker exited with {worker.returncode}")
            time.sleep(0.01)
    started = time.perf_counter()
    submitted = 0
    if window is None:
        tm.send_many("bench-noop", [{"n": n} for n in range(count)])
        submitted = count
    worker = worker or _worker(url)
    try:
        while True:
            left = _outstanding(tm)
            if submitted < count and left < window:
                batch = min(count - submitted, window - left)
                tm.send_many("bench-noop", [{"n": n} for n in range(submitted, submitted + batch)])
                submitted += batch
            elif submitted == count and left == 0:
                return time.perf_counter() - started
            if worker.poll() is not None:
                raise SystemExit(f"worker exited with {worker.returncode}")
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        tm.close()


def run_huey(count: int) -> tuple[float, str]:
    """Seconds for `count` tasks on Huey's SQLite storage, run by `bench/peers/huey_peer.py` in the
    benchmark's own virtualenv (created by `bench/peers.sh` when missing); and Huey's version."""
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run(["sh", str(ROOT / "bench" / "peers.sh"), str(PEERS_VENV)], check=True)
    version = subprocess.run([str(python), "-c", "import huey; print(huey.__version__)"], capture_output=True,
                             text=True, check=True).stdout.strip()
    peers = ROOT / "bench" / "peers"
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([str(python), str(peers / "huey_peer.py"), "--rows", "5", "--tasks", str(count)],
                             cwd=tmp, env={**os.environ, "PYTHONPATH": str(peers)}, capture_output=True, text=True,
                             check=True).stdout
    rate = json.loads(out.strip().splitlines()[-1])["5"]["rate"]
    return count / rate, version


def start_moto() -> tuple[subprocess.Popen, str] | None:
    command = shutil.which("moto_server")
    if command is None:
        return None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([command, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    for _ in range(300):
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
            os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                              AWS_ENDPOINT_URL_SQS=endpoint)
            return proc, endpoint
        except OSError:
            time.sleep(0.1)
    proc.kill()
    return None


def _row(name: str, count: int, seconds: float, note: str = "") -> str:
    return f"| {name} | {count} | {seconds:.1f} | {count / seconds:.0f} | {note} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--postgres", default=os.environ.get("STEADYFLOW_TEST_POSTGRES_URL", DEFAULT_POSTGRES))
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqs", action="store_true")
    parser.add_argument("--no-huey", action="store_true")
    args = parser.parse_args()
    count = args.tasks
    print(f"steadyflow.tasks, {count} no-op tasks, 2 consumer processes, submit -> handle -> delete\n")
    print("| queue | tasks | seconds | tasks/s | note |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        seconds = run_steadyflow(f"sqlite:///{tmp}/bench.db?queue=bench", count, None, warm=True)
        print(_row("steadyflow SQLite", count, seconds, "a reused task process per consumer"), flush=True)
    if not args.no_postgres:
        schema = f"sf_bench_{uuid.uuid4().hex[:8]}"
        url = f"{args.postgres}{'&' if '?' in args.postgres else '?'}schema={schema}&queue=bench"
        try:
            seconds = run_steadyflow(url, count, None, warm=True)
            print(_row("steadyflow PostgreSQL", count, seconds, "a reused task process per consumer"), flush=True)
        except Exception as exc:  # noqa: BLE001 - a missing server skips the row
            print(f"| steadyflow PostgreSQL | {count} | | | skipped: {' '.join(str(exc).split())[:80]} |")
        finally:
            try:
                import psycopg

                with psycopg.connect(args.postgres, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            except Exception:  # noqa: BLE001
                pass
    if not args.no_sqs:
        moto = start_moto()
        if moto is None:
            print(f"| steadyflow SQS (moto_server) | {count} | | | skipped: moto_server not installed |")
        else:
            try:
                import boto3

                url = boto3.client("sqs").create_queue(QueueName="bench")["QueueUrl"]
                seconds = run_steadyflow(url, count, 60, warm=True)
                print(_row("steadyflow SQS (moto_server)", count, seconds, "batch receive 10, ≤ 60 queued"), flush=True)
            finally:
                moto[0].terminate()
                moto[0].wait()
    if not args.no_huey:
        seconds, version = run_huey(count)
        print(_row(f"Huey {version} SqliteHuey", count, seconds, "`-k process -w 2 -d 0.01`, results stored"),
              flush=True)


if __name__ == "__main__":
    main()
