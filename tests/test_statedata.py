"""State data: py2sfn-task-tools' `StateDataClient` on every store (memory, SQLite, PostgreSQL,
DynamoDB+S3 on moto_server), and the DynamoDB wire format py2sfn reads and writes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import pytest

from steadyflow.engines import open_engine
from steadyflow.errors import ConfigError, PayloadTooLarge, SteadyflowError
from steadyflow.statedata import (
    DynamoDBStateStore,
    MemoryStateStore,
    NoItemFound,
    SQLStateStore,
    StateDataClient,
    StateDataError,
    StateDataTooLarge,
    StateStore,
    open_state_store,
)
from steadyflow.statedata.backoff import retrying
from steadyflow.statedata.dynamodb_items import ITEM_SIZE_THRESHOLD_BYTES
from tests.fixtures.moto import moto_server  # noqa: F401 - session fixture

TABLE = "interop-state-data"
OTHER_TABLE = "other-project-state-data"
NAMESPACE = "exec-0001"
DAY = 86_400
STORES = ["memory", "sqlite", "postgres", "dynamodb"]


class Backend(NamedTuple):
    kind: str
    store: StateStore
    table: str
    other_table: str
    engine: Any = None
    moto: Any = None
    bucket: str | None = None

    def client(self, **kwargs: Any) -> StateDataClient:
        return StateDataClient(self.table, NAMESPACE, store=self.store, **kwargs)


@pytest.fixture(params=STORES)
def backend(request, tmp_path) -> Iterator[Backend]:
    kind = request.param
    if kind == "memory":
        yield Backend(kind, MemoryStateStore(), TABLE, OTHER_TABLE)
    elif kind in ("sqlite", "postgres"):
        url = (
            f"sqlite:///{tmp_path / 'x.db'}" if kind == "sqlite" else request.getfixturevalue("pg_schema").url
        )
        engine = open_engine(url)
        try:
            yield Backend(kind, SQLStateStore(engine), TABLE, OTHER_TABLE, engine=engine)
        finally:
            engine.close()
    else:
        moto = request.getfixturevalue("moto_server")
        bucket = moto.bucket()
        store = DynamoDBStateStore(moto.client("dynamodb"), moto.client("s3"), bucket)
        yield Backend(kind, store, moto.state_data_table(), moto.state_data_table(), moto=moto, bucket=bucket)


@pytest.fixture
def dynamo(request) -> Backend:
    moto = request.getfixturevalue("moto_server")
    bucket = moto.bucket()
    store = DynamoDBStateStore(moto.client("dynamodb"), moto.client("s3"), bucket)
    return Backend(
        "dynamodb", store, moto.state_data_table(), moto.state_data_table(), moto=moto, bucket=bucket
    )


@contextmanager
def round_trips(backend: Backend) -> Iterator[dict[str, int]]:
    """Counts what the store sends to its backend: engine transactions, or AWS operations by name."""
    calls: dict[str, int] = {}
    if backend.engine is not None:
        real = backend.engine.run_data

        def counting(fn, write=True):
            calls["write" if write else "read"] = calls.get("write" if write else "read", 0) + 1
            return real(fn, write=write)

        backend.engine.run_data = counting
        try:
            yield calls
        finally:
            del backend.engine.run_data
    elif isinstance(backend.store, DynamoDBStateStore):

        def count(event_name: str, **_: Any) -> None:
            op = event_name.rsplit(".", 1)[-1]
            calls[op] = calls.get(op, 0) + 1

        events = backend.store.dynamodb.meta.events
        events.register("before-call.dynamodb.*", count)
        try:
            yield calls
        finally:
            events.unregister("before-call.dynamodb.*", count)
    else:
        yield calls


def raw_item(backend: Backend, table: str, partition_key: str, index: int = 0) -> dict[str, Any]:
    return backend.moto.client("dynamodb").get_item(
        TableName=table,
        Key={"partition_key": {"S": partition_key}, "sort_key": {"N": str(index)}},
        ConsistentRead=True,
    )["Item"]


# -- the py2sfn README, on every store ------------------------------------------------------------


def test_readme_put_item_and_get_item_examples(backend):
    client = backend.client()
    assert client.put_item("characters", {"name": "jerry"}) == {
        "table_name": backend.table,
        "partition_key": "exec-0001:characters",
        "key": "characters",
    }
    assert client.put_item("characters", {"name": "elaine"}, index=24) == {
        "table_name": backend.table,
        "partition_key": "exec-0001:characters",
        "key": "characters",
    }
    assert client.get_item("characters") == {"name": "jerry"}
    assert client.get_item("characters", index=24) == {"name": "elaine"}
    assert client.get_items("characters") == [{"name": "jerry"}, {"name": "elaine"}]


def test_put_items_returns_the_pointer_a_map_state_fans_out_over(backend):
    client = backend.client()
    result = client.put_items("characters", [{"name": "jerry"}, {"name": "elaine"}])
    assert result == {
        "table_name": backend.table,
        "partition_key": "exec-0001:characters",
        "items": [1, 1],
        "key": "characters",
    }
    assert list(result) == ["table_name", "partition_key", "items", "key"]
    assert client.get_items("characters") == [{"name": "jerry"}, {"name": "elaine"}]
    assert client.count_items(backend.table, "exec-0001:characters") == 2


def test_map_iterations_read_their_item_from_the_readme_event_shape(backend):
    client = backend.client()
    pointer = client.put_items("characters", [{"name": "jerry"}, {"name": "elaine"}])
    for context_index, expected in [
        (0, {"name": "jerry"}),
        ("1", {"name": "elaine"}),
        (" 1 ", {"name": "elaine"}),
    ]:
        event = {
            "items_result_table_name": pointer["table_name"],
            "items_result_partition_key": pointer["partition_key"],
            "items_result_key": pointer["key"],
            "context_index": context_index,
            "context_value.$": "1",
        }
        assert client.get_item_for_map_iteration(event) == expected
        assert client.get_global_item_for_map_iteration(event) == expected


def test_map_iterations_may_replace_their_item(backend):
    client = backend.client()
    pointer = client.put_items("characters", [{"name": "jerry"}, {"name": "elaine"}])
    event = {**_global_event(pointer, "1"), "items_result_key": "characters"}
    assert client.put_item_for_map_iteration(event, {"name": "kramer"}) == {
        "table_name": backend.table,
        "partition_key": "exec-0001:characters",
        "key": "characters",
    }
    assert client.put_global_item_for_map_iteration({**event, "context_index": 0}, {"name": "george"}) == {
        "table_name": backend.table,
        "partition_key": "exec-0001:characters",
    }
    assert client.get_items("characters") == [{"name": "george"}, {"name": "kramer"}]


def _global_event(pointer: dict[str, Any], index: Any) -> dict[str, Any]:
    return {
        "items_result_table_name": pointer["table_name"],
        "items_result_partition_key": pointer["partition_key"],
        "context_index": index,
    }


def test_global_methods_reach_another_projects_table(backend):
    client = backend.client()
    partition_key = "exec-9999:orders"
    assert client.put_global_item(backend.other_table, partition_key, ["a", 1]) == {
        "table_name": backend.other_table,
        "partition_key": partition_key,
    }
    assert client.put_global_item(backend.other_table, partition_key, "two", index=2) == {
        "table_name": backend.other_table,
        "partition_key": partition_key,
    }
    assert client.get_global_item(backend.other_table, partition_key) == ["a", 1]
    assert client.get_global_item(backend.other_table, partition_key, index=2) == "two"
    assert client.get_global_items(backend.other_table, partition_key) == [["a", 1], "two"]
    assert client.get_global_items(backend.table, partition_key) == []


def test_put_global_items_writes_to_the_table_it_names_not_the_default_one(backend):
    """py2sfn 1.0.2 wrote these into its default table: the one quirk deliberately not kept."""
    client = backend.client()
    result = client.put_global_items(backend.other_table, "exec-9999:orders", [1, None, {"x": 3}])
    assert result == {
        "table_name": backend.other_table,
        "partition_key": "exec-9999:orders",
        "items": [1, 1, 1],
    }
    assert client.get_global_items(backend.other_table, "exec-9999:orders") == [1, None, {"x": 3}]
    assert client.count_items(backend.other_table, "exec-9999:orders") == 3
    assert client.count_items(backend.table, "exec-9999:orders") == 0
    event = _global_event(result, "2")
    assert client.get_global_item_for_map_iteration(event) == {"x": 3}


def test_a_missing_item_is_no_item_found_with_py2sfns_message(backend):
    client = backend.client()
    with pytest.raises(NoItemFound) as info:
        client.get_item("characters", index=3)
    assert str(info.value) == f"partition_key=exec-0001:characters sort_key=3 table_name={backend.table}"
    assert isinstance(info.value, StateDataError) and isinstance(info.value, SteadyflowError)
    with pytest.raises(NoItemFound, match=f"partition_key=p sort_key=0 table_name={backend.other_table}$"):
        client.get_global_item(backend.other_table, "p")
    assert client.get_items("characters") == []
    assert client.count_items(backend.table, "exec-0001:characters") == 0


def test_values_are_stored_as_pythons_default_json_text(backend):
    """Byte-for-byte what py2sfn writes (`", "`, `": "`, ASCII escapes), so items interoperate."""
    client = backend.client()
    values = [{"name": "jerry", "n": 1}, "two", 3, None, [1.5, True], {"café": "naïve ☃"}]
    client.put_items("values", values)
    assert backend.store.get_all(backend.table, "exec-0001:values") == [json.dumps(v) for v in values]
    assert backend.store.get(backend.table, "exec-0001:values", 0) == '{"name": "jerry", "n": 1}'
    assert backend.store.get(backend.table, "exec-0001:values", 5) == '{"caf\\u00e9": "na\\u00efve \\u2603"}'
    assert client.get_items("values") == values


def test_a_put_replaces_the_item_at_its_index(backend):
    client = backend.client()
    client.put_items("k", ["a", "b", "c"])
    client.put_item("k", "B", index=1)
    client.put_items("k", ["x"])  # like py2sfn, a shorter list leaves the rest in place
    assert client.get_items("k") == ["x", "B", "c"]


def test_put_items_of_a_thousand_items_is_batched(backend):
    client = backend.client()
    items = [{"i": i, "name": f"item-{i}"} for i in range(1000)]
    with round_trips(backend) as calls:
        result = client.put_items("many", items)
    assert result["items"] == [1] * 1000
    if backend.engine is not None:
        assert calls == {"write": 1}  # one transaction
    elif backend.kind == "dynamodb":
        assert calls == {"BatchWriteItem": 40}  # 25 per call, no PutItem
    assert client.count_items(backend.table, "exec-0001:many") == 1000
    assert client.get_items("many") == items
    assert client.get_item("many", index=999) == items[999]


def test_empty_put_items_stores_nothing(backend):
    client = backend.client()
    assert client.put_items("none", [])["items"] == []
    assert client.get_items("none") == []


def test_items_expire_ttl_days_after_they_are_written(backend):
    client = backend.client(ttl_days=2)
    before = int(time.time())
    client.put_item("k", 1)
    client.put_items("ks", [1, 2])
    after = int(time.time()) + 1
    store = backend.store
    store.put(backend.table, "old", 0, '"gone"', before - 10)
    assert store.purge_expired(before + 2 * DAY - 5) == (0 if backend.kind == "dynamodb" else 1)
    assert client.get_items("ks") == [1, 2]
    purged = store.purge_expired(after + 2 * DAY)
    if backend.kind == "dynamodb":  # DynamoDB's own TTL sweeper deletes; the store leaves it alone
        assert purged == 0 and client.get_item("k") == 1
        assert (
            before + 2 * DAY
            <= int(raw_item(backend, backend.table, "exec-0001:k")["expires_at"]["N"])
            <= after + 2 * DAY
        )
    else:
        assert purged == 3
        assert client.get_items("ks") == [] and store.get(backend.table, "old", 0) is None
        with pytest.raises(NoItemFound):
            client.get_item("k")


def test_bad_indexes_and_events_are_state_data_errors(backend):
    client = backend.client()
    with pytest.raises(StateDataError, match="context_index must be an integer or a numeric string, not 'x'"):
        client.get_item_for_map_iteration({"items_result_key": "k", "context_index": "x"})
    with pytest.raises(StateDataError, match="needs 'items_result_key' in the event"):
        client.get_item_for_map_iteration({"context_index": 0})
    with pytest.raises(StateDataError, match="needs 'items_result_partition_key'"):
        client.get_global_item_for_map_iteration({"items_result_table_name": "t", "context_index": 0})
    with pytest.raises(StateDataError, match="index must be an integer"):
        client.put_item("k", 1, index=True)
    with pytest.raises(StateDataError, match="not JSON-serialisable"):
        client.put_item("k", {"when": object()})


# -- SQL -------------------------------------------------------------------------------------------


def test_sqlite_state_data_survives_reopening_the_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    engine = open_engine(url)
    StateDataClient(TABLE, NAMESPACE, store=open_state_store(engine)).put_items("k", ["a", "b"])
    engine.close()
    engine = open_engine(url)
    try:
        assert StateDataClient(TABLE, NAMESPACE, store=open_state_store(engine)).get_items("k") == ["a", "b"]
    finally:
        engine.close()


# -- DynamoDB: py2sfn's wire format -----------------------------------------------------------------


def test_dynamodb_items_have_py2sfns_layout(dynamo):
    client = dynamo.client()
    client.put_item("characters", {"name": "jerry", "n": 1})
    item = raw_item(dynamo, dynamo.table, "exec-0001:characters")
    assert set(item) == {"partition_key", "sort_key", "expires_at", "data"}
    assert item["partition_key"] == {"S": "exec-0001:characters"}
    assert item["sort_key"] == {"N": "0"}
    assert list(item["expires_at"]) == ["N"] and int(item["expires_at"]["N"]) > time.time() + 7 * DAY - 60
    assert item["data"] == {"S": '{"name": "jerry", "n": 1}'}


def test_an_item_over_390000_bytes_is_offloaded_to_s3_at_py2sfns_key(dynamo):
    client = dynamo.client()
    fits = "x" * (ITEM_SIZE_THRESHOLD_BYTES - 2)  # with its quotes: exactly the threshold
    big = {"blob": "é" * 70_000}  # 6 ASCII bytes per character once escaped: 420,012 bytes
    client.put_items("big", [fits, big])
    assert "data" in raw_item(dynamo, dynamo.table, "exec-0001:big", 0)
    item = raw_item(dynamo, dynamo.table, "exec-0001:big", 1)
    key = f"workflow_state_data/{dynamo.table}/exec-0001:big/1"
    assert set(item) == {"partition_key", "sort_key", "expires_at", "s3_key"}
    assert item["s3_key"] == {"S": key}
    body = dynamo.moto.client("s3").get_object(Bucket=dynamo.bucket, Key=key)["Body"].read()
    assert body == json.dumps(big).encode("utf-8") and len(body) > ITEM_SIZE_THRESHOLD_BYTES
    assert client.get_item("big", index=1) == big
    assert client.get_items("big") == [fits, big]

    client.put_global_item(dynamo.other_table, "exec-9999:big", big, index=7)
    key = f"workflow_state_data/{dynamo.other_table}/exec-9999:big/7"
    assert raw_item(dynamo, dynamo.other_table, "exec-9999:big", 7)["s3_key"] == {"S": key}
    assert client.get_global_item(dynamo.other_table, "exec-9999:big", 7) == big


def test_items_py2sfn_wrote_are_read(dynamo):
    """The raw items SEED_FORMATS.md records py2sfn writing, offloaded one included."""
    ddb, s3 = dynamo.moto.client("dynamodb"), dynamo.moto.client("s3")
    ddb.put_item(
        TableName=dynamo.table,
        Item={
            "partition_key": {"S": "exec-0001:characters"},
            "sort_key": {"N": "0"},
            "expires_at": {"N": "1796072611"},
            "data": {"S": '{"name": "jerry", "n": 1}'},
        },
    )
    key = f"workflow_state_data/{dynamo.table}/exec-0001:big/0"
    s3.put_object(Bucket=dynamo.bucket, Key=key, Body=b'{"big": true}')
    ddb.put_item(
        TableName=dynamo.table,
        Item={
            "partition_key": {"S": "exec-0001:big"},
            "sort_key": {"N": "0"},
            "expires_at": {"N": "1796072611"},
            "s3_key": {"S": key},
        },
    )
    client = dynamo.client()
    assert client.get_item("characters") == {"name": "jerry", "n": 1}
    assert client.get_item("big") == {"big": True}
    assert client.get_items("big") == [{"big": True}]


def test_an_oversized_item_without_a_bucket_says_what_to_configure(dynamo):
    store = DynamoDBStateStore(dynamo.store.dynamodb, dynamo.store.s3, s3_bucket=None)
    client = StateDataClient(dynamo.table, NAMESPACE, store=store)
    with pytest.raises(StateDataTooLarge) as info:
        client.put_item("big", "x" * ITEM_SIZE_THRESHOLD_BYTES)
    message = str(info.value)
    assert "390,002 bytes" in message and "SFN_DATA_S3_BUCKET" in message and "s3_bucket=" in message
    assert isinstance(info.value, PayloadTooLarge)
    assert client.get_items("big") == []


def test_a_missing_dynamodb_table_is_named(dynamo):
    client = StateDataClient("no-such-table", NAMESPACE, store=dynamo.store)
    with pytest.raises(StateDataError, match="'no-such-table' does not exist.*partition_key \\(S\\)"):
        client.put_item("k", 1)
    with pytest.raises(StateDataError, match="'no-such-table' does not exist"):
        client.get_items("k")


def test_the_default_store_is_dynamodb_at_the_endpoints_py2sfn_reads(dynamo, monkeypatch):
    monkeypatch.setenv("DYNAMODB_ENDPOINT_URL", dynamo.moto.endpoint)
    monkeypatch.setenv("S3_ENDPOINT_URL", dynamo.moto.endpoint)
    monkeypatch.setenv("SFN_DATA_S3_BUCKET", dynamo.bucket)
    client = StateDataClient(dynamo.table, NAMESPACE)
    assert isinstance(client.store, DynamoDBStateStore) and client.store.s3_bucket == dynamo.bucket
    client.put_item("big", "x" * ITEM_SIZE_THRESHOLD_BYTES)
    assert "s3_key" in raw_item(dynamo, dynamo.table, "exec-0001:big")
    assert client.get_item("big") == "x" * ITEM_SIZE_THRESHOLD_BYTES
    assert open_state_store("dynamodb://").get(dynamo.table, "exec-0001:big", 0) == json.dumps("x" * 390_000)


def test_unprocessed_batch_items_are_written_again(dynamo):
    """DynamoDB may accept only part of a BatchWriteItem; the rest comes back and is resent."""
    real = dynamo.store.dynamodb
    sent: list[int] = []

    class Throttled:  # the real client, but every call writes at most 10 items and returns the rest
        meta = real.meta

        def batch_write_item(self, RequestItems):
            ((table, requests),) = RequestItems.items()
            sent.append(len(requests))
            real.batch_write_item(RequestItems={table: requests[:10]})
            return {"UnprocessedItems": {table: requests[10:]} if requests[10:] else {}}

    store = DynamoDBStateStore(Throttled(), dynamo.store.s3, dynamo.bucket)
    store._sleep = lambda seconds: None
    StateDataClient(dynamo.table, NAMESPACE, store=store).put_items("k", list(range(30)))
    assert sent == [25, 15, 5, 5]
    assert dynamo.client().get_items("k") == list(range(30))


# -- retries ----------------------------------------------------------------------------------------


def _client_error(code: str, status: int):
    from botocore.exceptions import ClientError

    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


def _failing(errors: list[BaseException]):
    calls = []

    def call():
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "ok"

    return call, calls


def test_throttling_and_server_errors_are_retried_up_to_five_tries():
    call, calls = _failing(
        [_client_error("ProvisionedThroughputExceededException", 400), _client_error("x", 503)]
    )
    assert retrying(call, sleep=lambda s: None) == "ok" and len(calls) == 3
    call, calls = _failing([_client_error("InternalServerError", 500)] * 5)
    with pytest.raises(Exception, match="InternalServerError"):
        retrying(call, sleep=lambda s: None)
    assert len(calls) == 5


def test_other_client_errors_are_not_retried():
    call, calls = _failing([_client_error("ValidationException", 400)])
    with pytest.raises(Exception, match="ValidationException"):
        retrying(call, sleep=lambda s: None)
    assert len(calls) == 1


# -- choosing a store ---------------------------------------------------------------------------------


def test_open_state_store_keeps_state_data_beside_the_engine(tmp_path):
    memory, other = open_engine("memory://"), open_engine("memory://")
    store = open_state_store(memory)
    assert isinstance(store, MemoryStateStore)
    assert open_state_store(memory) is store and open_state_store(other) is not store
    sqlite = open_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        assert isinstance(open_state_store(sqlite), SQLStateStore)
    finally:
        sqlite.close()


def test_open_state_store_by_dynamodb_url(monkeypatch):
    monkeypatch.delenv("SFN_DATA_S3_BUCKET", raising=False)
    assert open_state_store("dynamodb://").s3_bucket is None
    assert open_state_store("dynamodb://?bucket=my-bucket").s3_bucket == "my-bucket"
    monkeypatch.setenv("SFN_DATA_S3_BUCKET", "from-env")
    assert open_state_store("dynamodb://").s3_bucket == "from-env"
    for bad in ("sqlite:///x.db", "dynamodb://host", "dynamodb://?bucket=", "dynamodb://?region=x", "s3://b"):
        with pytest.raises(ConfigError):
            open_state_store(bad)
    with pytest.raises(ConfigError, match="no state data store for object"):
        open_state_store(object())
