"""Where schedules and their progress live: the engine's database (or memory for `memory://`).

Each schedule is one row. A scheduler leases the rows it is about to handle (`claim`), and its
changes land only while it still holds the lease (`save`): a scheduler that was paused past its
lease loses the row to another one, and its late write is refused instead of undoing progress.
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .spec import ScheduleSpec


class UnknownSchedule(ConfigError):
    """No schedule has that name."""


@dataclass
class ScheduleState:
    spec: ScheduleSpec
    next_slot: float
    created: float
    paused: bool = False
    pending_slot: float | None = None
    running_workflow_id: str | None = None
    lease_owner: str | None = None
    lease_until: float | None = None
    fired: int = 0
    missed: int = 0
    last_slot: float | None = None
    last_fired_at: float | None = None

    @property
    def name(self) -> str:
        return self.spec.name


class ScheduleStore:
    def create(self, state: ScheduleState, replace: bool = False) -> None:
        raise NotImplementedError

    def get(self, name: str) -> ScheduleState:
        raise NotImplementedError

    def list(self) -> list[ScheduleState]:
        raise NotImplementedError

    def delete(self, name: str) -> None:
        raise NotImplementedError

    def set_paused(self, name: str, paused: bool) -> None:
        raise NotImplementedError

    def claim(self, now: float, owner: str, lease: float, limit: int = 50) -> list[ScheduleState]:
        """Lease the unpaused schedules that have something due (a slot or a buffered run)."""
        raise NotImplementedError

    def save(self, state: ScheduleState, owner: str) -> bool:
        """Write progress and release the lease; False (nothing written) if `owner` lost it."""
        raise NotImplementedError


class MemoryScheduleStore(ScheduleStore):
    def __init__(self) -> None:
        self._rows: dict[str, ScheduleState] = {}
        self._lock = threading.Lock()

    def create(self, state: ScheduleState, replace: bool = False) -> None:
        with self._lock:
            if state.name in self._rows and not replace:
                raise ConfigError(f"schedule {state.name!r} already exists")
            self._rows[state.name] = dataclasses.replace(state)

    def get(self, name: str) -> ScheduleState:
        with self._lock:
            if name not in self._rows:
                raise UnknownSchedule(f"no schedule named {name!r}")
            return dataclasses.replace(self._rows[name])

    def list(self) -> list[ScheduleState]:
        with self._lock:
            return [dataclasses.replace(r) for _, r in sorted(self._rows.items())]

    def delete(self, name: str) -> None:
        with self._lock:
            if self._rows.pop(name, None) is None:
                raise UnknownSchedule(f"no schedule named {name!r}")

    def set_paused(self, name: str, paused: bool) -> None:
        with self._lock:
            if name not in self._rows:
                raise UnknownSchedule(f"no schedule named {name!r}")
            self._rows[name].paused = paused

    def claim(self, now: float, owner: str, lease: float, limit: int = 50) -> list[ScheduleState]:
        with self._lock:
            out = []
            for row in self._rows.values():
                if len(out) >= limit:
                    break
                if _due(row, now) and (row.lease_until is None or row.lease_until < now):
                    row.lease_owner, row.lease_until = owner, now + lease
                    out.append(dataclasses.replace(row))
            return out

    def save(self, state: ScheduleState, owner: str) -> bool:
        with self._lock:
            row = self._rows.get(state.name)
            if row is None or row.lease_owner != owner:
                return False
            self._rows[state.name] = dataclasses.replace(state, paused=row.paused, lease_owner=None, lease_until=None)
            return True


def _due(row: ScheduleState, now: float) -> bool:
    return not row.paused and (row.next_slot <= now or row.pending_slot is not None)


_COLUMNS = ("name, spec, paused, next_slot, pending_slot, running_workflow_id, lease_owner, lease_until, fired, "
            "missed, last_slot, last_fired_at, created")


class SQLScheduleStore(ScheduleStore):
    """`steadyflow_schedules` in the engine's SQLite or PostgreSQL database."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def _run(self, fn: Callable[[Any, Callable[[str], str]], Any], write: bool = True) -> Any:
        return self.engine.run_data(fn, write=write)

    def create(self, state: ScheduleState, replace: bool = False) -> None:
        def put(conn: Any, sql: Callable[[str], str]) -> None:
            exists = conn.execute(sql("SELECT 1 FROM steadyflow_schedules WHERE name = ?"), (state.name,)).fetchone()
            if exists and not replace:
                raise ConfigError(f"schedule {state.name!r} already exists")
            if exists:  # keep progress (next slot, counts); take the new definition
                conn.execute(sql("UPDATE steadyflow_schedules SET spec = ? WHERE name = ?"),
                             (state.spec.to_json(), state.name))
                return
            conn.execute(sql(f"INSERT INTO steadyflow_schedules ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                         _row_values(state))

        self._run(put)

    def get(self, name: str) -> ScheduleState:
        def read(conn: Any, sql: Callable[[str], str]) -> Any:
            return conn.execute(sql(f"SELECT {_COLUMNS} FROM steadyflow_schedules WHERE name = ?"), (name,)).fetchone()

        row = self._run(read, write=False)
        if row is None:
            raise UnknownSchedule(f"no schedule named {name!r}")
        return _state(row)

    def list(self) -> list[ScheduleState]:
        def read(conn: Any, sql: Callable[[str], str]) -> Any:
            return conn.execute(sql(f"SELECT {_COLUMNS} FROM steadyflow_schedules ORDER BY name")).fetchall()

        return [_state(r) for r in self._run(read, write=False)]

    def delete(self, name: str) -> None:
        def drop(conn: Any, sql: Callable[[str], str]) -> bool:
            if conn.execute(sql("SELECT 1 FROM steadyflow_schedules WHERE name = ?"), (name,)).fetchone() is None:
                return False
            conn.execute(sql("DELETE FROM steadyflow_schedules WHERE name = ?"), (name,))
            return True

        if not self._run(drop):
            raise UnknownSchedule(f"no schedule named {name!r}")

    def set_paused(self, name: str, paused: bool) -> None:
        def flip(conn: Any, sql: Callable[[str], str]) -> bool:
            if conn.execute(sql("SELECT 1 FROM steadyflow_schedules WHERE name = ?"), (name,)).fetchone() is None:
                return False
            conn.execute(sql("UPDATE steadyflow_schedules SET paused = ? WHERE name = ?"), (int(paused), name))
            return True

        if not self._run(flip):
            raise UnknownSchedule(f"no schedule named {name!r}")

    def claim(self, now: float, owner: str, lease: float, limit: int = 50) -> list[ScheduleState]:
        lock = self.engine.dialect.lock

        def take(conn: Any, sql: Callable[[str], str]) -> list[Any]:
            names = [r[0] for r in conn.execute(sql(
                "SELECT name FROM steadyflow_schedules WHERE paused = 0 AND (next_slot <= ? OR pending_slot IS NOT NULL)"
                " AND (lease_until IS NULL OR lease_until < ?) ORDER BY next_slot LIMIT ?"), (now, now, limit))]
            taken = []
            for name in names:
                # Re-read under the row's lock: of two schedulers, one wins each row.
                row = conn.execute(sql(f"SELECT {_COLUMNS} FROM steadyflow_schedules WHERE name = ?{lock}"),
                                   (name,)).fetchone()
                if row is None or (row[7] is not None and row[7] >= now):
                    continue
                conn.execute(sql("UPDATE steadyflow_schedules SET lease_owner = ?, lease_until = ? WHERE name = ?"),
                             (owner, now + lease, name))
                taken.append(_state(row))
            return taken

        states = self._run(take)
        for state in states:
            state.lease_owner, state.lease_until = owner, now + lease
        return states

    def save(self, state: ScheduleState, owner: str) -> bool:
        lock = self.engine.dialect.lock

        def put(conn: Any, sql: Callable[[str], str]) -> bool:
            row = conn.execute(sql(f"SELECT lease_owner FROM steadyflow_schedules WHERE name = ?{lock}"),
                               (state.name,)).fetchone()
            if row is None or row[0] != owner:
                return False
            conn.execute(sql(
                "UPDATE steadyflow_schedules SET next_slot = ?, pending_slot = ?, running_workflow_id = ?, fired = ?,"
                " missed = ?, last_slot = ?, last_fired_at = ?, lease_owner = NULL, lease_until = NULL WHERE name = ?"),
                (state.next_slot, state.pending_slot, state.running_workflow_id, state.fired, state.missed,
                 state.last_slot, state.last_fired_at, state.name))
            return True

        return bool(self._run(put))


def _row_values(s: ScheduleState) -> tuple[Any, ...]:
    return (s.name, s.spec.to_json(), int(s.paused), s.next_slot, s.pending_slot, s.running_workflow_id,
            s.lease_owner, s.lease_until, s.fired, s.missed, s.last_slot, s.last_fired_at, s.created)


def _state(row: Any) -> ScheduleState:
    (_, spec, paused, next_slot, pending, running, owner, until, fired, missed, last_slot, last_at, created) = tuple(row)
    return ScheduleState(ScheduleSpec.from_json(spec), next_slot, created, bool(paused), pending, running, owner, until,
                         fired, missed, last_slot, last_at)


_memory: weakref.WeakKeyDictionary[Any, MemoryScheduleStore] = weakref.WeakKeyDictionary()
_memory_lock = threading.Lock()


def store_for(engine: Any) -> ScheduleStore:
    if hasattr(engine, "run_data"):
        return SQLScheduleStore(engine)
    with _memory_lock:
        if engine not in _memory:
            _memory[engine] = MemoryScheduleStore()
        return _memory[engine]
