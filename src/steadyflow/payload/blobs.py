"""Blob stores: where payloads too large for the history live, keyed by their content digest.

A content key makes every write idempotent (a retried activity writes the same object again) and
lets replay recognise a payload without fetching it. Stores stream writes in chunks; reads return
the stored bytes, which the caller checks against the reference's size and digest.

The history names a blob by store: `file:KEY` and `db:KEY` are resolved against this process's
configuration (the directory beside the SQLite file, the engine's database), `s3://BUCKET/KEY`
names its bucket, so any process with credentials can read it.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import PayloadError

CHUNK = 1 << 20


class BlobMissing(PayloadError):
    """A referenced blob is not in its store (deleted, or the store is not the one that wrote it)."""


class BlobStore:
    scheme = ""

    def location(self, key: str) -> str:
        """How the history names the blob `key` of this store."""
        return f"{self.scheme}:{key}"

    def key_of(self, location: str) -> str:
        return location.partition(":")[2]

    def write(self, key: str, chunks: Iterable[bytes]) -> int:
        """Store the concatenated chunks under `key`; returns the size. Same key, same bytes."""
        raise NotImplementedError

    def read(self, key: str) -> bytes:
        raise NotImplementedError


class MemoryBlobStore(BlobStore):
    """For the memory engine and tests: lives as long as the process."""

    scheme = "memory"

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}

    def write(self, key: str, chunks: Iterable[bytes]) -> int:
        data = b"".join(chunks)
        self._blobs[key] = data
        return len(data)

    def read(self, key: str) -> bytes:
        try:
            return self._blobs[key]
        except KeyError:
            raise BlobMissing(f"blob memory:{key} is not in this process's memory store") from None


class FileBlobStore(BlobStore):
    """A directory (by default `<file>.blobs` beside the SQLite file); writes are atomic renames."""

    scheme = "file"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def _path(self, key: str) -> Path:
        if not key or "/" in key or "\\" in key or key.startswith("."):
            raise PayloadError(f"invalid blob key {key!r}")
        return self.directory / key[:2] / key

    def write(self, key: str, chunks: Iterable[bytes]) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return size

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise BlobMissing(f"blob file:{key} is not in {self.directory}") from None


class DatabaseBlobStore(BlobStore):
    """The engine's own database (`steadyflow_blobs`), in 1 MiB rows so no row holds it all."""

    scheme = "db"

    def __init__(self, engine: Any = None, url: str | None = None) -> None:
        self._engine = engine
        self._url = url or getattr(engine, "source_url", None)
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:  # a child process opens its own connections
        return {"_engine": None, "_url": self._url}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def engine(self) -> Any:
        with self._lock:
            if self._engine is None:
                from ..engines import open_engine

                self._engine = open_engine(self._url)
            return self._engine

    def write(self, key: str, chunks: Iterable[bytes]) -> int:
        now = time.time()
        size = 0

        def put(conn: Any, sql: Any) -> None:
            nonlocal size
            conn.execute(sql("DELETE FROM steadyflow_blobs WHERE key = ?"), (key,))
            for seq, chunk in enumerate(_rechunk(chunks)):
                conn.execute(sql("INSERT INTO steadyflow_blobs (key, seq, created, data) VALUES (?, ?, ?, ?)"),
                             (key, seq, now, chunk))
                size += len(chunk)

        self.engine.run_data(put)
        return size

    def read(self, key: str) -> bytes:
        def get(conn: Any, sql: Any) -> list[bytes]:
            rows = conn.execute(sql("SELECT data FROM steadyflow_blobs WHERE key = ? ORDER BY seq"), (key,)).fetchall()
            return [bytes(r[0]) for r in rows]

        parts = self.engine.run_data(get, write=False)
        if not parts:
            raise BlobMissing(f"blob db:{key} is not in {getattr(self.engine, 'where', 'the database')}")
        return b"".join(parts)


class S3BlobStore(BlobStore):
    """`s3://bucket/prefix`: uploads stream through boto3's multipart transfer."""

    scheme = "s3"

    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = client

    def __getstate__(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "prefix": self.prefix, "_client": None}

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3", endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None)
        return self._client

    def _object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._object_key(key)}"

    def write(self, key: str, chunks: Iterable[bytes]) -> int:
        stream = _ChunkReader(chunks)
        self.client.upload_fileobj(stream, self.bucket, self._object_key(key))
        return stream.size

    def read(self, key: str) -> bytes:
        return self.read_object(self._object_key(key))

    def read_object(self, object_key: str) -> bytes:
        """By the full object key, as a reference names it (prefix included)."""
        return read_s3(self.client, self.bucket, object_key)


def read_s3(client: Any, bucket: str, key: str) -> bytes:
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        raise BlobMissing(f"blob s3://{bucket}/{key} does not exist") from None
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code in ("NoSuchBucket", "404", "NotFound"):
            raise BlobMissing(f"blob s3://{bucket}/{key} does not exist ({code})") from None
        raise PayloadError(f"cannot read blob s3://{bucket}/{key}: {exc}") from exc


def split_s3(url: str) -> tuple[str, str]:
    """`s3://bucket/key` -> (bucket, key)."""
    bucket, _, key = url[len("s3://"):].partition("/")
    if not bucket or not key:
        raise PayloadError(f"invalid S3 reference {url!r}")
    return bucket, key


class _ChunkReader(io.RawIOBase):
    """A readable file over an iterator of chunks, for boto3's streaming upload."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buffer))
        b[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        self.size += n
        return n


def _rechunk(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Chunks of about 1 MiB, whatever size the codecs produced."""
    pending: list[bytes] = []
    size = 0
    for chunk in chunks:
        pending.append(chunk)
        size += len(chunk)
        if size >= CHUNK:
            yield b"".join(pending)
            pending, size = [], 0
    if pending or size == 0:
        yield b"".join(pending)


def open_blob_store(url: str, engine: Any = None) -> BlobStore:
    """`file:///dir`, `s3://bucket/prefix`, `db` (the engine's database) or `memory`."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not bucket:
            raise PayloadError(f"invalid blob store URL {url!r}: no bucket")
        return S3BlobStore(bucket, prefix)
    if url.startswith("file://"):
        return FileBlobStore(url[len("file://"):])
    if url in ("db", "db:"):
        if engine is None or not hasattr(engine, "run_data"):
            raise PayloadError("blob store 'db' needs a SQLite or PostgreSQL engine")
        return DatabaseBlobStore(engine)
    if url in ("memory", "memory:"):
        return MemoryBlobStore()
    raise PayloadError(f"unknown blob store {url!r} (expected file:///DIR, s3://BUCKET/PREFIX, db or memory)")
