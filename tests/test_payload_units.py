"""Unit tests of `steadyflow.payload`: tagged JSON and msgpack round trips (hypothesis), codecs,
blob offload on every store (memory, file, SQLite, PostgreSQL, S3 on moto_server), the disk
cache, limits, pickle opt-in, simpleflow jumbo fields and bad input.

Bad input of every kind must end in a `PayloadError` with a message, never another exception.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import os
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from steadyflow.engines import open_engine
from steadyflow.errors import PayloadError, PayloadTooLarge
from steadyflow.payload import json as sfjson
from steadyflow.payload.blobs import (
    BlobMissing,
    BlobStore,
    DatabaseBlobStore,
    FileBlobStore,
    MemoryBlobStore,
    S3BlobStore,
)
from steadyflow.payload.codecs import EncryptionCodec, new_key
from steadyflow.payload.converter import INLINE, PREFIX, PayloadEncrypted, Payloads, Reference, shown
from steadyflow.payload.serializers import SAFE, get_serializer
from tests.fixtures.moto import moto_server  # noqa: F401 - session fixture

TAG = "__sf__"
MSGPACK = get_serializer("msgpack")


@dataclasses.dataclass(frozen=True)
class Point:
    x: Any
    y: Any = None


class Color(enum.Enum):
    RED = 1
    GREEN = "green"
    PAIR = (1, 2)


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


def assert_same(a: Any, b: Any, path: str = "value") -> None:
    """`a == b`, and every part of `b` has the exact type of the same part of `a`."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} came back as {type(b).__name__}"
    assert a == b, f"{path}: {a!r} came back as {b!r}"
    if isinstance(a, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        keys = {k: k for k in b}
        for k, v in a.items():
            assert_same(k, keys[k], f"{path} key {k!r}")
            assert_same(v, b[k], f"{path}[{k!r}]")
    elif isinstance(a, (set, frozenset)):
        items = {x: x for x in b}
        for x in a:
            assert_same(x, items[x], f"{path} item {x!r}")
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, float):
        assert math.copysign(1, a) == math.copysign(1, b), f"{path}: sign of {a!r} lost"
    elif isinstance(a, (dt.datetime, dt.time)):
        assert a.utcoffset() == b.utcoffset(), f"{path}: offset of {a!r} came back as {b!r}"
    elif isinstance(a, decimal.Decimal):
        assert a.as_tuple() == b.as_tuple(), f"{path}: {a!r} came back as {b!r}"


# -- strategies ---------------------------------------------------------------------------------

# Whole seconds: Python 3.11's fromisoformat reads an offset like +00:00:00.000001 as +00:00.
_zones = st.none() | st.integers(-86399, 86399).map(lambda s: dt.timezone(dt.timedelta(seconds=s)))


def values(big_ints: bool = True) -> st.SearchStrategy[Any]:
    """Every supported type, nested; `big_ints=False` keeps ints in msgpack's 64-bit range."""
    ints = st.integers(-(2**63), 2**64 - 1)
    if big_ints:
        ints = ints | st.integers(min_value=2**64) | st.integers(max_value=-(2**63) - 1)
    leaves = (
        st.none() | st.booleans() | ints | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20) | st.binary(max_size=40)
        | st.datetimes(timezones=_zones) | st.dates() | st.times(timezones=_zones) | st.timedeltas()
        | st.decimals(allow_nan=False, allow_infinity=False) | st.uuids()
        | st.sampled_from(Color) | st.sampled_from(Level)
    )
    hashable = st.recursive(
        leaves,
        lambda h: st.lists(h, max_size=3).map(tuple) | st.frozensets(h, max_size=3) | st.builds(Point, h, h),
        max_leaves=6,
    )
    return st.recursive(
        hashable,
        lambda v: (
            st.lists(v, max_size=4) | st.lists(v, max_size=3).map(tuple)
            | st.dictionaries(st.text(max_size=6) | st.just(TAG), v, max_size=4)
            | st.dictionaries(ints | st.tuples(ints, st.text(max_size=3)) | hashable, v, max_size=3)
            | st.sets(hashable, max_size=3) | st.frozensets(hashable, max_size=3) | st.builds(Point, v, v)
        ),
        max_leaves=20,
    )


FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENCRYPTION = EncryptionCodec(new_key())


@FAST
@given(values())
def test_tagged_json_round_trip(value):
    text = sfjson.dumps(value)
    decoded = sfjson.loads(text)
    assert_same(value, decoded)
    assert sfjson.dumps(decoded) == text


@FAST
@given(values(big_ints=False))
def test_msgpack_round_trip(value):
    data = MSGPACK.dumps(value)
    decoded = MSGPACK.loads(data)
    assert_same(value, decoded)
    assert MSGPACK.dumps(decoded) == data


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
@pytest.mark.parametrize("config", [
    pytest.param({}, id="plain"),
    pytest.param({"compress_threshold": 64}, id="zstd-inline"),
    pytest.param({"encryption": ENCRYPTION}, id="encrypted"),
])
def test_payloads_round_trip(config, serializer):
    payloads = Payloads(MemoryBlobStore(), inline_limit=256, **config)

    @FAST
    @given(values(big_ints=serializer == "json"))
    def check(value):
        text = payloads.dumps(value, serializer)
        event("inline envelope" if text.startswith(INLINE) else "reference" if text.startswith(PREFIX) else "JSON")
        if not text.startswith(PREFIX) or text.startswith(INLINE):
            assert len(text.encode()) <= 256, "an inline field exceeds the inline limit"
        decoded = payloads.loads(text)
        assert_same(value, decoded)
        open_text = payloads.encode_open(value, serializer)
        assert payloads.encode_open(decoded, serializer) == open_text
        assert payloads.same(text, open_text)

    check()




@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, [10**30]])
def test_msgpack_big_int(value):
    assert MSGPACK.loads(MSGPACK.dumps(value)) == value


def test_msgpack_self_reference():
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(PayloadError):
        Payloads().dumps(loop, "msgpack")


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
def test_equal_dicts_encode_the_same(serializer):
    a, b = {1: "a", "k": 2, "j": 3}, {"j": 3, "k": 2, 1: "a"}
    assert a == b
    assert Payloads.encode_open(a, serializer) == Payloads.encode_open(b, serializer)


# -- codecs -------------------------------------------------------------------------------------


def _flip(data: bytes, at: int | None = None) -> bytes:
    at = len(data) // 2 if at is None else at
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def _inline_bytes(text: str) -> tuple[str, bytes]:
    encoding, _, data = text[len(INLINE):].partition(":")
    return encoding, base64.b64decode(data)


def _inline(encoding: str, data: bytes) -> str:
    return f"{INLINE}{encoding}:{base64.b64encode(data).decode()}"


def test_zstd_only_above_the_compress_threshold():
    payloads = Payloads(inline_limit=10_000, compress_threshold=1000)
    at_threshold = "x" * 998  # 1000 bytes of JSON
    assert payloads.dumps(at_threshold) == json.dumps(at_threshold)
    above = "x" * 999
    text = payloads.dumps(above)
    assert text.startswith(f"{INLINE}json+zstd:") and len(text) < 100
    assert payloads.loads(text) == above
    assert Payloads(compression=False, inline_limit=10_000, compress_threshold=10).dumps(above) == json.dumps(above)


@pytest.mark.parametrize("value", [None, 1, "", [], {"a": 1}])
def test_encryption_envelopes_even_tiny_payloads(value):
    payloads = Payloads(encryption=ENCRYPTION)
    text = payloads.dumps(value)
    assert text.startswith(f"{INLINE}json+aesgcm:")
    assert payloads.loads(text) == value
    assert payloads.same(text, payloads.encode_open(value))
    assert payloads.dumps(value) != text  # a fresh nonce every time


@pytest.mark.parametrize("size", [10, 300_000], ids=["inline", "offloaded"])
def test_wrong_key_names_both_key_ids(size):
    store = MemoryBlobStore()
    text = Payloads(store, encryption=ENCRYPTION, inline_limit=1024).dumps(os.urandom(size))
    other = EncryptionCodec(new_key())
    with pytest.raises(PayloadError) as info:
        Payloads(store, encryption=other, inline_limit=1024).loads(text)
    assert ENCRYPTION.key_id.hex() in str(info.value) and other.key_id.hex() in str(info.value)
    assert "STEADYFLOW_ENCRYPTION_KEY" in str(info.value)


@pytest.mark.parametrize(("at", "message"), [
    (0, "corrupt encrypted payload: bad header"),
    (30, "corrupt encrypted payload: authentication failed"),
    (-1, "corrupt encrypted payload: authentication failed"),
], ids=["magic", "ciphertext", "tag"])
def test_flipped_byte_in_an_envelope(at, message):
    payloads = Payloads(encryption=ENCRYPTION)
    encoding, data = _inline_bytes(payloads.dumps("a secret of some length"))
    with pytest.raises(PayloadError, match=message):
        payloads.loads(_inline(encoding, _flip(data, at % len(data))))


@pytest.mark.parametrize("config", [
    pytest.param({}, id="zstd"),
    pytest.param({"compression": False}, id="digest"),
    pytest.param({"encryption": ENCRYPTION}, id="zstd+aesgcm"),
    pytest.param({"encryption": ENCRYPTION, "compression": False}, id="aesgcm"),
])
def test_flipped_byte_in_a_blob(config):
    store = MemoryBlobStore()
    payloads = Payloads(store, inline_limit=256, **config)
    text = payloads.dumps(os.urandom(5000))
    key = Reference.parse(text).key
    store.write(key, [_flip(store.read(key))])
    with pytest.raises(PayloadError, match="corrupt") as info:
        payloads.loads(text)
    if "encryption" in config:
        assert "authentication failed" in str(info.value)


@pytest.mark.parametrize("size", [10, 300_000], ids=["inline", "offloaded"])
def test_missing_key_and_shown(size):
    store = MemoryBlobStore()
    value = {"n": size, "blob": os.urandom(size)}
    keyed = Payloads(store, encryption=ENCRYPTION, inline_limit=1024)
    text = keyed.dumps(value)
    keyless = Payloads(store, inline_limit=1024)
    with pytest.raises(PayloadEncrypted, match="STEADYFLOW_ENCRYPTION_KEY"):
        keyless.loads(text)
    assert not keyless.same(text, keyless.encode_open(value))
    assert shown(keyless, text, limit=10**7) == "<encrypted>"
    expected = sfjson.dumps(value)
    assert shown(keyed, text, limit=10**7) == expected


# -- offload on every store ---------------------------------------------------------------------


class Backend(NamedTuple):
    store: BlobStore
    delete: Callable[[str], Any]


@pytest.fixture(params=["memory", "file", "sqlite", "postgresql", "s3"])
def backend(request, tmp_path, monkeypatch):
    """A blob store of each kind, with a way to delete a blob behind the store's back."""
    kind = request.param
    if kind == "memory":
        memory = MemoryBlobStore()
        yield Backend(memory, lambda key: memory._blobs.pop(key))
    elif kind == "file":
        directory = tmp_path / "blobs"
        yield Backend(FileBlobStore(directory), lambda key: next(directory.rglob(key)).unlink())
    elif kind in ("sqlite", "postgresql"):
        url = f"sqlite:///{tmp_path / 'sf.db'}" if kind == "sqlite" else request.getfixturevalue("pg_schema").url
        engine = open_engine(url)

        def delete(key: str) -> None:
            engine.run_data(lambda conn, sql: conn.execute(sql("DELETE FROM steadyflow_blobs WHERE key = ?"), (key,)))

        yield Backend(DatabaseBlobStore(engine), delete)
        engine.close()
    else:
        moto = request.getfixturevalue("moto_server")
        # Payloads reads S3 references with a client made from S3_ENDPOINT_URL, not the store's client.
        monkeypatch.setenv("S3_ENDPOINT_URL", moto.endpoint)
        client, bucket = moto.client("s3"), moto.bucket("blobs")
        yield Backend(S3BlobStore(bucket, "payloads", client=client),
                      lambda key: client.delete_object(Bucket=bucket, Key=f"payloads/{key}"))


@pytest.fixture
def reads(monkeypatch):
    """How many times any blob store's `read` ran (one list entry per read)."""
    seen: list[str] = []
    for cls in (MemoryBlobStore, FileBlobStore, DatabaseBlobStore, S3BlobStore):
        def read(self, key, _original=cls.read):
            seen.append(key)
            return _original(self, key)

        monkeypatch.setattr(cls, "read", read)

    def read_object(self, key, _original=S3BlobStore.read_object):  # how references are read back
        seen.append(key)
        return _original(self, key)

    monkeypatch.setattr(S3BlobStore, "read_object", read_object)
    return seen


BIG = os.urandom(2 * 1024 * 1024)


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_offload_round_trip(backend, reads, encrypted):
    payloads = Payloads(backend.store, encryption=ENCRYPTION if encrypted else None)
    text = payloads.dumps(BIG)
    assert text.startswith(PREFIX) and not text.startswith(INLINE) and len(text) < 1024
    assert Reference.parse(text).location.startswith(backend.store.scheme)
    assert payloads.dumps(BIG) == text  # content-addressed: the same value, the same reference
    assert reads == []
    assert payloads.same(text, payloads.encode_open(BIG))
    assert not payloads.same(text, payloads.encode_open(BIG[:-1] + b"!"))
    assert not payloads.same(text, payloads.encode_open(BIG, "msgpack"))
    assert reads == [], "same() must not read the blob"
    assert payloads.loads(text) == BIG
    assert len(reads) == 1


def test_offload_missing_blob(backend):
    payloads = Payloads(backend.store)
    text = payloads.dumps(BIG)
    ref = Reference.parse(text)
    backend.delete(ref.key)
    with pytest.raises(BlobMissing) as info:
        payloads.loads(text)
    assert ref.location in str(info.value)


def test_offload_corrupt_blob(backend):
    payloads = Payloads(backend.store)
    text = payloads.dumps(BIG)
    key = Reference.parse(text).key
    data = backend.store.read(key)
    backend.store.write(key, [_flip(data)])
    assert len(backend.store.read(key)) == len(data)
    with pytest.raises(PayloadError, match="corrupt"):
        payloads.loads(text)


# -- disk cache ---------------------------------------------------------------------------------



@pytest.mark.parametrize("backend", ["sqlite", "s3"], indirect=True)
def test_disk_cache_spares_the_store(backend, reads, tmp_path):
    cache_dir = str(tmp_path / "cache")
    payloads = Payloads(backend.store, inline_limit=256, cache_dir=cache_dir)
    value = os.urandom(100_000)
    text = payloads.dumps(value)
    assert payloads.loads(text) == value
    assert len(reads) == 1
    assert payloads.loads(text) == value
    assert Payloads(backend.store, cache_dir=cache_dir).loads(text) == value  # another process
    assert len(reads) == 1


@pytest.mark.parametrize("backend", ["sqlite", "s3"], indirect=True)
@pytest.mark.parametrize("config", [
    pytest.param({"compression": False}, id="digest"),
    pytest.param({}, id="zstd"),
    pytest.param({"encryption": ENCRYPTION}, id="aesgcm"),
])
def test_disk_cache_corrupt_entry_is_evicted(backend, reads, tmp_path, config):
    import diskcache

    cache_dir = str(tmp_path / "cache")
    payloads = Payloads(backend.store, inline_limit=256, cache_dir=cache_dir, **config)
    value = os.urandom(100_000)
    text = payloads.dumps(value)
    assert payloads.loads(text) == value
    location = Reference.parse(text).location
    with diskcache.Cache(cache_dir) as cache:
        assert location in cache
        cache[location] = _flip(cache[location])
    with pytest.raises(PayloadError, match="corrupt"):
        payloads.loads(text)
    with diskcache.Cache(cache_dir) as cache:
        assert location not in cache
    assert payloads.loads(text) == value
    assert len(reads) == 2


# -- limits and pickle --------------------------------------------------------------------------


class RecordingStore(MemoryBlobStore):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, key, chunks):
        self.writes.append(key)
        return super().write(key, chunks)


@pytest.mark.parametrize("serializer", ["json", "msgpack", "pickle"])
def test_max_size_refuses_before_writing(serializer):
    store = RecordingStore()
    payloads = Payloads(store, max_size=1000, inline_limit=256)
    with pytest.raises(PayloadTooLarge, match="exceeds the maximum of 1,000"):
        payloads.dumps("x" * 2000, serializer)
    assert store.writes == []
    assert payloads.loads(payloads.dumps("x" * 900, serializer), SAFE | {"pickle"}) == "x" * 900


@pytest.mark.parametrize("size", [10, 100_000], ids=["inline", "offloaded"])
def test_pickle_needs_opt_in(size):
    payloads = Payloads(inline_limit=1024)
    value = {"point": Point(1, os.urandom(size)), "cls": Color}
    text = payloads.dumps(value, "pickle")
    with pytest.raises(PayloadError, match="serializer='pickle'") as info:
        payloads.loads(text, receiver="activity pick")
    assert "activity pick" in str(info.value)
    assert payloads.loads(text, allowed=SAFE | {"pickle"}) == value
    assert shown(payloads, text, limit=10**6).startswith("<pickled payload:")


# -- simpleflow jumbo fields --------------------------------------------------------------------


@pytest.fixture
def s3(moto_server, monkeypatch):  # noqa: F811 - the session fixture imported above
    monkeypatch.setenv("S3_ENDPOINT_URL", moto_server.endpoint)
    return moto_server.client("s3"), moto_server.bucket("jumbo")


def test_simpleflow_jumbo_field(s3):
    client, bucket = s3
    key = f"jumbo/{uuid.uuid4()}"
    client.put_object(Bucket=bucket, Key=key, Body=json.dumps("x" * 40000).encode())
    field = f"simpleflow+s3://{bucket}/{key} 40002"
    payloads = Payloads()
    assert payloads.loads(field) == "x" * 40000
    assert payloads.loads_or_raw(field) == "x" * 40000
    assert shown(payloads, field, limit=10**6) == json.dumps("x" * 40000)
    with pytest.raises(BlobMissing, match=f"s3://{bucket}/jumbo/missing"):
        payloads.loads(f"simpleflow+s3://{bucket}/jumbo/missing 40002")


# -- bad input ----------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


BAD = [
    ("steadyflow+memory:abc", "malformed payload reference"),
    ("steadyflow+memory:abc 12 sha256:ab", "malformed payload reference"),
    ("steadyflow+memory:abc twelve sha256:ab json", "malformed payload reference"),
    ("steadyflow+memory:abc 12 nodigest json", "malformed payload reference"),
    ("steadyflow+nowhere:abc 12 sha256:ab json", "no 'nowhere' blob store configured"),
    ("steadyflow+s3:// 12 sha256:ab json", "invalid S3 reference"),
    ("steadyflow+memory:abc 12 sha256:ab json", "blob memory:abc is not in"),
    ("steadyflow+inline:json", "malformed inline payload"),
    ("steadyflow+inline:json:***", "malformed inline payload"),
    (f"steadyflow+inline:json+rot13:{_b64(b'1')}", "unknown codec 'rot13'"),
    (f"steadyflow+inline:json+zstd:{_b64(b'not zstd at all')}", "corrupt zstd payload"),
    (f"steadyflow+inline:json+aesgcm:{_b64(b'short')}", "is encrypted; set STEADYFLOW_ENCRYPTION_KEY"),
    (f"steadyflow+inline:yaml:{_b64(b'a: 1')}", "format 'yaml', which it does not accept"),
    ("steadyflow+inline:msgpack:" + _b64(b"\xc1"), "invalid msgpack payload"),
    ("steadyflow+inline:msgpack:" + _b64(b"\x92\x01"), "invalid msgpack payload"),
    (f"steadyflow+inline:json:{_b64(b'{')}", "invalid JSON"),
    ("steadyflow+inline:json:" + _b64(b"\xff"), "UTF-8"),
    ("simpleflow+s3://bucket-only", "invalid S3 reference"),
    ("{", "invalid JSON"),
    ("[1,", "invalid JSON"),
    ("[" * 100_000, "invalid JSON"),
    ('{"__sf__":"nope","v":1}', "unknown tagged type 'nope'"),
    ('{"__sf__":"dataclass","cls":"not_imported_xyz:Thing","v":{}}',
     "module not_imported_xyz is not imported in this process"),
    (f'{{"__sf__":"dataclass","cls":"{__name__}:Missing","v":{{}}}}', f"which module {__name__} does not define"),
    ('{"__sf__":"dataclass","cls":"builtins:dict","v":{}}', "builtins:dict is not a dataclass"),
    (f'{{"__sf__":"dataclass","cls":"{__name__}:Point","v":{{}}}}', "malformed tagged value of type 'dataclass'"),
    (f'{{"__sf__":"enum","cls":"{__name__}:Color","v":99}}', "malformed tagged value of type 'enum'"),
    ('{"__sf__":"tuple","v":1}', "malformed tagged value of type 'tuple'"),
    ('{"__sf__":"date","v":"2020-13-01"}', "malformed tagged value of type 'date'"),
    ('{"__sf__":"datetime","v":5}', "malformed tagged value of type 'datetime'"),
    ('{"__sf__":"bytes","v":"**"}', "malformed tagged value of type 'bytes'"),
    ('{"__sf__":"dict","v":[[{"a":1},2]]}', "malformed tagged value of type 'dict'"),
    ('{"__sf__":"set","v":[{"a":1}]}', "malformed tagged value of type 'set'"),
    (f"steadyflow+inline:msgpack:{_b64(MSGPACK._msgpack.packb({TAG: 'tuple', 'v': 1}))}",
     "malformed tagged value of type 'tuple'"),
]


# Bad tagged values whose constructors raise (InvalidOperation, AttributeError, OverflowError,
# IndexError) and a size that only looks like a number: each must still be a PayloadError.
BAD_BUGS = [
    pytest.param(text, "", id=text[:40]) for text in (
        '{"__sf__":"decimal","v":"abc"}',
        '{"__sf__":"uuid","v":5}',
        '{"__sf__":"timedelta","v":[1e300,0,0]}',
        '{"__sf__":"timedelta","v":[]}',
        '{"__sf__":"timedelta","v":"x"}',
        '{"__sf__":"stored_item","v":[]}',
        '{"__sf__":"enum","cls":5,"v":1}',
        "steadyflow+memory:abc \u00b2 sha256:ab json",
    )
]


@pytest.mark.parametrize(("text", "message"), [*BAD, *BAD_BUGS])
def test_bad_input_is_a_payload_error(text, message):
    payloads = Payloads()
    with pytest.raises(PayloadError) as info:
        payloads.loads(text)
    assert message in str(info.value)
    if text.startswith(PREFIX):
        assert payloads.same(text, '"x"') is False


@pytest.mark.parametrize("text", [
    *(text for text, _ in BAD if text.startswith(PREFIX) and "yaml" not in text),
    next(text for text, _ in BAD if "yaml" in text),
])
def test_shown_describes_unreadable_fields(text):
    assert shown(Payloads(), text).startswith("<")


def test_enum_tag_refuses_a_class_that_is_not_an_enum():
    with pytest.raises(PayloadError):
        sfjson.loads('{"__sf__":"enum","cls":"builtins:eval","v":"6*7"}')


def test_file_store_refuses_keys_outside_its_directory(tmp_path):
    payloads = Payloads(FileBlobStore(tmp_path / "blobs"))
    for key in ("../../etc/passwd", ".hidden", "a\\b"):
        with pytest.raises(PayloadError, match="invalid blob key"):
            payloads.loads(f"steadyflow+file:{key} 12 sha256:ab json")


def test_unencodable_values_are_payload_errors():
    loop: list[Any] = []
    loop.append(loop)
    for value, serializer in [(object(), "json"), (loop, "json"), ({1: object()}, "json"),
                              (object(), "msgpack"), ({1: object()}, "msgpack")]:
        with pytest.raises(PayloadError):
            Payloads().dumps(value, serializer)
    with pytest.raises(PayloadError, match="Object of type object is not JSON serializable"):
        sfjson.dumps(object())
    with pytest.raises(PayloadError, match="already encoded"):
        Payloads().seal(f"{INLINE}json+zstd:AAAA")
