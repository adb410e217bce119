"""Schedules from Python: `Schedules(engine)` (what `client.schedules` is) and `@schedule`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..engines.base import Engine
from ..errors import ConfigError, WorkflowAlreadyStarted
from .scheduler import start_for_slot
from .spec import ScheduleSpec, slot_text
from .store import ScheduleState, store_for

#: Schedules declared with `@schedule`, created or updated when a scheduler starts with their module.
registered: dict[str, ScheduleSpec] = {}


class Schedules:
    """Create, inspect and drive the schedules of one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = store_for(engine)

    def create(self, name: str, cron: str, workflow: Any, *, args: Any = (), kwargs: dict[str, Any] | None = None,
               replace: bool = False, **options: Any) -> ScheduleState:
        """A new schedule (`replace=True` updates one, keeping its progress). `workflow`: a Workflow
        class or its dotted path; the options are `ScheduleSpec`'s (timezone, overlap, ...)."""
        path = workflow if isinstance(workflow, str) else f"{workflow.__module__}.{workflow.__qualname__}"
        spec = ScheduleSpec(name, cron, path, list(args), dict(kwargs or {}), **options)
        return self.add(spec, replace)

    def add(self, spec: ScheduleSpec, replace: bool = False) -> ScheduleState:
        from ..decider import load_workflow

        load_workflow(spec.workflow)  # an unknown workflow is refused now, not at its first slot
        now = self.engine.clock()
        state = ScheduleState(spec, spec.next_slot(now), now)
        self.store.create(state, replace=replace)
        return self.store.get(spec.name)

    def get(self, name: str) -> ScheduleState:
        return self.store.get(name)

    def list(self) -> list[ScheduleState]:
        return self.store.list()

    def delete(self, name: str) -> None:
        self.store.delete(name)

    def pause(self, name: str) -> None:
        self.store.set_paused(name, True)

    def unpause(self, name: str) -> None:
        """Resume; slots that passed while paused are skipped (not caught up), as if just created."""
        state = self.store.get(name)
        self.store.set_paused(name, False)
        if state.paused:
            self._skip_to_now(state)

    def _skip_to_now(self, state: ScheduleState) -> None:
        owner = f"unpause-{id(self)}"
        now = self.engine.clock()
        for claimed in self.store.claim(now, owner, 30.0, limit=1000):
            if claimed.name == state.name:
                claimed.next_slot = claimed.spec.next_slot(now)
            self.store.save(claimed, owner)

    def trigger(self, name: str) -> str:
        """Start a run now, outside the cron slots; returns its workflow id."""
        spec = self.store.get(name).spec
        now = self.engine.clock()
        workflow_id = f"{spec.name}@manual-{slot_text(round(now, 3))}"
        start_for_slot(self.engine, spec, workflow_id, None)
        return workflow_id

    def backfill(self, name: str, start: float, end: float) -> list[str]:
        """Start a run for every slot in [start, end]; a slot already fired is not fired again."""
        if end < start:
            raise ConfigError("backfill: --to is before --from")
        spec = self.store.get(name).spec
        started = []
        for slot in spec.slots(start, end):
            try:
                start_for_slot(self.engine, spec, spec.workflow_id(slot), slot)
                started.append(spec.workflow_id(slot))
            except WorkflowAlreadyStarted:
                continue
        return started


def schedule(cron: str, name: str | None = None, *, args: Any = (), kwargs: dict[str, Any] | None = None,
             **options: Any) -> Callable[[type], type]:
    """Declare a schedule on a Workflow class; `steadyflow schedule run -m MODULE` creates it (or
    updates its definition) when it starts. Options as `ScheduleSpec` (timezone, overlap, ...)."""

    def decorate(cls: type) -> type:
        path = f"{cls.__module__}.{cls.__qualname__}"
        spec = ScheduleSpec(name or path, cron, path, list(args), dict(kwargs or {}), **options)
        registered[spec.name] = spec
        return cls

    return decorate
