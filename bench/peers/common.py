"""What every peer script shares. The peer scripts run in the benchmark's own virtualenv (see
`bench/peers.sh`), never import steadyflow, and print one JSON object on their last line:
`{"1": {"rate": ...}, "3": {"p50": ..., "p99": ...}, ...}` keyed by the suite's row numbers."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rows", default="1,2,3,5", help="comma-separated row numbers")
    parser.add_argument("--fanout", type=int, default=5000)
    parser.add_argument("--sequential", type=int, default=1000)
    parser.add_argument("--roundtrips", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--url", default="", help="the service the peer uses (database or broker URL)")
    args = parser.parse_args()
    args.rows = {int(r) for r in args.rows.split(",") if r.strip()}
    return args


def emit(results: dict) -> None:
    print(json.dumps({str(k): v for k, v in results.items()}), flush=True)


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def latency_summary(times_ms: list[float]) -> dict:
    ordered = sorted(times_ms)
    return {"p50": statistics.median(ordered), "p99": ordered[max(0, round(len(ordered) * 0.99) - 1)],
            "runs": len(ordered)}


def wait_until(predicate: Callable[[], bool], timeout: float, pause: float = 0.01, what: str = "work") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(pause)


def round_trips(runs: int, once: Callable[[int], object]) -> dict:
    """`once(i)` starts one job and returns when its result is there; one warm-up run first."""
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        once(i)
        times.append((time.perf_counter() - t0) * 1000)
    return latency_summary(times[1:])
