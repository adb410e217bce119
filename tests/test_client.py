"""The Python client (`steadyflow.Client`, `AsyncClient`) as application code uses it, on the
memory and SQLite engines (`real_engine`) and on PostgreSQL (`pg_schema`).

Executions are decided and their activities run by an `InlineDriver` in a background thread, the
way a decider and a worker would serve a web application from other processes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

import steadyflow
from steadyflow import (
    AsyncClient,
    Client,
    ConfigError,
    EngineError,
    ExecutionClosed,
    ResultTimeout,
    SteadyflowError,
    UnknownExecution,
    Workflow,
    WorkflowAlreadyStarted,
    WorkflowFailed,
    WorkflowHandle,
    WorkflowNotFound,
)
from steadyflow.client import AsyncWorkflowHandle
from steadyflow.engines import open_engine
from steadyflow.history import format_timestamp
from steadyflow.local import InlineDriver
from tests.fixtures.features import Counter, Stateful
from tests.fixtures.workflows import FanOut, Sequential, Uncaught


class Slow(Workflow):
    """Sleeps on a durable timer, then returns `value`."""

    def run(self, seconds, value):
        self.sleep(seconds)
        return value


class Rolling(Workflow):
    """Continues as new once, then waits for signal `go`."""

    def run(self, generation):
        if generation == 0:
            self.continue_as_new(1)
        return self.wait_signal("go").result


@contextmanager
def running(engine, task_list=None):
    """A decider and inline activities for `task_list` (default: a fresh one), in a thread;
    yields the task list."""
    task_list = task_list or f"client-{uuid.uuid4().hex[:8]}"
    driver = InlineDriver(engine, task_list)
    stop = threading.Event()
    errors = []

    def loop():
        try:
            while not stop.is_set():
                if not driver.step():
                    stop.wait(0.002)
        except BaseException as exc:  # surfaced by the test, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=loop, name="inline-driver", daemon=True)
    thread.start()
    try:
        yield task_list
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    if errors:
        raise errors[0]


def checkout(client: Client, order: int, task_list: str) -> dict:
    """A web handler: start an execution for the request, answer with its result."""
    handle = client.start(Sequential, 2, start=order, workflow_id=f"order-{order}", task_list=task_list, tags=["web"])
    return {"order": order, "total": handle.result(timeout=120)}


def test_web_handler_starts_100_executions_and_collects_their_results(real_engine):
    client = Client(engine=real_engine)
    with running(real_engine) as task_list, ThreadPoolExecutor(max_workers=8) as requests:
        answers = list(requests.map(lambda order: checkout(client, order, task_list), range(100)))
    assert answers == [{"order": i, "total": i + 2} for i in range(100)]
    done = list(client.list(status="completed", tag="web", page_size=30))
    assert len(done) == 100 and {e.workflow_id for e in done} == {f"order-{i}" for i in range(100)}


def test_result_timeout_raises_and_leaves_the_execution_running(real_engine, monkeypatch):
    client = Client(engine=real_engine)
    looks = []
    describe = real_engine.describe_execution
    monkeypatch.setattr(real_engine, "describe_execution", lambda *a: looks.append(a) or describe(*a))
    with running(real_engine) as task_list:
        handle = client.start(Slow, 0.8, "late", task_list=task_list)
        began = time.monotonic()
        with pytest.raises(ResultTimeout) as caught:
            handle.result(timeout=0.2)
        waited = time.monotonic() - began
        assert 0.2 <= waited < 1.5
        assert isinstance(caught.value, TimeoutError) and isinstance(caught.value, SteadyflowError)
        assert "still running after 0.2s" in str(caught.value) and "goes on" in str(caught.value)
        assert caught.value.workflow_id == handle.workflow_id and caught.value.run_id == handle.run_id
        assert len(looks) <= 20, "waiting must back off, not spin"  # 1 ms growing by half: about 13 looks
        assert handle.describe().is_open
        assert handle.result(timeout=30) == "late"
    assert handle.describe().status == "completed"
    with pytest.raises(ResultTimeout, match="use|still running"):  # timeout=0 looks once
        client.start(Slow, 5, "x", task_list="nobody").result(timeout=0)


def test_failure_and_termination_surface_as_workflow_failed_with_reason(real_engine):
    client = Client(engine=real_engine)
    with running(real_engine) as task_list:
        failing = client.start(Uncaught, task_list=task_list)
        with pytest.raises(WorkflowFailed) as caught:
            failing.result(timeout=30)
        assert caught.value.status == "failed" and caught.value.workflow_id == failing.workflow_id
        assert "ValueError: nobody catches me" in caught.value.reason
        assert "ValueError" in json.dumps(caught.value.details)  # decoded details, with the traceback

        waiting = client.start(Stateful, task_list=task_list)
        waiting.terminate("no longer needed")
        with pytest.raises(WorkflowFailed, match="terminated: no longer needed") as caught:
            waiting.result(timeout=30)
        assert caught.value.status == "terminated" and caught.value.reason == "no longer needed"
        with pytest.raises(ExecutionClosed, match="terminated"):
            waiting.signal("add", 1)
        assert waiting.history()[-1].event_type == "WorkflowExecutionTerminated"


def test_signal_query_and_cancel_through_handles(real_engine):
    client = Client(engine=real_engine)
    # Signalled and queried before any decider runs: a signal that arrives while a decision task
    # is in flight only shows in queries once that decision completes (see the replay code).
    adder = client.start(Stateful, task_list="later", workflow_id="adder")
    adder.signal("add", 4)
    adder.signal("add", 6)
    assert adder.query("items") == [4, 6]  # answered from the latest state, signals included
    assert client.get_handle("adder").query("total") == 10
    with running(real_engine, "later") as task_list:
        adder.signal("add", "stop")
        assert adder.result(timeout=30) == [4, 6]

        other = client.start(Stateful, task_list=task_list)
        other.signal("add", 1)
        other.cancel()
        with pytest.raises(WorkflowFailed) as caught:
            other.result(timeout=30)
        assert caught.value.status == "canceled"
        signals = [e for e in other.history() if e.event_type == "WorkflowExecutionSignaled"]
        assert signals[0].attributes["signalName"] == "add"
        assert other.describe().cancel_requested


def test_handles_follow_continue_as_new(real_engine):
    client = Client(engine=real_engine)
    with running(real_engine) as task_list:
        counter = client.start(Counter, 0, 3, task_list=task_list)
        assert counter.result(timeout=30) == 3
        last = counter.describe()
        assert last.status == "completed" and last.run_id != counter.run_id
        first = client.get_handle(counter.workflow_id, counter.run_id)  # pinned to that run
        assert first.describe().status == "continued_as_new" and first.result() == 3
        assert len(list(client.list(workflow_type=last.workflow_type))) == 4

        rolling = client.start(Rolling, 0, task_list=task_list)
        deadline = time.monotonic() + 30
        while rolling.describe().run_id == rolling.run_id and time.monotonic() < deadline:
            time.sleep(0.01)
        rolling.signal("go", "now")  # the first run is closed: the signal goes to its successor
        assert rolling.result(timeout=30) == {"args": ["now"], "kwargs": {}}
        with pytest.raises(ExecutionClosed, match="continued_as_new"):
            client.get_handle(rolling.workflow_id, rolling.run_id).signal("go")


def test_list_pages_lazily_and_filters(real_engine, monkeypatch):
    client = Client(engine=real_engine)
    odd_tag = 'he said "hi", ok'
    for i in range(5):
        client.start(Sequential, 1, workflow_id=f"a-{i}", task_list="nobody", tags=["batch", f"n{i}"])
    time.sleep(0.05)
    middle = time.time()
    time.sleep(0.05)
    for i in range(4):
        client.start(FanOut, 1, workflow_id=f"b-{i}", task_list="nobody", tags=[odd_tag] if i == 2 else ["b"])
    client.get_handle("b-0").terminate("enough")

    def ids(**kw):
        return [e.workflow_id for e in client.list(**kw)]

    everything = ["b-3", "b-2", "b-1", "b-0", "a-4", "a-3", "a-2", "a-1", "a-0"]
    assert ids() == ids(page_size=2) == ids(page_size=1) == everything
    assert ids(limit=3, page_size=2) == everything[:3]
    assert ids(tag="batch") == everything[4:]
    assert ids(tag="n3") == ["a-3"]
    assert ids(tag=odd_tag) == ["b-2"] and ids(tag='", "') == [] and ids(tag="hi") == []
    assert ids(started_after=middle) == everything[:4]
    assert ids(started_before=middle) == everything[4:]
    assert ids(started_after=dt.datetime.fromtimestamp(middle, dt.timezone.utc)) == everything[:4]
    assert ids(started_before=format_timestamp(middle + 0.001)) == everything[4:]  # ISO text, as the CLI shows
    assert ids(started_after=dt.date(2000, 1, 1), started_before=dt.date(2000, 1, 2)) == []
    assert ids(status="terminated") == ["b-0"]
    assert ids(status="open", workflow_type="fanout", tag="b") == ["b-3", "b-1"]

    pages = []
    list_executions = real_engine.list_executions
    monkeypatch.setattr(real_engine, "list_executions", lambda **kw: pages.append(kw) or list_executions(**kw))
    listing = client.list(page_size=2)
    assert pages == []  # nothing read until iterated
    seen = [next(listing).workflow_id, next(listing).workflow_id]
    assert len(pages) == 1
    client.start(Sequential, 1, workflow_id="c-0", task_list="nobody")  # pushes everything down one
    seen += [e.workflow_id for e in listing]
    assert seen == everything  # nothing twice, although the offsets moved
    assert [p["offset"] for p in pages] == [0, 2, 4, 6, 8, 10]  # ten now: the last page is empty


def test_bad_input_gives_clear_errors(real_engine):
    client = Client(engine=real_engine)
    with pytest.raises(WorkflowNotFound, match="cannot import module 'nosuchmodule'"):
        client.start("nosuchmodule.Flow")
    with pytest.raises(WorkflowNotFound, match="has no attribute 'Nope'"):
        client.start("tests.fixtures.workflows.Nope")
    with pytest.raises(WorkflowNotFound, match="neither a Workflow subclass nor"):
        client.start(len)
    with pytest.raises(ConfigError, match="at most 5 tags per execution, got 6"):
        client.start(Sequential, 1, tags=["a", "b", "c", "d", "e", "f"])
    with pytest.raises(ConfigError, match="unknown id reuse policy"):
        client.start(Sequential, 1, id_reuse_policy="sometimes")
    assert list(client.list()) == []  # none of those started anything
    client.start("tests.fixtures.workflows.Sequential", 1, workflow_id="dup", task_list="nobody")
    with pytest.raises(WorkflowAlreadyStarted, match="'dup' is already running"):
        client.start(Sequential, 1, workflow_id="dup")

    ghost = client.get_handle("ghost")
    calls = [ghost.describe, ghost.history, ghost.result, ghost.cancel, lambda: ghost.signal("add", 1),
             lambda: ghost.query("items"), lambda: ghost.terminate("r")]
    for use in calls:
        with pytest.raises(UnknownExecution, match="no execution with workflow id 'ghost'"):
            use()
    with pytest.raises(ConfigError, match="unknown status 'done'"):
        list(client.list(status="done"))
    with pytest.raises(ConfigError, match="'yesterday' is not an ISO 8601 date"):
        list(client.list(started_after="yesterday"))
    with pytest.raises(ConfigError, match="not both"):
        Client("memory://", engine=real_engine)
    with pytest.raises(ConfigError, match="unknown engine URL scheme"):
        Client("bogus://x").start(Sequential, 1)


def test_client_opens_its_url_and_closes_only_what_it_opened(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    with Client(url) as client:
        assert not (tmp_path / "app.db").exists()  # opened on first use, not before
        handle = client.start(Sequential, 1, task_list="nobody", workflow_id="kept")
        assert isinstance(handle, WorkflowHandle) and handle.run_id
    with pytest.raises(EngineError, match="closed"):
        handle.describe()
    monkeypatch.setenv("STEADYFLOW_URL", url)  # the CLI's rule: STEADYFLOW_URL, else ./steadyflow.db
    with Client() as again:
        assert again.get_handle("kept").describe().is_open
    engine = open_engine(url)
    with Client(engine=engine) as borrowed:
        assert borrowed.get_handle("kept").describe().is_open
    assert engine.describe_execution("kept").is_open  # still open: the client did not own it
    engine.close()


def test_async_client_does_the_same_with_await(real_engine):
    ticks = []

    async def ticker(stop):
        while not stop.is_set():
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    async def main(task_list):
        async with AsyncClient(engine=real_engine) as client:
            assert inspect.iscoroutinefunction(client.start) and inspect.iscoroutinefunction(AsyncWorkflowHandle.result)
            handles = await asyncio.gather(*(client.start(Sequential, 1, start=i, task_list=task_list) for i in range(20)))
            assert all(isinstance(h, AsyncWorkflowHandle) for h in handles)
            assert await asyncio.gather(*(h.result(timeout=60) for h in handles)) == [i + 1 for i in range(20)]

            slow = await client.start(Slow, 0.5, "late", task_list=task_list)
            stop = asyncio.Event()
            ticking = asyncio.create_task(ticker(stop))
            with pytest.raises(ResultTimeout):
                await slow.result(timeout=0.1)
            assert await slow.result(timeout=30) == "late"
            stop.set()
            await ticking
            assert len(ticks) >= 20  # the loop kept running while result() waited

            adder = await client.start(Stateful, task_list=f"{task_list}-later")  # no decider yet: see above
            await adder.signal("add", 3)
            assert await adder.query("items") == [3]
            assert (await adder.describe()).is_open
            with running(real_engine, f"{task_list}-later"):
                await adder.cancel()
                with pytest.raises(WorkflowFailed) as caught:
                    await adder.result(timeout=30)
            assert caught.value.status == "canceled"
            assert (await adder.history())[0].event_type == "WorkflowExecutionStarted"

            listed = [e.workflow_id async for e in client.list(page_size=7)]
            assert len(listed) == 22 and listed[0] == adder.workflow_id
            assert [e.workflow_id async for e in client.list(status="canceled")] == [adder.workflow_id]
            with pytest.raises(UnknownExecution):
                await client.get_handle("ghost").result()
            with pytest.raises(ConfigError, match="at most 5 tags"):
                await client.start(Sequential, 1, tags=list("abcdef"))

    with running(real_engine) as task_list:
        asyncio.run(main(task_list))


def test_client_on_postgresql(pg_schema):
    with Client(pg_schema.url) as client:
        with running(client.engine) as task_list:
            handles = [
                client.start(Sequential, 2, start=i, task_list=task_list, tags=["pg", "a, b" if i == 0 else "c"])
                for i in range(5)
            ]
            middle = time.time()
            time.sleep(0.02)
            slow = client.start(Slow, 0.3, "done", task_list=task_list, tags=["pg"])
            assert [h.result(timeout=60) for h in handles] == [i + 2 for i in range(5)]
            assert slow.result(timeout=60) == "done"

            async def also_async():
                async with AsyncClient(engine=client.engine) as aclient:
                    handle = await aclient.start(Stateful, task_list="nobody")  # no decision in flight
                    await handle.signal("add", 7)
                    assert await handle.query("items") == [7]
                    await handle.terminate("done")
                    return [e.workflow_id async for e in aclient.list(status="terminated")]

            terminated = asyncio.run(also_async())
        assert len(terminated) == 1
        ids = [h.workflow_id for h in reversed(handles)]
        assert [e.workflow_id for e in client.list(tag="pg", page_size=2)] == [slow.workflow_id, *ids]
        assert [e.workflow_id for e in client.list(tag="a, b")] == [handles[0].workflow_id]
        assert list(client.list(tag="a")) == [] and list(client.list(tag='", "')) == []
        assert [e.workflow_id for e in client.list(tag="pg", started_after=middle)] == [slow.workflow_id]
        assert [e.workflow_id for e in client.list(tag="pg", started_before=middle)] == ids


def test_cli_lists_by_tag_and_start_time_and_waits_with_a_timeout(tmp_path, capsys):
    from steadyflow.cli import main

    url = f"sqlite:///{tmp_path / 'cli.db'}"

    def sf(*args):
        try:
            code = main(["--engine", url, *args])
        except SystemExit as exc:  # what `finish` and `result` exit with, as a process would
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    before = format_timestamp(time.time() - 1)
    for wid, tags in (("t-1", "red,blue"), ("t-2", "blue"), ("t-3", "")):
        code, out, err = sf("workflow", "start", "tests.fixtures.workflows.Sequential", "-i", "[1]",
                            "--workflow-id", wid, "--task-list", "nobody", "--tags", tags)
        assert code == 0, err
        assert out.split()[0] == wid

    def listed(*options):
        code, out, err = sf("workflow", "list", "--format", "json", *options)
        assert code == 0, err
        return [row["Workflow ID"] for row in json.loads(out)]

    assert listed() == ["t-3", "t-2", "t-1"]
    assert listed("--tag", "blue") == ["t-2", "t-1"]
    assert listed("--tag", "red", "--started-after", before) == ["t-1"]
    assert listed("--started-before", "2000-01-01") == []
    assert listed("--status", "open", "--limit", "2") == ["t-3", "t-2"]
    code, _, err = sf("workflow", "list", "--started-after", "soon")
    assert code == 2 and "is not an ISO 8601 date" in err
    code, _, err = sf("workflow", "result", "t-1", "--wait", "--timeout", "0.1")
    assert code == 1 and "still running after 0.1s" in err
    code, _, err = sf("workflow", "start", "tests.fixtures.workflows.Sequential", "--tags", "a,b,c,d,e,f")
    assert code == 2 and "at most 5 tags" in err
    code, _, err = sf("workflow", "start", "tests.fixtures.workflows.Sequential", "-i", '{"kwargs": {"tags": 1}}')
    assert code == 2 and "clash with start options" in err


def test_public_names():
    assert steadyflow.Client is Client and steadyflow.AsyncClient is AsyncClient
    assert issubclass(steadyflow.ResultTimeout, TimeoutError)
