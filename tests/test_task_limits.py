"""Limits on the TaskManager's own queues (SQLite, PostgreSQL): concurrency across consumer
processes, a rate, a per-key concurrency, enforced by the database at receive time; SQS refuses."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from steadyflow.cli import main
from steadyflow.errors import ConfigError
from steadyflow.tasks import LocalQueue, TaskManager
from steadyflow.tasks.limits import QueueLimits
from steadyflow.tasks.sqlite import SQLiteQueue
from tests.fixtures.limited_tasks import most_at_once, spans, spans_db
from tests.fixtures.task_queues import make_url

ROOT = Path(__file__).resolve().parent.parent


def receive(tm: TaskManager, n: int = 10, visibility: float = 30, wait: float = 0) -> list:
    return tm.backend.receive(max_messages=n, wait_time=wait, visibility_timeout=visibility)


def kwargs_of(messages) -> list[dict]:
    import json

    return [json.loads(m.body)["kwargs"] for m in messages]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_concurrency_limit_holds_across_three_consumer_processes(request, tmp_path, backend):
    url = make_url(request, tmp_path, backend)
    db = str(tmp_path / "spans.db")
    spans_db(db)
    tm = TaskManager(url)
    tm.set_limits(concurrency=2)
    tm.send_many("held", [{"db": db, "n": n, "seconds": 0.4} for n in range(10)])
    worker = subprocess.Popen(
        [sys.executable, "-m", "steadyflow", "tasks", "worker", "tests.fixtures.limited_tasks", "--queue", url,
         "--processes", "3", "--wait-time", "1", "--visibility-timeout", "10", "--shutdown-grace", "5"],
        cwd=ROOT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            done = [r for r in spans(db) if r[3] is not None]
            if len(done) >= 10:
                break
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(30)
    rows = spans(db)
    assert sorted(r[0] for r in rows if r[3] is not None) == list(range(10)), rows
    assert len({r[1] for r in rows}) >= 2, "the handlers ran in several processes"
    assert most_at_once(rows) == 2, rows  # never more than the limit, and the limit was reached
    assert int(tm.attributes()["ApproximateNumberOfMessages"]) == 0
    tm.close()


def test_rate_limit_holds_within_ten_percent_over_three_seconds(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}?queue=rated"
    tm = TaskManager(url)
    tm.send_many("t", [{"n": n} for n in range(200)])
    tm.set_limits(rate="10/s")
    times: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + 3.6

    def consume() -> None:
        own = TaskManager(url)  # a consumer of its own, with its own connection
        while time.monotonic() < stop:
            for message in own.backend.receive(max_messages=10, wait_time=0.5, visibility_timeout=30,
                                               stop=lambda: time.monotonic() >= stop):
                with lock:
                    times.append(time.monotonic())
                message.delete()
        own.close()

    threads = [threading.Thread(target=consume) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    first = min(times)
    in_three = [t for t in times if t < first + 3.0]
    assert 27 <= len(in_three) <= 33, len(in_three)
    for start in times:  # no one-second window exceeds the rate by more than the bucket's two tokens
        assert len([t for t in times if start <= t < start + 1.0]) <= 12
    tm.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_per_key_limit_by_argument_or_submit_key(request, tmp_path, backend):
    tm = TaskManager(make_url(request, tmp_path, backend))
    tm.set_limits(per_key=1, key="customer")
    for n, customer in enumerate(["a", "a", "b", "b"]):
        tm.submit("t", n=n, customer=customer)
    tm.submit("t", n=4, limit_key="a")        # no customer argument: the key given at submit
    tm.submit("t", n=5)                       # no key at all: not held back by the per-key limit
    tm.submit("t", n=6, customer=7)           # not a string: its JSON is the key
    first = receive(tm)
    assert [k["n"] for k in kwargs_of(first)] == [0, 2, 5, 6]
    assert receive(tm) == []                  # a and b each have one in flight
    first[0].delete()                         # a's frees its place
    second = receive(tm)
    assert [k["n"] for k in kwargs_of(second)] == [1]
    second[0].delete()
    assert [k["n"] for k in kwargs_of(receive(tm))] == [4]
    # A lapsed claim (its consumer died) frees the key's place too.
    first[1].change_visibility(VisibilityTimeout=0)
    assert [k["n"] for k in kwargs_of(receive(tm))] in ([2], [3])
    tm.close()


def test_concurrency_and_batch_receive_and_lapse(tmp_path):
    tm = TaskManager(f"sqlite:///{tmp_path / 'q.db'}?queue=c")
    tm.send_many("t", [{"n": n} for n in range(6)])
    tm.set_limits(concurrency=2)
    got = receive(tm, visibility=1)
    assert [k["n"] for k in kwargs_of(got)] == [0, 1]
    assert receive(tm) == []
    started = time.monotonic()
    later = receive(tm, wait=5)               # waits until the two claims lapse
    assert [k["n"] for k in kwargs_of(later)] == [0, 1] and time.monotonic() - started < 4
    tm.clear_limits()
    assert len(receive(tm)) == 4 and tm.limits() is None
    tm.close()


def test_limits_from_python_round_trip_and_replace(tmp_path):
    tm = TaskManager(f"sqlite:///{tmp_path / 'q.db'}?queue=jobs")
    assert tm.limits() is None and tm.clear_limits() is False
    set_to = tm.set_limits(concurrency=3, rate="100/m", per_key=1, key="customer_id")
    assert set_to == QueueLimits("jobs", 3, 100, 60.0, 1, "customer_id") == tm.limits()
    tm.set_limits(rate="5/10s")
    assert tm.limits() == QueueLimits("jobs", None, 5, 10.0, None, None)
    other = TaskManager(f"sqlite:///{tmp_path / 'q.db'}?queue=other")
    other.set_limits(concurrency=1)
    assert [x.queue for x in other.backend.all_limits()] == ["jobs", "other"]
    tm.close()
    other.close()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"concurrency": 0}, "concurrency limit must be a whole number of at least 1, not 0"),
    ({"per_key": 0}, "per key limit must be a whole number of at least 1, not 0"),
    ({"rate": "10/fortnight"}, "malformed rate '10/fortnight'"),
    ({"rate": "0/s"}, "count and period must be positive"),
    ({}, "give at least one of concurrency, rate, per_key"),
    ({"concurrency": 1, "key": "customer"}, "give per_key too"),
    ({"per_key": 1, "key": "a b"}, "key must name a task argument"),
])
def test_bad_limits_are_refused_and_nothing_is_set(tmp_path, kwargs, message):
    tm = TaskManager(f"sqlite:///{tmp_path / 'q.db'}?queue=jobs")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("?", r"\?")):
        tm.set_limits(**kwargs)
    assert tm.limits() is None
    tm.close()


def test_sqs_and_local_queues_refuse_limits():
    sqs = TaskManager("https://sqs.us-east-1.amazonaws.com/123456789012/jobs")
    for call in (lambda: sqs.set_limits(concurrency=2), sqs.clear_limits, lambda: sqs.submit("t", limit_key="a")):
        with pytest.raises(ConfigError, match="cannot enforce limits.*use a sqlite:// or postgresql:// queue"):
            call()
    assert sqs.limits() is None
    local = TaskManager("local", queue_constructor=LocalQueue)
    with pytest.raises(ConfigError, match="cannot enforce limits"):
        local.set_limits(rate="1/s")


@pytest.mark.parametrize(("args", "message"), [
    (["--concurrency", "0"], "Error: concurrency limit must be a whole number of at least 1, not 0"),
    (["--rate", "20/fortnight"], "Error: malformed rate '20/fortnight'"),
    (["--per-key", "-1"], "Error: per key limit must be a whole number of at least 1, not -1"),
    (["--key", "customer"], "Error: give at least one of --concurrency, --rate, --per-key"),
])
def test_cli_bad_limits_one_line_exit_2_nothing_created(tmp_path, capsys, args, message):
    path = tmp_path / "q.db"
    assert main(["tasks", "limits", "set", "--queue", f"sqlite:///{path}?queue=jobs", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err
    assert not path.exists()  # not even the queue's file


def test_cli_limits_set_list_clear_and_sqs(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'q.db'}?queue=jobs"
    assert main(["tasks", "limits", "set", "--queue", url, "--concurrency", "2", "--rate", "100/m",
                 "--per-key", "1", "--key", "customer"]) == 0
    assert main(["tasks", "limits", "list", "--queue", url, "--format", "json"]) == 0
    import json

    assert json.loads(capsys.readouterr().out) == [
        {"queue": "jobs", "concurrency": 2, "rate": "100/60s", "per key": 1, "key": "customer"}]
    assert main(["tasks", "submit", "t", "--queue", url, "--limit-key", "acme"]) == 0
    capsys.readouterr()
    assert main(["tasks", "limits", "clear", "--queue", url]) == 0
    assert main(["tasks", "limits", "clear", "--queue", url]) == 2
    assert "has no limits" in capsys.readouterr().err
    assert main(["tasks", "limits", "set", "--queue", "https://sqs.us-east-1.amazonaws.com/1/q",
                 "--concurrency", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot enforce limits" in err and "\n" not in err


def test_version_one_tables_are_upgraded_in_place(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE steadyflow_task_messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL UNIQUE,
            queue TEXT NOT NULL, body TEXT NOT NULL, attributes TEXT NOT NULL DEFAULT '{}',
            priority INTEGER NOT NULL DEFAULT 0, sent_at REAL NOT NULL, visible_at REAL NOT NULL,
            receive_count INTEGER NOT NULL DEFAULT 0, first_received_at REAL, receipt TEXT, source_queue TEXT,
            dead_letter_reason TEXT, dead_lettered_at REAL);
        CREATE TABLE steadyflow_task_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO steadyflow_task_meta VALUES ('schema_version', '1');
        INSERT INTO steadyflow_task_messages (message_id, queue, body, sent_at, visible_at)
            VALUES ('m1', 'jobs', '{"task": "t", "kwargs": {"customer": "a"}}', 0, 0);
    """)
    conn.commit()
    conn.close()
    tm = TaskManager(f"sqlite:///{path}?queue=jobs")
    tm.set_limits(per_key=1, key="customer")
    tm.submit("t", customer="a")
    assert [m.message_id for m in receive(tm)] == ["m1"]
    assert receive(tm) == []
    assert isinstance(tm.backend, SQLiteQueue)
    version = sqlite3.connect(path).execute("SELECT value FROM steadyflow_task_meta").fetchone()[0]
    assert version == "2"
    TaskManager(f"sqlite:///{path}?queue=jobs").close()  # opening it again changes nothing
    tm.close()
