"""Typed search attributes: set at start, upserted by workflows (once, whatever the replays), listed
with where-expressions that give the same answers on the memory, SQLite and PostgreSQL engines.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import subprocess
import sys
import threading
import uuid
from contextlib import contextmanager

import pytest

from steadyflow import AsyncClient, Client, Workflow, WorkflowFailed
from steadyflow import history as h
from steadyflow.decisions import CompleteWorkflowExecution, RecordMarker
from steadyflow.engines import open_engine, sql_schema
from steadyflow.local import InlineDriver
from steadyflow.search import SEARCH_MARKER, SearchAttributeError, SearchQueryError, parse_where
from tests.fixtures.workflows import square

UTC = dt.timezone.utc


class Tracked(Workflow):
    """Upserts its stage before and after an activity; removes `Flagged`, set at start."""

    def run(self, order):
        self.upsert_search_attributes(Stage="started", Order=order)
        total = self.submit(square, order).result
        self.upsert_search_attributes(Stage="paid", Total=float(total), PaidAt=self.now(), Flagged=None)
        return total


class Rolling(Workflow):
    """Tags itself with its generation and continues as new once."""

    def run(self, generation):
        if generation == 0:
            self.upsert_search_attributes(Generation=0)
            self.continue_as_new(1)
        return generation


class BadUpsert(Workflow):
    def run(self):
        self.upsert_search_attributes(Items=[1, 2])


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def engine(request, tmp_path):
    """Each engine; PostgreSQL on a fresh schema (skipped when no server answers, as everywhere)."""
    if request.param == "postgres":
        url = request.getfixturevalue("pg_schema").url
    else:
        url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'sf.db'}"
    eng = open_engine(url)
    yield eng
    eng.close()


@contextmanager
def driving(engine, task_list, cache=True):
    """A decider (with or without its executor cache) and inline activities, in a thread."""
    driver = InlineDriver(engine, task_list, workflows=(Tracked, Rolling, BadUpsert))
    if not cache:
        driver.decider.cache = None  # every decision replays the whole history
    stop, errors = threading.Event(), []

    def loop():
        try:
            while not stop.is_set():
                if not driver.step():
                    stop.wait(0.002)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield driver
    finally:
        stop.set()
        thread.join(30)
    if errors:
        raise errors[0]


def markers(engine, workflow_id, run_id=None):
    return [
        json.loads(e.attributes["details"])
        for e in engine.get_history(workflow_id, run_id)
        if e.event_type == h.MARKER_RECORDED and e.attributes.get("markerName") == SEARCH_MARKER
    ]


def ids(engine, where, **kwargs):
    return sorted(i.workflow_id for i in engine.list_executions(where=where, **kwargs))


# -- set at start, upserted by the workflow ---------------------------------------------------------


def test_attributes_given_at_start_are_described_and_recorded_in_the_started_event(engine):
    client = Client(engine=engine)
    paid = dt.datetime(2026, 5, 1, 12, 30, tzinfo=UTC)
    attrs = {"Customer": "acme", "Amount": 120, "Ratio": 0.5, "Express": True, "PaidAt": paid}
    handle = client.start(Tracked, 3, workflow_id="o-1", task_list="nobody", search_attributes=attrs)
    assert handle.describe().search_attributes == attrs
    started = engine.get_history("o-1")[0].attributes["searchAttributes"]
    assert started["PaidAt"] == {"type": "datetime", "value": "2026-05-01T12:30:00+00:00"}
    assert started["Express"] == {"type": "bool", "value": True}
    assert [i.workflow_id for i in client.list(where="Customer = 'acme' AND Amount >= 120")] == ["o-1"]


@pytest.mark.parametrize("cache", [True, False], ids=["cached", "replayed"])
def test_upserts_from_a_workflow_are_indexed_once_whether_the_decider_replays_or_not(engine, cache):
    client = Client(engine=engine)
    task_list = f"sa-{uuid.uuid4().hex[:6]}"
    start = {"task_list": task_list, "search_attributes": {"Flagged": True, "Stage": "new"}}
    with driving(engine, task_list, cache=cache):
        first = client.start(Tracked, 4, workflow_id="t-4", **start)
        other = client.start(Tracked, 5, workflow_id="t-5", **start)
        assert first.result(timeout=30) == 16 and other.result(timeout=30) == 25
    info = first.describe()
    assert info.search_attributes["Stage"] == "paid" and info.search_attributes["Order"] == 4
    assert info.search_attributes["Total"] == 16.0 and "Flagged" not in info.search_attributes
    assert info.search_attributes["PaidAt"].tzinfo is not None
    # Two upserts ran, so two markers: replays matched them and recorded nothing more.
    assert [sorted(m) for m in markers(engine, "t-4")] == [
        ["Order", "Stage"],
        ["Flagged", "PaidAt", "Stage", "Total"],
    ]
    assert ids(engine, "Stage = 'paid' AND Total > 20") == ["t-5"]
    assert ids(engine, "Order IN (4, 5) AND NOT Total = 25") == ["t-4"]
    assert ids(engine, f"Flagged = true AND TaskList = '{task_list}'") == []


def test_async_client_starts_with_attributes_and_lists_by_them(tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path / 'sf.db'}")

    async def main():
        client = AsyncClient(engine=engine)
        await client.start(
            Tracked, 2, workflow_id="as-1", task_list="nobody", search_attributes={"Region": "eu"}
        )
        await client.start(
            Tracked, 3, workflow_id="as-2", task_list="nobody", search_attributes={"Region": "us"}
        )
        return [info.workflow_id async for info in client.list(where="Region IN ('eu', 'apac')")]

    assert asyncio.run(main()) == ["as-1"]
    with pytest.raises(SearchQueryError):  # checked when the iteration starts, before any query
        list(Client(engine=engine).list(where="Region ="))
    engine.close()


def test_a_continued_run_keeps_its_predecessors_attributes(engine):
    client = Client(engine=engine)
    task_list = f"sa-{uuid.uuid4().hex[:6]}"
    with driving(engine, task_list):
        handle = client.start(
            Rolling, 0, workflow_id="roll", task_list=task_list, search_attributes={"Team": "a"}
        )
        assert handle.result(timeout=30) == 1
    runs = engine.list_executions(where="Team = 'a'")
    assert sorted(r.status for r in runs) == ["completed", "continued_as_new"]
    assert all(r.search_attributes == {"Generation": 0, "Team": "a"} for r in runs)


def test_a_malformed_search_marker_is_refused_before_anything_is_applied(engine):
    engine.start_execution("m-1", "T", "1", "tl", None)
    task = engine.poll_decision_task("tl")
    before = len(engine.get_history("m-1"))
    bad = RecordMarker(SEARCH_MARKER, json.dumps({"n": {"type": "int", "value": "seven"}}))
    with pytest.raises(SearchAttributeError, match="'n'"):
        engine.complete_decision_task(task.token, [bad, CompleteWorkflowExecution("done")])
    assert len(engine.get_history("m-1")) == before and engine.describe_execution("m-1").is_open


def test_an_upsert_of_an_unsupported_type_fails_the_workflow_with_the_reason(tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path / 'sf.db'}")
    with driving(engine, "bad"):
        handle = Client(engine=engine).start(BadUpsert, workflow_id="bad-1", task_list="bad")
        with pytest.raises(WorkflowFailed) as info:
            handle.result(timeout=30)
    assert "search attribute 'Items': list is not a search attribute type" in info.value.reason
    assert (
        markers(engine, "bad-1") == []
        and engine.list_executions(where="WorkflowId = 'bad-1'")[0].status == "failed"
    )
    engine.close()


# -- where-expressions, the same on every engine ----------------------------------------------------

ROWS = {
    "a": {
        "Customer": "acme",
        "Amount": 120,
        "Ratio": 0.25,
        "Express": True,
        "Due": dt.datetime(2026, 1, 10, tzinfo=UTC),
    },
    "b": {
        "Customer": "bolt",
        "Amount": 80,
        "Ratio": 1.5,
        "Express": False,
        "Due": dt.datetime(2026, 3, 1, tzinfo=UTC),
    },
    "c": {"Customer": "acme", "Amount": 5},
    "d": {"Customer": "x'; DROP TABLE steadyflow_executions; --", "Amount": -3, "Note": "100%s done"},
    "e": {},
}
QUERIES = [
    ("Customer = 'acme'", "ac"),
    ('Customer != "acme"', "bd"),
    ("Amount > 79", "ab"),
    ("Amount >= 80 AND Amount < 120", "b"),
    ("Amount > 79.5", "ab"),
    ("Ratio < 1", "a"),
    ("Ratio >= 1", "b"),
    ("Express = true", "a"),
    ("NOT Express = true", "bcde"),
    ("Express = false OR Amount <= 5", "bcd"),
    ("Customer = 'acme' AND (Amount > 100 OR Amount < 10)", "ac"),
    ("Customer IN ('bolt', 'nobody') OR Amount = -3", "bd"),
    ("Amount NOT IN (120, 80)", "cd"),
    ("Due > 2026-02-01", "b"),
    ("Due <= '2026-01-10T00:00:00Z'", "a"),
    ("Due >= 2026-01-10T01:00:00+02:00", "ab"),
    ("Customer = 'x\\'; DROP TABLE steadyflow_executions; --'", "d"),
    ("Note = '100%s done'", "d"),
    ("WorkflowType = 'Orders' AND ExecutionStatus = 'open'", "abcde"),
    ("WorkflowId IN ('a', 'e') AND StartTime > 2020-01-01", "ae"),
    ("CloseTime > 2020-01-01", ""),
    ("NOT CloseTime > 2020-01-01 AND NOT Customer = 'acme'", "bde"),
]


def test_where_expressions_give_the_same_answers_on_every_engine(engine):
    for wid, attrs in ROWS.items():
        engine.start_execution(wid, "Orders", "1", "q", None, search_attributes=attrs or None)
    answers = {where: "".join(ids(engine, where)) for where, _ in QUERIES}
    assert answers == dict(QUERIES)
    assert ids(engine, "Amount > 0", status="open", limit=1) == ["c"]  # newest first, then the limit
    assert engine.describe_execution("d").search_attributes["Note"] == "100%s done"
    assert len(engine.list_executions()) == 5  # the injection attempt was a value like any other


BAD_WHERE = [
    ("", "empty where-expression"),
    ("Amount >", "column 9: expected a value"),
    ("Amount == 3", "column 9: expected a value"),
    ("Customer = 'acme", "unterminated string"),
    ("(Amount > 3", "expected ')'"),
    ("Amount > 3 AND", "expected an attribute name"),
    ("Amount > 3; DROP TABLE steadyflow_executions", "unexpected character ';'"),
    ("Amount IN ()", "expected a value"),
    ("Amount = 99999999999999999999", "does not fit in 64 bits"),
    ("Due > 2026-13-45", "not a valid date"),
    ("Amount = 'lots'", "type mismatch: search attribute 'Amount' holds int values; 'lots' is a string"),
    ("Express > false", "'>' does not apply to bool attribute 'Express'"),
    ("Customer < 'b'", "'<' does not apply to keyword attribute 'Customer'"),
    ("Due > 'soon'", "holds datetime values; 'soon' is a string"),
    ("StartTime = 3", "holds datetime values; 3 is an int"),
    ("Custmer = 'acme'", "unknown search attribute 'Custmer'"),
]


@pytest.mark.parametrize("where, message", BAD_WHERE, ids=[w or "empty" for w, _ in BAD_WHERE])
def test_a_bad_where_expression_is_one_clear_line(where, message):
    engine = open_engine("memory://")
    engine.start_execution("a", "Orders", "1", "q", None, search_attributes=ROWS["a"])
    with pytest.raises(SearchQueryError) as info:
        engine.list_executions(where=where)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_where_expressions_and_types_fail_the_same_on_sql_engines(tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path / 'sf.db'}")
    engine.start_execution("a", "Orders", "1", "q", None, search_attributes=ROWS["a"])
    for where, message in BAD_WHERE:
        with pytest.raises(SearchQueryError) as info:
            engine.list_executions(where=where)
        assert message in str(info.value)
    engine.close()


@pytest.mark.parametrize(
    "attrs, message",
    [
        ({"Items": [1, 2]}, "list is not a search attribute type"),
        ({"a; DROP TABLE x": 1}, "bad search attribute name"),
        ({"1st": 1}, "bad search attribute name"),
        ({"WorkflowId": "x"}, "is reserved"),
        ({"Big": 2**63}, "does not fit in 64 bits"),
        ({"Ratio": float("nan")}, "not a finite number"),
        ({"Text": "x" * 3000}, "longer than 2048"),
    ],
)
def test_bad_attributes_at_start_are_refused_and_nothing_is_started(tmp_path, attrs, message):
    engine = open_engine(f"sqlite:///{tmp_path / 'sf.db'}")
    with pytest.raises(SearchAttributeError) as info:
        Client(engine=engine).start(Tracked, 1, workflow_id="x", search_attributes=attrs)
    assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(SearchAttributeError):
        engine.start_execution("x", "T", "1", "q", None, search_attributes=attrs)
    assert engine.list_executions() == []
    engine.close()


def test_the_sql_of_a_where_expression_carries_values_and_names_only_as_parameters():
    where = parse_where("Customer = 'a\\' OR 1=1 --' OR Amount IN (1, 2)")
    sql, params = where.sql({"Customer": {"keyword"}, "Amount": {"int"}})
    assert "1=1" not in sql and "Customer" not in sql and "Amount" not in sql and "'" not in sql
    assert params == ["Customer", "keyword", "a' OR 1=1 --", "Amount", "int", 1, 2]


# -- command line, migration -------------------------------------------------------------------------


def _cli(*args, url):
    env = {"STEADYFLOW_URL": url, "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    return subprocess.run(
        [sys.executable, "-m", "steadyflow", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_workflow_list_where_and_info_on_the_command_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'sf.db'}"
    engine = open_engine(url)
    for wid in "abc":
        engine.start_execution(wid, "Orders", "1", "q", None, search_attributes=ROWS[wid])
    engine.close()
    found = _cli(
        "workflow", "list", "--where", "Customer = 'acme' AND Amount > 10", "--format", "json", url=url
    )
    assert found.returncode == 0, found.stderr
    assert [row["Workflow ID"] for row in json.loads(found.stdout)] == ["a"]
    info = _cli("workflow", "info", "a", "--format", "json", url=url)
    assert json.loads(info.stdout)["search_attributes"]["Due"] == "2026-01-10T00:00:00+00:00"
    bad = _cli("workflow", "list", "--where", "Amount > 'x'", url=url)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().count("\n") == 0 and "type mismatch" in bad.stderr


def test_a_version_5_database_is_upgraded_to_6_and_then_indexes_attributes(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    with monkeypatch.context() as old:
        old.setattr(sql_schema, "MIGRATIONS", sql_schema.MIGRATIONS[:5])
        old.setattr(sql_schema, "SCHEMA_VERSION", 5)
        open_engine(f"sqlite:///{path}").close()
    tables = {
        r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    assert "steadyflow_search_attributes" not in tables
    engine = open_engine(f"sqlite:///{path}", prepare=False)
    assert engine.schema_version() == 5
    assert engine.upgrade() == [6]
    engine.start_execution("a", "Orders", "1", "q", None, search_attributes={"Amount": 1})
    assert ids(engine, "Amount = 1") == ["a"]
    engine.close()


def test_workflow_start_takes_typed_search_attributes(tmp_path, capsys):
    from steadyflow.cli import main

    url = f"sqlite:///{tmp_path / 'sf.db'}"
    code = main(["--engine", url, "workflow", "start", "tests.fixtures.workflows.FanOut", "--input", "[2]",
                 "--search-attribute", "Customer=acme", "--search-attribute", "Amount=12",
                 "--search-attribute", "Due=2026-01-10T00:00:00Z", "--search-attribute", "Vip=true",
                 "--search-attribute", 'Code="42"'])
    assert code == 0, capsys.readouterr().err
    workflow_id = capsys.readouterr().out.split()[0]
    engine = open_engine(url)
    try:
        attributes = engine.describe_execution(workflow_id).search_attributes
        assert attributes == {"Customer": "acme", "Amount": 12, "Vip": True, "Code": "42",
                              "Due": dt.datetime(2026, 1, 10, tzinfo=dt.timezone.utc)}
        assert ids(engine, "Amount > 10 AND Vip = true AND Code = '42' AND Due < '2026-02-01'") == [workflow_id]
    finally:
        engine.close()
    for bad, message in (("Amount", "expected NAME=VALUE"), ("=3", "expected NAME=VALUE"),
                         ("Amount=[1]", "not a search attribute type")):
        assert main(["--engine", url, "workflow", "start", "tests.fixtures.workflows.FanOut",
                     "--search-attribute", bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
