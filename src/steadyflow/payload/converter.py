"""`Payloads`: turns values into the text a history field holds, and back, at any size.

A field holds one of:

* plain JSON (small JSON payloads, no codecs): exactly what simpleflow writes;
* `steadyflow+inline:ENCODING:BASE64`: a payload that went through codecs (or is not JSON) and
  still fits the inline limit;
* a reference `steadyflow+LOCATION SIZE DIGEST ENCODING` to a blob store, for anything larger
  (simpleflow's `simpleflow+s3://bucket/key SIZE` idea, plus a digest and the codec chain).

Replay never needs to fetch a blob to recognise it: `same()` compares the digest in a reference
with the digest of what the code asks for now. simpleflow's jumbo fields and pyswf's `s3://`
fields are read too, so histories written by them keep replaying.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, PayloadError, PayloadTooLarge, SteadyflowError
from . import json as sfjson
from .blobs import (
    CHUNK,
    BlobStore,
    DatabaseBlobStore,
    FileBlobStore,
    MemoryBlobStore,
    S3BlobStore,
    open_blob_store,
    split_s3,
)
from .codecs import KEY_ENV, Codec, EncryptionCodec, ZstdCodec
from .serializers import SAFE, check_allowed, get_serializer

PREFIX = "steadyflow+"
INLINE = "steadyflow+inline:"
SIMPLEFLOW_S3 = "simpleflow+s3://"
DEFAULT_INLINE_LIMIT = 32 * 1024
DEFAULT_MAX_SIZE = 2 * 1024**3
DEFAULT_CACHE_SIZE = 512 * 1024**2


#: A serialized payload: text, bytes, or canonical JSON in pieces (see `sfjson.Pieces`).
Raw = str | bytes | sfjson.Pieces


class PayloadEncrypted(PayloadError):
    """The payload is encrypted and this process has no key for it (the CLI shows "encrypted")."""


@dataclass(frozen=True)
class Reference:
    location: str
    size: int
    digest: str
    encoding: str

    def __str__(self) -> str:
        return f"{PREFIX}{self.location} {self.size} {self.digest} {self.encoding}"

    @classmethod
    def parse(cls, text: str) -> Reference:
        parts = text[len(PREFIX):].split(" ")
        if len(parts) != 4 or not (parts[1].isascii() and parts[1].isdigit()) or ":" not in parts[2]:
            raise PayloadError(f"malformed payload reference {text[:200]!r}")
        return cls(parts[0], int(parts[1]), parts[2], parts[3])

    @property
    def key(self) -> str:
        return self.digest.partition(":")[2]


class Payloads:
    """Serializers, codecs, a blob store and limits, as one object every component shares.

    `inline_limit`: the largest field kept in the history (32 KiB, SWF's limit).
    `compress_threshold`: payloads above it go through zstd (default: the inline limit, so small
    payloads stay readable JSON). `max_size`: refused before anything is written (2 GiB).
    `encryption`: an `EncryptionCodec`; every payload written is then encrypted, however small.
    `cache_dir`: where blobs read from a remote store (database, S3) are kept (LRU, `cache_size`).
    """

    def __init__(
        self,
        store: BlobStore | None = None,
        *,
        compression: bool = True,
        encryption: EncryptionCodec | None = None,
        inline_limit: int = DEFAULT_INLINE_LIMIT,
        compress_threshold: int | None = None,
        max_size: int = DEFAULT_MAX_SIZE,
        cache_dir: str | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        engine: Any = None,
    ) -> None:
        self.store = store if store is not None else MemoryBlobStore()
        self.compression = ZstdCodec() if compression else None
        self.encryption = encryption
        self.inline_limit = inline_limit
        self.compress_threshold = inline_limit if compress_threshold is None else compress_threshold
        self.max_size = max_size
        self.cache_dir = cache_dir
        self.cache_size = cache_size
        self._engine = engine
        self._cache: Any = None
        self._stores: dict[str, BlobStore] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_engine=None, _cache=None, _stores={})
        return state

    @classmethod
    def for_engine(cls, engine: Any, environ: Mapping[str, str] | None = None) -> Payloads:
        """The configuration from `STEADYFLOW_*` variables, with the engine's default blob store:
        a directory beside a SQLite file, the PostgreSQL database itself, memory for `memory://`."""
        env = os.environ if environ is None else environ
        where = env.get("STEADYFLOW_BLOB_STORE")
        if where:
            store = open_blob_store(where, engine)
        elif hasattr(engine, "path"):
            store = FileBlobStore(f"{engine.path}.blobs")
        elif hasattr(engine, "run_data"):
            store = DatabaseBlobStore(engine)
        else:
            store = MemoryBlobStore()
        key = env.get(KEY_ENV)
        cache = env.get("STEADYFLOW_BLOB_CACHE", "")
        return cls(
            store,
            compression=env.get("STEADYFLOW_COMPRESSION", "zstd").lower() not in ("none", "off", "0"),
            encryption=EncryptionCodec(key) if key else None,
            inline_limit=_int_env(env, "STEADYFLOW_INLINE_LIMIT", DEFAULT_INLINE_LIMIT),
            max_size=_int_env(env, "STEADYFLOW_MAX_PAYLOAD", DEFAULT_MAX_SIZE),
            cache_dir=None if cache.lower() in ("off", "none", "0") else (cache or _default_cache_dir()),
            cache_size=_int_env(env, "STEADYFLOW_BLOB_CACHE_SIZE", DEFAULT_CACHE_SIZE),
            engine=engine,
        )

    # -- writing ---------------------------------------------------------------------------------

    def dumps(self, value: Any, serializer: str | None = None, store: Any = None) -> str:
        """`value` as the text of a history field (sealed: codecs applied, offloaded when large)."""
        if not serializer or serializer == "json":
            return self._seal("json", sfjson.pieces(value), store, None)
        return self.seal(self.encode_open(value, serializer), store)  # type: ignore[return-value]

    @staticmethod
    def encode_open(value: Any, serializer: str | None = None) -> str:
        """The canonical form replay compares: JSON text, or an uncoded inline envelope."""
        if not serializer or serializer == "json":
            return sfjson.dumps(value)
        ser = get_serializer(serializer)
        return f"{INLINE}{ser.name}:{base64.b64encode(ser.dumps(value)).decode('ascii')}"

    def seal(self, text: str | None, store: Any = None) -> str | None:
        """Apply codecs and the inline limit to an open form (see `encode_open`)."""
        if text is None:
            return None
        serializer, raw = _open_form(text)
        return self._seal(serializer, raw, store, text)

    def _seal(self, serializer: str, raw: Raw, store: Any, text: str | None) -> str:
        size = _size(raw)
        if size > self.max_size:
            raise PayloadTooLarge(
                f"payload of {size:,} bytes exceeds the maximum of {self.max_size:,} (STEADYFLOW_MAX_PAYLOAD)"
            )
        codecs: list[Codec] = []
        if self.compression is not None and size > self.compress_threshold:
            codecs.append(self.compression)
        if self.encryption is not None:
            codecs.append(self.encryption)
        if serializer == "json" and not codecs and size <= self.inline_limit:
            return text if text is not None else str(raw)
        encoding = "+".join([serializer] + [c.name for c in codecs])
        stream: Iterator[bytes] = _chunks(raw)
        for codec in codecs:
            stream = codec.encode(stream, size if codec is codecs[0] else None)
        head: list[bytes] = []
        total = 0
        budget = self.inline_limit - len(INLINE) - len(encoding) - 1
        for chunk in stream:
            head.append(chunk)
            total += len(chunk)
            if 4 * ((total + 2) // 3) > budget:
                break
        else:
            return f"{INLINE}{encoding}:{base64.b64encode(b''.join(head)).decode('ascii')}"
        digest = self._digest(raw)
        target = self._target(store)
        key = digest.partition(":")[2]
        written = target.write(key, itertools.chain(head, stream))
        return str(Reference(target.location(key), written, digest, encoding))

    def _digest(self, raw: Raw) -> str:
        if self.encryption is not None:
            mac = hmac.new(self.encryption.digest_key, digestmod=hashlib.sha256)
            for chunk in _chunks(raw):
                mac.update(chunk)
            return f"hmac-sha256:{mac.hexdigest()}"
        sha = hashlib.sha256()
        for chunk in _chunks(raw):
            sha.update(chunk)
        return f"sha256:{sha.hexdigest()}"

    def _target(self, store: Any) -> BlobStore:
        if store is None:
            return self.store
        if isinstance(store, BlobStore):
            return store
        if store not in self._stores:
            self._stores[store] = open_blob_store(str(store), self._engine)
        return self._stores[store]

    # -- reading ---------------------------------------------------------------------------------

    def loads(self, text: str | None, allowed: frozenset[str] = SAFE, receiver: str = "this process") -> Any:
        """The value a field holds, fetching and checking blobs; raises `PayloadError` with the
        reference when a blob is missing or corrupt, and refuses formats `allowed` lacks."""
        if text is None or text == "":
            return None
        if text.startswith(PREFIX):
            encoding, plain = self.open_bytes(text)
            serializer = encoding.partition("+")[0]
            check_allowed(serializer, allowed, receiver)
            if serializer != "json":
                return get_serializer(serializer).loads(plain)
            # Decode to text and let go of the bytes before parsing: a large payload is then
            # held twice at most (text, value), never three times.
            try:
                decoded = plain.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise PayloadError(f"payload {text[:80]} is not UTF-8 JSON: {exc}") from None
            del plain
            return sfjson.loads(decoded)
        if text.startswith(SIMPLEFLOW_S3) or (text.startswith("s3://") and " " not in text):
            return sfjson.loads(self._fetch_s3(text.split(" ")[0].removeprefix("simpleflow+")))
        return sfjson.loads(text)

    def loads_or_raw(self, text: str | None, allowed: frozenset[str] = SAFE, receiver: str = "this process") -> Any:
        """As `loads`, keeping text that is not JSON as it is (simpleflow's failure details)."""
        if text is None or text == "":
            return None
        if text.startswith((PREFIX, SIMPLEFLOW_S3, "s3://")):
            return self.loads(text, allowed, receiver)
        return sfjson.loads_or_raw(text)

    def open_bytes(self, text: str) -> tuple[str, bytes]:
        """(encoding, serialized bytes) of an envelope or reference, codecs undone and checked."""
        if text.startswith(INLINE):
            encoding, sep, data = text[len(INLINE):].partition(":")
            if not sep:
                raise PayloadError(f"malformed inline payload {text[:100]!r}")
            try:
                blob = base64.b64decode(data, validate=True)
            except ValueError as exc:
                raise PayloadError(f"malformed inline payload: {exc}") from None
            return encoding, self._undo(encoding, blob, text[:80])
        ref = Reference.parse(text)
        blob = self._fetch(ref)
        if len(blob) != ref.size:
            self._evict(ref.location)
            raise PayloadError(f"blob {ref.location} is corrupt: {len(blob)} bytes, the reference says {ref.size}")
        try:
            plain = self._undo(ref.encoding, blob, ref.location)
        except PayloadEncrypted:
            raise
        except PayloadError as exc:  # a codec found it damaged: the cached copy must go too
            self._evict(ref.location)
            raise PayloadError(f"blob {ref.location} is corrupt: {exc}") from None
        del blob
        if self._digest_matches(ref.digest, plain) is False:
            self._evict(ref.location)
            raise PayloadError(f"blob {ref.location} is corrupt: its content does not match digest {ref.digest}")
        return ref.encoding, plain

    def _undo(self, encoding: str, data: bytes, where: str) -> bytes:
        for name in reversed(encoding.split("+")[1:]):
            if name == "zstd":
                data = (self.compression or ZstdCodec()).decode(data)
            elif name == "aesgcm":
                if self.encryption is None:
                    raise PayloadEncrypted(f"payload {where} is encrypted; set {KEY_ENV} to read it")
                data = self.encryption.decode(data)
            else:
                raise PayloadError(f"payload {where} uses unknown codec {name!r}")
        return data

    def _digest_matches(self, digest: str, plain: bytes) -> bool | None:
        alg, _, expected = digest.partition(":")
        if alg == "sha256":
            return hashlib.sha256(plain).hexdigest() == expected
        if alg == "hmac-sha256" and self.encryption is not None:
            return hmac.compare_digest(hmac.new(self.encryption.digest_key, plain, hashlib.sha256).hexdigest(), expected)
        return None  # cannot check (no key): the AEAD tag already did

    def _store_for(self, location: str) -> tuple[BlobStore, str]:
        scheme = "s3" if location.startswith("s3://") else location.partition(":")[0]
        if scheme == "s3":
            bucket, key = split_s3(location)
            configured = [s for s in [self.store, *self._stores.values()] if isinstance(s, S3BlobStore)]
            store = next((s for s in configured if s.bucket == bucket), None) or self._stores.get(f"s3://{bucket}")
            if store is None:
                store = self._stores[f"s3://{bucket}"] = S3BlobStore(bucket)
            return store, key
        if self.store.scheme == scheme:
            return self.store, location.partition(":")[2]
        for store in self._stores.values():
            if store.scheme == scheme:
                return store, location.partition(":")[2]
        if scheme == "db" and self._engine is not None and hasattr(self._engine, "run_data"):
            store = self._stores["db"] = DatabaseBlobStore(self._engine)
            return store, location.partition(":")[2]
        raise PayloadError(f"blob {location}: this process has no {scheme!r} blob store configured (STEADYFLOW_BLOB_STORE)")

    def _fetch(self, ref: Reference) -> bytes:
        store, key = self._store_for(ref.location)
        if store.scheme in ("file", "memory"):  # already local
            return store.read(key)
        cache = self._disk_cache()
        if cache is not None:
            cached = cache.get(ref.location)
            if cached is not None:
                return cached
        data = store.read_object(key) if isinstance(store, S3BlobStore) else store.read(key)
        if cache is not None:
            cache.set(ref.location, data)
        return data

    def _fetch_s3(self, url: str) -> bytes:
        store, key = self._store_for(url)
        cache = self._disk_cache()
        data = cache.get(url) if cache is not None else None
        if data is None:
            data = store.read_object(key)  # type: ignore[attr-defined]
            if cache is not None:
                cache.set(url, data)
        return data

    def _disk_cache(self) -> Any:
        if self._cache is None and self.cache_dir:
            import diskcache

            self._cache = diskcache.Cache(self.cache_dir, size_limit=self.cache_size,
                                          eviction_policy="least-recently-used")
        return self._cache

    def _evict(self, location: str) -> None:
        cache = self._disk_cache()
        if cache is not None:
            cache.delete(location)

    # -- comparing and showing -------------------------------------------------------------------

    def same(self, recorded: str | None, text: str | None) -> bool:
        """Does a recorded field hold the open form `text`? (Replay's check, without fetching.)"""
        if recorded == text:
            return True
        if recorded is None or text is None or not recorded.startswith(PREFIX):
            return False
        serializer, raw = _open_form(text)
        if recorded.startswith(INLINE):
            try:
                encoding, plain = self.open_bytes(recorded)
            except PayloadError:
                return False
            return encoding.partition("+")[0] == serializer and plain == _as_bytes(raw)
        try:
            ref = Reference.parse(recorded)
        except PayloadError:
            return False
        if ref.encoding.partition("+")[0] != serializer:
            return False
        if ref.digest.startswith("hmac-sha256:") and self.encryption is None:
            return False
        if ref.digest.startswith("sha256:") and self.encryption is not None:
            return hashlib.sha256(_as_bytes(raw)).hexdigest() == ref.key
        return self._digest(raw) == ref.digest


#: Decoded payloads larger than this are described, not printed, by `shown`.
SHOW_LIMIT = 64 * 1024


def shown(payloads: Payloads, text: str | None, limit: int = SHOW_LIMIT) -> str | None:
    """A field as people should see it (CLI, dashboard): JSON text when it can be read and is not
    huge, else a short `<...>` description (encrypted without the key, offloaded, pickled)."""
    if text is None or not text.startswith((PREFIX, SIMPLEFLOW_S3)):
        return text
    if text.startswith(PREFIX) and not text.startswith(INLINE):
        try:
            ref = Reference.parse(text)
        except PayloadError as exc:
            return f"<unreadable payload: {exc}>"
        if ref.size > limit:
            return f"<offloaded: {ref.size:,} bytes ({ref.encoding}) at {ref.location}>"
    try:
        encoding, plain = payloads.open_bytes(text) if text.startswith(PREFIX) else ("json", b"")
        serializer = encoding.partition("+")[0]
        if serializer == "pickle":
            return f"<pickled payload: {len(plain):,} bytes>"
        value = payloads.loads(text) if serializer == "json" and not plain else get_serializer(serializer).loads(plain)
    except PayloadEncrypted:
        return "<encrypted>"
    except SteadyflowError as exc:
        return f"<unreadable payload: {exc}>"
    out = sfjson.dumps(value)
    return out if len(out) <= limit else f"<{len(out):,} bytes of JSON>"


_default: Payloads | None = None


def default_payloads() -> Payloads:
    """For code running without an engine (a replay of a saved history): memory blobs, env key."""
    global _default
    if _default is None:
        _default = Payloads.for_engine(None)
    return _default


def _open_form(text: str) -> tuple[str, str | bytes]:
    if text.startswith(INLINE):
        serializer, sep, data = text[len(INLINE):].partition(":")
        if not sep or "+" in serializer:
            raise PayloadError("an already encoded payload cannot be encoded again")
        return serializer, base64.b64decode(data)
    return "json", text


def _chunks(raw: Raw) -> Iterator[bytes]:
    if isinstance(raw, sfjson.Pieces):
        for piece in raw:
            yield from _chunks(piece)
        return
    if isinstance(raw, bytes):
        for i in range(0, len(raw), CHUNK):
            yield raw[i:i + CHUNK]
        if not raw:
            yield b""
        return
    for i in range(0, len(raw), CHUNK):
        yield raw[i:i + CHUNK].encode("utf-8")


def _size(raw: Raw) -> int:
    if isinstance(raw, sfjson.Pieces):
        return sum(len(piece) for piece in raw)  # ASCII: characters are bytes
    if isinstance(raw, bytes) or raw.isascii():
        return len(raw)
    return sum(len(c) for c in _chunks(raw))


def _as_bytes(raw: Raw) -> bytes:
    if isinstance(raw, sfjson.Pieces):
        return str(raw).encode("ascii")
    return raw if isinstance(raw, bytes) else raw.encode("utf-8")


def _int_env(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number of bytes, not {value!r}") from None


def _default_cache_dir() -> str:
    return os.path.join(tempfile.gettempdir(), f"steadyflow-cache-{os.getuid()}", "blobs")
