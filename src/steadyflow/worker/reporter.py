"""Reporting outcomes to the engine for the pool's supervisor, retrying what the engine refused."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from .. import metrics
from ..engines.base import ActivityClose, Engine
from ..errors import UnknownTask
from .runner import Outcome
from .state import Running

log = logging.getLogger("steadyflow.worker")

REPORT_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
"""Back-off for re-reporting an outcome when the engine raised something other than `UnknownTask`."""
ERROR_LOG_INTERVAL = 5.0


@dataclass(eq=False)
class _Report:
    """An outcome whose report failed with an engine error; retried with back-off."""

    running: Running
    outcome: Outcome
    attempt: int
    due: float


class Reporter:
    """Completes or fails activity tasks; an engine error is retried with back-off, `UnknownTask`
    (the lease lapsed: somebody else owns the task now) drops the outcome."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pending: list[_Report] = []
        self._last_error_log = 0.0

    def dues(self) -> list[float]:
        """When the pending retries fall due (`time.monotonic()`)."""
        return [r.due for r in self._pending]

    def report_many(self, outcomes: list[tuple[Running, Outcome]]) -> None:
        """Report outcomes that arrived together in one engine call (one transaction, one commit);
        if that call fails, each is reported, and retried, on its own."""
        if len(outcomes) <= 1:
            for running, outcome in outcomes:
                self.report(running, outcome)
            return
        closes = [ActivityClose(r.token, o.ok, o.result, o.reason, o.details) for r, o in outcomes]
        try:
            recorded = self.engine.close_activity_tasks(closes)
        except Exception:
            log.warning("reporting %d outcomes together failed; reporting each", len(outcomes), exc_info=True)
            for running, outcome in outcomes:
                self.report(running, outcome)
            return
        for (running, outcome), ok in zip(outcomes, recorded):
            if ok:
                _count(running, outcome)
            else:
                _lapsed(running, outcome)

    def report(self, running: Running, outcome: Outcome, attempt: int = 0, final: bool = False) -> None:
        what = "result" if outcome.ok else "failure"
        try:
            if outcome.ok:
                self.engine.complete_activity_task(running.token, outcome.result)
            else:
                self.engine.fail_activity_task(running.token, outcome.reason, outcome.details)
            _count(running, outcome)
        except UnknownTask:
            _lapsed(running, outcome)
        except Exception:
            if final or attempt >= len(REPORT_RETRY_DELAYS):
                log.exception("activity task %s: could not report its %s; giving up", running.label, what)
            else:
                delay = REPORT_RETRY_DELAYS[attempt]
                msg = "activity task %s: reporting its %s failed; retrying in %.1fs"
                log.warning(msg, running.label, what, delay, exc_info=True)
                self._pending.append(_Report(running, outcome, attempt + 1, time.monotonic() + delay))

    def retry_due(self, final: bool = False) -> None:
        """Report again what is due (everything, once and for all, when `final`)."""
        now = time.monotonic()
        due = [r for r in self._pending if final or r.due <= now]
        if not due:
            return
        self._pending = [r for r in self._pending if r not in due]
        for r in due:
            self.report(r.running, r.outcome, r.attempt, final)

    def log_error(self, message: str, *args: Any) -> None:
        """Log an engine error with its traceback, at most every few seconds (the loop retries fast)."""
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL:
            self._last_error_log = now
            log.warning(message, *args, exc_info=True)


def _count(running: Running, outcome: Outcome) -> None:
    """Counted once it is recorded: a task whose lease lapsed was counted by the engine that timed
    it out, and a report retried later is counted when it lands."""
    timed_out = (outcome.reason or "").startswith("TimeoutError")
    kind = "completed" if outcome.ok else ("timed_out" if timed_out else "failed")
    metrics.task_finished(running.activity, kind, time.monotonic() - running.handed_at)


def _lapsed(running: Running, outcome: Outcome) -> None:
    what = "result" if outcome.ok else "failure"
    log.warning("activity task %s: lease lapsed before its %s was reported; dropped", running.label, what)
