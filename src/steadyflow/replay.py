"""Replay: run a workflow's `run()` against its history and work out the next decisions.

The history is read in order. Events that a decision caused (a task scheduled, a timer started, a
marker recorded) are matched, one by one, against what `run()` asks for; any difference is a
`NonDeterminismError`. Events from the outside world (a task closed, a timer fired) are held back
and handed to the workflow at the next decision point, i.e. at the `DecisionTaskStarted` where the
original decider saw them. So `run()` sees, on every replay, exactly what it saw the first time —
which is what makes `FIRST_COMPLETED` and `as_completed` replay faithfully.

`run()` executes in its own thread and parks whenever it needs an unfinished future; the decider
thread resumes it at each decision point. Only one of the two runs at a time. The same mechanism
could keep a workflow alive between decision tasks (the sticky cache) and feed it new events only.

Alternatives rejected: re-running `run()` from the top at every decision point and aborting with
an exception when it blocks (simpleflow) is quadratic and cannot tell what was seen when.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import sys
import threading
import traceback
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import history as h
from .activity import Activity, ActivityOptions, as_activity
from .decisions import (
    CancelTimer,
    CompleteWorkflowExecution,
    Decision,
    FailWorkflowExecution,
    RecordMarker,
    ScheduleActivityTask,
    StartTimer,
)
from .errors import NonDeterminismError, PayloadError, TaskFailed, TaskTimedOut
from .futures import Future, current_waiter
from .payload import json as sfjson
from .worker.runner import decode_input
from .workflow import Workflow, WorkflowFailure

ACTIVITY_ID_LIMIT = 256


class _Abandon(BaseException):
    """Unwinds a parked `run()` whose decision is done; user code should not catch it."""


@dataclass
class _Command:
    decision: Decision
    on_recorded: Callable[[h.Event], None] | None = None

    def describe(self) -> str:
        d = self.decision
        if isinstance(d, ScheduleActivityTask):
            return f"activity {d.activity_id} ({d.name}) with input {d.input}"
        if isinstance(d, StartTimer):
            return f"timer {d.timer_id}"
        if isinstance(d, CancelTimer):
            return f"cancel of timer {d.timer_id}"
        if isinstance(d, RecordMarker):
            return f"marker {d.name} with details {d.details}"
        if isinstance(d, CompleteWorkflowExecution):
            return "completion of the workflow"
        return f"failure of the workflow ({d.reason})"

    def matches(self, event: h.Event) -> bool:
        d, a, t = self.decision, event.attributes, event.event_type
        if isinstance(d, ScheduleActivityTask):
            return (
                t == h.ACTIVITY_TASK_SCHEDULED
                and a.get("activityId") == d.activity_id
                and a.get("activityType", {}).get("name") == d.name
                and a.get("input") == d.input
            )
        if isinstance(d, StartTimer):
            return t in (h.TIMER_STARTED, h.START_TIMER_FAILED) and a.get("timerId") == d.timer_id
        if isinstance(d, CancelTimer):
            return t in (h.TIMER_CANCELED, h.CANCEL_TIMER_FAILED) and a.get("timerId") == d.timer_id
        if isinstance(d, RecordMarker):
            return t == h.MARKER_RECORDED and a.get("markerName") == d.name and a.get("details") == d.details
        if isinstance(d, CompleteWorkflowExecution):
            return t == h.WORKFLOW_EXECUTION_COMPLETED
        return t == h.WORKFLOW_EXECUTION_FAILED


def describe_event(event: h.Event) -> str:
    a = event.attributes
    if event.event_type == h.ACTIVITY_TASK_SCHEDULED:
        return f"activity {a.get('activityId')} ({a.get('activityType', {}).get('name')}) with input {a.get('input')}"
    if event.event_type in (h.TIMER_STARTED, h.START_TIMER_FAILED, h.TIMER_CANCELED, h.CANCEL_TIMER_FAILED):
        return f"{event.event_type} {a.get('timerId')}"
    if event.event_type == h.MARKER_RECORDED:
        return f"marker {a.get('markerName')} with details {a.get('details')}"
    return event.event_type


@dataclass
class _ActivityState:
    activity_id: str
    options: ActivityOptions
    task_list: str
    input: str
    future: Future
    attempt: int = 1
    scheduled_ids: list[int] = field(default_factory=list)


class _WorkflowThread:
    """Runs `run()` in a thread that hands control back and forth with the decider thread."""

    def __init__(self, target: Callable[[], Any], name: str) -> None:
        self._target = target
        self._name = name
        self._to_workflow = threading.Semaphore(0)
        self._to_decider = threading.Semaphore(0)
        self._thread: threading.Thread | None = None
        self.finished = False
        self.abandoned = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.quiet = False

    def resume(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)
            self._thread.steadyflow_quiet = self.quiet  # type: ignore[attr-defined]
            self._thread.start()
        else:
            self._thread.steadyflow_quiet = self.quiet  # type: ignore[attr-defined]
            self._to_workflow.release()
        self._to_decider.acquire()

    def _main(self) -> None:
        current_waiter.set(self.wait_until)
        try:
            self.result = self._target()
        except _Abandon:
            pass
        except BaseException as exc:  # noqa: BLE001 - every outcome of run() is reported
            self.error = exc
        finally:
            self.finished = True
            self._to_decider.release()

    def wait_until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            if self.abandoned:
                raise _Abandon()
            self._to_decider.release()
            self._to_workflow.acquire()
            if self.abandoned:
                raise _Abandon()

    def abandon(self) -> None:
        if self._thread is not None and not self.finished:
            self.abandoned = True
            self._to_workflow.release()
            self._thread.join(timeout=2.0)


class _QuietStdout:
    """Drops what a workflow prints while it replays, so each line appears once per execution."""

    def __init__(self, wrapped: Any) -> None:
        self._wrapped = wrapped

    def write(self, text: str) -> int:
        if getattr(threading.current_thread(), "steadyflow_quiet", False):
            return len(text)
        return self._wrapped.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


def _install_quiet_stdout() -> None:
    if not isinstance(sys.stdout, _QuietStdout):
        sys.stdout = _QuietStdout(sys.stdout)


class Executor:
    """Replays one execution with a fresh workflow instance and returns its next decisions."""

    def __init__(
        self,
        workflow_cls: type[Workflow],
        workflow_id: str = "",
        run_id: str = "",
        task_list: str = "",
        activity_task_list: str | None = None,
    ) -> None:
        self.workflow_cls = workflow_cls
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.task_list = task_list
        self.activity_task_list = activity_task_list
        self.replaying = True
        self._commands: deque[_Command] = deque()
        self._activities: dict[str, _ActivityState] = {}
        self._by_scheduled: dict[int, _ActivityState] = {}
        self._timers: dict[str, Callable[[], None]] = {}
        self._timer_futures: dict[str, Future] = {}
        self._names: Counter[str] = Counter()
        self._deferred: list[tuple[_ActivityState, tuple[Any, ...], dict[str, Any], Activity]] = []
        self._held: list[h.Event] = []
        self._done = 0
        self._timer_seq = 0
        self._now = 0.0
        self._closed = False
        self._args: tuple[Any, ...] = ()
        self._kwargs: dict[str, Any] = {}
        self._thread: _WorkflowThread | None = None

    # -- driving ---------------------------------------------------------------------------------

    def decide(self, history: list[h.Event]) -> list[Decision]:
        """Replay `history`; return the decisions for its last, unanswered `DecisionTaskStarted`.

        With a complete history (no unanswered decision task), checks the whole of it and returns [].
        """
        _install_quiet_stdout()
        answered = {e.attributes.get("startedEventId") for e in history if e.event_type == h.DECISION_TASK_COMPLETED}
        closing = {
            e.attributes.get("startedEventId")
            for e in history
            if e.event_type in (h.DECISION_TASK_TIMED_OUT, h.DECISION_TASK_FAILED)
        }
        starts = [e.event_id for e in history if e.event_type == h.DECISION_TASK_STARTED]
        current = starts[-1] if starts and starts[-1] not in answered and starts[-1] not in closing else None
        try:
            for event in history:
                t = event.event_type
                if t == h.WORKFLOW_EXECUTION_STARTED:
                    self._start(event)
                elif t == h.DECISION_TASK_STARTED:
                    if event.event_id == current:
                        self._decision_point(event, replaying=False)
                        break
                    if event.event_id in answered:
                        self._decision_point(event, replaying=True)
                elif t in h.COMMAND_EVENTS:
                    self._match(event)
                elif t in _DELIVERED:
                    self._held.append(event)
            if current is None and self._commands:
                raise NonDeterminismError(None, "nothing more", self._commands[0].describe())
            return [c.decision for c in self._commands] if current is not None else []
        finally:
            if self._thread is not None:
                self._thread.abandon()

    def _start(self, event: h.Event) -> None:
        a = event.attributes
        self.task_list = self.task_list or a.get("taskList", {}).get("name", "")
        args, kwargs = decode_input(a.get("input"))
        self._args, self._kwargs = tuple(args), kwargs

    def _decision_point(self, event: h.Event, replaying: bool) -> None:
        if self._commands:
            raise NonDeterminismError(event.event_id, "no such decision", self._commands[0].describe())
        self.replaying = replaying
        self._now = event.timestamp
        held, self._held = self._held, []
        for e in held:
            if not self._closed:
                self._deliver(e)
        self._flush_deferred()
        if not self._closed:
            self._run_workflow()

    def _match(self, event: h.Event) -> None:
        if not self._commands:
            raise NonDeterminismError(event.event_id, describe_event(event), "nothing (the code no longer asks for it)")
        cmd = self._commands[0]
        if not cmd.matches(event):
            raise NonDeterminismError(event.event_id, describe_event(event), cmd.describe())
        self._commands.popleft()
        if cmd.on_recorded is not None:
            cmd.on_recorded(event)

    def _emit(self, decision: Decision, on_recorded: Callable[[h.Event], None] | None = None) -> None:
        if not self._closed:
            self._commands.append(_Command(decision, on_recorded))
            if isinstance(decision, (CompleteWorkflowExecution, FailWorkflowExecution)):
                self._closed = True

    def _order(self) -> int:
        self._done += 1
        return self._done

    # -- the workflow thread ---------------------------------------------------------------------

    def _run_workflow(self) -> None:
        if self._thread is None:
            instance = self.workflow_cls(self)
            self._thread = _WorkflowThread(lambda: instance.run(*self._args, **self._kwargs), f"workflow-{self.run_id}")
        self._thread.quiet = self.replaying
        self._thread.resume()
        if self._thread.finished:
            self._finish(self._thread.result, self._thread.error)

    def _finish(self, value: Any, error: BaseException | None) -> None:
        if error is None:
            try:
                self._emit(CompleteWorkflowExecution(sfjson.dumps(value)))
            except PayloadError as exc:
                self._emit(FailWorkflowExecution(f"PayloadError: workflow result is not JSON-serialisable: {exc}"))
            return
        if isinstance(error, TaskFailed):
            details = error.details if isinstance(error.details, str) or error.details is None else sfjson.dumps(error.details)
            self._emit(FailWorkflowExecution(f'Workflow execution error in {error.name}: "{error.reason}"', details))
        elif isinstance(error, WorkflowFailure):
            details = None if error.details is None else sfjson.dumps(error.details)
            self._emit(FailWorkflowExecution(f"Workflow execution failed: {error.reason}", details))
        else:
            tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            self._emit(FailWorkflowExecution(f"Cannot replay the workflow: {type(error).__name__}({error})", f"Traceback:\n{tb}"))

    # -- what run() calls ------------------------------------------------------------------------

    def submit(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future:
        act = as_activity(func)
        opts = act.options
        if opts.idempotent:
            digest = hashlib.md5(sfjson.dumps({"args": list(args), "kwargs": kwargs}).encode()).hexdigest()
            activity_id = f"activity-{opts.name}-{digest}"
            if activity_id in self._activities:
                return self._activities[activity_id].future
        else:
            self._names[opts.name] += 1
            activity_id = f"activity-{opts.name}-{self._names[opts.name]}"
        if len(activity_id) > ACTIVITY_ID_LIMIT:
            activity_id = f"{activity_id[:223]}-{hashlib.md5(activity_id.encode()).hexdigest()}"
        task_list = self.activity_task_list or opts.task_list or self.task_list
        state = _ActivityState(activity_id, opts, task_list, "", Future())
        self._activities[activity_id] = state
        if any(not f.finished for f in _futures_in((args, kwargs))):
            self._deferred.append((state, args, kwargs, act))
        else:
            self._prepare(state, args, kwargs)
        return state.future

    def _prepare(self, state: _ActivityState, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        failed = next((d for d in _futures_in((args, kwargs)) if d.exception is not None and d._raises), None)
        if failed is not None:
            state.future.set_exception(failed.exception, self._order())  # type: ignore[arg-type]
            return
        state.input = sfjson.dumps({"args": _resolved(list(args)), "kwargs": _resolved(kwargs)})
        self._schedule(state)

    def _flush_deferred(self) -> None:
        waiting = []
        for state, args, kwargs, act in self._deferred:
            if all(f.finished for f in _futures_in((args, kwargs))):
                self._prepare(state, args, kwargs)
            else:
                waiting.append((state, args, kwargs, act))
        self._deferred = waiting

    def _schedule(self, state: _ActivityState) -> None:
        o = state.options

        def recorded(event: h.Event) -> None:
            state.scheduled_ids.append(event.event_id)
            self._by_scheduled[event.event_id] = state

        self._emit(
            ScheduleActivityTask(
                activity_id=state.activity_id,
                name=o.name,
                version=o.version,
                task_list=state.task_list,
                input=state.input,
                control=sfjson.dumps({"attempt": state.attempt}),
                priority=o.priority,
                schedule_to_start_timeout=o.schedule_to_start_timeout,
                start_to_close_timeout=o.start_to_close_timeout,
                schedule_to_close_timeout=o.schedule_to_close_timeout,
                heartbeat_timeout=o.heartbeat_timeout,
            ),
            recorded,
        )

    def start_timer(self, timer_id: str | None, seconds: float, control: Any) -> Future:
        if timer_id is None:
            self._timer_seq += 1
            timer_id = f"timer-{self._timer_seq}"
        future = Future()
        self._timer_futures[timer_id] = future

        def fired() -> None:
            future.set_finished(None, self._order())

        def recorded(event: h.Event) -> None:
            if event.event_type == h.START_TIMER_FAILED:
                future.set_exception(ValueError(f"timer {timer_id} is already running"), self._order())
            else:
                self._timers[timer_id] = fired
                future.set_running()

        self._emit(StartTimer(timer_id, max(seconds, 0.0), None if control is None else sfjson.dumps(control)), recorded)
        return future

    def cancel_timer(self, timer_id: str) -> Future:
        """Cancel a timer; the future says at once whether it was still running.

        Resolving now, rather than when `TimerCanceled` is recorded, matters: no event would
        follow to wake the decider, so a wait on it would never end.
        """
        timer = self._timer_futures.get(timer_id)
        was_running = timer is not None and not timer.finished
        if was_running:
            timer.set_cancelled(self._order())  # type: ignore[union-attr]
        self._emit(CancelTimer(timer_id), lambda event: self._timers.pop(timer_id, None))
        future = Future()
        future.set_finished(was_running, self._order())
        return future

    def record_marker(self, name: str, details: Any) -> Future:
        encoded = None if details is None else sfjson.dumps(details)
        self._emit(RecordMarker(name, encoded))
        future = Future()
        future.set_finished(details, self._order())
        return future

    def now(self) -> _dt.datetime:
        return _dt.datetime.fromtimestamp(self._now, tz=_dt.timezone.utc)

    def run_context(self) -> dict[str, Any]:
        return {
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "task_list": self.task_list,
            "name": self.workflow_cls.type_name(),
            "version": self.workflow_cls.version,
        }

    # -- events from the outside world -----------------------------------------------------------

    def _deliver(self, event: h.Event) -> None:
        a = event.attributes
        t = event.event_type
        if t == h.TIMER_FIRED:
            handler = self._timers.pop(a.get("timerId", ""), None)
            if handler is not None:
                handler()
            return
        state = self._by_scheduled.get(a.get("scheduledEventId", -1))
        if state is None:
            return
        if t == h.ACTIVITY_TASK_STARTED:
            state.future.set_running()
        elif t == h.ACTIVITY_TASK_COMPLETED:
            state.future.set_finished(sfjson.loads_or_raw(a.get("result")), self._order())
        elif t == h.ACTIVITY_TASK_FAILED:
            details = sfjson.loads_or_raw(a.get("details"))
            error_type = details.get("error_type") if isinstance(details, dict) else None
            reason = a.get("reason")
            self._activity_failed(state, TaskFailed(state.activity_id, reason, details), error_type or _error_of(reason))
        elif t == h.ACTIVITY_TASK_TIMED_OUT:
            details = sfjson.loads_or_raw(a.get("details"))
            self._activity_failed(state, TaskTimedOut(state.activity_id, a.get("timeoutType", ""), details), "TimeoutError")

    def _activity_failed(self, state: _ActivityState, exc: TaskFailed, error_type: str | None) -> None:
        policy = state.options.retry_policy
        if policy.should_retry(state.attempt, error_type):
            delay = policy.delay(state.attempt)
            state.attempt += 1
            if delay > 0:
                timer_id = f"__retry-{state.activity_id}-{state.attempt}"
                self._emit(StartTimer(timer_id, delay), lambda e: self._timers.__setitem__(timer_id, lambda: self._schedule(state)))
            else:
                self._schedule(state)
            return
        raises = state.options.raises_on_failure
        state.future.set_exception(exc, self._order(), raises=raises is not False)
        if raises is True:
            details = exc.details if isinstance(exc.details, str) or exc.details is None else sfjson.dumps(exc.details)
            self._emit(FailWorkflowExecution(f'Workflow execution error in {state.activity_id}: "{exc.reason}"', details))


_DELIVERED = frozenset(
    {h.ACTIVITY_TASK_STARTED, h.ACTIVITY_TASK_COMPLETED, h.ACTIVITY_TASK_FAILED, h.ACTIVITY_TASK_TIMED_OUT, h.TIMER_FIRED}
)


def _futures_in(value: Any) -> list[Future]:
    """Futures among arguments, also inside lists, tuples and dicts (a fan-in passes a list)."""
    if isinstance(value, Future):
        return [value]
    if isinstance(value, (list, tuple)):
        return [f for v in value for f in _futures_in(v)]
    if isinstance(value, dict):
        return [f for v in value.values() for f in _futures_in(v)]
    return []


def _resolved(value: Any) -> Any:
    """Arguments with each (finished) future replaced by its result."""
    if isinstance(value, Future):
        return value.result
    if isinstance(value, (list, tuple)):
        return [_resolved(v) for v in value]
    if isinstance(value, dict):
        return {k: _resolved(v) for k, v in value.items()}
    return value


def _error_of(reason: str | None) -> str | None:
    return reason.split(":", 1)[0] if reason and ":" in reason else None
