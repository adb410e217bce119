"""The engine contract: the durable service that every steadyflow engine implements.

An engine stores histories, hands out decision and activity tasks under leases, applies decisions
atomically and fires timers and timeouts. Everything above it (decider, worker, CLI) talks to this
interface only, so a new engine is one module plus a test fixture: `tests/conformance/` runs the same
suite against every engine.

Semantics every engine keeps (SWF's, which the seeds rely on):

- **One decision task at a time.** An open execution has at most one decision task scheduled and
  one started. An event that needs a decision (start, activity closed, timer fired, signal, a
  decision task timed out or failed) schedules one unless one is already scheduled; a decision task
  that is started when such an event arrives is followed by the scheduled one.
- **Leases.** A started decision task belongs to its poller until `decision_timeout` seconds pass;
  then the engine appends `DecisionTaskTimedOut` and schedules a new one. A started activity task
  belongs to its poller until its start-to-close or heartbeat timeout passes; then the engine appends
  `ActivityTaskTimedOut` and the decider decides (retry or fail). A token whose lease ran out is
  rejected with `UnknownTask`, so no result is ever recorded twice.
- **Atomic decisions.** `complete_decision_task` appends `DecisionTaskCompleted` and the events of
  all decisions, queues their tasks and timers and closes the decision task in one transaction.
- **Time.** Engines read time from `self.clock()` (seconds since the epoch), which tests replace.
  Due timers and timeouts are fired by `fire_due()`, which every poll calls first, so any process
  that polls keeps time moving; nothing needs a separate timer daemon.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..decisions import Decision
from ..errors import UnknownTask
from ..history import Event
from .limits import TaskListLimits

OPEN = "open"
CLOSED_STATUSES = ("completed", "failed", "canceled", "terminated", "continued_as_new", "timed_out")

DEFAULT_DECISION_TIMEOUT = 10.0
"""Seconds a decider holds a decision task. Short, because replay is fast and a dead decider
should not stall its executions for long (SWF's default of 300 s is a poor fit)."""

DECISION_RETRY_MAX_DELAY = 300.0

ID_REUSE_POLICIES = ("allow_duplicate", "allow_duplicate_failed_only", "reject_duplicate")
"""Whether a closed workflow id may be started again: always (the default), only when its last run
did not complete, or never."""
"""Upper bound of the back-off before a failed decision task is handed out again."""


@dataclass(frozen=True)
class ExecutionInfo:
    """What `describe_execution` and `list_executions` return."""

    workflow_id: str
    run_id: str
    workflow_type: str
    version: str
    task_list: str
    status: str
    start_time: float
    close_time: float | None = None
    input: str | None = None
    result: str | None = None
    close_reason: str | None = None
    close_details: str | None = None
    tags: tuple[str, ...] = ()
    decision_timeout: float = DEFAULT_DECISION_TIMEOUT
    next_event_id: int = 1
    parent_workflow_id: str | None = None
    parent_run_id: str | None = None
    cancel_requested: bool = False
    #: Its typed search attributes, name -> str, int, float, bool or aware datetime (docs/search.md).
    search_attributes: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def is_open(self) -> bool:
        return self.status == OPEN


@dataclass(frozen=True)
class DecisionTask:
    """A leased decision task with the execution's history (or its end, see `history_after`)."""

    token: str
    workflow_id: str
    run_id: str
    workflow_type: str
    version: str
    task_list: str
    started_event_id: int
    history: list[Event] = field(default_factory=list)
    #: The history holds the events after this id (0: all of them; see `poll_decision_task(known=)`).
    history_after: int = 0


@dataclass(frozen=True)
class ActivityTask:
    """A leased activity task."""

    token: str
    workflow_id: str
    run_id: str
    activity_id: str
    name: str
    version: str
    task_list: str
    input: str
    control: str | None
    scheduled_event_id: int
    started_event_id: int
    heartbeat_timeout: float | None
    start_to_close_timeout: float | None
    #: When it was scheduled (engine clock), for schedule-to-start metrics.
    scheduled_at: float | None = None


@dataclass(frozen=True)
class ActivityClose:
    """One outcome for `Engine.close_activity_tasks`: completed with `result`, or failed."""

    token: str
    ok: bool
    result: str | None = None
    reason: str | None = None
    details: str | None = None


class Engine(ABC):
    """The contract. Methods are grouped by noun: executions, decision tasks, activity tasks, time.

    All methods are safe to call from several processes at once (for engines whose store is shared)
    and from several threads of one process.
    """

    #: URL scheme(s) that select this engine.
    schemes: tuple[str, ...] = ()
    #: True when several processes can share this engine (False for the in-process memory engine).
    shared: bool = True

    #: The URL this engine was opened with (set by `open_engine`); child processes reopen it.
    source_url: str | None = None

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self.clock: Callable[[], float] = clock or time.time
        self._payloads: Any = None

    @property
    def payloads(self) -> Any:
        """How payloads are encoded for this engine (`steadyflow.payload.Payloads`).

        Built on first use from the environment and the engine's default blob store; assign a
        `Payloads` to configure it in code.
        """
        if self._payloads is None:
            from ..payload.converter import Payloads

            self._payloads = Payloads.for_engine(self)
        return self._payloads

    @payloads.setter
    def payloads(self, value: Any) -> None:
        self._payloads = value

    # -- executions ------------------------------------------------------------------------------

    @abstractmethod
    def start_execution(
        self,
        workflow_id: str,
        workflow_type: str,
        version: str,
        task_list: str,
        input: str | None,
        tags: Sequence[str] = (),
        decision_timeout: float = DEFAULT_DECISION_TIMEOUT,
        id_reuse_policy: str = "allow_duplicate",
        search_attributes: Mapping[str, Any] | None = None,
    ) -> str:
        """Start an execution; return its new run id.

        Appends `WorkflowExecutionStarted` and `DecisionTaskScheduled`. Raises
        `WorkflowAlreadyStarted` when an open execution has `workflow_id`, or when a closed one has
        it and `id_reuse_policy` (one of `ID_REUSE_POLICIES`) forbids starting it again.
        `search_attributes` (checked by `search.encode_attributes` before anything is written) are
        recorded in the started event as `searchAttributes` and indexed in the same transaction;
        so are the changes of every `search.SEARCH_MARKER` marker a decision records, and a
        continued run starts with its predecessor's.
        """

    @abstractmethod
    def describe_execution(self, workflow_id: str, run_id: str | None = None) -> ExecutionInfo:
        """The execution (the latest run when `run_id` is None); `UnknownExecution` if none."""

    @abstractmethod
    def list_executions(
        self,
        status: str | None = None,
        workflow_type: str | None = None,
        limit: int = 100,
        offset: int = 0,
        tag: str | None = None,
        started_after: float | None = None,
        started_before: float | None = None,
        where: str | None = None,
    ) -> list[ExecutionInfo]:
        """Executions, newest first. `status` is `open`, `closed` or one close status.

        `tag` keeps executions started with that tag among theirs; `started_after` and
        `started_before` (epoch seconds) keep those with `started_after <= start_time <
        started_before`, a half-open interval so that consecutive windows never overlap.
        `where` keeps those a where-expression over search attributes holds for (`search.parse_where`;
        `SearchQueryError` when it is malformed or compares an attribute with another type).
        """

    @abstractmethod
    def get_history(
        self, workflow_id: str, run_id: str | None = None, after_event_id: int = 0
    ) -> list[Event]:
        """Events with `event_id > after_event_id`, in order; `UnknownExecution` if none."""

    @abstractmethod
    def signal_execution(
        self, workflow_id: str, run_id: str | None, signal_name: str, input: str | None
    ) -> None:
        """Append `WorkflowExecutionSignaled` to an open execution and schedule a decision.

        `ExecutionClosed` if it is closed.
        """

    @abstractmethod
    def request_cancel_execution(self, workflow_id: str, run_id: str | None = None) -> None:
        """Ask an open execution to cancel: append `WorkflowExecutionCancelRequested`, schedule a
        decision, and flag its open activity tasks so their next heartbeat returns True.

        `ExecutionClosed` if it is closed.
        """

    @abstractmethod
    def terminate_execution(
        self,
        workflow_id: str,
        run_id: str | None = None,
        reason: str | None = None,
        details: str | None = None,
    ) -> None:
        """Close an open execution at once (`WorkflowExecutionTerminated`), dropping its tasks and timers.

        As with every way an execution closes, its parent (if open) records the child's end, and its
        open children get their parent-close policy.
        """

    # -- decision tasks --------------------------------------------------------------------------

    @abstractmethod
    def poll_decision_task(
        self, task_list: str, identity: str = "", wait: float = 0.0, known: Mapping[str, int] | None = None
    ) -> DecisionTask | None:
        """Lease the oldest scheduled decision task on `task_list`, waiting up to `wait` seconds.

        Appends `DecisionTaskStarted`. Returns None when nothing came within `wait`. `known` maps
        run ids to the last event id the caller already holds: for those runs the task carries
        only the later events (`history_after` says from where), as a sticky decider needs.
        """

    @abstractmethod
    def complete_decision_task(
        self, token: str, decisions: Sequence[Decision], execution_context: str | None = None
    ) -> None:
        """Apply `decisions` atomically (see the module docstring). `UnknownTask` if the lease is gone."""

    @abstractmethod
    def fail_decision_task(self, token: str, cause: str, details: str | None = None) -> None:
        """Give a decision task back after the decider could not decide (bad code, non-determinism).

        Appends `DecisionTaskFailed` and schedules a new decision task that becomes visible after a
        back-off growing with consecutive failures (1 s, 2 s, 4 s ... up to 300 s), so a broken
        workflow waits for a fix without spinning.
        """

    # -- activity tasks --------------------------------------------------------------------------

    @abstractmethod
    def poll_activity_task(
        self, task_list: str, identity: str = "", wait: float = 0.0
    ) -> ActivityTask | None:
        """Lease the next activity task (highest priority, then oldest); appends `ActivityTaskStarted`."""

    @abstractmethod
    def heartbeat_activity_task(self, token: str, details: str | None = None) -> bool:
        """Extend the heartbeat lease and keep `details`; return True when cancellation was requested."""

    @abstractmethod
    def complete_activity_task(self, token: str, result: str | None) -> None:
        """Append `ActivityTaskCompleted` and schedule a decision. `UnknownTask` if the lease is gone."""

    @abstractmethod
    def fail_activity_task(self, token: str, reason: str | None, details: str | None = None) -> None:
        """Append `ActivityTaskFailed` and schedule a decision. `UnknownTask` if the lease is gone."""

    def close_activity_tasks(self, closes: Sequence[ActivityClose]) -> list[bool]:
        """Complete or fail several leased tasks; for each, True once recorded, False when its lease
        was gone (the `UnknownTask` of a single call). Engines with transactions record them all
        in one, so a worker whose tasks finish together pays for one commit."""
        recorded = []
        for close in closes:
            try:
                if close.ok:
                    self.complete_activity_task(close.token, close.result)
                else:
                    self.fail_activity_task(close.token, close.reason, close.details)
                recorded.append(True)
            except UnknownTask:
                recorded.append(False)
        return recorded

    @abstractmethod
    def list_activity_tasks(self, workflow_id: str, run_id: str | None = None) -> list[dict[str, Any]]:
        """Open activity tasks of an execution: id, name, state, attempt, times, heartbeat details."""

    @abstractmethod
    def count_waiting_activity_tasks(self, task_list: str) -> int:
        """Activity tasks scheduled on `task_list` and not yet started (a gauge for autoscaling)."""

    # -- limits ----------------------------------------------------------------------------------

    @abstractmethod
    def set_task_list_limits(self, limits: TaskListLimits) -> None:
        """Set (replace) the limits of a task list; `poll_activity_task` enforces them from now on:
        at most `concurrency` of its tasks started and not closed, at most `per_key` of them with
        one concurrency key, and starts spaced by the rate."""

    @abstractmethod
    def task_list_limits(self) -> list[TaskListLimits]:
        """Every task list's limits, by name."""

    @abstractmethod
    def clear_task_list_limits(self, task_list: str) -> bool:
        """Remove a task list's limits; False when it had none."""

    # -- time ------------------------------------------------------------------------------------

    @abstractmethod
    def fire_due(self) -> int:
        """Fire every timer, timeout and lease expiry that is due now; return how many fired."""

    @abstractmethod
    def next_due(self) -> float | None:
        """When the next timer, timeout or delayed decision falls due (epoch seconds), or None."""

    def wake_waiter(self, kind: str, task_list: str) -> Any:
        """A `wake.WakeWaiter` an idle poller of `kind` ("decision" or "activity") tasks on
        `task_list` can block on instead of polling often; None when the engine has no wake-ups."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release connections. The default does nothing."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_reuse(policy: str, workflow_id: str, last_status: str | None) -> None:
    """Raise `WorkflowAlreadyStarted` when `policy` forbids reusing a closed id whose last run
    ended with `last_status` (None: the id was never used)."""
    from ..errors import ConfigError, WorkflowAlreadyStarted

    if policy not in ID_REUSE_POLICIES:
        raise ConfigError(
            f"unknown id reuse policy {policy!r} (expected one of {', '.join(ID_REUSE_POLICIES)})"
        )
    if last_status is None or policy == "allow_duplicate":
        return
    if policy == "reject_duplicate" or last_status == "completed":
        raise WorkflowAlreadyStarted(
            workflow_id, reason=f"was already used (last run {last_status}; policy {policy})"
        )


def decision_retry_delay(failures: int) -> float:
    """Back-off before the n-th consecutive failed decision task is handed out again."""
    return float(min(2 ** max(failures - 1, 0), DECISION_RETRY_MAX_DELAY))


def activity_deadline(
    scheduled_at: float,
    started_at: float | None,
    last_heartbeat: float | None,
    schedule_to_start: float | None,
    start_to_close: float | None,
    schedule_to_close: float | None,
    heartbeat: float | None,
) -> tuple[float | None, str | None]:
    """The earliest moment an activity task times out, and which timeout that is.

    Shared by every engine so that all of them time activities out by the same rules.
    """
    candidates: list[tuple[float, str]] = []
    if schedule_to_close:
        candidates.append((scheduled_at + schedule_to_close, "SCHEDULE_TO_CLOSE"))
    if started_at is None:
        if schedule_to_start:
            candidates.append((scheduled_at + schedule_to_start, "SCHEDULE_TO_START"))
    else:
        if start_to_close:
            candidates.append((started_at + start_to_close, "START_TO_CLOSE"))
        if heartbeat:
            candidates.append(((last_heartbeat or started_at) + heartbeat, "HEARTBEAT"))
    if not candidates:
        return None, None
    deadline, kind = min(candidates)
    return deadline, kind
