"""The test kit: run workflows in tests with time skipping and fake activities, and replay saved
histories against current code before deploying it.

    from steadyflow.testing import WorkflowEnvironment, Replayer

    def test_reminder():
        env = WorkflowEnvironment(fakes={send_email: lambda to: "sent"})
        assert env.run(Reminder, "ann@example.com") == "sent"   # sleeps 30 days in milliseconds

    def test_new_code_replays_production_histories():
        Replayer([Reminder]).replay("histories/reminder-1.json")  # raises NonDeterminismError

With `pytest_plugins = ["steadyflow.testing"]` in a conftest, the `workflow_env` fixture gives a
fresh environment per test.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .activity import as_activity
from .decider import Decider, query_workflow
from .engines import open_engine
from .engines.base import ExecutionInfo
from .engines.memory import MemoryEngine
from .errors import WorkflowError, WorkflowFailed
from .history import WORKFLOW_EXECUTION_STARTED, Event
from .local import InlineDriver, start
from .replay import Executor
from .workflow import Workflow

__all__ = ["Replayer", "SkippingClock", "WorkflowEnvironment", "load_history", "workflow_env"]


class SkippingClock:
    """Wall-clock time plus an offset that the environment moves forward when nothing can run."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += max(seconds, 0.0)


class WorkflowEnvironment:
    """A memory engine, a decider and inline activities; timers fire as soon as nothing else can run."""

    def __init__(
        self,
        fakes: Mapping[Any, Callable[..., Any]] | None = None,
        time_skipping: bool = True,
        workflows: Iterable[type[Workflow]] = (),
        engine_url: str | None = None,
    ) -> None:
        self.clock = SkippingClock()
        self.engine = open_engine(engine_url, clock=self.clock) if engine_url else MemoryEngine(clock=self.clock)
        self.task_list = f"test-{uuid.uuid4().hex[:8]}"
        self.time_skipping = time_skipping
        self.driver = InlineDriver(self.engine, self.task_list, tuple(workflows), on_idle=self._idle)
        for activity, fake in (fakes or {}).items():
            self.fake_activity(activity, fake)

    def fake_activity(self, activity: Any, fake: Callable[..., Any]) -> None:
        """Run `fake` wherever `activity` (a decorated function or a name) would run."""
        name = activity if isinstance(activity, str) else as_activity(activity).name
        self.driver.fakes[name] = fake

    def _idle(self) -> bool:
        due = self.engine.next_due()
        if due is None or due <= self.clock():
            return False  # nothing to wait for here (what is due belongs to another task list)
        if self.time_skipping:
            self.clock.advance(due - self.clock())
            return True
        return self.driver.sleep_until_due()

    # -- driving executions ----------------------------------------------------------------------

    def start(self, cls: type[Workflow], *args: Any, workflow_id: str | None = None, **kwargs: Any) -> str:
        """Start an execution and run it until it waits on something from outside; return its id."""
        wid, _ = start(self.engine, cls, args, kwargs, workflow_id=workflow_id, task_list=self.task_list)
        self.run_until_idle()
        return wid

    def run_until_idle(self) -> None:
        """Decide and run activities, skipping time, until every execution closes or waits for a signal."""
        self.driver.run_until(lambda: not self.engine.list_executions(status="open", limit=1))

    def run(self, cls: type[Workflow], /, *args: Any, **kwargs: Any) -> Any:
        """Run an execution to its end and return its result; `WorkflowFailed` if it did not complete."""
        return self.result(self.start(cls, *args, **kwargs))

    def result(self, workflow_id: str) -> Any:
        self.run_until_idle()
        info = self.describe(workflow_id)
        if info.is_open:
            raise WorkflowError(f"workflow {workflow_id} is still open: it waits for something (a signal?)")
        if info.status != "completed":
            raise WorkflowFailed(workflow_id, info.status, info.close_reason, info.close_details)
        return self.engine.payloads.loads(info.result)

    def describe(self, workflow_id: str) -> ExecutionInfo:
        return self.engine.describe_execution(workflow_id)

    def history(self, workflow_id: str) -> list[Event]:
        return self.engine.get_history(workflow_id)

    def signal(self, workflow_id: str, name: str, /, *args: Any, **kwargs: Any) -> None:
        self.engine.signal_execution(workflow_id, None, name, self.engine.payloads.dumps({"args": list(args), "kwargs": kwargs}))
        self.run_until_idle()

    def cancel(self, workflow_id: str) -> None:
        self.engine.request_cancel_execution(workflow_id)
        self.run_until_idle()

    def query(self, workflow_id: str, name: str, /, *args: Any) -> Any:
        return query_workflow(self.engine, workflow_id, None, name, args, workflows=self.driver.decider)

    def sleep(self, seconds: float) -> None:
        """Move time forward (timers due by then fire) and run what that makes runnable."""
        self.clock.advance(seconds)
        self.run_until_idle()


def load_history(source: str | Path | Iterable[Any]) -> list[Event]:
    """Events from `workflow history --format json` output: a path, JSON text, dicts or Events."""
    if isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith("[")):
        try:
            source = Path(source).read_text()
        except UnicodeDecodeError as exc:
            raise WorkflowError(f"malformed history: {source} is not UTF-8 text ({exc.reason})") from None
    try:
        data = json.loads(source) if isinstance(source, str) else list(source)
    except (ValueError, RecursionError) as exc:
        raise WorkflowError(f"malformed history: not JSON ({exc})") from None
    if not isinstance(data, list):
        raise WorkflowError(f"malformed history: a JSON list of events is expected, not {type(data).__name__}")
    return [e if isinstance(e, Event) else Event.from_json(e) for e in data]


class Replayer:
    """Replays saved histories against the current code; raises `NonDeterminismError` on a mismatch."""

    def __init__(self, workflows: Iterable[type[Workflow]] = ()) -> None:
        self._workflows = tuple(workflows)
        self._decider = Decider(MemoryEngine(), "replayer", self._workflows)

    def replay(self, history: str | Path | Iterable[Any]) -> None:
        events = load_history(history)
        if not events or events[0].event_type != WORKFLOW_EXECUTION_STARTED:
            raise WorkflowError("a history must start with WorkflowExecutionStarted")
        # One class given: replay with it (checking a new class against old histories); several:
        # pick by the history's own class name or type.
        cls = self._workflows[0] if len(self._workflows) == 1 else self._decider.class_for(events)
        Executor(cls).decide(events)


try:  # the pytest fixture, when pytest is there
    import pytest

    @pytest.fixture
    def workflow_env() -> WorkflowEnvironment:
        """A fresh `WorkflowEnvironment` (time skipping on)."""
        return WorkflowEnvironment()

except ImportError:  # pragma: no cover - steadyflow does not require pytest
    pass
