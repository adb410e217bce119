"""Codecs: what is applied to a serialized payload before it is stored (compression, encryption).

Both stream: a 50 MB result passes through them in chunks, never held twice. Encoded payloads
record the chain they went through (`json+zstd+aesgcm`), so a reader needs no configuration to
know what to undo, only the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..errors import ConfigError, PayloadError

KEY_ENV = "STEADYFLOW_ENCRYPTION_KEY"


class Codec:
    name = ""

    def encode(self, chunks: Iterable[bytes], size: int | None = None) -> Iterator[bytes]:
        """Encode a stream whose total length is `size` bytes, when known."""
        raise NotImplementedError

    def decode(self, data: bytes) -> bytes:
        raise NotImplementedError


class ZstdCodec(Codec):
    """zstd with its frame checksum on, so that a flipped bit is caught even before the digest."""

    name = "zstd"

    def __init__(self, level: int = 3) -> None:
        import zstandard  # noqa: F401 - fail at configuration time when it is missing

        self.level = level

    def encode(self, chunks: Iterable[bytes], size: int | None = None) -> Iterator[bytes]:
        import zstandard

        # The content size in the frame lets the reader allocate the output once.
        compressor = zstandard.ZstdCompressor(level=self.level, write_checksum=True).compressobj(size=size or -1)
        for chunk in chunks:
            out = compressor.compress(chunk)
            if out:
                yield out
        yield compressor.flush()

    def decode(self, data: bytes) -> bytes:
        import zstandard

        try:
            if zstandard.frame_content_size(data) >= 0:
                return zstandard.ZstdDecompressor().decompress(data)
            return zstandard.ZstdDecompressor().decompressobj().decompress(data)
        except zstandard.ZstdError as exc:
            raise PayloadError(f"corrupt zstd payload: {exc}") from exc


class EncryptionCodec(Codec):
    """AES-256-GCM: `SFE1 | key id (4) | nonce (12) | ciphertext | tag (16)`.

    The key id lets a reader with the wrong key say so instead of reporting corruption. The
    digest that names an encrypted blob is an HMAC under a key derived from the same key, so
    that equal payloads are recognisable to key holders only.
    """

    name = "aesgcm"
    MAGIC = b"SFE1"

    def __init__(self, key: bytes | str | Callable[[], bytes | str]) -> None:
        raw = key() if callable(key) else key
        self.key = parse_key(raw)
        self.key_id = hashlib.sha256(b"steadyflow key id" + self.key).digest()[:4]
        self.digest_key = hmac.new(self.key, b"steadyflow payload digest", hashlib.sha256).digest()

    def encode(self, chunks: Iterable[bytes], size: int | None = None) -> Iterator[bytes]:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        nonce = os.urandom(12)
        encryptor = Cipher(algorithms.AES(self.key), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(self.MAGIC + self.key_id)
        yield self.MAGIC + self.key_id + nonce
        for chunk in chunks:
            out = encryptor.update(chunk)
            if out:
                yield out
        yield encryptor.finalize() + encryptor.tag

    def decode(self, data: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        if len(data) < 36 or data[:4] != self.MAGIC:
            raise PayloadError("corrupt encrypted payload: bad header")
        if data[4:8] != self.key_id:
            raise PayloadError(
                f"the payload was encrypted with key id {data[4:8].hex()}, not this process's key "
                f"({self.key_id.hex()}); set {KEY_ENV} to the key that wrote it"
            )
        nonce, tag = data[8:20], data[-16:]
        decryptor = Cipher(algorithms.AES(self.key), modes.GCM(nonce, tag)).decryptor()
        decryptor.authenticate_additional_data(data[:8])
        try:
            return decryptor.update(memoryview(data)[20:-16]) + decryptor.finalize()
        except InvalidTag:
            raise PayloadError("corrupt encrypted payload: authentication failed (altered or truncated)") from None


def parse_key(raw: bytes | str | None) -> bytes:
    """A 32-byte key, given raw or as base64 text (as `steadyflow payload new-key` prints it)."""
    if raw is None or raw == "" or raw == b"":
        raise ConfigError(f"encryption needs a key: set {KEY_ENV} (32 bytes, base64)")
    if isinstance(raw, bytes) and len(raw) == 32:
        return raw
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
    try:
        key = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ConfigError(f"the encryption key must be 32 bytes, base64-encoded (got {len(key)} bytes after decoding)")
    return key


def new_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def encryption_from_env(environ: Any = None) -> EncryptionCodec | None:
    value = (environ if environ is not None else os.environ).get(KEY_ENV)
    return EncryptionCodec(value) if value else None
