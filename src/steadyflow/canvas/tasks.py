"""What users build: `Group`, `Chain`, `FuncGroup`, `ActivityTask`, `WorkflowTask`, and the
`AggregateException` a failed group or chain reports. They only describe work; `run.py` runs it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..activity import Activity, as_activity
from ..errors import TaskFailed
from ..futures import Future
from ..workflow import Workflow


class AggregateException(TaskFailed):
    """The failures of a group's or chain's members, in member order (None where one succeeded).

    simpleflow's class, with `exceptions`, `append`, `handle` and `flatten`. It is also a
    `TaskFailed` that carries the first failure's `name`, `reason` and `details`, so `except
    TaskFailed` catches a failed canvas, and one that nobody catches fails the workflow with the
    same reason as that first task's failure would (`Workflow execution error in activity-...`).
    """

    def __init__(self, exceptions: list[BaseException | None]) -> None:
        self.exceptions = list(exceptions)
        first = next(iter(_flat(self.exceptions)), None)
        if isinstance(first, TaskFailed):
            super().__init__(first.name, first.reason, first.details)
        else:
            super().__init__("canvas", None if first is None else f"{type(first).__name__}: {first}")

    def append(self, ex: BaseException | None) -> None:
        self.exceptions.append(ex)

    def handle(self, handler: Callable[..., bool], *args: Any, **kwargs: Any) -> None:
        """Call `handler(exception, *args, **kwargs)` on each failure; raise a new
        `AggregateException` of those it did not handle (returned False for)."""
        unhandled = [ex for ex in self.exceptions if ex and not handler(ex, *args, **kwargs)]
        if unhandled:
            raise AggregateException(unhandled)

    def flatten(self) -> AggregateException:
        """The same failures without nesting (a chain of groups fails with aggregates inside)."""
        return AggregateException(list(_flat(self.exceptions)))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {[repr(ex) for ex in self.exceptions]!r}>"

    def __str__(self) -> str:
        return f"{type(self).__name__}({[str(ex) for ex in self.exceptions]!s})"


def _flat(exceptions: Iterable[BaseException | None]) -> Iterator[BaseException]:
    for ex in exceptions:
        if isinstance(ex, AggregateException):
            yield from _flat(ex.exceptions)
        elif ex is not None:
            yield ex


# -- what users build -----------------------------------------------------------------------------


class Submittable:
    """Something `Workflow.submit` hands itself to: `submit_to(workflow)` schedules it and returns
    its future."""

    def submit_to(self, workflow: Workflow, *args: Any, **kwargs: Any) -> Future:
        if args or kwargs:
            raise TypeError(
                f"{type(self).__name__} takes no arguments when submitted: give them when building it"
            )
        self._check()
        from .run import submit  # the run-time side imports this module

        return submit(self, workflow)

    def _check(self) -> None:
        """Raise for a structure that cannot run (found at submission, inside `run()`)."""


class ActivityTask(Submittable):
    """An activity and its arguments, to be submitted later (futures among them are waited for)."""

    def __init__(self, activity: Any, *args: Any, **kwargs: Any) -> None:
        self.activity: Activity = as_activity(activity)
        self.args = list(args)
        self.kwargs = dict(kwargs)

    @property
    def name(self) -> str:
        return f"activity-{self.activity.name}"

    def submit_to(self, workflow: Workflow, *args: Any, **kwargs: Any) -> Future:
        if args or kwargs:
            raise TypeError("ActivityTask takes no arguments when submitted: give them when building it")
        return workflow.executor.submit(self.activity, tuple(self.args), dict(self.kwargs))

    def _schedule(self, workflow: Workflow, extra: tuple[Any, ...], raises_on_failure: bool | None) -> Future:
        act = self.activity
        if raises_on_failure is not None and raises_on_failure != act.options.raises_on_failure:
            # A copy for this submission only: simpleflow sets the attribute on the shared activity.
            act = Activity(act.func, dataclasses.replace(act.options, raises_on_failure=raises_on_failure))
        return workflow.executor.submit(act, (*self.args, *extra), dict(self.kwargs))

    def __repr__(self) -> str:
        return f"ActivityTask(activity={self.activity}, args={self.args}, kwargs={self.kwargs})"


class WorkflowTask(Submittable):
    """A child workflow and its arguments: `WorkflowTask(Child, *args, **kwargs)`.

    simpleflow's spelling `WorkflowTask(executor, Child, *args)` works too (the executor is
    ignored). `workflow_task_list=` is the child's decision task list.
    """

    def __init__(
        self, workflow: Any, *args: Any, workflow_task_list: str | None = None, **kwargs: Any
    ) -> None:
        if not _is_workflow_class(workflow) and args and _is_workflow_class(args[0]):
            workflow, args = args[0], args[1:]
        if not _is_workflow_class(workflow):
            raise TypeError(f"WorkflowTask needs a Workflow subclass, got {workflow!r}")
        self.workflow: type[Workflow] = workflow
        self.args = list(args)
        self.kwargs = dict(kwargs)
        self.task_list = workflow_task_list

    @property
    def name(self) -> str:
        return f"workflow-{self.workflow.type_name()}"

    def submit_to(self, workflow: Workflow, *args: Any, **kwargs: Any) -> Future:
        if args or kwargs:
            raise TypeError("WorkflowTask takes no arguments when submitted: give them when building it")
        return self._schedule(workflow, (), None)

    def _schedule(self, workflow: Workflow, extra: tuple[Any, ...], raises_on_failure: bool | None) -> Future:
        args = (*self.args, *extra)
        return workflow.executor.submit_child(
            self.workflow, args, dict(self.kwargs), None, None, self.task_list
        )

    def __repr__(self) -> str:
        return (
            f"WorkflowTask(workflow={self.workflow.qualified_name()}, args={self.args}, kwargs={self.kwargs})"
        )


ChildWorkflowTask = WorkflowTask
"""simpleflow's name for a `WorkflowTask` built without an executor."""


class Group(Submittable):
    """Members that run in parallel, at most `max_parallel` at once (None or 0: no limit).

    Members are `ActivityTask`, `WorkflowTask`, `Group`, `Chain`, `FuncGroup`, an activity or a
    workflow class, or a tuple `(activity, *args)`. `raises_on_failure`, when not None, overrides
    every member's own (outermost wins). With `bubbles_exception_on_failure=False` the group's
    future reports no failure: the failed members' results are None.
    """

    def __init__(
        self,
        *activities: Any,
        max_parallel: int | None = None,
        raises_on_failure: bool | None = None,
        bubbles_exception_on_failure: bool = True,
    ) -> None:
        if max_parallel is not None and (not isinstance(max_parallel, int) or max_parallel < 0):
            raise ValueError(f"max_parallel must be None or a non-negative integer, not {max_parallel!r}")
        self.activities: list[Submittable] = []
        self.max_parallel = max_parallel
        self.raises_on_failure = raises_on_failure
        self.bubbles_exception_on_failure = bubbles_exception_on_failure
        self.extend(activities)

    def append(self, submittable: Any, *args: Any, **kwargs: Any) -> None:
        """Add one member: a canvas object, or an activity or workflow class with its arguments."""
        if isinstance(submittable, Submittable):
            if args or kwargs:
                raise ValueError("args, kwargs not supported for Submittable or SubmittableContainer")
        elif _is_workflow_class(submittable):
            submittable = WorkflowTask(submittable, *args, **kwargs)
        elif callable(submittable):
            submittable = ActivityTask(submittable, *args, **kwargs)
        else:
            raise ValueError(f"{submittable!r} should be a Submittable, Group, or Activity")
        self.activities.append(submittable)

    def extend(self, iterable: Iterable[Any]) -> None:
        """Add members; a tuple is `(activity, *args)`."""
        for item in iterable:
            if isinstance(item, tuple):
                self.append(*item)
            else:
                self.append(item)

    def __iadd__(self, iterable: Iterable[Any]) -> Group:
        self.extend(iterable)
        return self

    def _check(self) -> None:
        for member in self.activities:
            member._check()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} activities={self.activities!r}>"


_UNSET: Any = object()


class Chain(Group):
    """Members that run one after the other.

    `send_result=True` passes each member's result to the next as its last positional argument
    (so the members after the first are activities, workflows or `FuncGroup`s). A member's
    failure ends the chain unless `break_on_failure=False`; the two cannot be combined, since the
    next member would have no result to receive.
    """

    def __init__(
        self,
        *activities: Any,
        send_result: bool = False,
        break_on_failure: bool = True,
        raises_on_failure: bool | None = None,
        bubbles_exception_on_failure: bool = _UNSET,
        max_parallel: int | None = None,
    ) -> None:
        if send_result and not break_on_failure:
            raise ValueError("Cannot combine send_result=True with break_on_failure=False")
        if bubbles_exception_on_failure is _UNSET:
            # simpleflow: a chain that does not raise does not break the chains around it either.
            bubbles_exception_on_failure = raises_on_failure is not False
        self.send_result = send_result
        self.break_on_failure = break_on_failure
        super().__init__(
            *activities,
            max_parallel=max_parallel,  # accepted, as simpleflow does; a chain runs one at a time
            raises_on_failure=raises_on_failure,
            bubbles_exception_on_failure=bubbles_exception_on_failure,
        )

    def _check(self) -> None:
        super()._check()
        if self.send_result:
            for member in self.activities[1:]:
                if isinstance(member, Group):
                    raise TypeError(
                        f"a Chain with send_result=True cannot pass a result to a {type(member).__name__}: "
                        "wrap it in a FuncGroup, whose function receives the result and returns the group"
                    )


class FuncGroup(Submittable):
    """`func(*args, **kwargs)` builds the canvas to run, when the FuncGroup's turn comes.

    In a chain with `send_result=True` it gets the previous result as its last argument, so a
    group can be shaped by earlier results. Futures among `args` and `kwargs` are waited for and
    replaced by their results first. `func` runs again on every replay: it must only build.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *args: Any,
        raises_on_failure: bool | None = None,
        _allow_none: bool = False,
        **kwargs: Any,
    ) -> None:
        self.func = func
        self.args = list(args)
        self.kwargs = dict(kwargs)
        self.raises_on_failure = raises_on_failure
        self.allow_none = _allow_none

    @property
    def name(self) -> str:
        return f"FuncGroup({getattr(self.func, '__module__', '?')}.{getattr(self.func, '__qualname__', repr(self.func))})"

    def __repr__(self) -> str:
        return f"<FuncGroup func={self.func!r} args={self.args!r} kwargs={self.kwargs!r}>"


def _is_workflow_class(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, Workflow)
