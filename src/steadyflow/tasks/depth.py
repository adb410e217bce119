"""How much work a queue holds, on every kind of queue, for scaling consumers to it.

SQS's three counts, read through each backend's `attributes()` (SQS's own spelling on every
queue): visible (waiting to be received), in flight (received, not yet deleted) and delayed (sent
with a delay, or handed back for later). `Provisioner` (queue_scale.py) scales an ECS service by
them; `publish()` puts them in the Prometheus gauge `steadyflow_task_queue_depth{queue,state}`,
which a Kubernetes autoscaler (KEDA's Prometheus scaler, or an HPA through prometheus-adapter)
can read.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

from .. import metrics
from .errors import TaskQueueError

ATTRIBUTES = {
    "visible": "ApproximateNumberOfMessages",
    "in_flight": "ApproximateNumberOfMessagesNotVisible",
    "delayed": "ApproximateNumberOfMessagesDelayed",
}
"""The `state` label of each count, and the SQS attribute it is read from."""


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        """All the messages that are or will be work: what decides whether consumers should run."""
        return self.visible + self.in_flight + self.delayed

    @classmethod
    def from_attributes(cls, queue: str, attributes: dict[str, Any]) -> QueueDepth:
        counts = {}
        for state, name in ATTRIBUTES.items():
            try:
                counts[state] = int(attributes[name])
            except (KeyError, TypeError, ValueError):
                raise TaskQueueError(f"queue {queue}: attribute {name} missing or not a number "
                                     f"({attributes.get(name)!r})") from None
        return cls(queue, **counts)


def queue_label(url: str) -> str:
    """The queue's name, as the metrics label it: `queue=` of a database URL, the last part of an SQS URL."""
    scheme = url.partition("://")[0].lower()
    if scheme in ("http", "https"):
        return urllib.parse.urlsplit(url).path.rstrip("/").rpartition("/")[2] or url
    query = dict(urllib.parse.parse_qsl(url.partition("?")[2]))
    return query.get("queue") or "default"


def depth_of(manager: Any) -> QueueDepth:
    """The depth of a `TaskManager`'s queue, read now."""
    return QueueDepth.from_attributes(queue_label(manager.url), manager.attributes())


def publish(depth: QueueDepth) -> None:
    """Set `steadyflow_task_queue_depth{queue, state}` (a no-op without prometheus-client)."""
    metrics.set_queue_depth(depth.queue, {state: getattr(depth, state) for state in ATTRIBUTES})
