"""One test per bug the chaos and fuzz suites (`tests/chaos/`, `tests/test_fuzz.py`) found.

Each names the suite and the input or fault that showed it, and fails without its fix.
"""

from __future__ import annotations

import json
import threading

import pytest

from steadyflow.cli import main
from steadyflow.decider import Decider
from steadyflow.engines import open_engine
from steadyflow.errors import EngineUnavailable, PayloadError, WorkflowError
from steadyflow.local import start
from steadyflow.tasks import body
from steadyflow.tasks.errors import BadMessage
from steadyflow.testing import Replayer, load_history
from tests.fixtures import workflows as wf

DEEP = 5000
"""Deeper than Python's recursion limit: `json.loads` raises RecursionError, not ValueError."""


# -- chaos, sqlite, disk_full: a decider exited on "database or disk is full" ----------------------


class Unavailable:
    """An engine whose first polls fail as a full disk or a dropped server makes them fail."""

    def __init__(self, engine, failures: int, stop: threading.Event) -> None:
        self._engine, self.failures, self.polls, self.stop = engine, failures, 0, stop

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def poll_decision_task(self, *args, **kwargs):
        self.polls += 1
        if self.polls <= self.failures:
            raise EngineUnavailable("cannot use SQLite database chaos.db: database or disk is full")
        self.stop.set()
        return None


def test_decider_waits_out_an_unavailable_engine_instead_of_exiting(caplog):
    stop = threading.Event()
    engine = Unavailable(open_engine("memory://"), failures=3, stop=stop)
    Decider(engine, "regressions", [wf.Sequential]).run(stop, poll_wait=0)
    assert engine.polls == 4  # three failures survived, then a normal poll
    assert caplog.text.count("engine unavailable") == 3


# -- fuzz, replayer: malformed histories raised ValueError, TypeError, AttributeError ---------------


@pytest.mark.parametrize(
    ("history", "message"),
    [
        ('[{"eventId": "", "eventType": "WorkflowExecutionStarted"}]', "eventId ''"),
        ('[{"eventId": null, "eventType": "WorkflowExecutionStarted"}]', "eventId None"),
        ('[{"eventId": 1}]', "has no eventType"),
        ('[{"eventId": 1, "eventType": "WorkflowExecutionStarted", "attributes": []}]', "not an object"),
        ('[{"eventId": 1, "eventType": "X", "eventTimestamp": "source"}]', "eventTimestamp 'source'"),
        ('[{"eventId": 1, "eventType": "ActivityTaskCompleted", "attributes": {"scheduledEventId": [1]}}]',
         "scheduledEventId of event 1 (ActivityTaskCompleted) must be a whole number"),
        ('[{"eventId": 1, "eventType": "ActivityTaskScheduled", "attributes": {"activityType": null}}]',
         "activityType of event 1 (ActivityTaskScheduled) must be an object"),
        ('[{"eventId": 1, "eventType": "ActivityTaskScheduled", "attributes": {"input": {"a": 1}}}]',
         "input of event 1 (ActivityTaskScheduled) must be text"),
        ('[{"eventId": 1, "eventType": "WorkflowExecutionStarted", "attributes": {"tagList": true}}]',
         "tagList of event 1 (WorkflowExecutionStarted) must be a list"),
        ("[1, 2]", "an event must be a JSON object, not int"),
        ('[{"eventId": 1,', "not JSON"),
        ("[" * DEEP, "not JSON"),
    ],
)
def test_malformed_history_is_refused_with_a_workflow_error_naming_the_problem(history, message):
    with pytest.raises(WorkflowError, match="malformed history") as caught:
        Replayer([wf.Sequential]).replay(history)
    assert message in str(caught.value)


def test_a_history_that_is_not_a_list_is_refused(tmp_path):
    path = tmp_path / "history.json"
    path.write_text('{"eventId": 1}')
    with pytest.raises(WorkflowError, match="a JSON list of events is expected, not dict"):
        load_history(path)
    path.write_bytes(b"\xff\xfe[")
    with pytest.raises(WorkflowError, match="is not UTF-8 text"):
        load_history(path)


def test_cli_replay_of_a_malformed_history_is_one_line_and_exit_status_1(tmp_path, capsys):
    path = tmp_path / "history.json"
    path.write_text('[{"eventId": "", "eventType": "WorkflowExecutionStarted"}]')
    code = main(["workflow", "replay", str(path), "--workflow", "tests.fixtures.workflows.Sequential"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip() == ("Error: malformed history: WorkflowExecutionStarted has eventId '', "
                           "not a whole number >= 1")


def test_saved_real_histories_still_load_and_replay():
    engine = open_engine("memory://")
    from steadyflow.local import run_local

    done = run_local(wf.Sequential, [3], engine=engine)
    saved = json.dumps([e.to_json() for e in engine.get_history(done.workflow_id)])
    loaded, stored = load_history(saved), engine.get_history(done.workflow_id)
    assert [(e.event_id, e.event_type, e.attributes) for e in loaded] == [
        (e.event_id, e.event_type, e.attributes) for e in stored
    ]
    Replayer([wf.Sequential]).replay(saved)


# -- fuzz, CLI --input and task bodies: nesting past the recursion limit gave a RecursionError --------


def test_cli_input_nested_past_the_recursion_limit_is_a_usage_error(capsys):
    code = main(["--engine", "memory://", "workflow", "start", "tests.fixtures.workflows.Sequential",
                 "--input", "[" * DEEP + "]" * DEEP])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("Error: --input is not valid JSON: maximum recursion depth exceeded") and "\n" not in err


def test_task_body_nested_past_the_recursion_limit_is_a_bad_message():
    with pytest.raises(BadMessage, match="message body is not valid JSON"):
        body.decode('{"task": "t", "kwargs": {"x": ' + "[" * DEEP + "]" * DEEP + "}}")


# -- fuzz, dashboard: a deep JSON body or a refused signal payload was a 500 -------------------------


@pytest.fixture
def dashboard():
    pytest.importorskip("starlette", reason="the dashboard needs starlette: pip install -e '.[test]'")
    from steadyflow.ui import create_app
    from tests.fixtures import features
    from tests.test_fuzz import Asgi

    engine = open_engine("memory://")
    start(engine, features.Patient, workflow_id="waiting")
    yield Asgi(create_app(engine, token="t")), engine
    engine.close()


@pytest.mark.parametrize(("depth", "answer"), [(300, "signal input refused: payload nests deeper than 200"),
                                               (DEEP, "body is not valid JSON")])
def test_dashboard_refuses_a_deeply_nested_signal_with_400_and_stores_nothing(dashboard, depth, answer):
    app, engine = dashboard
    headers = {"authorization": "Bearer t", "origin": "http://testserver", "content-type": "application/json"}
    payload = '{"name": "bomb", "input": ' + "[" * depth + "]" * depth + "}"
    status, page = app.request("POST", "/api/executions/waiting/signal", headers=headers, body=payload.encode())
    assert status == 400 and answer in json.loads(page)["error"]
    assert all(e.event_type != "WorkflowExecutionSignaled" for e in engine.get_history("waiting"))


# -- payload bomb: 300-deep values were stored, then broke decoding deeper in the stack --------------


def test_a_payload_nested_deeper_than_the_limit_is_refused_before_it_is_stored(monkeypatch):
    engine = open_engine("memory://")
    bomb: list = []
    for _ in range(300):
        bomb = [bomb]
    with pytest.raises(PayloadError, match="nests deeper than 200 levels"):
        start(engine, wf.Sequential, [bomb], workflow_id="bomb")
    assert engine.list_executions(limit=10) == []
    monkeypatch.setenv("STEADYFLOW_MAX_NESTING", "400")
    start(engine, wf.Sequential, [bomb], workflow_id="bomb")  # the limit is a setting
    assert engine.describe_execution("bomb").is_open


# -- flood (tests/chaos/test_limits.py): a claim sorted the whole backlog ---------------------------


def test_claiming_from_a_deep_sqlite_queue_walks_the_ready_index_instead_of_sorting_the_backlog(tmp_path):
    """With the (queue, visible_at) index of the queue limits, SQLite planned the claim as "every
    visible row, then a sort": 30 ms a claim with 100,000 queued, 5 ms a task over a flood."""
    from steadyflow.tasks import TaskManager

    manager = TaskManager(f"sqlite:///{tmp_path / 'deep.db'}?queue=deep")
    for first in range(0, 20_000, 1000):
        manager.send_many("noop", [{"n": n} for n in range(first, first + 1000)])
    queue = manager.backend
    conn = queue._connection()
    ticks = []
    conn.set_progress_handler(lambda: ticks.append(1), 1000)  # one tick per 1,000 SQLite VM steps
    try:
        received = queue.receive(max_messages=10, wait_time=0, visibility_timeout=30)
    finally:
        conn.set_progress_handler(None, 1000)
    assert len(received) == 10
    assert len(ticks) < 100, f"{len(ticks) * 1000:,} VM steps for one claim: the backlog was scanned"
