"""The web dashboard (`steadyflow.ui`): its JSON API, pages, guarded actions and, in a real headless
Chromium, the list, an execution's timeline and a cancellation.

The dashboard runs in uvicorn on a free 127.0.0.1 port, against a SQLite engine (and PostgreSQL in
`test_dashboard_works_on_postgres`). The browser test uses Debian's Chromium (`/usr/bin/chromium`)
through Playwright: skipped with the reason when either is missing, failed when `CI=true`.
`STEADYFLOW_UPDATE_SCREENSHOT=1` also saves its screenshot as `docs/dashboard.png`.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the dashboard needs the ui extra: pip install -e '.[test]'")
pytest.importorskip("uvicorn", reason="the dashboard needs the ui extra: pip install -e '.[test]'")

from steadyflow import Workflow, futures  # noqa: E402
from steadyflow import history as h  # noqa: E402
from steadyflow.engines import open_engine  # noqa: E402
from steadyflow.history import Event  # noqa: E402
from steadyflow.local import run_local, start  # noqa: E402
from steadyflow.ui import create_app  # noqa: E402
from steadyflow.ui import timeline as tl  # noqa: E402
from steadyflow.ui.server import allowed_hosts_for, serve_in_thread  # noqa: E402
from tests.fixtures.features import Child, Patient  # noqa: E402
from tests.fixtures.workflows import FanOut, Timers, Uncaught, flaky_backoff, square  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
TOKEN = "s3cret-token"


class Showcase(Workflow):
    """Activities in parallel, a timer, an activity that fails once and is retried, and a child."""

    name = "showcase"

    def run(self, n):
        squares = self.map(square, range(n))
        self.sleep(0.05)
        retried = self.submit(flaky_backoff, 1)
        child = self.submit(Child, 4)
        return [sum(futures.wait(*squares)), retried.result, child.result]


# -- helpers ----------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)

    def json(self):
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def call(url: str, method: str = "GET", data: dict | None = None, headers: dict | None = None,
         as_json: bool = False) -> Answer:
    body = None
    headers = dict(headers or {})
    if data is not None:
        if as_json:
            body = json.dumps(data).encode()
            headers["Content-Type"] = "application/json"
        else:
            body = urllib.parse.urlencode(data).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with _opener.open(request, timeout=10) as response:
            return Answer(response.status, response.read().decode(), dict(response.headers))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.read().decode(), dict(exc.headers))


def q(workflow_id: str) -> str:
    return urllib.parse.quote(workflow_id, safe="")


def event_types(engine, workflow_id: str, run_id: str | None = None) -> list[str]:
    return [ev.event_type for ev in engine.get_history(workflow_id, run_id)]


@dataclass
class Dashboard:
    url: str
    engine: object
    ids: dict[str, str]


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    """A SQLite engine with closed and open executions, and the dashboard serving it."""
    path = tmp_path_factory.mktemp("ui") / "steadyflow.db"
    engine = open_engine(f"sqlite:///{path}")
    ids = {
        "fanout": run_local(FanOut, [3], engine=engine).workflow_id,
        "timers": run_local(Timers, [], engine=engine).workflow_id,
        "showcase": run_local(Showcase, [3], engine=engine, workflow_id="showcase-1").workflow_id,
    }
    try:
        run_local(Uncaught, [], engine=engine, workflow_id="uncaught-1")
    except Exception:
        pass
    ids["failed"] = "uncaught-1"
    # Open executions nobody decides: they stay open for the actions to act on.
    for name in ("waiting-browser", "waiting-refused", "waiting-api", "waiting-terminate", "waiting-readonly"):
        ids[name] = start(engine, Patient, workflow_id=name)[0]
    app = create_app(engine, token=TOKEN)
    with serve_in_thread(app) as url:
        yield Dashboard(url, engine, ids)
    engine.close()


# -- the timeline, from histories alone --------------------------------------------------------------


def ev(event_id, kind, ts, **attrs):
    return Event(event_id, kind, ts, attrs)


def test_timeline_has_one_bar_per_activity_attempt_timer_and_child_coloured_by_outcome():
    events = [
        ev(1, h.WORKFLOW_EXECUTION_STARTED, 100.0),
        ev(5, h.ACTIVITY_TASK_SCHEDULED, 100.1, activityId="a-1", activityType={"name": "m.a"}, control='{"attempt":1}'),
        ev(6, h.ACTIVITY_TASK_SCHEDULED, 100.1, activityId="b-1", activityType={"name": "m.b"}),
        ev(7, h.ACTIVITY_TASK_SCHEDULED, 100.1, activityId="c-1", activityType={"name": "m.c"}),
        ev(8, h.TIMER_STARTED, 100.1, timerId="t", startToFireTimeout=5),
        ev(9, h.TIMER_STARTED, 100.1, timerId="never", startToFireTimeout=3600),
        ev(10, h.ACTIVITY_TASK_STARTED, 100.2, scheduledEventId=5),
        ev(11, h.ACTIVITY_TASK_FAILED, 100.4, scheduledEventId=5, startedEventId=10, reason="ValueError: no"),
        ev(12, h.ACTIVITY_TASK_STARTED, 100.3, scheduledEventId=6),
        ev(13, h.ACTIVITY_TASK_TIMED_OUT, 101.3, scheduledEventId=6, timeoutType="HEARTBEAT"),
        ev(14, h.TIMER_CANCELED, 101.5, timerId="never", startedEventId=9),
        ev(15, h.ACTIVITY_TASK_SCHEDULED, 102.0, activityId="a-1", activityType={"name": "m.a"}, control='{"attempt":2}'),
        ev(16, h.ACTIVITY_TASK_STARTED, 102.1, scheduledEventId=15),
        ev(17, h.ACTIVITY_TASK_COMPLETED, 102.5, scheduledEventId=15, result="1"),
        ev(18, h.START_CHILD_INITIATED, 102.6, workflowId="kid", workflowType={"name": "child"}),
        ev(19, h.CHILD_STARTED, 102.7, initiatedEventId=18, workflowExecution={"workflowId": "kid", "runId": "r9"}),
        ev(20, h.CHILD_FAILED, 103.0, initiatedEventId=18, reason="boom"),
        ev(21, h.TIMER_FIRED, 105.1, timerId="t", startedEventId=8),
    ]
    bars = tl.bars(events)
    got = [(b.kind, b.label, b.outcome, b.css) for b in bars]
    assert got == [
        ("activity", "a-1", "failed", "failed"),
        ("activity", "b-1", "timed_out", "timed-out"),
        ("activity", "c-1", "scheduled", "open"),  # never started: all of it waits
        ("timer", "t", "fired", "ok"),
        ("timer", "never", "canceled", "canceled"),
        ("activity", "a-1 #2", "completed", "ok"),
        ("child", "kid", "failed", "failed"),
    ]
    assert bars[0].note == "ValueError: no" and bars[1].note == "HEARTBEAT"
    assert bars[6].child_run_id == "r9" and bars[6].started == 102.7

    lay = tl.layout(bars, 100.0, 106.0)
    assert len(lay.rows) == len(bars)
    first, pending = lay.rows[0], lay.rows[2]
    assert first.wait_w > 0 and first.x == pytest.approx(first.wait_x + first.wait_w, abs=0.2)  # wait, then run
    assert pending.w == 0 and pending.wait_x + pending.wait_w == pytest.approx(lay.width - 20)  # waits to the end
    assert "failed: waited 100 ms, ran 200 ms" in first.title and "ValueError: no" in first.title
    assert [t.label for t in lay.ticks][:3] == ["0", "+2.0 s", "+4.0 s"]


# -- the JSON API -----------------------------------------------------------------------------------


def test_api_lists_executions_filtered_by_status_and_type_and_searched_by_literal_id(dashboard):
    d = dashboard
    everything = call(f"{d.url}/api/executions").json()["executions"]
    assert {d.ids["fanout"], d.ids["showcase"], "uncaught-1", "waiting-browser"} <= {e["workflow_id"] for e in everything}

    opened = call(f"{d.url}/api/executions?status=open").json()["executions"]
    assert opened and all(e["status"] == "open" for e in opened)
    failed = call(f"{d.url}/api/executions?status=failed").json()["executions"]
    assert [e["workflow_id"] for e in failed] == ["uncaught-1"]
    fanouts = call(f"{d.url}/api/executions?workflow_type=fanout").json()["executions"]
    assert d.ids["fanout"] in {e["workflow_id"] for e in fanouts}
    assert {e["workflow_type"] for e in fanouts} == {"fanout"}

    found = call(f"{d.url}/api/executions?id={q(d.ids['timers'])}").json()["executions"]
    assert [e["workflow_id"] for e in found] == [d.ids["timers"]]
    # SQL in the search box is just an id nobody has; in the type filter, a type nobody has.
    for query in ("id=x%27%20OR%20%271%27%3D%271", "workflow_type=fanout%27%20OR%201%3D1%20--"):
        answer = call(f"{d.url}/api/executions?{query}")
        assert answer.status == 200 and answer.json()["executions"] == []

    page = call(f"{d.url}/api/executions?limit=2").json()
    assert len(page["executions"]) == 2 and page["next_offset"] == 2
    assert call(f"{d.url}/api/executions?status=bogus").status == 400
    assert call(f"{d.url}/api/executions?limit=-1").status == 400


def test_api_execution_has_status_payloads_history_and_timeline(dashboard):
    d = dashboard
    body = call(f"{d.url}/api/executions/{q(d.ids['showcase'])}").json()
    execution, history, bars = body["execution"], body["history"], body["timeline"]
    assert execution["status"] == "completed"
    assert json.loads(execution["result"]["text"]) == [5, 2, 16]
    assert json.loads(execution["input"]["text"])["args"] == [3]
    assert history[0]["event_type"] == h.WORKFLOW_EXECUTION_STARTED
    assert [e["event_id"] for e in history] == list(range(1, len(history) + 1))
    scheduled = sum(e["event_type"] == h.ACTIVITY_TASK_SCHEDULED for e in history)
    activities = [b for b in bars if b["kind"] == "activity"]
    assert len(activities) == scheduled == 5  # 3 squares, and flaky_backoff's two attempts
    assert [b["outcome"] for b in activities].count("failed") == 1
    assert {b["name"] for b in bars if b["kind"] == "timer"} == {"timer", "retry back-off"}
    assert [(b["kind"], b["outcome"]) for b in bars if b["kind"] == "child"] == [("child", "completed")]


def test_unknown_execution_is_a_404_page_not_a_traceback(dashboard):
    page = call(f"{dashboard.url}/executions/no-such-execution")
    assert page.status == 404
    assert "no-such-execution" in page.body and "Traceback" not in page.body and "<h1>404</h1>" in page.body
    api = call(f"{dashboard.url}/api/executions/no-such-execution")
    assert api.status == 404 and api.json()["status"] == 404
    assert call(f"{dashboard.url}/no/such/page").status == 404


def test_pages_escape_ids_and_payloads_and_send_security_headers(dashboard):
    d = dashboard
    nasty = '<script>alert("id")</script>'
    start(d.engine, FanOut, ['<img src=x onerror="alert(1)">'], workflow_id=nasty)
    listing = call(f"{d.url}/?status=open")
    page = call(f"{d.url}/executions/{q(nasty)}")
    for answer in (listing, page):
        assert answer.status == 200
        assert "<script>alert" not in answer.body and "&lt;script&gt;alert" in answer.body
    assert "<img src=x" not in page.body and "&lt;img src=x onerror=" in page.body
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    d.engine.terminate_execution(nasty)


def test_actions_need_the_token_and_post(dashboard):
    d = dashboard
    wid = d.ids["waiting-refused"]
    before = event_types(d.engine, wid)
    for headers, data in (({}, {}), ({}, {"token": "wrong"}), ({"X-Steadyflow-Token": "wrong"}, {}),
                          ({"Authorization": "Bearer nope"}, {})):
        answer = call(f"{d.url}/executions/{q(wid)}/cancel", "POST", data=data, headers=headers)
        assert answer.status == 403, (headers, data)
        assert "token" in answer.body
    # A page from elsewhere that knows the token is still refused (and GET never mutates).
    for origin in ("http://evil.example", "null"):  # "null": a sandboxed frame
        cross = call(f"{d.url}/executions/{q(wid)}/cancel", "POST", data={"token": TOKEN}, headers={"Origin": origin})
        assert cross.status == 403 and "cross-origin" in cross.body
    assert call(f"{d.url}/api/executions/{q(wid)}/cancel?token={TOKEN}").status in (404, 405)
    assert event_types(d.engine, wid) == before


def test_signal_cancel_and_terminate_through_the_api_with_the_token(dashboard):
    d = dashboard
    wid = d.ids["waiting-api"]
    auth = {"X-Steadyflow-Token": TOKEN}
    sent = call(f"{d.url}/api/executions/{q(wid)}/signal", "POST", {"name": "wake", "input": {"n": 1}},
                headers=auth, as_json=True)
    assert sent.status == 200 and sent.json()["ok"] is True
    assert call(f"{d.url}/api/executions/{q(wid)}/cancel", "POST", headers=auth).status == 200
    history = d.engine.get_history(wid)
    signaled = [e for e in history if e.event_type == h.WORKFLOW_EXECUTION_SIGNALED]
    assert [(e.attributes["signalName"], json.loads(e.attributes["input"])) for e in signaled] == [("wake", {"n": 1})]
    assert h.WORKFLOW_EXECUTION_CANCEL_REQUESTED in [e.event_type for e in history]
    assert call(f"{d.url}/api/executions/{q(wid)}/explode", "POST", headers=auth).status == 404

    wid = d.ids["waiting-terminate"]
    form = call(f"{d.url}/executions/{q(wid)}/terminate", "POST", {"token": TOKEN, "reason": "stuck"})
    assert form.status == 303 and "done=terminate" in form.headers["location"]
    assert d.engine.describe_execution(wid).status == "terminated"
    again = call(f"{d.url}/api/executions/{q(wid)}/cancel", "POST", headers=auth)
    assert again.status == 409  # closed already


def test_restart_starts_a_new_run_of_the_same_type_with_the_same_input(dashboard):
    d = dashboard
    wid = run_local(FanOut, [2], engine=d.engine, workflow_id="restart-me").workflow_id
    old = d.engine.describe_execution(wid)
    answer = call(f"{d.url}/api/executions/{q(wid)}/restart", "POST", {"run_id": old.run_id},
                  headers={"Authorization": f"Bearer {TOKEN}"}, as_json=True)
    assert answer.status == 200
    new = d.engine.describe_execution(wid)
    assert answer.json()["run_id"] == new.run_id != old.run_id
    assert (new.workflow_type, new.version, new.task_list, new.input, new.status) == (
        old.workflow_type, old.version, old.task_list, old.input, "open")
    # An open execution is not restarted under its own feet.
    assert call(f"{d.url}/api/executions/{q(wid)}/restart", "POST", headers={"X-Steadyflow-Token": TOKEN}).status == 409
    d.engine.terminate_execution(wid)


def test_read_only_dashboard_has_no_buttons_and_refuses_every_action(dashboard):
    d = dashboard
    wid = d.ids["waiting-readonly"]
    with serve_in_thread(create_app(d.engine, read_only=True)) as url:
        page = call(f"{url}/executions/{q(wid)}")
        assert page.status == 200 and 'id="actions"' not in page.body and "read-only" in page.body
        for action in ("signal", "cancel", "terminate", "restart"):
            answer = call(f"{url}/api/executions/{q(wid)}/{action}", "POST", {"token": TOKEN, "name": "x"})
            assert answer.status == 403 and "read-only" in answer.body
    assert event_types(d.engine, wid) == [h.WORKFLOW_EXECUTION_STARTED, h.DECISION_TASK_SCHEDULED]
    with pytest.raises(ValueError, match="needs a token"):
        create_app(d.engine)


def test_loopback_dashboard_refuses_other_host_names(dashboard):
    with serve_in_thread(create_app(dashboard.engine, read_only=True, allowed_hosts=allowed_hosts_for("127.0.0.1"))) as url:
        assert call(f"{url}/healthz").status == 200
        assert call(f"{url}/healthz", headers={"Host": "localhost:1234"}).status == 200
        assert call(f"{url}/healthz", headers={"Host": "attacker.example"}).status == 400
    assert allowed_hosts_for("0.0.0.0") is None


def test_offloaded_payload_is_described_and_loaded_on_demand_under_a_cap(dashboard):
    d = dashboard
    # Random text does not compress: its blob stays above the display limit, so it is not fetched.
    big = base64.b64encode(random.Random(7).randbytes(120_000)).decode()
    wid, _ = start(d.engine, FanOut, [big], workflow_id="big-input")
    body = call(f"{d.url}/api/executions/{q(wid)}").json()
    shown = body["execution"]["input"]
    assert shown["text"].startswith("<offloaded:") and shown["loadable"] and shown["size"] > 100_000
    # Text that compresses well is offloaded too, but small enough to be described by its size.
    small, _ = start(d.engine, FanOut, ["x" * 100_000], workflow_id="big-but-compressible")
    shown = call(f"{d.url}/api/executions/{q(small)}").json()["execution"]["input"]
    assert shown["text"] == "<100,079 bytes of JSON>" and shown["loadable"]
    d.engine.terminate_execution(small)
    assert body["history"][0]["attributes"]["input"]["loadable"]
    page = call(f"{d.url}/executions/{q(wid)}")
    assert "&lt;offloaded:" in page.body and "/payload/big-input?" in page.body

    full = call(f"{d.url}/payload/{q(wid)}?field=input")
    assert full.status == 200 and json.loads(full.body)["args"] == [big]
    from_event = call(f"{d.url}/payload/{q(wid)}?event=1&attr=input")
    assert json.loads(from_event.body) == json.loads(full.body)
    assert call(f"{d.url}/payload/{q(wid)}?field=secret").status == 400
    assert call(f"{d.url}/payload/{q(wid)}?event=1&attr=nope").status == 404
    with serve_in_thread(create_app(d.engine, read_only=True, max_payload=10_000)) as url:
        capped = call(f"{url}/payload/{q(wid)}?field=input")
        assert capped.status == 413 and "more than the dashboard shows" in capped.body
    d.engine.terminate_execution(wid)


def test_dashboard_works_on_postgres(pg_schema):
    engine = open_engine(pg_schema.url)
    try:
        done = run_local(FanOut, [2], engine=engine)
        waiting, _ = start(engine, Patient, workflow_id="pg-waiting")
        with serve_in_thread(create_app(engine, token=TOKEN)) as url:
            listed = call(f"{url}/api/executions?status=completed").json()["executions"]
            assert [e["workflow_id"] for e in listed] == [done.workflow_id]
            body = call(f"{url}/api/executions/{q(done.workflow_id)}").json()
            assert [b["outcome"] for b in body["timeline"]] == ["completed", "completed"]
            assert call(f"{url}/executions/{q(done.workflow_id)}").status == 200
            answer = call(f"{url}/executions/{q(waiting)}/cancel", "POST", {"token": TOKEN})
            assert answer.status == 303
        assert h.WORKFLOW_EXECUTION_CANCEL_REQUESTED in event_types(engine, waiting)
    finally:
        engine.close()


def test_ui_command_prints_a_token_and_serves_on_loopback(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "STEADYFLOW_URL": f"sqlite:///{tmp_path / 'ui.db'}", "STEADYFLOW_UI_TOKEN": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "steadyflow", "ui", "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )
    try:
        token_line = proc.stderr.readline()
        assert re.match(r"dashboard token \(.*\): \S{20,}$", token_line.strip()), token_line
        token = token_line.strip().rsplit(" ", 1)[1]
        assert f"http://127.0.0.1:{port}/" in proc.stderr.readline()
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = call(f"http://127.0.0.1:{port}/api/executions")
                break
            except urllib.error.URLError:
                assert proc.poll() is None and time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.05)
        assert answer.status == 200 and answer.json() == {"executions": [], "next_offset": None}
        refused = call(f"http://127.0.0.1:{port}/api/executions/x/cancel", "POST", {"token": token + "x"})
        assert refused.status == 403
        unknown = call(f"http://127.0.0.1:{port}/api/executions/x/cancel", "POST", {"token": token})
        assert unknown.status == 404  # accepted, then no such execution
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


# -- in a real browser -----------------------------------------------------------------------------


def require_chromium():
    """Playwright's sync API; skips without Playwright or Debian's Chromium, fails instead on CI."""
    reason = None
    try:
        from playwright import sync_api
    except ImportError as exc:
        reason = f"playwright is not installed ({exc}): pip install -e '.[test]'"
    if reason is None and not os.path.exists(CHROMIUM):
        reason = f"no Chromium at {CHROMIUM}: apt-get install chromium"
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and the browser tests are required: {reason}", pytrace=False)
        pytest.skip(reason)
    return sync_api


def test_missing_chromium_skips_locally_and_fails_on_ci(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="no Chromium at /nonexistent/chromium|playwright is not installed"):
        require_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and the browser tests are required: "):
        require_chromium()


def test_browser_lists_opens_an_execution_draws_its_timeline_and_cancels_with_the_token(dashboard, tmp_path):
    sync_api = require_chromium()
    d = dashboard
    scheduled = event_types(d.engine, d.ids["showcase"]).count(h.ACTIVITY_TASK_SCHEDULED)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1180})
            page.set_default_timeout(10_000)
            page.goto(d.url + "/")
            page.wait_for_selector("#executions")
            assert page.locator("tr.execution").count() >= 8
            # Filter by status with the form.
            page.select_option("select[name=status]", "failed")
            with page.expect_navigation(url=re.compile(r"status=failed")):
                page.click("form.filters button")
            page.wait_for_selector("tr.execution.status-failed")
            assert page.locator("tr.execution").count() == 1

            # Open the showcase execution from the list.
            page.goto(d.url + "/?workflow_type=showcase")
            with page.expect_navigation(wait_until="load"):  # the stylesheet too: colours are read below
                page.click(f"text={d.ids['showcase']}")
            page.wait_for_selector("svg#timeline g.bar-activity")
            assert page.locator("#status").inner_text() == "completed"
            assert page.locator("svg#timeline g.bar-activity").count() == scheduled == 5
            assert page.locator("svg#timeline g.bar-timer").count() == 2
            assert page.locator("svg#timeline g.bar-child").count() == 1
            failed = page.locator("svg#timeline g.bar-activity.outcome-failed")
            assert failed.count() == 1
            assert "RuntimeError: attempt 1 fails" in failed.locator("title").text_content()
            colours = page.eval_on_selector_all(
                "svg#timeline g.bar-activity rect.span", "els => els.map(e => getComputedStyle(e).fill)")
            assert sorted(set(colours)) == ["rgb(210, 69, 59)", "rgb(46, 157, 91)"]  # failed, completed
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot))
            if os.environ.get("STEADYFLOW_UPDATE_SCREENSHOT") == "1":
                shutil.copyfile(shot, ROOT / "docs" / "dashboard.png")

            # A wrong token is refused, and nothing happens.
            wid = d.ids["waiting-browser"]
            page.goto(f"{d.url}/executions/{q(wid)}")
            page.fill("form.cancel input[name=token]", "not-the-token")
            with page.expect_navigation():
                page.click("#cancel")
            page.wait_for_selector("#error")
            assert page.locator("#error h1").inner_text() == "403"
            refused = page.request.post(f"{d.url}/executions/{q(wid)}/cancel", form={"run_id": ""})
            assert refused.status == 403
            assert h.WORKFLOW_EXECUTION_CANCEL_REQUESTED not in event_types(d.engine, wid)

            # With the token, the cancellation is recorded and shows in the history.
            page.goto(f"{d.url}/executions/{q(wid)}")
            page.fill("form.cancel input[name=token]", TOKEN)
            with page.expect_navigation(wait_until="load"):  # app.js fills the token fields on load
                page.click("#cancel")
            page.wait_for_selector("#notice")
            page.wait_for_selector(f'tr.event[data-type="{h.WORKFLOW_EXECUTION_CANCEL_REQUESTED}"]')
            assert page.locator(".badge.cancel-requested").count() == 1
            # The token was kept for this tab only, so the next form is filled in.
            assert page.input_value("form.terminate input[name=token]") == TOKEN

            # Unknown ids and SQL-looking searches are ordinary pages.
            page.goto(f"{d.url}/executions/{q('nope')}")
            assert page.locator("#error h1").inner_text() == "404"
            page.goto(d.url + "/")
            page.fill("input[name=id]", "x' OR '1'='1")
            with page.expect_navigation():
                page.click("form.filters button")
            page.wait_for_selector("#empty")
        finally:
            browser.close()
    assert h.WORKFLOW_EXECUTION_CANCEL_REQUESTED in event_types(d.engine, d.ids["waiting-browser"])
