"""The dashboard's Starlette application: pages, the JSON API, and the guarded actions.

Routes (every id is taken literally; nothing from a request is ever put into SQL, all reads and
writes go through the engine contract):

| method | path | what |
| --- | --- | --- |
| GET | `/` | executions, newest first; `status`, `workflow_type`, `id`, `limit`, `offset` |
| GET | `/executions/{workflow_id}` | one run (`run_id`, default the latest): status, payloads, timeline, history |
| POST | `/executions/{workflow_id}/{action}` | `signal`, `cancel`, `terminate` or `restart` (form, with `token`) |
| GET | `/payload/{workflow_id}` | one payload field in full (`field=input` or `event=N&attr=result`), capped |
| GET | `/api/executions` | the list as JSON |
| GET | `/api/executions/{workflow_id}` | one run as JSON, with its history and timeline |
| POST | `/api/executions/{workflow_id}/{action}` | an action; token in `X-Steadyflow-Token` or the body |

Actions need the token (constant-time compare), come only by POST, and are refused outright in
read-only mode. The token is never put in a cookie or a URL: a page from another site cannot make
the browser send it, so the token in the form is also the CSRF defence. A request whose `Origin`
is not this dashboard is refused too, and when the dashboard listens on the loopback interface only
requests that name a loopback host are answered (a DNS-rebinding page gets a 400).

Engine calls block, so handlers run them in Starlette's thread pool; every engine is safe to call
from several threads.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp

from ..engines.base import CLOSED_STATUSES, Engine, ExecutionInfo
from ..errors import ExecutionClosed, PayloadError, SteadyflowError, UnknownExecution, WorkflowAlreadyStarted
from . import timeline, views

HERE = Path(__file__).resolve().parent
STATUSES = ("open", "closed", *CLOSED_STATUSES)
ACTIONS = ("signal", "cancel", "terminate", "restart")
TOKEN_HEADER = "x-steadyflow-token"
DEFAULT_MAX_PAYLOAD = 8 * 1024 * 1024
MAX_FORM_BYTES = 1024 * 1024
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"


class Settings:
    """What one dashboard serves and how: its engine, its token, read-only or not."""

    def __init__(
        self,
        engine: Engine,
        token: str | None,
        read_only: bool,
        max_payload: int,
        clock: Callable[[], float],
    ) -> None:
        if not read_only and not token:
            raise ValueError("a dashboard that allows actions needs a token (or read_only=True)")
        self.engine = engine
        self.token = token
        self.read_only = read_only
        self.max_payload = max_payload
        self.clock = clock


def create_app(
    engine: Engine,
    token: str | None = None,
    read_only: bool = False,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
    allowed_hosts: tuple[str, ...] | None = None,
    clock: Callable[[], float] = time.time,
) -> ASGIApp:
    """The dashboard for `engine`.

    Args:
        engine: any engine (sqlite, postgres, memory); the app does not close it.
        token: what actions must present; required unless `read_only`.
        read_only: no action buttons, and every action refused with 403.
        max_payload: the largest payload (bytes) `/payload/...` fetches and shows.
        allowed_hosts: host names the `Host` header may carry (None: any). `steadyflow ui` passes
            the loopback names when it listens on a loopback address.
        clock: the time that open executions are drawn up to.
    """
    settings = Settings(engine, token, read_only, max_payload, clock)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(quote_id=_quote_id, duration=timeline.duration)
    pages = _Pages(settings, templates)
    routes = [
        Route("/", pages.index, methods=["GET"], name="index"),
        Route("/api/executions", pages.api_list, methods=["GET"]),
        Route("/api/executions/{workflow_id:path}/{action}", pages.api_action, methods=["POST"]),
        Route("/api/executions/{workflow_id:path}", pages.api_execution, methods=["GET"]),
        Route("/executions/{workflow_id:path}/{action}", pages.action, methods=["POST"]),
        Route("/executions/{workflow_id:path}", pages.execution, methods=["GET"]),
        Route("/payload/{workflow_id:path}", pages.payload, methods=["GET"]),
        Route("/healthz", lambda request: PlainTextResponse("ok"), methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    handlers: dict[Any, Any] = {
        HTTPException: pages.http_error,
        UnknownExecution: pages.unknown_execution,
        Exception: pages.server_error,
    }
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.settings = settings
    # The outermost wrapper answers first: the Host check before anything else.
    return _Guard(app, allowed_hosts)


def _quote_id(value: str) -> str:
    """An id as a path segment (ids may hold `/`, `?` or `#`)."""
    return quote(value, safe="")


class _Guard:
    """ASGI wrapper: refuses unexpected `Host` headers and sets the security headers on every answer."""

    def __init__(self, app: Starlette, allowed_hosts: tuple[str, ...] | None) -> None:
        self.app = app
        self.state = app.state
        self.allowed = {h.lower() for h in allowed_hosts} if allowed_hosts else None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.allowed is not None:
            host = _host_name(dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1"))
            if host not in self.allowed:
                await PlainTextResponse("unexpected Host header", status_code=400)(scope, receive, send)
                return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"),  # so that our own forms carry a real Origin
                    (b"cache-control", b"no-store"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _host_name(header: str) -> str:
    """The host of a `Host` header without its port (`[::1]:8080` -> `::1`)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


class _Pages:
    def __init__(self, settings: Settings, templates: Jinja2Templates) -> None:
        self.s = settings
        self.templates = templates

    @property
    def engine(self) -> Engine:
        return self.s.engine

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        context.setdefault("read_only", self.s.read_only)
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    # -- reading -----------------------------------------------------------------------------------

    def _filters(self, request: Request) -> dict[str, Any]:
        q = request.query_params
        status = q.get("status") or None
        if status is not None and status not in STATUSES:
            raise HTTPException(400, f"unknown status {status!r} (expected one of {', '.join(STATUSES)})")
        return {
            "status": status,
            "workflow_type": (q.get("workflow_type") or "").strip() or None,
            "id": (q.get("id") or "").strip() or None,
            "limit": _int_param(q.get("limit"), "limit", PAGE_SIZE, 1, MAX_PAGE_SIZE),
            "offset": _int_param(q.get("offset"), "offset", 0, 0, 10**9),
        }

    def _list(self, f: dict[str, Any]) -> tuple[list[ExecutionInfo], int | None]:
        """The page of executions the filters select, and the offset of the next page (None: last)."""
        if f["id"] is not None:  # a literal id, never a pattern
            try:
                info = self.engine.describe_execution(f["id"])
            except UnknownExecution:
                return [], None
            keep = (
                (f["status"] is None or info.status == f["status"]
                 or (f["status"] == "closed" and not info.is_open))
                and (f["workflow_type"] is None or info.workflow_type == f["workflow_type"])
            )
            return ([info] if keep else []), None
        rows = self.engine.list_executions(
            status=f["status"], workflow_type=f["workflow_type"], limit=f["limit"] + 1, offset=f["offset"]
        )
        more = len(rows) > f["limit"]
        return rows[: f["limit"]], (f["offset"] + f["limit"] if more else None)

    def index(self, request: Request) -> Response:
        f = self._filters(request)
        rows, next_offset = self._list(f)
        now = self.s.clock()
        keep = {k: v for k, v in f.items() if v is not None and k not in ("offset", "limit")}
        if f["limit"] != PAGE_SIZE:
            keep["limit"] = f["limit"]
        return self.render(
            request, "list.html",
            executions=[views.summary(info, now) for info in rows], filters=f, statuses=STATUSES,
            next_url=f"/?{urlencode({**keep, 'offset': next_offset})}" if next_offset is not None else None,
            prev_url=(f"/?{urlencode({**keep, 'offset': max(f['offset'] - f['limit'], 0)})}"
                      if f["offset"] > 0 else None),
        )

    def api_list(self, request: Request) -> Response:
        f = self._filters(request)
        rows, next_offset = self._list(f)
        now = self.s.clock()
        return JSONResponse({"executions": [views.summary(info, now) for info in rows], "next_offset": next_offset})

    def _detail(self, workflow_id: str, run_id: str | None) -> dict[str, Any]:
        engine = self.engine
        info = engine.describe_execution(workflow_id, run_id)
        events = engine.get_history(info.workflow_id, info.run_id)
        now = self.s.clock()
        origin = events[0].timestamp if events else info.start_time
        end = info.close_time if info.close_time is not None else max(now, events[-1].timestamp if events else now)
        bars = timeline.bars(events)
        try:
            pending = engine.list_activity_tasks(info.workflow_id, info.run_id) if info.is_open else []
        except SteadyflowError:
            pending = []
        return {
            "info": info,
            "execution": views.execution(engine.payloads, info, now),
            "events": [views.event(engine.payloads, ev, origin) for ev in events],
            "bars": bars,
            "layout": timeline.layout(bars, origin, end),
            "pending": pending,
        }

    def execution(self, request: Request) -> Response:
        workflow_id = request.path_params["workflow_id"]
        detail = self._detail(workflow_id, request.query_params.get("run_id") or None)
        done = request.query_params.get("done")
        return self.render(
            request, "execution.html", **detail,
            done=done if done in ACTIONS else None,
        )

    def api_execution(self, request: Request) -> Response:
        detail = self._detail(request.path_params["workflow_id"], request.query_params.get("run_id") or None)
        return JSONResponse({
            "execution": detail["execution"],
            "history": detail["events"],
            "timeline": [bar.to_json() for bar in detail["bars"]],
            "pending_activities": detail["pending"],
        })

    def payload(self, request: Request) -> Response:
        """One payload field in full: `field=input|result|close_details`, or `event=N&attr=NAME`."""
        q = request.query_params
        info = self.engine.describe_execution(request.path_params["workflow_id"], q.get("run_id") or None)
        if q.get("event"):
            event_id = _int_param(q.get("event"), "event", 0, 1, 10**12)
            attr = q.get("attr") or ""
            events = self.engine.get_history(info.workflow_id, info.run_id, after_event_id=event_id - 1)
            if not events or events[0].event_id != event_id or attr not in events[0].attributes:
                raise HTTPException(404, f"event {event_id} has no attribute {attr!r}")
            text = events[0].attributes[attr]
            if not isinstance(text, str):
                return PlainTextResponse(json.dumps(text, indent=4, sort_keys=True), media_type="application/json")
        else:
            name = q.get("field") or ""
            if name not in views.EXECUTION_FIELDS:
                raise HTTPException(400, f"field must be one of {', '.join(views.EXECUTION_FIELDS)}")
            text = getattr(info, name)
        try:
            body = views.payload_value(self.engine.payloads, text, self.s.max_payload)
        except views.PayloadRefused as exc:
            return PlainTextResponse(str(exc), status_code=exc.status)
        return PlainTextResponse(body, media_type="application/json")

    # -- actions -----------------------------------------------------------------------------------

    def _authorize(self, request: Request, fields: dict[str, str]) -> str | None:
        """Why the action is refused (None: allowed)."""
        if self.s.read_only:
            return "this dashboard is read-only"
        origin = request.headers.get("origin")
        if origin is not None:
            # Defence in depth (the token is the guard): a browser names the page that sent the form.
            # Behind a reverse proxy the public name arrives as X-Forwarded-Host.
            ours = {request.headers.get(name, "").lower() for name in ("host", "x-forwarded-host")} - {""}
            if urlsplit(origin).netloc.lower() not in ours:
                return "cross-origin request refused"
        given = request.headers.get(TOKEN_HEADER) or fields.get("token") or ""
        auth = request.headers.get("authorization", "")
        if not given and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        expected = self.s.token or ""
        if not given or not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
            return "a valid token is required for this action"
        return None

    def _perform(self, action: str, workflow_id: str, fields: dict[str, str]) -> str:
        """Do `action`; return the run id to show next. Raises `HTTPException` for a bad request."""
        engine = self.engine
        run_id = fields.get("run_id") or None
        if action == "signal":
            name = (fields.get("name") or "").strip()
            if not name or len(name) > 256:
                raise HTTPException(400, "a signal needs a name (at most 256 characters)")
            raw = fields.get("input") or ""
            try:
                text = engine.payloads.dumps(json.loads(raw)) if raw.strip() else None
            except PayloadError as exc:  # too large or nested too deeply: refused before it is stored
                raise HTTPException(400, f"signal input refused: {exc}") from None
            except (ValueError, RecursionError) as exc:
                raise HTTPException(400, f"signal input is not valid JSON: {exc}") from None
            engine.signal_execution(workflow_id, run_id, name, text)
        elif action == "cancel":
            engine.request_cancel_execution(workflow_id, run_id)
        elif action == "terminate":
            reason = (fields.get("reason") or "").strip() or "terminated from the dashboard"
            engine.terminate_execution(workflow_id, run_id, reason=reason[:1000])
        elif action == "restart":
            info = engine.describe_execution(workflow_id, run_id)
            if info.is_open:
                raise HTTPException(409, "the execution is still open: cancel or terminate it before restarting")
            return engine.start_execution(
                info.workflow_id, info.workflow_type, info.version, info.task_list, info.input,
                tags=info.tags, decision_timeout=info.decision_timeout,
            )
        else:
            raise HTTPException(404, f"unknown action {action!r} (expected one of {', '.join(ACTIONS)})")
        return run_id or engine.describe_execution(workflow_id).run_id

    async def _act(self, request: Request) -> tuple[str, str, str]:
        """Check and do the action of a POST; return (workflow_id, run_id, action)."""
        action = request.path_params["action"]
        workflow_id = request.path_params["workflow_id"]
        fields = await _read_fields(request)
        refused = self._authorize(request, fields)
        if refused is not None:
            raise HTTPException(403, refused)
        if action not in ACTIONS:
            raise HTTPException(404, f"unknown action {action!r} (expected one of {', '.join(ACTIONS)})")
        try:
            run_id = await run_in_threadpool(self._perform, action, workflow_id, fields)
        except (ExecutionClosed, WorkflowAlreadyStarted) as exc:
            raise HTTPException(409, str(exc)) from None
        return workflow_id, run_id, action

    async def action(self, request: Request) -> Response:
        workflow_id, run_id, action = await self._act(request)
        query = urlencode({"run_id": run_id, "done": action})
        return RedirectResponse(f"/executions/{_quote_id(workflow_id)}?{query}", status_code=303)

    async def api_action(self, request: Request) -> Response:
        workflow_id, run_id, action = await self._act(request)
        return JSONResponse({"ok": True, "action": action, "workflow_id": workflow_id, "run_id": run_id})

    # -- errors ------------------------------------------------------------------------------------

    def _error(self, request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith(("/api/", "/payload/")):
            return JSONResponse({"error": message, "status": status}, status_code=status)
        return self.render(request, "error.html", status=status, status_code=status, message=message)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = exc.detail if exc.status_code != 404 or exc.detail != "Not Found" else "no such page"
        return self._error(request, exc.status_code, str(message))

    async def unknown_execution(self, request: Request, exc: Exception) -> Response:
        return self._error(request, 404, str(exc) or "no such execution")

    async def server_error(self, request: Request, exc: Exception) -> Response:
        # Starlette logs the traceback (it re-raises to the server); the page names the error only.
        return self._error(request, 500, f"internal error ({type(exc).__name__}); see the dashboard's log")


def _int_param(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise HTTPException(400, f"{name} must be a whole number") from None
    if not low <= number <= high:
        raise HTTPException(400, f"{name} must be between {low} and {high}")
    return number


async def _read_fields(request: Request) -> dict[str, str]:
    """The fields of an urlencoded form or a JSON object body (at most `MAX_FORM_BYTES`)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, "request body too large")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not body:
        return {}
    if kind == "application/json":
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            raise HTTPException(400, "body is not valid JSON") from None
        if not isinstance(data, dict):
            raise HTTPException(400, "body must be a JSON object")
        # In JSON, `input` is the signal's value itself; in a form it is JSON text.
        return {
            str(k): v if isinstance(v, str) and k != "input" else json.dumps(v)
            for k, v in data.items()
            if v is not None
        }
    if kind == "application/x-www-form-urlencoded":
        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
        except (UnicodeDecodeError, ValueError):
            raise HTTPException(400, "malformed form") from None
        return {k: v[0] for k, v in parsed.items()}
    raise HTTPException(415, "send a form (application/x-www-form-urlencoded) or JSON")
