"""References to items held in state data, so a fan-out never copies the items into the history.

`self.map(fn, items_ref)` over what `put_items` returned schedules one activity per item whose
input is a `StoredItem` (a table, a partition key and an index: a few dozen bytes). The worker
reads the item just before calling the activity, which receives the item itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import PayloadError


@dataclass(frozen=True)
class StoredItem:
    table_name: str
    partition_key: str
    index: int


def items_of(ref: Any) -> list[StoredItem]:
    """The items a `put_items`/`put_global_items` result points at, in order."""
    if not isinstance(ref, dict) or not {"table_name", "partition_key", "items"} <= set(ref):
        raise PayloadError(
            "expected what put_items() returned (a dict with table_name, partition_key and items), "
            f"got {type(ref).__name__}"
        )
    return [StoredItem(ref["table_name"], ref["partition_key"], i) for i in range(len(ref["items"]))]


def has_stored_items(value: Any) -> bool:
    if isinstance(value, StoredItem):
        return True
    if isinstance(value, (list, tuple)):
        return any(has_stored_items(v) for v in value)
    if isinstance(value, dict):
        return any(has_stored_items(v) for v in value.values())
    return False


def resolve_stored_items(value: Any, client: Any) -> Any:
    """`value` with every `StoredItem` replaced by the item it names (read through `client`)."""
    if isinstance(value, StoredItem):
        if client is None:
            raise PayloadError("a stored item was passed outside a worker that can read state data")
        return client.get_global_item(value.table_name, value.partition_key, value.index)
    if isinstance(value, list):
        return [resolve_stored_items(v, client) for v in value]
    if isinstance(value, tuple):
        return tuple(resolve_stored_items(v, client) for v in value)
    if isinstance(value, dict):
        return {k: resolve_stored_items(v, client) for k, v in value.items()}
    return value
