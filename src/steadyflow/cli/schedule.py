"""`steadyflow schedule`: create and drive schedules, and run the scheduler process."""

from __future__ import annotations

import importlib
import logging

import click

from ..schedules import OVERLAP_POLICIES, Scheduler, Schedules, registered
from ..schedules.spec import parse_time, slot_text
from ..schedules.store import ScheduleState
from .common import Context, emit, format_option, parse_input, pass_ctx, stop_on_signals, ts


@click.group("schedule")
def schedule_group() -> None:
    """Cron schedules that start workflows (and the scheduler that fires them)."""


def _row(s: ScheduleState) -> dict[str, object]:
    return {
        "Name": s.name,
        "Cron": s.spec.cron,
        "Time zone": s.spec.timezone,
        "Workflow": s.spec.workflow,
        "Overlap": s.spec.overlap,
        "State": "paused" if s.paused else "active",
        "Next slot": ts(s.next_slot),
        "Fired": s.fired,
        "Missed": s.missed,
        "Last run": s.running_workflow_id or "",
    }


@schedule_group.command("create")
@click.argument("name")
@click.argument("workflow")
@click.option("--cron", required=True, help="5 fields, or 6 with seconds last (e.g. '*/5 * * * *').")
@click.option("--timezone", "tz", default="UTC", show_default=True, help="IANA time zone the cron is read in.")
@click.option("--input", "-i", "input_", help='JSON: a list of args, or {"args": [...], "kwargs": {...}}.')
@click.option("--overlap", type=click.Choice(OVERLAP_POLICIES), default="skip", show_default=True,
              help="When the previous run is still open at a slot.")
@click.option("--catchup-window", type=float, default=60.0, show_default=True,
              help="Seconds after which a slot missed during downtime is dropped, not fired.")
@click.option("--jitter", type=float, default=0.0, show_default=True, help="Fire each slot up to this many seconds late.")
@click.option("--task-list", help="Decision task list of the runs (default: the workflow's).")
@click.option("--replace", is_flag=True, help="Update the schedule if it exists (its progress is kept).")
@pass_ctx
def create_cmd(ctx: Context, name: str, workflow: str, cron: str, tz: str, input_: str | None, overlap: str,
               catchup_window: float, jitter: float, task_list: str | None, replace: bool) -> None:
    """Create schedule NAME starting WORKFLOW (MODULE.Class) at every slot of --cron."""
    args, kwargs = parse_input(input_)
    state = Schedules(ctx.engine()).create(
        name, cron, workflow, args=args, kwargs=kwargs, replace=replace, timezone=tz, overlap=overlap,
        catchup_window=catchup_window, jitter=jitter, task_list=task_list,
    )
    click.echo(f"{state.name}: next slot {slot_text(state.next_slot)}")


@schedule_group.command("list")
@format_option
@pass_ctx
def list_cmd(ctx: Context, fmt: str) -> None:
    """Every schedule, with its next slot and how many runs it fired and missed."""
    emit([_row(s) for s in Schedules(ctx.engine()).list()], fmt)


@schedule_group.command("describe")
@click.argument("name")
@format_option
@pass_ctx
def describe_cmd(ctx: Context, name: str, fmt: str) -> None:
    """One schedule in detail."""
    emit([{"field": k, "value": v} for k, v in _row(Schedules(ctx.engine()).get(name)).items()], fmt)


@schedule_group.command("pause")
@click.argument("name")
@pass_ctx
def pause_cmd(ctx: Context, name: str) -> None:
    """Stop firing NAME until unpaused."""
    Schedules(ctx.engine()).pause(name)


@schedule_group.command("unpause")
@click.argument("name")
@pass_ctx
def unpause_cmd(ctx: Context, name: str) -> None:
    """Fire NAME again from the next slot (slots passed while paused are not caught up)."""
    Schedules(ctx.engine()).unpause(name)


@schedule_group.command("trigger")
@click.argument("name")
@pass_ctx
def trigger_cmd(ctx: Context, name: str) -> None:
    """Start a run of NAME now; print its workflow id."""
    click.echo(Schedules(ctx.engine()).trigger(name))


@schedule_group.command("backfill")
@click.argument("name")
@click.option("--from", "start", required=True, help="ISO date/time (UTC unless it says).")
@click.option("--to", "end", required=True, help="ISO date/time, inclusive.")
@pass_ctx
def backfill_cmd(ctx: Context, name: str, start: str, end: str) -> None:
    """Start a run for every slot between --from and --to that has not run yet."""
    for workflow_id in Schedules(ctx.engine()).backfill(name, parse_time(start), parse_time(end)):
        click.echo(workflow_id)


@schedule_group.command("delete")
@click.argument("name")
@pass_ctx
def delete_cmd(ctx: Context, name: str) -> None:
    """Delete NAME (its runs are not touched)."""
    Schedules(ctx.engine()).delete(name)


@schedule_group.command("run")
@click.option("--module", "-m", "modules", multiple=True, help="Import it, creating or updating its @schedule's.")
@click.option("--lease", type=float, default=10.0, show_default=True,
              help="Seconds a schedule stays with this scheduler if it dies.")
@pass_ctx
def run_cmd(ctx: Context, modules: tuple[str, ...], lease: float) -> None:
    """Run a scheduler until SIGTERM. Several may run at once: each slot still fires once."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = ctx.engine()
    for module in modules:
        importlib.import_module(module)
    schedules = Schedules(engine)
    for spec in registered.values():
        schedules.add(spec, replace=True)
    Scheduler(engine, lease=lease).run(stop_on_signals())
