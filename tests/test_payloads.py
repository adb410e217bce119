"""Payloads of any size, encrypted at rest, never unpickled unasked, and state data, end to end.

Unit-level behaviour (every type round-trips, codecs, each blob store) is in test_payload_units.py;
here real deciders and workers move the payloads through real engines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from steadyflow import history as h
from steadyflow.decider import Decider
from steadyflow.engines import open_engine
from steadyflow.local import InlineDriver, run_local, start
from steadyflow.payload.codecs import new_key
from tests.fixtures import payload_workflows as pw
from tests.fixtures.cluster import ROOT, wait_for

MB = 1_000_000


def largest_event(engine, workflow_id) -> int:
    return max(len(json.dumps(e.to_json())) for e in engine.get_history(workflow_id))


@pytest.mark.slow
def test_fifty_megabyte_input_and_result_with_small_history_and_bounded_worker_memory(cluster):
    engine = open_engine(cluster.url)
    data = os.urandom(25 * MB).hex()  # 50 MB that compresses only 2:1
    wid, _ = start(engine, pw.BigPayloads, [data], task_list="payloads")
    del data
    cluster.decider("payloads", "tests.fixtures.payload_workflows.BigPayloads")
    cluster.worker("payloads", processes=1)
    info = wait_for(lambda: (i := engine.describe_execution(wid)) and not i.is_open and i, 180, "the execution")
    assert info.status == "completed", info.close_reason
    result = engine.payloads.loads(info.result)
    assert result["input"] == result["echoed"] == result["result"] == 50 * MB
    assert largest_event(engine, wid) < 1024
    print(f"largest event {largest_event(engine, wid)} B, worker peak RSS {result['peak_rss'] / MB:.0f} MB")
    # The worker process that read the 50 MB input and wrote the 50 MB result peaked below 3x.
    assert result["peak_rss"] < 3 * 50 * MB, f"peak RSS {result['peak_rss'] / MB:.0f} MB"
    blobs = list(Path(f"{cluster.db}.blobs").rglob("*"))
    assert [p for p in blobs if p.is_file()], "large payloads live in the blob directory"


def test_encrypted_payloads_leave_no_plaintext_in_the_database_or_blob_store(tmp_path, monkeypatch):
    key = new_key()
    monkeypatch.setenv("STEADYFLOW_ENCRYPTION_KEY", key)
    monkeypatch.setenv("STEADYFLOW_INLINE_LIMIT", "4096")  # the large secret goes to a blob
    db = tmp_path / "steadyflow.db"
    engine = open_engine(f"sqlite:///{db}")
    secret = "TOP-SECRET-" + os.urandom(8).hex()
    big_secret = secret + os.urandom(8000).hex()  # incompressible: it must go to a blob
    info = run_local(pw.Secrets, [secret], engine=engine)
    assert info.status == "completed", info.close_reason
    assert engine.payloads.loads(info.result) == {"answer": f"{secret}/revealed", "marker": f"{secret}/side"}
    info = run_local(pw.Secrets, [big_secret], engine=engine)
    assert info.status == "completed", info.close_reason
    engine.close()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(".blobs" in str(p) for p in files)
    for path in files:
        assert secret.encode() not in path.read_bytes(), f"plaintext in {path}"

    def cli(*args: str, with_key: bool) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != "STEADYFLOW_ENCRYPTION_KEY"}
        if with_key:
            env["STEADYFLOW_ENCRYPTION_KEY"] = key
        return subprocess.run([sys.executable, "-m", "steadyflow", "--engine", f"sqlite:///{db}", *args],
                              capture_output=True, text=True, env=env, cwd=ROOT)

    shown = cli("workflow", "result", info.workflow_id, with_key=True)
    assert shown.returncode == 0 and json.loads(shown.stdout)["answer"] == f"{big_secret}/revealed"
    hidden = cli("workflow", "result", info.workflow_id, with_key=False)
    assert hidden.returncode != 0 and "encrypted" in hidden.stderr and secret not in hidden.stdout
    described = cli("workflow", "info", info.workflow_id, "--format", "json", with_key=False)
    assert json.loads(described.stdout)["result"] == "<encrypted>"


def test_a_pickled_input_is_refused_unless_the_activity_opted_in(real_engine):
    from steadyflow.worker.runner import run_task

    payloads = real_engine.payloads
    # Whoever wrote this task (a forged row, another codebase) pickled its input.
    forged = payloads.dumps({"args": [{"x": 1}], "kwargs": {}}, serializer="pickle")
    refused = run_task({"name": pw.plain_echo.name, "input": forged}, payloads=payloads)
    assert not refused.ok and "refuses it" in refused.reason
    assert "serializer='pickle'" in json.loads(refused.details)["message"]
    accepted = run_task({"name": pw.pickled_echo.name, "input": forged}, payloads=payloads)
    assert accepted.ok and accepted.result.startswith("steadyflow+inline:pickle:")
    assert payloads.loads(accepted.result, frozenset({"pickle"})) == {"x": 1}


def test_a_missing_blob_fails_the_decision_retryably_and_the_execution_recovers(tmp_path, monkeypatch):
    monkeypatch.setenv("STEADYFLOW_INLINE_LIMIT", "1024")
    engine = open_engine(f"sqlite:///{tmp_path / 'steadyflow.db'}")
    data = os.urandom(5000).hex()
    wid, rid = start(engine, pw.BigPayloads, [data], task_list="payloads")
    ref = engine.describe_execution(wid).input
    blob = next(p for p in (tmp_path / "steadyflow.db.blobs").rglob("*") if p.is_file())
    saved = blob.read_bytes()
    blob.unlink()
    decider = Decider(engine, "payloads", [pw.BigPayloads])
    assert decider.run_once()
    [failed] = [e for e in engine.get_history(wid) if e.event_type == h.DECISION_TASK_FAILED]
    location = ref.split(" ")[0].removeprefix("steadyflow+")
    assert location in failed.attributes["details"] or location in failed.attributes.get("reason", "")
    assert engine.describe_execution(wid).is_open
    blob.write_bytes(saved)
    driver = InlineDriver(engine, "payloads", (pw.BigPayloads,))
    assert driver.run_until(lambda: not engine.describe_execution(wid).is_open)
    info = engine.describe_execution(wid)
    assert info.status == "completed" and engine.payloads.loads(info.result)["echoed"] == 10000


@pytest.mark.slow
def test_map_over_ten_thousand_stored_items_keeps_the_history_small(tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path / 'steadyflow.db'}")

    def history_bytes(wid):  # what the engine stores: each event's attributes as JSON
        return sum(len(json.dumps(e.attributes, separators=(",", ":"))) for e in engine.get_history(wid))

    def run(n):
        wid, _ = start(engine, pw.MapStored, [n], task_list="items", workflow_id=f"map-{n}")
        decider = Decider(engine, "items", [pw.MapStored])
        driver = InlineDriver(engine, "items", (pw.MapStored,))
        while engine.describe_execution(wid).is_open:
            decider.run_once()
            while (task := engine.poll_activity_task("items", "test")) is not None:
                outcome = driver.run_activity(task)
                assert outcome.ok, outcome.reason
                engine.complete_activity_task(task.token, outcome.result)
        info = engine.describe_execution(wid)
        assert info.status == "completed", info.close_reason
        assert engine.payloads.loads(info.result) == n * (n - 1) // 2
        return history_bytes(wid)

    small, large = run(10), run(10_000)
    per_item = (large - small) / (10_000 - 10)
    # Three events per item (scheduled, started, completed); the item itself is never copied.
    print(f"history grows by {per_item:.0f} B per stored item")
    assert per_item < 500, f"{per_item:.0f} bytes of history per item"


def test_py2sfn_readme_examples_and_stop_execution_from_a_task(real_engine):
    info = run_local(pw.Py2sfnFlow, [False], engine=real_engine)
    assert info.status == "completed", info.close_reason
    result = real_engine.payloads.loads(info.result)
    task = result["task"]
    assert task["put"] == {"table_name": "steadyflow", "partition_key": f"{info.workflow_id}:characters",
                           "key": "characters"}
    assert task["first"] == {"name": "jerry"} and task["at_24"] == {"name": "elaine"}
    assert task["mapped"] == task["global"] == {"name": "elaine"}
    assert result["after"] == "went on"

    stopped = run_local(pw.Py2sfnFlow, [True], engine=real_engine)
    assert stopped.status == "terminated"
    closing = real_engine.get_history(stopped.workflow_id)[-1]
    assert closing.event_type == h.WORKFLOW_EXECUTION_TERMINATED
    assert closing.attributes["reason"] == "Feature.Disabled" and closing.attributes["details"] == "the flag is off"


def test_a_missing_input_blob_fails_the_activity_attempt_naming_the_reference(tmp_path, monkeypatch):
    from steadyflow.worker.runner import run_task

    monkeypatch.setenv("STEADYFLOW_INLINE_LIMIT", "1024")
    engine = open_engine(f"sqlite:///{tmp_path / 'steadyflow.db'}")
    data = os.urandom(4000).hex()
    ref = engine.payloads.dumps({"args": [data], "kwargs": {}})
    for blob in (tmp_path / "steadyflow.db.blobs").rglob("*"):
        if blob.is_file():
            blob.unlink()
    outcome = run_task({"name": pw.length_of.name, "input": ref}, payloads=engine.payloads)
    assert not outcome.ok and outcome.reason.startswith("BlobMissing: blob file:")
    assert ref.split(" ")[0].removeprefix("steadyflow+") in outcome.reason
