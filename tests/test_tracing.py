"""One trace spans a start, every decision and every activity of an execution."""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.sdk", reason="tracing needs opentelemetry: pip install -e '.[test]'")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

from steadyflow import tracing  # noqa: E402
from steadyflow.engines import open_engine  # noqa: E402
from steadyflow.local import InlineDriver, start  # noqa: E402
from tests.fixtures import workflows as wf  # noqa: E402


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    yield exporter
    tracing.use_provider(None)


def test_one_trace_from_the_start_through_every_decision_and_activity(spans, tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path / 'steadyflow.db'}")
    wid, _ = start(engine, wf.Sequential, [3], task_list="traced")
    # A fresh decider process would know nothing of the client: only the history links them.
    driver = InlineDriver(engine, "traced", (wf.Sequential,))
    assert driver.run_until(lambda: not engine.describe_execution(wid).is_open)
    finished = spans.get_finished_spans()
    names = [s.name for s in finished]
    assert names.count("StartWorkflow:sequential") == 1
    assert names.count("Decide:sequential") == 4  # three activities, then the completion
    assert names.count("RunActivity:tests.fixtures.workflows.inc") == 3
    assert len({s.context.trace_id for s in finished}) == 1
    root = next(s for s in finished if s.name.startswith("StartWorkflow"))
    assert all(s.parent is not None and s.parent.span_id == root.context.span_id for s in finished if s is not root)
    activity = next(s for s in finished if s.name.startswith("RunActivity"))
    assert activity.attributes["steadyflow.workflow_id"] == wid and activity.attributes["steadyflow.attempt"] == 1


def test_without_a_provider_nothing_is_added_to_inputs(tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path / 'steadyflow.db'}")
    wid, _ = start(engine, wf.Sequential, [1], task_list="plain")
    assert "trace" not in engine.describe_execution(wid).input
