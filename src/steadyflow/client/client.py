"""`Client` and `AsyncClient`: start executions and find them again, from application code."""

from __future__ import annotations

import datetime as _dt
import threading
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from ..engines import Engine, display_url, open_engine
from ..engines.base import CLOSED_STATUSES, ID_REUSE_POLICIES, OPEN, ExecutionInfo
from ..errors import ConfigError, EngineError, WorkflowNotFound
from ..search import encode_attributes, parse_where
from ..workflow import Workflow
from .dual import Awaiting, Blocking, Emit, Op, StreamOp, call, operation, stream
from .handle import AsyncWorkflowHandle, HandleBase, WorkflowHandle

H = TypeVar("H", bound=HandleBase)

MAX_TAGS = 5
"""At most this many tags per execution (SWF's and simpleflow's limit)."""
LIST_STATUSES = (OPEN, "closed", *CLOSED_STATUSES)


class ClientBase(Generic[H]):
    """What `Client` and `AsyncClient` do, written once (see `steadyflow.client.dual`).

    Args:
        url: the engine URL, with the command line's rules: `STEADYFLOW_URL`, else
            `sqlite:///steadyflow.db`; `postgresql://...`, `memory://`. Opened on first use,
            and closed by `close()` (or leaving the `with` block).
        engine: an engine that is already open, instead of a URL; the caller keeps it, so
            `close()` leaves it open.
    """

    _handle_class: ClassVar[type[HandleBase]]

    def __init__(self, url: str | None = None, *, engine: Engine | None = None) -> None:
        if url is not None and engine is not None:
            raise ConfigError("give the client an engine URL or an open engine, not both")
        self.url = url
        self._engine = engine
        self._owns_engine = engine is None
        self._closed = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        url = self.url or (self._engine.source_url if self._engine is not None else None)
        return f"{type(self).__name__}({display_url(url) if url else 'default URL'!r})"

    @property
    def engine(self) -> Engine:
        """The engine, opened on first use (a blocking call, also on `AsyncClient`)."""
        return self._open()

    @property
    def schedules(self) -> Any:
        """The engine's schedules (`steadyflow.schedules.Schedules`: create, list, pause, trigger,
        backfill...). Its methods are blocking calls, also on `AsyncClient`."""
        from ..schedules import Schedules

        return Schedules(self.engine)

    def _open(self) -> Engine:
        with self._lock:
            if self._closed:
                raise EngineError("this client is closed")
            if self._engine is None:
                self._engine = open_engine(self.url)
            return self._engine

    def _connect(self) -> Op[Engine]:
        """The engine, opened through the client's I/O when it is not yet."""
        if self._engine is not None and not self._closed:
            return self._engine
        return (yield from call(self._open))

    def _close(self) -> None:
        with self._lock:
            engine, self._closed = self._engine, True
            if engine is not None and self._owns_engine:
                self._engine = None
                engine.close()

    def get_handle(self, workflow_id: str, run_id: str | None = None) -> H:
        """A handle on an execution: its latest run, or the run `run_id`. Nothing is read yet: an
        unknown id raises `UnknownExecution` when the handle is used."""
        return self._handle_class(self, workflow_id, run_id)  # type: ignore[return-value]

    # -- operations ------------------------------------------------------------------------------

    @operation
    def start(
        self,
        workflow: type[Workflow] | str,
        /,
        *args: Any,
        workflow_id: str | None = None,
        task_list: str | None = None,
        tags: Iterable[str] | None = None,
        id_reuse_policy: str = "allow_duplicate",
        search_attributes: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Op[H]:
        """Start an execution of `workflow` (a Workflow class or a `"module.Class"` path) with
        `*args, **kwargs`; return its handle.

        `workflow_id` defaults to `<type>-<random>`; `task_list` to the workflow's; `tags` (at
        most 5) are recorded and can be listed by; `id_reuse_policy` is one of
        `allow_duplicate`, `allow_duplicate_failed_only`, `reject_duplicate`. Raises
        `WorkflowAlreadyStarted` when `workflow_id` is open (or its reuse is refused).
        `search_attributes` maps names to str, int, float, bool or datetime values the execution
        can be listed by (`list(where=...)`, docs/search.md).
        """
        from ..local import start as start_execution  # here: `import steadyflow` stays light

        cls = resolve_workflow(workflow)
        tag_list = check_tags(tags)
        if search_attributes:
            encode_attributes(search_attributes)  # bad names or types fail here, before connecting
        if id_reuse_policy not in ID_REUSE_POLICIES:
            raise ConfigError(
                f"unknown id reuse policy {id_reuse_policy!r} (expected one of {', '.join(ID_REUSE_POLICIES)})"
            )
        engine = yield from self._connect()
        wid, rid = yield from call(
            start_execution, engine, cls, args, kwargs, workflow_id=workflow_id, task_list=task_list,
            tags=tag_list, id_reuse_policy=id_reuse_policy, search_attributes=search_attributes,
        )
        return self._handle_class(self, wid, rid, follow_runs=True)  # type: ignore[return-value]

    @stream
    def list(
        self,
        status: str | None = None,
        workflow_type: str | None = None,
        tag: str | None = None,
        started_after: _dt.datetime | _dt.date | float | str | None = None,
        started_before: _dt.datetime | _dt.date | float | str | None = None,
        page_size: int = 100,
        limit: int | None = None,
        where: str | None = None,
    ) -> StreamOp[ExecutionInfo]:
        """Executions, newest first, read a page at a time as the iteration goes.

        `status`: `open`, `closed` or one close status (`completed`, `failed`, `canceled`,
        `terminated`, `continued_as_new`, `timed_out`). `tag`: executions started with it.
        `started_after <= start time < started_before`: datetimes (naive ones are UTC, as the
        command line shows times), dates (midnight UTC), epoch seconds or ISO 8601 text.
        `where`: a where-expression over search attributes, e.g. `"Customer = 'acme' AND Amount > 100"`
        (docs/search.md). `limit`: stop after that many. Pages are read by offset: an execution started during
        the iteration may push one already listed onto the next page, where it is skipped.
        """
        if status is not None and status not in LIST_STATUSES:
            raise ConfigError(f"unknown status {status!r} (expected one of {', '.join(LIST_STATUSES)})")
        if page_size < 1:
            raise ConfigError(f"page_size must be at least 1, not {page_size}")
        after, before = to_epoch(started_after, "started_after"), to_epoch(started_before, "started_before")
        if where is not None:
            parse_where(where)  # a malformed expression fails here, before connecting
        engine = yield from self._connect()
        offset, count = 0, 0
        previous: set[str] = set()
        while limit is None or count < limit:
            want = page_size if limit is None else min(page_size, limit - count)
            page = yield from call(
                engine.list_executions, status=status, workflow_type=workflow_type, limit=want, offset=offset,
                tag=tag, started_after=after, started_before=before, where=where,
            )
            for info in page:
                if info.run_id in previous:  # pushed here from the last page by a newer execution
                    continue
                yield Emit(info)
                count += 1
                if limit is not None and count >= limit:
                    return
            if len(page) < want:
                return
            offset += len(page)
            previous = {info.run_id for info in page}

    @operation
    def close(self) -> Op[None]:
        """Close the engine if this client opened it; the client cannot be used afterwards."""
        yield from call(self._close)


class Client(ClientBase[WorkflowHandle], Blocking):
    """Starts and finds executions from application code (a web handler, a script, a job).

        with steadyflow.Client("postgresql://app@db/prod") as client:
            handle = client.start(Checkout, order_id, workflow_id=f"checkout-{order_id}")
            receipt = handle.result(timeout=30)

    Safe to share between threads. Methods block; `AsyncClient` is the same with `await`.
    """

    _handle_class = WorkflowHandle

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(ClientBase[AsyncWorkflowHandle], Awaiting):
    """`Client` for asyncio code: every method is awaited, `list()` is iterated with `async for`.

    Engine calls run in worker threads (`asyncio.to_thread`) and waits use `asyncio.sleep`, so
    the event loop is never blocked and many `await handle.result()` can wait at once.
    """

    _handle_class = AsyncWorkflowHandle

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def resolve_workflow(workflow: Any) -> type[Workflow]:
    """A Workflow class, given as itself or as a `"module.Class"` path."""
    if isinstance(workflow, str):
        from ..decider import load_workflow

        return load_workflow(workflow)
    if isinstance(workflow, type) and issubclass(workflow, Workflow):
        return workflow
    raise WorkflowNotFound(f"{workflow!r} is neither a Workflow subclass nor a 'module.Class' path")


def check_tags(tags: Iterable[str] | None) -> tuple[str, ...]:
    """Tags as the engine takes them; at most `MAX_TAGS` non-empty strings."""
    if tags is None:
        return ()
    found = (tags,) if isinstance(tags, str) else tuple(tags)
    if len(found) > MAX_TAGS:
        raise ConfigError(f"at most {MAX_TAGS} tags per execution, got {len(found)}: {', '.join(map(str, found))}")
    for tag in found:
        if not isinstance(tag, str) or not tag:
            raise ConfigError(f"a tag must be a non-empty string, not {tag!r}")
    return found


def to_epoch(value: _dt.datetime | _dt.date | float | str | None, name: str = "time") -> float | None:
    """Epoch seconds from a datetime (naive: UTC), a date (midnight UTC), a number or ISO 8601 text."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a datetime, a date, epoch seconds or ISO 8601 text, not {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            value = _dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise ConfigError(
                f"{name}: {value!r} is not an ISO 8601 date or datetime (e.g. 2024-05-01T12:00:00Z)"
            ) from None
    if isinstance(value, _dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)).timestamp()
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day, tzinfo=_dt.timezone.utc).timestamp()
    raise ConfigError(f"{name} must be a datetime, a date, epoch seconds or ISO 8601 text, not {value!r}")


__all__ = ["AsyncClient", "Client", "ClientBase", "check_tags", "resolve_workflow", "to_epoch"]
