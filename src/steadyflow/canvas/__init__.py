"""The canvas: simpleflow's `Group`, `Chain` and `FuncGroup`, with `ActivityTask` and `WorkflowTask`.

A canvas is a description of work; `self.submit(canvas)` inside `run()` schedules it and returns
one future whose result is the list of its members' results. Groups and chains nest.

How it runs. Submitting builds a tree of run-time nodes, one per member, and starts what may start
now (a group's first `max_parallel` members, a chain's first link). What happens next is driven by
the executor's own deferred-argument mechanism, the one that holds `self.submit(f, some_future)`
until `some_future` finishes: the canvas registers a *gate*, a future that counts as finished as
soon as any task the tree waits on has finished. At the next decision point where that is so, the
executor calls back; the tree starts what became possible (the next members of a group, the next
link of a chain, a `FuncGroup`'s function) and registers a new gate. That callback runs in the
decider thread before `run()` resumes, at the same decision points on every replay, so what it
schedules is deterministic and `run()` is never blocked by a submission.

A group or chain future holds no state of its own: whether it is finished, its result and its
failure are computed from its members' futures whenever they are read. So it finishes in the very
decision where its last task's completion arrives, for `run()` and for a task waiting on it alike.

`max_parallel` is a count of members started and not finished: a member is started only while
fewer than N are open, and a slot frees only when a task's closing event is in the history, so at
no point do more than N of a group's tasks stand scheduled and open, whichever decider replays it.

Alternatives rejected: simpleflow's `GroupFuture` re-submits members on every replay of `run()`,
which needs `run()` to replay from the top at each decision (steadyflow keeps it parked instead);
driving the group from `run()` itself (waiting for the first member to finish, then submitting
the next) would block `run()` at `self.submit(group)`; scheduling member k+N with member k's
future as a dependency would stall the group behind one slow member while other slots are free.
"""

from __future__ import annotations

from .run import WAKE_UP_TIMER, ChainFuture, GroupFuture
from .tasks import (
    ActivityTask,
    AggregateException,
    Chain,
    ChildWorkflowTask,
    FuncGroup,
    Group,
    Submittable,
    WorkflowTask,
)

__all__ = [
    "WAKE_UP_TIMER",
    "ActivityTask",
    "AggregateException",
    "Chain",
    "ChainFuture",
    "ChildWorkflowTask",
    "FuncGroup",
    "Group",
    "GroupFuture",
    "Submittable",
    "WorkflowTask",
]
