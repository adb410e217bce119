"""The progress line of `standalone` and `workflow result --wait`, on stderr.

`ProgressTracker` reads an execution's history a few new events at a time (`get_history` with
`after_event_id`) and counts its tasks: activity attempts and child workflows scheduled, done
(completed), running (started, not closed) and failed (failed, timed out, canceled, or a child that
could not start). It follows continue-as-new through the `newExecutionRunId` of the close event, so
the counts and the elapsed time cover the whole chain of runs. A retried activity counts once per
attempt: a failed try is one failure, and its retry is one more task scheduled.

`Progress` shows the tracker's snapshots: on a terminal, one live line (rich's `Live`, a spinner
and a clock that keeps ticking between looks at the engine) that is replaced by a last plain line
when it closes; elsewhere (a pipe, a log file, CI), one plain line each time a count changes, never
one per look, so a long wait writes a few lines rather than thousands. stdout is never touched:
scripts that parse the result keep working.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from .. import history as h
from ..engines.base import Engine
from ..history import Event
from .views import (
    ACTIVITY_STATES,
    CHILD_STATES,
    DONE_STATES,
    OPENING_STATES,
    RUN_CLOSE_EVENTS,
    RUNNING_STATES,
)

OPEN = "open"


@dataclass(frozen=True)
class Snapshot:
    """An execution's progress at one moment."""

    workflow_id: str
    run_id: str
    scheduled: int = 0
    done: int = 0
    running: int = 0
    failed: int = 0
    elapsed: float = 0.0
    """Seconds since the first run started; up to the close of the last run once it closed."""
    status: str = OPEN
    """`open` while the current run is open, then the close status of the last run."""
    runs: int = 1
    """Runs seen so far (more than one after continue-as-new)."""

    @property
    def closed(self) -> bool:
        return self.status != OPEN

    @property
    def counts(self) -> tuple[int, int, int, int]:
        """(done, scheduled, running, failed): what a plain line is printed for when it changes."""
        return self.done, self.scheduled, self.running, self.failed

    def line(self, elapsed: float | None = None) -> str:
        """`wid: 2/3 tasks done, 1 running, 0 failed, 4.2s elapsed` (+ run number, + close status)."""
        text = (
            f"{self.workflow_id}: {self.done}/{self.scheduled} tasks done, {self.running} running, "
            f"{self.failed} failed, {duration(self.elapsed if elapsed is None else elapsed)} elapsed"
        )
        if self.runs > 1:
            text += f", run {self.runs}"
        if self.closed:
            text += f", {self.status}"
        return text


def duration(seconds: float) -> str:
    """`0.4s`, `12.3s`, `3m05s`, `2h10m`."""
    s = max(seconds, 0.0)
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


class ProgressTracker:
    """Counts an execution's tasks from its history, reading only the events added since last time.

    `run_id` None: the latest run of `workflow_id` when first polled. Either way, a run that
    continued as new is followed to the next one.
    """

    def __init__(self, engine: Engine, workflow_id: str, run_id: str | None = None) -> None:
        self.engine = engine
        self.workflow_id = workflow_id
        self.run_id = run_id
        self._after = 0  # last event id read of the current run
        self._tasks: dict[tuple[str, Any], str] = {}  # (kind, opening event id) -> state, while not closed
        self._scheduled = self._done = self._running = self._failed = 0
        self._runs = 1
        self._start: float | None = None
        self._end: float | None = None
        self._status = OPEN

    def poll(self) -> Snapshot:
        """Read what happened since the last poll; the progress now."""
        if self.run_id is None:
            self.run_id = self.engine.describe_execution(self.workflow_id).run_id
        while self._status == OPEN:
            events = self.engine.get_history(self.workflow_id, self.run_id, self._after)
            if not events:
                break
            next_run = None
            for e in events:
                self._after = e.event_id
                next_run = self._apply(e) or next_run
            if next_run is not None:  # continued as new: go on with the next run's history
                self.run_id, self._after, self._status, self._end = next_run, 0, OPEN, None
                self._runs += 1
        return self.snapshot()

    def snapshot(self) -> Snapshot:
        """The counts as of the last poll, with the elapsed time as of now."""
        start = self._start if self._start is not None else self.engine.clock()
        end = self._end if self._end is not None else self.engine.clock()
        return Snapshot(
            self.workflow_id, self.run_id or "", self._scheduled, self._done, self._running, self._failed,
            max(end - start, 0.0), self._status, self._runs,
        )

    def _apply(self, e: Event) -> str | None:
        """Count one event; the next run's id when it is a continue-as-new that names one."""
        if self._start is None:
            self._start = e.timestamp
        if e.event_type in ACTIVITY_STATES:
            self._task(("activity", e.event_id if e.event_type == h.ACTIVITY_TASK_SCHEDULED
                        else e.attributes.get("scheduledEventId", -1)), ACTIVITY_STATES[e.event_type])
        elif e.event_type in CHILD_STATES:
            self._task(("child", e.event_id if e.event_type == h.START_CHILD_INITIATED
                        else e.attributes.get("initiatedEventId", -1)), CHILD_STATES[e.event_type])
        elif e.event_type in RUN_CLOSE_EVENTS:
            self._end = e.timestamp
            self._status = h.CLOSE_EVENTS.get(e.event_type, "timed_out")
            if e.event_type == h.WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                new_run = e.attributes.get("newExecutionRunId")
                return str(new_run) if new_run else None
        return None

    def _task(self, key: tuple[str, Any], state: str) -> None:
        if state in OPENING_STATES:
            self._tasks[key] = state
            self._scheduled += 1
            return
        before = self._tasks.get(key)
        if before is None:  # an event of a task this tracker did not see opened (or already closed)
            return
        if before in RUNNING_STATES:
            self._running -= 1
        if state in RUNNING_STATES:
            self._tasks[key] = state
            self._running += 1
            return
        del self._tasks[key]
        if state in DONE_STATES:
            self._done += 1
        else:
            self._failed += 1


class Progress:
    """Shows snapshots on `stream` (stderr by default): a live line on a terminal, plain lines
    (one per change of the counts, run or status) elsewhere. Use as a context manager, or call
    `close()`, so that the live line is taken down before anything else is printed."""

    def __init__(self, stream: TextIO | None = None, *, live: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if live is None:
            isatty = getattr(self.stream, "isatty", None)
            live = bool(isatty and isatty())
        self.live = live
        self.last: Snapshot | None = None
        self._taken = time.monotonic()  # when `last` was taken, for the ticking clock
        self._shown: tuple[Any, ...] | None = None
        self._display: Any = None  # rich.live.Live once started
        self._spinner: Any = None

    def update(self, snapshot: Snapshot) -> None:
        self.last, self._taken = snapshot, time.monotonic()
        if self.live:
            self._start_live()
            return
        key = (snapshot.counts, snapshot.status, snapshot.runs)
        if key != self._shown:
            self._shown = key
            print(snapshot.line(), file=self.stream, flush=True)

    def close(self) -> None:
        """Take the live line down and leave the last snapshot as a plain line."""
        if self._display is None:
            return
        from rich.text import Text

        display, self._display = self._display, None
        display.stop()
        if self.last is not None:
            display.console.print(Text(self.last.line()))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the live line ---------------------------------------------------------------------------

    def _start_live(self) -> None:
        if self._display is not None:
            return
        from rich.console import Console
        from rich.live import Live
        from rich.spinner import Spinner

        self._spinner = Spinner("dots")
        # stdout stays unredirected: it carries the result, and may be a pipe while stderr is a tty.
        self._display = Live(self, console=Console(file=self.stream), refresh_per_second=8, transient=True,
                             redirect_stdout=False, redirect_stderr=True)
        self._display.start()

    def __rich__(self) -> Any:
        """The live line, rendered by rich's refresh thread: the clock ticks between updates."""
        from rich.text import Text

        snapshot = self.last
        if snapshot is None:
            return Text("")
        elapsed = snapshot.elapsed if snapshot.closed else snapshot.elapsed + time.monotonic() - self._taken
        self._spinner.update(text=Text(" " + snapshot.line(elapsed)))
        return self._spinner


__all__ = ["Progress", "ProgressTracker", "Snapshot", "duration"]
