"""State data: py2sfn-task-tools' `StateDataClient` on DynamoDB, or on the engine's own database.

See `docs/state-data.md`. `client.py` is the py2sfn API, `store.py` the contract a store keeps,
and `memory.py`, `sql.py`, `dynamodb.py` the stores; `open_state_store` picks one for an engine.
"""

from __future__ import annotations

from .client import StateDataClient
from .dynamodb import DynamoDBStateStore
from .errors import NoItemFound, StateDataError, StateDataTooLarge
from .memory import MemoryStateStore
from .opener import client_for_task, open_state_store
from .sql import SQLStateStore
from .store import StateStore

__all__ = [
    "DynamoDBStateStore",
    "MemoryStateStore",
    "NoItemFound",
    "SQLStateStore",
    "StateDataClient",
    "StateDataError",
    "StateDataTooLarge",
    "StateStore",
    "client_for_task",
    "open_state_store",
]
