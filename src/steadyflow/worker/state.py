"""What the worker pool's supervisor keeps about its children and their tasks, and its settings'
checks. Plain data: the behaviour lives in `pool.py`."""

from __future__ import annotations

from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from ..errors import ConfigError, SteadyflowError

MIN_WAIT = 0.002
"""First wait after an empty poll; doubles up to `poll_interval` while nothing is found."""
MIN_HEARTBEAT_INTERVAL = 0.2
CRASH_LOOP_LIMIT = 5
"""Children dying in a row without running a task before `run` gives up with `PoolError`."""
SHUTDOWN_REASON = "WorkerShutdown: task handed back on shutdown"
MAX_MESSAGES_PER_WAKE = 100
CHILD_EXIT_TIMEOUT = 5.0
MB = 1 << 20


class PoolError(SteadyflowError):
    """The pool cannot keep its child processes alive (they die on start again and again)."""


class PoolConfigError(ConfigError, ValueError):
    """A pool setting is out of range (a `ConfigError` for the CLI, a `ValueError` for callers)."""


def heartbeat_interval(heartbeat_timeout: float | None, maximum: float | None = None) -> float | None:
    """How often the supervisor heartbeats a task: a third of its timeout, at least 0.2 s, and at
    most `maximum` seconds apart when given (stefuna's `heartbeat` setting)."""
    interval = None
    if heartbeat_timeout and heartbeat_timeout > 0:
        interval = max(MIN_HEARTBEAT_INTERVAL, heartbeat_timeout / 3)
    if maximum and maximum > 0:
        interval = min(interval or maximum, max(MIN_HEARTBEAT_INTERVAL, maximum))
    return interval


def positive(name: str, value: float | None, integer: bool = False) -> float | None:
    """`value` when it is None or a positive number (an integer if `integer`), else `PoolConfigError`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or (integer and value != int(value)):
        kind = "a positive integer" if integer else "a positive number"
        raise PoolConfigError(f"{name} must be {kind} or None, not {value!r}")
    return value


@dataclass(eq=False)
class Running:
    """A task leased by the supervisor and handed to a child."""

    token: str
    label: str
    interval: float | None
    last_beat: float
    next_beat: float | None
    hard_timeout: float | None = None
    hard_deadline: float | None = None  # set when it starts (at once in a one-task child)
    details: str | None = None  # latest details from the activity, not yet sent to the engine
    lost: bool = False  # the engine no longer knows the lease
    cancel_sent: bool = False
    kill_message: str | None = None  # set when its hard timeout killed its process
    is_async: bool = False  # the supervisor's view (an `async def` activity); only steers placement
    activity: str = ""  # the activity's name, for metrics
    handed_at: float = 0.0  # time.monotonic() when it went to the child, for metrics


@dataclass(eq=False)
class Child:
    """A child process, its pipe, and the tasks it runs (at most `capacity`)."""

    process: Any
    conn: Connection
    capacity: int = 1
    max_tasks: int | None = None  # maxtasksperchild: it is handed no more than that, ever
    ready: bool = False
    gone: bool = False  # pipe at EOF or process exited; reaped on the next turn of the loop
    retiring: bool = False  # stopped or killed on purpose, already replaced
    tasks: dict[str, Running] = field(default_factory=dict)  # by token, in hand-over order
    tasks_run: int = 0
    stop_when_done: bool = False  # recycled: send `stop` once its last task is reported
    stop_sent: bool = False
    killed_at: float | None = None  # when a hard timeout sent SIGTERM
    sigkilled: bool = False
    kill_reason: str | None = None  # the failure reason of the tasks that ran beside the culprit

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    @property
    def task(self) -> Running | None:
        """The first task it runs (the only one in a one-task child), or None."""
        return next(iter(self.tasks.values()), None)

    @property
    def room(self) -> int:
        """How many more tasks it takes now (0 unless ready and in service)."""
        if not self.ready or self.gone or self.retiring:
            return 0
        room = self.capacity - len(self.tasks)
        if self.max_tasks is not None:
            room = min(room, self.max_tasks - self.tasks_run - len(self.tasks))
        return max(0, room)

    @property
    def idle(self) -> bool:
        """Ready for a (further) task."""
        return self.room > 0

    @property
    def plain_tasks(self) -> int:
        """Tasks it runs that are not `async def` activities (they run one at a time)."""
        return sum(1 for r in self.tasks.values() if not r.is_async)


@dataclass(frozen=True)
class PoolStatus:
    """A snapshot of the pool for the healthcheck (durations in seconds)."""

    active: bool
    stopping: bool
    processes: int
    alive: int
    ready: int
    idle: int  # children that take a (further) task now
    running: int
    completed: int
    seconds_since_last_poll: float | None
    short_for: float | None  # how long fewer children than `processes` have been ready
    start_failures: int
    last_exit_code: int | None
    error: str | None
