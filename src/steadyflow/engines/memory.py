"""The in-process engine: every rule of the contract, kept in dictionaries under one lock.

It backs `--local` runs and the test kit, and it is the reference the SQL engines are checked
against by the conformance suite. Nothing survives the process.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import history as h
from .. import metrics
from ..decisions import (
    ALL_DECISIONS,
    CLOSE_DECISIONS,
    PARENT_CLOSE_POLICIES,
    CancelTimer,
    CancelWorkflowExecution,
    CompleteWorkflowExecution,
    ContinueAsNewWorkflowExecution,
    Decision,
    FailWorkflowExecution,
    RecordMarker,
    ScheduleActivityTask,
    SignalExternalWorkflowExecution,
    StartChildWorkflowExecution,
    StartTimer,
)
from ..errors import EngineError, ExecutionClosed, UnknownExecution, UnknownTask, WorkflowAlreadyStarted
from .base import (
    DEFAULT_DECISION_TIMEOUT,
    OPEN,
    ActivityTask,
    DecisionTask,
    Engine,
    ExecutionInfo,
    activity_deadline,
    check_reuse,
    decision_retry_delay,
)
from .limits import TaskListLimits, refill
from .memory_search import MemorySearch


@dataclass
class _Execution:
    workflow_id: str
    run_id: str
    workflow_type: str
    version: str
    task_list: str
    input: str | None
    tags: tuple[str, ...]
    decision_timeout: float
    start_time: float
    seq: int
    status: str = OPEN
    close_time: float | None = None
    result: str | None = None
    close_reason: str | None = None
    close_details: str | None = None
    events: list[h.Event] = field(default_factory=list)
    decision_scheduled_id: int | None = None
    decision_visible_at: float = 0.0
    decision_started_id: int | None = None
    decision_lease: float | None = None
    decision_token: str | None = None
    decision_failures: int = 0
    parent_workflow_id: str | None = None
    parent_run_id: str | None = None
    parent_initiated_id: int | None = None
    parent_close_policy: str = "terminate"
    cancel_requested: bool = False
    search: dict[str, Any] = field(default_factory=dict)  # name -> (type, value)


@dataclass
class _Activity:
    run_id: str
    decision: ScheduleActivityTask
    scheduled_event_id: int
    scheduled_at: float
    seq: int
    token: str | None = None
    started_event_id: int | None = None
    started_at: float | None = None
    last_heartbeat: float | None = None
    details: str | None = None
    cancel_requested: bool = False

    def deadline(self) -> tuple[float | None, str | None]:
        d = self.decision
        return activity_deadline(
            self.scheduled_at,
            self.started_at,
            self.last_heartbeat,
            d.schedule_to_start_timeout,
            d.start_to_close_timeout,
            d.schedule_to_close_timeout,
            d.heartbeat_timeout,
        )


class MemoryEngine(Engine):
    schemes = ("memory",)
    shared = False

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        super().__init__(clock)
        self._cond = threading.Condition()
        self._runs: dict[str, _Execution] = {}
        self._latest: dict[str, str] = {}  # workflow_id -> latest run_id
        self._activities: dict[tuple[str, int], _Activity] = {}  # (run_id, scheduled_event_id)
        self._timers: dict[
            tuple[str, str], tuple[int, float]
        ] = {}  # (run_id, timer_id) -> (event id, fire at)
        self._seq = 0
        self._limits: dict[str, TaskListLimits] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # task list -> (tokens, refreshed)
        self._retry_at: float | None = None
        self._search = MemorySearch()

    # -- helpers ---------------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _append(self, ex: _Execution, event_type: str, **attrs: Any) -> int:
        event_id = len(ex.events) + 1
        ex.events.append(
            h.Event(event_id, event_type, self.clock(), {k: v for k, v in attrs.items() if v is not None})
        )
        return event_id

    def _schedule_decision(self, ex: _Execution, delay: float = 0.0) -> None:
        if ex.status != OPEN or ex.decision_scheduled_id is not None:
            return
        ex.decision_scheduled_id = self._append(
            ex,
            h.DECISION_TASK_SCHEDULED,
            taskList={"name": ex.task_list},
            startToCloseTimeout=ex.decision_timeout,
        )
        ex.decision_visible_at = self.clock() + delay
        self._cond.notify_all()

    def _find(self, workflow_id: str, run_id: str | None) -> _Execution:
        rid = run_id or self._latest.get(workflow_id)
        ex = self._runs.get(rid) if rid else None
        if ex is None or ex.workflow_id != workflow_id:
            suffix = f" run {run_id}" if run_id else ""
            raise UnknownExecution(f"no execution with workflow id {workflow_id!r}{suffix}")
        return ex

    def _close(self, ex: _Execution, status: str) -> None:
        ex.status = status
        ex.close_time = self.clock()
        ex.decision_scheduled_id = ex.decision_started_id = ex.decision_token = ex.decision_lease = None
        for key in [k for k in self._activities if k[0] == ex.run_id]:
            del self._activities[key]
        for key in [k for k in self._timers if k[0] == ex.run_id]:
            del self._timers[key]
        parent = self._runs.get(ex.parent_run_id or "")
        if parent is not None and parent.status == OPEN and status in h.CHILD_CLOSE_EVENTS:
            started = next(
                (
                    e.event_id
                    for e in parent.events
                    if e.event_type == h.CHILD_STARTED
                    and e.attributes.get("initiatedEventId") == ex.parent_initiated_id
                ),
                None,
            )
            outcome = (
                {"result": ex.result}
                if status == "completed"
                else {"reason": ex.close_reason, "details": ex.close_details}
            )
            self._append(
                parent,
                h.CHILD_CLOSE_EVENTS[status],
                initiatedEventId=ex.parent_initiated_id,
                startedEventId=started,
                workflowExecution={"workflowId": ex.workflow_id, "runId": ex.run_id},
                **outcome,
            )
            self._schedule_decision(parent)
        for child in [c for c in self._runs.values() if c.parent_run_id == ex.run_id and c.status == OPEN]:
            if child.parent_close_policy == "terminate":
                self._append(
                    child,
                    h.WORKFLOW_EXECUTION_TERMINATED,
                    reason="parent closed",
                    cause="CHILD_POLICY_APPLIED",
                )
                child.close_reason = "parent closed"
                self._close(child, "terminated")
            elif child.parent_close_policy == "request_cancel":
                self._request_cancel(child, cause="CHILD_POLICY_APPLIED")

    def _request_cancel(self, ex: _Execution, cause: str | None = None) -> None:
        self._append(ex, h.WORKFLOW_EXECUTION_CANCEL_REQUESTED, cause=cause)
        ex.cancel_requested = True
        for act in self._activities.values():
            if act.run_id == ex.run_id:
                act.cancel_requested = True
        self._schedule_decision(ex)

    @staticmethod
    def _info(ex: _Execution) -> ExecutionInfo:
        return ExecutionInfo(
            workflow_id=ex.workflow_id,
            run_id=ex.run_id,
            workflow_type=ex.workflow_type,
            version=ex.version,
            task_list=ex.task_list,
            status=ex.status,
            start_time=ex.start_time,
            close_time=ex.close_time,
            input=ex.input,
            result=ex.result,
            close_reason=ex.close_reason,
            close_details=ex.close_details,
            tags=ex.tags,
            decision_timeout=ex.decision_timeout,
            next_event_id=len(ex.events) + 1,
            parent_workflow_id=ex.parent_workflow_id,
            parent_run_id=ex.parent_run_id,
            cancel_requested=ex.cancel_requested,
            search_attributes={name: value for name, (_, value) in sorted(ex.search.items())},
        )

    def _wait_for(self, claim: Callable[[], Any], wait: float) -> Any:
        deadline = self.clock() + wait
        with self._cond:
            while True:
                self._fire_due_locked()
                self._retry_at = None
                found = claim()
                if found is not None or wait <= 0:
                    return found
                remaining = deadline - self.clock()
                if remaining <= 0:
                    return None
                if self._retry_at is not None:  # a rate limit said when the next start may be
                    remaining = min(remaining, max(self._retry_at - self.clock(), 0.0005))
                due = self._next_due_locked()
                if due is not None:
                    remaining = min(remaining, max(due - self.clock(), 0.001))
                self._cond.wait(min(remaining, 0.5))

    # -- executions ------------------------------------------------------------------------------

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
        searched = self._search.started(search_attributes)
        with self._cond:
            latest = self._runs.get(self._latest.get(workflow_id, ""))
            if latest is not None and latest.status == OPEN:
                raise WorkflowAlreadyStarted(workflow_id, latest.run_id)
            check_reuse(id_reuse_policy, workflow_id, latest.status if latest else None)
            return self._new_run(
                workflow_id, workflow_type, version, task_list, input, tags, decision_timeout, **searched
            ).run_id

    def _new_run(
        self,
        workflow_id: str,
        workflow_type: str,
        version: str,
        task_list: str,
        input: str | None,
        tags: Sequence[str],
        decision_timeout: float,
        **started: Any,
    ) -> _Execution:
        run_id = uuid.uuid4().hex
        ex = _Execution(
            workflow_id,
            run_id,
            workflow_type,
            version,
            task_list,
            input,
            tuple(tags),
            decision_timeout,
            self.clock(),
            self._next_seq(),
        )
        self._runs[run_id] = ex
        self._latest[workflow_id] = run_id
        self._search.index(ex.search, started.get("searchAttributes"))
        self._append(
            ex,
            h.WORKFLOW_EXECUTION_STARTED,
            workflowId=workflow_id,
            runId=run_id,
            workflowType={"name": workflow_type, "version": version},
            taskList={"name": task_list},
            input=input,
            tagList=list(tags),
            taskStartToCloseTimeout=decision_timeout,
            **started,
        )
        self._schedule_decision(ex)
        return ex

    def describe_execution(self, workflow_id: str, run_id: str | None = None) -> ExecutionInfo:
        with self._cond:
            return self._info(self._find(workflow_id, run_id))

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
        query = self._search.parse(where)
        with self._cond:
            runs = sorted(self._runs.values(), key=lambda e: e.seq, reverse=True)
            if status == "closed":
                runs = [e for e in runs if e.status != OPEN]
            elif status:
                runs = [e for e in runs if e.status == status]
            if workflow_type:
                runs = [e for e in runs if e.workflow_type == workflow_type]
            if tag is not None:
                runs = [e for e in runs if tag in e.tags]
            if started_after is not None:
                runs = [e for e in runs if e.start_time >= started_after]
            if started_before is not None:
                runs = [e for e in runs if e.start_time < started_before]
            if query is not None:
                matches = self._search.predicate(query)
                runs = [e for e in runs if matches(e, e.search)]
            return [self._info(e) for e in runs[offset : offset + limit]]

    def get_history(
        self, workflow_id: str, run_id: str | None = None, after_event_id: int = 0
    ) -> list[h.Event]:
        with self._cond:
            return list(self._find(workflow_id, run_id).events[after_event_id:])

    def signal_execution(
        self, workflow_id: str, run_id: str | None, signal_name: str, input: str | None
    ) -> None:
        with self._cond:
            ex = self._find(workflow_id, run_id)
            if ex.status != OPEN:
                raise ExecutionClosed(f"execution {workflow_id} is {ex.status}; it cannot be signalled")
            self._append(ex, h.WORKFLOW_EXECUTION_SIGNALED, signalName=signal_name, input=input)
            self._schedule_decision(ex)

    def request_cancel_execution(self, workflow_id: str, run_id: str | None = None) -> None:
        with self._cond:
            ex = self._find(workflow_id, run_id)
            if ex.status != OPEN:
                raise ExecutionClosed(f"execution {workflow_id} is {ex.status}; it cannot be cancelled")
            self._request_cancel(ex)

    def terminate_execution(
        self,
        workflow_id: str,
        run_id: str | None = None,
        reason: str | None = None,
        details: str | None = None,
    ) -> None:
        with self._cond:
            ex = self._find(workflow_id, run_id)
            if ex.status != OPEN:
                raise ExecutionClosed(f"execution {workflow_id} is already {ex.status}")
            self._append(ex, h.WORKFLOW_EXECUTION_TERMINATED, reason=reason, details=details)
            ex.close_reason, ex.close_details = reason, details
            self._close(ex, "terminated")

    # -- decision tasks --------------------------------------------------------------------------

    def poll_decision_task(
        self, task_list: str, identity: str = "", wait: float = 0.0, known: Mapping[str, int] | None = None
    ) -> DecisionTask | None:
        def claim() -> DecisionTask | None:
            now = self.clock()
            ready = [
                e
                for e in self._runs.values()
                if e.task_list == task_list
                and e.status == OPEN
                and e.decision_scheduled_id is not None
                and e.decision_started_id is None
                and e.decision_visible_at <= now
            ]
            if not ready:
                return None
            ex = min(ready, key=lambda e: (e.decision_visible_at, e.seq))
            started = self._append(
                ex,
                h.DECISION_TASK_STARTED,
                scheduledEventId=ex.decision_scheduled_id,
                identity=identity or None,
            )
            ex.decision_scheduled_id = None
            ex.decision_started_id = started
            ex.decision_lease = now + ex.decision_timeout
            ex.decision_token = f"{ex.run_id}/{started}/{uuid.uuid4().hex[:8]}"
            after = min((known or {}).get(ex.run_id, 0), started - 1)
            return DecisionTask(
                ex.decision_token,
                ex.workflow_id,
                ex.run_id,
                ex.workflow_type,
                ex.version,
                ex.task_list,
                started,
                ex.events[after:],
                after,
            )

        return self._wait_for(claim, wait)

    def _decision_owner(self, token: str) -> _Execution:
        self._fire_due_locked()  # a lease that ran out is fired first, so its token is rejected
        ex = self._runs.get(token.split("/", 1)[0])
        if ex is None or ex.status != OPEN or ex.decision_token != token:
            raise UnknownTask(
                "decision task is no longer leased to this decider (lease expired or already completed)"
            )
        return ex

    def complete_decision_task(
        self, token: str, decisions: Sequence[Decision], execution_context: str | None = None
    ) -> None:
        for i, d in enumerate(decisions):
            if isinstance(d, CLOSE_DECISIONS) and i != len(decisions) - 1:
                raise EngineError("a decision that closes the execution must be the last one")
        for d in decisions:
            if not isinstance(d, ALL_DECISIONS):
                raise EngineError(f"unknown decision {d!r}")
        changes = self._search.of_decisions(decisions)  # checked before anything is applied
        with self._cond:
            ex = self._decision_owner(token)
            self._apply_decisions(ex, decisions, execution_context, changes)
            self._cond.notify_all()

    def _apply_decisions(
        self, ex: _Execution, decisions: Sequence[Decision], context: str | None,
        changes: Mapping[int, Mapping[str, Any]] | None = None,
    ) -> None:
        now = self.clock()
        completed = self._append(
            ex,
            h.DECISION_TASK_COMPLETED,
            scheduledEventId=ex.events[ex.decision_started_id - 1].attributes.get("scheduledEventId"),
            startedEventId=ex.decision_started_id,
            executionContext=context,
        )
        ex.decision_started_id = ex.decision_token = ex.decision_lease = None
        ex.decision_failures = 0
        for d in decisions:
            if isinstance(d, ScheduleActivityTask):
                eid = self._append(
                    ex, h.ACTIVITY_TASK_SCHEDULED, **d.event_attributes(), decisionTaskCompletedEventId=completed
                )
                self._activities[(ex.run_id, eid)] = _Activity(ex.run_id, d, eid, now, self._next_seq())
            elif isinstance(d, StartTimer):
                if (ex.run_id, d.timer_id) in self._timers:
                    self._append(
                        ex,
                        h.START_TIMER_FAILED,
                        timerId=d.timer_id,
                        cause="TIMER_ID_ALREADY_IN_USE",
                        decisionTaskCompletedEventId=completed,
                    )
                    self._schedule_decision(ex)
                    continue
                eid = self._append(
                    ex,
                    h.TIMER_STARTED,
                    timerId=d.timer_id,
                    startToFireTimeout=d.seconds,
                    control=d.control,
                    decisionTaskCompletedEventId=completed,
                )
                self._timers[(ex.run_id, d.timer_id)] = (eid, now + d.seconds)
            elif isinstance(d, CancelTimer):
                timer = self._timers.pop((ex.run_id, d.timer_id), None)
                if timer is None:
                    self._append(
                        ex,
                        h.CANCEL_TIMER_FAILED,
                        timerId=d.timer_id,
                        cause="TIMER_ID_UNKNOWN",
                        decisionTaskCompletedEventId=completed,
                    )
                    self._schedule_decision(ex)
                else:
                    self._append(
                        ex,
                        h.TIMER_CANCELED,
                        timerId=d.timer_id,
                        startedEventId=timer[0],
                        decisionTaskCompletedEventId=completed,
                    )
            elif isinstance(d, RecordMarker):
                self._append(
                    ex,
                    h.MARKER_RECORDED,
                    markerName=d.name,
                    details=d.details,
                    decisionTaskCompletedEventId=completed,
                )
                if changes and id(d) in changes:
                    self._search.index(ex.search, changes[id(d)], decoded=True)
            elif isinstance(d, SignalExternalWorkflowExecution):
                self._signal_external(ex, d, completed)
            elif isinstance(d, StartChildWorkflowExecution):
                self._start_child(ex, d, completed)
            elif isinstance(d, CancelWorkflowExecution):
                self._append(
                    ex,
                    h.WORKFLOW_EXECUTION_CANCELED,
                    details=d.details,
                    decisionTaskCompletedEventId=completed,
                )
                ex.close_details = d.details
                self._close(ex, "canceled")
            elif isinstance(d, ContinueAsNewWorkflowExecution):
                self._continue_as_new(ex, d, completed)
            elif isinstance(d, CompleteWorkflowExecution):
                self._append(
                    ex,
                    h.WORKFLOW_EXECUTION_COMPLETED,
                    result=d.result,
                    decisionTaskCompletedEventId=completed,
                )
                ex.result = d.result
                self._close(ex, "completed")
            elif isinstance(d, FailWorkflowExecution):
                self._append(
                    ex,
                    h.WORKFLOW_EXECUTION_FAILED,
                    reason=d.reason,
                    details=d.details,
                    decisionTaskCompletedEventId=completed,
                )
                ex.close_reason, ex.close_details = d.reason, d.details
                self._close(ex, "failed")

    def _signal_external(self, ex: _Execution, d: SignalExternalWorkflowExecution, completed: int) -> None:
        initiated = self._append(
            ex,
            h.SIGNAL_EXTERNAL_INITIATED,
            workflowId=d.workflow_id,
            runId=d.run_id,
            signalName=d.signal_name,
            input=d.input,
            control=d.control,
            decisionTaskCompletedEventId=completed,
        )
        rid = d.run_id or self._latest.get(d.workflow_id)
        target = self._runs.get(rid or "")
        if target is None or target.workflow_id != d.workflow_id or target.status != OPEN:
            self._append(
                ex,
                h.SIGNAL_EXTERNAL_FAILED,
                initiatedEventId=initiated,
                workflowId=d.workflow_id,
                runId=d.run_id,
                cause="UNKNOWN_EXTERNAL_WORKFLOW_EXECUTION",
                control=d.control,
            )
        else:
            self._append(
                target,
                h.WORKFLOW_EXECUTION_SIGNALED,
                signalName=d.signal_name,
                input=d.input,
                externalWorkflowExecution={"workflowId": ex.workflow_id, "runId": ex.run_id},
                externalInitiatedEventId=initiated,
            )
            self._schedule_decision(target)
            self._append(
                ex,
                h.EXTERNAL_WORKFLOW_SIGNALED,
                initiatedEventId=initiated,
                workflowExecution={"workflowId": target.workflow_id, "runId": target.run_id},
            )
        self._schedule_decision(ex)

    def _start_child(self, ex: _Execution, d: StartChildWorkflowExecution, completed: int) -> None:
        initiated = self._append(
            ex,
            h.START_CHILD_INITIATED,
            workflowId=d.workflow_id,
            workflowType={"name": d.workflow_type, "version": d.version},
            taskList={"name": d.task_list},
            input=d.input,
            control=d.control,
            parentClosePolicy=d.parent_close_policy,
            tagList=list(d.tags),
            decisionTaskCompletedEventId=completed,
        )
        latest = self._runs.get(self._latest.get(d.workflow_id, ""))
        if latest is not None and latest.status == OPEN:
            self._append(
                ex,
                h.START_CHILD_FAILED,
                initiatedEventId=initiated,
                workflowId=d.workflow_id,
                workflowType={"name": d.workflow_type, "version": d.version},
                cause="WORKFLOW_ALREADY_RUNNING",
                control=d.control,
            )
            self._schedule_decision(ex)
            return
        child = self._new_run(
            d.workflow_id,
            d.workflow_type,
            d.version,
            d.task_list,
            d.input,
            d.tags,
            d.decision_timeout or ex.decision_timeout,
            parentWorkflowExecution={"workflowId": ex.workflow_id, "runId": ex.run_id},
            parentInitiatedEventId=initiated,
        )
        child.parent_workflow_id, child.parent_run_id, child.parent_initiated_id = (
            ex.workflow_id,
            ex.run_id,
            initiated,
        )
        child.parent_close_policy = (
            d.parent_close_policy if d.parent_close_policy in PARENT_CLOSE_POLICIES else "terminate"
        )
        self._append(
            ex,
            h.CHILD_STARTED,
            initiatedEventId=initiated,
            workflowExecution={"workflowId": child.workflow_id, "runId": child.run_id},
            workflowType={"name": d.workflow_type, "version": d.version},
        )
        self._schedule_decision(ex)

    def _continue_as_new(self, ex: _Execution, d: ContinueAsNewWorkflowExecution, completed: int) -> None:
        parent = {}
        if ex.parent_run_id:
            parent = {
                "parentWorkflowExecution": {
                    "workflowId": self._runs[ex.parent_run_id].workflow_id,
                    "runId": ex.parent_run_id,
                },
                "parentInitiatedEventId": ex.parent_initiated_id,
            }
        nxt = self._new_run(
            ex.workflow_id,
            ex.workflow_type,
            d.version or ex.version,
            d.task_list or ex.task_list,
            d.input,
            ex.tags,
            ex.decision_timeout,
            continuedExecutionRunId=ex.run_id,
            searchAttributes=self._search.encoded(ex.search),
            **parent,
        )
        nxt.parent_workflow_id, nxt.parent_run_id = ex.parent_workflow_id, ex.parent_run_id
        nxt.parent_initiated_id = ex.parent_initiated_id
        nxt.parent_close_policy = ex.parent_close_policy
        self._append(
            ex,
            h.WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
            input=d.input,
            newExecutionRunId=nxt.run_id,
            taskList={"name": nxt.task_list},
            decisionTaskCompletedEventId=completed,
        )
        self._close(ex, "continued_as_new")
        self._latest[ex.workflow_id] = nxt.run_id

    def fail_decision_task(self, token: str, cause: str, details: str | None = None) -> None:
        with self._cond:
            ex = self._decision_owner(token)
            started = ex.decision_started_id
            self._append(
                ex,
                h.DECISION_TASK_FAILED,
                scheduledEventId=ex.events[started - 1].attributes.get("scheduledEventId"),
                startedEventId=started,
                cause=cause,
                details=details,
            )
            ex.decision_started_id = ex.decision_token = ex.decision_lease = None
            ex.decision_failures += 1
            delay = decision_retry_delay(ex.decision_failures)
            if ex.decision_scheduled_id is not None:
                ex.decision_visible_at = self.clock() + delay
            self._schedule_decision(ex, delay)

    # -- activity tasks --------------------------------------------------------------------------

    def poll_activity_task(
        self, task_list: str, identity: str = "", wait: float = 0.0
    ) -> ActivityTask | None:
        def claim() -> ActivityTask | None:
            ready = [
                a for a in self._activities.values() if a.token is None and a.decision.task_list == task_list
            ]
            limits = self._limits.get(task_list)
            if ready and limits is not None:
                ready = self._within_limits(limits, ready)
            if not ready:
                return None
            act = min(ready, key=lambda a: (-a.decision.priority, a.seq))
            if limits is not None and limits.interval:
                tokens, _ = self._buckets[task_list]
                self._buckets[task_list] = (tokens - 1.0, self.clock())
            ex = self._runs[act.run_id]
            act.started_event_id = self._append(
                ex,
                h.ACTIVITY_TASK_STARTED,
                scheduledEventId=act.scheduled_event_id,
                identity=identity or None,
            )
            act.started_at = self.clock()
            act.token = f"{act.run_id}/{act.scheduled_event_id}/{uuid.uuid4().hex[:8]}"
            d = act.decision
            return ActivityTask(
                act.token,
                ex.workflow_id,
                ex.run_id,
                d.activity_id,
                d.name,
                d.version,
                d.task_list,
                d.input,
                d.control,
                act.scheduled_event_id,
                act.started_event_id,
                d.heartbeat_timeout,
                d.start_to_close_timeout,
                act.scheduled_at,
            )

        return self._wait_for(claim, wait)

    def count_waiting_activity_tasks(self, task_list: str) -> int:
        with self._cond:
            return sum(1 for a in self._activities.values() if a.token is None and a.decision.task_list == task_list)

    def _within_limits(self, limits: TaskListLimits, ready: list[_Activity]) -> list[_Activity]:
        """The ready tasks that may start now under `limits` (none when a limit is reached)."""
        running = [a for a in self._activities.values() if a.token is not None and a.decision.task_list == limits.task_list]
        if limits.concurrency is not None and len(running) >= limits.concurrency:
            return []
        now = self.clock()
        tokens = refill(*self._buckets.get(limits.task_list, (1.0, 0.0)), now, limits)
        self._buckets[limits.task_list] = (tokens, now)
        if tokens < 1.0:
            self._retry_at = now + (1.0 - tokens) * (limits.interval or 0.0)
            return []
        if limits.per_key is None:
            return ready
        counts = Counter(a.decision.concurrency_key for a in running)
        return [a for a in ready if a.decision.concurrency_key is None or counts[a.decision.concurrency_key] < limits.per_key]

    # -- limits ----------------------------------------------------------------------------------

    def set_task_list_limits(self, limits: TaskListLimits) -> None:
        with self._cond:
            self._limits[limits.task_list] = limits
            self._buckets.setdefault(limits.task_list, (1.0, self.clock()))
            self._cond.notify_all()

    def task_list_limits(self) -> list[TaskListLimits]:
        with self._cond:
            return [self._limits[k] for k in sorted(self._limits)]

    def clear_task_list_limits(self, task_list: str) -> bool:
        with self._cond:
            self._buckets.pop(task_list, None)
            found = self._limits.pop(task_list, None) is not None
            self._cond.notify_all()
            return found

    def _activity_owner(self, token: str) -> _Activity:
        self._fire_due_locked()  # a lease that ran out is fired first, so its token is rejected
        parts = token.split("/")
        act = None
        if len(parts) == 3 and parts[1].isdigit():
            act = self._activities.get((parts[0], int(parts[1])))
        if act is None or act.token != token:
            raise UnknownTask(
                "activity task is no longer leased to this worker (timed out or already closed)"
            )
        return act

    def heartbeat_activity_task(self, token: str, details: str | None = None) -> bool:
        with self._cond:
            act = self._activity_owner(token)
            act.last_heartbeat = self.clock()
            if details is not None:
                act.details = details
            return act.cancel_requested

    def _close_activity(self, token: str, event_type: str, **attrs: Any) -> None:
        with self._cond:
            act = self._activity_owner(token)
            ex = self._runs[act.run_id]
            del self._activities[(act.run_id, act.scheduled_event_id)]
            self._append(
                ex,
                event_type,
                scheduledEventId=act.scheduled_event_id,
                startedEventId=act.started_event_id,
                **attrs,
            )
            self._schedule_decision(ex)

    def complete_activity_task(self, token: str, result: str | None) -> None:
        self._close_activity(token, h.ACTIVITY_TASK_COMPLETED, result=result)

    def fail_activity_task(self, token: str, reason: str | None, details: str | None = None) -> None:
        self._close_activity(token, h.ACTIVITY_TASK_FAILED, reason=reason, details=details)

    def list_activity_tasks(self, workflow_id: str, run_id: str | None = None) -> list[dict[str, Any]]:
        with self._cond:
            ex = self._find(workflow_id, run_id)
            acts = sorted(
                (a for a in self._activities.values() if a.run_id == ex.run_id), key=lambda a: a.seq
            )
            return [
                {
                    "activity_id": a.decision.activity_id,
                    "name": a.decision.name,
                    "state": "started" if a.token else "scheduled",
                    "scheduled_event_id": a.scheduled_event_id,
                    "scheduled_at": a.scheduled_at,
                    "started_at": a.started_at,
                    "last_heartbeat": a.last_heartbeat,
                    "heartbeat_details": a.details,
                }
                for a in acts
            ]

    # -- time ------------------------------------------------------------------------------------

    def fire_due(self) -> int:
        with self._cond:
            return self._fire_due_locked()

    def _fire_due_locked(self) -> int:
        now = self.clock()
        fired = 0
        for (run_id, timer_id), (eid, fire_at) in sorted(self._timers.items(), key=lambda kv: kv[1][1]):
            if fire_at <= now:
                del self._timers[(run_id, timer_id)]
                ex = self._runs[run_id]
                self._append(ex, h.TIMER_FIRED, timerId=timer_id, startedEventId=eid)
                self._schedule_decision(ex)
                fired += 1
        for key, act in list(self._activities.items()):
            deadline, kind = act.deadline()
            if deadline is not None and deadline <= now:
                del self._activities[key]
                ex = self._runs[act.run_id]
                self._append(
                    ex,
                    h.ACTIVITY_TASK_TIMED_OUT,
                    scheduledEventId=act.scheduled_event_id,
                    startedEventId=act.started_event_id,
                    timeoutType=kind,
                    details=act.details,
                )
                self._schedule_decision(ex)
                metrics.task_finished(act.decision.name, "timed_out")
                fired += 1
        for ex in self._runs.values():
            if ex.decision_lease is not None and ex.decision_lease <= now:
                started = ex.decision_started_id
                self._append(
                    ex,
                    h.DECISION_TASK_TIMED_OUT,
                    scheduledEventId=ex.events[started - 1].attributes.get("scheduledEventId"),
                    startedEventId=started,
                    timeoutType="START_TO_CLOSE",
                )
                ex.decision_started_id = ex.decision_token = ex.decision_lease = None
                self._schedule_decision(ex)
                fired += 1
        if fired:
            self._cond.notify_all()
        return fired

    def next_due(self) -> float | None:
        with self._cond:
            return self._next_due_locked()

    def _next_due_locked(self) -> float | None:
        dues = [fire_at for _, fire_at in self._timers.values()]
        dues += [d for d in (a.deadline()[0] for a in self._activities.values()) if d is not None]
        for ex in self._runs.values():
            if ex.decision_lease is not None:
                dues.append(ex.decision_lease)
            if ex.decision_scheduled_id is not None and ex.decision_started_id is None:
                dues.append(ex.decision_visible_at)
        return min(dues) if dues else None
