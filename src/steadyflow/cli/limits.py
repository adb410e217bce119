"""`steadyflow limits`: concurrency and rate limits of a task list, enforced by the engine."""

from __future__ import annotations

import click

from ..engines.limits import TaskListLimits, parse_rate
from ..errors import ConfigError
from .common import Context, emit, format_option, pass_ctx


@click.group("limits")
def limits_group() -> None:
    """Concurrency and rate limits of activity task lists (across every worker and host)."""


@limits_group.command("set")
@click.argument("task_list")
@click.option("--concurrency", type=int, help="At most this many of its tasks running at once.")
@click.option("--rate", help="At most this many starts per period: 100/m, 20/s, 5/10s.")
@click.option("--per-key", type=int, help="At most this many running with one concurrency key.")
@pass_ctx
def set_cmd(ctx: Context, task_list: str, concurrency: int | None, rate: str | None, per_key: int | None) -> None:
    """Set (replace) the limits of TASK_LIST."""
    if concurrency is None and rate is None and per_key is None:
        raise ConfigError("give at least one of --concurrency, --rate, --per-key (or use `limits clear`)")
    count, period = parse_rate(rate) if rate else (None, None)
    ctx.engine().set_task_list_limits(TaskListLimits(task_list, concurrency, count, period, per_key))


@limits_group.command("list")
@format_option
@pass_ctx
def list_cmd(ctx: Context, fmt: str) -> None:
    """Every task list's limits."""
    rows = [{"Task list": x.task_list, "Concurrency": x.concurrency or "", "Rate": x.rate or "",
             "Per key": x.per_key or ""} for x in ctx.engine().task_list_limits()]
    emit(rows, fmt)


@limits_group.command("clear")
@click.argument("task_list")
@pass_ctx
def clear_cmd(ctx: Context, task_list: str) -> None:
    """Remove the limits of TASK_LIST."""
    if not ctx.engine().clear_task_list_limits(task_list):
        raise ConfigError(f"task list {task_list!r} has no limits")
