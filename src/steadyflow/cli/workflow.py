"""`steadyflow workflow ...`: start executions and look at them."""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..client import WorkflowHandle
from ..client.client import LIST_STATUSES, check_tags, to_epoch
from ..decider import load_workflow
from ..engines.base import CLOSED_STATUSES, ID_REUSE_POLICIES, ExecutionInfo
from ..engines.memory import MemoryEngine
from ..errors import ConfigError, ResultTimeout
from ..history import Event
from ..local import run_local
from ..payload import json as sfjson
from ..payload.converter import PREFIX, PayloadEncrypted, Payloads, shown
from ..search import shown as shown_value
from ..search import values as search_values
from ..workflow_steps import add_step_options
from .common import (
    Context,
    emit,
    emit_record,
    format_option,
    header_option,
    parse_input,
    parse_json,
    pass_ctx,
    ts,
)
from .progress import Progress, ProgressTracker
from .views import PROFILE_COLUMNS, TASK_COLUMNS, profile_rows, task_rows, total_time

#: Keyword options of `Client.start`: workflow kwargs of these names cannot go through it.
START_OPTIONS = frozenset({"workflow_id", "task_list", "tags", "id_reuse_policy", "search_attributes"})


@click.group("workflow")
def workflow_group() -> None:
    """Start, list and inspect workflow executions."""


@workflow_group.command("start")
@click.argument("workflow")
@click.option("--input", "-i", "input_", help="JSON: a list of args, or {\"args\": [...], \"kwargs\": {...}}.")
@click.option("--workflow-id", help="Id of the execution (default: <name>-<random>).")
@click.option("--task-list", help="Decision task list (default: the workflow's).")
@click.option("--tags", help="Comma-separated tags (at most 5).")
@click.option("--local", is_flag=True, help="Run in this process, without persistence, and print the result.")
@click.option("--id-reuse-policy", type=click.Choice(ID_REUSE_POLICIES), default="allow_duplicate", show_default=True,
              help="May a closed workflow id be started again?")
@click.option("--force-steps", multiple=True, help="Steps to run even if done (comma-separated; `*`: all).")
@click.option("--skip-steps", multiple=True, help="Steps to skip unless forced (comma-separated).")
@click.option("--search-attribute", "search_attributes", multiple=True, metavar="NAME=VALUE",
              help="A typed search attribute (repeatable): VALUE is a JSON number, true/false, an ISO "
                   "datetime, or else a keyword.")
@pass_ctx
def start_cmd(
    ctx: Context, workflow: str, input_: str | None, workflow_id: str | None, task_list: str | None,
    tags: str | None, local: bool, id_reuse_policy: str, force_steps: tuple[str, ...] = (),
    skip_steps: tuple[str, ...] = (), search_attributes: tuple[str, ...] = (),
) -> None:
    """Start WORKFLOW (MODULE.Class); print its workflow id and run id."""
    attributes = parse_search_attributes(search_attributes)
    args, kwargs = parse_input(input_)
    kwargs = add_step_options(kwargs, force_steps, skip_steps)
    tag_list = check_tags(t for t in (tags or "").split(",") if t)
    cls = load_workflow(workflow)
    if local:
        engine = MemoryEngine()
        info = run_local(cls, args, kwargs, engine=engine, workflow_id=workflow_id)
        finish(info, engine.payloads)
        return
    clash = sorted(START_OPTIONS & set(kwargs))
    if clash:
        raise ConfigError(
            f"--input: kwargs named {', '.join(clash)} clash with start options; pass them in \"args\""
        )
    handle = ctx.client().start(cls, *args, workflow_id=workflow_id, task_list=task_list, tags=tag_list,
                                id_reuse_policy=id_reuse_policy, search_attributes=attributes or None, **kwargs)
    click.echo(f"{handle.workflow_id} {handle.run_id}")


def parse_search_attributes(items: tuple[str, ...]) -> dict[str, Any]:
    """`NAME=VALUE` options as typed values: JSON scalars keep their type, ISO datetimes become
    datetimes, anything else is a keyword (so `--search-attribute customer=acme` needs no quotes)."""
    attributes: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--search-attribute {item!r}: expected NAME=VALUE")
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = search_values.parse_datetime(text) or text
        attributes[search_values.check_name(name.strip())] = value
    return attributes


def finish(info: ExecutionInfo, payloads: Payloads) -> None:
    """Print the result of a closed execution (decoded); exit 1 when it did not complete."""
    if info.status == "completed":
        if info.result is None or not info.result.startswith(PREFIX):
            click.echo(info.result if info.result is not None else "null")
            return
        try:
            click.echo(sfjson.dumps(payloads.loads(info.result)))
        except PayloadEncrypted as exc:
            raise ConfigError(f"workflow {info.workflow_id} completed, but {exc}") from None
        return
    click.echo(f"Error: workflow {info.workflow_id} {info.status}: {info.close_reason}", err=True)
    sys.exit(1)


LIST_COLUMNS = ("Workflow ID", "Workflow Type", "Status", "Run ID", "Started")


@workflow_group.command("list")
@click.option("--status", "-s", type=click.Choice(LIST_STATUSES))
@click.option("--workflow-type", help="Only executions of this type.")
@click.option("--tag", help="Only executions started with this tag.")
@click.option("--where", help="Only executions whose search attributes match, e.g. \"Customer = 'acme' AND Amount > 100\".")
@click.option("--started-after", help="Only executions started at or after this ISO date or datetime (UTC by default).")
@click.option("--started-before", help="Only executions started before this ISO date or datetime (UTC by default).")
@click.option("--limit", type=int, default=100, show_default=True, help="At most this many executions: the page size.")
@click.option("--offset", type=int, help="Skip this many executions (newest first) before listing.")
@click.option("--page", type=int, help="Page number, 1 for the newest --limit executions (instead of --offset).")
@format_option
@header_option
@pass_ctx
def list_cmd(
    ctx: Context, status: str | None, workflow_type: str | None, tag: str | None, started_after: str | None,
    started_before: str | None, limit: int, offset: int | None, page: int | None, fmt: str, header: bool,
    where: str | None = None,
) -> None:
    """List executions, newest first, a page at a time (--limit with --page or --offset).

    `--where` filters by search attributes and built-in fields (docs/search.md)."""
    if limit < 0:
        raise ConfigError(f"--limit must be >= 0, got {limit}")
    if offset is not None and page is not None:
        raise ConfigError("--offset and --page cannot be used together")
    if offset is not None and offset < 0:
        raise ConfigError(f"--offset must be >= 0, got {offset}")
    if page is not None and page < 1:
        raise ConfigError(f"--page must be >= 1, got {page}")
    skip = (page - 1) * limit if page is not None else (offset or 0)
    after, before = to_epoch(started_after, "--started-after"), to_epoch(started_before, "--started-before")
    # The engine, not `Client.list`: one page is one query, at an offset the client does not take.
    executions = ctx.engine().list_executions(
        status=status, workflow_type=workflow_type, limit=limit, offset=skip, tag=tag,
        started_after=after, started_before=before, where=where,
    )
    rows = [
        {
            "Workflow ID": e.workflow_id,
            "Workflow Type": e.workflow_type,
            "Status": e.status.upper() if e.is_open else f"CLOSED ({e.status})",
            "Run ID": e.run_id,
            "Started": ts(e.start_time),
        }
        for e in executions
    ]
    emit(rows, fmt, header=header, columns=LIST_COLUMNS)


def _info_row(e: ExecutionInfo, payloads: Payloads) -> dict[str, Any]:
    elapsed = (e.close_time or time.time()) - e.start_time
    return {
        "workflow_id": e.workflow_id,
        "run_id": e.run_id,
        "workflow_type.name": e.workflow_type,
        "workflow_type.version": e.version,
        "task_list": e.task_list,
        "status": e.status,
        "tag_list": ",".join(e.tags),
        "start_time": ts(e.start_time),
        "close_time": ts(e.close_time),
        "execution_time": round(elapsed, 2),
        "input": shown(payloads, e.input),
        "result": shown(payloads, e.result),
        "close_reason": e.close_reason,
        "close_details": shown(payloads, e.close_details),
        # Last and only when set: simpleflow's fields keep their order and number.
        **({"search_attributes": {k: shown_value(v) for k, v in e.search_attributes.items()}} if e.search_attributes else {}),
    }


@workflow_group.command("info")
@click.argument("workflow_id")
@click.argument("run_id", required=False)
@format_option
@header_option
@pass_ctx
def info_cmd(ctx: Context, workflow_id: str, run_id: str | None, fmt: str, header: bool) -> None:
    """Type, ids, status, input, result or failure, and timings of an execution.

    `--format json`: one object (a list of the values with --no-header); `--format csv`: a header
    row of the field names, then one row, as simpleflow's `workflow.info` prints it.
    """
    client = ctx.client()
    row = _info_row(client.get_handle(workflow_id, run_id).describe(), client.engine.payloads)
    emit_record(row, fmt, header=header)


HISTORY_COLUMNS = ("ID", "Event", "Time", "Attributes")


@workflow_group.command("history")
@click.argument("workflow_id")
@click.argument("run_id", required=False)
@format_option
@header_option
@pass_ctx
def history_cmd(ctx: Context, workflow_id: str, run_id: str | None, fmt: str, header: bool) -> None:
    """The events of an execution.

    `--format json`: a JSON list, one object per event (what `workflow replay` reads; --header
    does not change it). `--format csv`: ID, Event, Time and the attributes as JSON, in full.
    """
    client = ctx.client()
    events = client.get_handle(workflow_id, run_id).history()
    engine = client.engine
    if fmt == "json":
        click.echo(json.dumps([e.to_json() for e in events], indent=2))
        return
    full = fmt in ("csv", "tsv")
    emit(
        [
            {"ID": e.event_id, "Event": e.event_type, "Time": ts(e.timestamp),
             "Attributes": _summary(e, engine.payloads, full=full)}
            for e in events
        ],
        fmt, header=header, columns=HISTORY_COLUMNS,
    )


PAYLOAD_ATTRIBUTES = frozenset({"input", "result", "details"})


def _summary(e: Event, payloads: Payloads, full: bool = False) -> str:
    attributes = {k: shown(payloads, v) if k in PAYLOAD_ATTRIBUTES else v for k, v in e.attributes.items()}
    text = sfjson.dumps(attributes)
    return text if full or len(text) <= 160 else text[:157] + "..."


@workflow_group.command("tasks")
@click.argument("workflow_id")
@click.argument("run_id", required=False)
@click.option("--nb-tasks", "-n", type=int, help="Show at most this many tasks.")
@format_option
@header_option
@pass_ctx
def tasks_cmd(ctx: Context, workflow_id: str, run_id: str | None, nb_tasks: int | None, fmt: str,
              header: bool) -> None:
    """Each activity's last state and times, newest first (simpleflow's `workflow.tasks`)."""
    client = ctx.client()
    rows = task_rows(client.get_handle(workflow_id, run_id).history())
    engine = client.engine
    running = {t["activity_id"]: t for t in engine.list_activity_tasks(workflow_id, run_id)}
    for row in rows:  # progress published by activities still running
        live = running.get(row["Tasks"])
        if live is not None and live.get("heartbeat_details") is not None:
            row["Last Heartbeat"] = live["heartbeat_details"]
    emit(rows[:nb_tasks] if nb_tasks else rows, fmt, header=header, columns=TASK_COLUMNS)


@workflow_group.command("profile")
@click.argument("workflow_id")
@click.argument("run_id", required=False)
@click.option("--nb-tasks", "-n", type=int, help="Show only this many tasks, the longest-running first.")
@format_option
@header_option
@pass_ctx
def profile_cmd(ctx: Context, workflow_id: str, run_id: str | None, nb_tasks: int | None, fmt: str,
                header: bool) -> None:
    """Where the time went: each activity attempt's wait and run, longest first (simpleflow's
    `workflow.profile`).

    Time Scheduled: scheduled to started; Time Running: started to its end; Percentage of total
    time: Time Running over the time from the run's first event to its last (to now while open).
    """
    client = ctx.client()
    handle = client.get_handle(workflow_id, run_id)
    info = handle.describe()
    events = client.engine.get_history(info.workflow_id, info.run_id)
    now = time.time() if info.is_open else None
    rows = profile_rows(events, now)
    title = f"{info.workflow_id} {info.run_id}: {total_time(events, now):.2f}s in total ({info.status})"
    emit(rows[:nb_tasks] if nb_tasks else rows, fmt, title=title, header=header, columns=PROFILE_COLUMNS)


@workflow_group.command("result")
@click.argument("workflow_id")
@click.argument("run_id", required=False)
@click.option("--wait", is_flag=True, help="Wait for the execution to close.")
@click.option("--timeout", type=float, help="With --wait: give up after this many seconds.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="With --wait: show the tasks done, running and failed on stderr while waiting.")
@pass_ctx
def result_cmd(ctx: Context, workflow_id: str, run_id: str | None, wait: bool, timeout: float | None,
               progress: bool) -> None:
    """Print the result (JSON) of a closed execution; exit 1 if it failed.

    A run that continued as new is followed to the last run of its chain. With --wait, a live
    progress line goes to stderr on a terminal (plain lines when a count changes elsewhere);
    stdout has only the result.
    """
    client = ctx.client()
    handle = client.get_handle(workflow_id, run_id)
    try:
        if wait and progress:
            info = wait_with_progress(handle, ProgressTracker(client.engine, workflow_id, run_id), timeout)
        else:
            info = handle.wait(timeout=timeout if wait else 0)
    except ResultTimeout:
        hint = f"after {timeout:g}s" if wait and timeout is not None else "(use --wait)"
        click.echo(f"Error: workflow {workflow_id} is still running {hint}", err=True)
        sys.exit(1)
    finish(info, client.engine.payloads)


#: Pauses between two looks at an open execution while showing progress: fast first (a short
#: workflow answers in milliseconds), then no more than a few looks a second.
FIRST_LOOK, MAX_LOOK = 0.02, 0.25


def wait_with_progress(handle: WorkflowHandle, tracker: ProgressTracker, timeout: float | None) -> ExecutionInfo:
    """`handle.wait(timeout)`, showing the tracker's progress on stderr meanwhile.

    The history says when the chain of runs closed; the engine then gives its last run's info.
    Raises `ResultTimeout`, as `wait` does, when `timeout` passes first.
    """
    deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
    pause = FIRST_LOOK
    with Progress() as progress:
        while True:
            snapshot = tracker.poll()
            progress.update(snapshot)
            if snapshot.closed:
                break
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            time.sleep(pause if left is None else min(pause, left))
            pause = min(pause * 2, MAX_LOOK)
    if snapshot.closed:  # the run the tracker saw close (the last of its chain): answers at once
        return handle.client.get_handle(handle.workflow_id, tracker.run_id).wait(timeout=MAX_LOOK * 20)
    return handle.wait(timeout=0)


@workflow_group.command("terminate")
@click.argument("workflow_id")
@click.argument("run_id", required=False)
@click.option("--reason", help="Why, recorded in the history.")
@pass_ctx
def terminate_cmd(ctx: Context, workflow_id: str, run_id: str | None, reason: str | None) -> None:
    """End an open execution at once."""
    ctx.client().get_handle(workflow_id, run_id).terminate(reason)


@workflow_group.command("signal")
@click.argument("workflow_id")
@click.argument("signal_name")
@click.option("--input", "-i", "input_", help="JSON input of the signal (what wait_signal returns).")
@click.option("--run-id", help="A specific run (default: the latest).")
@pass_ctx
def signal_cmd(ctx: Context, workflow_id: str, signal_name: str, input_: str | None, run_id: str | None) -> None:
    """Send signal SIGNAL_NAME to an open execution."""
    value = None if input_ is None else parse_json(input_, "--input")
    ctx.client().get_handle(workflow_id, run_id).signal_value(signal_name, value)


@workflow_group.command("cancel")
@click.argument("workflow_id")
@click.option("--run-id", help="A specific run (default: the latest).")
@pass_ctx
def cancel_cmd(ctx: Context, workflow_id: str, run_id: str | None) -> None:
    """Ask an open execution to cancel: run() sees CancelledError at its next wait."""
    ctx.client().get_handle(workflow_id, run_id).cancel()


@workflow_group.command("query")
@click.argument("workflow_id")
@click.argument("query_name")
@click.option("--input", "-i", "input_", help="JSON list of arguments for the query method.")
@click.option("--run-id", help="A specific run (default: the latest).")
@pass_ctx
def query_cmd(ctx: Context, workflow_id: str, query_name: str, input_: str | None, run_id: str | None) -> None:
    """Call @query method QUERY_NAME on the execution's replayed state; print its JSON answer."""
    args, _ = parse_input(input_)
    answer = ctx.client().get_handle(workflow_id, run_id).query(query_name, *args)
    click.echo(sfjson.dumps(answer))


@workflow_group.command("replay")
@click.argument("history_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--workflow", "workflow_path", help="MODULE.Class to replay with (default: from the history).")
def replay_cmd(history_file: str, workflow_path: str | None) -> None:
    """Replay a saved history (from `workflow history --format json`) against the current code.

    Exits 1 with the non-determinism found, 0 when the code still matches the history.
    """
    from ..testing import Replayer

    workflows = [load_workflow(workflow_path)] if workflow_path else []
    Replayer(workflows).replay(Path(history_file))
    click.echo(f"ok: {history_file} replays without non-determinism")


@workflow_group.command("restart")
@click.argument("workflow_id")
@click.argument("run_id", required=False)
@pass_ctx
def restart_cmd(ctx: Context, workflow_id: str, run_id: str | None) -> None:
    """Terminate the run if it is open, then start WORKFLOW_ID again with the run's input, tags,
    task list, type and version (simpleflow's `workflow.restart`); print the new ids.

    The input is the run's recorded `WorkflowExecutionStarted` input, as it is stored (encrypted
    or offloaded input is reused as it is, without decoding it here).
    """
    client = ctx.client()
    engine = client.engine
    info = client.get_handle(workflow_id, run_id).describe()
    started = engine.get_history(info.workflow_id, info.run_id)[0].attributes
    if info.is_open:
        engine.terminate_execution(info.workflow_id, info.run_id, reason="workflow.restart")
    extra: dict[str, Any] = {}
    if getattr(info, "search_attributes", None):
        extra["search_attributes"] = info.search_attributes  # type: ignore[attr-defined]
    new_run = engine.start_execution(
        info.workflow_id, info.workflow_type, info.version, info.task_list, started.get("input", info.input),
        tags=info.tags, decision_timeout=info.decision_timeout, **extra,
    )
    click.echo(f"{info.workflow_id} {new_run}")


FILTER_COLUMNS = (
    "Workflow ID", "Workflow Type", "Workflow Version", "Run ID", "Status", "Close Status", "Start Timestamp",
    "Close Timestamp", "Cancel Requested", "Input", "Tags", "Decision Tasks Timeout", "Parent Workflow ID",
    "Parent Run ID",
)
"""simpleflow's `workflow.filter` columns (`pretty.list_details`), without SWF's child policy and
execution timeout."""


@workflow_group.command("filter")
@click.option("--status", "-s", type=click.Choice(["open", "closed"]), default="open", show_default=True)
@click.option("--tag", help="Only executions started with this tag.")
@click.option("--workflow-id", help="Only executions of this workflow id.")
@click.option("--workflow-type-name", help="Only executions of this workflow type.")
@click.option("--workflow-type-version", help="Only executions of this type version.")
@click.option("--close-status", "-c", type=click.Choice(CLOSED_STATUSES, case_sensitive=False),
              help="Only closed executions that ended so (implies --status closed).")
@click.option("--started-since", "-d", type=int, default=30, show_default=True,
              help="Only executions started in the last N days (0: any time); ignored with --started-after.")
@click.option("--started-after", "--from-date", "started_after", help="Started at or after this ISO date/datetime.")
@click.option("--started-before", "--to-date", "started_before", help="Started before this ISO date/datetime.")
@click.option("--closed-after", help="Closed at or after this ISO date/datetime.")
@click.option("--closed-before", help="Closed before this ISO date/datetime.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="Page size.")
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True, help="Page number, 1 = newest.")
@format_option
@header_option
@pass_ctx
def filter_cmd(
    ctx: Context, status: str, tag: str | None, workflow_id: str | None, workflow_type_name: str | None,
    workflow_type_version: str | None, close_status: str | None, started_since: int, started_after: str | None,
    started_before: str | None, closed_after: str | None, closed_before: str | None, limit: int, page: int,
    fmt: str, header: bool,
) -> None:
    """Executions matching every filter given, newest first, a page at a time (simpleflow's
    `workflow.filter`, with the columns of its `list_details`)."""
    if close_status and status == "open" and ctx_source(click.get_current_context(), "status") != "default":
        raise ConfigError("--close-status needs --status closed")
    if workflow_type_version and not workflow_type_name:
        raise ConfigError("--workflow-type-version needs --workflow-type-name")
    if started_since < 0:
        raise ConfigError(f"--started-since must be >= 0 days, got {started_since}")
    after = to_epoch(started_after, "--started-after")
    if after is None and started_since:
        after = time.time() - started_since * 86400.0
    before = to_epoch(started_before, "--started-before")
    closed_from, closed_to = to_epoch(closed_after, "--closed-after"), to_epoch(closed_before, "--closed-before")
    if closed_from is not None or closed_to is not None:
        status = "closed"

    def wanted(e: ExecutionInfo) -> bool:
        if workflow_id is not None and e.workflow_id != workflow_id:
            return False
        if workflow_type_version is not None and e.version != workflow_type_version:
            return False
        if closed_from is not None and (e.close_time is None or e.close_time < closed_from):
            return False
        return closed_to is None or (e.close_time is not None and e.close_time < closed_to)

    client = ctx.client()
    found = (
        e for e in client.list(status=close_status.lower() if close_status else status,
                               workflow_type=workflow_type_name, tag=tag, started_after=after,
                               started_before=before, page_size=max(limit, 100))
        if wanted(e)
    )
    payloads = client.engine.payloads
    rows = [_filter_row(e, payloads) for e in itertools.islice(found, (page - 1) * limit, page * limit)]
    emit(rows, fmt, header=header, columns=FILTER_COLUMNS)


def ctx_source(ctx: click.Context, name: str) -> str:
    """Whether option `name` was given (`commandline`, `environment`) or left at its `default`."""
    source = ctx.get_parameter_source(name)
    return "default" if source is None or source.name in ("DEFAULT", "DEFAULT_MAP") else source.name.lower()


def _filter_row(e: ExecutionInfo, payloads: Payloads) -> dict[str, Any]:
    return {
        "Workflow ID": e.workflow_id,
        "Workflow Type": e.workflow_type,
        "Workflow Version": e.version,
        "Run ID": e.run_id,
        "Status": "OPEN" if e.is_open else "CLOSED",
        "Close Status": None if e.is_open else e.status.upper(),
        "Start Timestamp": ts(e.start_time),
        "Close Timestamp": ts(e.close_time),
        "Cancel Requested": e.cancel_requested,
        "Input": shown(payloads, e.input),
        "Tags": ",".join(e.tags),
        "Decision Tasks Timeout": e.decision_timeout,
        "Parent Workflow ID": e.parent_workflow_id,
        "Parent Run ID": e.parent_run_id,
    }
