"""py2sfn-task-tools 1.0.2's DynamoDB item layout, the wire format both sides must agree on.

An item is `partition_key` (S, HASH), `sort_key` (N, RANGE: the index), `expires_at` (N, epoch
seconds, for the table's TTL) and either `data` (S: the JSON text) or, when that text is over
390,000 UTF-8 bytes, `s3_key` (S) naming an S3 object whose body is the same bytes. The table's
sort key must be declared N: py2sfn's docstring says string, its code writes a number.
"""

from __future__ import annotations

from typing import Any

#: py2sfn's `ITEM_SIZE_THRESHOLD_BYTES`: above it the JSON goes to S3 (DynamoDB's limit is 400 KB
#: for the whole item, names and keys included).
ITEM_SIZE_THRESHOLD_BYTES = 390_000
S3_KEY_PREFIX = "workflow_state_data"
#: What a state data table must look like; quoted by the error for a missing table.
TABLE_SHAPE = "partition_key (S) as HASH key and sort_key (N) as RANGE key, TTL on expires_at"


def s3_key(table: str, partition_key: str, index: int) -> str:
    """Where an offloaded item's JSON lives in the bucket."""
    return f"{S3_KEY_PREFIX}/{table}/{partition_key}/{index}"


def needs_offload(body: bytes) -> bool:
    return len(body) > ITEM_SIZE_THRESHOLD_BYTES


def key(partition_key: str, index: int) -> dict[str, Any]:
    return {"partition_key": {"S": partition_key}, "sort_key": {"N": str(index)}}


def item(
    partition_key: str,
    index: int,
    expires_at: int,
    *,
    data: str | None = None,
    offloaded_to: str | None = None,
) -> dict[str, Any]:
    """A low-level (typed) item with `data`, or with `s3_key` when `offloaded_to` is given."""
    body = {"s3_key": {"S": offloaded_to}} if offloaded_to is not None else {"data": {"S": data}}
    return {**key(partition_key, index), "expires_at": {"N": str(int(expires_at))}, **body}


def _plain(value: Any) -> Any:
    """A string attribute in either form py2sfn reads: typed (`{"S": ...}`) or plain (resource API)."""
    if isinstance(value, dict) and "S" in value:
        return value["S"]
    return value


def stored(raw: dict[str, Any]) -> tuple[str | None, str | None]:
    """`(data, s3_key)` of a raw item; exactly one of them is set in a well-formed item."""
    return _plain(raw.get("data")), _plain(raw.get("s3_key"))


__all__ = ["ITEM_SIZE_THRESHOLD_BYTES", "S3_KEY_PREFIX", "item", "key", "needs_offload", "s3_key", "stored"]
