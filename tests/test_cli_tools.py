"""The task tools of the command line: `activity rerun`, `task info`, `workflow restart`,
`workflow filter`, `info`, and simpleflow's `--format`/`--header` on the views. `steadyflow.cli`
runs in this process (`main`, or click's `CliRunner`) on a SQLite file under tmp_path."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest
from click.testing import CliRunner

from steadyflow import Client
from steadyflow.cli import cli, main
from steadyflow.cli.info import redact
from steadyflow.engines import open_engine
from steadyflow.history import format_timestamp
from steadyflow.local import run_local
from tests.fixtures.cli_tools import Divide, Locate, Waits

DIVIDE = "tests.fixtures.cli_tools.divide"


@pytest.fixture
def url(tmp_path, monkeypatch):
    """A SQLite URL with a failed `Divide(1, 0)` ("div") and a completed `Locate("here")` ("loc")."""
    monkeypatch.delenv("STEADYFLOW_URL", raising=False)
    url = f"sqlite:///{tmp_path / 'tools.db'}"
    engine = open_engine(url)
    try:
        assert run_local(Divide, [1, 0], engine=engine, workflow_id="div").status == "failed"
        time.sleep(0.01)  # times are shown to the millisecond: the two runs must not share one
        assert run_local(Locate, ["here"], engine=engine, workflow_id="loc").status == "completed"
    finally:
        engine.close()
    return url


def run(capsys, *args: str) -> tuple[int, str, str]:
    """`steadyflow ARGS` as `main` runs it: (exit status, stdout, stderr)."""
    try:
        code = main(list(args))
    except SystemExit as exc:  # a command that exits with its own status (`activity rerun` failing)
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def ok(capsys, *args: str) -> str:
    code, out, err = run(capsys, *args)
    assert code == 0, err
    return out


def assert_one_line_error(code: int, err: str, text: str) -> None:
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: ") and text in lines[0], lines[0]


def scheduled_id(url: str, workflow_id: str) -> int:
    engine = open_engine(url)
    try:
        return next(e.event_id for e in engine.get_history(workflow_id) if e.event_type == "ActivityTaskScheduled")
    finally:
        engine.close()


# -- activity rerun ------------------------------------------------------------------------------


def test_rerun_reproduces_the_failed_activity_exception_from_its_recorded_input(capsys, url):
    code, out, err = run(capsys, "--engine", url, "activity", "rerun", "--workflow-id", "div",
                         "--scheduled-id", str(scheduled_id(url, "div")))
    assert code == 1
    assert out == ""
    assert "with its recorded input" in err
    assert "Traceback (most recent call last)" in err
    assert "return a / b" in err  # the activity's own frame
    assert err.rstrip().endswith("ZeroDivisionError: division by zero")


def test_rerun_with_input_overrides_the_recorded_one(capsys, url):
    out = ok(capsys, "--engine", url, "activity.rerun", "--workflow-id", "div",
             "--activity-id", f"activity-{DIVIDE}-1", "--input", "[6, 3]")
    assert json.loads(out) == 2.0


def test_rerun_of_a_completed_activity_prints_its_result_and_runs_in_a_task_context(capsys, url):
    out = ok(capsys, "--engine", url, "activity", "rerun", "--workflow-id", "loc",
             "--scheduled-id", str(scheduled_id(url, "loc")))
    assert json.loads(out) == {"label": "here", "workflow_id": "loc",
                               "activity_id": "activity-tests.fixtures.cli_tools.where_am_i-1"}


@pytest.mark.parametrize("args, text", [
    (["--scheduled-id", "999"], "workflow div has no activity task with scheduled event id 999"),
    (["--activity-id", "nope"], "workflow div has no activity task with activity id 'nope'"),
    ([], "give exactly one of --scheduled-id and --activity-id"),
    (["--activity-id", f"activity-{DIVIDE}-1", "--input", "[6,"], "--input is not valid JSON"),
])
def test_rerun_bad_input_is_a_one_line_error(capsys, url, args, text):
    code, out, err = run(capsys, "--engine", url, "activity", "rerun", "--workflow-id", "div", *args)
    assert code == 2 and out == ""
    assert_one_line_error(code, err, text)


# -- task info -----------------------------------------------------------------------------------


def test_task_info_shows_state_input_reason_times_and_attempts(capsys, url):
    info = json.loads(ok(capsys, "--engine", url, "task", "info", "div", f"activity-{DIVIDE}-1", "--format", "json",
                         "--details"))
    assert info["name"] == DIVIDE and info["state"] == "failed" and info["type"] == "activity"
    assert json.loads(info["input"]) == {"args": [1, 0], "kwargs": {}}
    assert info["reason"] == "ZeroDivisionError: division by zero" and info["result"] is None
    assert info["attempt"] == 1 and info["scheduled_id"] == scheduled_id(url, "div")
    assert info["scheduled_timestamp"] <= info["started_timestamp"] <= info["closed_timestamp"] == info["timestamp"]
    assert json.loads(info["details"])["error"] == "ZeroDivisionError"


def test_task_info_of_a_completed_task_by_scheduled_event_id_as_simpleflow_csv(capsys, url):
    text = ok(capsys, "--engine", url, "task.info", "loc", str(scheduled_id(url, "loc")), "--format", "csv")
    header, row = list(csv.reader(io.StringIO(text)))
    assert header[:9] == ["type", "id", "name", "version", "state", "timestamp", "input", "result", "reason"]
    record = dict(zip(header, row))
    assert record["state"] == "completed" and json.loads(record["result"])["label"] == "here"


def test_task_info_of_an_unknown_task_is_a_one_line_error(capsys, url):
    code, out, err = run(capsys, "--engine", url, "task", "info", "div", "no-such-task")
    assert_one_line_error(code, err, "workflow div has no activity task with activity id 'no-such-task'")
    assert out == ""


def test_task_info_of_an_unknown_workflow_is_a_one_line_error(capsys, url):
    code, _, err = run(capsys, "--engine", url, "task", "info", "ghost", "x")
    assert_one_line_error(code, err, "ghost")


# -- workflow restart ----------------------------------------------------------------------------


def test_restart_terminates_the_open_run_and_starts_a_new_one_with_its_input_and_tags(capsys, url):
    with Client(url) as client:
        first = client.start(Waits, 7, tag="t1", workflow_id="waiter", tags=["team=a", "prio"])
        out = ok(capsys, "--engine", url, "workflow", "restart", "waiter")
        wid, new_run = out.split()
        assert wid == "waiter" and new_run != first.run_id
        old = client.get_handle("waiter", first.run_id).describe()
        assert old.status == "terminated" and old.close_reason == "workflow.restart"
        new = client.get_handle("waiter").describe()
        assert new.run_id == new_run and new.is_open
        assert new.tags == ("team=a", "prio") and new.task_list == old.task_list
        assert (new.workflow_type, new.version) == (old.workflow_type, old.version)
        assert new.input == old.input
        assert client.engine.payloads.loads(new.input)["args"] == [7]


def test_restart_of_a_closed_run_starts_it_again(capsys, url):
    out = ok(capsys, "--engine", url, "workflow", "restart", "div")
    with Client(url) as client:
        runs = [e for e in client.list() if e.workflow_id == "div"]
    assert [r.status for r in runs] == ["open", "failed"] and out.split()[1] == runs[0].run_id


# -- workflow filter -----------------------------------------------------------------------------


@pytest.fixture
def many(url):
    """Besides div (failed) and loc (completed): two open runs with tags, one of version v2."""
    engine = open_engine(url)
    try:
        engine.start_execution("open-1", "cli_tools_waits", "default", "tl", None, tags=("red",))
        time.sleep(0.01)  # as above: distinct start times, to the millisecond
        engine.start_execution("open-2", "cli_tools_waits", "v2", "tl", None, tags=("blue", "red"))
        infos = {wid: engine.describe_execution(wid) for wid in ("div", "loc", "open-1", "open-2")}
    finally:
        engine.close()
    return url, infos


def ids(capsys, url, *args: str) -> list[str]:
    rows = json.loads(ok(capsys, "--engine", url, "workflow", "filter", "--format", "json", *args))
    return [r["Workflow ID"] for r in rows]


def test_filter_by_status_tag_id_type_version_and_close_status(capsys, many):
    url, _ = many
    assert ids(capsys, url) == ["open-2", "open-1"]  # simpleflow's default: open ones
    assert ids(capsys, url, "--status", "closed") == ["loc", "div"]
    assert ids(capsys, url, "--tag", "blue") == ["open-2"]
    assert ids(capsys, url, "--tag", "red") == ["open-2", "open-1"]
    assert ids(capsys, url, "--workflow-id", "open-1") == ["open-1"]
    assert ids(capsys, url, "--status", "closed", "--workflow-type-name", "cli_tools_divide") == ["div"]
    assert ids(capsys, url, "--workflow-type-name", "cli_tools_waits", "--workflow-type-version", "v2") == ["open-2"]
    assert ids(capsys, url, "--close-status", "COMPLETED") == ["loc"]
    assert ids(capsys, url, "-s", "closed", "-c", "failed") == ["div"]


def test_filter_by_start_and_close_date_ranges(capsys, many):
    url, infos = many
    started = format_timestamp(infos["open-2"].start_time)
    assert ids(capsys, url, "--started-after", started) == ["open-2"]
    assert ids(capsys, url, "--from-date", "2000-01-01", "--to-date", started) == ["open-1"]
    assert ids(capsys, url, "--started-before", "2000-01-01") == []
    closed = format_timestamp(infos["loc"].close_time)
    assert ids(capsys, url, "--closed-after", closed) == ["loc"]
    assert ids(capsys, url, "--closed-before", closed) == ["div"]


def test_filter_pages_and_columns(capsys, many):
    url, _ = many
    assert ids(capsys, url, "--status", "closed", "--limit", "1", "--page", "2") == ["div"]
    assert ids(capsys, url, "--status", "closed", "--limit", "1", "--page", "3") == []
    rows = json.loads(ok(capsys, "--engine", url, "workflow", "filter", "-s", "closed", "--format", "json"))
    assert rows[1]["Status"] == "CLOSED" and rows[1]["Close Status"] == "FAILED"
    assert rows[1]["Workflow Version"] == "default" and json.loads(rows[1]["Input"])["args"] == [1, 0]


def test_filter_refuses_contradictory_options(capsys, many):
    url, _ = many
    code, _, err = run(capsys, "--engine", url, "workflow", "filter", "--status", "open", "-c", "failed")
    assert_one_line_error(code, err, "--close-status needs --status closed")
    code, _, err = run(capsys, "--engine", url, "workflow", "filter", "--workflow-type-version", "v2")
    assert_one_line_error(code, err, "--workflow-type-version needs --workflow-type-name")


# -- --format and --header -----------------------------------------------------------------------


def test_every_simpleflow_format_on_a_view(capsys, url):
    args = ("--engine", url, "workflow", "list", "--status", "closed")
    tsv = ok(capsys, *args, "--format", "tsv").splitlines()
    assert tsv[0].split("\t") == ["Workflow ID", "Workflow Type", "Status", "Run ID", "Started"]
    assert [line.split("\t")[0] for line in tsv[1:]] == ["loc", "div"]
    assert ok(capsys, *args, "--format", "tsv", "--no-header").splitlines()[0].startswith("loc\t")
    tabular = ok(capsys, *args, "--format", "tabular", "--no-header").splitlines()
    assert [line.split()[0] for line in tabular] == ["loc", "div"]
    assert ok(capsys, *args, "--format", "tabular").splitlines()[0].split()[:2] == ["Workflow", "ID"]
    human = ok(capsys, "--engine", url, "workflow", "info", "div", "--format", "human").splitlines()
    assert human[0].split() == ["workflow_id", "div"] and ["status", "failed"] in [line.split() for line in human]
    # prettyjson is simpleflow's "json with --header", even after --no-header
    pretty = json.loads(ok(capsys, *args, "--no-header", "--format", "prettyjson"))
    assert pretty[0]["Workflow ID"] == "loc"
    assert json.loads(ok(capsys, *args, "--format", "json", "--no-header"))[0][0] == "loc"


def test_views_without_their_own_header_option_take_it_too(capsys, url):
    assert ok(capsys, "--engine", url, "limits", "list", "--format", "csv", "--no-header") == ""
    assert ok(capsys, "--engine", url, "schedule", "list", "--format", "json", "--header") .strip() == "[]"


@pytest.mark.parametrize("command", [
    ["workflow", "list"], ["workflow", "filter"], ["workflow", "info", "div"], ["workflow", "history", "div"],
    ["task", "info", "div", "x"], ["schedule", "list"], ["limits", "list"], ["info"],
])
def test_an_invalid_format_is_a_one_line_usage_error(capsys, url, command):
    code, out, err = run(capsys, "--engine", url, *command, "--format", "yaml")
    assert code == 2 and out == ""
    assert_one_line_error(code, err, "--format: unknown format 'yaml'")


def test_an_invalid_format_through_click_exits_2_on_one_line(url):
    result = CliRunner().invoke(cli, ["--engine", url, "workflow", "list", "--format", "xml"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: --format: unknown format 'xml' (expected one of table, json, prettyjson, csv, tsv, tabular, human)"
    ]


# -- info ----------------------------------------------------------------------------------------


def test_info_redacts_secrets_in_the_environment_and_passwords_in_urls(monkeypatch):
    monkeypatch.setenv("STEADYFLOW_URL", "postgresql://app:hunter2@db.internal:5432/prod")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI")
    monkeypatch.setenv("STEADYFLOW_ENCRYPTION_KEY", "k3y-material")
    monkeypatch.setenv("SIMPLEFLOW_API_TOKEN", "tok-123")
    monkeypatch.setenv("STEADYFLOW_DEBUG_LABEL", "visible")
    result = CliRunner().invoke(cli, ["--engine", "memory://", "info", "environment"])
    assert result.exit_code == 0, result.output
    out = result.output
    for secret in ("hunter2", "wJalrXUtnFEMI", "k3y-material", "tok-123"):
        assert secret not in out
    assert "STEADYFLOW_URL=postgresql://app:***@db.internal:5432/prod" in out
    assert "AWS_SECRET_ACCESS_KEY=<redacted>" in out and "SIMPLEFLOW_API_TOKEN=<redacted>" in out
    assert "STEADYFLOW_DEBUG_LABEL=visible" in out
    assert "# Versions" not in out  # only the section asked for


def test_info_sections_versions_and_settings_and_json(monkeypatch):
    monkeypatch.setenv("ACTIVITY_DEFAULT_TASK_LIST", "from-env")
    result = CliRunner().invoke(cli, ["--engine", "memory://", "info", "versions,settings"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("# Versions\nsteadyflow=")
    assert "python_version=" in result.output and "ACTIVITY_DEFAULT_TASK_LIST='from-env'" in result.output
    rows = json.loads(CliRunner().invoke(cli, ["--engine", "memory://", "info", "settings", "--format", "json"]).output)
    values = {r["name"]: r["value"] for r in rows}
    assert values["ACTIVITY_HEARTBEAT_TIMEOUT"] == 30.0 and {r["section"] for r in rows} == {"settings"}


def test_info_unknown_section_is_a_one_line_error(capsys):
    code, _, err = run(capsys, "--engine", "memory://", "info", "versions", "secrets")
    assert_one_line_error(code, err, "unknown info section 'secrets'")


@pytest.mark.parametrize("name, value, shown", [
    ("DATABASE_URL", "postgresql://u:p%40ss@h/db", "postgresql://u:***@h/db"),
    ("BROKERS", "amqp://a:b@x, redis://:pw@y:6379/0", "amqp://a:***@x, redis://:***@y:6379/0"),
    ("PLAIN_URL", "https://example.com/a@b", "https://example.com/a@b"),
    ("GITHUB_TOKEN", "ghp_x", "<redacted>"),
    ("db_password", "x", "<redacted>"),
])
def test_redact(name, value, shown):
    assert redact(name, value) == shown
