"""Whatever comes from outside gets a clean error, never a traceback, a 500 or a hang.

Hypothesis feeds histories to the replayer, `--input` to the command line, bodies to the task
queue's reader and requests to every HTTP endpoint the project serves (the dashboard, the worker's
healthcheck and the Prometheus metrics). "Clean" means a `SteadyflowError` (or click's usage
error) from Python, an exit status from the CLI, and a status below 500 from a server. Example
counts are bounded so the file runs in seconds.
"""

from __future__ import annotations

import http.client
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steadyflow import history as h
from steadyflow.cli import main
from steadyflow.engines import open_engine
from steadyflow.errors import SteadyflowError
from steadyflow.local import run_local
from steadyflow.tasks import body
from steadyflow.testing import Replayer, load_history
from tests.fixtures import workflows as wf

HANG = 10_000
"""Milliseconds: an example that takes longer is reported as a hang (hypothesis's deadline)."""
FAST = settings(max_examples=60, deadline=HANG, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=15,
)
deep_json = st.integers(100, 5000).flatmap(
    lambda d: st.sampled_from(["[" * d + "]" * d, '{"a":' * d + "1" + "}" * d, "[" * d])
)
"""Payload bombs: nesting deeper than the payload limit and than Python's recursion limit."""
event_types = st.sampled_from(sorted({v for k, v in vars(h).items() if k.isupper() and isinstance(v, str)}))
attribute_keys = st.sampled_from(
    ["activityId", "activityType", "input", "result", "scheduledEventId", "startedEventId", "timerId",
     "signalName", "workflowId", "markerName", "details", "reason", "control", "workflowType", "taskList"]
)
events = st.fixed_dictionaries(
    {
        "eventId": st.integers(min_value=-2, max_value=30) | st.text(max_size=3) | st.none(),
        "eventType": event_types | st.text(max_size=12),
        "attributes": st.dictionaries(attribute_keys | st.text(max_size=8), json_values, max_size=5)
        | json_values,
    },
    optional={"eventTimestamp": st.floats(allow_nan=False) | st.text(max_size=25) | st.none()},
)


@pytest.fixture(scope="module")
def real_history():
    """A real history to mutate: the fuzzer starts from something the replayer accepts."""
    engine = open_engine("memory://")
    done = run_local(wf.Sequential, [2], engine=engine)
    return [e.to_json() for e in engine.get_history(done.workflow_id)]


def replay_cleanly(data) -> None:
    try:
        Replayer([wf.Sequential]).replay(data)
    except SteadyflowError:
        pass


@FAST
@given(st.lists(events, max_size=8))
def test_random_histories_fail_replay_cleanly(history):
    replay_cleanly(history)


@FAST
@given(st.data())
def test_mutated_real_histories_fail_replay_cleanly(real_history, data):
    history = json.loads(json.dumps(real_history))
    index = data.draw(st.integers(0, len(history) - 1))
    event = history[index]
    action = data.draw(st.sampled_from(["drop_key", "set_key", "drop_event", "swap", "attr"]))
    if action == "drop_key":
        event.pop(data.draw(st.sampled_from(sorted(event))))
    elif action == "set_key":
        event[data.draw(st.sampled_from(sorted(event)))] = data.draw(json_values)
    elif action == "drop_event":
        del history[index]
    elif action == "swap":
        other = data.draw(st.integers(0, len(history) - 1))
        history[index], history[other] = history[other], history[index]
    elif event["attributes"]:
        key = data.draw(st.sampled_from(sorted(event["attributes"])))
        event["attributes"][key] = data.draw(json_values)
    replay_cleanly(history)


@FAST
@given(st.text(max_size=200) | json_values.map(json.dumps) | deep_json)
def test_history_text_is_read_or_refused_cleanly(text):
    try:
        load_history(text if text.lstrip().startswith("[") else f"[{text}]")
    except SteadyflowError:
        pass


@settings(max_examples=25, deadline=HANG, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200) | st.lists(events, max_size=4).map(json.dumps) | deep_json)
def test_cli_replay_of_any_file_exits_with_a_status_not_a_traceback(tmp_path_factory, capsys, text):
    path = tmp_path_factory.mktemp("replay") / "history.json"
    path.write_text(text)
    code = main(["workflow", "replay", str(path), "--workflow", "tests.fixtures.workflows.Sequential"])
    assert code in (0, 1, 2)
    err = capsys.readouterr().err
    assert "Traceback" not in err


@FAST
@given(st.text(max_size=100) | json_values.map(json.dumps) | deep_json)
def test_cli_input_is_taken_or_refused_with_a_status(capsys, text):
    code = main(["--engine", "memory://", "workflow", "start", "tests.fixtures.workflows.Sequential", "--input", text])
    assert code in (0, 1, 2), capsys.readouterr().err
    if code:
        err = capsys.readouterr().err.strip()
        assert err.startswith("Error:") and "\n" not in err and "Traceback" not in err


@FAST
@given(st.text(max_size=100) | json_values.map(json.dumps) | st.binary(max_size=20) | json_values | deep_json
       | deep_json.map(lambda d: '{"task": "t", "kwargs": {"x": ' + d + "}}"))
def test_task_queue_bodies_are_read_or_refused_as_bad_messages(raw):
    try:
        task, kwargs = body.decode(raw)
    except SteadyflowError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(task, str) and task and isinstance(kwargs, dict)


# -- HTTP: the dashboard (starlette's TestClient), the healthcheck and the metrics -----------------


class Asgi:
    """Requests straight into an ASGI app, in this thread: the dashboard without a server."""

    def __init__(self, app) -> None:
        self.app = app

    def request(self, method: str, path: str, query: str = "", headers: dict[str, str] | None = None,
                body: bytes = b"") -> tuple[int, bytes]:
        import asyncio
        from urllib.parse import unquote

        raw = [(b"host", b"testserver")] + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": unquote(path), "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
            "headers": raw, "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
        }
        sent: list[dict] = []
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        try:
            asyncio.run(self.app(scope, receive, send))
        except Exception:
            if not sent:  # an exception before any answer: what a server turns into a 500
                return 500, b""
        status = next(m["status"] for m in sent if m["type"] == "http.response.start")
        return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.fixture(scope="module")
def dashboard():
    pytest.importorskip("starlette", reason="the dashboard needs starlette: pip install -e '.[test]'")
    from steadyflow.ui import create_app

    engine = open_engine("memory://")
    run_local(wf.Sequential, [2], engine=engine, workflow_id="seq-1")
    yield Asgi(create_app(engine, token="fuzz-token"))
    engine.close()


query_text = st.text(alphabet=string.printable + "é\u2603\x00", max_size=30)
params = st.dictionaries(
    st.sampled_from(["status", "type", "q", "limit", "offset", "tag", "run_id", "page", "field", "after", "before"])
    | query_text,
    query_text,
    max_size=5,
)
ids = st.sampled_from(["seq-1", "missing", "a/b", "%2F", "..", "seq-1/run"]) | query_text.filter(bool)


@FAST
@given(path=st.sampled_from(["/", "/api/executions", "/executions/{}", "/api/executions/{}", "/payload/{}", "/healthz"]),
       wid=ids, query=params)
def test_dashboard_get_with_any_query_is_never_a_server_error(dashboard, path, wid, query):
    from urllib.parse import quote, urlencode

    status, page = dashboard.request("GET", path.format(quote(wid, safe="/")), urlencode(query))
    assert status < 500, (path, wid, query, page[:300])


@FAST
@given(action=st.sampled_from(["signal", "cancel", "terminate", "restart"]) | query_text.filter(bool),
       wid=ids, fields=params, kind=st.sampled_from(["json", "form", "raw", "other", "deep"]), deep=deep_json,
       token=st.sampled_from(["fuzz-token", "", "wrong"]), raw=st.binary(max_size=40))
def test_dashboard_actions_with_any_body_are_never_a_server_error(dashboard, action, wid, fields, kind, deep, token,
                                                                  raw):
    from urllib.parse import quote, urlencode

    headers = {"authorization": f"Bearer {token}", "origin": "http://testserver"}
    body = {"json": json.dumps(fields).encode(), "form": urlencode(fields).encode(), "raw": raw, "other": raw,
            "deep": f'{{"name": "n", "input": {deep}}}'.encode()}[kind]
    headers["content-type"] = {"json": "application/json", "form": "application/x-www-form-urlencoded",
                               "raw": "application/json", "other": "text/plain", "deep": "application/json"}[kind]
    path = f"/api/executions/{quote(wid, safe='')}/{quote(action, safe='')}"
    status, page = dashboard.request("POST", path, headers=headers, body=body)
    assert status < 500, (path, fields, page[:300])


def raw_request(port: int, method: str, path: str, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for key, value in headers.items():
            conn.putheader(key, value)
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "BREW"])
paths = st.text(alphabet=string.ascii_letters + string.digits + "/?&=%.-_~", max_size=40).map(lambda p: "/" + p)
headers = st.dictionaries(st.sampled_from(["Host", "Accept", "Content-Length", "X-Fuzz"]),
                          st.text(alphabet=string.ascii_letters + string.digits + " .:/-", max_size=20), max_size=3)


@pytest.fixture(scope="module")
def health_port():
    from steadyflow.worker import HealthServer, WorkerPool

    engine = open_engine("memory://")
    pool = WorkerPool(engine, "fuzz", processes=1)
    server = HealthServer(pool, 0, "127.0.0.1").start()
    yield server.port
    server.close()
    engine.close()


@settings(max_examples=40, deadline=HANG, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=methods, path=paths, extra=headers)
def test_healthcheck_answers_any_request_without_a_server_error(health_port, method, path, extra):
    extra = {k: v for k, v in extra.items() if k != "Content-Length"}
    status = raw_request(health_port, method, path, extra)
    # 503 is the healthcheck's "unhealthy" (a pool that was never started): an answer, not a failure;
    # 501 is HTTP's answer to a method the server does not know (BREW).
    assert status < 500 or status == 503 or (status == 501 and method == "BREW"), (method, path, status)


@pytest.fixture(scope="module")
def metrics_port():
    pytest.importorskip("prometheus_client", reason="metrics need prometheus-client: pip install -e '.[test]'")
    from steadyflow import metrics

    server = metrics.serve(0)
    yield server.server_port
    server.shutdown()
    server.server_close()


@settings(max_examples=40, deadline=HANG, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=methods, path=paths, extra=headers)
def test_metrics_endpoint_answers_any_request_without_a_server_error(metrics_port, method, path, extra):
    extra = {k: v for k, v in extra.items() if k != "Content-Length"}
    status = raw_request(metrics_port, method, path, extra)
    assert status < 500 or (status == 501 and method == "BREW"), (method, path, status)
