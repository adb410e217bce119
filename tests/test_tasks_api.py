"""The sqstaskmaster-compatible API: wire format, validation, options, @task, CLI, one-line errors."""

from __future__ import annotations

import datetime
import json
import time
import uuid

import pytest

from steadyflow.cli import main
from steadyflow.errors import ConfigError
from steadyflow.tasks import LocalQueue, MessageHandler, ReceiptExpired, TaskManager, task
from steadyflow.tasks.body import decode, encode
from steadyflow.tasks.errors import BadMessage, TaskQueueError
from tests.fixtures.moto import moto_server  # noqa: F401 - session fixture


@pytest.fixture
def moto(request):
    return request.getfixturevalue("moto_server")


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'q.db'}?queue=jobs"


class Echo(MessageHandler):
    def run(self):
        return self.kwargs


def test_body_is_byte_for_byte_sqstaskmasters():
    kwargs = {
        "a": 1, "name": "é-ünïcode", "tags": ["x", "y"], "nested": {"k": [1, 2.5, None, True]},
        "when": datetime.datetime(2024, 1, 2, 3, 4, 5, 678901), "ident": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    }
    assert encode("resize_image", kwargs) == (
        '{"task": "resize_image", "kwargs": {"a": 1, "name": "\\u00e9-\\u00fcn\\u00efcode", "tags": ["x", "y"], '
        '"nested": {"k": [1, 2.5, null, true]}, "when": "2024-01-02 03:04:05.678901", '
        '"ident": "12345678-1234-5678-1234-567812345678"}}'
    )
    assert decode('{"task": "t", "extra": 1}') == ("t", {})
    with pytest.raises(BadMessage, match="not valid JSON"):
        decode("{")


def test_sqs_message_on_the_wire_is_sqstaskmasters(moto):
    import boto3

    url = moto.queue("wire")
    message_id = TaskManager(url).submit("resize_image", a=1)
    TaskManager(url, sender_name="interop-harness").submit("x")
    raw = boto3.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                              WaitTimeSeconds=1)["Messages"]
    assert raw[0]["MessageId"] == message_id == message_id["MessageId"]
    assert raw[0]["Body"] == '{"task": "resize_image", "kwargs": {"a": 1}}'
    assert raw[0]["MessageAttributes"]["service_name"] == {"StringValue": f"Unknown sender to: {url}", "DataType": "String"}
    assert raw[1]["MessageAttributes"]["service_name"]["StringValue"] == "interop-harness"


def test_sqs_limits_are_one_line_config_errors(moto):
    tm = TaskManager(moto.queue())
    with pytest.raises(ConfigError, match="at most 900"):
        tm.submit("t", delay=901)
    with pytest.raises(ConfigError, match="no priorities"):
        tm.submit("t", priority=5)
    tm.submit("t", delay=2)
    assert tm.backend.receive(max_messages=1, wait_time=0, visibility_timeout=5) == []


def test_validation_matches_sqstaskmaster(sqlite_url):
    tm = TaskManager(sqlite_url)
    with pytest.raises(ValueError, match="between 0 and 20"):
        next(tm.task_generator(wait_time=21))
    with pytest.raises(ValueError, match="between 0 and 12 hours"):
        next(tm.task_generator(sqs_timeout=43201))
    with pytest.raises(ValueError, match="Alarm timeout 12 is to long to reset the sqs timeout 13"):
        Echo(None, sqs_timeout=13, alarm_timeout=12, hard_timeout=17)
    for kwargs in ({"sqs_timeout": 0, "alarm_timeout": 1}, {"sqs_timeout": 5, "alarm_timeout": 0}):
        with pytest.raises(ValueError, match="greater than zero"):
            Echo(None, hard_timeout=1, **kwargs)
    with pytest.raises(ValueError, match="Hard timeout"):
        Echo(None, sqs_timeout=5, alarm_timeout=1, hard_timeout=0)
    with pytest.raises(TypeError, match="invalid queue_constructor"):
        TaskManager(sqlite_url, queue_constructor=dict)


def test_bad_urls_are_one_line_errors(capsys):
    assert main(["tasks", "stats", "--queue", "ftp://example/q"]) == 2
    assert "unsupported task queue URL" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="max_receives"):
        TaskManager("sqlite:///q.db?max_receives=zero")
    with pytest.raises(TaskQueueError) as info:
        TaskManager("postgresql://user:sekret@127.0.0.1:1/db?queue=x&connect_timeout=2")
    assert "sekret" not in str(info.value) and "***" in str(info.value) and "\n" not in str(info.value)


def test_priority_and_delay_on_sql_queues(sqlite_url):
    tm = TaskManager(sqlite_url)
    tm.submit("low", n=1)
    tm.submit("high", n=2, priority=10)
    tm.submit("later", n=3, delay=1.5)
    received = [task for task, _, _ in _take(tm, 2)]
    assert received == ["high", "low"]
    assert tm.attributes()["ApproximateNumberOfMessagesDelayed"] == "1"
    time.sleep(1.6)
    assert [task for task, _, _ in _take(tm, 1)] == ["later"]
    with pytest.raises(ConfigError, match="at least 0"):
        tm.submit("t", delay=-1)
    assert tm.send("t", {"delay": 1, "priority": 2}) and _take(tm, 1)[0][1] == {"delay": 1, "priority": 2}


def _take(tm, count, sqs_timeout=30):
    out = []
    for item in tm.task_generator(wait_time=1, sqs_timeout=sqs_timeout):
        out.append(item)
        if len(out) == count:
            return out
    return out


def test_lapsed_receipt_cannot_delete_or_extend_the_redelivered_message(sqlite_url):
    tm = TaskManager(sqlite_url)
    tm.submit("t")
    (_, _, first), = _take(tm, 1, sqs_timeout=1)
    time.sleep(1.1)
    (_, _, second), = _take(TaskManager(sqlite_url), 1, sqs_timeout=30)
    assert second.attributes["ApproximateReceiveCount"] == "2"
    with pytest.raises(ReceiptExpired):
        first.change_visibility(VisibilityTimeout=30)
    first.delete()  # a no-op, as on SQS
    assert tm.attributes()["ApproximateNumberOfMessagesNotVisible"] == "1"
    second.delete()
    assert tm.attributes()["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_handler_returns_runs_value_and_runs_in_process_outside_with(sqlite_url):
    tm = TaskManager(sqlite_url)
    tm.submit("echo", a=1)
    (_, kwargs, message), = _take(tm, 1)
    handler = Echo(message, sqs_timeout=10, alarm_timeout=2, **kwargs)
    assert handler.run() == {"a": 1}  # plain call
    with handler:
        assert handler.run() == {"a": 1}  # in a child process, pickled back
    assert tm.attributes()["ApproximateNumberOfMessagesNotVisible"] == "0"


class Chain(MessageHandler):
    def run(self):
        TaskManager(self.kwargs["url"], queue_constructor=LocalQueue).submit("second", n=2)


def test_local_queue_sends_from_run_reach_the_consumer_process():
    url = f"local-chain-{uuid.uuid4().hex}"
    tm = TaskManager(url, queue_constructor=LocalQueue)
    tm.submit("first", url=url)
    (_, kwargs, message), = _take(tm, 1)
    with Chain(message, sqs_timeout=10, alarm_timeout=2, **kwargs) as handler:
        handler.run()
    assert _take(tm, 1)[0][:2] == ("second", {"n": 2})


def test_task_decorator(monkeypatch, sqlite_url):
    @task(name="api-add", max_receives=2)
    def add(a, b):
        return a + b

    assert add(1, 2) == 3
    monkeypatch.delenv("STEADYFLOW_TASKS_URL", raising=False)
    with pytest.raises(ConfigError, match="has no queue"):
        add.submit(a=1, b=2)
    monkeypatch.setenv("STEADYFLOW_TASKS_URL", sqlite_url)
    add.submit(a=1, b=2)
    with pytest.raises(TypeError, match="bad arguments"):
        add.submit(a=1, c=2)
    assert _take(TaskManager(sqlite_url), 1)[0][:2] == ("api-add", {"a": 1, "b": 2})
    with pytest.raises(ConfigError, match="already registered"):
        task(name="api-add")(lambda: None)
    with pytest.raises(ConfigError, match="is to long"):
        task(name="api-bad", sqs_timeout=2, alarm_timeout=5)(lambda: None)


def test_cli_submit_stats_and_dead_letters(sqlite_url, capsys):
    assert main(["tasks", "submit", "record", "--queue", sqlite_url, "--kwargs", '{"n": 1}']) == 0
    message_id = capsys.readouterr().out.strip()
    tm = TaskManager(sqlite_url)
    (_, _, message), = _take(tm, 1)
    tm.reject(message, BadMessage("for the test"))
    assert main(["tasks", "stats", "--queue", sqlite_url, "--format", "json"]) == 0
    stats = {row["attribute"]: row["value"] for row in json.loads(capsys.readouterr().out)}
    assert stats["DeadLetterMessages"] == "1"
    assert main(["tasks", "dead-letters", "--queue", sqlite_url, "list"]) == 0
    out = capsys.readouterr().out
    assert message_id in out and "for the test" in out
    assert main(["tasks", "dead-letters", "--queue", sqlite_url, "retry", "--id", message_id]) == 0
    assert "Retried 1" in capsys.readouterr().out
    # An id that is not a dead letter retries nothing, and the exit status says so.
    assert main(["tasks", "dead-letters", "--queue", sqlite_url, "retry", "--id", "no-such-id"]) == 1
    assert "Retried 0" in capsys.readouterr().out
    (_, _, message), = _take(tm, 1)
    tm.reject(message, BadMessage("again"))
    assert main(["tasks", "dead-letters", "--queue", sqlite_url, "purge", "--yes"]) == 0
    assert "Purged 1" in capsys.readouterr().out
    assert main(["tasks", "dead-letters", "--queue", sqlite_url, "list"]) == 0
    assert "No dead letters." in capsys.readouterr().out
    assert main(["tasks", "dead-letters", "--queue", sqlite_url, "configure", "--max-receives", "3"]) == 2
    assert "max_receives=3" in capsys.readouterr().err
    assert main(["tasks", "worker", "no_such_module_xyz", "--queue", sqlite_url]) == 2
    assert "cannot import task module 'no_such_module_xyz'" in capsys.readouterr().err
