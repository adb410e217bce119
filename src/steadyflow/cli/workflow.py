"""`steadyflow workflow ...`: start executions and look at them."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..decider import load_workflow, query_workflow
from ..engines.base import ID_REUSE_POLICIES, ExecutionInfo
from ..engines.memory import MemoryEngine
from ..errors import ConfigError
from ..history import Event
from ..local import run_local, start
from ..payload import json as sfjson
from ..payload.converter import PREFIX, PayloadEncrypted, Payloads, shown
from .common import Context, emit, format_option, parse_input, parse_json, pass_ctx, ts


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
@pass_ctx
def start_cmd(
    ctx: Context, workflow: str, input_: str | None, workflow_id: str | None, task_list: str | None,
    tags: str | None, local: bool, id_reuse_policy: str,
) -> None:
    """Start WORKFLOW (MODULE.Class); print its workflow id and run id."""
    args, kwargs = parse_input(input_)
    tag_list = tuple(t for t in (tags or "").split(",") if t)
    if len(tag_list) > 5:
        raise ConfigError("at most 5 tags")
    cls = load_workflow(workflow)
    if local:
        engine = MemoryEngine()
        info = run_local(cls, args, kwargs, engine=engine, workflow_id=workflow_id)
        finish(info, engine.payloads)
        return
    wid, rid = start(ctx.engine(), cls, args, kwargs, workflow_id=workflow_id, task_list=task_list, tags=tag_list,
                     id_reuse_policy=id_reuse_policy)
    click.echo(f"{wid} {rid}")


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


@workflow_group.command("list")
@click.option("--status", "-s", type=click.Choice(["open", "closed", "completed", "failed", "terminated"]))
@click.option("--workflow-type", help="Only executions of this type.")
@click.option("--limit", default=100, show_default=True)
@format_option
@pass_ctx
def list_cmd(ctx: Context, status: str | None, workflow_type: str | None, limit: int, fmt: str) -> None:
    """List executions, newest first."""
    rows = [
        {
            "Workflow ID": e.workflow_id,
            "Workflow Type": e.workflow_type,
            "Status": e.status.upper() if e.is_open else f"CLOSED ({e.status})",
            "Run ID": e.run_id,
            "Started": ts(e.start_time),
        }
        for e in ctx.engine().list_executions(status=status, workflow_type=workflow_type, limit=limit)
    ]
    emit(rows, fmt)


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
    }


@workflow_group.command("info")
@click.argument("workflow_id")
@click.argument("run_id", required=False)
@format_option
@pass_ctx
def info_cmd(ctx: Context, workflow_id: str, run_id: str | None, fmt: str) -> None:
    """Status, ids, input, result or failure, and timings of an execution."""
    engine = ctx.engine()
    row = _info_row(engine.describe_execution(workflow_id, run_id), engine.payloads)
    if fmt == "json":
        click.echo(json.dumps(row, indent=2))
    else:
        emit([{"field": k, "value": v} for k, v in row.items()], fmt)


@workflow_group.command("history")
@click.argument("workflow_id")
@click.argument("run_id", required=False)
@format_option
@pass_ctx
def history_cmd(ctx: Context, workflow_id: str, run_id: str | None, fmt: str) -> None:
    """The events of an execution (`--format json`: a JSON list, one object per event)."""
    engine = ctx.engine()
    events = engine.get_history(workflow_id, run_id)
    if fmt == "json":
        click.echo(json.dumps([e.to_json() for e in events], indent=2))
        return
    emit(
        [
            {"ID": e.event_id, "Event": e.event_type, "Time": ts(e.timestamp), "Attributes": _summary(e, engine.payloads)}
            for e in events
        ],
        fmt,
    )


PAYLOAD_ATTRIBUTES = frozenset({"input", "result", "details"})


def _summary(e: Event, payloads: Payloads) -> str:
    attributes = {k: shown(payloads, v) if k in PAYLOAD_ATTRIBUTES else v for k, v in e.attributes.items()}
    text = sfjson.dumps(attributes)
    return text if len(text) <= 160 else text[:157] + "..."


@workflow_group.command("tasks")
@click.argument("workflow_id")
@click.argument("run_id", required=False)
@click.option("--nb-tasks", "-n", type=int, help="Show at most this many tasks.")
@format_option
@pass_ctx
def tasks_cmd(ctx: Context, workflow_id: str, run_id: str | None, nb_tasks: int | None, fmt: str) -> None:
    """Each activity's last state and times, newest first (simpleflow's `workflow.tasks`)."""
    engine = ctx.engine()
    rows = task_rows(engine.get_history(workflow_id, run_id))
    running = {t["activity_id"]: t for t in engine.list_activity_tasks(workflow_id, run_id)}
    for row in rows:  # progress published by activities still running
        live = running.get(row["Tasks"])
        if live is not None and live.get("heartbeat_details") is not None:
            row["Last Heartbeat"] = live["heartbeat_details"]
    emit(rows[:nb_tasks] if nb_tasks else rows, fmt)


_STATES = {
    "ActivityTaskScheduled": "scheduled",
    "ActivityTaskStarted": "started",
    "ActivityTaskCompleted": "completed",
    "ActivityTaskFailed": "failed",
    "ActivityTaskTimedOut": "timed_out",
}


def task_rows(events: list[Event]) -> list[dict[str, Any]]:
    tasks: dict[str, dict[str, Any]] = {}
    by_scheduled: dict[int, str] = {}
    for e in events:
        state = _STATES.get(e.event_type)
        if state is None:
            continue
        if state == "scheduled":
            activity_id = e.attributes["activityId"]
            by_scheduled[e.event_id] = activity_id
            row = tasks.setdefault(activity_id, {"Tasks": activity_id, "Attempts": 0, "Scheduled Time": ts(e.timestamp)})
            row["Attempts"] += 1
        else:
            activity_id = by_scheduled.get(e.attributes.get("scheduledEventId", -1), "")
            row = tasks.get(activity_id)
            if row is None:
                continue
        row["Last State"] = state
        row["Last State Time"] = ts(e.timestamp)
        if state == "timed_out":
            row["Last Heartbeat"] = e.attributes.get("details")
    ordered = [
        {k: r.get(k) for k in ("Tasks", "Last State", "Last State Time", "Scheduled Time", "Attempts", "Last Heartbeat")}
        for r in tasks.values()
    ]
    return list(reversed(ordered))


@workflow_group.command("result")
@click.argument("workflow_id")
@click.argument("run_id", required=False)
@click.option("--wait", is_flag=True, help="Wait for the execution to close.")
@click.option("--timeout", type=float, help="With --wait: give up after this many seconds.")
@pass_ctx
def result_cmd(ctx: Context, workflow_id: str, run_id: str | None, wait: bool, timeout: float | None) -> None:
    """Print the result (JSON) of a closed execution; exit 1 if it failed."""
    engine = ctx.engine()
    deadline = None if timeout is None else time.monotonic() + timeout
    info = engine.describe_execution(workflow_id, run_id)
    while info.is_open and wait and (deadline is None or time.monotonic() < deadline):
        time.sleep(0.1)
        info = engine.describe_execution(workflow_id, info.run_id)
    if info.is_open:
        click.echo(f"Error: workflow {workflow_id} is still running (use --wait)", err=True)
        sys.exit(1)
    finish(info, engine.payloads)


@workflow_group.command("terminate")
@click.argument("workflow_id")
@click.argument("run_id", required=False)
@click.option("--reason", help="Why, recorded in the history.")
@pass_ctx
def terminate_cmd(ctx: Context, workflow_id: str, run_id: str | None, reason: str | None) -> None:
    """End an open execution at once."""
    ctx.engine().terminate_execution(workflow_id, run_id, reason=reason)



@workflow_group.command("signal")
@click.argument("workflow_id")
@click.argument("signal_name")
@click.option("--input", "-i", "input_", help="JSON input of the signal (what wait_signal returns).")
@click.option("--run-id", help="A specific run (default: the latest).")
@pass_ctx
def signal_cmd(ctx: Context, workflow_id: str, signal_name: str, input_: str | None, run_id: str | None) -> None:
    """Send signal SIGNAL_NAME to an open execution."""
    engine = ctx.engine()
    text = None if input_ is None else engine.payloads.dumps(parse_json(input_, "--input"))
    engine.signal_execution(workflow_id, run_id, signal_name, text)


@workflow_group.command("cancel")
@click.argument("workflow_id")
@click.option("--run-id", help="A specific run (default: the latest).")
@pass_ctx
def cancel_cmd(ctx: Context, workflow_id: str, run_id: str | None) -> None:
    """Ask an open execution to cancel: run() sees CancelledError at its next wait."""
    ctx.engine().request_cancel_execution(workflow_id, run_id)


@workflow_group.command("query")
@click.argument("workflow_id")
@click.argument("query_name")
@click.option("--input", "-i", "input_", help="JSON list of arguments for the query method.")
@click.option("--run-id", help="A specific run (default: the latest).")
@pass_ctx
def query_cmd(ctx: Context, workflow_id: str, query_name: str, input_: str | None, run_id: str | None) -> None:
    """Call @query method QUERY_NAME on the execution's replayed state; print its JSON answer."""
    args, _ = parse_input(input_)
    answer = query_workflow(ctx.engine(), workflow_id, run_id, query_name, tuple(args))
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
