"""The contract between `StateDataClient` and where its items live.

A store keeps opaque text under `(table, partition_key, index)`, the key of py2sfn's DynamoDB items
(`index` is the numeric `sort_key`). The client does the JSON and the key naming, so a store never
interprets values and every store holds byte-for-byte what py2sfn would have written: an item put
through the SQL store can be copied into DynamoDB and read by py2sfn, and the other way round.

Expiry follows DynamoDB TTL: `expires_at` is epoch seconds, an item whose `expires_at` is in the
past may still be read until something deletes it (`purge_expired` here, DynamoDB's own TTL sweeper
there). Reads do not hide expired items, so all stores answer the same until the purge.

An ABC rather than a Protocol so a store missing a method fails when it is built, not on the first
call that needs it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class StateStore(ABC):
    """Text items keyed by table, partition key and integer index, with an expiry time each."""

    @abstractmethod
    def put(self, table: str, partition_key: str, index: int, text: str, expires_at: int) -> None:
        """Create or replace one item; durable when it returns."""

    @abstractmethod
    def put_many(self, table: str, partition_key: str, texts: list[str], expires_at: int) -> None:
        """Create or replace `texts[i]` at index `i` for every `i`, in as few round trips as the
        backend allows (one transaction, or DynamoDB batches of 25).

        Items are independent: a store without transactions may have written some of them when
        it raises, and calling it again with the same arguments completes the job.
        """

    @abstractmethod
    def get(self, table: str, partition_key: str, index: int) -> str | None:
        """The item's text, or None when there is none; reads the latest write (strongly consistent)."""

    @abstractmethod
    def get_all(self, table: str, partition_key: str) -> list[str]:
        """Every item of the partition, in ascending index order ([] when there is none)."""

    @abstractmethod
    def count(self, table: str, partition_key: str) -> int:
        """How many items the partition holds, without reading their data."""

    @abstractmethod
    def purge_expired(self, now: float) -> int:
        """Delete the items whose `expires_at` is before `now` (epoch seconds); how many went.

        A store whose backend expires items by itself (DynamoDB TTL) may return 0 and do nothing.
        """


__all__ = ["StateStore"]
