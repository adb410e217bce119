"""Prometheus metrics: a small registry API the worker and decider call, and an HTTP exporter.

The worker and the decider do not know about Prometheus: they call the hooks below
(`task_started`, `task_finished`, `decision`, ...) and nothing else, as dramatiq's middleware does
(`dramatiq/middleware/prometheus.py`). Each hook:

- is a no-op when `prometheus-client` is not installed (`pip install 'steadyflow[ui]'`), so the
  calls can stay in the worker unconditionally;
- never raises: a metrics bug is logged once and does not stop a worker.

Metrics live in a `Metrics` object with its own `CollectorRegistry` (not the process-wide default
one, so tests and embedding applications get exactly our series). The module-level functions
use `default()`; `serve(port)` exposes it on `http://127.0.0.1:PORT/metrics`.

Series (label names in braces):

| name | type | labels |
| --- | --- | --- |
| `steadyflow_activity_tasks_started_total` | counter | activity, task_list |
| `steadyflow_activity_tasks_completed_total` | counter | activity |
| `steadyflow_activity_tasks_failed_total` | counter | activity |
| `steadyflow_activity_tasks_timed_out_total` | counter | activity |
| `steadyflow_activity_schedule_to_start_seconds` | histogram | activity, task_list |
| `steadyflow_activity_run_time_seconds` | histogram | activity, outcome |
| `steadyflow_decision_latency_seconds` | histogram | |
| `steadyflow_activity_tasks_waiting` | gauge | task_list |
| `steadyflow_decider_cache_hits_total` / `_misses_total` | counter | |
| `steadyflow_task_queue_depth` | gauge | queue, state (visible, in_flight, delayed) |

The waiting gauge is set by whoever polls the task list (`set_tasks_waiting`): the worker pool
samples `engine.count_waiting_activity_tasks` every few seconds; it is not computed at scrape time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

OUTCOMES = ("completed", "failed", "timed_out")
"""What `task_finished` accepts as `outcome`."""

#: Seconds. Activities run from milliseconds to hours; schedule-to-start is usually short.
RUN_TIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
DECISION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

try:
    import prometheus_client as _prom
except ImportError:  # pragma: no cover - exercised only without the `ui` extra
    _prom = None  # type: ignore[assignment]


def available() -> bool:
    """True when `prometheus-client` is installed (else every hook does nothing)."""
    return _prom is not None


class Metrics:
    """steadyflow's series in one `CollectorRegistry` (a new one unless `registry` is given)."""

    def __init__(self, registry: Any = None) -> None:
        if _prom is None:
            raise ImportError("metrics need prometheus-client: pip install 'steadyflow[ui]'")
        self.registry = registry if registry is not None else _prom.CollectorRegistry(auto_describe=True)
        r = self.registry
        p = _prom
        self.started = p.Counter(
            "steadyflow_activity_tasks_started", "Activity tasks handed to a worker process.",
            ["activity", "task_list"], registry=r,
        )
        self.completed = p.Counter(
            "steadyflow_activity_tasks_completed", "Activity task attempts that returned a result.",
            ["activity"], registry=r,
        )
        self.failed = p.Counter(
            "steadyflow_activity_tasks_failed", "Activity task attempts that raised or whose process died.",
            ["activity"], registry=r,
        )
        self.timed_out = p.Counter(
            "steadyflow_activity_tasks_timed_out", "Activity task attempts stopped by a timeout.",
            ["activity"], registry=r,
        )
        self.schedule_to_start = p.Histogram(
            "steadyflow_activity_schedule_to_start_seconds",
            "Seconds an activity task waited in its task list before a worker took it.",
            ["activity", "task_list"], buckets=RUN_TIME_BUCKETS, registry=r,
        )
        self.run_time = p.Histogram(
            "steadyflow_activity_run_time_seconds", "Seconds from hand-over to outcome of an activity task attempt.",
            ["activity", "outcome"], buckets=RUN_TIME_BUCKETS, registry=r,
        )
        self.decision_latency = p.Histogram(
            "steadyflow_decision_latency_seconds", "Seconds a decider took to replay and answer a decision task.",
            buckets=DECISION_BUCKETS, registry=r,
        )
        self.waiting = p.Gauge(
            "steadyflow_activity_tasks_waiting", "Activity tasks scheduled and not yet started, per task list.",
            ["task_list"], registry=r,
        )
        self.queue_depth = p.Gauge(
            "steadyflow_task_queue_depth",
            "Messages of a task queue by state (visible, in_flight, delayed), read by the tasks worker or"
            " `steadyflow tasks depth/scale`.",
            ["queue", "state"], registry=r,
        )
        self.cache_hits = p.Counter(
            "steadyflow_decider_cache_hits", "Decision tasks answered from the decider's cached workflow state.",
            registry=r,
        )
        self.cache_misses = p.Counter(
            "steadyflow_decider_cache_misses", "Decision tasks that needed a full replay (no cached state).",
            registry=r,
        )

    # -- activity tasks ----------------------------------------------------------------------------

    def task_started(self, activity: str, task_list: str, schedule_to_start: float | None = None) -> None:
        """A worker took a task of `activity` from `task_list` (after `schedule_to_start` seconds, if known)."""
        self.started.labels(activity, task_list).inc()
        if schedule_to_start is not None:
            self.schedule_to_start.labels(activity, task_list).observe(max(0.0, schedule_to_start))

    def task_finished(self, activity: str, outcome: str, run_time: float | None = None) -> None:
        """An attempt of `activity` ended with `outcome` (one of `OUTCOMES`) after `run_time` seconds."""
        counter = {"completed": self.completed, "failed": self.failed, "timed_out": self.timed_out}.get(outcome)
        if counter is None:
            raise ValueError(f"unknown outcome {outcome!r} (expected one of {', '.join(OUTCOMES)})")
        counter.labels(activity).inc()
        if run_time is not None:
            self.run_time.labels(activity, outcome).observe(max(0.0, run_time))

    def set_tasks_waiting(self, task_list: str, count: int) -> None:
        """How many activity tasks wait on `task_list` now."""
        self.waiting.labels(task_list).set(count)

    def set_queue_depth(self, queue: str, counts: dict[str, int]) -> None:
        """The messages of task queue `queue` now, by state (`{"visible": 3, "in_flight": 1, ...}`)."""
        for state, count in counts.items():
            self.queue_depth.labels(queue, state).set(count)

    # -- decisions ---------------------------------------------------------------------------------

    def decision(self, latency: float) -> None:
        """A decision task was answered (completed or failed) `latency` seconds after it was leased."""
        self.decision_latency.observe(max(0.0, latency))

    def cache_hit(self) -> None:
        self.cache_hits.inc()

    def cache_miss(self) -> None:
        self.cache_misses.inc()

    # -- export ------------------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The series in Prometheus' text format (what `/metrics` serves)."""
        return bytes(_prom.generate_latest(self.registry))

    def serve(self, port: int, host: str = "127.0.0.1") -> Any:
        """Serve `/metrics` on `host:port` from a daemon thread; return the HTTP server.

        Binds the loopback interface unless told otherwise: metrics name activities and task lists,
        which is nothing to publish to a network by default. `port=0` picks a free port
        (`server.server_port`). Stop it with `server.shutdown()`.
        """
        server, _thread = _prom.start_http_server(port, addr=host, registry=self.registry)
        return server


_default: Metrics | None = None
_default_lock = threading.Lock()
_warned: set[str] = set()


def default() -> Metrics | None:
    """The process-wide `Metrics` the hooks record into (None without prometheus-client)."""
    global _default
    if _default is None and _prom is not None:
        with _default_lock:
            if _default is None:
                _default = Metrics()
    return _default


def reset() -> Metrics | None:
    """Start the process-wide series afresh (for tests); returns the new `Metrics`."""
    global _default
    with _default_lock:
        _default = None
    return default()


def _hook(name: str, call: Callable[[Metrics], None]) -> None:
    """Record into the default registry; log a failure once per hook, never raise it."""
    metrics = default()
    if metrics is None:
        return
    try:
        call(metrics)
    except Exception:
        if name not in _warned:
            _warned.add(name)
            log.warning("metrics hook %s failed; the worker goes on without it", name, exc_info=True)


def task_started(activity: str, task_list: str, schedule_to_start: float | None = None) -> None:
    """Hook: a worker took a task of `activity` from `task_list`."""
    _hook("task_started", lambda m: m.task_started(activity, task_list, schedule_to_start))


def task_finished(activity: str, outcome: str, run_time: float | None = None) -> None:
    """Hook: an attempt of `activity` ended; `outcome` is completed, failed or timed_out."""
    _hook("task_finished", lambda m: m.task_finished(activity, outcome, run_time))


def set_tasks_waiting(task_list: str, count: int) -> None:
    """Hook: `count` activity tasks wait on `task_list` now."""
    _hook("set_tasks_waiting", lambda m: m.set_tasks_waiting(task_list, count))


def set_queue_depth(queue: str, counts: dict[str, int]) -> None:
    """Hook: task queue `queue` holds these messages by state now."""
    _hook("set_queue_depth", lambda m: m.set_queue_depth(queue, counts))


def decision(latency: float) -> None:
    """Hook: a decision task was answered `latency` seconds after it was leased."""
    _hook("decision", lambda m: m.decision(latency))


def cache_hit() -> None:
    """Hook: the decider answered from its cache."""
    _hook("cache_hit", lambda m: m.cache_hit())


def cache_miss() -> None:
    """Hook: the decider had to replay the whole history."""
    _hook("cache_miss", lambda m: m.cache_miss())


def serve(port: int, host: str = "127.0.0.1") -> Any:
    """Serve the process-wide series on `http://host:port/metrics`; return the HTTP server."""
    metrics = default()
    if metrics is None:
        from .errors import ConfigError

        raise ConfigError("metrics need prometheus-client: pip install 'steadyflow[ui]'")
    return metrics.serve(port, host)


__all__ = [
    "OUTCOMES",
    "Metrics",
    "available",
    "cache_hit",
    "cache_miss",
    "decision",
    "default",
    "reset",
    "serve",
    "set_queue_depth",
    "set_tasks_waiting",
    "task_finished",
    "task_started",
]
