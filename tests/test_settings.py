"""Settings (a module named by STEADYFLOW_SETTINGS_MODULE, each setting overridable by an
environment variable of its name) and activity middlewares run by a real worker pool."""

from __future__ import annotations

import json
import os
import textwrap
import uuid

import pytest
from click.testing import CliRunner

from steadyflow import activity, settings
from steadyflow.cli import cli, main
from steadyflow.engines import open_engine
from steadyflow.errors import ConfigError
from steadyflow.local import start
from steadyflow.worker.middlewares import Middlewares
from tests.fixtures.cli_tools import Waits
from tests.fixtures.pool_helpers import act, running_pool, schedule, wait_events

FIXTURES = "tests.fixtures.cli_tools"


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch):
    """Every test reads the settings from its own environment, and leaves none behind."""
    for name in (*settings.BY_NAME, settings.MODULE_ENV, settings.SIMPLEFLOW_MODULE_ENV):
        monkeypatch.delenv(name, raising=False)
    settings.reset()
    yield
    settings.reset()


@pytest.fixture
def settings_module(tmp_path, monkeypatch):
    """Writes a settings module under tmp_path (importable) and returns its name."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(body: str) -> str:
        name = f"sf_settings_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
        return name

    return write


# -- layers --------------------------------------------------------------------------------------


def test_defaults_are_simpleflow_names_with_steadyflow_values():
    assert settings.WORKFLOW_DEFAULT_TASK_LIST == "default"
    assert settings.ACTIVITY_DEFAULT_VERSION == "default"
    assert settings.ACTIVITY_DEFAULT_TASK_LIST is None
    assert settings.ACTIVITY_HEARTBEAT_TIMEOUT == 30.0
    assert settings.ACTIVITY_START_TO_CLOSE_TIMEOUT is None
    assert settings.source("ACTIVITY_HEARTBEAT_TIMEOUT") == "default"


def test_module_then_environment_override_each_setting(monkeypatch, settings_module):
    name = settings_module("""
        ACTIVITY_START_TO_CLOSE_TIMEOUT = 120
        ACTIVITY_DEFAULT_TASK_LIST = "from-module"
        ACTIVITY_MIDDLEWARES_PRE = ["a.b", "c.d"]
    """)
    monkeypatch.setenv(settings.MODULE_ENV, name)
    monkeypatch.setenv("ACTIVITY_DEFAULT_TASK_LIST", "from-env")
    monkeypatch.setenv("ACTIVITY_HEARTBEAT_TIMEOUT", "300")
    settings.load()
    assert settings.ACTIVITY_START_TO_CLOSE_TIMEOUT == 120.0
    assert settings.source("ACTIVITY_START_TO_CLOSE_TIMEOUT") == f"module {name}"
    assert settings.ACTIVITY_DEFAULT_TASK_LIST == "from-env"
    assert settings.ACTIVITY_HEARTBEAT_TIMEOUT == 300.0
    assert settings.ACTIVITY_MIDDLEWARES_PRE == ("a.b", "c.d")
    monkeypatch.setenv("ACTIVITY_MIDDLEWARES_PRE", "x.y, z.w")
    monkeypatch.setenv("ACTIVITY_START_TO_CLOSE_TIMEOUT", "none")
    settings.load()
    assert settings.ACTIVITY_MIDDLEWARES_PRE == ("x.y", "z.w")
    assert settings.ACTIVITY_START_TO_CLOSE_TIMEOUT is None


def test_simpleflows_variable_names_the_module_when_ours_is_unset(monkeypatch, settings_module):
    monkeypatch.setenv(settings.SIMPLEFLOW_MODULE_ENV, settings_module("ACTIVITY_DEFAULT_VERSION = 'v7'\n"))
    assert settings.ACTIVITY_DEFAULT_VERSION == "v7"


def test_configure_and_put_setting_override_in_this_process():
    settings.configure({"ACTIVITY_SCHEDULE_TO_START_TIMEOUT": "45"})
    assert settings.ACTIVITY_SCHEDULE_TO_START_TIMEOUT == 45.0
    assert settings.source("ACTIVITY_SCHEDULE_TO_START_TIMEOUT") == "configure"
    with pytest.raises(ConfigError, match="unknown setting 'NOPE'"):
        settings.put_setting("NOPE", 1)
    with pytest.raises(ConfigError, match="ACTIVITY_HEARTBEAT_TIMEOUT"):
        settings.put_setting("ACTIVITY_HEARTBEAT_TIMEOUT", "soon")


def test_a_settings_module_that_does_not_import_is_a_config_error(monkeypatch, settings_module):
    monkeypatch.setenv(settings.MODULE_ENV, "no_such_settings_module_xyz")
    with pytest.raises(ConfigError, match="cannot import settings module 'no_such_settings_module_xyz'"):
        settings.load()
    monkeypatch.setenv(settings.MODULE_ENV, settings_module("raise RuntimeError('broken on purpose')\n"))
    with pytest.raises(ConfigError, match="RuntimeError: broken on purpose"):
        settings.load()


@pytest.mark.parametrize("command", [["info", "settings"], ["workflow", "list"]])
def test_cli_with_a_settings_module_that_does_not_import_exits_with_one_line(capsys, monkeypatch, tmp_path, command):
    monkeypatch.setenv(settings.MODULE_ENV, "no_such_settings_module_xyz")
    code = main(["--engine", f"sqlite:///{tmp_path / 'x.db'}", *command])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [
        "Error: cannot import settings module 'no_such_settings_module_xyz' (STEADYFLOW_SETTINGS_MODULE): "
        "ModuleNotFoundError: No module named 'no_such_settings_module_xyz'"
    ]
    assert not (tmp_path / "x.db").exists()


def test_a_bad_value_in_the_environment_is_a_one_line_error(capsys, monkeypatch):
    monkeypatch.setenv("ACTIVITY_HEARTBEAT_TIMEOUT", "-3")
    code = main(["--engine", "memory://", "info", "settings"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("Error: setting ACTIVITY_HEARTBEAT_TIMEOUT (from the environment)")


def test_info_settings_shows_the_values_in_effect(monkeypatch, settings_module):
    monkeypatch.setenv(settings.MODULE_ENV, settings_module("ACTIVITY_DEFAULT_TASK_LIST = 'heavy'\n"))
    monkeypatch.setenv("ACTIVITY_START_TO_CLOSE_TIMEOUT", "90")
    result = CliRunner().invoke(cli, ["--engine", "memory://", "info", "settings"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "# Settings"
    assert "ACTIVITY_DEFAULT_TASK_LIST='heavy'" in lines and "ACTIVITY_START_TO_CLOSE_TIMEOUT=90.0" in lines


# -- where the defaults are read -----------------------------------------------------------------


def test_activity_defaults_come_from_the_settings_unless_given(monkeypatch):
    monkeypatch.setenv("ACTIVITY_START_TO_CLOSE_TIMEOUT", "120")
    monkeypatch.setenv("ACTIVITY_SCHEDULE_TO_START_TIMEOUT", "60")
    monkeypatch.setenv("ACTIVITY_SCHEDULE_TO_CLOSE_TIMEOUT", "600")
    monkeypatch.setenv("ACTIVITY_HEARTBEAT_TIMEOUT", "45")
    monkeypatch.setenv("ACTIVITY_DEFAULT_TASK_LIST", "workers")
    monkeypatch.setenv("ACTIVITY_DEFAULT_VERSION", "2")
    settings.load()

    def plain(x):
        return x

    def explicit(x):
        return x

    o = activity.with_attributes()(plain).options
    assert (o.start_to_close_timeout, o.schedule_to_start_timeout, o.schedule_to_close_timeout) == (120, 60, 600)
    assert (o.heartbeat_timeout, o.task_list, o.version) == (45, "workers", "2")
    e = activity.with_attributes(start_to_close_timeout=5, heartbeat_timeout=None, task_list="mine",
                                 version="9")(explicit).options
    assert (e.start_to_close_timeout, e.heartbeat_timeout, e.task_list, e.version) == (5, None, "mine", "9")
    assert e.schedule_to_start_timeout == 60


def test_unset_settings_keep_the_activity_defaults():
    def plain(x):
        return x

    o = activity.with_attributes()(plain).options
    assert (o.start_to_close_timeout, o.heartbeat_timeout, o.task_list, o.version) == (None, 30.0, None, "default")


def test_a_workflow_without_a_task_list_starts_on_the_settings_default(monkeypatch):
    monkeypatch.setenv("WORKFLOW_DEFAULT_TASK_LIST", "deciders")
    settings.load()
    engine = open_engine("memory://")
    wid, _ = start(engine, Waits, [1])
    assert engine.describe_execution(wid).task_list == "deciders"


# -- middlewares in a real worker ----------------------------------------------------------------


def _trace(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_middlewares_from_settings_run_around_each_attempt_in_the_worker_child(tmp_path, monkeypatch):
    trace = tmp_path / "trace.jsonl"
    monkeypatch.setenv("CLI_TOOLS_TRACE", str(trace))  # spawned children inherit it
    monkeypatch.setenv("ACTIVITY_MIDDLEWARES_PRE", f"{FIXTURES}.pre")
    monkeypatch.setenv("ACTIVITY_MIDDLEWARES_POST", f"{FIXTURES}.post,{FIXTURES}.post_simpleflow")
    settings.load()
    engine = open_engine("memory://")
    task_list = f"mw-{uuid.uuid4().hex[:8]}"
    name = f"{FIXTURES}.traced_double"
    with running_pool(engine, task_list, (FIXTURES,)):
        ok = schedule(engine, act(name, 21, task_list=task_list))
        completed = wait_events(engine, ok, "ActivityTaskCompleted")
        bad = schedule(engine, act(name, -1, task_list=task_list))
        wait_events(engine, bad, "ActivityTaskFailed")
    assert json.loads(completed[0].attributes["result"]) == 42
    records = _trace(trace)
    assert [r["when"] for r in records] == [
        "pre", "activity", "post", "post_simpleflow",  # the attempt that returned
        "pre", "post",  # the attempt that raised: only the middleware that takes `exception`
    ]
    first, activity_run, after = records[0], records[1], records[2]
    assert first["pid"] == activity_run["pid"] == after["pid"] != os.getpid()  # in the worker child
    assert first["name"] == name and first["input"] == {"args": [21], "kwargs": {}} and first["attempt"] == 1
    assert first["workflow_id"] == ok and after["result"] == 42 and after["exception"] is None
    assert records[3]["result"] == 42
    assert records[5]["exception"] == "ValueError('negative: -1')" and records[5]["result"] is None


def test_a_raising_pre_middleware_fails_the_attempt_before_the_activity_runs(tmp_path, monkeypatch):
    trace = tmp_path / "trace.jsonl"
    monkeypatch.setenv("CLI_TOOLS_TRACE", str(trace))
    engine = open_engine("memory://")
    task_list = f"mw-{uuid.uuid4().hex[:8]}"
    middlewares = Middlewares.of(pre=[f"{FIXTURES}.pre", "json.loads"], post=[f"{FIXTURES}.post"])
    with running_pool(engine, task_list, (FIXTURES,), middlewares=middlewares):
        wid = schedule(engine, act(f"{FIXTURES}.traced_double", 3, task_list=task_list))
        failed = wait_events(engine, wid, "ActivityTaskFailed")
    assert failed[0].attributes["reason"].startswith("TypeError")  # json.loads(context dict)
    assert [r["when"] for r in _trace(trace)] == ["pre"]  # neither the activity nor the post-middleware ran


@pytest.mark.parametrize("path, text", [
    ("tests.fixtures.cli_tools.nothing_here", "cannot import pre-execution middleware 'tests.fixtures.cli_tools.nothing_here'"),
    ("tests.fixtures.cli_tools.not_callable", "pre-execution middleware 'tests.fixtures.cli_tools.not_callable' is not callable"),
    ("justaname", "pre-execution middleware 'justaname' is not a dotted path"),
])
def test_worker_start_with_a_bad_middleware_is_a_one_line_error(capsys, tmp_path, path, text):
    code = main(["--engine", f"sqlite:///{tmp_path / 'w.db'}", "worker", "start", "-t", "tl",
                 "--middleware-pre-execution", path])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("Error: ") and text in err[0], err


def test_middlewares_wrap_async_activities_and_a_failing_post_fails_the_attempt(tmp_path, monkeypatch):
    from steadyflow.worker import middlewares
    from steadyflow.worker.runner import run_task

    trace = tmp_path / "trace.jsonl"
    monkeypatch.setenv("CLI_TOOLS_TRACE", str(trace))
    task = {"name": f"{FIXTURES}.traced_async_double", "input": json.dumps({"args": [5]}), "workflow_id": "w",
            "run_id": "r", "activity_id": "a-1", "control": json.dumps({"attempt": 2}), "task_list": "tl"}
    middlewares.install(Middlewares.of([f"{FIXTURES}.pre"], [f"{FIXTURES}.post"]).load())
    try:
        outcome = run_task(task)
        assert outcome.ok and json.loads(outcome.result) == 10
        assert [(r["when"], r.get("attempt"), r.get("result")) for r in _trace(trace)] == [
            ("pre", 2, None), ("activity", None, None), ("post", None, 10)]
        middlewares.install(Middlewares.of(post=["json.loads"]).load())  # json.loads(context) raises
        failed = run_task(task)
        assert not failed.ok and failed.reason.startswith("TypeError")
    finally:
        middlewares.install(None)
    assert middlewares.active() is None
