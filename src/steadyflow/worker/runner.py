"""Run one activity task in this process and turn what happened into a completion or a failure.

Nothing here talks to the engine: the worker's supervisor (or the local runner) does, so a task
that crashes its process cannot leave a half-reported result behind.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..activity import TaskContext, _current_task, find_activity
from ..errors import PayloadError
from ..payload import json as sfjson

REASON_LIMIT = 256


@dataclass(frozen=True)
class Outcome:
    """`ok` with `result` (JSON text), or a failure with `reason` and `details` (JSON text)."""

    ok: bool
    result: str | None = None
    reason: str | None = None
    details: str | None = None


def decode_input(text: str | None) -> tuple[list[Any], dict[str, Any]]:
    """simpleflow's input: `{"args": [...], "kwargs": {...}}`; a list is positional arguments."""
    data = sfjson.loads(text) if text else {}
    if isinstance(data, list):
        return data, {}
    if isinstance(data, dict):
        return list(data.get("args") or ()), dict(data.get("kwargs") or {})
    return [data], {}


def attempt_of(control: str | None) -> int:
    try:
        data = json.loads(control) if control else {}
    except ValueError:
        return 1
    return int(data.get("attempt", 1)) if isinstance(data, dict) else 1


def failure_outcome(exc: BaseException, tb: list[str] | None = None) -> Outcome:
    """simpleflow's failure format: `reason = "<Class>: <message>"`, details with the traceback."""
    cls = type(exc)
    error_type = cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    reason = f"{cls.__name__}: {exc}"
    if len(reason) > REASON_LIMIT:
        reason = reason[: REASON_LIMIT - 4] + " ..."
    details = {
        "error": cls.__name__,
        "error_type": error_type,
        "message": str(exc),
        "traceback": tb if tb is not None else traceback.format_exception(cls, exc, exc.__traceback__),
    }
    return Outcome(False, reason=reason, details=sfjson.dumps(details))


def run_task(
    task: dict[str, Any],
    send_heartbeat: Callable[[Any], bool] | None = None,
    modules: tuple[str, ...] = (),
) -> Outcome:
    """Find the activity, call it with the decoded input, encode its result.

    `task` carries the fields of `engines.base.ActivityTask` as a dict (it crosses process pipes).
    A result JSON cannot hold fails the task with that message; nothing else is affected.
    """
    ctx = TaskContext(dict(task, attempt=attempt_of(task.get("control"))), send_heartbeat)
    token = _current_task.set(ctx)
    try:
        activity = find_activity(task["name"], modules)
        args, kwargs = decode_input(task.get("input"))
        result = activity.func(*args, **kwargs)
        try:
            return Outcome(True, result=sfjson.dumps(result))
        except PayloadError as exc:
            return failure_outcome(
                PayloadError(f"result of activity {task['name']} is not JSON-serialisable: {exc}"), tb=[]
            )
    except Exception as exc:
        return failure_outcome(exc)
    finally:
        _current_task.reset(token)
