"""Long-running processes: `decider start`, `worker start`, and `standalone`, which runs both."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from ..worker import WorkerPool

from ..decider import Decider, load_workflow
from ..errors import ConfigError
from ..local import start
from ..workflow_steps import add_step_options
from .common import Context, parse_input, pass_ctx, serve_metrics, stop_on_signals
from .progress import Progress, ProgressTracker
from .workflow import finish

log = logging.getLogger("steadyflow.cli")

DEFAULT_HOST = "127.0.0.1"
"""The healthcheck's interface (`worker.health.DEFAULT_HOST`; not imported, to keep the CLI's start fast)."""


def _processes(value: int) -> int:
    if value < 0:
        raise ConfigError(f"--processes must be >= 0 (0 means one per CPU), got {value}")
    return value or (os.cpu_count() or 1)


@click.group("decider")
def decider_group() -> None:
    """Run deciders."""


@decider_group.command("start")
@click.argument("workflows", nargs=-1, required=True)
@click.option("--task-list", "-t", required=True, help="Decision task list to poll.")
@click.option("--metrics-port", type=int, metavar="PORT", help="Serve Prometheus metrics on PORT (/metrics).")
@click.option("--metrics-host", default=DEFAULT_HOST, show_default=True, help="Interface for the metrics (0.0.0.0: all).")
@pass_ctx
def decider_start(ctx: Context, workflows: tuple[str, ...], task_list: str, metrics_port: int | None,
                  metrics_host: str) -> None:
    """Decide for WORKFLOWS (MODULE.Class ...) on a task list until SIGTERM."""
    classes = [load_workflow(w) for w in workflows]
    _verbose()
    serve_metrics(metrics_port, metrics_host)
    stop = stop_on_signals()
    Decider(ctx.engine(), task_list, classes).run(stop)


@click.group("worker")
def worker_group() -> None:
    """Run activity workers."""


@worker_group.command("start")
@click.option("--task-list", "-t", required=True, help="Activity task list to poll.")
@click.option("--processes", "-N", "--nb-processes", type=int, default=0, show_default=True,
              help="Worker processes (0: one per CPU).")
@click.option("--module", "-m", "modules", multiple=True, help="Module to import in every worker process.")
@click.option("--start-method", type=click.Choice(["spawn", "forkserver", "fork"]), default="spawn", show_default=True)
@click.option("--maxtasksperchild", type=int, help="Replace a worker process after it ran this many tasks.")
@click.option("--max-memory", type=float, metavar="MB",
              help="Replace a worker process after a task that left its resident memory above MB.")
@click.option("--alarm-timeout", type=float, metavar="S",
              help="Default for activities without alarm_timeout: raise TimeoutError inside the task after S seconds.")
@click.option("--hard-timeout", type=float, metavar="S",
              help="Default for activities without hard_timeout: kill the task's process after S seconds.")
@click.option("--async-concurrency", type=int, default=1, show_default=True, metavar="N",
              help="Tasks each worker process runs at once: async def activities run side by side on an "
                   "event loop, other activities one at a time.")
@click.option("--kill-grace", type=float, default=5.0, show_default=True, metavar="S",
              help="After a hard timeout's SIGTERM, wait this long before SIGKILL.")
@click.option("--grace", type=float, default=30.0, show_default=True, metavar="S",
              help="On SIGTERM/SIGINT, let running tasks finish this long before handing them back.")
@click.option("--healthcheck", type=int, metavar="PORT", help="Serve GET / with the pool's health on PORT.")
@click.option("--healthcheck-host", default=DEFAULT_HOST, show_default=True,
              help="Interface for the healthcheck (0.0.0.0: all).")
@click.option("--metrics-port", type=int, metavar="PORT", help="Serve Prometheus metrics on PORT (/metrics).")
@click.option("--metrics-host", default=DEFAULT_HOST, show_default=True, help="Interface for the metrics (0.0.0.0: all).")
@click.option("--middleware-pre-execution", "--middleware-pre", "middleware_pre", multiple=True, metavar="MODULE.FUNC",
              help="Call FUNC(context) before each activity attempt (repeatable; default: ACTIVITY_MIDDLEWARES_PRE).")
@click.option("--middleware-post-execution", "--middleware-post", "middleware_post", multiple=True,
              metavar="MODULE.FUNC", help="Call FUNC(context, result=...) after each activity attempt "
                                          "(repeatable; default: ACTIVITY_MIDDLEWARES_POST).")
@pass_ctx
def worker_start(ctx: Context, task_list: str, processes: int, modules: tuple[str, ...], start_method: str,
                 maxtasksperchild: int | None, max_memory: float | None, alarm_timeout: float | None,
                 hard_timeout: float | None, async_concurrency: int, kill_grace: float, grace: float,
                 healthcheck: int | None, healthcheck_host: str, metrics_port: int | None, metrics_host: str,
                 middleware_pre: tuple[str, ...] = (), middleware_post: tuple[str, ...] = ()) -> None:
    """Run activities from a task list in a pool of processes until SIGTERM.

    The first SIGTERM or SIGINT stops polling and gives running tasks --grace seconds; what is
    still running then is handed back to be retried elsewhere. A second signal hands back at once.
    """
    from ..worker import WorkerPool
    from ..worker.middlewares import Middlewares

    _verbose()
    configured = Middlewares.from_settings()
    middlewares = Middlewares.of(middleware_pre or configured.pre, middleware_post or configured.post)
    if async_concurrency < 1:
        raise ConfigError(f"--async-concurrency must be >= 1, got {async_concurrency}")
    for flag, value in (("--kill-grace", kill_grace), ("--grace", grace)):
        if value < 0:
            raise ConfigError(f"{flag} must be >= 0 seconds, got {value:g}")
    serve_metrics(metrics_port, metrics_host)
    pool = WorkerPool(ctx.engine(), task_list, processes=_processes(processes), modules=modules,
                      start_method=start_method, maxtasksperchild=maxtasksperchild, max_memory=max_memory,
                      alarm_timeout=alarm_timeout, hard_timeout=hard_timeout, kill_grace=kill_grace, grace=grace,
                      log_level=logging.getLogger().getEffectiveLevel(), async_concurrency=async_concurrency,
                      middlewares=middlewares)
    serve(pool, healthcheck, healthcheck_host)




def serve(pool: WorkerPool, healthcheck: int | None = None, healthcheck_host: str = DEFAULT_HOST) -> None:
    """Run `pool` in this thread until SIGTERM/SIGINT (a second one: hand back at once), with an
    optional healthcheck on `healthcheck_host:healthcheck`."""
    from ..worker import HealthServer

    health = HealthServer(pool, healthcheck, healthcheck_host).start() if healthcheck else None
    try:
        stop = stop_on_signals(on_repeat=lambda: pool.stop(grace=0))
        pool.run(stop)
    finally:
        if health is not None:
            health.close()


def _verbose() -> None:
    if "LOG_LEVEL" not in os.environ:
        logging.getLogger("steadyflow").setLevel(logging.INFO)


#: Seconds between two looks at the history for `standalone`'s progress line.
PROGRESS_EVERY = 0.2


@click.command("standalone")
@click.argument("workflow")
@click.option("--input", "-i", "input_", help="JSON: a list of args, or {\"args\": [...], \"kwargs\": {...}}.")
@click.option("--workflow-id", help="Id of the execution (default: <name>-<random>).")
@click.option("--processes", "-N", "--nb-workers", "-W", type=int, default=0, show_default=True,
              help="Activity worker processes (0: one per CPU).")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show the tasks done, running and failed on stderr: a live line on a terminal, "
                   "plain lines when a count changes elsewhere.")
@click.option("--force-steps", multiple=True, help="Steps to run even if done (comma-separated; `*`: all).")
@click.option("--skip-steps", multiple=True, help="Steps to skip unless forced (comma-separated).")
@pass_ctx
def standalone(ctx: Context, workflow: str, input_: str | None, workflow_id: str | None, processes: int,
               progress: bool, force_steps: tuple[str, ...] = (), skip_steps: tuple[str, ...] = ()) -> None:
    """Run one execution of WORKFLOW to its end with a decider and a worker; print its result.

    Exit code 0 when it completes, 1 when it fails. Work is durable: it is recorded in the engine
    and can be inspected afterwards with `workflow list` and `workflow history`. Progress goes to
    stderr; stdout has only the result.
    """
    from ..worker import WorkerPool

    args, kwargs = parse_input(input_)
    kwargs = add_step_options(kwargs, force_steps, skip_steps)
    cls = load_workflow(workflow)
    n = _processes(processes)
    engine = ctx.engine()
    task_list = f"standalone-{uuid.uuid4().hex}"
    wid, rid = start(engine, cls, args, kwargs, workflow_id=workflow_id, task_list=task_list)
    click.echo(f"started {wid} {rid}", err=True)
    stop = stop_on_signals()
    decider = Decider(engine, task_list, [cls], activity_task_list=task_list)
    pool = WorkerPool(engine, task_list, processes=n, modules=(cls.__module__,))
    threads = [
        threading.Thread(target=decider.run, args=(stop, 0.2), name="decider", daemon=True),
        threading.Thread(target=pool.run, args=(stop,), name="worker", daemon=True),
    ]
    for t in threads:
        t.start()
    tracker = ProgressTracker(engine, wid, rid)
    display = Progress() if progress else None
    try:
        # By workflow id, not run id: a continue-as-new chain is followed to its last run.
        info = engine.describe_execution(wid)
        next_look = 0.0
        while info.is_open and not stop.is_set() and all(t.is_alive() for t in threads):
            if display is not None and time.monotonic() >= next_look:
                display.update(tracker.poll())
                next_look = time.monotonic() + PROGRESS_EVERY
            time.sleep(0.05)
            info = engine.describe_execution(wid)
        if display is not None:
            display.update(tracker.poll())
    finally:
        if display is not None:
            display.close()  # before anything else is printed
        stop.set()
        for t in threads:
            t.join(timeout=30)
    if info.is_open:
        click.echo(f"Error: stopped before {wid} closed; it stays open and can be resumed by a decider", err=True)
        raise SystemExit(1)
    finish(info, engine.payloads)
