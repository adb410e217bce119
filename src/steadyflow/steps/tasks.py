"""The two activities a step runs: one reads which steps are done, one records a step as done.

They run in a worker like any activity, so what a step found is in the history and replays the
same, whatever the store says later. With no bucket they use the worker's blob store (the
engine's: memory, a directory beside the SQLite file, the PostgreSQL database, or the S3 store
`STEADYFLOW_BLOB_STORE` names); with a bucket, S3 in simpleflow's layout.
"""

from __future__ import annotations

from typing import Any

from ..activity import context, with_attributes
from .store import open_step_store

UNKNOWN_CONTEXT = {"run_id": "unknown", "workflow_id": "unknown", "version": "unknown"}


def _store(bucket: str | None) -> Any:
    try:
        payloads = context().payloads
    except RuntimeError:
        payloads = None
    return open_step_store(bucket, getattr(payloads, "store", None))


@with_attributes(version="1.0", idempotent=True, raises_on_failure=True, retry=1)
def get_steps_done(bucket: str | None, path: str, step_name: str | None = None) -> list[str]:
    """The steps done under `path` (only `step_name`, when given and done)."""
    return _store(bucket).done(path, step_name)


@with_attributes(version="1.0", idempotent=True, raises_on_failure=True, retry=1)
def mark_step_done(bucket: str | None, path: str, step_name: str, run_context: dict[str, Any] | None = None) -> None:
    """Record `step_name` as done under `path`, with the run that did it."""
    who = {k: (run_context or UNKNOWN_CONTEXT).get(k, "unknown") for k in ("run_id", "workflow_id", "version")}
    _store(bucket).mark(path, step_name, who)


__all__ = ["UNKNOWN_CONTEXT", "get_steps_done", "mark_step_done"]
