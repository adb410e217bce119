"""State data in dictionaries: for the memory engine, `--local` runs and tests. Nothing survives
the process."""

from __future__ import annotations

import threading

from .store import StateStore


class MemoryStateStore(StateStore):
    """Partitions of `{index: (text, expires_at)}` under one lock, so worker threads may share it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._partitions: dict[tuple[str, str], dict[int, tuple[str, int]]] = {}

    def put(self, table: str, partition_key: str, index: int, text: str, expires_at: int) -> None:
        with self._lock:
            self._partitions.setdefault((table, partition_key), {})[index] = (text, expires_at)

    def put_many(self, table: str, partition_key: str, texts: list[str], expires_at: int) -> None:
        if not texts:
            return
        with self._lock:
            items = self._partitions.setdefault((table, partition_key), {})
            items.update((i, (text, expires_at)) for i, text in enumerate(texts))

    def get(self, table: str, partition_key: str, index: int) -> str | None:
        with self._lock:
            item = self._partitions.get((table, partition_key), {}).get(index)
        return None if item is None else item[0]

    def get_all(self, table: str, partition_key: str) -> list[str]:
        with self._lock:
            items = dict(self._partitions.get((table, partition_key), {}))
        return [items[i][0] for i in sorted(items)]

    def count(self, table: str, partition_key: str) -> int:
        with self._lock:
            return len(self._partitions.get((table, partition_key), {}))

    def purge_expired(self, now: float) -> int:
        purged = 0
        with self._lock:
            for key, items in list(self._partitions.items()):
                expired = [i for i, (_, expires_at) in items.items() if expires_at < now]
                for i in expired:
                    del items[i]
                purged += len(expired)
                if not items:
                    del self._partitions[key]
        return purged


__all__ = ["MemoryStateStore"]
