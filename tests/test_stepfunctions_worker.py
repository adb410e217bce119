"""stefuna compatibility: `Worker` output rules, `Server`, the config and `activity-server`, and the
hello example run end to end with only its import lines changed."""

from __future__ import annotations

import json
import signal
import threading

import pytest

from steadyflow import activity
from steadyflow import history as h
from steadyflow.cli import main
from steadyflow.engines import open_engine
from steadyflow.errors import ActivityNotFound, ConfigError
from steadyflow.local import start
from steadyflow.stepfunctions import Server, Worker
from steadyflow.stepfunctions.config import load_settings
from steadyflow.stepfunctions.server import activity_name
from steadyflow.stepfunctions.worker import CAUSE_SIZE, WorkerHandler, safe_cause
from steadyflow.worker import PoolError, WorkerPool
from tests.fixtures import server_activities as sa
from tests.fixtures.pool_helpers import (
    Processes,
    act,
    events,
    free_port,
    http,
    running_decider,
    running_pool,
    schedule,
    wait_events,
    wait_for,
)

ECHO = "tests.fixtures.server_activities.EchoWorker"


def run(handler, *args, raw=None, **kwargs):
    text = raw if raw is not None else json.dumps({"args": list(args), "kwargs": kwargs})
    return handler.run({"token": "tok-1", "name": "echo", "input": text})


@pytest.fixture
def handler():
    sa.EchoWorker.inits = 0
    return WorkerHandler(sa.EchoWorker, {"foo": "bar"})


# -- Worker: stefuna's output rules --------------------------------------------------------------


def test_a_dict_is_json_encoded_as_stefuna_does(handler):
    outcome = run(handler, {"who": "me"})
    assert outcome.ok
    data = json.loads(outcome.result)
    assert data["input"] == {"who": "me"} and data["config"] == {"foo": "bar"} and data["token_seen"]
    assert outcome.result == json.dumps(data)  # json.dumps' own spacing, byte for byte
    assert data["inits"] == 1 and Worker.worker_instance is handler.instance


def test_a_str_is_the_output_verbatim_and_none_is_an_empty_object(handler):
    assert run(handler, {"mode": "str", "text": "plain string, returned verbatim"}).result == "plain string, returned verbatim"
    assert run(handler, {"mode": "none"}).result == "{}"


def test_an_exception_fails_the_task_with_task_failure(handler):
    outcome = run(handler, {"mode": "raise", "text": "boom"})
    assert not outcome.ok
    assert outcome.reason == "Task.Failure: Exception raised during task run: boom"
    details = json.loads(outcome.details)
    assert details["error"] == "Task.Failure" and details["cause"] == "Exception raised during task run: boom"
    assert "RuntimeError: boom" in "".join(details["traceback"])


def test_a_long_cause_is_cut_as_stefuna_cuts_it(handler):
    outcome = run(handler, {"mode": "raise", "text": "x" * 40000})
    cause = json.loads(outcome.details)["cause"]
    assert len(cause) == CAUSE_SIZE and cause.endswith("...") and cause.startswith("Exception raised during task run: xxx")
    assert len(outcome.reason) <= 256
    assert safe_cause("short") == "short"


def test_send_task_failure_wins_over_the_return_value_and_over_a_later_exception(handler):
    outcome = run(handler, {"mode": "custom", "text": "my own cause"})
    assert not outcome.ok and outcome.reason == "Custom.Error: my own cause"
    assert json.loads(outcome.details)["error"] == "Custom.Error"
    outcome = run(handler, {"mode": "custom-then-raise"})
    assert outcome.reason == "Custom.Error: first"


def test_a_result_json_cannot_hold_is_a_task_failure(handler):
    outcome = run(handler, {"mode": "unencodable"})
    assert outcome.reason == "Task.Failure: Exception raised during task run: Object of type set is not JSON serializable"


@pytest.mark.parametrize(
    ("args", "kwargs", "raw", "expected"),
    [
        ([{"who": "me"}], {}, None, {"who": "me"}),
        ([], {"who": "me"}, None, {"who": "me"}),
        ([], {}, None, {}),
        ([[1, 2]], {}, None, [1, 2]),
        ([], {}, '{"who": "a Step Functions input"}', {"who": "a Step Functions input"}),
    ],
)
def test_input_data_is_the_one_argument_or_the_keyword_arguments(handler, args, kwargs, raw, expected):
    outcome = run(handler, *args, raw=raw, **kwargs)
    assert json.loads(outcome.result)["input"] == expected


@pytest.mark.parametrize("raw", ['{"args": [1, 2], "kwargs": {}}', "{not json"])
def test_bad_input_is_a_task_failure(handler, raw):
    outcome = run(handler, raw=raw)
    assert outcome.reason.startswith("Task.Failure: Exception raised during task run: Error parsing task input json:")


def test_a_handler_needs_a_worker_subclass():
    with pytest.raises(ConfigError, match="not a subclass"):
        WorkerHandler(sa.NotAWorker)


# -- in a pool -----------------------------------------------------------------------------------


def test_each_process_builds_one_worker_and_inits_it_once():
    engine = open_engine("memory://")
    handlers = {"echo": WorkerHandler(sa.EchoWorker, {"k": 1})}
    wid = schedule(engine, *(act("echo", {"n": i}, task_list="echo", activity_id=f"e{i}") for i in range(3)))
    with running_pool(engine, "echo", (), handlers=handlers):
        done = wait_events(engine, wid, h.ACTIVITY_TASK_COMPLETED, 3)
    results = [json.loads(e.attributes["result"]) for e in done]
    assert len({r["pid"] for r in results}) == 1
    assert {r["inits"] for r in results} == {1} and results[0]["config"] == {"k": 1}
    assert sorted(r["input"]["n"] for r in results) == [0, 1, 2]


def test_a_worker_whose_init_fails_stops_the_pool():
    engine = open_engine("memory://")
    pool = WorkerPool(engine, "broken", processes=1, handlers={"broken": WorkerHandler(sa.BrokenInitWorker)})
    with pytest.raises(PoolError, match="exit code 4"):
        pool.run()


class RecordingServer(Server):
    seen = None

    def init(self, server_config):
        RecordingServer.seen = server_config


def test_server_serves_the_activity_named_by_its_arn():
    engine = open_engine("memory://")
    server = RecordingServer(
        name="Rec", activity_arn="arn:aws:states:eu-west-1:123456789012:activity:echo", processes=1,
        server_config={"s": 1}, worker_config={"w": 2}, engine=engine, worker_class=sa.EchoWorker,
    )
    assert RecordingServer.seen == {"s": 1} and server.activity_name == "echo"
    assert server.server_name.startswith("Rec-")
    wid = schedule(engine, act("echo", {"x": 1}, task_list="echo"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    [done] = wait_events(engine, wid, h.ACTIVITY_TASK_COMPLETED)
    assert json.loads(done.attributes["result"])["config"] == {"w": 2}
    [started] = events(engine, wid, h.ACTIVITY_TASK_STARTED)
    assert started.attributes["identity"] == server.server_name
    server.close()
    thread.join(30)
    assert not thread.is_alive()


def test_activity_names_come_from_arns():
    assert activity_name("arn:aws:states:us-east-1:00000000000000:activity:hello") == "hello"
    assert activity_name("hello") == "hello"
    for bad in ("arn:aws:states:us-east-1:1:stateMachine:x", "a:b", ""):
        with pytest.raises(ConfigError):
            activity_name(bad)


def test_named_activity_schedules_by_name_and_cannot_run_locally():
    hello = activity.named("hello", retry=2)
    assert hello.options.name == "hello" and hello.options.task_list == "hello"
    assert hello.options.retry_policy.maximum_attempts == 3
    assert activity.named("hello", task_list="elsewhere").options.task_list == "elsewhere"
    with pytest.raises(ActivityNotFound, match="known here only by its name"):
        hello({"who": "me"})
    with pytest.raises(ConfigError):
        activity.named("")


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "extra", "fragment"),
    [
        ("BAD_KEY", [], "unknown config key 'procesess' (did you mean 'processes'?)"),
        ("NEGATIVE_PROCESSES", [], "config key 'processes' must be"),
        ("NOT_IMPORTABLE", [], "config key 'worker': cannot import 'tests.fixtures.no_such_module.Worker'"),
        ("NOT_A_WORKER", [], "config key 'worker':"),
        ("BAD_ARN", [], "config key 'activity_arn':"),
        ("NOT_A_WORKER", ["--worker", ECHO, "--processes", "-1"], "config key 'processes' must be"),
    ],
)
def test_bad_config_is_one_line_naming_the_key_and_exit_code_2(capsys, config, extra, fragment):
    code = main(["--engine", "memory://", "activity-server", "--config", f"tests.fixtures.server_activities.{config}", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("Error: ") and fragment in err and "\n" not in err


def test_missing_worker_and_missing_config_are_usage_errors(capsys):
    assert main(["--engine", "memory://", "activity-server", "--activity-arn", "x"]) == 2
    assert "config key 'worker' is not set" in capsys.readouterr().err
    assert main(["--engine", "memory://", "activity-server", "--config", "tests.fixtures.nope"]) == 2
    assert "--config: cannot import 'tests.fixtures.nope'" in capsys.readouterr().err


def test_settings_follow_stefuna_defaults_and_cli_overrides():
    settings = load_settings("examples.stefuna.hello_config", processes=0, healthcheck=0)
    assert settings.activity_name == "hello" and settings.name == "HelloExample"
    assert settings.server_class.__name__ == "HelloServer" and settings.worker_class.__name__ == "HelloWorker"
    kw = settings.server_kwargs
    assert kw["processes"] is None and kw["healthcheck"] is None and kw["heartbeat"] == 120
    assert kw["maxtasksperchild"] is None and kw["start_method"] == "spawn" and kw["healthcheck_host"] == "127.0.0.1"
    defaults = load_settings({"worker": ECHO, "activity_arn": "echo"}).server_kwargs
    assert defaults["healthcheck"] == 8080 and defaults["maxtasksperchild"] == 100  # stefuna's CLI defaults
    with pytest.raises(ConfigError, match="loglevel"):
        load_settings({"worker": ECHO, "activity_arn": "echo", "loglevel": "chatty"})


# -- the hello example, end to end ---------------------------------------------------------------


@pytest.mark.slow
def test_stefuna_hello_example_runs_with_only_its_import_line_changed(tmp_path):
    from examples.stefuna.hello_workflow import HelloWorkflow

    url = f"sqlite:///{tmp_path / 'hello.db'}"
    procs = Processes(url)
    engine = open_engine(url)
    port = free_port()
    try:
        server = procs.spawn("activity-server", "--config", "examples.stefuna.hello_config", "--healthcheck", str(port))
        wid, _ = start(engine, HelloWorkflow, ["me"])
        with running_decider(engine, HelloWorkflow.task_list, [HelloWorkflow]):
            wait_for(lambda: not engine.describe_execution(wid).is_open, what="the hello workflow to complete")
        info = engine.describe_execution(wid)
        assert info.status == "completed", info.close_reason
        assert json.loads(info.result) == {"message": "Hello World"}
        [scheduled] = events(engine, wid, h.ACTIVITY_TASK_SCHEDULED)
        assert scheduled.attributes["activityType"]["name"] == "hello"
        assert scheduled.attributes["taskList"]["name"] == "hello"
        [started] = events(engine, wid, h.ACTIVITY_TASK_STARTED)
        assert started.attributes["identity"].startswith("HelloExample-")
        status, body = wait_for(lambda: (a := http(f"http://127.0.0.1:{port}/")) and a[0] == 200 and a,
                                what="the healthcheck")
        assert body["status"] == "ok" and body["task_list"] == "hello"
        server.send_signal(signal.SIGTERM)
        assert server.wait(30) == 0
    finally:
        procs.stop()
        engine.close()
