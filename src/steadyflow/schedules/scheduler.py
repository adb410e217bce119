"""The scheduler: starts an ordinary execution for each slot of each schedule, once.

Any number of schedulers may run against one engine. Two guards make a slot fire once: the
schedule's row is leased by one scheduler at a time, and each slot's execution has a workflow id
made from the slot, which the engine refuses to start twice (`reject_duplicate`). A scheduler
killed mid-way leaves a lease that runs out; the next one resumes from the slot it had reached.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from typing import Any

from ..decider import load_workflow
from ..engines.base import Engine
from ..errors import SteadyflowError, UnknownExecution, WorkflowAlreadyStarted
from ..workflow import workflow_input
from .spec import ScheduleSpec, slot_text
from .store import ScheduleState, store_for

log = logging.getLogger("steadyflow.scheduler")

TAG_SCHEDULE = "schedule:"
TAG_SLOT = "slot:"


class Scheduler:
    """Fires due slots. `lease`: how long a schedule stays with this scheduler if it dies."""

    def __init__(self, engine: Engine, identity: str | None = None, lease: float = 10.0) -> None:
        self.engine = engine
        self.store = store_for(engine)
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease = lease
        self.started: list[str] = []  # workflow ids this scheduler started (for tests and logs)

    def tick(self) -> int:
        """Handle every schedule with something due now; return how many executions started."""
        now = self.engine.clock()
        fired = 0
        for state in self.store.claim(now, self.identity, self.lease):
            try:
                fired += self._advance(state, now)
            except SteadyflowError as exc:  # an engine hiccup: the lease runs out, someone retries
                log.error("schedule %s: %s", state.name, exc)
                continue
            if not self.store.save(state, self.identity):
                log.warning("schedule %s: lease lost while firing; another scheduler took over", state.name)
        return fired

    def run(self, stop: threading.Event | None = None, interval: float = 0.1) -> None:
        stop = stop or threading.Event()
        log.info("scheduler %s running", self.identity)
        while not stop.is_set():
            try:
                self.tick()
            except SteadyflowError as exc:
                log.error("scheduler tick failed: %s", exc)
            stop.wait(interval)

    # -- one schedule ----------------------------------------------------------------------------

    def _advance(self, state: ScheduleState, now: float) -> int:
        spec = state.spec
        fired = 0
        running = self._running(state)
        if state.pending_slot is not None and not running:
            fired += self._fire(state, state.pending_slot, now)
            state.pending_slot = None
            running = True
        while state.next_slot <= now:
            slot = state.next_slot
            if slot + spec.delay(slot) > now:
                break  # its jitter has not elapsed yet
            state.next_slot = spec.next_slot(slot)
            if now - slot > spec.catchup_window:
                state.missed += 1
                log.warning("schedule %s: slot %s missed (older than the %ss catch-up window)",
                            spec.name, slot_text(slot), spec.catchup_window)
                continue
            if running and spec.overlap == "skip":
                log.info("schedule %s: slot %s skipped, the previous run is still open", spec.name, slot_text(slot))
                continue
            if running and spec.overlap == "buffer_one":
                if state.pending_slot is None:
                    state.pending_slot = slot
                continue
            if running and spec.overlap == "cancel_other" and state.running_workflow_id:
                self._cancel(state.running_workflow_id)
            fired += self._fire(state, slot, now)
            running = True
        return fired

    def _running(self, state: ScheduleState) -> bool:
        if not state.running_workflow_id:
            return False
        try:
            return self.engine.describe_execution(state.running_workflow_id).is_open
        except UnknownExecution:
            return False

    def _cancel(self, workflow_id: str) -> None:
        try:
            self.engine.request_cancel_execution(workflow_id)
        except SteadyflowError as exc:  # it closed meanwhile
            log.info("could not cancel %s: %s", workflow_id, exc)

    def _fire(self, state: ScheduleState, slot: float, now: float) -> int:
        spec = state.spec
        workflow_id = spec.workflow_id(slot)
        state.running_workflow_id = workflow_id
        state.last_slot = slot
        try:
            start_for_slot(self.engine, spec, workflow_id, slot)
        except WorkflowAlreadyStarted:
            log.info("schedule %s: slot %s was already fired", spec.name, slot_text(slot))
            return 0
        state.fired += 1
        state.last_fired_at = now
        self.started.append(workflow_id)
        log.info("schedule %s: started %s (%.3fs after its slot)", spec.name, workflow_id, now - slot)
        return 1


def start_for_slot(engine: Engine, spec: ScheduleSpec, workflow_id: str, slot: float | None) -> str:
    """Start the schedule's workflow as an ordinary execution tagged with its schedule and slot."""
    cls = load_workflow(spec.workflow)
    tags = [f"{TAG_SCHEDULE}{spec.name}"] + ([f"{TAG_SLOT}{slot_text(slot)}"] if slot is not None else [])
    extra: dict[str, Any] = {"decision_timeout": cls.decision_tasks_timeout} if cls.decision_tasks_timeout else {}
    return engine.start_execution(
        workflow_id, cls.type_name(), cls.version, spec.task_list or cls.task_list or "default",
        engine.payloads.seal(workflow_input(cls, spec.args, spec.kwargs), cls.store),
        tags=tags, id_reuse_policy="reject_duplicate", **extra,
    )
