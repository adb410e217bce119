"""`steadyflow activity-server`: stefuna's command line, serving a `Worker` subclass from a pool."""

from __future__ import annotations

import logging

import click

from .common import Context, pass_ctx


@click.command("activity-server")
@click.option("--config", "config", help="Module (or MODULE.dict, or a .py file) of config to override defaults.")
@click.option("--worker", help="Module and class of worker in dot notation. Overrides config setting.")
@click.option("--activity-arn", help="Step Function Activity ARN (or activity name). Overrides config setting.")
@click.option("--processes", type=int, help="Number of worker processes. Overrides config setting. If 0, cpu_count is used.")
@click.option("--loglevel", help="Loglevel (debug, info, warning, error or critical). Overrides config setting.")
@click.option("--healthcheck", type=int, metavar="PORT", help="Healthcheck port (0: off). Overrides config setting.")
@pass_ctx
def activity_server(ctx: Context, config: str | None, worker: str | None, activity_arn: str | None,
                    processes: int | None, loglevel: str | None, healthcheck: int | None) -> None:
    """Run a Step Function Activity server (stefuna's `stefuna` command).

    The activity is served from the task list named after it (the last part of the ARN); exit
    code 0 after a SIGTERM/SIGINT shutdown, 2 for a bad configuration.
    """
    from ..stepfunctions.config import load_settings
    from ..worker.child import LOG_FORMAT

    settings = load_settings(config, worker=worker, activity_arn=activity_arn, processes=processes,
                             loglevel=loglevel, healthcheck=healthcheck)
    root = logging.getLogger()
    for handler in root.handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.setLevel(settings.loglevel)
    logging.getLogger("steadyflow").setLevel(settings.loglevel)
    log = logging.getLogger("steadyflow.stepfunctions")
    log.info("Running %s for activity %s %s", settings.worker_class.__qualname__, settings.name, settings.activity_arn)
    server = settings.build(ctx.engine())
    server.run()
    log.info("Server exiting.")
