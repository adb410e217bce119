"""One implementation, two calling conventions: how `Client` and `AsyncClient` share every method.

Each client operation is written once, as a generator that does no I/O itself. It *yields*
effects, small values that say what to do, and gets the outcome sent back:

- `Call(fn, args, kwargs)`: run a blocking function (an engine call, a payload decode) and send
  back its result, or throw its exception into the generator at the `yield`;
- `Sleep(seconds)`: wait, then resume;
- `Emit(value)`: hand a value to the caller (only in streams, such as a paged listing).

The generator's `return` value is the operation's result. An `IO` strategy performs the effects:
`BLOCKING` calls the function and uses `time.sleep`; `AWAITING` runs the function in a worker
thread with `asyncio.to_thread` and waits with `asyncio.sleep`, so an event loop is never blocked
and many awaits can wait at once.

`@operation` and `@stream` turn such a generator method into a descriptor. Read on a `Blocking`
class it is a plain method; on an `Awaiting` class it is a coroutine method (or, for a stream, a
method returning an async iterator). So a method body exists exactly once, and the two clients
cannot drift apart. The descriptors are typed, so `Client.start(...)` checks as returning the
handle and `AsyncClient.start(...)` as an awaitable of it.

Rejected alternatives: hand-written twin methods (what the issue rules out), an async core with a
sync wrapper that runs an event loop per call (breaks inside a running loop, e.g. a notebook or an
async web server calling the sync client, and costs a loop per call), and a sync core that the
async client merely runs in a thread (`result()` would then hold a thread for its whole wait).
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Concatenate, Generic, ParamSpec, TypeVar, overload

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """Run `fn(*args, **kwargs)`, which may block; its result (or exception) goes back."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sleep:
    """Wait `seconds`."""

    seconds: float


@dataclass(frozen=True)
class Emit(Generic[T]):
    """Hand `value` to whoever iterates the stream."""

    value: T


Effect = Call | Sleep | Emit[Any]
#: An operation: a generator yielding effects and returning its result.
Op = Generator[Effect, Any, R]
#: A stream: a generator yielding effects, among them `Emit[T]` for each value it produces.
StreamOp = Generator[Call | Sleep | Emit[T], Any, None]


def call(fn: Callable[..., R], *args: Any, **kwargs: Any) -> Generator[Effect, Any, R]:
    """`result = yield from call(fn, ...)`: the typed spelling of `yield Call(fn, args, kwargs)`."""
    result: R = yield Call(fn, args, kwargs)
    return result


def sleep(seconds: float) -> Generator[Effect, Any, None]:
    yield Sleep(seconds)


@dataclass(frozen=True)
class _Done:
    value: Any


class BlockingIO:
    """Performs effects in the calling thread."""

    def _steps(self, op: Op[Any]) -> Iterator[Emit[Any] | _Done]:
        value: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    effect = op.send(value) if error is None else op.throw(error)
                except StopIteration as stop:
                    yield _Done(stop.value)
                    return
                value, error = None, None
                if isinstance(effect, Emit):
                    yield effect
                elif isinstance(effect, Sleep):
                    time.sleep(max(effect.seconds, 0.0))
                else:
                    try:
                        value = effect.fn(*effect.args, **effect.kwargs)
                    except Exception as exc:  # the operation may handle it; if not, it comes back out
                        error = exc
        finally:
            op.close()

    def run(self, op: Op[R]) -> R:
        for step in self._steps(op):
            if isinstance(step, _Done):
                return step.value  # type: ignore[no-any-return]
        raise AssertionError("unreachable: an operation always finishes with _Done")  # pragma: no cover

    def stream(self, op: Op[None]) -> Iterator[Any]:
        for step in self._steps(op):
            if isinstance(step, Emit):
                yield step.value

    def method(self, fn: Callable[..., Op[Any]]) -> Callable[..., Any]:
        def method(obj: Any, *args: Any, **kwargs: Any) -> Any:
            return self.run(fn(obj, *args, **kwargs))

        return method

    def stream_method(self, fn: Callable[..., Op[None]]) -> Callable[..., Any]:
        def method(obj: Any, *args: Any, **kwargs: Any) -> Any:
            return self.stream(fn(obj, *args, **kwargs))

        return method


def _asyncio() -> Any:
    """asyncio, imported when first needed: `import steadyflow` should not pay for it."""
    import asyncio

    return asyncio


class AwaitingIO:
    """Performs effects without blocking the event loop: calls in a worker thread, `asyncio.sleep`."""

    async def _steps(self, op: Op[Any]) -> AsyncGenerator[Emit[Any] | _Done, None]:
        value: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    effect = op.send(value) if error is None else op.throw(error)
                except StopIteration as stop:
                    yield _Done(stop.value)
                    return
                value, error = None, None
                if isinstance(effect, Emit):
                    yield effect
                elif isinstance(effect, Sleep):
                    await _asyncio().sleep(max(effect.seconds, 0.0))
                else:
                    try:
                        value = await _asyncio().to_thread(effect.fn, *effect.args, **effect.kwargs)
                    except Exception as exc:
                        error = exc
        finally:
            op.close()

    async def run(self, op: Op[R]) -> R:
        steps = self._steps(op)
        try:
            async for step in steps:
                if isinstance(step, _Done):
                    return step.value  # type: ignore[no-any-return]
        finally:
            await steps.aclose()
        raise AssertionError("unreachable: an operation always finishes with _Done")  # pragma: no cover

    async def stream(self, op: Op[None]) -> AsyncIterator[Any]:
        steps = self._steps(op)
        try:
            async for step in steps:
                if isinstance(step, Emit):
                    yield step.value
        finally:
            await steps.aclose()

    def method(self, fn: Callable[..., Op[Any]]) -> Callable[..., Any]:
        async def method(obj: Any, *args: Any, **kwargs: Any) -> Any:
            return await self.run(fn(obj, *args, **kwargs))

        return method

    def stream_method(self, fn: Callable[..., Op[None]]) -> Callable[..., Any]:
        def method(obj: Any, *args: Any, **kwargs: Any) -> Any:
            return self.stream(fn(obj, *args, **kwargs))

        return method


IO = BlockingIO | AwaitingIO
BLOCKING = BlockingIO()
AWAITING = AwaitingIO()


class Blocking:
    """Mixin: operations of this class are plain methods."""

    _io: ClassVar[IO] = BLOCKING


class Awaiting:
    """Mixin: operations of this class are coroutine methods, streams async iterators."""

    _io: ClassVar[IO] = AWAITING


class _Descriptor:
    """What `operation` and `stream` share: one generated function per IO style, with the
    generator's name, docstring and parameters (without its generator return annotation)."""

    _streaming = False

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]
        signature = inspect.signature(fn)
        self._signature = signature.replace(return_annotation=inspect.Signature.empty)
        self._functions: dict[int, Callable[..., Any]] = {}

    def _function(self, io: IO) -> Callable[..., Any]:
        function = self._functions.get(id(io))
        if function is None:
            function = io.stream_method(self.fn) if self._streaming else io.method(self.fn)
            functools.update_wrapper(function, self.fn)
            function.__signature__ = self._signature  # type: ignore[attr-defined]
            self._functions[id(io)] = function
        return function

    def _get(self, obj: Any, owner: type | None) -> Any:
        if obj is None:  # on the class: its function (for `help()`), or this on the shared base
            io = getattr(owner, "_io", None)
            return self if io is None else self._function(io)
        io = getattr(obj, "_io", None)
        if io is None:
            raise TypeError(f"{type(obj).__name__} is neither Blocking nor Awaiting: cannot run {self.fn.__name__}")
        return self._function(io).__get__(obj, owner)


class operation(_Descriptor, Generic[P, R]):  # noqa: N801 - used as a decorator, like `property`
    """Decorates a generator method (see the module docstring) into a client method."""

    def __init__(self, fn: Callable[Concatenate[Any, P], Op[R]]) -> None:
        super().__init__(fn)

    @overload
    def __get__(self, obj: None, owner: type) -> operation[P, R]: ...
    @overload
    def __get__(self, obj: Awaiting, owner: type | None = None) -> Callable[P, Awaitable[R]]: ...
    @overload
    def __get__(self, obj: Blocking, owner: type | None = None) -> Callable[P, R]: ...
    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self._get(obj, owner)


class stream(_Descriptor, Generic[P, T]):  # noqa: N801 - used as a decorator, like `property`
    """Decorates a generator method that `Emit`s values into an iterator (async for `Awaiting`)."""

    _streaming = True

    def __init__(self, fn: Callable[Concatenate[Any, P], StreamOp[T]]) -> None:
        super().__init__(fn)

    @overload
    def __get__(self, obj: None, owner: type) -> stream[P, T]: ...
    @overload
    def __get__(self, obj: Awaiting, owner: type | None = None) -> Callable[P, AsyncIterator[T]]: ...
    @overload
    def __get__(self, obj: Blocking, owner: type | None = None) -> Callable[P, Iterator[T]]: ...
    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self._get(obj, owner)


__all__ = [
    "AWAITING",
    "BLOCKING",
    "Awaiting",
    "AwaitingIO",
    "Blocking",
    "BlockingIO",
    "Call",
    "Emit",
    "Op",
    "Sleep",
    "StreamOp",
    "call",
    "operation",
    "sleep",
    "stream",
]
