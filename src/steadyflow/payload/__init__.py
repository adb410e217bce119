"""Payloads: how values become history fields, at any size (see docs/payloads.md).

`Payloads` is the one object that encodes and decodes; every engine has one (`engine.payloads`),
built from `STEADYFLOW_*` variables, or assign your own.
"""

from .blobs import BlobMissing, BlobStore, DatabaseBlobStore, FileBlobStore, MemoryBlobStore, S3BlobStore
from .codecs import EncryptionCodec, ZstdCodec, new_key
from .converter import PayloadEncrypted, Payloads, Reference
from .stored import StoredItem

__all__ = [
    "BlobMissing",
    "BlobStore",
    "DatabaseBlobStore",
    "EncryptionCodec",
    "FileBlobStore",
    "MemoryBlobStore",
    "PayloadEncrypted",
    "Payloads",
    "Reference",
    "S3BlobStore",
    "StoredItem",
    "ZstdCodec",
    "new_key",
]
