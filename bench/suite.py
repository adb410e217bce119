"""The benchmark suite of issue 9: steadyflow and its peers, the same workloads, one markdown table.

    python3 -m bench [--scale 0.1] [--rows 1,2,3,4,5] [--postgres URL] [--redis URL] [--no-peers]

Rows, each on SQLite and on PostgreSQL (2 worker processes everywhere):

1. no-op activities per second: a fan-out workflow of 5,000 activities;
2. a sequential workflow of 1,000 one-step activities: steps per second;
3. round trip of one activity, start workflow -> result: p50 and p99 over 200 runs;
4. decider CPU for 1,000 and 10,000 sequential steps (the decider process's CPU time; their ratio
   shows whether replay is linear);
5. queue-only tasks per second (`steadyflow.tasks`): submit -> handled -> deleted, 5,000 tasks.

steadyflow runs as deployed: `steadyflow decider start` and `steadyflow worker start --processes 2`,
processes of their own (`--in-process`: a decider thread and the pool in the bench's process, as
`standalone`; row 4 is then the decider thread's CPU time). `--scale` multiplies every size (round trips: at least 20). The peers run in the benchmark's own
virtualenv (`sh bench/peers.sh` creates it, or `--setup-peers`), never in the project's: Huey on
SQLite (rows 1, 3, 5), Procrastinate and DBOS on the same PostgreSQL, each in a database of its own
that it creates and drops (rows 1, 2, 3, 5), Celery on Redis (rows 1, 3, 5). A peer whose package
or service is missing is listed as skipped, with the reason. Workers are started and warm before a
row's clock starts; round-trip waiters look for the result every millisecond, except where the peer
has its own way to wait (DBOS `get_result`, Celery `get`).

The ratio is steadyflow's figure over the peer's for throughput and the peer's p50 over ours for
latency: above 1, steadyflow is ahead. Not a test: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import core, tasks  # noqa: E402
from bench.workloads import FanOutBench, SequentialBench  # noqa: E402

PEERS_DIR = Path(__file__).resolve().parent / "peers"
PEERS_VENV = Path(tempfile.gettempdir()) / "steadyflow-bench-peers"
DEFAULT_POSTGRES = os.environ.get("STEADYFLOW_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
PROCESSES = 2
MEASURES = {
    1: "fan-out no-op activities/s",
    2: "sequential steps/s",
    3: "round trip ms p50 / p99",
    4: "decider CPU s, small / 10× steps",
    5: "queue tasks/s",
}


@dataclass
class Sizes:
    fanout: int
    sequential: int
    roundtrips: int
    tasks: int

    @classmethod
    def scaled(cls, scale: float) -> Sizes:
        return cls(max(10, round(5000 * scale)), max(10, round(1000 * scale)), max(20, round(200 * scale)),
                   max(10, round(5000 * scale)))


@dataclass
class Peer:
    name: str
    script: str
    module: str
    service: str  # "sqlite", "postgresql" or "redis"
    rows: tuple[int, ...]
    compare_with: tuple[str, ...]  # the steadyflow engines its figures are set against
    results: dict = field(default_factory=dict)
    skipped: str | None = None
    version: str = ""


PEERS = (
    Peer("Huey", "huey_peer.py", "huey", "sqlite", (1, 3, 5), ("sqlite",)),
    Peer("Procrastinate", "procrastinate_peer.py", "procrastinate", "postgresql", (1, 2, 3, 5), ("postgresql",)),
    Peer("DBOS", "dbos_peer.py", "dbos", "postgresql", (1, 2, 3, 5), ("postgresql",)),
    Peer("Celery", "celery_peer.py", "celery", "redis", (1, 3, 5), ("sqlite", "postgresql")),
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- steadyflow ------------------------------------------------------------------------------------


def measure_steadyflow(base: str | None, rows: set[int], sizes: Sizes, tmp: str, in_process: bool) -> dict:
    """Our figures on one engine (`base` None: a new SQLite file per workload)."""
    out: dict = {}

    def workflow(cls, n: int, name: str) -> dict:
        with core.fresh_engine_url(base, tmp, name) as url:
            return core.run_one(url, cls, n, PROCESSES, in_process)

    if 1 in rows:
        out[1] = {"rate": workflow(FanOutBench, sizes.fanout, "fanout")["rate"]}
    if rows & {2, 4}:
        small = workflow(SequentialBench, sizes.sequential, "sequential")
        out[2] = {"rate": small["rate"]}
        if 4 in rows:
            large = workflow(SequentialBench, sizes.sequential * 10, "sequential-10x")
            out[4] = {"small": small["decider_cpu"], "large": large["decider_cpu"],
                      "ratio": large["decider_cpu"] / max(small["decider_cpu"], 1e-9),
                      "steps": (sizes.sequential, sizes.sequential * 10)}
    if 3 in rows:
        with core.fresh_engine_url(base, tmp, "roundtrip") as url:
            out[3] = core.round_trips(url, sizes.roundtrips, PROCESSES, in_process)
    if 5 in rows:
        with core.fresh_engine_url(base, tmp, "tasks") as url:
            url = f"{url}{'&' if '?' in url else '?'}queue=bench"
            seconds = tasks.run_steadyflow(url, sizes.tasks, None, warm=True)
            out[5] = {"rate": sizes.tasks / seconds}
    return out


# -- peers -----------------------------------------------------------------------------------------


def setup_peers(venv: Path) -> None:
    subprocess.run(["sh", str(Path(__file__).resolve().parent / "peers.sh"), str(venv)], check=True)


def _answers(url: str, default_port: int) -> str | None:
    """None when a TCP server answers at the URL's host and port, else why not."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=2):
            return None
    except OSError as exc:
        return f"nothing answers at {host}:{port} ({exc.strerror or exc})"


def run_peer(peer: Peer, venv: Path, rows: set[int], sizes: Sizes, services: dict[str, str | None]) -> None:
    python = venv / "bin" / "python"
    wanted = sorted(rows & set(peer.rows))
    if not wanted:
        return
    if not python.exists():
        peer.skipped = f"no benchmark virtualenv at {venv} (run `sh bench/peers.sh`)"
        return
    probe = subprocess.run([str(python), "-c", f"import importlib.metadata as m; print(m.version({peer.module!r}))"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        peer.skipped = f"{peer.module} is not installed in {venv}"
        return
    peer.version = probe.stdout.strip()
    url = services.get(peer.service)
    if peer.service != "sqlite":
        reason = services.get(peer.service + "-down")
        if reason:
            peer.skipped = reason
            return
    command = [str(python), str(PEERS_DIR / peer.script), "--rows", ",".join(map(str, wanted)),
               "--fanout", str(sizes.fanout), "--sequential", str(sizes.sequential),
               "--roundtrips", str(sizes.roundtrips), "--tasks", str(sizes.tasks)]
    if url:
        command += ["--url", url]
    env = {**os.environ, "PYTHONPATH": str(PEERS_DIR)}
    log(f"{peer.name} {peer.version}: rows {wanted}")
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        peer.skipped = f"failed: {lines[-1][:160] if lines else f'exit status {done.returncode}'}"
        return
    peer.results = {int(k): v for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


# -- the table -------------------------------------------------------------------------------------

ENGINE_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def figure(row: int, value: dict | None) -> str:
    if not value:
        return "—"
    if row == 3:
        return f"{value['p50']:.1f} / {value['p99']:.1f}"
    if row == 4:
        return f"{value['small']:.2f} / {value['large']:.2f} ({value['steps'][0]:,} / {value['steps'][1]:,} steps)"
    return f"{value['rate']:,.0f}"


def ratio(row: int, ours: dict | None, theirs: dict | None) -> float | None:
    if not ours or not theirs:
        return None
    if row == 3:
        return theirs["p50"] / ours["p50"] if ours["p50"] else None
    return ours["rate"] / theirs["rate"] if theirs["rate"] else None


def _at_least(times: float, *names: str, best_of: bool = False) -> Callable:
    """A target on ratios to peers: None (not judged) when a peer's figure is missing."""
    def check(r: Callable, ours: dict) -> bool | None:
        ratios = [r(name) for name in names]
        known = [x for x in ratios if x is not None]
        if not known or (not best_of and len(known) < len(ratios)):
            return None
        return min(known) >= times  # against the better peer: our ratio to it is the smallest
    return check


TARGETS: dict[tuple[int, str], tuple[str, Callable]] = {
    (1, "sqlite"): ("≥ 2× Huey", _at_least(2, "Huey")),
    (1, "postgresql"): ("≥ 2× the better of Procrastinate and DBOS",
                        _at_least(2, "Procrastinate", "DBOS", best_of=True)),
    (2, "postgresql"): ("≥ 2× DBOS", _at_least(2, "DBOS")),
    (3, "sqlite"): ("p50 ≤ 5 ms", lambda r, ours: ours["p50"] <= 5),
    (3, "postgresql"): ("p50 ≤ 5 ms", lambda r, ours: ours["p50"] <= 5),
    (4, "sqlite"): ("≤ 12×", lambda r, ours: ours["ratio"] <= 12),
    (4, "postgresql"): ("≤ 12×", lambda r, ours: ours["ratio"] <= 12),
    (5, "sqlite"): ("≥ Huey and ≥ Celery", _at_least(1, "Huey", "Celery")),
    (5, "postgresql"): ("≥ Celery", _at_least(1, "Celery")),
}


def table(ours: dict[str, dict], peers: tuple[Peer, ...], rows: set[int]) -> list[str]:
    lines = ["| row | measure | engine | steadyflow | peer | peer's figure | ratio | target | met |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in sorted(rows):
        for engine, figures in ours.items():
            mine = figures.get(row)
            if mine is None and "error" not in figures:
                continue
            facing = [p for p in peers if row in p.rows and engine in p.compare_with]

            def r(name: str, row=row, mine=mine, facing=facing) -> float | None:
                peer = next((p for p in facing if p.name == name), None)
                return ratio(row, mine, peer.results.get(row)) if peer is not None else None

            target, check = TARGETS.get((row, engine), ("", None))
            met = ""
            if check is not None and mine:
                verdict = check(r, mine)
                met = "n/a" if verdict is None else "yes" if verdict else "**no**"
            ours_text = figure(row, mine) if mine else f"failed: {figures.get('error', '')}"[:80]
            if row == 4 and mine:
                ours_text += f", ×{mine['ratio']:.1f}"
            prefix = f"| {row} | {MEASURES[row]} | {ENGINE_NAMES[engine]} | {ours_text} |"
            if not facing:
                lines.append(f"{prefix} — | — | — | {target} | {met} |")
                continue
            for i, peer in enumerate(facing):
                label = f"{peer.name} {peer.version}".strip()
                if peer.service == "redis":
                    label += " (Redis)"
                if peer.skipped:
                    cells = f"{label} | skipped: {peer.skipped} | —"
                else:
                    theirs = peer.results.get(row)
                    value = ratio(row, mine, theirs)
                    cells = f"{label} | {figure(row, theirs)} | {'—' if value is None else f'{value:.2f}×'}"
                tail = f"{target} | {met} |" if i == 0 else " | |"
                lines.append(f"{prefix} {cells} | {tail}")
    return lines


# -- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every size (0.1 for a quick run)")
    parser.add_argument("--rows", default="1,2,3,4,5", help="comma-separated row numbers (default: all)")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="PostgreSQL server for our rows and the peers'")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite rows only")
    parser.add_argument("--redis", default=DEFAULT_REDIS, help="Redis for Celery")
    parser.add_argument("--no-peers", action="store_true", help="steadyflow's figures only")
    parser.add_argument("--in-process", action="store_true",
                        help="decider thread and worker pool in the bench's process (as `standalone`), "
                             "not `decider start` and `worker start` processes")
    parser.add_argument("--peers", default="", help="comma-separated peer names to run (default: all)")
    parser.add_argument("--peers-venv", type=Path, default=PEERS_VENV, help="the benchmark's own virtualenv")
    parser.add_argument("--setup-peers", action="store_true", help="create or update that virtualenv first")
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error(f"--scale must be positive, not {args.scale}")
    try:
        rows = {int(r) for r in args.rows.split(",") if r.strip()}
    except ValueError:
        parser.error(f"--rows takes numbers 1 to 5, not {args.rows!r}")
    if not rows or not rows <= set(MEASURES):
        parser.error(f"--rows takes numbers 1 to 5, not {args.rows!r}")
    sizes = Sizes.scaled(args.scale)
    if args.setup_peers:
        setup_peers(args.peers_venv)
    services: dict[str, str | None] = {"sqlite": None, "postgresql": args.postgres, "redis": args.redis}
    services["postgresql-down"] = "--no-postgres" if args.no_postgres else _answers(args.postgres, 5432)
    services["redis-down"] = _answers(args.redis, 6379)
    engines: dict[str, str | None] = {"sqlite": None}
    if not services["postgresql-down"]:
        engines["postgresql"] = args.postgres
    ours: dict[str, dict] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for name, base in engines.items():
            log(f"steadyflow on {ENGINE_NAMES[name]}: rows {sorted(rows)}")
            try:
                ours[name] = measure_steadyflow(base, rows, sizes, tmp, args.in_process)
            except Exception as exc:  # noqa: BLE001 - one engine failing still leaves a table
                ours[name] = {"error": " ".join(f"{type(exc).__name__}: {exc}".split())}
    chosen = {p.strip().lower() for p in args.peers.split(",") if p.strip()}
    peers = tuple(Peer(**{k: getattr(p, k) for k in ("name", "script", "module", "service", "rows", "compare_with")})
                  for p in PEERS if not chosen or p.name.lower() in chosen)
    if args.no_peers:
        peers = ()
    for peer in peers:
        if peer.service == "postgresql" and "postgresql" not in engines:
            peer.skipped = f"no PostgreSQL ({services['postgresql-down']})"
            continue
        try:
            run_peer(peer, args.peers_venv, rows, sizes, services)
        except subprocess.TimeoutExpired:
            peer.skipped = "failed: took over an hour"
    shape = "decider thread and pool in one process" if args.in_process else "decider and worker processes"
    print(f"steadyflow benchmark suite, scale {args.scale:g}: fan-out {sizes.fanout:,}, sequential "
          f"{sizes.sequential:,}, round trips {sizes.roundtrips}, queue tasks {sizes.tasks:,}; "
          f"{PROCESSES} worker processes; steadyflow: {shape}; {time.monotonic() - started:.0f} s\n")
    print("\n".join(table(ours, peers, rows)))
    skipped_engines = "" if "postgresql" in engines else f"\nPostgreSQL rows skipped: {services['postgresql-down']}"
    print(f"\nratio: steadyflow ÷ peer for rates, peer p50 ÷ ours for round trips (> 1: steadyflow ahead)"
          f"{skipped_engines}")


if __name__ == "__main__":
    main()
