"""stefuna's `Worker`: subclass it, write `run_task(task_token, input_data)`, and a pool serves it.

There is one instance per worker process (`Worker.worker_instance`), built when the process
starts, with `self.config` set to the server's `worker_config` and `init()` called once. Each task
calls `run_task(task_token, input_data)`; its result follows stefuna's rules for Step Functions'
`SendTaskSuccess` output:

- a `str` is the output verbatim (not checked to be JSON);
- anything else is `json.dumps`-ed (stefuna's encoding, kept byte for byte), `None` gives `"{}"`;
- an exception fails the task with error `Task.Failure` and cause
  `Exception raised during task run: <str(exc)>`;
- `self.send_task_failure(error, cause)` fails it with your own values, and the return value is
  then ignored (the first of `send_task_success` / `send_task_failure` wins, as on AWS).

A cause is cut to 32,768 characters (the first 32,765 and `...`), as stefuna does; the error never
is. On our engines the failure is recorded with `reason = "<error>: <cause>"` (cut to 256
characters) and `details = {"error", "error_type", "message", "cause", "traceback"}`, so a
workflow's retry policy can name `Task.Failure` in `non_retryable_error_types`.

`input_data` is the task's input as one JSON value. A workflow that submits the activity with one
positional argument (`self.submit(activity.named("hello"), {"who": "me"})`) passes that argument;
with keyword arguments only, the dict of them; with no arguments, `{}`. Several positional
arguments (or both kinds) fail the task with `Task.Failure` (stefuna takes exactly one input).

Heartbeats need no thread here: the pool's supervisor heartbeats running tasks itself, and
`self.heartbeat(details)` publishes progress and returns True once cancellation was requested.
"""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any, ClassVar

from ..activity import heartbeat as _heartbeat
from ..errors import ConfigError, PayloadError
from ..worker.runner import Outcome, TaskHandler, decode_input, failure

logger = logging.getLogger("steadyflow.stepfunctions")

CAUSE_SIZE = 32768
"""Step Functions' limit on a failure's cause, which stefuna enforces before sending one."""
ELLIPSIS = "..."
TASK_FAILURE = "Task.Failure"


def safe_cause(cause: str) -> str:
    """stefuna's `safe_cause`: at most 32,768 characters, the cut ones replaced by `...`."""
    if len(cause) > CAUSE_SIZE:
        return cause[: CAUSE_SIZE - len(ELLIPSIS)] + ELLIPSIS
    return cause


def input_data(args: list[Any], kwargs: dict[str, Any]) -> Any:
    """The one value `run_task` receives: the single positional argument, else the keyword arguments."""
    if len(args) == 1 and not kwargs:
        return args[0]
    if not args:
        return kwargs
    raise ValueError(
        f"a stefuna Worker takes one input (one positional argument, or keyword arguments), "
        f"got {len(args)} positional and {len(kwargs)} keyword argument(s)"
    )


class Worker:
    """Subclass this and override `run_task(task_token, input_data)` (and `init()` if needed)."""

    worker_instance: ClassVar[Worker | None] = None
    """The single instance of this worker process."""
    config: ClassVar[Any] = None
    """The server's `worker_config`, set before the instance is built."""
    logger: ClassVar[logging.Logger] = logger

    def __init__(self, region: str | None = None, heartbeat: float = 0) -> None:
        self.region = region
        self.heartbeat_seconds = heartbeat
        self.task_token: str | None = None
        self._sent: Outcome | None = None
        self.init()

    def init(self) -> None:
        """Called once when the worker process starts, with `self.config` set. Override it."""

    def run_task(self, task_token: str, input_data: Any) -> Any:
        """Run one task; return a str (sent verbatim) or a JSON-able value. Override it."""
        raise NotImplementedError(f"{type(self).__name__} must override run_task(task_token, input_data)")

    def send_task_success(self, task_result: Any) -> None:
        """Complete the running task now with `task_result` (a str is sent verbatim)."""
        if self._check_unsent("send_task_success"):
            output = task_result if type(task_result) is str else json.dumps(task_result)  # noqa: E721 - stefuna's test
            self._sent = Outcome(True, result=output)

    def send_task_failure(self, error: str, cause: str) -> None:
        """Fail the running task now with your own `error` and `cause`; `run_task`'s return value
        is then ignored."""
        if self._check_unsent("send_task_failure"):
            self._sent = _failure(str(error), str(cause))

    def heartbeat(self, details: Any = None) -> bool:
        """Publish progress `details`; True once cancellation of the running task was requested."""
        return _heartbeat(details)

    def _check_unsent(self, what: str) -> bool:
        if self.task_token is None:
            self.logger.warning("%s called with no task running; ignored", what)
            return False
        if self._sent is not None:
            self.logger.warning("%s called after the task's outcome was sent; ignored", what)
            return False
        return True

    def _run_task(self, task_token: str, input_text: str | None) -> Outcome:
        """Run one task the way stefuna's `Worker._run_task` does; never raises for the task's errors."""
        self.task_token, self._sent = task_token, None
        try:
            try:
                args, kwargs = decode_input(input_text)
                data = input_data(args, kwargs)
            except (PayloadError, ValueError) as exc:
                raise ValueError(f"Error parsing task input json: {exc}") from exc
            self.logger.debug("Running task")
            result = self.run_task(task_token, data)
            if self._sent is None:
                if type(result) is not str:  # noqa: E721 - stefuna's test: a str subclass is encoded
                    result = json.dumps(result) if result is not None else "{}"
                self.send_task_success(result)
        except Exception as exc:
            self.logger.exception("Exception running task")
            if self._sent is None:
                tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
                self._sent = _failure(TASK_FAILURE, f"Exception raised during task run: {exc}", tb)
        finally:
            self.task_token = None
        assert self._sent is not None
        return self._sent


def _failure(error: str, cause: str, tb: list[str] | None = None) -> Outcome:
    cause = safe_cause(cause)
    return failure(error, cause, tb, cause=cause)


class WorkerHandler(TaskHandler):
    """Runs the tasks of one activity name with a `Worker` subclass, one instance per process."""

    def __init__(self, worker_class: type[Worker], config: Any = None, region: str | None = None, heartbeat: float = 0) -> None:
        if not (isinstance(worker_class, type) and issubclass(worker_class, Worker)):
            raise ConfigError(f"{worker_class!r} is not a subclass of steadyflow.stepfunctions.Worker")
        self.worker_class = worker_class
        self.config = {} if config is None else config
        self.region = region
        self.heartbeat = heartbeat
        self.instance: Worker | None = None

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__, instance=None)  # each process builds its own

    def start(self) -> None:
        self.worker_class.config = self.config
        self.instance = self.worker_class(region=self.region, heartbeat=self.heartbeat)
        Worker.worker_instance = self.instance
        self.worker_class.worker_instance = self.instance

    def run(self, task: dict[str, Any]) -> Outcome:
        if self.instance is None:
            self.start()
        assert self.instance is not None
        return self.instance._run_task(task["token"], task.get("input"))


__all__ = ["CAUSE_SIZE", "TASK_FAILURE", "Worker", "WorkerHandler", "input_data", "safe_cause"]
