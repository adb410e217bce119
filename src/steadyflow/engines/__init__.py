"""Engines, chosen by URL: `memory://`, `sqlite:///path.db` (the default), later `postgresql://`."""

from __future__ import annotations

import os
from collections.abc import Callable

from ..errors import ConfigError
from .base import ActivityTask, DecisionTask, Engine, ExecutionInfo

DEFAULT_URL = "sqlite:///steadyflow.db"


def default_url() -> str:
    """`STEADYFLOW_URL`, else a SQLite file in the current directory: the first run needs no setup."""
    return os.environ.get("STEADYFLOW_URL") or DEFAULT_URL


def open_engine(url: str | None = None, clock: Callable[[], float] | None = None) -> Engine:
    """Open the engine a URL names. A bare path is taken as a SQLite file."""
    url = url or default_url()
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "sqlite", "/" + url
    if scheme == "memory":
        from .memory import MemoryEngine

        return MemoryEngine(clock=clock)
    if scheme == "sqlite":
        from .sqlite import SQLiteEngine

        return SQLiteEngine(sqlite_path(rest), clock=clock)
    raise ConfigError(f"unknown engine URL scheme {scheme!r} in {url!r} (expected sqlite:///PATH or memory://)")


def sqlite_path(rest: str) -> str:
    """`sqlite:///rel.db` is relative to the current directory, `sqlite:////abs.db` absolute."""
    path = rest[1:] if rest.startswith("/") else rest
    if not path:
        raise ConfigError("sqlite URL has no path: use sqlite:///steadyflow.db")
    return path


__all__ = ["ActivityTask", "DecisionTask", "Engine", "ExecutionInfo", "default_url", "open_engine"]
