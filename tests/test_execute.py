"""`steadyflow.execute`: activities that run a program or a function under another interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from steadyflow import history as h
from steadyflow.activity import Activity, find_activity
from steadyflow.engines import open_engine
from steadyflow.execute import ExecutionError, ExecutionTimeoutError, format_arguments
from steadyflow.local import run_local
from steadyflow.worker.runner import run_task
from tests.fixtures import execute_activities as ea
from tests.fixtures.pool_helpers import ROOT, act, gone, running_pool, schedule, wait_events, wait_for

MOD = "tests.fixtures.execute_activities"


def test_format_arguments_is_simpleflows():
    assert sorted(format_arguments("a", "b", c=1, val=2)) == ['--val="2"', '-c="1"', "a", "b"]


def test_program_returns_stdout():
    assert ea.echo("a", "b", n=1, long="x") == '-n="1" --long="x" a b\n'
    assert ea.printf("%s-%s", "x", "y") == "x-y"  # the function's name is the program's


def test_program_checks_the_call_against_the_signature():
    with pytest.raises(TypeError):
        ea.printf()


def test_a_failing_program_raises_with_the_tail_of_its_stderr():
    with pytest.raises(ExecutionError, match=r"(?s)sh exited with code 3: \.\.\..*the end of the story$"):
        ea.sh("-c", "for i in $(seq 3000); do echo noise $i >&2; done; echo the end of the story >&2; exit 3")


def test_a_missing_program_is_an_execution_error():
    from steadyflow.execute import program

    with pytest.raises(ExecutionError, match="cannot run 'no-such-program-here'"):
        program(path="no-such-program-here")(lambda: None)()


def test_python_runs_the_function_in_another_interpreter():
    result = ea.in_other_interpreter(6, y=7)
    assert result["product"] == 42 and result["pid"] != os.getpid()
    assert ea.size_of("x" * 100_000) == 100_000  # arguments past the command-line limit go through a file


def test_python_reports_the_remote_exception():
    with pytest.raises(ExecutionError) as info:
        ea.fails("bad input")
    assert str(info.value) == "ValueError: bad input" and info.value.error == "ValueError" and "raise ValueError(message)" in info.value.remote_traceback


def test_python_without_an_error_report_gives_the_stderr_tail():
    with pytest.raises(ExecutionError, match="exited with code 7: dying without a word"):
        ea.crashes()


def test_python_timeout_kills_the_process():
    with pytest.raises(ExecutionTimeoutError, match="timed out after 0.5s"):
        ea.too_slow()


def test_kill_children_ends_what_the_function_left_running(tmp_path):
    pid_file = tmp_path / "pid"
    assert ea.leaves_a_process_behind(str(pid_file)) == "returned"
    orphan = int(pid_file.read_text())
    wait_for(lambda: gone(orphan), what="the left-behind process to be killed")


def test_the_module_is_simpleflows_command_line():
    out = subprocess.run([sys.executable, "-m", "steadyflow.execute", "os.path.join", '{"args": ["a", "b"]}'],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout == '\n"a/b"'


def test_decorators_stack_in_both_orders_and_stay_activities():
    assert isinstance(ea.in_other_interpreter, Activity) and isinstance(ea.other_order, Activity)
    assert find_activity(f"{MOD}.in_other_interpreter") is ea.in_other_interpreter
    assert find_activity("execute.other.order") is ea.other_order
    assert ea.other_order.options.retry_policy.maximum_attempts == 2
    outcome = run_task({"name": "execute.other.order", "input": '{"args": [1]}', "token": "t", "activity_id": "x"})
    assert outcome.ok and json.loads(outcome.result)["value"] == 2
    assert json.loads(outcome.result)["pid"] != os.getpid()
    failed = run_task({"name": f"{MOD}.fails", "input": '{"args": ["nope"]}', "token": "t"})
    assert failed.reason == "ExecutionError: ValueError: nope"
    assert "Traceback in the other interpreter" in "".join(json.loads(failed.details)["traceback"])


def test_the_task_context_reaches_the_other_interpreter():
    outcome = run_task({"name": f"{MOD}.seen_context", "input": "[]", "token": "t", "activity_id": "act-9",
                        "control": '{"attempt": 2}'})
    assert json.loads(outcome.result) == {"activity_id": "act-9", "attempt": 2}


def test_a_workflow_runs_execute_activities():
    info = run_local(ea.ExecuteWorkflow, [4])
    assert info.status == "completed", info.close_reason
    result = json.loads(info.result)
    assert result["product"] == 12 and result["value"] == 5 and os.getpid() not in result["pids"]


@pytest.mark.slow
def test_cancellation_kills_a_running_program():
    engine = open_engine("memory://")
    wid = schedule(engine, act(f"{MOD}.sleep_program", 60, task_list=ea.TASK_LIST, heartbeat_timeout=1.0))
    with running_pool(engine, ea.TASK_LIST, (MOD,)) as pool:
        wait_for(lambda: pool.running == 1, engine, what="the task to start")
        engine.request_cancel_execution(wid)
        [failed] = wait_events(engine, wid, h.ACTIVITY_TASK_FAILED)
    assert failed.attributes["reason"].startswith("ActivityCancelled: cancellation requested while sleep ran")


@pytest.mark.slow
def test_a_hard_timeout_kills_the_program_the_task_started(tmp_path):
    engine = open_engine("memory://")
    pid_file = tmp_path / "pid"
    script = f"echo $$ > {pid_file}; exec sleep 60"
    wid = schedule(engine, act(f"{MOD}.shell_stuck", "-c", script, task_list=ea.TASK_LIST))
    with running_pool(engine, ea.TASK_LIST, (MOD,)):
        [failed] = wait_events(engine, wid, h.ACTIVITY_TASK_FAILED)
        assert failed.attributes["reason"].startswith("TimeoutError: hard_timeout of 1s exceeded")
        grandchild = int(pid_file.read_text())
        wait_for(lambda: gone(grandchild), what="the program to die with its worker process")
