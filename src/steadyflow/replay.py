"""Replay: run a workflow's `run()` against its history and work out the next decisions.

The history is read in order. Events that a decision caused (a task scheduled, a timer started, a
marker recorded, a child started) are matched, one by one, against what `run()` asks for; any
difference is a `NonDeterminismError`. Events from the outside world (a task closed, a timer fired,
a signal) are held back and handed to the workflow at the next decision point, i.e. at the
`DecisionTaskStarted` where the original decider saw them. So `run()` sees, on every replay,
exactly what it saw the first time — which is what makes `FIRST_COMPLETED`, `as_completed` and
signal order replay faithfully.

`run()` executes in its own thread (`workflow_thread.py`) and parks whenever it needs an
unfinished future; the decider thread resumes it at each decision point.

Alternatives rejected: re-running `run()` from the top at every decision point and aborting with
an exception when it blocks (simpleflow) is quadratic and cannot tell what was seen when.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import history as h
from . import tracing
from .activity import Activity, ActivityOptions, as_activity, concurrency_key_of
from .commands import Command, describe_event
from .decisions import (
    CancelTimer,
    CancelWorkflowExecution,
    CompleteWorkflowExecution,
    ContinueAsNewWorkflowExecution,
    Decision,
    FailWorkflowExecution,
    RecordMarker,
    ScheduleActivityTask,
    StartTimer,
)
from .errors import (
    CancelledError,
    NonDeterminismError,
    PayloadError,
    PayloadTooLarge,
    TaskFailed,
    TaskTimedOut,
    WorkflowError,
)
from .futures import Future, futures_in, resolved
from .payload import json as sfjson
from .payload.converter import Payloads, default_payloads
from .payload.serializers import SAFE
from .replay_hooks import HooksMixin
from .replay_links import LinksMixin
from .worker.runner import split_input
from .workflow import (
    ContinueAsNew,
    StopExecution,
    Workflow,
    WorkflowFailure,
    current_executor,
    is_query,
    workflow_input,
)
from .workflow_steps import apply_step_options
from .workflow_thread import WorkflowThread, install_quiet_stdout

ACTIVITY_ID_LIMIT = 256
HANDED_BACK = "WorkerShutdown:"
"""Reason prefix of a task a stopping worker gave back; it is rescheduled without using an attempt."""
SIDE_EFFECT_MARKER = "steadyflow.side_effect"
PATCH_MARKER = "steadyflow.patch"

_DELIVERED = frozenset(
    {
        h.ACTIVITY_TASK_STARTED,
        h.ACTIVITY_TASK_COMPLETED,
        h.ACTIVITY_TASK_FAILED,
        h.ACTIVITY_TASK_TIMED_OUT,
        h.TIMER_FIRED,
        h.WORKFLOW_EXECUTION_SIGNALED,
        h.WORKFLOW_EXECUTION_CANCEL_REQUESTED,
        h.EXTERNAL_WORKFLOW_SIGNALED,
        h.SIGNAL_EXTERNAL_FAILED,
        h.START_CHILD_FAILED,
        h.CHILD_STARTED,
        *h.CHILD_CLOSE_EVENTS.values(),
    }
)


@dataclass
class _ActivityState:
    activity_id: str
    options: ActivityOptions
    task_list: str
    input: str
    future: Future
    attempt: int = 1
    scheduled_ids: list[int] = field(default_factory=list)
    concurrency_key: str | None = None
    activity: Activity | None = None


@dataclass
class _Child:
    workflow_id: str
    future: Future
    run_id: str | None = None
    accepts: frozenset[str] = SAFE


class StaleState(Exception):
    """A kept executor cannot continue from the events given; replay from the start instead."""


class Executor(LinksMixin, HooksMixin):
    """Replays one execution with a fresh workflow instance and returns its next decisions."""

    def __init__(
        self,
        workflow_cls: type[Workflow],
        workflow_id: str = "",
        run_id: str = "",
        task_list: str = "",
        activity_task_list: str | None = None,
        payloads: Payloads | None = None,
    ) -> None:
        self.workflow_cls = workflow_cls
        self.payloads = payloads or default_payloads()
        self.accepts = SAFE | {getattr(workflow_cls, "serializer", "json")}
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.task_list = task_list
        self.activity_task_list = activity_task_list
        self.replaying = True
        self.cancel_requested = False
        self._cancel_pending = False
        self._commands: deque[Command] = deque()
        self._activities: dict[str, _ActivityState] = {}
        self._by_scheduled: dict[int, _ActivityState] = {}
        self._timers: dict[str, Callable[[], None]] = {}
        self._timer_futures: dict[str, Future] = {}
        self._names: Counter[str] = Counter()
        self._deferred: list[tuple[Future, tuple[Any, ...], dict[str, Any], Callable[[list[Any], dict[str, Any]], None]]] = []
        self._held: list[h.Event] = []
        self._done = 0
        self._timer_seq = 0
        self._now = 0.0
        self._closed = False
        self._args: tuple[Any, ...] = ()
        self._kwargs: dict[str, Any] = {}
        self._thread: WorkflowThread | None = None
        self._instance: Workflow | None = None
        self._parent: dict[str, Any] | None = None
        self._tags: list[str] = []
        self._continued_from: str | None = None
        self._signals: dict[str, list[Any]] = {}
        self._signal_waits: Counter[str] = Counter()
        self._signal_waiters: dict[tuple[str, int], Future] = {}
        self._signal_sends: dict[int, tuple[Future, Any]] = {}
        self._children: dict[int, _Child] = {}
        self._child_names: Counter[str] = Counter()
        self._recorded_side_effects: list[str] = []
        self._side_effects = 0
        self._recorded_patches: set[str] = set()
        self._patches: dict[str, bool] = {}
        self._random: random.Random | None = None
        self.last_decided: int | None = None  # the DecisionTaskStarted event the last decide answered
        self.trace: dict[str, str] | None = None  # the trace context recorded when it started
        self._querying = False
        self._seen: list[h.Event] = []  # the events replay went through, for the hooks' history
        self._observing = False  # inside a lifecycle hook, which may not ask for anything

    # -- driving ---------------------------------------------------------------------------------

    def decide(self, history: list[h.Event], keep: bool = False) -> list[Decision]:
        """Replay `history`; return the decisions for its last, unanswered `DecisionTaskStarted`.

        With a complete history (no unanswered decision task), checks the whole of it and returns [].
        `keep=True` leaves `run()` parked where it is, for `decide_more` (the decider's cache).
        """
        kept = False
        try:
            current = self._replay(history)
            if current is None and self._commands:
                raise NonDeterminismError(None, "nothing more", self._commands[0].describe())
            decisions = self._sealed() if current is not None else []
            if current is not None:
                self._after_decision(decisions)
            self.last_decided = current
            kept = keep and current is not None and self.resumable
            return decisions
        finally:
            if not kept:
                self._stop_thread()

    def release(self) -> None:
        """Let go of a parked `run()` (its thread ends); the executor cannot decide again."""
        self._stop_thread()

    @property
    def resumable(self) -> bool:
        """True while `run()` is parked mid-way, so new events can be fed to it (`decide_more`)."""
        return not self._closed and self._thread is not None and not self._thread.finished

    def decide_more(self, events: list[h.Event], keep: bool = True) -> list[Decision]:
        """Decide again from where the last `decide` stopped, given only the events after it.

        Raises `StaleState` unless those events show that the decisions returned last time were
        applied (a `DecisionTaskCompleted` for that decision task): if that task timed out or
        failed, `run()` here believes in commands the history never got, and only a full replay
        from a fresh executor is right.
        """
        last = self.last_decided
        applied = any(
            e.event_type == h.DECISION_TASK_COMPLETED and e.attributes.get("startedEventId") == last for e in events
        )
        if last is None or not applied or not self.resumable or not events or events[0].event_id != last + 1:
            self._stop_thread()
            raise StaleState(f"cached state of {self.run_id} is behind events it did not decide")
        return self.decide(events, keep)

    def _sealed(self) -> list[Decision]:
        try:
            return [c.sealed(self.payloads) for c in self._commands]
        except PayloadTooLarge as exc:
            return [FailWorkflowExecution(f"PayloadTooLarge: {exc}")]

    def query(self, history: list[h.Event], name: str, args: tuple[Any, ...] = ()) -> Any:
        """Answer query `name` from the state after the latest event, without deciding anything."""
        method = getattr(self.workflow_cls, name, None)
        if method is None or not is_query(method):
            known = sorted(n for n in dir(self.workflow_cls) if is_query(getattr(self.workflow_cls, n, None)))
            raise WorkflowError(f"{self.workflow_cls.__name__} has no query {name!r} (queries: {', '.join(known) or 'none'})")
        self._querying = True  # nothing it prints shows, whatever point it reaches
        try:
            current = self._replay(history)
            if current is None and not self._closed and history:
                # Events after the last decision (a signal just sent): show them to the workflow.
                self._decision_point(history[-1], replaying=True)
            elif current is not None and not self._closed:
                # A decision task is in progress: events after it (a signal sent meanwhile) count
                # too. What run() asked for at that point is not recorded yet: a query ignores it.
                later = [e for e in history if e.event_id > current and e.event_type in _DELIVERED]
                if later:
                    self._commands.clear()
                    self._held.extend(later)
                    self._decision_point(later[-1], replaying=True)
            return getattr(self.workflow, name)(*args)
        finally:
            self._stop_thread()

    def _replay(self, history: list[h.Event]) -> int | None:
        install_quiet_stdout()
        answered = {e.attributes.get("startedEventId") for e in history if e.event_type == h.DECISION_TASK_COMPLETED}
        closing = {
            e.attributes.get("startedEventId")
            for e in history
            if e.event_type in (h.DECISION_TASK_TIMED_OUT, h.DECISION_TASK_FAILED)
        }
        starts = [e.event_id for e in history if e.event_type == h.DECISION_TASK_STARTED]
        current = starts[-1] if starts and starts[-1] not in answered and starts[-1] not in closing else None
        before = current is not None and not self._querying  # before_replay still to call
        prior = len(self._seen)
        for e in history:
            if e.event_type == h.MARKER_RECORDED:
                if e.attributes.get("markerName") == SIDE_EFFECT_MARKER:
                    self._recorded_side_effects.append(e.attributes.get("details") or "null")
                elif e.attributes.get("markerName") == PATCH_MARKER:
                    self._recorded_patches.add(sfjson.loads(e.attributes.get("details")))
        for event in history:
            t = event.event_type
            self._seen.append(event)
            if before and t != h.WORKFLOW_EXECUTION_STARTED:  # after the start event: the run context is known
                before = False
                self._before_decision(prior, history)
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
        return current

    def _stop_thread(self) -> None:
        if self._thread is not None:
            self._thread.abandon()

    def _start(self, event: h.Event) -> None:
        a = event.attributes
        # The ids are recorded so that a saved history replays alone (child ids derive from them).
        self.workflow_id = self.workflow_id or a.get("workflowId", "")
        self.run_id = self.run_id or a.get("runId", "")
        self.task_list = self.task_list or a.get("taskList", {}).get("name", "")
        self._parent = a.get("parentWorkflowExecution")
        self._tags = list(a.get("tagList") or [])
        self._continued_from = a.get("continuedExecutionRunId")
        text = a.get("input")
        data = self.payloads.loads(text, self.accepts, f"workflow {self.workflow_cls.__name__}") if text else {}
        self.trace = tracing.carrier_of(data)
        args, kwargs = split_input(data)
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
        if not cmd.matches(event, self.payloads.same):
            raise NonDeterminismError(event.event_id, describe_event(event), cmd.describe())
        self._commands.popleft()
        if cmd.on_recorded is not None:
            cmd.on_recorded(event)

    def _emit(
        self, decision: Decision, on_recorded: Callable[[h.Event], None] | None = None, store: str | None = None
    ) -> None:
        self._check_not_observing(decision)
        if not self._closed:
            self._commands.append(Command(decision, on_recorded, store))
            if isinstance(decision, (CompleteWorkflowExecution, FailWorkflowExecution, CancelWorkflowExecution,
                                     ContinueAsNewWorkflowExecution)):
                self._closed = True

    def _new_child(self, workflow_id: str, future: Future) -> _Child:
        return _Child(workflow_id, future)

    def _order(self) -> int:
        self._done += 1
        return self._done

    # -- the workflow thread ---------------------------------------------------------------------

    def _run_workflow(self) -> None:
        if self._thread is None:
            instance = self.workflow
            args, kwargs = self._args, apply_step_options(instance, self._kwargs)
            self._thread = WorkflowThread(
                lambda: instance.run(*args, **kwargs),
                f"workflow-{self.run_id}",
                on_wait=self._raise_cancel,
                setup=lambda: current_executor.set(self),
            )
        self._thread.quiet = self.replaying or self._querying
        self._thread.resume()
        if self._thread.finished:
            self._finish(self._thread.result, self._thread.error)

    def _raise_cancel(self) -> None:
        if self._cancel_pending:
            self._cancel_pending = False
            raise CancelledError("cancellation was requested")

    def _finish(self, value: Any, error: BaseException | None) -> None:
        if error is None:
            try:
                result = self.payloads.encode_open(value, self.workflow_cls.serializer)
                self._emit(CompleteWorkflowExecution(result), store=self.workflow_cls.store)
            except PayloadError as exc:
                self._emit(FailWorkflowExecution(f"PayloadError: workflow result is not JSON-serialisable: {exc}"))
        elif isinstance(error, CancelledError):
            self._emit(CancelWorkflowExecution())
        elif isinstance(error, StopExecution):
            self._emit(CancelWorkflowExecution(sfjson.dumps({"error": error.error, "cause": error.cause})))
        elif isinstance(error, ContinueAsNew):
            text = workflow_input(self.workflow_cls, error.args_, error.kwargs_, self.trace)
            self._emit(ContinueAsNewWorkflowExecution(text))
        elif isinstance(error, TaskFailed):
            self._emit(FailWorkflowExecution(f'Workflow execution error in {error.name}: "{error.reason}"', _text(error.details)))
        elif isinstance(error, WorkflowFailure):
            details = None if error.details is None else sfjson.dumps(error.details)
            self._emit(FailWorkflowExecution(f"Workflow execution failed: {error.reason}", details))
        else:
            import traceback

            tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            self._emit(FailWorkflowExecution(f"Cannot replay the workflow: {type(error).__name__}({error})", f"Traceback:\n{tb}"))

    # -- what run() calls: activities and children -----------------------------------------------

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
        state = _ActivityState(activity_id, opts, task_list, "", Future(), activity=act)
        self._activities[activity_id] = state

        def schedule(a: list[Any], kw: dict[str, Any]) -> None:
            data: dict[str, Any] = {"args": a, "kwargs": kw}
            if self.trace:  # from the history, so every replay asks for the same input
                data["__extra"] = {"trace": self.trace}
            state.input = self.payloads.encode_open(data, opts.serializer)
            state.concurrency_key = concurrency_key_of(act, a, kw)
            self._schedule(state)

        self._when_ready(state.future, args, kwargs, schedule)
        return state.future

    def _when_ready(
        self, future: Future, args: tuple[Any, ...], kwargs: dict[str, Any], go: Callable[[list[Any], dict[str, Any]], None]
    ) -> None:
        """Call `go` with resolved arguments now, or once the futures among them have finished."""
        if any(not f.finished for f in futures_in((args, kwargs))):
            self._deferred.append((future, args, kwargs, go))
        else:
            self._prepare(future, args, kwargs, go)

    def _prepare(
        self, future: Future, args: tuple[Any, ...], kwargs: dict[str, Any], go: Callable[[list[Any], dict[str, Any]], None]
    ) -> None:
        failed = next((d for d in futures_in((args, kwargs)) if d.exception is not None and d._raises), None)
        if failed is not None:
            future.set_exception(failed.exception, self._order())  # type: ignore[arg-type]
            return
        go(resolved(list(args)), resolved(kwargs))

    def _flush_deferred(self) -> None:
        waiting = []
        for future, args, kwargs, go in self._deferred:
            if all(f.finished for f in futures_in((args, kwargs))):
                self._prepare(future, args, kwargs, go)
            else:
                waiting.append((future, args, kwargs, go))
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
                concurrency_key=state.concurrency_key,
            ),
            recorded,
            o.store,
        )

    # -- what run() calls: timers, markers, signals, side effects --------------------------------

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
                self._timers[timer_id] = fired  # type: ignore[index]
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

    def side_effect(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run `fn` once per execution; its result is kept in a marker and read back on replay."""
        index = self._side_effects
        self._side_effects += 1
        if index < len(self._recorded_side_effects):
            details = self._recorded_side_effects[index]
        else:
            details = sfjson.dumps(fn(*args, **kwargs))
        self._emit(RecordMarker(SIDE_EFFECT_MARKER, details))
        return self.payloads.loads(details, receiver="a side effect")

    def patched(self, change_id: str) -> bool:
        """True for executions that reached this point with the new code (see `Workflow.patched`)."""
        if change_id not in self._patches:
            new_code = (not self.replaying) or change_id in self._recorded_patches
            if new_code:
                self._emit(RecordMarker(PATCH_MARKER, sfjson.dumps(change_id)))
            self._patches[change_id] = new_code
        return self._patches[change_id]

    def now(self) -> _dt.datetime:
        return _dt.datetime.fromtimestamp(self._now, tz=_dt.timezone.utc)

    def random(self) -> random.Random:
        if self._random is None:
            self._random = random.Random(self.run_id or self.workflow_id)
        return self._random

    def run_context(self) -> dict[str, Any]:
        """simpleflow's run context (its keys, `domain_name` being the task list's engine-wide
        namespace: steadyflow has one), plus `task_list`, `parent` and `cancel_requested`."""
        parent = self._parent or {}
        return {
            "name": self.workflow_cls.type_name(),
            "version": self.workflow_cls.version,
            "domain_name": "default",
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "tag_list": list(self._tags),
            "continued_execution_run_id": self._continued_from,
            "parent_workflow_id": parent.get("workflowId"),
            "parent_run_id": parent.get("runId"),
            "task_list": self.task_list,
            "parent": self._parent,
            "cancel_requested": self.cancel_requested,
        }

    # -- events from the outside world -----------------------------------------------------------

    def _deliver(self, event: h.Event) -> None:
        a = event.attributes
        t = event.event_type
        if t == h.TIMER_FIRED:
            handler = self._timers.pop(a.get("timerId", ""), None)
            if handler is not None:
                handler()
        elif t == h.WORKFLOW_EXECUTION_SIGNALED:
            self._on_signal(a.get("signalName", ""), _signal_value(self.payloads.loads_or_raw(a.get("input"))))
        elif t == h.WORKFLOW_EXECUTION_CANCEL_REQUESTED:
            if not self.cancel_requested and self._accepts_cancel():
                self.cancel_requested = self._cancel_pending = True
        elif t in (h.EXTERNAL_WORKFLOW_SIGNALED, h.SIGNAL_EXTERNAL_FAILED):
            future, value = self._signal_sends.pop(a.get("initiatedEventId", -1), (None, None))
            if future is not None and t == h.EXTERNAL_WORKFLOW_SIGNALED:
                future.set_finished(value, self._order())
            elif future is not None:
                reason = f"SignalFailed: {a.get('cause')} ({a.get('workflowId')})"
                future.set_exception(TaskFailed(f"signal to {a.get('workflowId')}", reason), self._order())
        elif t in (h.START_CHILD_FAILED, h.CHILD_STARTED) or t in h.CHILD_CLOSE_EVENTS.values():
            self._on_child(event)
        else:
            self._on_activity(event)

    def _on_activity(self, event: h.Event) -> None:
        a, t = event.attributes, event.event_type
        state = self._by_scheduled.get(a.get("scheduledEventId", -1))
        if state is None:
            return
        if t == h.ACTIVITY_TASK_STARTED:
            state.future.set_running()
        elif t == h.ACTIVITY_TASK_COMPLETED:
            result = self.payloads.loads_or_raw(a.get("result"), SAFE | {state.options.serializer}, "the workflow")
            state.future.set_finished(result, self._order())
        elif t == h.ACTIVITY_TASK_FAILED:
            details = self.payloads.loads_or_raw(a.get("details"))
            error_type = details.get("error_type") if isinstance(details, dict) else None
            reason = a.get("reason")
            self._activity_failed(state, TaskFailed(state.activity_id, reason, details), error_type or _error_of(reason),
                                  event)
        elif t == h.ACTIVITY_TASK_TIMED_OUT:
            details = self.payloads.loads_or_raw(a.get("details"))
            self._activity_failed(state, TaskTimedOut(state.activity_id, a.get("timeoutType", ""), details), "TimeoutError",
                                  event)

    def _activity_failed(
        self, state: _ActivityState, exc: TaskFailed, error_type: str | None, event: h.Event | None = None
    ) -> None:
        if (exc.reason or "").startswith(HANDED_BACK) and not self.cancel_requested:
            self._schedule(state)  # a worker shut down and gave it back: not a failed attempt
            return
        if event is not None and self._on_task_failure(state, exc, event):
            return  # the workflow's on_task_failure decided
        policy = state.options.retry_policy
        if not self.cancel_requested and policy.should_retry(state.attempt, error_type):
            delay = policy.delay(state.attempt)
            state.attempt += 1
            if delay > 0:
                timer_id = f"__retry-{state.activity_id}-{state.attempt}"
                self._emit(StartTimer(timer_id, delay), lambda e: self._timers.__setitem__(timer_id, lambda: self._schedule(state)))
            else:
                self._schedule(state)
            return
        self._fail_task(state, exc, abort=False)


def _text(details: Any) -> str | None:
    return details if isinstance(details, str) or details is None else sfjson.dumps(details)


def _signal_value(value: Any) -> Any:
    """A signal's input as `wait_signal` returns it, without simpleflow's `__` keys."""
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if not k.startswith("__")}
    return value


def _error_of(reason: str | None) -> str | None:
    return reason.split(":", 1)[0] if reason and ":" in reason else None


__all__ = ["Activity", "Executor"]
