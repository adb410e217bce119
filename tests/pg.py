"""Finding the PostgreSQL server the tests use, giving each test a schema of its own, and the
workflow the multi-process PostgreSQL tests run (importable by their spawned processes).

The server is `STEADYFLOW_TEST_POSTGRES_URL` (default `postgresql://postgres@127.0.0.1:5432/test`).
When none answers, PostgreSQL tests are skipped with the reason, except on CI (`CI=true`), where
they fail: CI must never go green by skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import pytest

from steadyflow import RetryPolicy, Workflow, activity

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
_probe: dict[str, str | None] = {}


def server_url() -> str:
    return os.environ.get("STEADYFLOW_TEST_POSTGRES_URL") or DEFAULT_URL


def _unavailable() -> str | None:
    """Why no PostgreSQL server can be used (None when one answers); asked once per session."""
    if "reason" not in _probe:
        url = server_url()
        try:
            import psycopg
            import psycopg_pool  # noqa: F401

            from steadyflow.engines.postgres import redact
        except ImportError as exc:
            _probe["reason"] = f"psycopg is not installed ({exc}): pip install -e '.[test]'"
            return _probe["reason"]
        try:
            with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
                conn.execute("SELECT 1")
            _probe["reason"] = None
        except psycopg.Error as exc:
            message = " ".join(str(exc).split())
            _probe["reason"] = (
                f"no PostgreSQL server at {redact(url)} (set STEADYFLOW_TEST_POSTGRES_URL): {message}"
            )
    return _probe["reason"]


def require_server() -> str:
    """The server URL; skips the test when no server answers, or fails it when `CI=true`."""
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and PostgreSQL is required: {reason}", pytrace=False)
        pytest.skip(reason)
    return server_url()


def with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


class Schema(NamedTuple):
    url: str
    """The server URL with `?schema=NAME`: what an engine or `STEADYFLOW_URL` takes."""
    name: str


@contextmanager
def fresh_schema() -> Iterator[Schema]:
    """A new, unused schema name on the test server (the engine creates it); dropped after."""
    import psycopg
    from psycopg import sql

    url = require_server()
    schema = f"sf_test_{uuid.uuid4().hex[:12]}"
    try:
        yield Schema(with_schema(url, schema), schema)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def admin():
    """A plain autocommit connection to the test server, for a test to look behind the engine."""
    import psycopg

    return psycopg.connect(server_url(), autocommit=True)


def terminate_backends(schema: str) -> int:
    """Kill every server connection the engines of `schema` hold (`pg_terminate_backend`)."""
    with admin() as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
            (f"steadyflow:{schema}",),
        ).fetchone()
    return int(row[0])


# -- what the spawned deciders and workers of tests/test_postgres_cluster.py run --------------------

STEPS = 10


@activity.with_attributes(
    heartbeat_timeout=2, retry_policy=RetryPolicy(initial_interval=0, maximum_attempts=0)
)
def pg_step(x):
    """One step; a worker killed while it runs is noticed by its heartbeat timeout and it runs again."""
    return x + 1


class TenSteps(Workflow):
    """Ten activities in a chain: each decision depends on the last result, so a decision applied
    twice or a completion recorded twice would show in the history and in the result."""

    name = "pg-ten-steps"

    def run(self, base):
        x = base
        for _ in range(STEPS):
            x = self.submit(pg_step, x).result
        return x
