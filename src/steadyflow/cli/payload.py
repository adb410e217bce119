"""`steadyflow payload`: keys for encrypted payloads, and reading a payload reference."""

from __future__ import annotations

import click

from ..payload import json as sfjson
from ..payload.codecs import new_key
from .common import Context, pass_ctx


@click.group("payload")
def payload_group() -> None:
    """Encryption keys and payload references."""


@payload_group.command("new-key")
def new_key_cmd() -> None:
    """Print a new random key for STEADYFLOW_ENCRYPTION_KEY (32 bytes, base64)."""
    click.echo(new_key())


@payload_group.command("show")
@click.argument("field")
@pass_ctx
def show_cmd(ctx: Context, field: str) -> None:
    """Decode FIELD (a history field: JSON, an inline envelope or a blob reference) as JSON."""
    click.echo(sfjson.dumps(ctx.engine().payloads.loads(field), pretty=True))
