"""sqstaskmaster's README usage block runs with only its import lines changed: with LocalQueue in
one process, and with a real queue (SQLite, then SQS on moto_server) in separate processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from examples.sqstaskmaster import readme
from steadyflow.tasks import LocalQueue, TaskManager
from tests.fixtures.moto import moto_server  # noqa: F401 - session fixture

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = ["MyOtherTask some=other", "MyTask some=kwarg someother=kwarg", "unexpected MyUnexpectedTask"]


def test_readme_imports_differ_from_sqstaskmaster_only_by_package_name():
    source = (ROOT / "examples" / "sqstaskmaster" / "readme.py").read_text()
    for line in source.splitlines():
        if line.startswith("# was: "):
            old = line.removeprefix("# was: ")
            assert old.replace("sqstaskmaster", "steadyflow.tasks") in source


def test_readme_usage_with_local_queue(tmp_path, monkeypatch):
    results = tmp_path / "results.txt"
    monkeypatch.setenv("EXAMPLE_RESULTS", str(results))
    url = f"local-{tmp_path.name}"
    readme.publish(url, queue_constructor=LocalQueue)
    readme.consume(url, queue_constructor=LocalQueue, limit=3)
    assert sorted(results.read_text().splitlines()) == EXPECTED
    assert TaskManager(url, queue_constructor=LocalQueue).attributes()["ApproximateNumberOfMessages"] == 0


@pytest.mark.parametrize("backend", ["sqlite", "sqs"])
def test_readme_usage_with_a_real_queue_in_separate_processes(request, tmp_path, backend):
    results = tmp_path / "results.txt"
    url = (f"sqlite:///{tmp_path / 'jobs.db'}?queue=jobs" if backend == "sqlite"
           else request.getfixturevalue("moto_server").queue("readme"))
    env = {**os.environ, "EXAMPLE_RESULTS": str(results)}
    command = [sys.executable, "-m", "examples.sqstaskmaster.readme"]
    subprocess.run([*command, "publish", url], cwd=ROOT, env=env, check=True, timeout=60)
    consumer = subprocess.Popen([*command, "consume", url], cwd=ROOT, env=env, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (results.exists() and len(results.read_text().splitlines()) >= 3):
            assert consumer.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        consumer.send_signal(signal.SIGINT)
        try:
            consumer.wait(20)
        except subprocess.TimeoutExpired:
            consumer.kill()
    assert sorted(results.read_text().splitlines()) == EXPECTED
    attributes = TaskManager(url).attributes()
    # The handled tasks were deleted; the unexpected one was left alone, as the README's loop does.
    assert int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"]) == 1
