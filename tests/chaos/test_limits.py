"""Resource limits: a payload bomb is refused before anything is stored, and a flood of queued
tasks does not grow a consumer's memory.

The flood's default size keeps the suite fast: 10,000 tasks (about 6 s on two cores);
`STEADYFLOW_FLOOD_COUNT=100000` runs the issue's full figure (about a minute).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import steadyflow
from steadyflow.cli import main
from steadyflow.engines import open_engine
from steadyflow.errors import PayloadError, PayloadTooLarge
from steadyflow.local import start
from steadyflow.tasks import TaskManager
from tests.fixtures import features

pytestmark = pytest.mark.chaos
ROOT = Path(__file__).resolve().parent.parent.parent
FLOOD = int(os.environ.get("STEADYFLOW_FLOOD_COUNT", "10000"))
GROWTH_BOUND_KB = 16 * 1024
"""How much a consumer's resident memory may grow between its first 1,000 tasks and the end."""


@pytest.fixture
def waiting(tmp_path, monkeypatch):
    """A SQLite engine limited to 1 MB payloads, and an open execution waiting for signals."""
    monkeypatch.setenv("STEADYFLOW_MAX_PAYLOAD", "1000000")
    url = f"sqlite:///{tmp_path / 'limits.db'}"
    monkeypatch.setenv("STEADYFLOW_URL", url)
    engine = open_engine(url)
    start(engine, features.Patient, workflow_id="waiting")
    yield engine, tmp_path
    engine.close()


def stored(engine, tmp_path) -> tuple[int, list[Path]]:
    events = engine.get_history("waiting")
    signals = sum(e.event_type == "WorkflowExecutionSignaled" for e in events)
    blobs = [p for p in (tmp_path / "limits.db.blobs").rglob("*") if p.is_file()]
    return signals, blobs


def test_a_huge_string_in_a_signal_is_refused_before_it_is_stored(waiting, capsys):
    engine, tmp_path = waiting
    huge = "x" * 2_000_000
    with pytest.raises(PayloadTooLarge, match="exceeds the maximum of 1,000,000"):
        steadyflow.Client(engine=engine).get_handle("waiting").signal("wake", huge)
    code = main(["workflow", "signal", "waiting", "wake", "--input", json.dumps(huge)])
    assert code == 1 and "exceeds the maximum of 1,000,000 (STEADYFLOW_MAX_PAYLOAD)" in capsys.readouterr().err
    assert stored(engine, tmp_path) == (0, [])
    steadyflow.Client(engine=engine).get_handle("waiting").signal("wake", os.urandom(60_000).hex())  # under: kept
    signals, blobs = stored(engine, tmp_path)
    assert signals == 1 and len(blobs) == 1  # offloaded, as a large payload is


def test_deeply_nested_input_and_signals_are_refused_before_they_are_stored(waiting, capsys):
    engine, tmp_path = waiting
    for depth in (201, 900, 5000):
        bomb = "[" * depth + "]" * depth
        code = main(["workflow", "signal", "waiting", "wake", "--input", bomb])
        assert code in (1, 2), depth
        err = capsys.readouterr().err
        assert "nests deeper than 200 levels" in err or "not valid JSON" in err, err
    nested: list = []
    for _ in range(250):
        nested = [nested]
    with pytest.raises(PayloadError, match="nests deeper than 200 levels"):
        steadyflow.Client(engine=engine).get_handle("waiting").signal("wake", nested)
    with pytest.raises(PayloadError, match="nests deeper"):
        start(engine, features.Patient, nested, workflow_id="bomb")
    assert stored(engine, tmp_path) == (0, [])
    assert [i.workflow_id for i in engine.list_executions(limit=10)] == ["waiting"]


@pytest.mark.slow
def test_a_flood_of_queued_tasks_does_not_grow_the_consumers_memory(tmp_path):
    url = f"sqlite:///{tmp_path / 'flood.db'}?queue=flood"
    manager = TaskManager(url)
    for first in range(0, FLOOD, 1000):
        manager.send_many("noop", [{"n": n, "pad": "x" * 100} for n in range(first, min(first + 1000, FLOOD))])
    began = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "tests.chaos.flood_consumer", url, str(FLOOD)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    growth = result["rss_peak_kb"] - result["rss_after_1000_kb"]
    print(f"flood: {FLOOD:,} tasks in {time.monotonic() - began:.1f} s; consumer RSS {result['rss_after_1000_kb']:,} kB "
          f"after 1,000, peak {result['rss_peak_kb']:,} kB (+{growth:,} kB, {growth * 1024 / FLOOD:.1f} B/task)")
    assert result["handled"] == FLOOD
    assert growth < GROWTH_BOUND_KB, result
    attributes = TaskManager(url).backend.attributes()
    assert attributes["ApproximateNumberOfMessages"] == attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
