"""What a schedule is: a cron expression in a time zone, a workflow to start, and what to do when
a run is still going (overlap), was missed (catch-up window) or should be spread out (jitter).

Slots are computed, never stored one by one: the store keeps the next slot to consider, so a
scheduler that was down for a day resumes from where it was and applies the catch-up window.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import zoneinfo
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConfigError

OVERLAP_POLICIES = ("skip", "buffer_one", "allow_all", "cancel_other")


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule. `cron` has 5 fields, or 6 with seconds last (`* * * * * */10`: every 10 s).

    `overlap`: when the previous run is still open at a slot, `skip` the slot, `buffer_one` (start
    it when the previous run closes; later slots meanwhile are skipped), `allow_all`, or
    `cancel_other` (request cancellation of the running one and start anyway).
    `catchup_window`: slots older than this many seconds when a scheduler gets to them (after
    downtime) are counted as missed instead of fired. `jitter`: each slot fires up to this many
    seconds late, by an amount fixed per slot (so every scheduler agrees on it).
    """

    name: str
    cron: str
    workflow: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    timezone: str = "UTC"
    overlap: str = "skip"
    catchup_window: float = 60.0
    jitter: float = 0.0
    task_list: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        from croniter import croniter

        if not self.name or any(c.isspace() for c in self.name) or len(self.name) > 200:
            raise ConfigError(f"invalid schedule name {self.name!r}: 1 to 200 characters, no spaces")
        if not croniter.is_valid(self.cron):
            raise ConfigError(f"invalid cron expression {self.cron!r} (5 fields, or 6 with seconds last)")
        self.zone()
        if self.overlap not in OVERLAP_POLICIES:
            raise ConfigError(f"unknown overlap policy {self.overlap!r} (expected one of: {', '.join(OVERLAP_POLICIES)})")
        if self.catchup_window < 0:
            raise ConfigError(f"catchup window must be 0 or more seconds, not {self.catchup_window}")
        if self.jitter < 0:
            raise ConfigError(f"jitter must be 0 or more seconds, not {self.jitter}")
        if "." not in self.workflow:
            raise ConfigError(f"workflow must be a dotted path module.Class, not {self.workflow!r}")

    def zone(self) -> zoneinfo.ZoneInfo:
        try:
            return zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"unknown time zone {self.timezone!r} (an IANA name such as Europe/Paris)") from None

    def next_slot(self, after: float) -> float:
        """The first slot strictly after `after` (epoch seconds)."""
        from croniter import croniter

        start = _dt.datetime.fromtimestamp(after, tz=self.zone())
        return float(croniter(self.cron, start).get_next(float))

    def slots(self, start: float, end: float) -> list[float]:
        """Every slot in [start, end]."""
        out, slot = [], self.next_slot(start - 1e-6)
        while slot <= end:
            out.append(slot)
            slot = self.next_slot(slot)
        return out

    def delay(self, slot: float) -> float:
        """The jitter of `slot`: the same in every process, so they agree when it is due."""
        if not self.jitter:
            return 0.0
        digest = hashlib.sha256(f"{self.name}@{slot}".encode()).digest()
        return self.jitter * int.from_bytes(digest[:8], "big") / 2**64

    def workflow_id(self, slot: float) -> str:
        """One id per slot: the engine refuses a second start of it, whoever tries."""
        return f"{self.name}@{slot_text(slot)}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ScheduleSpec:
        return cls(**json.loads(text))


def slot_text(slot: float) -> str:
    """A slot as ISO-8601 UTC, to the second (to the millisecond when it has a fraction)."""
    moment = _dt.datetime.fromtimestamp(slot, tz=_dt.timezone.utc)
    spec = "seconds" if slot == int(slot) else "milliseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def parse_time(text: str) -> float:
    """An ISO date or datetime (UTC unless it says otherwise) as epoch seconds."""
    try:
        moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"invalid time {text!r} (expected ISO 8601, e.g. 2026-01-31T12:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.timestamp()
