"""Engines, chosen by URL: `memory://`, `sqlite:///path.db` (the default), `postgresql://...`."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from ..errors import ConfigError, EngineUnavailable
from .base import ActivityTask, DecisionTask, Engine, ExecutionInfo

DEFAULT_URL = "sqlite:///steadyflow.db"
POSTGRES_SCHEMES = ("postgresql", "postgres")


def default_url() -> str:
    """`STEADYFLOW_URL`, else a SQLite file in the current directory: the first run needs no setup."""
    return os.environ.get("STEADYFLOW_URL") or DEFAULT_URL


def open_engine(
    url: str | None = None, clock: Callable[[], float] | None = None, prepare: bool = True
) -> Engine:
    """Open the engine a URL names. A bare path is taken as a SQLite file.

    `prepare=False` opens a SQL engine without creating or checking its schema (for `db status`
    and `db upgrade`); normally a new database gets its schema and a mismatched one is refused.
    """
    url = url or default_url()
    engine = _open(url, clock, prepare)
    engine.source_url = url  # what a worker's child process reopens (never printed: see display_url)
    return engine


def _open(url: str, clock: Callable[[], float] | None, prepare: bool) -> Engine:
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "sqlite", "/" + url
    if scheme == "memory":
        from .memory import MemoryEngine

        return MemoryEngine(clock=clock)
    if scheme == "sqlite":
        from .sqlite import SQLiteEngine

        path, options = sqlite_options(rest)
        return SQLiteEngine(sqlite_path(path), clock=clock, prepare=prepare, **options)
    if scheme in POSTGRES_SCHEMES:
        try:
            from .postgres import PostgresEngine
        except ImportError as exc:
            raise EngineUnavailable(
                f"the PostgreSQL engine needs psycopg 3 and psycopg-pool ({exc.name or exc} is missing): "
                "pip install 'steadyflow[postgres]'"
            ) from None
        return PostgresEngine(url, clock=clock, prepare=prepare)
    raise ConfigError(
        f"unknown engine URL scheme {scheme!r} in {display_url(url)!r} "
        "(expected sqlite:///PATH, postgresql://... or memory://)"
    )


def display_url(url: str) -> str:
    """The URL as it may be printed or logged: any password replaced by `***`."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        userinfo, _, hostpart = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}{':***' if colon else ''}@{hostpart}"
    return scheme + sep + re.sub(r"(?i)(password=)[^&#\s]*", r"\1***", rest)


SQLITE_OPTIONS = ("synchronous",)


def sqlite_options(rest: str) -> tuple[str, dict[str, str]]:
    """Split `path?synchronous=full` into the path and the engine's options; others are refused."""
    path, _, query = rest.partition("?")
    options: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        key, _, value = pair.partition("=")
        if key not in SQLITE_OPTIONS:
            raise ConfigError(f"unknown option {key!r} in sqlite URL (known: {', '.join(SQLITE_OPTIONS)})")
        options[key] = value
    return path, options


def sqlite_path(rest: str) -> str:
    """`sqlite:///rel.db` is relative to the current directory, `sqlite:////abs.db` absolute."""
    path = rest[1:] if rest.startswith("/") else rest
    if not path:
        raise ConfigError("sqlite URL has no path: use sqlite:///steadyflow.db")
    return path


__all__ = [
    "ActivityTask",
    "DecisionTask",
    "Engine",
    "ExecutionInfo",
    "default_url",
    "display_url",
    "open_engine",
]
