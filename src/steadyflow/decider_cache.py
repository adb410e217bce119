"""The decider's cache of running workflows ("sticky" execution): a replay per decision is O(N),
so a workflow of N steps costs O(N²) without it.

A cached executor keeps `run()` parked where its last decision left it; the next decision task
feeds it only the events since. It is an optimisation only: an entry that cannot continue (the
last decision was not applied, another decider moved the execution on, the process restarted, the
entry was evicted) falls back to a full replay from a fresh executor, which gives the same
decisions. Entries are evicted least recently used first, by count and by the history events they
stand for (a stand-in for memory: a workflow's state grows with its history).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from .replay import Executor

DEFAULT_SIZE = 500
DEFAULT_EVENTS = 2_000_000


def size_from_env() -> int:
    """`STEADYFLOW_DECIDER_CACHE`: how many executions a decider keeps (0 turns the cache off)."""
    value = os.environ.get("STEADYFLOW_DECIDER_CACHE", "")
    return int(value) if value.strip().isdigit() else DEFAULT_SIZE


class ExecutorCache:
    def __init__(self, size: int = DEFAULT_SIZE, max_events: int = DEFAULT_EVENTS) -> None:
        self.size = size
        self.max_events = max_events
        self._entries: OrderedDict[str, tuple[Executor, int]] = OrderedDict()
        self._events = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def known(self) -> dict[str, int]:
        """Run id -> the last event each kept executor has seen, for `poll_decision_task(known=)`."""
        with self._lock:
            return {run_id: ex.last_decided or 0 for run_id, (ex, _) in self._entries.items()}

    def take(self, run_id: str) -> Executor | None:
        """The executor kept for `run_id`, removed from the cache (put it back after deciding)."""
        with self._lock:
            entry = self._entries.pop(run_id, None)
            if entry is None:
                return None
            self._events -= entry[1]
            return entry[0]

    def put(self, run_id: str, executor: Executor, events: int) -> None:
        evicted = []
        with self._lock:
            self._entries[run_id] = (executor, events)
            self._events += events
            while self._entries and (len(self._entries) > self.size or self._events > self.max_events):
                _, (old, count) = self._entries.popitem(last=False)
                self._events -= count
                evicted.append(old)
        for old in evicted:
            old.release()

    def clear(self) -> None:
        with self._lock:
            entries, self._entries, self._events = list(self._entries.values()), OrderedDict(), 0
        for executor, _ in entries:
            executor.release()
