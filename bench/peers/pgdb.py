"""A PostgreSQL database of its own for one peer: created before its run, dropped (FORCE) after."""

from __future__ import annotations

import contextlib
import urllib.parse
import uuid
from collections.abc import Iterator

import psycopg
from psycopg import sql


@contextlib.contextmanager
def fresh_database(server_url: str, peer: str) -> Iterator[str]:
    """A URL naming a new, empty database on the server `server_url` points at."""
    name = f"sf_bench_{peer}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urllib.parse.urlsplit(server_url)
    try:
        yield urllib.parse.urlunsplit(parts._replace(path="/" + name))
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
