"""`steadyflow db ...`: the engine's schema version, and upgrading it.

An engine creates its schema when the database is new, and refuses a schema newer than its code or
older than it (run `db upgrade`: never behind the back of processes still running the older code).
"""

from __future__ import annotations

import sys

import click

from ..engines import display_url, open_engine
from ..engines.sql import MIGRATIONS, SCHEMA_VERSION, SQLEngine
from .common import Context, emit, format_option, pass_ctx


@click.group("db")
def db_group() -> None:
    """Create, check and upgrade the engine's database schema."""


def _sql_engine(ctx: Context) -> SQLEngine | None:
    engine = open_engine(ctx.engine_url, prepare=False)
    if isinstance(engine, SQLEngine):
        return engine
    engine.close()
    return None


@db_group.command("upgrade")
@pass_ctx
def upgrade_cmd(ctx: Context) -> None:
    """Apply the missing schema migrations in order, in one transaction (creates a new schema).

    Safe to run from several hosts at once: the others wait, then find nothing left to do.
    """
    engine = _sql_engine(ctx)
    if engine is None:
        click.echo(f"{display_url(ctx.engine_url or '')} keeps no schema: nothing to upgrade")
        return
    try:
        before = engine.schema_version()
        applied = engine.upgrade()
    finally:
        engine.close()
    if not applied:
        click.echo(f"{engine.where}: schema version {SCHEMA_VERSION}, up to date")
        return
    names = ", ".join(f"{m.version} ({m.description})" for m in MIGRATIONS if m.version in applied)
    click.echo(f"{engine.where}: schema version {before or 0} -> {SCHEMA_VERSION}; applied {names}")


@db_group.command("status")
@format_option
@pass_ctx
def status_cmd(ctx: Context, fmt: str) -> None:
    """Show the schema version of the database and of this steadyflow; exit 1 unless they match."""
    engine = _sql_engine(ctx)
    if engine is None:
        click.echo(f"{display_url(ctx.engine_url or '')} keeps no schema")
        return
    try:
        version = engine.schema_version()
    finally:
        engine.close()
    if version is None:
        state = "missing: run `steadyflow db upgrade` (or start any steadyflow process) to create it"
    elif version < SCHEMA_VERSION:
        state = "older than this steadyflow: run `steadyflow db upgrade`"
    elif version > SCHEMA_VERSION:
        state = "newer than this steadyflow: upgrade steadyflow"
    else:
        state = "up to date"
    pending = [m.version for m in MIGRATIONS if m.version > (version or 0)]
    row = {
        "database": engine.where,
        "schema version": version,
        "steadyflow schema version": SCHEMA_VERSION,
        "pending migrations": ", ".join(map(str, pending)) or None,
        "state": state,
    }
    if fmt == "json":
        emit([row], fmt)
    else:
        for key, value in row.items():
            click.echo(f"{key}: {'-' if value is None else value}")
    if version != SCHEMA_VERSION:
        sys.exit(1)
