"""Log lines carry the execution's ids, as text or as JSON."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from steadyflow import logs
from steadyflow.activity import TaskContext, _current_task
from tests.fixtures.cluster import ROOT


def record(message: str) -> logging.LogRecord:
    rec = logging.LogRecord("steadyflow.test", logging.INFO, __file__, 1, message, (), None)
    logs.ContextFilter().filter(rec)
    return rec


def test_a_decision_and_an_activity_give_their_ids_to_every_record():
    with logs.ids(workflow_id="wf-1", run_id="r-1"):
        rec = record("deciding")
    assert (rec.workflow_id, rec.run_id, rec.activity_id, rec.ids) == ("wf-1", "r-1", "", " [wf-1 r-1]")
    token = _current_task.set(TaskContext({"workflow_id": "wf-2", "run_id": "r-2", "activity_id": "a-9"}))
    try:
        rec = record("working")
    finally:
        _current_task.reset(token)
    line = json.loads(logs.JSONFormatter().format(rec))
    assert line["workflow_id"] == "wf-2" and line["activity_id"] == "a-9" and line["message"] == "working"
    assert record("idle").ids == ""


def test_the_cli_writes_json_lines_with_log_format_json(tmp_path):
    url = f"sqlite:///{tmp_path / 'steadyflow.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "steadyflow", "--engine", url, "--log-format", "json", "standalone",
         "examples.basic.BasicWorkflow", "--input", "[2, 0]"],
        capture_output=True, text=True, cwd=ROOT, env={"LOG_LEVEL": "DEBUG", "PATH": "/usr/bin:/bin",
                                                      "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in done.stderr.splitlines() if x.startswith("{")]
    assert lines and all({"time", "level", "logger", "message"} <= set(x) for x in lines)
    assert any(x.get("workflow_id") for x in lines)
