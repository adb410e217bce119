"""The Prometheus registry (`steadyflow.metrics`): what the hooks record, and the HTTP exporter."""

from __future__ import annotations

import logging
import urllib.request

import pytest

pytest.importorskip("prometheus_client", reason="metrics need prometheus-client: pip install -e '.[test]'")

from steadyflow import metrics  # noqa: E402
from steadyflow.metrics import Metrics  # noqa: E402


def value(m: Metrics, name: str, **labels: str) -> float:
    got = m.registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


def test_task_counters_move_by_exactly_the_number_of_recorded_events():
    m = Metrics()
    for _ in range(3):
        m.task_started("app.resize", "images", schedule_to_start=0.2)
    m.task_started("app.mail", "mail")
    m.task_finished("app.resize", "completed", 0.5)
    m.task_finished("app.resize", "completed", 1.5)
    m.task_finished("app.resize", "failed", 0.1)
    m.task_finished("app.mail", "timed_out", 30.0)

    assert value(m, "steadyflow_activity_tasks_started_total", activity="app.resize", task_list="images") == 3
    assert value(m, "steadyflow_activity_tasks_started_total", activity="app.mail", task_list="mail") == 1
    assert value(m, "steadyflow_activity_tasks_completed_total", activity="app.resize") == 2
    assert value(m, "steadyflow_activity_tasks_failed_total", activity="app.resize") == 1
    assert value(m, "steadyflow_activity_tasks_failed_total", activity="app.mail") == 0
    assert value(m, "steadyflow_activity_tasks_timed_out_total", activity="app.mail") == 1
    # Histograms: one observation per call that gave a time, in the right bucket.
    s2s = dict(activity="app.resize", task_list="images")
    assert value(m, "steadyflow_activity_schedule_to_start_seconds_count", **s2s) == 3
    assert value(m, "steadyflow_activity_schedule_to_start_seconds_sum", **s2s) == pytest.approx(0.6)
    assert value(m, "steadyflow_activity_schedule_to_start_seconds_count", activity="app.mail", task_list="mail") == 0
    done = dict(activity="app.resize", outcome="completed")
    assert value(m, "steadyflow_activity_run_time_seconds_count", **done) == 2
    assert value(m, "steadyflow_activity_run_time_seconds_bucket", le="1.0", **done) == 1
    assert value(m, "steadyflow_activity_run_time_seconds_bucket", le="2.5", **done) == 2


def test_decision_latency_waiting_gauge_and_cache_counters():
    m = Metrics()
    for latency in (0.002, 0.004, 0.2):
        m.decision(latency)
    m.set_tasks_waiting("images", 7)
    m.set_tasks_waiting("images", 4)  # a gauge is set, not added to
    m.cache_hit()
    m.cache_hit()
    m.cache_miss()

    assert value(m, "steadyflow_decision_latency_seconds_count") == 3
    assert value(m, "steadyflow_decision_latency_seconds_bucket", le="0.005") == 2
    assert value(m, "steadyflow_activity_tasks_waiting", task_list="images") == 4
    assert value(m, "steadyflow_decider_cache_hits_total") == 2
    assert value(m, "steadyflow_decider_cache_misses_total") == 1


def test_an_unknown_outcome_is_refused_by_the_registry_but_never_raised_by_a_hook(caplog):
    m = Metrics()
    with pytest.raises(ValueError, match="unknown outcome"):
        m.task_finished("a", "exploded", 1.0)

    fresh = metrics.reset()
    with caplog.at_level(logging.WARNING, logger="steadyflow.metrics"):
        metrics.task_finished("a", "exploded", 1.0)  # a worker calling this must not crash
    assert "metrics hook task_finished failed" in caplog.text
    assert value(fresh, "steadyflow_activity_tasks_failed_total", activity="a") == 0


def test_module_hooks_record_into_the_default_registry():
    m = metrics.reset()
    metrics.task_started("inc", "default", 0.01)
    metrics.task_started("inc", "default")
    metrics.task_finished("inc", "completed", 0.02)
    metrics.task_finished("inc", "failed", 0.03)
    metrics.decision(0.004)
    metrics.set_tasks_waiting("default", 2)
    metrics.cache_hit()
    metrics.cache_miss()
    metrics.cache_miss()

    assert metrics.default() is m
    assert value(m, "steadyflow_activity_tasks_started_total", activity="inc", task_list="default") == 2
    assert value(m, "steadyflow_activity_tasks_completed_total", activity="inc") == 1
    assert value(m, "steadyflow_activity_tasks_failed_total", activity="inc") == 1
    assert value(m, "steadyflow_decision_latency_seconds_count") == 1
    assert value(m, "steadyflow_activity_tasks_waiting", task_list="default") == 2
    assert value(m, "steadyflow_decider_cache_hits_total") == 1
    assert value(m, "steadyflow_decider_cache_misses_total") == 2


def test_serve_exposes_the_series_over_http_on_loopback():
    m = metrics.reset()
    metrics.task_started("app.resize", "images")
    metrics.task_finished("app.resize", "completed", 0.3)
    metrics.cache_hit()
    server = metrics.serve(0)  # a free port, on 127.0.0.1 unless told otherwise
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            assert response.status == 200
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'steadyflow_activity_tasks_started_total{activity="app.resize",task_list="images"} 1.0' in text
    assert 'steadyflow_activity_tasks_completed_total{activity="app.resize"} 1.0' in text
    assert "steadyflow_decider_cache_hits_total 1.0" in text
    assert "# TYPE steadyflow_decision_latency_seconds histogram" in text
    assert m.exposition().decode().count("steadyflow_activity_tasks_started_total{") == 1


def test_a_worker_pool_and_a_decider_move_the_counters_by_exactly_what_they_ran(real_engine):
    from steadyflow.local import start
    from tests.fixtures import workflows as wf
    from tests.fixtures.pool_helpers import running_decider, running_pool, wait_for

    m = metrics.reset()
    wid, _ = start(real_engine, wf.FanOut, [5], task_list="metered")
    with running_decider(real_engine, "metered", [wf.FanOut]), running_pool(
        real_engine, "metered", ("tests.fixtures.workflows",), processes=2
    ):
        wait_for(lambda: not real_engine.describe_execution(wid).is_open, real_engine, 60, "the execution")
    square = "tests.fixtures.workflows.square"
    assert value(m, "steadyflow_activity_tasks_started_total", activity=square, task_list="metered") == 5
    assert value(m, "steadyflow_activity_tasks_completed_total", activity=square) == 5
    assert value(m, "steadyflow_activity_tasks_failed_total", activity=square) in (None, 0)
    assert value(m, "steadyflow_decision_latency_seconds_count") >= 2
    assert value(m, "steadyflow_activity_schedule_to_start_seconds_count", activity=square, task_list="metered") == 5
    # Sampled from the engine every few seconds while the pool runs: one of the values it had.
    assert m.registry.get_sample_value("steadyflow_activity_tasks_waiting", {"task_list": "metered"}) in range(6)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_timeouts_the_engine_fires_are_counted_once(kind, tmp_path):
    from steadyflow.engines.memory import MemoryEngine
    from steadyflow.engines.sqlite import SQLiteEngine
    from tests.fixtures.pool_helpers import act, schedule

    now = [1_000.0]
    engine = MemoryEngine(clock=lambda: now[0]) if kind == "memory" else SQLiteEngine(
        str(tmp_path / "steadyflow.db"), clock=lambda: now[0])
    m = metrics.reset()
    schedule(engine, act("app.slow", task_list="timeouts", heartbeat_timeout=1.0))
    assert engine.poll_activity_task("timeouts", "w") is not None
    now[0] += 5
    engine.fire_due()
    engine.fire_due()
    assert value(m, "steadyflow_activity_tasks_timed_out_total", activity="app.slow") == 1
