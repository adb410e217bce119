"""Choosing a state store for a steadyflow engine or a URL.

State data lives beside the engine by default, so a workflow that runs on SQLite or PostgreSQL
needs no AWS account for py2sfn-style tasks, and its items expire with its database. DynamoDB is
opt-in by URL, for tasks that must share items with py2sfn processes.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..errors import ConfigError
from .memory import MemoryStateStore
from .store import StateStore

_memory_stores: weakref.WeakKeyDictionary[Any, MemoryStateStore] = weakref.WeakKeyDictionary()
_memory_lock = threading.Lock()


def open_state_store(target: Any) -> StateStore:
    """The state store for `target`.

    Args:
        target: a steadyflow engine, whose own database keeps the items (SQLite, PostgreSQL;
            the memory engine gets one `MemoryStateStore` for as long as it lives), or the URL
            `dynamodb://`, optionally `dynamodb://?bucket=NAME` for items over 390,000 bytes
            (default: `SFN_DATA_S3_BUCKET`).

    Raises:
        ConfigError: an unknown URL or an object that is not an engine.
    """
    if isinstance(target, str):
        return _from_url(target)
    if hasattr(target, "run_data"):
        from .sql import SQLStateStore

        return SQLStateStore(target)
    if _is_memory_engine(target):
        with _memory_lock:
            store = _memory_stores.get(target)
            if store is None:
                store = _memory_stores[target] = MemoryStateStore()
            return store
    raise ConfigError(
        f"no state data store for {type(target).__name__}: expected a steadyflow engine or dynamodb://"
    )


#: The table name tasks' local keys live in, unless `STEADYFLOW_STATE_TABLE` names another.
DEFAULT_TABLE = "steadyflow"


def client_for_task(engine: Any, workflow_id: str) -> Any:
    """What `context().state_data_client` is: namespaced by the workflow id (py2sfn used the
    execution id), on `STEADYFLOW_STATE_DATA` (`dynamodb://...`) when set, else the engine's store."""
    from .client import StateDataClient

    url = os.environ.get("STEADYFLOW_STATE_DATA")
    store = open_state_store(url if url else engine)
    table = os.environ.get("STEADYFLOW_STATE_TABLE") or DEFAULT_TABLE
    return StateDataClient(table, workflow_id, store=store)


def _is_memory_engine(target: Any) -> bool:
    from ..engines.memory import MemoryEngine

    return isinstance(target, MemoryEngine)


def _from_url(url: str) -> StateStore:
    parts = urlsplit(url)
    if parts.scheme != "dynamodb" or parts.netloc or parts.path not in ("", "/") or parts.fragment:
        raise ConfigError(f"unknown state data URL {url!r} (expected dynamodb:// or dynamodb://?bucket=NAME)")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"bucket"})
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r} in state data URL {url!r} (known: bucket)")
    buckets = query.get("bucket", [])
    if len(buckets) > 1 or (buckets and not buckets[0]):
        raise ConfigError(f"state data URL {url!r} needs exactly one non-empty bucket=NAME")
    bucket = buckets[0] if buckets else os.environ.get("SFN_DATA_S3_BUCKET") or None
    from .dynamodb import DynamoDBStateStore

    return DynamoDBStateStore(s3_bucket=bucket)


__all__ = ["DEFAULT_TABLE", "client_for_task", "open_state_store"]
