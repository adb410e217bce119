"""Where a step's "done" record lives: the engine's blob store, or an S3 bucket as simpleflow
keeps it.

On S3 the layout is simpleflow's (one object `<path><step name>` holding the run that did it,
listed by prefix), so a migrated workflow sees the steps its simpleflow executions completed. The
blob stores have no listing: each step has its own blob, named by a digest of its path and name,
and an index blob per path lists the names for `get_steps_done()`; the per-step blob is the truth,
so a lost index update (two executions of one workflow id marking at once) never hides a step
from the check that decides whether it runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from ..payload.blobs import BlobMissing, BlobStore


class StepStore:
    """Records of completed steps under a path (`<workflow id>/steps/` by default)."""

    def done(self, path: str, step_name: str | None = None) -> list[str]:
        """The steps done under `path`: all of them, or just `step_name` if it is."""
        raise NotImplementedError

    def mark(self, path: str, step_name: str, content: dict[str, Any]) -> None:
        raise NotImplementedError


class BlobStepStore(StepStore):
    """Records in a steadyflow blob store (memory, a directory, the database, or S3 by digest)."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    @staticmethod
    def _key(*parts: str) -> str:
        return "step-" + hashlib.sha256("\0".join(parts).encode()).hexdigest()

    def _read(self, key: str) -> bytes | None:
        try:
            return self.blobs.read(key)
        except BlobMissing:
            return None

    def done(self, path: str, step_name: str | None = None) -> list[str]:
        if step_name is not None:
            return [step_name] if self._read(self._key(path, step_name)) is not None else []
        index = self._read(self._key(path, ""))
        names = json.loads(index) if index else []
        return [n for n in names if self._read(self._key(path, n)) is not None]

    def mark(self, path: str, step_name: str, content: dict[str, Any]) -> None:
        self.blobs.write(self._key(path, step_name), [json.dumps(content).encode()])
        index_key = self._key(path, "")
        index = self._read(index_key)
        names = json.loads(index) if index else []
        if step_name not in names:
            self.blobs.write(index_key, [json.dumps([*names, step_name]).encode()])


class S3StepStore(StepStore):
    """simpleflow's layout: object `<path><step name>` in `bucket`."""

    def __init__(self, bucket: str, client: Any = None) -> None:
        self.bucket = bucket
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3", endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None)
        return self._client

    @staticmethod
    def _prefix(path: str) -> str:
        return path if not path or path.endswith("/") else path + "/"

    def done(self, path: str, step_name: str | None = None) -> list[str]:
        prefix = self._prefix(path)
        names: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            names += [obj["Key"][len(prefix):] for obj in page.get("Contents", [])]
        return [n for n in names if step_name is None or n == step_name]

    def mark(self, path: str, step_name: str, content: dict[str, Any]) -> None:
        key = self._prefix(path) + step_name
        self.client.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(content).encode())


def bucket_name(bucket: str) -> str:
    """simpleflow's step bucket may carry a host (`s3-eu-west-1.amazonaws.com/my_bucket`) or a
    scheme (`s3://my_bucket`): the bucket is its last part."""
    return bucket.removeprefix("s3://").strip("/").rsplit("/", 1)[-1]


def open_step_store(bucket: str | None, blobs: BlobStore | None) -> StepStore:
    """An S3 bucket when one is named, else the given blob store (the engine's)."""
    if bucket:
        return S3StepStore(bucket_name(bucket))
    if blobs is None:
        raise RuntimeError("no blob store to keep steps in: run the step activities in a steadyflow worker")
    return BlobStepStore(blobs)


__all__ = ["BlobStepStore", "S3StepStore", "StepStore", "bucket_name", "open_step_store"]
