"""The `steadyflow` command as a user runs it: real processes, a SQLite file in a temp directory."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def sf(*args: str, cwd: Path, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    full_env.pop("STEADYFLOW_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "steadyflow", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env=full_env,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, text: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: ") and text in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


def test_local_quickstart_prints_result(tmp_path):
    proc = sf("workflow", "start", "--local", "examples.basic.BasicWorkflow", "--input", "[1, 0]", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["(1 + 1) * 2 = 4", "4"]
    assert not (tmp_path / "steadyflow.db").exists()  # --local persists nothing


def test_standalone_quickstart_then_inspect_it(tmp_path):
    proc = sf("standalone", "examples.basic.BasicWorkflow", "--input", "[1, 1]", "--workflow-id", "qs-1",
              "--processes", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["(1 + 1) * 2 = 4", "4"]
    assert (tmp_path / "steadyflow.db").exists()

    listing = sf("workflow.list", "--format", "json", cwd=tmp_path)
    rows = json.loads(listing.stdout)
    assert [r["Workflow ID"] for r in rows] == ["qs-1"] and "completed" in rows[0]["Status"]

    hist = json.loads(sf("workflow", "history", "qs-1", "--format", "json", cwd=tmp_path).stdout)
    types = [e["eventType"] for e in hist]
    assert types[0] == "WorkflowExecutionStarted" and types[-1] == "WorkflowExecutionCompleted"
    assert [e["eventId"] for e in hist] == list(range(1, len(hist) + 1))
    assert types.count("ActivityTaskCompleted") == 3

    info = json.loads(sf("workflow", "info", "qs-1", "--format", "json", cwd=tmp_path).stdout)
    assert info["status"] == "completed" and info["result"] == "4" and info["workflow_type.name"] == "basic"

    tasks = sf("workflow", "tasks", "qs-1", "--format", "json", cwd=tmp_path)
    assert {r["Tasks"] for r in json.loads(tasks.stdout)} == {
        "activity-examples.basic.increment-1", "activity-examples.basic.delay-1", "activity-examples.basic.double-1"
    }
    result = sf("workflow", "result", "qs-1", cwd=tmp_path)
    assert result.stdout.strip() == "4"
    table = sf("workflow", "history", "qs-1", cwd=tmp_path)
    assert table.returncode == 0 and "WorkflowExecutionCompleted" in table.stdout


def test_standalone_failing_workflow_exits_1_with_reason(tmp_path):
    proc = sf("standalone", "tests.fixtures.workflows.Uncaught", "--processes", "1", cwd=tmp_path)
    assert proc.returncode == 1
    assert 'ValueError: nobody catches me' in proc.stderr
    assert "Traceback" not in proc.stderr


def test_workflow_start_prints_ids_and_refuses_a_running_id(tmp_path):
    first = sf("workflow", "start", "tests.fixtures.workflows.Sequential", "-i", "[1]", "--workflow-id", "dup",
               cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    wid, rid = first.stdout.split()
    assert wid == "dup" and len(rid) == 32
    second = sf("workflow", "start", "tests.fixtures.workflows.Sequential", "-i", "[1]", "--workflow-id", "dup",
                cwd=tmp_path)
    assert_one_line_error(second, "'dup' is already running")
    pending = sf("workflow", "result", "dup", cwd=tmp_path)
    assert pending.returncode == 1 and "still running" in pending.stderr


def test_decider_and_worker_commands_run_a_started_workflow(tmp_path):
    started = sf("workflow.start", "tests.fixtures.workflows.Sequential", "-i", '{"args": [3], "kwargs": {"start": 1}}',
                 "--task-list", "dw", "--workflow-id", "dw-1", cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("STEADYFLOW_URL", None)
    procs = [
        subprocess.Popen([sys.executable, "-m", "steadyflow", "decider.start", "--task-list", "dw",
                          "tests.fixtures.workflows.Sequential"], cwd=tmp_path, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-m", "steadyflow", "worker", "start", "--task-list", "dw",
                          "--processes", "1"], cwd=tmp_path, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    try:
        result = sf("workflow", "result", "dw-1", "--wait", "--timeout", "60", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "4"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            assert p.wait(timeout=30) == 0


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["workflow", "start", "examples.basic.BasicWorkflow", "--input", "[1,"], "--input is not valid JSON", 2),
        (["workflow", "start", "nosuchmodule.Flow"], "cannot import module 'nosuchmodule'", 2),
        (["workflow", "start", "examples.basic.NoSuchClass"], "has no attribute 'NoSuchClass'", 2),
        (["workflow", "start", "examples.basic.increment"], "is not a Workflow subclass", 2),
        (["standalone", "examples.basic.BasicWorkflow", "--processes", "-1"], "--processes must be >= 0", 2),
        (["workflow", "info", "no-such-id"], "no execution with workflow id 'no-such-id'", 1),
        (["--engine", "bogus://x", "workflow", "list"], "unknown engine URL scheme", 2),
    ],
)
def test_bad_input_gives_one_line_error(tmp_path, args, message, code):
    proc = sf(*args, cwd=tmp_path)
    assert_one_line_error(proc, message)
    assert proc.returncode == code


def test_debug_flag_shows_the_traceback(tmp_path):
    proc = sf("--debug", "workflow", "start", "examples.basic.BasicWorkflow", "--input", "[1,", cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_corrupt_database_file_gives_one_line_error(tmp_path):
    (tmp_path / "steadyflow.db").write_bytes(os.urandom(8192))
    proc = sf("workflow", "list", cwd=tmp_path)
    assert_one_line_error(proc, "is not a SQLite database")


def test_foreign_sqlite_database_gives_one_line_error(tmp_path):
    con = sqlite3.connect(tmp_path / "other.db")
    con.execute("create table customers (id integer primary key)")
    con.commit()
    con.close()
    proc = sf("--engine", "sqlite:///other.db", "workflow", "list", cwd=tmp_path)
    assert_one_line_error(proc, "is not a steadyflow database")


@pytest.mark.slow
def test_signal_query_cancel_and_replay_from_the_command_line(tmp_path):
    started = sf("workflow", "start", "tests.fixtures.features.Stateful", "--workflow-id", "st", "--task-list", "q",
                 cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("STEADYFLOW_URL", None)
    decider = subprocess.Popen([sys.executable, "-m", "steadyflow", "decider", "start", "--task-list", "q",
                                "tests.fixtures.features.Stateful"], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert sf("workflow", "signal", "st", "add", "--input", '{"args": [4], "kwargs": {}}', cwd=tmp_path).returncode == 0
        assert sf("workflow", "signal", "st", "add", "--input", '{"args": [6], "kwargs": {}}', cwd=tmp_path).returncode == 0
        answer = sf("workflow", "query", "st", "items", cwd=tmp_path)
        assert answer.returncode == 0, answer.stderr
        assert json.loads(answer.stdout) == [4, 6]
        unknown = sf("workflow", "query", "st", "nope", cwd=tmp_path)
        assert_one_line_error(unknown, "has no query 'nope'")
        bad = sf("workflow", "signal", "st", "add", "--input", "{oops", cwd=tmp_path)
        assert_one_line_error(bad, "--input is not valid JSON")
        assert sf("workflow", "cancel", "st", cwd=tmp_path).returncode == 0
        done = sf("workflow", "result", "st", "--wait", "--timeout", "60", cwd=tmp_path)
        assert done.returncode == 1 and "canceled" in done.stderr
    finally:
        decider.terminate()
        decider.wait(timeout=30)
    for verb in ("signal", "cancel", "query"):
        extra = ["add"] if verb != "cancel" else []
        closed = sf("workflow", verb, "st", *extra, cwd=tmp_path)
        assert closed.returncode == 1 and "canceled" in closed.stderr and "Traceback" not in closed.stderr
        missing = sf("workflow", verb, "ghost", *extra, cwd=tmp_path)
        assert_one_line_error(missing, "no execution with workflow id 'ghost'")
    history = sf("workflow", "history", "st", "--format", "json", cwd=tmp_path)
    (tmp_path / "st.json").write_text(history.stdout)
    replay = sf("workflow", "replay", "st.json", cwd=tmp_path)
    assert replay.returncode == 0 and "replays without non-determinism" in replay.stdout
    broken = sf("workflow", "replay", "st.json", "--workflow", "tests.fixtures.workflows.FanOut", cwd=tmp_path)
    assert_one_line_error(broken, "non-deterministic workflow at event")


def test_workflow_tasks_shows_the_last_heartbeat_details(tmp_path):
    from steadyflow.decisions import ScheduleActivityTask
    from steadyflow.engines import open_engine

    engine = open_engine(f"sqlite:///{tmp_path / 'steadyflow.db'}")
    engine.start_execution("hb-1", "t", "1", "tl", None)
    task = engine.poll_decision_task("tl")
    engine.complete_decision_task(task.token, [ScheduleActivityTask("activity-x-1", "x", "1", "tl", "{}")])
    running = engine.poll_activity_task("tl")
    engine.heartbeat_activity_task(running.token, '{"done": 40}')
    engine.close()
    rows = json.loads(sf("workflow", "tasks", "hb-1", "--format", "json", cwd=tmp_path).stdout)
    assert rows == [{
        "Tasks": "activity-x-1", "Last State": "started", "Last State Time": rows[0]["Last State Time"],
        "Scheduled Time": rows[0]["Scheduled Time"], "Attempts": 1, "Last Heartbeat": '{"done": 40}',
    }]
