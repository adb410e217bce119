"""State data in DynamoDB (and S3 for large items), readable and writable by py2sfn-task-tools.

The item layout is in `dynamodb_items.py`. What differs from py2sfn, on purpose:

- boto3 clients are built on first use, not at import, so importing steadyflow needs neither boto3
  nor AWS credentials; `DYNAMODB_ENDPOINT_URL` and `S3_ENDPOINT_URL` are honoured as py2sfn does.
- Queries (`get_all`, `count`) read consistently, so a Map state that fans out right after
  `put_items` sees every item; py2sfn's `get_items` is eventually consistent.
- Throttling is retried (see `backoff.py`), and `BatchWriteItem`'s `UnprocessedItems` are written
  again until none are left instead of being trusted to `batch_writer`.
- A missing table, or an item too large for DynamoDB with no bucket to offload it to, is a
  `StateDataError` that says what to configure.

The table is never created here, nor its TTL enabled: that belongs to the deployment, as in py2sfn.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, TypeVar

from . import dynamodb_items as items
from .backoff import MAX_TRIES, delay, retrying
from .errors import StateDataError, StateDataTooLarge
from .store import StateStore

T = TypeVar("T")

#: BatchWriteItem's limit of put requests per call.
BATCH_SIZE = 25
BUCKET_SETTING = "SFN_DATA_S3_BUCKET"


def _boto3_client(service: str, endpoint_variable: str) -> Any:
    try:
        import boto3
    except ImportError as exc:
        raise StateDataError(f"the DynamoDB state store needs boto3 ({exc}): pip install boto3") from None
    return boto3.client(service, endpoint_url=os.environ.get(endpoint_variable) or None)


def _chunks(texts: list[str], size: int) -> Iterator[tuple[int, list[str]]]:
    for start in range(0, len(texts), size):
        yield start, texts[start : start + size]


class DynamoDBStateStore(StateStore):
    """Items in existing DynamoDB tables (`partition_key` S HASH, `sort_key` N RANGE).

    Args:
        dynamodb_client: a low-level boto3 DynamoDB client; by default one is built on first use,
            at `DYNAMODB_ENDPOINT_URL` when that is set.
        s3_client: a boto3 S3 client, likewise (`S3_ENDPOINT_URL`).
        s3_bucket: where items whose JSON is over 390,000 bytes go. Without one such an item is an
            error; `StateDataClient` fills it from `SFN_DATA_S3_BUCKET` like py2sfn.
    """

    def __init__(
        self, dynamodb_client: Any = None, s3_client: Any = None, s3_bucket: str | None = None
    ) -> None:
        self.s3_bucket = s3_bucket
        self._dynamodb = dynamodb_client
        self._s3 = s3_client
        self._lock = threading.Lock()
        self._sleep: Callable[[float], None] = time.sleep

    @property
    def dynamodb(self) -> Any:
        with self._lock:
            if self._dynamodb is None:
                self._dynamodb = _boto3_client("dynamodb", "DYNAMODB_ENDPOINT_URL")
            return self._dynamodb

    @property
    def s3(self) -> Any:
        with self._lock:
            if self._s3 is None:
                self._s3 = _boto3_client("s3", "S3_ENDPOINT_URL")
            return self._s3

    # -- the contract ----------------------------------------------------------------------------

    def put(self, table: str, partition_key: str, index: int, text: str, expires_at: int) -> None:
        item = self._item(table, partition_key, index, text, expires_at)
        self._call(table, lambda: self.dynamodb.put_item(TableName=table, Item=item))

    def put_many(self, table: str, partition_key: str, texts: list[str], expires_at: int) -> None:
        # Built and written 25 at a time, so at most one batch of offloaded bodies is in memory.
        for start, chunk in _chunks(texts, BATCH_SIZE):
            requests = [
                {"PutRequest": {"Item": self._item(table, partition_key, start + i, text, expires_at)}}
                for i, text in enumerate(chunk)
            ]
            self._write_batch(table, requests)

    def get(self, table: str, partition_key: str, index: int) -> str | None:
        response = self._call(
            table,
            lambda: self.dynamodb.get_item(
                TableName=table, Key=items.key(partition_key, index), ConsistentRead=True
            ),
        )
        raw = response.get("Item")
        return None if raw is None else self._text(raw)

    def get_all(self, table: str, partition_key: str) -> list[str]:
        raws = self._call(
            table, lambda: [raw for page in self._query(table, partition_key) for raw in page["Items"]]
        )
        return [self._text(raw) for raw in raws]

    def count(self, table: str, partition_key: str) -> int:
        return self._call(
            table, lambda: sum(page["Count"] for page in self._query(table, partition_key, Select="COUNT"))
        )

    def purge_expired(self, now: float) -> int:
        """Nothing to do: DynamoDB deletes expired items itself once TTL is enabled on `expires_at`."""
        return 0

    # -- helpers ---------------------------------------------------------------------------------

    def _item(self, table: str, partition_key: str, index: int, text: str, expires_at: int) -> dict[str, Any]:
        """The item to write; an oversized body is uploaded first, so no item names a missing object."""
        body = text.encode("utf-8")
        if not items.needs_offload(body):
            return items.item(partition_key, index, expires_at, data=text)
        if not self.s3_bucket:
            raise StateDataTooLarge(
                f"state data item {partition_key!r} index {index} in table {table!r} is {len(body):,} bytes "
                f"of JSON, over the {items.ITEM_SIZE_THRESHOLD_BYTES:,}-byte DynamoDB threshold, and no S3 "
                f"bucket is configured to offload it to: set {BUCKET_SETTING} or pass s3_bucket="
            )
        key = items.s3_key(table, partition_key, index)
        bucket = self.s3_bucket
        self._call(table, lambda: self.s3.put_object(Bucket=bucket, Key=key, Body=body), bucket=bucket)
        return items.item(partition_key, index, expires_at, offloaded_to=key)

    def _text(self, raw: dict[str, Any]) -> str:
        data, key = items.stored(raw)
        if data is not None:
            return data
        if key is None:
            where = (raw.get("partition_key"), raw.get("sort_key"))
            raise StateDataError(f"state data item {where!r} has neither data nor s3_key")
        if not self.s3_bucket:
            raise StateDataError(
                f"state data item is offloaded to S3 ({key}) but no S3 bucket is configured: "
                f"set {BUCKET_SETTING} or pass s3_bucket="
            )
        bucket = self.s3_bucket
        response = self._call("", lambda: self.s3.get_object(Bucket=bucket, Key=key), bucket=bucket)
        return response["Body"].read().decode("utf-8")

    def _query(self, table: str, partition_key: str, **extra: Any) -> Iterator[dict[str, Any]]:
        paginator = self.dynamodb.get_paginator("query")
        return paginator.paginate(
            TableName=table,
            KeyConditionExpression="partition_key = :pk",
            ExpressionAttributeValues={":pk": {"S": partition_key}},
            ConsistentRead=True,
            **extra,
        )

    def _write_batch(self, table: str, requests: list[dict[str, Any]]) -> None:
        pending: dict[str, Any] = {table: requests}
        for attempt in range(1, MAX_TRIES + 1):
            response = self._call(table, partial(self.dynamodb.batch_write_item, RequestItems=pending))
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                return
            if attempt < MAX_TRIES:
                self._sleep(delay(attempt))
        left = sum(len(v) for v in pending.values())
        raise StateDataError(
            f"DynamoDB left {left} state data items unwritten in table {table!r} after {MAX_TRIES} "
            "attempts (throttled): raise the table's write capacity or try again"
        )

    def _call(self, table: str, call: Callable[[], T], bucket: str | None = None) -> T:
        """`call()` with retries; a missing table or bucket becomes a `StateDataError` saying so."""
        from botocore.exceptions import ClientError

        try:
            return retrying(call, sleep=self._sleep)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException" and table:
                raise StateDataError(
                    f"DynamoDB table {table!r} does not exist (or is not reachable with these credentials): "
                    f"state data needs an existing table with {items.TABLE_SHAPE}"
                ) from exc
            if code == "NoSuchBucket" and bucket:
                raise StateDataError(f"S3 bucket {bucket!r} for state data does not exist") from exc
            raise


__all__ = ["BATCH_SIZE", "DynamoDBStateStore"]
