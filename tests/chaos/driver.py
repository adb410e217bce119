"""The chaos driver: real decider and worker processes on one engine, a mixed workload, and faults
injected at random from a recorded seed while it runs.

The seed fixes which faults are drawn, in which order, against which process and for how long;
the processes' own timing is not reproducible, so a seed replays the same storm, not the same
interleaving. Fault kinds:

- `kill_worker`, `kill_decider`: SIGKILL of a whole process group, then a fresh process;
- `kill_pool_child`: SIGKILL of one child of a worker's pool (the supervisor lives on);
- `kill_all`: SIGKILL of every decider and worker at once, then a fresh set;
- `pause_worker`, `pause_decider`: SIGSTOP longer than the heartbeat or decision timeout, then SIGCONT;
- `pg_terminate`: `pg_terminate_backend` of every connection of the run's schema (PostgreSQL);
- `clock_jump`: a process whose engine clock runs ahead fires timers and timeouts early
  (`open_engine(url, clock=...)`: the clock the test kit injects);
- `disk_full`: the tmpfs holding the SQLite file is filled up, held full, then freed (SQLite).
"""

from __future__ import annotations

import errno
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steadyflow.engines import open_engine
from steadyflow.errors import SteadyflowError, UnknownExecution, WorkflowAlreadyStarted
from steadyflow.local import start
from tests.fixtures import chaos_workflows as cw

ROOT = Path(__file__).resolve().parent.parent.parent
WORKFLOW_PATHS = [f"{w.__module__}.{w.__name__}" for w in cw.WORKFLOWS]
WEIGHTS = {"kill_all": 0.4}
"""How often a kind is drawn, relative to the others (1): a whole new cluster costs seconds of start-up."""


@dataclass
class Size:
    """How big a run is: `scale` multiplies the executions, the chaos window grows with it."""

    scale: int = 1
    deciders: int = 2
    workers: int = 2
    pool: int = 2

    @property
    def window(self) -> float:
        """Seconds during which faults are injected."""
        return 12.0 + 8.0 * (self.scale - 1)


def workload(scale: int, rng: random.Random) -> list[tuple[type, list[Any], str]]:
    """(workflow class, args, workflow id) of the executions to start, in a seeded random order."""
    items: list[tuple[type, list[Any], str]] = []
    for i in range(2 * scale):
        items.append((cw.ChaosFanOut, [10 * i, 4], f"fanout-{i}"))
        items.append((cw.ChaosSequential, [100 * i, 4], f"sequential-{i}"))
        items.append((cw.ChaosTimers, [i], f"timers-{i}"))
        items.append((cw.ChaosSignals, [3], f"signals-{i}"))
        items.append((cw.ChaosParent, [i], f"parent-{i}"))
        items.append((cw.ChaosBig, [cw.big_text(i)], f"big-{i}"))
        items.append((cw.ChaosRetry, [i, 2], f"retry-{i}"))
    rng.shuffle(items)
    return items


def retrying(fn: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Call `fn` until it does not raise an engine error (the driver itself lives through faults)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (SteadyflowError, OSError) as exc:
            if isinstance(exc, (UnknownExecution, WorkflowAlreadyStarted)) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        except Exception as exc:  # psycopg errors that escaped the engine's translation
            if type(exc).__module__.split(".")[0] != "psycopg" or time.monotonic() > deadline:
                raise AssertionError(f"{what}: {exc!r}") from exc
            time.sleep(0.2)


@dataclass
class Proc:
    kind: str  # "decider" or "worker"
    popen: subprocess.Popen
    log: Path
    paused_until: float | None = None


@dataclass
class Driver:
    url: str
    logs: Path
    seed: int
    size: Size
    schema: str | None = None  # PostgreSQL: the schema whose backends `pg_terminate` ends
    disk: Any = None  # SQLite on a small tmpfs: a `Disk`
    faults: Counter = field(default_factory=Counter)
    skipped: dict[str, str] = field(default_factory=dict)
    crashes: list[str] = field(default_factory=list)
    signals_sent: dict[str, list[int]] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.procs: list[Proc] = []
        self.spawned = 0
        self.engine = open_engine(self.url)
        self.jump = 0.0
        self.jumper = open_engine(self.url, clock=lambda: time.time() + self.jump)

    # -- processes -------------------------------------------------------------------------------

    def spawn(self, kind: str) -> None:
        self.spawned += 1
        log = self.logs / f"{kind}-{self.spawned}.log"
        if kind == "decider":
            args = ["decider", "start", "--task-list", cw.TASK_LIST, *WORKFLOW_PATHS]
        else:
            args = ["worker", "start", "--task-list", cw.TASK_LIST, "--processes", str(self.size.pool),
                    "--module", cw.__name__, "--grace", "1"]
        env = dict(os.environ, PYTHONPATH=str(ROOT), STEADYFLOW_URL=self.url, STEADYFLOW_BLOB_CACHE="off")
        with open(log, "w") as out:
            popen = subprocess.Popen([sys.executable, "-m", "steadyflow", *args], env=env, cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=out, start_new_session=True)
        self.procs.append(Proc(kind, popen, log))

    def _pick(self, kind: str) -> Proc | None:
        live = [p for p in self.procs if p.kind == kind and p.paused_until is None and p.popen.poll() is None]
        return self.rng.choice(live) if live else None

    def reap(self) -> None:
        """Resume paused processes whose pause is over; restart any that exited by themselves."""
        now = time.monotonic()
        for p in list(self.procs):
            if p.paused_until is not None and now >= p.paused_until:
                os.killpg(p.popen.pid, signal.SIGCONT)
                p.paused_until = None
            if p.popen.poll() is not None:
                tail = " | ".join(p.log.read_text(errors="replace").strip().splitlines()[-3:])
                self.crashes.append(f"{p.kind} {p.popen.pid} exit {p.popen.returncode}: {tail[-300:]}")
                self.procs.remove(p)
                self.spawn(p.kind)

    def stop(self) -> None:
        for p in self.procs:
            if p.popen.poll() is None:
                os.killpg(p.popen.pid, signal.SIGCONT)
                p.popen.terminate()
        for p in self.procs:
            try:
                p.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.popen.pid, signal.SIGKILL)
                p.popen.wait()
        self.jumper.close()
        self.engine.close()

    # -- faults ----------------------------------------------------------------------------------

    def kinds(self) -> list[str]:
        kinds = ["kill_worker", "kill_decider", "kill_pool_child", "pause_worker", "pause_decider", "clock_jump",
                 "kill_all"]
        if self.schema is not None:
            kinds.append("pg_terminate")
        if self.disk is not None:
            if self.disk.reason is None:
                kinds.append("disk_full")
            else:
                self.skipped["disk_full"] = self.disk.reason
        return kinds

    def inject(self, kind: str) -> None:
        if kind in ("kill_worker", "kill_decider"):
            victim = self._pick(kind.split("_")[1])
            if victim is None:
                return
            os.killpg(victim.popen.pid, signal.SIGKILL)
            victim.popen.wait()
            self.procs.remove(victim)
            self.spawn(victim.kind)
        elif kind == "kill_all":  # a power cut of the whole cluster: every process at once
            doomed = [p for p in self.procs if p.popen.poll() is None]
            for p in doomed:
                os.killpg(p.popen.pid, signal.SIGKILL)
            for p in doomed:
                p.popen.wait()
                self.procs.remove(p)
                self.spawn(p.kind)
        elif kind == "kill_pool_child":
            worker = self._pick("worker")
            children = pool_children(worker.popen.pid) if worker else []
            if not children:
                return
            try:
                os.kill(self.rng.choice(children), signal.SIGKILL)
            except ProcessLookupError:
                return
        elif kind in ("pause_worker", "pause_decider"):
            victim = self._pick(kind.split("_")[1])
            if victim is None:
                return
            timeout = cw.HEARTBEAT_TIMEOUT if victim.kind == "worker" else cw.DECISION_TIMEOUT
            os.killpg(victim.popen.pid, signal.SIGSTOP)
            victim.paused_until = time.monotonic() + timeout + 0.5 + self.rng.random() * 2
        elif kind == "pg_terminate":
            from tests import pg

            pg.terminate_backends(self.schema)
        elif kind == "clock_jump":
            self.jump = 5.0 + self.rng.random() * 25.0
            try:
                for _ in range(3):
                    retrying(self.jumper.fire_due, "fire_due ahead of time", timeout=5)
                    time.sleep(0.1)
            finally:
                self.jump = 0.0
        elif kind == "disk_full":
            self.disk.fill(hold=1.0 + self.rng.random() * 2.0, db=self.disk.where / "chaos.db")
        self.faults[kind] += 1

    # -- the run ---------------------------------------------------------------------------------

    def start_one(self, cls: type, args: list[Any], wid: str) -> None:
        def attempt() -> None:
            try:
                start(self.engine, cls, args, workflow_id=wid)
            except WorkflowAlreadyStarted:
                pass  # an earlier attempt committed before its connection was lost

        retrying(attempt, f"start {wid}")
        self.started.add(wid)
        if cls is cw.ChaosSignals:
            self.signals_sent[wid] = []

    def send_signal(self, wid: str) -> None:
        """Send the next signal once: an attempt whose outcome is unknown is checked in the history."""
        value = len(self.signals_sent[wid])

        def attempt() -> None:
            try:
                self.engine.signal_execution(wid, None, cw.SIGNAL_NAME, self.engine.payloads.dumps(value))
            except (SteadyflowError, OSError):
                recorded = [e for e in self.engine.get_history(wid) if e.event_type == "WorkflowExecutionSignaled"]
                if len(recorded) <= value:
                    raise

        retrying(attempt, f"signal {wid}")
        self.signals_sent[wid].append(value)

    def run(self, timeout: float) -> float:
        """Start everything, inject faults for the chaos window, then wait for every execution to
        close (the faults stop, the processes stay). Returns the wall time in seconds."""
        began = time.monotonic()
        for _ in range(self.size.deciders):
            self.spawn("decider")
        for _ in range(self.size.workers):
            self.spawn("worker")
        pending = workload(self.size.scale, self.rng)
        kinds = self.kinds()
        first = self.rng.sample(kinds, len(kinds))  # every kind once, in a seeded order, then at random
        window_end = began + self.size.window
        # Starts spread over the first 60% of the window, so that faults meet executions in every stage.
        start_at = sorted((began + 0.6 * self.size.window * k / len(pending) for k in range(len(pending))),
                          reverse=True)
        next_fault = began + 1.0
        while True:
            now = time.monotonic()
            self.reap()
            while pending and now >= start_at[len(pending) - 1]:
                self.start_one(*pending.pop())
            waiting = [w for w, sent in self.signals_sent.items() if len(sent) < 3]
            if waiting and self.rng.random() < 0.3:
                self.send_signal(self.rng.choice(waiting))
            if now < window_end and now >= next_fault:
                self.inject(first.pop() if first else self.rng.choices(kinds, [WEIGHTS.get(k, 1.0) for k in kinds])[0])
                next_fault = time.monotonic() + 0.3 + self.rng.random() * 0.9
            if now >= window_end and not pending and not waiting:
                if not retrying(lambda: self.engine.list_executions(status="open", limit=1), "list"):
                    break
            if now - began > timeout:
                raise AssertionError(self.stuck(timeout))
            time.sleep(0.1)
        for p in self.procs:  # nothing may stay paused once the run is over
            if p.paused_until is not None:
                os.killpg(p.popen.pid, signal.SIGCONT)
                p.paused_until = None
        return time.monotonic() - began


    def log_lines(self, *needles: str) -> int:
        """How many lines of the processes' logs mention any of `needles` (did a fault bite?)."""
        return sum(
            any(n in line for n in needles)
            for log in self.logs.glob("*.log")
            for line in log.read_text(errors="replace").splitlines()
        )

    def stuck(self, timeout: float) -> str:
        """What a run that did not finish looks like: open executions, their last events, the logs."""
        left = retrying(lambda: self.engine.list_executions(status="open", limit=1000), "list")
        lines = [f"seed {self.seed}: {len(left)} executions still open after {timeout:.0f} s "
                 f"(faults: {dict(self.faults)}); logs in {self.logs}"]
        for info in left[:5]:
            tail = [f"{e.event_id}:{e.event_type}" for e in self.engine.get_history(info.workflow_id)[-4:]]
            lines.append(f"  {info.workflow_id}: {tail}")
        for p in self.procs:
            text = p.log.read_text(errors="replace").strip().splitlines()
            lines.append(f"  {p.kind} {p.popen.pid} ({'alive' if p.popen.poll() is None else p.popen.returncode}): "
                         + " | ".join(text[-2:])[-400:])
        return "\n".join(lines)


def pool_children(pid: int) -> list[int]:
    """The worker processes of the pool supervised by `pid` (not multiprocessing's helpers)."""
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    pids = []
    for child in map(int, found):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" not in cmdline and b"forkserver" not in cmdline:
            pids.append(child)
    return pids


class Disk:
    """A small tmpfs for the SQLite file, filled to the last byte and freed again on request.

    Mounting needs root and mount rights; without them `reason` says why and the kind is skipped.
    """

    def __init__(self, where: Path, size_mb: int = 64) -> None:
        self.where = where
        self.reason: str | None = None
        where.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)],
                           check=True, capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError) as exc:
            stderr = getattr(exc, "stderr", b"") or b""
            self.reason = f"cannot mount a tmpfs ({stderr.decode(errors='replace').strip() or exc})"

    def fill(self, hold: float, db: Path | None = None) -> None:
        if db is not None:  # an empty WAL must grow to take the next write, so writers meet the full disk
            con = sqlite3.connect(db, timeout=0.5)
            try:
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # busy: the WAL stays as it is this time
            finally:
                con.close()
        ballast = self.where / "ballast"
        with open(ballast, "wb", buffering=0) as f:
            for size in (1 << 20, 4096):  # megabytes, then the last pages
                try:
                    while True:
                        f.write(b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
            time.sleep(hold)
        ballast.unlink()

    def unmount(self) -> None:
        if self.reason is None:
            subprocess.run(["umount", "-l", str(self.where)], check=False, capture_output=True, timeout=10)
