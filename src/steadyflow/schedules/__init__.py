"""Schedules: cron in a time zone, overlap policies, catch-up and jitter (see docs/schedules.md)."""

from .api import Schedules, registered, schedule
from .scheduler import Scheduler
from .spec import OVERLAP_POLICIES, ScheduleSpec
from .store import ScheduleState, UnknownSchedule

__all__ = [
    "OVERLAP_POLICIES",
    "ScheduleSpec",
    "ScheduleState",
    "Scheduler",
    "Schedules",
    "UnknownSchedule",
    "registered",
    "schedule",
]
