"""py2sfn-task-tools' `StateDataClient`: the same methods, arguments and return dicts, on any store.

A Step Functions state may only pass 256 KB (py2sfn's README says 32K characters) to the next
one, so tasks park data in a table and pass a pointer instead: the dict a `put_*` method returns.
A later task, or each iteration of a Map state, gives that pointer back to a `get_*` method. Since
the pointers and the stored items are py2sfn's own, tasks written for py2sfn run unchanged, and
items written by either side are read by the other.

"Local" methods take a short `key` and build the partition key `"<namespace>:<key>"` in the
client's default table (the namespace is normally the execution id, so executions do not collide);
"global" methods take a table name and a full partition key, to reach items another project wrote.

The client does the JSON (`json.dumps` with default settings, as py2sfn, so the text is identical)
and the key naming; where the text is kept is the store's business (`store.py`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

from .errors import NoItemFound, StateDataError
from .store import StateStore

DAY = 86_400


def as_index(value: Any, name: str = "index") -> int:
    """An item index from an int or a numeric string (a Map state's `context_index` may be either).

    py2sfn passed a string through to DynamoDB, where it failed against the numeric sort key.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise StateDataError(f"{name} must be an integer or a numeric string, not {value!r}")


def _field(event: Mapping[str, Any], name: str, method: str) -> Any:
    try:
        return event[name]
    except (KeyError, TypeError):
        raise StateDataError(
            f"{method}() needs {name!r} in the event: call it in a Map iteration whose input "
            "carries the put_items result (items_result_* keys and context_index)"
        ) from None


class StateDataClient:
    """Put and get JSON values in a state data table, the py2sfn way.

    Args:
        default_table_name: the table local methods use.
        namespace: prefix of local partition keys, normally the execution id.
        ttl_days: items expire this many days after they are written (`expires_at`).
        s3_bucket: bucket for items over 390,000 bytes when the client builds its own DynamoDB
            store; defaults to `SFN_DATA_S3_BUCKET` (read now, not at import as py2sfn did).
            Ignored when `store` is given: configure that store instead.
        store: where items live. Default: DynamoDB through boto3, as py2sfn.
    """

    def __init__(
        self,
        default_table_name: str,
        namespace: str,
        ttl_days: float = 7,
        s3_bucket: str | None = None,
        *,
        store: StateStore | None = None,
    ) -> None:
        self.default_table_name = default_table_name
        self.namespace = namespace
        self.ttl_days = ttl_days
        self.s3_bucket = s3_bucket if s3_bucket is not None else os.environ.get("SFN_DATA_S3_BUCKET")
        if store is None:
            from .dynamodb import DynamoDBStateStore

            store = DynamoDBStateStore(s3_bucket=self.s3_bucket)
        self.store = store

    def __repr__(self) -> str:
        return (
            f"StateDataClient({self.default_table_name!r}, {self.namespace!r}, "
            f"ttl_days={self.ttl_days!r}, store={type(self.store).__name__})"
        )

    # -- local ------------------------------------------------------------------------------------

    def put_item(self, key: str, data: Any, index: int = 0) -> dict[str, Any]:
        """Store `data` at `index` under `key`; returns `{"table_name", "partition_key", "key"}`."""
        partition_key = self.partition_key(key)
        self._put(self.default_table_name, partition_key, as_index(index), data)
        return {"table_name": self.default_table_name, "partition_key": partition_key, "key": key}

    def put_items(self, key: str, items: list[Any]) -> dict[str, Any]:
        """Store each element at its list position; the `items` list of 1s is what a Map state fans
        out over. Returns `{"table_name", "partition_key", "items": [1, ...], "key"}`."""
        partition_key = self.partition_key(key)
        count = self._put_many(self.default_table_name, partition_key, items)
        return {
            "table_name": self.default_table_name,
            "partition_key": partition_key,
            "items": [1] * count,
            "key": key,
        }

    def get_item(self, key: str, index: int = 0) -> Any:
        """The value at `index` under `key`; `NoItemFound` when there is none."""
        return self.get_global_item(self.default_table_name, self.partition_key(key), index)

    def get_items(self, key: str) -> list[Any]:
        """Every value under `key`, in index order ([] when there is none)."""
        return self.get_global_items(self.default_table_name, self.partition_key(key))

    def get_item_for_map_iteration(self, event: Mapping[str, Any]) -> Any:
        """The item of this Map iteration, from its input's `items_result_key` and `context_index`."""
        method = "get_item_for_map_iteration"
        key = _field(event, "items_result_key", method)
        return self.get_item(key, as_index(_field(event, "context_index", method), "context_index"))

    def put_item_for_map_iteration(self, event: Mapping[str, Any], item: Any) -> dict[str, Any]:
        """Replace this Map iteration's item (`items_result_key`, `context_index`) with `item`."""
        method = "put_item_for_map_iteration"
        key = _field(event, "items_result_key", method)
        return self.put_item(key, item, as_index(_field(event, "context_index", method), "context_index"))

    # -- global -----------------------------------------------------------------------------------

    def put_global_item(
        self, table_name: str, partition_key: str, data: Any, index: int = 0
    ) -> dict[str, Any]:
        """Store `data` under a full partition key in any table; returns `{"table_name", "partition_key"}`."""
        self._put(table_name, partition_key, as_index(index), data)
        return {"table_name": table_name, "partition_key": partition_key}

    def put_global_items(self, table_name: str, partition_key: str, items: list[Any]) -> dict[str, Any]:
        """`put_items` under a full partition key in `table_name`; returns
        `{"table_name", "partition_key", "items": [1, ...]}`.

        py2sfn 1.0.2 wrote these items into the client's *default* table and returned the default
        table's name, while naming offloaded S3 objects after `table_name`, so the items were not
        where `get_global_items(table_name, ...)` looked. Here they go to `table_name`, and the
        returned pointer names it.
        """
        count = self._put_many(table_name, partition_key, items)
        return {"table_name": table_name, "partition_key": partition_key, "items": [1] * count}

    def get_global_item(self, table_name: str, partition_key: str, index: int = 0) -> Any:
        """The value at `index` under a full partition key; `NoItemFound` when there is none."""
        index = as_index(index)
        text = self.store.get(table_name, partition_key, index)
        if text is None:
            raise NoItemFound(f"partition_key={partition_key} sort_key={index} table_name={table_name}")
        return json.loads(text)

    def get_global_items(self, table_name: str, partition_key: str) -> list[Any]:
        """Every value under a full partition key, in index order."""
        return [json.loads(text) for text in self.store.get_all(table_name, partition_key)]

    def get_global_item_for_map_iteration(self, event: Mapping[str, Any]) -> Any:
        """The item of this Map iteration, from `items_result_table_name`,
        `items_result_partition_key` and `context_index` (for arrays another project stored)."""
        table_name, partition_key, index = self._global_location(event, "get_global_item_for_map_iteration")
        return self.get_global_item(table_name, partition_key, index)

    def put_global_item_for_map_iteration(self, event: Mapping[str, Any], item: Any) -> dict[str, Any]:
        """Replace this Map iteration's item, located by the `items_result_table_name` and
        `items_result_partition_key` of its input, with `item`."""
        table_name, partition_key, index = self._global_location(event, "put_global_item_for_map_iteration")
        return self.put_global_item(table_name, partition_key, item, index)

    def count_items(self, table_name: str, partition_key: str) -> int:
        """How many items a partition holds, without reading them (not in py2sfn): what steadyflow
        fans a Map state out over when it only has the pointer."""
        return self.store.count(table_name, partition_key)

    # -- helpers ----------------------------------------------------------------------------------

    def partition_key(self, key: str) -> str:
        """The partition key local methods use for `key`."""
        return f"{self.namespace}:{key}"

    def expires_at(self) -> int:
        """Epoch seconds `ttl_days` from now, as DynamoDB TTL wants it."""
        return int(time.time() + self.ttl_days * DAY)

    @staticmethod
    def _global_location(event: Mapping[str, Any], method: str) -> tuple[str, str, int]:
        table_name = _field(event, "items_result_table_name", method)
        partition_key = _field(event, "items_result_partition_key", method)
        return table_name, partition_key, as_index(_field(event, "context_index", method), "context_index")

    def _put(self, table: str, partition_key: str, index: int, data: Any) -> None:
        text = self._dumps(data, partition_key)
        self.store.put(table, partition_key, index, text, self.expires_at())

    def _put_many(self, table: str, partition_key: str, items: list[Any]) -> int:
        texts = [self._dumps(value, partition_key) for value in items]
        self.store.put_many(table, partition_key, texts, self.expires_at())
        return len(texts)

    @staticmethod
    def _dumps(value: Any, partition_key: str) -> str:
        try:
            return json.dumps(value)  # default settings: byte-for-byte what py2sfn stores
        except (TypeError, ValueError) as exc:
            raise StateDataError(f"state data for {partition_key!r} is not JSON-serialisable: {exc}") from exc


__all__ = ["StateDataClient", "as_index"]
