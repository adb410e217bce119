"""`steadyflow tasks ...`: run task workers, send tasks, inspect queues and their dead letters.

Every command takes `--queue URL` (or `STEADYFLOW_TASKS_URL`): an SQS queue URL,
`sqlite:///FILE.db?queue=NAME` or `postgresql://...?queue=NAME`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import click

from ..errors import ConfigError, SteadyflowError
from .common import emit, format_option, parse_json, serve_metrics

queue_option = click.option("--queue", "url", envvar="STEADYFLOW_TASKS_URL", required=True, metavar="URL",
                            help="Queue URL (env STEADYFLOW_TASKS_URL).")


def _one_line(func: Callable[..., Any]) -> Callable[..., Any]:
    """Driver errors (boto3, psycopg) become one-line `SteadyflowError`s, passwords redacted."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (SteadyflowError, click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            module = type(exc).__module__ or ""
            if not module.startswith(("botocore", "boto3", "psycopg", "sqlite3", "urllib3")):
                raise
            from ..tasks.errors import TaskQueueError
            from ..tasks.urls import redact

            raise TaskQueueError(redact(" ".join(f"{type(exc).__name__}: {exc}".split()))) from None

    return wrapper


def metrics_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """`--metrics-port`, `--metrics-host` and `--depth-interval`: serve the queue depth gauges."""
    func = click.option("--depth-interval", type=click.FloatRange(min=0.1), default=5, show_default=True,
                        help="With --metrics-port: seconds between two readings of the queue depth.")(func)
    func = click.option("--metrics-host", default="127.0.0.1", show_default=True,
                        help="Interface the metrics are served on.")(func)
    return click.option("--metrics-port", type=click.IntRange(0, 65535), metavar="PORT",
                        help="Serve Prometheus metrics, steadyflow_task_queue_depth among them, on PORT.")(func)




def _manager(url: str) -> Any:
    from ..tasks import TaskManager

    return TaskManager(url)


@click.group("tasks")
def tasks_group() -> None:
    """Task queues without workflows (sqstaskmaster's model) on SQS, SQLite or PostgreSQL."""


@tasks_group.command("worker")
@click.argument("modules", nargs=-1, required=True)
@queue_option
@click.option("--processes", "-N", type=int, default=1, show_default=True, help="Consumer processes.")
@click.option("--wait-time", type=click.FloatRange(0, 20), default=10, show_default=True,
              help="Seconds one receive waits for a message.")
@click.option("--visibility-timeout", type=click.FloatRange(min=1), default=30, show_default=True,
              help="Seconds a received message stays hidden before its task's handler takes over.")
@click.option("--batch-size", type=click.IntRange(1, 10), default=1, show_default=True,
              help="Messages received per request (more than 1 only for short tasks).")
@click.option("--shutdown-grace", type=click.FloatRange(min=0), default=30, show_default=True,
              help="On SIGTERM, seconds a running task may finish before it is handed back.")
@click.option("--max-tasks-per-child", "--maxtasksperchild", "max_tasks_per_child", type=click.IntRange(min=1),
              metavar="N", help="Replace a consumer's task process after N tasks; 1: a fresh fork for every task "
                                "(default: no limit).")
@metrics_options
@_one_line
def worker(modules: tuple[str, ...], url: str, processes: int, wait_time: float, visibility_timeout: float,
           batch_size: int, shutdown_grace: float, max_tasks_per_child: int | None, metrics_port: int | None,
           metrics_host: str, depth_interval: float) -> None:
    """Import MODULES, then run their @task functions as messages arrive on --queue."""
    from ..tasks.worker import WorkerOptions, import_modules, serve

    import_modules(list(modules))
    serve_metrics(metrics_port, metrics_host)
    options = WorkerOptions(url=url, processes=processes, wait_time=wait_time, visibility_timeout=visibility_timeout,
                            batch_size=batch_size, shutdown_grace=shutdown_grace,
                            depth_interval=depth_interval if metrics_port is not None else None,
                            max_tasks_per_child=max_tasks_per_child)
    serve(options)


@tasks_group.command("submit")
@click.argument("task")
@queue_option
@click.option("--kwargs", "kwargs_json", default="{}", show_default=True, help="The task's arguments as a JSON object.")
@click.option("--delay", type=click.FloatRange(min=0), default=0, help="Seconds before it can be received.")
@click.option("--priority", type=int, default=0, help="Higher first (SQLite and PostgreSQL queues).")
@click.option("--limit-key", help="Its key for the queue's per-key limit (SQLite and PostgreSQL queues).")
@_one_line
def submit(task: str, url: str, kwargs_json: str, delay: float, priority: int, limit_key: str | None) -> None:
    """Send TASK with --kwargs; prints the message id."""
    kwargs = parse_json(kwargs_json, "--kwargs")
    if not isinstance(kwargs, dict):
        raise ConfigError("--kwargs must be a JSON object")
    click.echo(_manager(url).send(task, kwargs, delay=delay, priority=priority or None, limit_key=limit_key))


@tasks_group.command("stats")
@queue_option
@format_option
@_one_line
def stats(url: str, fmt: str) -> None:
    """The queue's attributes (message counts)."""
    attributes = _manager(url).attributes()
    emit([{"attribute": k, "value": v} for k, v in sorted(attributes.items())], fmt)


@tasks_group.group("dead-letters")
@queue_option
@click.pass_context
def dead_letters(ctx: click.Context, url: str) -> None:
    """Messages that could not be handled: list, retry or purge them."""
    ctx.obj = {"url": url}


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


@dead_letters.command("list")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@format_option
@click.pass_obj
@_one_line
def dead_letters_list(obj: dict[str, str], limit: int, fmt: str) -> None:
    """Show dead letters, oldest first."""
    rows = [
        {"message id": d.message_id, "reason": d.reason, "receives": d.receive_count,
         "dead since": _when(d.dead_lettered_at), "body": d.body}
        for d in _manager(obj["url"]).dead_letters(limit)
    ]
    if not rows and fmt != "json":
        click.echo("No dead letters.")
        return
    emit(rows, fmt)


@dead_letters.command("retry")
@click.option("--id", "ids", multiple=True, help="Retry only this message id (repeatable); default all.")
@click.pass_obj
@_one_line
def dead_letters_retry(obj: dict[str, str], ids: tuple[str, ...]) -> None:
    """Send dead letters back to the queue as new messages."""
    moved = _manager(obj["url"]).retry_dead_letters(list(ids) if ids else None)
    click.echo(f"Retried {moved} message(s).")
    if ids and moved < len(ids):
        raise click.exceptions.Exit(1)


@dead_letters.command("purge")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
@_one_line
def dead_letters_purge(obj: dict[str, str], yes: bool) -> None:
    """Delete every dead letter."""
    if not yes:
        click.confirm("Delete every dead letter of this queue?", abort=True)
    count = _manager(obj["url"]).purge_dead_letters()
    click.echo(f"Purged {count} message(s).")


@dead_letters.command("configure")
@click.option("--max-receives", type=click.IntRange(min=1), required=True)
@click.pass_obj
@_one_line
def dead_letters_configure(obj: dict[str, str], max_receives: int) -> None:
    """SQS: set a redrive policy to `<queue>-dead-letter` after N receives."""
    from ..tasks.urls import kind

    if kind(obj["url"]) != "sqs":
        raise ConfigError(f"on SQLite and PostgreSQL queues, add max_receives={max_receives} to the queue URL instead")
    from ..tasks.sqs import configure_dead_letters

    click.echo(json.dumps({"dead_letter_queue": configure_dead_letters(obj["url"], max_receives)}))


@tasks_group.command("depth")
@click.option("--queue", "urls", envvar="STEADYFLOW_TASKS_URL", multiple=True, required=True, metavar="URL",
              help="Queue URL (repeatable; env STEADYFLOW_TASKS_URL, several separated by spaces).")
@format_option
@metrics_options
@_one_line
def depth(urls: tuple[str, ...], fmt: str, metrics_port: int | None, metrics_host: str, depth_interval: float) -> None:
    """Messages of each queue: visible, in flight, delayed. With --metrics-port, keep serving them as
    steadyflow_task_queue_depth{queue,state} (for a Kubernetes autoscaler) until interrupted."""
    from ..tasks.depth import depth_of, publish

    managers = [_manager(url) for url in urls]
    if metrics_port is None:
        depths = [depth_of(m) for m in managers]
        for d in depths:
            publish(d)
        emit([{"queue": d.queue, "visible": d.visible, "in flight": d.in_flight, "delayed": d.delayed,
               "total": d.total} for d in depths], fmt)
        return
    serve_metrics(metrics_port, metrics_host)
    _every(depth_interval, lambda: [publish(depth_of(m)) for m in managers])


@tasks_group.command("scale")
@click.option("--rules", "rules_text", required=True, metavar="FILE|JSON",
              help="Provisioner rules: a JSON file or JSON text, a list of {queue_name, service_name, "
                   "cluster_name, active_size}.")
@click.option("--interval", type=click.FloatRange(min=1), default=None,
              help="Run the rules every this many seconds until interrupted (default: once).")
@format_option
@metrics_options
@_one_line
def scale(rules_text: str, interval: float | None, fmt: str, metrics_port: int | None, metrics_host: str,
          depth_interval: float) -> None:
    """Set each rule's ECS service to its active size when its queue has work, to 0 when not
    (sqstaskmaster's queue_scale.Provisioner). Exit status 1 when a rule failed (single run)."""
    from ..tasks.queue_scale import Provisioner, load_rules

    provisioner = Provisioner(load_rules(rules_text))
    if interval is None:
        results = provisioner.run()
        emit([{"queue": r.depth.queue if r.depth else "", "cluster": r.rule[Provisioner.CLUSTER_NAME],
               "service": r.rule[Provisioner.SERVICE_NAME], "work": r.depth.total if r.depth else "",
               "desired count": "" if r.desired_count is None else r.desired_count,
               "error": "" if r.error is None else " ".join(f"{type(r.error).__name__}: {r.error}".split())}
              for r in results], fmt)
        failed = [r for r in results if r.error is not None]
        if failed:
            from ..tasks.errors import TaskQueueError

            raise TaskQueueError(f"{len(failed)} of {len(results)} rule(s) failed (see the error column)")
        return
    serve_metrics(metrics_port, metrics_host)
    _every(interval, provisioner.run)


def _every(seconds: float, call: Callable[[], Any]) -> None:
    """Call `call` now and every `seconds` until Ctrl-C or SIGTERM; a failing call is logged."""
    import logging
    import signal
    import threading

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    log = logging.getLogger("steadyflow.tasks")
    try:
        while not stop.is_set():
            try:
                call()
            except Exception as exc:  # noqa: BLE001 - a long-running exporter outlives a bad moment
                log.error("%s: %s", type(exc).__name__, " ".join(str(exc).split()))
            stop.wait(seconds)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


@tasks_group.group("limits")
def limits_group() -> None:
    """Concurrency, rate and per-key limits of SQLite and PostgreSQL queues (SQS cannot enforce them)."""


@limits_group.command("set")
@queue_option
@click.option("--concurrency", type=int, help="At most this many messages in flight at once, in all.")
@click.option("--rate", help="At most this many receives per period: 100/m, 10/s, 5/10s.")
@click.option("--per-key", type=int, help="At most this many in flight with one key.")
@click.option("--key", "key_argument", metavar="ARGUMENT",
              help="The task argument whose value is the key (else the limit_key given at submit).")
@_one_line
def limits_set(url: str, concurrency: int | None, rate: str | None, per_key: int | None,
               key_argument: str | None) -> None:
    """Set (replace) the limits of the --queue."""
    from ..tasks.depth import queue_label
    from ..tasks.limits import QueueLimits

    if concurrency is None and rate is None and per_key is None:
        raise ConfigError("give at least one of --concurrency, --rate, --per-key (or use `tasks limits clear`)")
    _refuse_sqs(url)
    # Bad values are refused before the queue is opened, which would create a SQLite file.
    QueueLimits.parse(queue_label(url), concurrency, rate, per_key, key_argument)
    _manager(url).set_limits(concurrency=concurrency, rate=rate, per_key=per_key, key=key_argument)


@limits_group.command("list")
@queue_option
@format_option
@_one_line
def limits_list(url: str, fmt: str) -> None:
    """The limits of every queue in the --queue's database."""
    _refuse_sqs(url)
    rows = [{"queue": x.queue, "concurrency": x.concurrency or "", "rate": x.rate or "", "per key": x.per_key or "",
             "key": x.key or ""} for x in _manager(url).backend.all_limits()]
    emit(rows, fmt, columns=["queue", "concurrency", "rate", "per key", "key"])


@limits_group.command("clear")
@queue_option
@_one_line
def limits_clear(url: str) -> None:
    """Remove the limits of the --queue."""
    _refuse_sqs(url)
    if not _manager(url).clear_limits():
        raise ConfigError("this queue has no limits")


def _refuse_sqs(url: str) -> None:
    from ..tasks.task_manager import _NO_LIMITS
    from ..tasks.urls import kind, redact

    if kind(url) == "sqs":
        raise ConfigError(f"{redact(url)}: {_NO_LIMITS}")
