"""The `steadyflow` command: one group per noun, simpleflow's dotted spellings as aliases.

Errors steadyflow raises on purpose print one line and exit 1 (2 for usage); `--debug` (or
`STEADYFLOW_DEBUG=1`) keeps the traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from .. import logs, settings
from ..errors import ConfigError, SteadyflowError, WorkflowNotFound
from .activity import activity_group
from .common import Context
from .db import db_group
from .info import info_cmd
from .limits import limits_group
from .payload import payload_group
from .processes import decider_group, standalone, worker_group
from .schedule import schedule_group
from .stepfunctions import activity_server
from .task import task_group
from .tasks import tasks_group
from .ui import ui_cmd
from .workflow import workflow_group


class _Root(click.Group):
    """Accepts `workflow.start` as well as `workflow start` (simpleflow's spelling)."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        if args and "." in args[0] and not args[0].startswith("-"):
            group, _, sub = args[0].partition(".")
            if group in self.commands:
                args = [group, sub, *args[1:]]
        return super().resolve_command(ctx, args)


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--engine", "engine_url", envvar="STEADYFLOW_URL", help="Engine URL (default: sqlite:///steadyflow.db).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.option("--log-format", type=click.Choice(logs.FORMATS), envvar="STEADYFLOW_LOG_FORMAT", default="text",
              show_default=True, help="Log lines as text, or one JSON object per line (LOG_LEVEL sets the level).")
@click.version_option(package_name="steadyflow")
@click.pass_context
def cli(ctx: click.Context, engine_url: str | None, debug: bool, log_format: str) -> None:
    """Durable workflows and task workers."""
    logs.configure(fmt=log_format)
    settings.load()  # a settings module that does not import: one line, before any work
    ctx.obj = Context(engine_url=engine_url)


cli.add_command(workflow_group)
cli.add_command(decider_group)
cli.add_command(worker_group)
cli.add_command(standalone)
cli.add_command(db_group)
cli.add_command(activity_server)
cli.add_command(tasks_group)
cli.add_command(payload_group)
cli.add_command(schedule_group)
cli.add_command(ui_cmd)
cli.add_command(limits_group)
cli.add_command(activity_group)
cli.add_command(task_group)
cli.add_command(info_cmd)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Workflows and activities are named by dotted paths relative to where the user stands.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    debug = "--debug" in argv or os.environ.get("STEADYFLOW_DEBUG") == "1"
    try:
        # Outside standalone mode click returns `ctx.exit(code)`'s code instead of raising it.
        outcome = cli.main(args=argv, prog_name="steadyflow", standalone_mode=False)
        if isinstance(outcome, int) and not isinstance(outcome, bool):
            return outcome
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except click.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except SteadyflowError as exc:
        if debug:
            raise
        click.echo(f"Error: {exc}", err=True)
        return 2 if isinstance(exc, (ConfigError, WorkflowNotFound)) else 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
