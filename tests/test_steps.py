"""Steps (simpleflow's `Step`): done once across executions of a workflow id, forced, skipped,
with `log.step` markers; on the memory and SQLite engines, and S3 in simpleflow's layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from steadyflow import history as h
from steadyflow.engines import open_engine
from steadyflow.errors import ConfigError
from steadyflow.local import InlineDriver, start
from steadyflow.payload.blobs import MemoryBlobStore
from steadyflow.replay import Executor
from steadyflow.steps import (
    S3StepStore,
    get_step_force_reasons,
    should_force_step,
    step_will_run,
)
from steadyflow.steps.store import BlobStepStore, bucket_name
from steadyflow.workflow_steps import add_step_options
from tests.fixtures import hook_workflows as hw
from tests.fixtures.moto import moto_server  # noqa: F401 - session fixture

ROOT = Path(__file__).resolve().parent.parent

WORK = "tests.fixtures.hook_workflows.step_work"


def run(engine, cls, workflow_id, args=(), kwargs=None):
    task_list = f"steps-{uuid.uuid4().hex}"
    start(engine, cls, args, kwargs, workflow_id=workflow_id, task_list=task_list)
    driver = InlineDriver(engine, task_list, (cls,))
    assert driver.run_until(lambda: not engine.describe_execution(workflow_id).is_open)
    info = engine.describe_execution(workflow_id)
    assert info.status == "completed", info.close_reason
    assert Executor(cls).decide(engine.get_history(workflow_id, info.run_id)) == []  # replays the same
    return info


def ran(engine, info, name=WORK):
    """The inputs the named activity was scheduled with."""
    return [json.loads(e.attributes["input"])["args"]
            for e in engine.get_history(info.workflow_id, info.run_id)
            if e.event_type == h.ACTIVITY_TASK_SCHEDULED and e.attributes["activityType"]["name"] == name]


def step_markers(engine, info):
    return [json.loads(e.attributes["details"]) for e in engine.get_history(info.workflow_id, info.run_id)
            if e.event_type == h.MARKER_RECORDED and e.attributes["markerName"] == "log.step"]


def test_a_step_done_in_one_execution_is_skipped_in_the_next_and_runs_again_when_forced(real_engine):
    wid = f"steps-{uuid.uuid4().hex}"
    first = run(real_engine, hw.OneStep, wid)
    assert ran(real_engine, first) == [[3]]
    assert ran(real_engine, first, "steadyflow.steps.tasks.mark_step_done")[0][:3] == [None, f"{wid}/steps/", "double"]
    assert step_markers(real_engine, first) == [
        {"step": "double", "status": "scheduled", "forced": False, "reasons": []},
        {"step": "double", "status": "completed", "forced": False, "reasons": []},
    ]
    assert json.loads(first.result) == {"done": ["double"]}

    second = run(real_engine, hw.OneStep, wid)
    assert ran(real_engine, second) == []
    assert step_markers(real_engine, second) == [
        {"step": "double", "status": "skipped", "forced": False, "reasons": ["Step was already played"]}
    ]

    forced = run(real_engine, hw.OneStep, wid, kwargs={"force": True})
    assert ran(real_engine, forced) == [[3]]
    assert step_markers(real_engine, forced)[0] == {"step": "double", "status": "scheduled", "forced": True,
                                                    "reasons": []}

    by_name = run(real_engine, hw.OneStep, wid, kwargs={"force_steps": ["double"]})  # run() does not take it
    assert ran(real_engine, by_name) == [[3]]
    assert step_markers(real_engine, by_name)[0]["reasons"] == ["workflow_init"]

    other = run(real_engine, hw.OneStep, f"other-{uuid.uuid4().hex}")  # another workflow id: its own steps
    assert ran(real_engine, other) == [[3]]


def test_skipped_by_name_even_when_never_done(real_engine):
    info = run(real_engine, hw.OneStep, f"steps-{uuid.uuid4().hex}", kwargs={"skip_steps": ["double"]})
    assert ran(real_engine, info) == []
    assert step_markers(real_engine, info) == [
        {"step": "double", "status": "skipped", "forced": True, "reasons": ["workflow_init"]}
    ]
    assert json.loads(info.result) == {"done": []}


def test_a_step_that_ran_forces_the_steps_it_names(real_engine):
    wid = f"steps-{uuid.uuid4().hex}"
    assert json.loads(run(real_engine, hw.StepsWithDependencies, wid).result) == ["first", "second"]
    again = run(real_engine, hw.StepsWithDependencies, wid)  # both done: both skipped
    assert ran(real_engine, again) == []
    forced = run(real_engine, hw.StepsWithDependencies, wid, kwargs={"force_steps": ["first"]})
    assert ran(real_engine, forced) == [[1], [2], [3]]  # `second` is forced by `first` having run
    assert [m["reasons"] for m in step_markers(real_engine, forced) if m["status"] == "scheduled"] == [
        ["workflow_init"], ["Dep of first"]
    ]


def test_a_failed_step_is_not_marked_done_and_runs_again(real_engine):
    wid = f"steps-{uuid.uuid4().hex}"
    failed = run(real_engine, hw.FailingStep, wid)
    assert json.loads(failed.result) == []
    assert [m["status"] for m in step_markers(real_engine, failed)] == ["scheduled"]
    fixed = run(real_engine, hw.FailingStep, wid, kwargs={"fail": False})
    assert ran(real_engine, fixed) == [[5]]
    assert json.loads(fixed.result) == ["fragile"]


def test_a_done_step_runs_its_alternative_and_emits_its_signal(real_engine):
    wid = f"steps-{uuid.uuid4().hex}"
    first = run(real_engine, hw.StepWithCallback, wid)
    assert json.loads(first.result) == {"args": [], "kwargs": {}}  # the step's signal, received
    again = run(real_engine, hw.StepWithCallback, wid)
    assert ran(real_engine, again) == []
    assert ran(real_engine, again, "tests.fixtures.workflows.inc") == [[100]]
    signals = [e.attributes["signalName"] for e in real_engine.get_history(wid, again.run_id)
               if e.event_type == h.WORKFLOW_EXECUTION_SIGNALED]
    assert signals == ["step.cb"]


def test_steps_survive_reopening_the_sqlite_engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'steadyflow.db'}"
    wid = f"steps-{uuid.uuid4().hex}"
    engine = open_engine(url)
    run(engine, hw.OneStep, wid)
    engine.close()
    engine = open_engine(url)  # another process, say: the record is beside the database file
    assert ran(engine, run(engine, hw.OneStep, wid)) == []
    engine.close()


# -- the rules, the stores, the start options -----------------------------------------------------


def test_forcing_rules_are_hierarchical_and_force_beats_skip():
    assert should_force_step("a.b.c", ["a"]) and should_force_step("a.b.c", ["a.b"]) and should_force_step("a", "*")
    assert not should_force_step("a.b.c", ["a.c"]) and not should_force_step("a.b.c", ["a.b.cd"])
    assert not step_will_run("a.b.c", [], ["a.b"], [])
    assert step_will_run("a.b.c", ["a"], ["a.b"], ["a.b.c"])
    assert step_will_run("a.b.c", [], ["b"], ["a.b"])
    assert get_step_force_reasons("a.b.c", {"a.b": ["MY_REASON"], "a": ["MY_ROOT_REASON"], "x": ["no"]}) == [
        "MY_REASON", "MY_ROOT_REASON"
    ]


def test_blob_step_store_lists_what_it_marked():
    store = BlobStepStore(MemoryBlobStore())
    store.mark("w/steps/", "one", {"run_id": "r"})
    store.mark("w/steps/", "two", {"run_id": "r"})
    store.mark("w/steps/", "one", {"run_id": "r2"})
    assert store.done("w/steps/") == ["one", "two"]
    assert store.done("w/steps/", "two") == ["two"] and store.done("w/steps/", "three") == []
    assert store.done("other/steps/") == []


def test_s3_step_store_uses_simpleflows_layout(moto_server):  # noqa: F811 - the fixture imported above
    import boto3

    client = boto3.client("s3", endpoint_url=moto_server.endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket="step-bucket")
    client.put_object(Bucket="step-bucket", Key="wf/steps/from-simpleflow", Body=b"{}")
    store = S3StepStore(bucket_name("s3-eu-west-1.amazonaws.com/step-bucket"), client=client)
    store.mark("wf/steps/", "mine", {"run_id": "r", "workflow_id": "wf", "version": "1"})
    assert store.done("wf/steps/") == ["from-simpleflow", "mine"]
    assert store.done("wf/steps", "mine") == ["mine"]
    body = client.get_object(Bucket="step-bucket", Key="wf/steps/mine")["Body"].read()
    assert json.loads(body) == {"run_id": "r", "workflow_id": "wf", "version": "1"}


def test_start_options_add_force_and_skip_steps_to_the_kwargs():
    assert add_step_options({}, ("a,b", "c"), ()) == {"force_steps": ["a", "b", "c"]}
    assert add_step_options({"force_steps": ["a"]}, ("a,b",), ("x",)) == {"force_steps": ["a", "b"], "skip_steps": ["x"]}
    assert add_step_options({"x": 1}, (), ()) == {"x": 1}
    with pytest.raises(ConfigError, match="must be a list of step names"):
        add_step_options({"force_steps": 3}, ("a",), ())


def sf(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("STEADYFLOW_URL", None)
    return subprocess.run([sys.executable, "-m", "steadyflow", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=env)


def test_workflow_start_passes_force_and_skip_steps_as_simpleflow_kwargs(tmp_path):
    db = tmp_path / "steadyflow.db"
    proc = sf("--engine", f"sqlite:///{db}", "workflow", "start", "tests.fixtures.hook_workflows.OneStep",
              "--workflow-id", "cli-steps", "--force-steps", "double,other", "--skip-steps", "x", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    engine = open_engine(f"sqlite:///{db}")
    started = engine.get_history("cli-steps")[0]
    assert json.loads(started.attributes["input"])["kwargs"] == {"force_steps": ["double", "other"], "skip_steps": ["x"]}
    engine.close()

    bad = sf("--engine", f"sqlite:///{db}", "workflow", "start", "tests.fixtures.hook_workflows.OneStep",
             "--input", '{"kwargs": {"force_steps": 3}}', "--force-steps", "a", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "Error: --input: kwargs 'force_steps' must be a list of step names, not 3"
    ]


def test_steps_are_kept_in_the_postgresql_database(pg_schema):
    engine = open_engine(pg_schema.url)
    try:
        wid = f"steps-{uuid.uuid4().hex}"
        assert ran(engine, run(engine, hw.OneStep, wid)) == [[3]]
        assert ran(engine, run(engine, hw.OneStep, wid)) == []  # the record is a row of steadyflow_blobs
    finally:
        engine.close()
