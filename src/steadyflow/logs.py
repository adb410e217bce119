"""Log lines that say which execution and task they are about, as text or as JSON.

Every record logged while a decider handles a decision task or while an activity runs carries
`workflow_id`, `run_id` and `activity_id` (empty when not applicable): a filter reads them from
context variables, so no call site has to pass them. `LOG_LEVEL` sets the level, as simpleflow's
does; `--log-format json` (or `STEADYFLOW_LOG_FORMAT=json`) writes one JSON object per line.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

FORMATS = ("text", "json")
TEXT = "%(asctime)s %(levelname)s [%(processName)s/%(process)d] %(name)s%(ids)s: %(message)s"
_ids: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("steadyflow_log_ids", default=None)
FIELDS = ("workflow_id", "run_id", "activity_id")


@contextlib.contextmanager
def ids(**values: str | None) -> Iterator[None]:
    """Records logged inside carry these ids (a decider sets them for each decision task)."""
    token = _ids.set({k: v for k, v in values.items() if v})
    try:
        yield
    finally:
        _ids.reset(token)


def _current() -> dict[str, str]:
    found = _ids.get()
    if found:
        return found
    from .activity import _current_task  # the running activity's ids

    task = _current_task.get()
    if task is None:
        return {}
    return {"workflow_id": task.workflow_id, "run_id": task.run_id, "activity_id": task.activity_id}


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        values = _current()
        for name in FIELDS:
            setattr(record, name, values.get(name, ""))
        shown = " ".join(values[k] for k in FIELDS if values.get(k))
        record.ids = f" [{shown}]" if shown else ""
        return True


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for name in FIELDS:
            value = getattr(record, name, "")
            if value:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(level: str | int | None = None, fmt: str | None = None) -> None:
    """Send logs to stderr with the ids attached; `level` defaults to `LOG_LEVEL` (or WARNING),
    `fmt` to `STEADYFLOW_LOG_FORMAT` (or text). Child processes inherit the format."""
    fmt = (fmt or os.environ.get("STEADYFLOW_LOG_FORMAT") or "text").lower()
    if fmt not in FORMATS:
        fmt = "text"
    os.environ["STEADYFLOW_LOG_FORMAT"] = fmt
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JSONFormatter() if fmt == "json" else logging.Formatter(TEXT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "steadyflow", False)]:
        root.removeHandler(old)
    handler.steadyflow = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level if level is not None else os.environ.get("LOG_LEVEL", "WARNING").upper())
