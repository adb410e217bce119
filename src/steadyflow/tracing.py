"""OpenTelemetry spans for a start, each decision and each activity attempt, in one trace.

The trace context travels with the execution, not with a process: the client's start records it
in the workflow input (`__extra.trace`, W3C `traceparent`), deciders read it back from the
history, and activity and child inputs carry it on, so that one trace shows a whole execution
however many processes and hosts took part. What is recorded comes from the history only, never
from whatever span happens to be current in a decider, so replay stays deterministic.

Without `opentelemetry-api` installed (`pip install 'steadyflow[otel]'`) or without a tracer
provider configured, nothing is recorded and inputs are unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

try:
    from opentelemetry import propagate, trace
except ImportError:  # pragma: no cover - exercised where opentelemetry is absent
    propagate = trace = None

TRACER = "steadyflow"
_provider: Any = None  # None: OpenTelemetry's global tracer provider


def use_provider(provider: Any) -> None:
    """Record steadyflow's spans with `provider` instead of the global one (None: back to it)."""
    global _provider
    _provider = provider


@contextmanager
def span(name: str, carrier: Mapping[str, str] | None = None, **attributes: Any) -> Iterator[Any]:
    """A span named `name`, child of the context in `carrier` (else of the current span)."""
    if trace is None:
        yield None
        return
    parent = propagate.extract(dict(carrier)) if carrier else None
    attrs = {f"steadyflow.{k}": v for k, v in attributes.items() if v is not None}
    tracer = trace.get_tracer(TRACER, tracer_provider=_provider)
    with tracer.start_as_current_span(name, context=parent, attributes=attrs) as current:
        yield current


def carrier() -> dict[str, str] | None:
    """The current span's context as a `traceparent` carrier; None when nothing is being traced."""
    if propagate is None:
        return None
    out: dict[str, str] = {}
    propagate.inject(out)
    return out or None


def carrier_of(data: Any) -> dict[str, str] | None:
    """The carrier recorded in a decoded input (`{"__extra": {"trace": {...}}}`), if any."""
    if isinstance(data, dict):
        extra = data.get("__extra")
        if isinstance(extra, dict) and isinstance(extra.get("trace"), dict):
            return extra["trace"]
    return None
