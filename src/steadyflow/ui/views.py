"""What the pages and the JSON API show: executions, events and payload fields as plain data.

Payload fields go through `steadyflow.payload.converter.shown`, which never unpickles and never
needs a key it does not have; a field stored as a reference to a blob keeps a `load` address so its
value is fetched only when someone asks (`payload_value`, with a size cap).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..engines.base import ExecutionInfo
from ..errors import PayloadError, SteadyflowError
from ..history import Event, format_timestamp
from ..payload import json as sfjson
from ..payload.converter import INLINE, PREFIX, SIMPLEFLOW_S3, PayloadEncrypted, Reference, shown
from .timeline import duration

EXECUTION_FIELDS = ("input", "result", "close_details")
"""The execution's own payload fields that `/payload/...?field=` serves."""

PREVIEW_CHARS = 2000
"""Longer field texts are cut in the pages (the `load` link shows all of it)."""


@dataclass(frozen=True)
class Field:
    """A payload field as shown: `text` (JSON or a `<...>` description), and whether it can be
    loaded in full (an offloaded blob, or text cut for the page)."""

    text: str | None
    loadable: bool = False
    size: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "loadable": self.loadable, "size": self.size}


def is_reference(text: Any) -> bool:
    """True for a field that points to a blob store instead of holding its value."""
    return isinstance(text, str) and (
        (text.startswith(PREFIX) and not text.startswith(INLINE)) or text.startswith(SIMPLEFLOW_S3)
    )


def stored_size(text: str) -> int:
    """Bytes the field's value takes where it is stored (the blob's size for a reference)."""
    if text.startswith(SIMPLEFLOW_S3):
        parts = text.split()
        if len(parts) >= 2 and parts[1].isdigit():
            return int(parts[1])
    elif is_reference(text):
        try:
            return Reference.parse(text).size
        except PayloadError:
            pass
    return len(text.encode("utf-8", "replace"))


def field(payloads: Any, text: Any, preview: int = PREVIEW_CHARS) -> Field:
    """How a raw field is shown; never raises (an unreadable payload is described, not an error)."""
    if text is None:
        return Field(None)
    if not isinstance(text, str):
        return Field(json.dumps(text, sort_keys=True, default=str))
    try:
        out = shown(payloads, text)
    except Exception as exc:  # a store that cannot be reached: describe, keep the page
        out = f"<unreadable payload: {type(exc).__name__}: {exc}>"
    out = "" if out is None else out
    if is_reference(text):
        return Field(out, loadable=True, size=stored_size(text))
    if text.startswith(PREFIX) and out.startswith("<") and not out.startswith(("<encrypted", "<pickled")):
        return Field(out, loadable=True, size=len(text))  # inline, but too big to show: load it whole
    if len(out) > preview:
        return Field(out[:preview] + "…", loadable=True, size=len(text))
    return Field(out)


def execution(payloads: Any, info: ExecutionInfo, now: float) -> dict[str, Any]:
    """An execution as the pages and `/api/executions/{id}` show it: its row, and what one opened
    shows beside (decoded payloads, links to its parent, why it closed)."""
    return {
        **summary(info, now),
        "is_open": info.is_open,
        "cancel_requested": info.cancel_requested,
        "parent_workflow_id": info.parent_workflow_id,
        "parent_run_id": info.parent_run_id,
        "close_reason": info.close_reason,
        "input": field(payloads, info.input).to_json(),
        "result": field(payloads, info.result).to_json(),
        "close_details": field(payloads, info.close_details).to_json(),
    }


def summary(info: ExecutionInfo, now: float) -> dict[str, Any]:
    """An execution as a row of the list (no payloads: listing never fetches a blob)."""
    end = info.close_time if info.close_time is not None else now
    return {
        "workflow_id": info.workflow_id,
        "run_id": info.run_id,
        "workflow_type": info.workflow_type,
        "version": info.version,
        "task_list": info.task_list,
        "status": info.status,
        "start_time": info.start_time,
        "close_time": info.close_time,
        "started": format_timestamp(info.start_time),
        "closed": format_timestamp(info.close_time),
        "duration": duration(end - info.start_time),
        "tags": list(info.tags),
    }


def event(payloads: Any, ev: Event, origin: float) -> dict[str, Any]:
    """An event with its attributes shown (payload fields decoded or described)."""
    attributes = {key: field(payloads, value) for key, value in ev.attributes.items()}
    return {
        "event_id": ev.event_id,
        "event_type": ev.event_type,
        "timestamp": ev.timestamp,
        "time": format_timestamp(ev.timestamp),
        "offset": "+" + duration(ev.timestamp - origin),
        "attributes": {key: f.to_json() for key, f in attributes.items()},
    }


class PayloadRefused(SteadyflowError):
    """The payload is larger than the dashboard's cap, or cannot be shown here."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def payload_value(payloads: Any, text: str | None, cap: int) -> str:
    """The whole value of a field as pretty JSON, fetching its blob if it has one.

    Refuses (`PayloadRefused`, 413) a value whose stored size, or decoded JSON, exceeds `cap`
    bytes, and (422) an encrypted value without the key or a pickled one: the dashboard never
    unpickles.
    """
    if text is None:
        return "null"
    size = stored_size(text)
    if size > cap:
        raise PayloadRefused(f"payload is {size:,} bytes, more than the dashboard shows ({cap:,})", 413)
    if not text.startswith((PREFIX, SIMPLEFLOW_S3)):
        try:
            value = sfjson.loads(text)
        except PayloadError:
            return json.dumps(text)  # not JSON (a plain reason string): shown as a JSON string
    else:
        try:
            value = payloads.loads(text)
        except PayloadEncrypted:
            raise PayloadRefused("payload is encrypted and this dashboard has no key for it", 422) from None
        except PayloadError as exc:
            raise PayloadRefused(f"payload cannot be shown: {exc}", 422) from None
    try:
        out = sfjson.dumps(value, pretty=True)
    except PayloadError as exc:
        raise PayloadRefused(f"payload cannot be shown as JSON: {exc}", 422) from None
    if len(out) > cap:
        raise PayloadRefused(f"payload is {len(out):,} bytes of JSON, more than the dashboard shows ({cap:,})", 413)
    return out
