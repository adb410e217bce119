"""How a submitted canvas runs: a tree of nodes, derived futures, and the driver that moves it on
from the executor's deferred callbacks (the design is in the package docstring)."""

from __future__ import annotations

import traceback
import weakref
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from ..errors import TaskFailed, WorkflowError
from ..futures import FINISHED, PENDING, RUNNING, Future, futures_in, resolved
from ..workflow import Workflow, current_executor
from .tasks import ActivityTask, AggregateException, Chain, FuncGroup, Group, Submittable, WorkflowTask

WAKE_UP_TIMER = "_steadyflow_canvas_wake_up"
"""Prefix of the zero-second timer a canvas starts when it finished inside a decider callback (see
`_Driver._wake`), so that tasks waiting on it are looked at again."""


def submit(spec: Submittable, workflow: Workflow) -> Future:
    """Start `spec` in `workflow` (inside its `run()`); return the future of the whole."""
    return _Driver(workflow, node_for(spec, workflow, None)).start()


def node_for(spec: Submittable, workflow: Workflow, raises_on_failure: bool | None) -> _Node:
    """The run-time node of one member; `raises_on_failure` is the nearest enclosing override."""
    if isinstance(spec, (ActivityTask, WorkflowTask)):
        return _Leaf(workflow, spec, raises_on_failure)
    own = _outer(raises_on_failure, getattr(spec, "raises_on_failure", None))
    if isinstance(spec, Chain):
        return _ChainNode(workflow, spec, own)
    if isinstance(spec, Group):
        return _GroupNode(workflow, spec, own)
    if isinstance(spec, FuncGroup):
        return _FuncNode(workflow, spec, own)
    raise TypeError(f"{spec!r} cannot be a member of a canvas")


def _outer(outer: bool | None, own: bool | None) -> bool | None:
    return own if outer is None else outer


# -- futures --------------------------------------------------------------------------------------


class _Outcome(NamedTuple):
    state: str
    result: Any = None
    exception: BaseException | None = None
    raises: bool = True
    order: int = 0


class _DerivedFuture(Future):
    """A future whose state is computed from other futures each time it is read."""

    def __init__(self, compute: Callable[[], _Outcome]) -> None:
        super().__init__()
        self._compute = compute
        self._final = False

    def _sync(self) -> None:
        if self._final:
            return
        o = self._compute()
        self._state, self._result, self._exception, self._raises, self._done_order = o
        self._final = o.state == FINISHED

    @property
    def state(self) -> str:
        self._sync()
        return self._state

    @property
    def finished(self) -> bool:
        self._sync()
        return self._state == FINISHED

    @property
    def done(self) -> bool:
        return self.finished

    @property
    def pending(self) -> bool:
        return self.state == PENDING

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def cancelled(self) -> bool:
        return False

    @property
    def exception(self) -> BaseException | None:
        self._sync()
        return self._exception

    def __repr__(self) -> str:
        self._sync()
        return f"<{type(self).__name__} {self._state} result={self._result!r} exception={self._exception!r}>"


class GroupFuture(_DerivedFuture):
    """The future of a submitted `Group`: the list of its members' results, in order.

    It finishes when every member has. Its `exception` is an `AggregateException` when a member
    failed (unless `bubbles_exception_on_failure=False`); reading `result` then raises it if one of
    the failed members' own futures would raise, and returns the list (None for the failed) if
    not, the per-activity `raises_on_failure` rule applied to the whole.
    """

    def __init__(self, node: _ListNode) -> None:
        super().__init__(node.outcome)
        self._node = node

    @property
    def futures(self) -> list[Future]:
        """The futures of the members started so far."""
        return [m.future for m in self._node.started]

    @property
    def activities(self) -> list[Submittable]:
        return list(self._node.spec.activities)

    @property
    def count_finished_activities(self) -> int:
        return sum(1 for f in self.futures if f.finished)


class ChainFuture(GroupFuture):
    """The future of a submitted `Chain`: the results of the members that ran, in order."""


class _Gate(Future):
    """Finished as soon as one of `watched` is: the executor's deferred callbacks wait on it."""

    def __init__(self, watched: list[Future]) -> None:
        super().__init__()
        self._watched = watched

    @property
    def finished(self) -> bool:
        return any(f.finished for f in self._watched)


def _failed(exc: BaseException) -> Future:
    future = Future()
    future.set_exception(exc)
    return future


def _as_task_failed(name: str, exc: BaseException) -> TaskFailed:
    """A failure while starting a member, as that member's `TaskFailed` (simpleflow's details)."""
    if isinstance(exc, TaskFailed):
        return exc
    details = {
        "error": type(exc).__name__,
        "message": str(exc),
        "traceback": traceback.format_exception(type(exc), exc, exc.__traceback__),
    }
    return TaskFailed(name, f"{type(exc).__name__}: {exc}", details)


# -- run-time nodes -------------------------------------------------------------------------------


class _Node:
    """One submitted member. `start` schedules what may start now, `advance` what has become
    possible since; `waiting_on` lists the unfinished tasks whose end may let it go on."""

    future: Future

    def start(self, extra: tuple[Any, ...]) -> None:
        raise NotImplementedError

    def advance(self) -> None:
        pass

    def waiting_on(self) -> Iterator[Future]:
        raise NotImplementedError


class _Leaf(_Node):
    """An activity or child workflow."""

    def __init__(
        self, workflow: Workflow, task: ActivityTask | WorkflowTask, raises_on_failure: bool | None
    ) -> None:
        self.workflow = workflow
        self.task = task
        self.raises_on_failure = raises_on_failure
        self.task_future: Future = Future()  # replaced at start
        self.future = self.task_future

    def start(self, extra: tuple[Any, ...]) -> None:
        try:
            self.task_future = self.task._schedule(self.workflow, extra, self.raises_on_failure)
        except Exception as exc:  # bad input (not serialisable, say): this member fails, not the decider
            self.task_future = _failed(_as_task_failed(self.task.name, exc))
        self.future = self.task_future
        if self.raises_on_failure is False and isinstance(self.task, WorkflowTask):
            # Activities take the option when scheduled; a child's failure is muted here.
            self.future = _DerivedFuture(self._quiet)

    def _quiet(self) -> _Outcome:
        f = self.task_future
        if not f.finished:
            return _Outcome(f.state)
        return _Outcome(FINISHED, f._result, f.exception, False, f._done_order)

    def waiting_on(self) -> Iterator[Future]:
        if not self.task_future.finished:
            yield self.task_future


class _ListNode(_Node):
    """What groups and chains share: members, of which a prefix has started."""

    future: GroupFuture

    def __init__(self, workflow: Workflow, spec: Group, raises_on_failure: bool | None) -> None:
        self.spec = spec
        self.members = [node_for(m, workflow, raises_on_failure) for m in spec.activities]
        self.started: list[_Node] = []
        self.bubbles = spec.bubbles_exception_on_failure

    def complete(self) -> bool:
        raise NotImplementedError

    def outcome(self) -> _Outcome:
        results: list[Any] = []
        errors: list[BaseException | None] = []
        raises = moving = False
        order = 0
        for member in self.started:
            f = member.future
            if f.finished:
                exc = f.exception
                results.append(f._result)
                errors.append(exc)
                raises = raises or (exc is not None and f._raises)
                order = max(order, f._done_order)
                moving = True
            else:
                results.append(None)
                errors.append(None)
                moving = moving or f.running
        if not self.complete():
            return _Outcome(RUNNING if moving else PENDING, results)
        failure = AggregateException(errors) if self.bubbles is not False and any(errors) else None
        return _Outcome(FINISHED, results, failure, failure is not None and raises, order)


class _GroupNode(_ListNode):
    def __init__(self, workflow: Workflow, spec: Group, raises_on_failure: bool | None) -> None:
        super().__init__(workflow, spec, raises_on_failure)
        self.limit = spec.max_parallel or None
        self.open: list[_Node] = []  # started, not finished
        self.future = GroupFuture(self)

    def start(self, extra: tuple[Any, ...]) -> None:
        self.advance()

    def advance(self) -> None:
        for member in self.open:
            member.advance()
        self.open = [m for m in self.open if not m.future.finished]
        while len(self.started) < len(self.members) and (self.limit is None or len(self.open) < self.limit):
            member = self.members[len(self.started)]
            self.started.append(member)
            member.start(())
            if not member.future.finished:
                self.open.append(member)

    def complete(self) -> bool:
        return len(self.started) == len(self.members) and all(m.future.finished for m in self.started)

    def waiting_on(self) -> Iterator[Future]:
        for member in self.open:
            yield from member.waiting_on()


class _ChainNode(_ListNode):
    def __init__(self, workflow: Workflow, spec: Chain, raises_on_failure: bool | None) -> None:
        super().__init__(workflow, spec, raises_on_failure)
        self.send_result = spec.send_result
        self.break_on_failure = spec.break_on_failure
        self.future = ChainFuture(self)

    def start(self, extra: tuple[Any, ...]) -> None:
        self.advance()

    def advance(self) -> None:
        while True:
            if self.started:
                last = self.started[-1]
                last.advance()
                if not last.future.finished or self._broken() or len(self.started) == len(self.members):
                    return
                extra = (last.future._result,) if self.send_result else ()
            elif self.members:
                extra = ()
            else:
                return
            member = self.members[len(self.started)]
            self.started.append(member)
            member.start(extra)

    def _broken(self) -> bool:
        last = self.started[-1].future if self.started else None
        return self.break_on_failure and last is not None and last.finished and last.exception is not None

    def complete(self) -> bool:
        if self._broken():
            return True
        return len(self.started) == len(self.members) and all(m.future.finished for m in self.started)

    def waiting_on(self) -> Iterator[Future]:
        if self.started:
            yield from self.started[-1].waiting_on()


class _FuncNode(_Node):
    """A `FuncGroup`: waits for the futures among its arguments, then builds and starts its canvas."""

    def __init__(self, workflow: Workflow, spec: FuncGroup, raises_on_failure: bool | None) -> None:
        self.workflow = workflow
        self.spec = spec
        self.raises_on_failure = raises_on_failure
        self.started = False
        self.extra: tuple[Any, ...] = ()
        self.inner: _Node | None = None
        self.ended: _Outcome | None = None  # failed before building, or built nothing (`_allow_none`)
        self.future = _DerivedFuture(self.outcome)

    def start(self, extra: tuple[Any, ...]) -> None:
        self.started, self.extra = True, extra
        self.advance()

    def advance(self) -> None:
        if self.inner is not None:
            self.inner.advance()
            return
        if not self.started or self.ended is not None:
            return
        deps = futures_in((self.spec.args, self.spec.kwargs))
        if any(not d.finished for d in deps):
            return
        failed = next((d for d in deps if d.exception is not None and d._raises), None)
        if failed is not None:
            self.ended = _Outcome(FINISHED, None, failed.exception, True, failed._done_order)
            return
        try:
            built = self._call()
            if built is None and self.spec.allow_none:
                self.ended = _Outcome(FINISHED)
                return
            if not isinstance(built, Submittable):
                raise TypeError(
                    f"FuncGroup submission should return a Group or Submittable, got {type(built)} instead"
                )
            built._check()
            inner = node_for(built, self.workflow, self.raises_on_failure)
        except Exception as exc:  # the function's bug fails this member, not the decider
            self.ended = _Outcome(FINISHED, None, _as_task_failed(self.spec.name, exc), True)
            return
        self.inner = inner
        inner.start(())

    def _call(self) -> Any:
        args = [*resolved(self.spec.args), *self.extra]
        kwargs = resolved(self.spec.kwargs)
        # Called from the decider thread when its turn comes there: `@cached` inside must still
        # find the executor, so its markers replay.
        token = current_executor.set(self.workflow.executor)
        try:
            return self.spec.func(*args, **kwargs)
        finally:
            current_executor.reset(token)

    def outcome(self) -> _Outcome:
        if self.ended is not None:
            return self.ended
        if self.inner is None:
            return _Outcome(PENDING)
        f = self.inner.future
        if not f.finished:
            return _Outcome(f.state)
        return _Outcome(FINISHED, f._result, f.exception, f._raises, f._done_order)

    def waiting_on(self) -> Iterator[Future]:
        if self.inner is not None:
            yield from self.inner.waiting_on()
        elif self.ended is None:
            yield from (d for d in futures_in((self.spec.args, self.spec.kwargs)) if not d.finished)


# -- the driver -----------------------------------------------------------------------------------

_wake_ups: weakref.WeakKeyDictionary[Workflow, int] = weakref.WeakKeyDictionary()


class _Driver:
    """Moves one submitted canvas on, from the executor's deferred callbacks."""

    def __init__(self, workflow: Workflow, root: _Node) -> None:
        self.workflow = workflow
        self.root = root

    def start(self) -> Future:
        self.root.start(())
        self._watch()
        return self.root.future

    def _watch(self) -> None:
        if self.root.future.finished:
            return
        watched = [f for f in self.root.waiting_on() if not f.finished]
        if not watched:  # would hang the execution silently: fail the decision loudly instead
            raise WorkflowError(f"canvas {self.root.future!r} is unfinished but waits on no task")
        # The executor's mechanism for futures among a task's arguments: `_wake` runs at the first
        # decision point where the gate counts as finished, before `run()` resumes.
        self.workflow.executor._when_ready(Future(), (_Gate(watched),), {}, self._wake)

    def _wake(self, _args: list[Any], _kwargs: dict[str, Any]) -> None:
        was_finished = self.root.future.finished
        self.root.advance()
        if not was_finished and self.root.future.finished:
            # It finished here rather than when a task's completion arrived (a FuncGroup that built
            # nothing, a member that failed as it started). A task deferred on this future may have
            # been looked at already in this round: a timer that fires at once brings another.
            n = _wake_ups.get(self.workflow, 0) + 1
            _wake_ups[self.workflow] = n
            self.workflow.start_timer(f"{WAKE_UP_TIMER}-{n}", 0)
        self._watch()
