"""Queue-driven scaling (sqstaskmaster's `queue_scale.Provisioner`) on moto_server's SQS and ECS,
and queue depths (visible, in flight, delayed) as Prometheus gauges on every kind of queue."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from steadyflow import metrics
from steadyflow.cli import main
from steadyflow.errors import ConfigError
from steadyflow.tasks import TaskManager
from steadyflow.tasks.depth import QueueDepth, depth_of, publish, queue_label
from steadyflow.tasks.queue_scale import Provisioner, RuleError, ServiceState, load_rules
from tests.fixtures.ecs import ecs_service
from tests.fixtures.moto import moto_server  # noqa: F401 - session fixture
from tests.fixtures.task_queues import make_url

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def aws(moto_server, monkeypatch):  # noqa: F811 - the fixture imported above
    """moto_server, with boto3's ECS client (built without an endpoint, as sqstaskmaster's) sent to it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECS", moto_server.endpoint)
    return moto_server


def rule(queue: str, service, size: int = 3) -> dict:
    return {Provisioner.QUEUE_NAME: queue, Provisioner.SERVICE_NAME: service.name,
            Provisioner.CLUSTER_NAME: service.cluster, Provisioner.ACTIVE_SIZE: size}


def test_provisioner_scales_ecs_service_with_its_sqs_queue(aws):
    queue = aws.queue("scale")
    service = ecs_service(aws, desired=1)
    provisioner = Provisioner([rule(queue, service, size=4)])
    [result] = provisioner.run()
    assert service.desired_count() == 0 and result.desired_count == 0 and result.depth.total == 0

    tm = TaskManager(queue)
    tm.submit("resize", path="a.png")
    provisioner.run()
    assert service.desired_count() == 4

    [message] = tm.backend.receive(max_messages=1, wait_time=1, visibility_timeout=60)  # in flight: still work
    [result] = provisioner.run()
    assert (result.depth.visible, result.depth.in_flight, service.desired_count()) == (0, 1, 4)
    message.delete()
    tm.submit("later", delay=60)                                               # delayed: still work
    [result] = provisioner.run()
    assert (result.depth.delayed, service.desired_count()) == (1, 4)
    tm.purge()
    provisioner.run()
    assert service.desired_count() == 0


def test_provisioner_reads_database_queues_and_publishes_depth(aws, tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}?queue=jobs"
    service = ecs_service(aws)
    TaskManager(url).submit("t")
    registry = metrics.reset()
    Provisioner([rule(url, service, size=2)]).run()
    assert service.desired_count() == 2
    text = registry.exposition().decode()
    assert 'steadyflow_task_queue_depth{queue="jobs",state="visible"} 1.0' in text


def test_service_state_and_failing_rules(aws):
    queue = aws.queue("scale")
    TaskManager(queue).submit("t")
    kept = ecs_service(aws, desired=1)
    good = ecs_service(aws)

    class Deploying(Provisioner):
        def service_state(self, r):
            return ServiceState.STARTING if r[self.SERVICE_NAME] == kept.name else ServiceState.ACTIVE

    notified = []
    missing = dict(rule(queue, good), cluster_name="no-such-cluster")
    results = Deploying([rule(queue, kept), missing, rule(queue, good, size=5)],
                        notify=lambda exc, context: notified.append((exc, context))).run()
    assert kept.desired_count() == 1 and results[0].desired_count is None  # not ACTIVE: left alone
    assert results[1].error is not None and notified and notified[0][1]["cluster_name"] == "no-such-cluster"
    assert good.desired_count() == 5  # the failing rule did not stop the next
    provisioner = Provisioner([rule(queue, good)])
    assert provisioner.get_description(dict(rule(queue, good), service_name="no-such-service")) == {}
    assert provisioner.get_description(rule(queue, good))["desiredCount"] == 5


@pytest.mark.parametrize(("rules", "error", "message"), [
    ("not a list", TypeError, "Rules must be an iterable of dictionaries"),
    ([["queue"]], TypeError, "rule 1: each rule must be a dictionary"),
    ([{"queue_name": "q", "service_name": "s", "cluster_name": "c"}], KeyError,
     "rule 1: rules must specify the active_size"),
    ([{"queue_name": "q", "service_name": "s", "cluster_name": "c", "active_size": -1}], ValueError,
     "active_size must be a whole number of at least 0, not -1"),
    ([{"queue_name": "q", "service_name": "s", "cluster_name": "c", "active_size": "3"}], ValueError,
     "not '3'"),
    ([{"queue_name": "", "service_name": "s", "cluster_name": "c", "active_size": 1}], ValueError,
     "queue_name must be a non-empty string"),
    ([{"queue_name": "q", "service_name": "s", "cluster_name": "c", "active_size": 1, "size": 2}], KeyError,
     "unknown key"),
])
def test_bad_rules_are_clear_errors_of_sqstaskmasters_types(rules, error, message):
    with pytest.raises(RuleError) as raised:
        Provisioner(rules)
    assert isinstance(raised.value, error) and isinstance(raised.value, ConfigError)
    assert str(raised.value).startswith(message) or message in str(raised.value)


def test_rules_from_json_file_or_text(tmp_path):
    one = {"queue_name": "q", "service_name": "s", "cluster_name": "c", "active_size": 2}
    path = tmp_path / "rules.json"
    path.write_text(json.dumps([one]))
    assert load_rules(str(path)) == [one] == load_rules(json.dumps(one))
    with pytest.raises(RuleError, match="not valid JSON"):
        load_rules("[{")
    with pytest.raises(RuleError, match="not JSON and not a file"):
        load_rules(str(tmp_path / "missing.json"))


def test_cli_scale_once_and_bad_rules(aws, tmp_path, capsys):
    queue = aws.queue("scale")
    TaskManager(queue).submit("t")
    service = ecs_service(aws)
    path = tmp_path / "rules.json"
    path.write_text(json.dumps([rule(queue, service, size=2)]))
    assert main(["tasks", "scale", "--rules", str(path), "--format", "json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["work"], row["desired count"], service.desired_count()) == (1, 2, 2)
    bad = json.dumps([{"queue_name": queue, "service_name": "s", "cluster_name": "c"}])
    assert main(["tasks", "scale", "--rules", bad]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "Error: rule 1: rules must specify the active_size"
    failing = json.dumps([dict(rule(queue, service), cluster_name="nope")])
    assert main(["tasks", "scale", "--rules", failing, "--format", "json"]) == 1
    assert "ClusterNotFound" in json.loads(capsys.readouterr().out)[0]["error"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_depths_of_database_queues(request, tmp_path, backend, capsys):
    url = make_url(request, tmp_path, backend, max_receives=1)
    tm = TaskManager(url)
    tm.send_many("t", [{"n": n} for n in range(4)])
    tm.submit("t", n=9, delay=60)
    received = tm.backend.receive(max_messages=2, wait_time=0, visibility_timeout=60)
    assert len(received) == 2
    tm.reject(received[1], ValueError("bad"))  # dead letters are not the queue's work
    depth = depth_of(tm)
    assert depth == QueueDepth(queue_label(url), visible=2, in_flight=1, delayed=1) and depth.total == 4
    registry = metrics.reset()
    publish(depth)
    text = registry.exposition().decode()
    for state, count in (("visible", 2), ("in_flight", 1), ("delayed", 1)):
        assert f'steadyflow_task_queue_depth{{queue="{depth.queue}",state="{state}"}} {count}.0' in text
    assert main(["tasks", "depth", "--queue", url, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"queue": depth.queue, "visible": 2, "in flight": 1, "delayed": 1, "total": 4}]
    tm.close()


def test_depth_of_sqs_queue_and_labels(aws):
    queue = aws.queue("depth")
    tm = TaskManager(queue)
    tm.send_many("t", [{"n": n} for n in range(3)])
    tm.submit("t", delay=30)
    tm.backend.receive(max_messages=1, wait_time=1, visibility_timeout=60)
    depth = depth_of(tm)
    assert (depth.visible, depth.in_flight, depth.delayed) == (2, 1, 1)
    assert depth.queue == queue.rsplit("/", 1)[1]
    assert queue_label("postgresql://u:secret@h/db?schema=s&queue=jobs") == "jobs"
    assert queue_label("sqlite:///x.db") == "default"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_tasks_worker_serves_depth_gauge(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}?queue=served"
    tm = TaskManager(url)
    tm.submit("held", db="unused", n=1, delay=600)
    port = _free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "steadyflow", "tasks", "worker", "tests.fixtures.limited_tasks", "--queue", url,
         "--wait-time", "1", "--metrics-port", str(port), "--depth-interval", "0.2"],
        cwd=ROOT, stdin=subprocess.DEVNULL)
    try:
        deadline, text = time.monotonic() + 30, ""
        while time.monotonic() < deadline:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                text = ""
            if 'steadyflow_task_queue_depth{queue="served",state="delayed"} 1.0' in text:
                break
            time.sleep(0.2)
        assert 'steadyflow_task_queue_depth{queue="served",state="delayed"} 1.0' in text, text[-2000:]
    finally:
        worker.terminate()
        worker.wait(30)
    tm.close()
