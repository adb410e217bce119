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
from .common import emit, format_option, parse_json

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
@_one_line
def worker(modules: tuple[str, ...], url: str, processes: int, wait_time: float, visibility_timeout: float,
           batch_size: int, shutdown_grace: float) -> None:
    """Import MODULES, then run their @task functions as messages arrive on --queue."""
    from ..tasks.worker import WorkerOptions, import_modules, serve

    import_modules(list(modules))
    options = WorkerOptions(url=url, processes=processes, wait_time=wait_time, visibility_timeout=visibility_timeout,
                            batch_size=batch_size, shutdown_grace=shutdown_grace)
    serve(options)


@tasks_group.command("submit")
@click.argument("task")
@queue_option
@click.option("--kwargs", "kwargs_json", default="{}", show_default=True, help="The task's arguments as a JSON object.")
@click.option("--delay", type=click.FloatRange(min=0), default=0, help="Seconds before it can be received.")
@click.option("--priority", type=int, default=0, help="Higher first (SQLite and PostgreSQL queues).")
@_one_line
def submit(task: str, url: str, kwargs_json: str, delay: float, priority: int) -> None:
    """Send TASK with --kwargs; prints the message id."""
    kwargs = parse_json(kwargs_json, "--kwargs")
    if not isinstance(kwargs, dict):
        raise ConfigError("--kwargs must be a JSON object")
    click.echo(_manager(url).send(task, kwargs, delay=delay, priority=priority or None))


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
