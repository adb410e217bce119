"""One URL names a task queue; this module turns it into a backend.

- `https://sqs.REGION.amazonaws.com/ACCOUNT/NAME` or any other `http(s)://` queue URL: SQS.
- `sqlite:///relative.db?queue=NAME`, `sqlite:////abs/path.db?queue=NAME`: a SQLite file.
- `postgresql://user@host:5432/db?queue=NAME&schema=steadyflow` (`postgres://` too): PostgreSQL.

Database URLs take `queue` (default `default`) and `max_receives` (dead-letter after that many
receives; default none). Passwords never leave this module unredacted.
"""

from __future__ import annotations

import re
import urllib.parse

from ..errors import ConfigError
from .backend import Backend

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
_OURS = ("queue", "max_receives", "schema")


def secrets_of(url: str) -> list[str]:
    """Every spelling of a password the URL carries, longest first."""
    found: set[str] = set()
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password:
            found.add(parts.password)
    except ValueError:
        pass
    found.update(m.group(1) for m in re.finditer(r"(?i)password=([^&#\s]*)", url))
    found |= {urllib.parse.unquote(s) for s in found}
    return sorted((s for s in found if s), key=len, reverse=True)


def redact(url: str) -> str:
    """The URL as it may be shown or logged: any password replaced by `***`."""
    for secret in secrets_of(url):
        url = url.replace(secret, "***")
    return url


def kind(url: str) -> str:
    scheme = url.partition("://")[0].lower()
    if scheme in ("http", "https"):
        return "sqs"
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    raise ConfigError(
        f"unsupported task queue URL {redact(url)!r}: use an SQS queue URL (https://...), "
        "sqlite:///FILE.db?queue=NAME or postgresql://...?queue=NAME"
    )


def _options(url: str) -> tuple[str, dict[str, str]]:
    """The URL without our query parameters, and those parameters."""
    base, _, query = url.partition("?")
    ours: dict[str, str] = {}
    rest = []
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if key in _OURS:
            ours[key] = value
        else:
            rest.append((key, value))
    return (f"{base}?{urllib.parse.urlencode(rest)}" if rest else base), ours


def _queue_and_limit(ours: dict[str, str], shown: str) -> tuple[str, int | None]:
    name = ours.get("queue") or "default"
    if not _QUEUE_NAME.match(name):
        raise ConfigError(f"queue={name!r} in {shown}: use letters, digits and . _ : - (at most 200)")
    raw = ours.get("max_receives")
    if raw in (None, "", "0"):
        return name, None
    try:
        limit = int(raw)
    except ValueError:
        limit = -1
    if limit < 1:
        raise ConfigError(f"max_receives={raw!r} in {shown} must be a positive integer")
    return name, limit


def open_backend(url: str) -> Backend:
    """The backend a URL names (`ConfigError` for a URL that names none)."""
    if not isinstance(url, str) or not url:
        raise ConfigError("a task queue URL is required (or set STEADYFLOW_TASKS_URL)")
    shown = redact(url)
    which = kind(url)
    if which == "sqs":
        from .sqs import SQSBackend

        return SQSBackend(url)
    base, ours = _options(url)
    name, limit = _queue_and_limit(ours, shown)
    if which == "sqlite":
        path = base.partition("://")[2].partition("?")[0]
        if not path.startswith("/") or path == "/":
            raise ConfigError(f"{shown}: a SQLite URL is sqlite:///relative.db or sqlite:////absolute/path.db")
        from .sqlite import SQLiteQueue

        return SQLiteQueue(urllib.parse.unquote(path[1:]), shown, name, limit)
    from .postgres import DEFAULT_SCHEMA, PostgresQueue

    schema = ours.get("schema") or DEFAULT_SCHEMA
    return PostgresQueue(base, shown, name, limit, schema=schema)

