"""The `workflow` views (list, info, tasks, history, profile) as table, JSON and CSV, and the progress
line of `workflow result --wait` and `standalone`: `steadyflow.cli.main` in this process, on a
SQLite file that executions run with `run_local` left behind."""

from __future__ import annotations

import csv
import io
import json
import signal
import threading

import pytest

from steadyflow.cli import main
from steadyflow.cli.progress import Progress, ProgressTracker, Snapshot
from steadyflow.cli.views import PROFILE_COLUMNS, TASK_COLUMNS
from steadyflow.decisions import ScheduleActivityTask
from steadyflow.engines import open_engine
from steadyflow.engines.memory import MemoryEngine
from steadyflow.local import InlineDriver, run_local, start
from steadyflow.testing import WorkflowEnvironment
from tests.fixtures.features import Counter
from tests.fixtures.workflows import FanOut, Sequential, inc

LIST_COLUMNS = ["Workflow ID", "Workflow Type", "Status", "Run ID", "Started"]
SEQUENTIAL_IDS = [f"seq-{i}" for i in range(5)]


@pytest.fixture
def url(tmp_path):
    """A SQLite engine URL with five finished `Sequential` executions and one `FanOut`."""
    url = f"sqlite:///{tmp_path / 'views.db'}"
    engine = open_engine(url)
    try:
        for wid in SEQUENTIAL_IDS:
            run_local(Sequential, [3], engine=engine, workflow_id=wid)
        run_local(FanOut, [3], engine=engine, workflow_id="fan")
    finally:
        engine.close()
    return url


def sf(capsys, url: str, *args: str) -> str:
    """Run the command; its stdout (it must succeed)."""
    code = main(["--engine", url, *args])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


# -- formats -------------------------------------------------------------------------------------


def test_list_as_csv_has_a_header_row_and_one_row_per_execution(capsys, url):
    rows = csv_rows(sf(capsys, url, "workflow", "list", "--format", "csv"))
    assert rows[0] == LIST_COLUMNS
    assert [r[0] for r in rows[1:]] == ["fan", *reversed(SEQUENTIAL_IDS)]  # newest first
    assert all(r[2] == "CLOSED (completed)" and len(r[3]) == 32 for r in rows[1:])


def test_an_empty_csv_listing_still_has_its_header(capsys, url):
    assert csv_rows(sf(capsys, url, "workflow", "list", "--format", "csv", "--tag", "nobody")) == [LIST_COLUMNS]


def test_header_flags_are_accepted_and_no_header_drops_the_names(capsys, url):
    with_header = csv_rows(sf(capsys, url, "workflow.tasks", "fan", "--header", "--format", "csv"))
    assert with_header[0] == list(TASK_COLUMNS) and len(with_header) == 4
    bare = csv_rows(sf(capsys, url, "workflow.tasks", "fan", "--no-header", "--format", "csv"))
    assert bare == with_header[1:]
    as_lists = json.loads(sf(capsys, url, "workflow", "tasks", "fan", "--no-header", "--format", "json"))
    assert [row[0] for row in as_lists] == [row[0] for row in bare]
    table = sf(capsys, url, "workflow", "list", "--no-header")
    assert "Workflow ID" not in table and "seq-0" in table
    assert "Workflow ID" in sf(capsys, url, "workflow", "list", "--header")


def test_info_as_csv_is_one_row_under_the_field_names(capsys, url):
    header, row = csv_rows(sf(capsys, url, "workflow", "info", "seq-0", "--format", "csv"))
    info = dict(zip(header, row))
    assert info["workflow_id"] == "seq-0" and info["workflow_type.name"] == "sequential"
    assert info["status"] == "completed" and info["result"] == "3"
    assert float(info["execution_time"]) >= 0 and info["start_time"] and info["close_time"]
    values = json.loads(sf(capsys, url, "workflow", "info", "seq-0", "--format", "json", "--no-header"))
    assert values == row[:9] + [float(row[9])] + row[10:12] + [None, None]


def test_history_as_csv_has_every_event_with_its_attributes_in_full(capsys, url):
    events = json.loads(sf(capsys, url, "workflow", "history", "seq-1", "--format", "json"))
    rows = csv_rows(sf(capsys, url, "workflow", "history", "seq-1", "--format", "csv"))
    assert rows[0] == ["ID", "Event", "Time", "Attributes"]
    assert [(int(r[0]), r[1]) for r in rows[1:]] == [(e["eventId"], e["eventType"]) for e in events]
    assert json.loads(rows[1][3])["workflowId"] == "seq-1"


def test_tasks_as_csv_lists_each_activity_newest_first(capsys, url):
    rows = csv_rows(sf(capsys, url, "workflow", "tasks", "seq-2", "--format", "csv"))
    assert rows[0] == list(TASK_COLUMNS)
    assert [r[0].rsplit("-", 1)[1] for r in rows[1:]] == ["3", "2", "1"]
    assert {r[1] for r in rows[1:]} == {"completed"} and {r[4] for r in rows[1:]} == {"1"}
    assert len(csv_rows(sf(capsys, url, "workflow", "tasks", "seq-2", "--format", "csv", "--nb-tasks", "2"))) == 3


# -- paging --------------------------------------------------------------------------------------


def test_list_pages_are_disjoint_and_cover_every_execution(capsys, url):
    def page(*args: str) -> list[str]:
        return [r["Workflow ID"] for r in json.loads(sf(capsys, url, "workflow", "list", "--format", "json", *args))]

    pages = [page("--limit", "2", "--page", str(n)) for n in (1, 2, 3, 4)]
    assert [len(p) for p in pages] == [2, 2, 2, 0]
    seen = [wid for p in pages for wid in p]
    assert len(set(seen)) == 6 and seen == page()
    assert page("--limit", "2", "--offset", "2") == pages[1]
    assert page("--limit", "3", "--offset", "4") == seen[4:]
    assert page("--status", "completed", "--workflow-type", "fanout", "--page", "1") == ["fan"]


def test_list_refuses_offset_and_page_together(capsys, url):
    assert main(["--engine", url, "workflow", "list", "--offset", "1", "--page", "2"]) == 2
    assert "cannot be used together" in capsys.readouterr().err
    assert main(["--engine", url, "workflow", "list", "--page", "0"]) == 2


# -- profile -------------------------------------------------------------------------------------


def test_profile_percentages_of_sequential_activities_add_up_to_100(capsys, tmp_path):
    """Activities that each run 10 s (on the test clock) one after another fill the run's time,
    but for the milliseconds spent deciding."""
    url = f"sqlite:///{tmp_path / 'profile.db'}"
    env = WorkflowEnvironment(engine_url=url)

    def slow_inc(x):
        env.clock.advance(10)
        return x + 1

    env.fake_activity(inc, slow_inc)
    assert env.run(Sequential, 3) == 3
    wid = env.engine.list_executions(limit=1)[0].workflow_id
    env.engine.close()

    rows = json.loads(sf(capsys, url, "workflow", "profile", wid, "--format", "json"))
    assert [list(r) for r in rows] == [list(PROFILE_COLUMNS)] * 3
    assert sum(r["Percentage of total time"] for r in rows) == pytest.approx(100, abs=1)
    assert all(r["Time Running"] == pytest.approx(10, abs=0.5) and r["Last State"] == "completed" for r in rows)
    assert all(r["Time Scheduled"] < 0.5 and r["Attempt"] == 1 for r in rows)
    running = [r["Time Running"] for r in rows]
    assert running == sorted(running, reverse=True)  # longest first, as simpleflow sorts
    top = csv_rows(sf(capsys, url, "workflow.profile", wid, "--header", "--format", "csv", "-n", "1"))
    assert top[0] == list(PROFILE_COLUMNS) and len(top) == 2 and top[1][0] == rows[0]["Task"]


def test_profile_of_a_real_run_is_measured_against_the_whole_run(capsys, url):
    rows = json.loads(sf(capsys, url, "workflow", "profile", "fan", "--format", "json"))
    assert len(rows) == 3
    assert all(0 <= r["Percentage of total time"] <= 100 for r in rows)
    assert sum(r["Percentage of total time"] for r in rows) <= 100.5
    assert all(r["Time Scheduled"] >= 0 and r["Time Running"] >= 0 for r in rows)
    table = sf(capsys, url, "workflow", "profile", "fan")
    assert "Percentage of total time" in table and "in total (completed)" in table


# -- progress ------------------------------------------------------------------------------------


def test_progress_prints_a_plain_line_per_change_when_not_on_a_terminal(capsys):
    engine = MemoryEngine()
    engine.start_execution("p-1", "t", "1", "tl", None)
    task = engine.poll_decision_task("tl")
    engine.complete_decision_task(task.token, [ScheduleActivityTask(f"a-{i}", "x", "1", "tl", "{}") for i in (1, 2)])
    tracker = ProgressTracker(engine, "p-1")
    progress = Progress()
    assert not progress.live  # capsys's stderr is no terminal

    progress.update(tracker.poll())
    progress.update(tracker.poll())  # nothing changed: no second line
    first = engine.poll_activity_task("tl")
    progress.update(tracker.poll())
    engine.complete_activity_task(first.token, "1")
    second = engine.poll_activity_task("tl")
    engine.fail_activity_task(second.token, "boom", None)
    snapshot = tracker.poll()
    progress.update(snapshot)
    progress.close()

    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("p-1: 0/2 tasks done, 0 running, 0 failed, ") and lines[0].endswith(" elapsed")
    assert "0/2 tasks done, 1 running, 0 failed" in lines[1]
    assert "1/2 tasks done, 0 running, 1 failed" in lines[2]
    assert snapshot.counts == (1, 2, 0, 1) and not snapshot.closed


def test_progress_follows_continue_as_new_to_the_last_run():
    engine = MemoryEngine()
    info = run_local(Counter, [0, 3], engine=engine, workflow_id="counter")
    first_run = engine.list_executions(limit=10)[-1].run_id
    snapshot = ProgressTracker(engine, "counter", first_run).poll()
    assert snapshot.runs == 4 and snapshot.run_id == info.run_id and snapshot.status == "completed"
    assert snapshot.line().endswith(", run 4, completed")


def test_progress_on_a_terminal_leaves_a_last_plain_line():
    stream = io.StringIO()
    with Progress(stream, live=True) as progress:
        progress.update(Snapshot("w", "r", scheduled=3, done=3, elapsed=1.5, status="completed"))
    assert stream.getvalue().strip().endswith("w: 3/3 tasks done, 0 running, 0 failed, 1.5s elapsed, completed")


def test_result_wait_prints_only_the_result_on_stdout_and_progress_on_stderr(capsys, tmp_path):
    url = f"sqlite:///{tmp_path / 'wait.db'}"
    engine = open_engine(url)
    wid, _ = start(engine, Sequential, [3], task_list="later")

    def run_it_soon() -> None:
        worker = open_engine(url)
        try:
            threading.Event().wait(0.3)
            InlineDriver(worker, "later", (Sequential,)).run_until(lambda: not worker.describe_execution(wid).is_open)
        finally:
            worker.close()

    driver = threading.Thread(target=run_it_soon)
    driver.start()
    try:
        code = main(["--engine", url, "workflow", "result", wid, "--wait", "--timeout", "60"])
    finally:
        driver.join(timeout=60)
        engine.close()
    out = capsys.readouterr()
    assert code == 0, out.err
    assert out.out == "3\n"
    lines = out.err.splitlines()
    assert lines[0].startswith(f"{wid}: 0/0 tasks done")
    assert lines[-1].startswith(f"{wid}: 3/3 tasks done, 0 running, 0 failed, ") and lines[-1].endswith(", completed")

    assert main(["--engine", url, "workflow", "result", wid, "--wait", "--no-progress"]) == 0
    assert capsys.readouterr() == ("3\n", "")


def test_result_wait_timeout_says_so_after_the_progress(capsys, tmp_path):
    url = f"sqlite:///{tmp_path / 'never.db'}"
    engine = open_engine(url)
    wid, _ = start(engine, Sequential, [3], task_list="nobody")
    engine.close()
    with pytest.raises(SystemExit) as exc:
        main(["--engine", url, "workflow", "result", wid, "--wait", "--timeout", "0.2"])
    assert exc.value.code == 1
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{wid}: 0/0 tasks done, 0 running, 0 failed, ")
    assert lines[1] == f"Error: workflow {wid} is still running after 0.2s"


@pytest.fixture
def restore_signals():
    """`standalone` installs SIGTERM/SIGINT handlers; give pytest its own back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def test_standalone_shows_progress_on_stderr_and_the_result_on_stdout(capsys, tmp_path, restore_signals):
    url = f"sqlite:///{tmp_path / 'standalone.db'}"
    code = main(["--engine", url, "standalone", "tests.fixtures.workflows.Sequential", "-i", "[2]",
                 "--workflow-id", "sa-1", "--processes", "1"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert out.out == "2\n"
    progress = [line for line in out.err.splitlines() if line.startswith("sa-1: ")]
    assert progress and progress[-1].startswith("sa-1: 2/2 tasks done, 0 running, 0 failed, ")
    assert progress[-1].endswith(", completed")
