"""MessageHandler on real queues: hard timeouts that hold, visibility kept while running, poison
messages and bad input dead-lettered, on SQLite, PostgreSQL and SQS (moto_server)."""

from __future__ import annotations

import json
import multiprocessing
import time

import pytest

from steadyflow.tasks import TaskManager
from steadyflow.tasks.worker import Consumer, WorkerOptions
from tests.fixtures.moto import moto_server  # noqa: F401 - session fixture
from tests.fixtures.task_handlers import BacktrackHandler, HungHandler, SlowHandler, handled, record_db
from tests.fixtures.task_queues import BACKENDS, make_url

FORK = multiprocessing.get_context("fork")


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "handled.db")
    record_db(path).close()
    return path


def receive_one(tm: TaskManager, sqs_timeout: float, wait: float = 5):
    for task, kwargs, message in tm.task_generator(wait_time=min(wait, 20), sqs_timeout=sqs_timeout):
        return task, kwargs, message


def wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_task_stuck_in_c_code_is_killed_at_hard_timeout_and_its_message_comes_back(request, tmp_path, backend, db):
    url = make_url(request, tmp_path, backend)
    tm = TaskManager(url)
    tm.submit("backtrack", db=db, n=1)
    task, kwargs, message = receive_one(tm, sqs_timeout=3)
    started = time.monotonic()
    with BacktrackHandler(message, sqs_timeout=3, alarm_timeout=1, hard_timeout=2, **kwargs) as handler:
        handler.run()  # TimeoutError is raised, notified, logged and suppressed by __exit__
    elapsed = time.monotonic() - started
    assert 1.5 < elapsed < 30, elapsed
    assert handled(db, "backtrack-start") == [1] and handled(db, "backtrack-end") == []
    again = receive_one(TaskManager(url), sqs_timeout=5, wait=15)
    assert again is not None and again[1] == {"db": db, "n": 1}
    assert int(again[2].attributes["ApproximateReceiveCount"]) == 2


def _slow_consumer(url: str, seconds: float) -> None:
    tm = TaskManager(url)
    for _task, kwargs, message in tm.task_generator(wait_time=5, sqs_timeout=2):
        with SlowHandler(message, sqs_timeout=2, alarm_timeout=0.5, hard_timeout=60, **kwargs) as handler:
            handler.run()
        return


def test_task_running_longer_than_sqs_timeout_is_not_redelivered_while_running(request, tmp_path, backend, db):
    url = make_url(request, tmp_path, backend)
    TaskManager(url).submit("slow", db=db, n=7, seconds=4.5)
    first = FORK.Process(target=_slow_consumer, args=(url, 4.5))
    first.start()
    try:
        wait_for(lambda: handled(db, "slow-start") == [7], 20, "the first consumer to start the task")
        # A second consumer polls all along the first's run, three sqs_timeouts long.
        second = TaskManager(url)
        seen = []
        while not handled(db, "slow-end"):
            seen.extend(second.backend.receive(max_messages=1, wait_time=1, visibility_timeout=2))
        assert seen == []
        first.join(20)
        assert first.exitcode == 0
    finally:
        if first.is_alive():
            first.kill()
    assert handled(db, "slow-start") == [7] and handled(db, "slow-end") == [7]
    assert second.backend.receive(max_messages=1, wait_time=3, visibility_timeout=2) == []  # deleted


def test_hung_task_is_interrupted_inside_run_so_it_can_clean_up(tmp_path, db):
    tm = TaskManager(f"sqlite:///{tmp_path / 'q.db'}?queue=hung")
    tm.submit("hung", db=db, n=3)
    _task, kwargs, message = receive_one(tm, sqs_timeout=3)
    with HungHandler(message, sqs_timeout=3, alarm_timeout=0.5, hard_timeout=60, **kwargs) as handler:
        handler.run()
    assert handled(db, "hung-cleanup") == [3]  # SIGTERM raised in run(), its finally ran


def _worker(url: str, seconds: float) -> None:
    consumer = Consumer(WorkerOptions(url=url, wait_time=1, visibility_timeout=2))
    deadline = time.monotonic() + seconds
    for name, kwargs, message in consumer.manager.messages(1, 2, stop=lambda: time.monotonic() > deadline):
        consumer.handle(name, kwargs, message)


def _configure_sqs_redrive(url: str, max_receives: int) -> None:
    from steadyflow.tasks.sqs import configure_dead_letters

    configure_dead_letters(url, max_receives)


@pytest.mark.parametrize("where", ["task option", "queue"])
def test_poison_message_lands_in_dead_letter_queue_after_configured_receives(request, tmp_path, backend, db, where):
    if where == "queue":
        if backend == "sqs":
            url = make_url(request, tmp_path, backend)
            _configure_sqs_redrive(url, 2)
        else:
            url = make_url(request, tmp_path, backend, max_receives=2)
        TaskManager(url).submit("poison-free", db=db, n=5)  # a task without its own max_receives
        limit = 2
    else:
        url = make_url(request, tmp_path, backend)
        TaskManager(url).submit("poison", db=db, n=5)  # @task(max_receives=3)
        limit = 3
    tm = TaskManager(url)
    deadline = time.monotonic() + 60
    while not tm.dead_letters():
        assert time.monotonic() < deadline, f"not dead-lettered; handled {handled(db)}"
        _worker(url, 1.5)
    assert handled(db, "poison") == [5] * limit
    (dead,) = tm.dead_letters()
    assert json.loads(dead.body) == {"task": dead.body and json.loads(dead.body)["task"], "kwargs": {"db": db, "n": 5}}
    assert "max_receives" in dead.reason or "redrive" in dead.reason
    assert tm.retry_dead_letters() == 1
    assert tm.dead_letters() == []
    again = receive_one(tm, sqs_timeout=5)
    assert again[1] == {"db": db, "n": 5}


@pytest.mark.parametrize(
    "body, reason",
    [
        ("this is not json", "not valid JSON"),
        ('{"kwargs": {}}', 'no "task" name'),
        ('["task", "x"]', "not an object"),
        ('{"task": "record", "kwargs": [1]}', '"kwargs" must be an object'),
        ('{"task": "no-such-task", "kwargs": {}}', "unknown task 'no-such-task'"),
        ('{"task": "record", "kwargs": {"nope": 1}}', "bad arguments for task 'record'"),
    ],
)
def test_bad_input_goes_to_dead_letter_queue_with_reason_and_consumer_keeps_going(request, tmp_path, backend, db, body, reason):
    url = make_url(request, tmp_path, backend)
    tm = TaskManager(url)
    tm.backend.send(body, {})
    tm.submit("record", db=db, n=9)
    consumer = Consumer(WorkerOptions(url=url, wait_time=1, visibility_timeout=5))
    deadline = time.monotonic() + 20
    for name, kwargs, message in consumer.manager.messages(1, 5, stop=lambda: bool(handled(db)) or time.monotonic() > deadline):
        consumer.handle(name, kwargs, message)
    assert handled(db) == [9]
    (dead,) = tm.dead_letters()
    assert dead.body == body
    assert reason in dead.reason
