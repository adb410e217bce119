"""What links executions in the SQL engines: cancellation requests, signals between executions,
child workflows (start, their end reported to the parent, the parent-close policy) and
continue-as-new. A mixin of `SQLEngine`, applied inside its transactions; the memory engine
(`memory.py`) is the reference for every event written here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from .. import history as h
from ..decisions import (
    PARENT_CLOSE_POLICIES,
    ContinueAsNewWorkflowExecution,
    SignalExternalWorkflowExecution,
    StartChildWorkflowExecution,
)
from ..errors import ExecutionClosed
from ..search import decode_attributes
from .base import OPEN

Conn = Any
Row = Any

#: `open_children` by the parent's row id, so it need not wait for the parent's row to be read.
_OPEN_CHILDREN_OF = """SELECT * FROM steadyflow_executions WHERE status = 'open'
    AND parent_run_id = (SELECT run_id FROM steadyflow_executions WHERE id = ?) ORDER BY id"""


class LinksMixin:
    """Uses `SQLEngine`'s `_append`, `_sql`, `_find`, `_close`, `_schedule_decision`, `clock`."""

    def _new_run(
        self,
        conn: Conn,
        workflow_id: str,
        workflow_type: str,
        version: str,
        task_list: str,
        input: str | None,
        tags: Sequence[str],
        decision_timeout: float,
        run_id: str | None = None,
        parent: tuple[str, str, int, str] | None = None,
        **started: Any,
    ) -> tuple[int, str]:
        """Insert a run and its first events; return (row id, run id). `parent` is
        (workflow id, run id, initiated event id, close policy)."""
        run_id = run_id or uuid.uuid4().hex
        row = (workflow_id, run_id, workflow_type, version, task_list, input, json.dumps(list(tags)))
        inserted = self._insert_execution(conn, (*row, decision_timeout, self.clock()))  # type: ignore[attr-defined]
        execution = inserted["id"]
        if parent is not None:
            conn.execute(self._sql("set_parent"), (*parent, execution))  # type: ignore[attr-defined]
            started["parentWorkflowExecution"] = {"workflowId": parent[0], "runId": parent[1]}
            started["parentInitiatedEventId"] = parent[2]
        if started.get("searchAttributes"):
            self._index_search(conn, execution, decode_attributes(started["searchAttributes"]))  # type: ignore[attr-defined]
        self._append(  # type: ignore[attr-defined]
            conn,
            execution,
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
        # The inserted row still holds what scheduling reads (status, task list, decision columns):
        # nothing above changes those, so it need not be read back.
        self._schedule_decision(conn, execution, ex=inserted)  # type: ignore[attr-defined]
        return execution, run_id

    def request_cancel_execution(self, workflow_id: str, run_id: str | None = None) -> None:
        def cancel(conn: Conn) -> None:
            ex = self._find(conn, workflow_id, run_id, lock=True)  # type: ignore[attr-defined]
            if ex["status"] != OPEN:
                raise ExecutionClosed(f"execution {workflow_id} is {ex['status']}; it cannot be cancelled")
            self._request_cancel(conn, ex["id"])

        self._run(cancel, retry_after_commit=False)  # type: ignore[attr-defined]

    def _request_cancel(self, conn: Conn, execution: int, cause: str | None = None) -> None:
        self._append(conn, execution, h.WORKFLOW_EXECUTION_CANCEL_REQUESTED, cause=cause)  # type: ignore[attr-defined]
        conn.execute(self._sql("set_cancel_requested"), (execution,))  # type: ignore[attr-defined]
        conn.execute(self._sql("cancel_activities"), (execution,))  # type: ignore[attr-defined]
        self._schedule_decision(conn, execution)  # type: ignore[attr-defined]

    def _after_close(self, conn: Conn, execution: int, status: str) -> None:
        """Tell an open parent that this child closed; apply each open child's parent-close policy."""
        sql = self._sql  # type: ignore[attr-defined]
        # Both asked for before either answer is read: one round trip in pipeline mode.
        row = conn.execute(sql("by_id"), (execution,))
        children = conn.execute(self._placeholders(_OPEN_CHILDREN_OF), (execution,))  # type: ignore[attr-defined]
        ex, children = row.fetchone(), children.fetchall()
        if ex["parent_run_id"] and status in h.CHILD_CLOSE_EVENTS:
            parent = conn.execute(sql("by_run", "lock"), (ex["parent_run_id"],)).fetchone()
            if parent is not None and parent["status"] == OPEN:
                started = None
                for event_id, attributes in conn.execute(sql("events_of_type"), (parent["id"], h.CHILD_STARTED)):
                    if json.loads(attributes).get("initiatedEventId") == ex["parent_initiated_id"]:
                        started = event_id
                outcome = (
                    {"result": ex["result"]}
                    if status == "completed"
                    else {"reason": ex["close_reason"], "details": ex["close_details"]}
                )
                self._append(  # type: ignore[attr-defined]
                    conn, parent["id"], h.CHILD_CLOSE_EVENTS[status], initiatedEventId=ex["parent_initiated_id"],
                    startedEventId=started, workflowExecution={"workflowId": ex["workflow_id"], "runId": ex["run_id"]},
                    **outcome,
                )
                self._schedule_decision(conn, parent["id"])  # type: ignore[attr-defined]
        for child in children:
            if child["parent_close_policy"] == "terminate":
                self._append(  # type: ignore[attr-defined]
                    conn, child["id"], h.WORKFLOW_EXECUTION_TERMINATED, reason="parent closed", cause="CHILD_POLICY_APPLIED"
                )
                self._close(conn, child["id"], "terminated", reason="parent closed")  # type: ignore[attr-defined]
            elif child["parent_close_policy"] == "request_cancel":
                self._request_cancel(conn, child["id"], cause="CHILD_POLICY_APPLIED")

    def _signal_external(self, conn: Conn, execution: int, d: SignalExternalWorkflowExecution, completed: int) -> None:
        append, sql = self._append, self._sql  # type: ignore[attr-defined]
        ex = conn.execute(sql("by_id"), (execution,)).fetchone()
        initiated = append(
            conn, execution, h.SIGNAL_EXTERNAL_INITIATED, workflowId=d.workflow_id, runId=d.run_id,
            signalName=d.signal_name, input=d.input, control=d.control, decisionTaskCompletedEventId=completed,
        )
        if d.run_id:
            target = conn.execute(sql("by_run", "lock"), (d.run_id,)).fetchone()
        else:
            target = conn.execute(sql("latest", "lock"), (d.workflow_id,)).fetchone()
        if target is None or target["workflow_id"] != d.workflow_id or target["status"] != OPEN:
            append(conn, execution, h.SIGNAL_EXTERNAL_FAILED, initiatedEventId=initiated, workflowId=d.workflow_id,
                   runId=d.run_id, cause="UNKNOWN_EXTERNAL_WORKFLOW_EXECUTION", control=d.control)
        else:
            append(conn, target["id"], h.WORKFLOW_EXECUTION_SIGNALED, signalName=d.signal_name, input=d.input,
                   externalWorkflowExecution={"workflowId": ex["workflow_id"], "runId": ex["run_id"]},
                   externalInitiatedEventId=initiated)
            self._schedule_decision(conn, target["id"])  # type: ignore[attr-defined]
            append(conn, execution, h.EXTERNAL_WORKFLOW_SIGNALED, initiatedEventId=initiated,
                   workflowExecution={"workflowId": target["workflow_id"], "runId": target["run_id"]})
        self._schedule_decision(conn, execution)  # type: ignore[attr-defined]

    def _start_child(self, conn: Conn, execution: int, d: StartChildWorkflowExecution, completed: int) -> None:
        append, sql = self._append, self._sql  # type: ignore[attr-defined]
        ex = conn.execute(sql("by_id"), (execution,)).fetchone()
        kind = {"name": d.workflow_type, "version": d.version}
        initiated = append(
            conn, execution, h.START_CHILD_INITIATED, workflowId=d.workflow_id, workflowType=kind,
            taskList={"name": d.task_list}, input=d.input, control=d.control, parentClosePolicy=d.parent_close_policy,
            tagList=list(d.tags), decisionTaskCompletedEventId=completed,
        )
        if conn.execute(sql("open_run"), (d.workflow_id,)).fetchone() is not None:
            append(conn, execution, h.START_CHILD_FAILED, initiatedEventId=initiated, workflowId=d.workflow_id,
                   workflowType=kind, cause="WORKFLOW_ALREADY_RUNNING", control=d.control)
            self._schedule_decision(conn, execution)  # type: ignore[attr-defined]
            return
        policy = d.parent_close_policy if d.parent_close_policy in PARENT_CLOSE_POLICIES else "terminate"
        _, child_run = self._new_run(
            conn, d.workflow_id, d.workflow_type, d.version, d.task_list, d.input, d.tags,
            d.decision_timeout or ex["decision_timeout"], parent=(ex["workflow_id"], ex["run_id"], initiated, policy),
        )
        append(conn, execution, h.CHILD_STARTED, initiatedEventId=initiated,
               workflowExecution={"workflowId": d.workflow_id, "runId": child_run}, workflowType=kind)
        self._schedule_decision(conn, execution)  # type: ignore[attr-defined]

    def _continue_as_new(self, conn: Conn, execution: int, d: ContinueAsNewWorkflowExecution, completed: int) -> None:
        ex = conn.execute(self._sql("by_id"), (execution,)).fetchone()  # type: ignore[attr-defined]
        parent = None
        if ex["parent_run_id"]:
            parent = (ex["parent_workflow_id"], ex["parent_run_id"], ex["parent_initiated_id"], ex["parent_close_policy"])
        # The old run closes first, so that the new one may take the open workflow id.
        new_run = uuid.uuid4().hex
        searched = self._encoded_search_of(conn, execution)  # type: ignore[attr-defined]
        self._append(  # type: ignore[attr-defined]
            conn, execution, h.WORKFLOW_EXECUTION_CONTINUED_AS_NEW, input=d.input, newExecutionRunId=new_run,
            taskList={"name": d.task_list or ex["task_list"]}, decisionTaskCompletedEventId=completed,
        )
        self._close(conn, execution, "continued_as_new")  # type: ignore[attr-defined]
        self._new_run(
            conn, ex["workflow_id"], ex["workflow_type"], d.version or ex["version"], d.task_list or ex["task_list"],
            d.input, json.loads(ex["tags"]), ex["decision_timeout"], run_id=new_run, parent=parent,
            continuedExecutionRunId=ex["run_id"], searchAttributes=searched,
        )
