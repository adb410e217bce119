"""`steadyflow activity rerun`: run one recorded activity again, here, to debug it (simpleflow's
`activity.rerun`).

The activity runs in this process, with the input its history recorded (or `--input`), inside
a task context like a worker's (`steadyflow.context()` gives the recorded ids and attempt;
heartbeats go nowhere). Its result is printed as JSON; when it raises, its traceback is printed
and the command exits 1, so a failure seen in production can be reproduced under a debugger.
Nothing is recorded in the history: the run it came from is left as it is. Side effects are the
activity's own, as in simpleflow (a `context().stop_execution()` does stop the execution).
"""

from __future__ import annotations

import inspect
import sys
import traceback
from typing import Any

import click

from ..activity import TaskContext, _current_task, find_activity
from ..errors import ConfigError
from ..payload import json as sfjson
from ..payload.serializers import SAFE
from ..payload.stored import has_stored_items, resolve_stored_items
from ..worker.runner import run_coroutine, split_input
from .common import Context, parse_json, pass_ctx
from .task import find_task


@click.group("activity")
def activity_group() -> None:
    """Work with recorded activity tasks."""


@activity_group.command("rerun")
@click.option("--workflow-id", required=True, help="The execution the activity ran in.")
@click.option("--run-id", help="A specific run (default: the latest).")
@click.option("--scheduled-id", type=int, help="Event id of the attempt's ActivityTaskScheduled.")
@click.option("--activity-id", help="The activity id (its last attempt).")
@click.option("--input", "-i", "input_", help="JSON input to run it with instead of the recorded one "
                                               "(a list of args, or {\"args\": [...], \"kwargs\": {...}}).")
@pass_ctx
def rerun_cmd(ctx: Context, workflow_id: str, run_id: str | None, scheduled_id: int | None,
              activity_id: str | None, input_: str | None) -> None:
    """Run one recorded activity locally and print its result; its traceback and exit 1 if it raises."""
    if (scheduled_id is None) == (activity_id is None):
        raise ConfigError("give exactly one of --scheduled-id and --activity-id")
    override = None if input_ is None else parse_json(input_, "--input")
    client = ctx.client()
    info = client.get_handle(workflow_id, run_id).describe()
    events = client.engine.get_history(info.workflow_id, info.run_id)
    task = find_task(events, info.workflow_id, activity_id=activity_id, scheduled_id=scheduled_id)
    activity = find_activity(task.name)
    payloads = client.engine.payloads
    data = override if input_ is not None else payloads.loads(
        task.input, SAFE | {activity.options.serializer}, f"activity {task.name}"
    )
    args, kwargs = split_input(data)
    task_fields = {
        "name": task.name, "workflow_id": info.workflow_id, "run_id": info.run_id,
        "activity_id": task.activity_id, "input": task.input, "control": task.control,
        "task_list": task.task_list, "attempt": task.attempts,
    }
    source = "the given input" if input_ is not None else "its recorded input"
    click.echo(
        f"rerunning {task.name} (activity {task.activity_id}, scheduled event {task.scheduled_id}, attempt "
        f"{task.attempts}) of {info.workflow_id} {info.run_id} with {source}", err=True,
    )
    token = _current_task.set(TaskContext(task_fields, None, payloads, client.engine))
    try:
        if has_stored_items((args, kwargs)):
            args, kwargs = resolve_stored_items((args, kwargs), _current_task.get().state_data_client)  # type: ignore[union-attr]
        result = _call(activity.func, args, kwargs)
    except Exception as exc:
        # The activity's own exception, as the worker saw it: its traceback from the activity's
        # frame down (this module's frames are left out), then exit 1.
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
            tb = tb.tb_next
        traceback.print_exception(type(exc), exc, tb, file=sys.stderr)
        sys.exit(1)
    finally:
        _current_task.reset(token)
    click.echo(sfjson.dumps(result))


def _call(func: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
    result = func(*args, **kwargs)
    if inspect.isawaitable(result):  # an `async def` activity: run it to its end here
        result = run_coroutine(_wait(result))
    return result


async def _wait(awaitable: Any) -> Any:
    return await awaitable


__all__ = ["activity_group"]
