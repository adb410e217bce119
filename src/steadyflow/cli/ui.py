"""`steadyflow ui`: the web dashboard (`steadyflow.ui`) on the engine of `--engine`."""

from __future__ import annotations

import secrets

import click

from ..errors import ConfigError
from .common import Context, pass_ctx


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but a loopback address shows the dashboard to the network.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--token", envvar="STEADYFLOW_UI_TOKEN", metavar="TOKEN",
              help="What signal/cancel/terminate/restart must present (default: a new random one, printed). "
                   "Prefer STEADYFLOW_UI_TOKEN: a command line is visible to other users.")
@click.option("--read-only", is_flag=True, help="No actions at all: only look.")
@click.option("--max-payload", default=8 * 1024 * 1024, show_default=True, type=click.IntRange(1),
              help="Largest payload in bytes the dashboard loads and shows.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]), help="uvicorn's log level.")
@pass_ctx
def ui_cmd(
    ctx: Context, host: str, port: int, token: str | None, read_only: bool, max_payload: int, log_level: str
) -> None:
    """Serve the web dashboard: executions, histories, timelines, and guarded actions."""
    try:
        from ..ui import create_app
        from ..ui.server import allowed_hosts_for, is_loopback, run
    except ImportError as exc:
        raise ConfigError(f"the dashboard needs the ui extra ({exc.name} is missing): pip install 'steadyflow[ui]'") from None
    if read_only:
        token = None
    elif not token:
        token = secrets.token_urlsafe(24)
        click.echo(f"dashboard token (for signal, cancel, terminate, restart): {token}", err=True)
    if not is_loopback(host):
        click.echo(f"warning: listening on {host}: anyone who can reach it sees every execution "
                   "(use a reverse proxy with TLS and authentication)", err=True)
    app = create_app(ctx.engine(), token=token, read_only=read_only, max_payload=max_payload,
                     allowed_hosts=allowed_hosts_for(host))
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"steadyflow dashboard on http://{shown}:{port}/{' (read-only)' if read_only else ''}", err=True)
    run(app, host=host, port=port, log_level=log_level)
