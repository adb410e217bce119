"""`MessageHandler`: sqstaskmaster's context manager for handling one message safely.

    class MyHandler(MessageHandler):
        def run(self): ...                  # the work; runs in a child process
        def running(self): return True      # False when you can tell the work is hung
        def notify(self, exception, context=None): ...   # report failures elsewhere

    with MyHandler(message, sqs_timeout=30, alarm_timeout=25, hard_timeout=300) as handler:
        handler.run()

Inside the `with` block, `handler.run()` runs in a child process (see `supervise.py`): every
`alarm_timeout` seconds the message's visibility is extended to `sqs_timeout` while `running()`
says true; when `running()` says false or `hard_timeout` (counted from construction, as in
sqstaskmaster) passes, `run()` gets SIGTERM, which raises inside it (`TimeoutError("Hit Hard
Timeout for message handler")`) so it can clean up, and SIGKILL `kill_grace` seconds later, which
stops even C code. Leaving the block without an exception deletes the message; an `Exception`
calls `notify(exception, context)`, is logged, is suppressed, and leaves the message to come back
after its visibility timeout. Outside a `with` block, `run()` is a plain method call.

Differences from sqstaskmaster, all on the safe side: `run()` cannot be stuck beyond the hard
timeout; `running()` is asked in the child, by a thread, so it sees the state `run()` keeps, but
attributes `run()` sets stay in the child (its return value comes back); `SystemExit` in `run()`
fails the task instead of ending the consumer; timeouts may be floats.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from abc import ABC, abstractmethod
from typing import Any

from . import supervise
from .sqlqueue import SQLMessage

logger = logging.getLogger("steadyflow.tasks")

DEFAULT_HARD_TIMEOUT = 4 * 60 * 60


def validate_timeouts(sqs_timeout: float, alarm_timeout: float, hard_timeout: float) -> None:
    """sqstaskmaster's checks (and messages): all positive, `alarm_timeout + 1 < sqs_timeout`."""
    if alarm_timeout <= 0:
        raise ValueError("Alarm timeout must be an integer greater than zero")
    if sqs_timeout <= 0:
        raise ValueError("SQS timeout must be an integer greater than zero")
    if hard_timeout <= 0:
        raise ValueError("Hard timeout must be an integer greater than zero")
    if (alarm_timeout + 1) >= sqs_timeout:
        raise ValueError(f"Alarm timeout {alarm_timeout:g} is to long to reset the sqs timeout {sqs_timeout:g}")


def _supervised(run: Any) -> Any:
    @functools.wraps(run)
    def wrapper(self: MessageHandler, *args: Any, **kwargs: Any) -> Any:
        if supervise.in_child() or not getattr(self, "_entered", False):
            return run(self, *args, **kwargs)
        return supervise.run_in_child(self, args, kwargs)

    wrapper._steadyflow_supervised = True  # type: ignore[attr-defined]
    return wrapper


class _MessageSnapshot:
    """What a handler started with `spawn` sees of its message: body and attributes, no actions."""

    def __init__(self, message: Any) -> None:
        self.body = message.body
        self.attributes = dict(getattr(message, "attributes", None) or {})
        self.message_attributes = dict(getattr(message, "message_attributes", None) or {})
        self.message_id = getattr(message, "message_id", None)

    def change_visibility(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the consumer, not run(), manages the message's visibility")

    delete = change_visibility


class MessageHandler(ABC):
    """Handle one message: extend its visibility while `run()` works, delete it on success."""

    start_method = "fork"
    """How the child running `run()` starts: `fork` (default), `spawn` or `forkserver`."""
    kill_grace = 5.0
    """Seconds between SIGTERM (an exception in `run()`) and SIGKILL when stopping `run()`."""

    def __init__(self, message: Any, sqs_timeout: float, alarm_timeout: float,
                 hard_timeout: float = DEFAULT_HARD_TIMEOUT, **kwargs: Any) -> None:
        self._message = message
        self.sqs_timeout = sqs_timeout
        self.alarm_timeout = alarm_timeout
        self.hard_timeout = hard_timeout
        if kwargs:
            self.kwargs = kwargs
        validate_timeouts(sqs_timeout, alarm_timeout, hard_timeout)
        self._start_time = time.time()
        self._entered = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if run is not None and callable(run) and not getattr(run, "_steadyflow_supervised", False):
            cls.run = _supervised(run)  # type: ignore[method-assign]

    # -- the context manager --------------------------------------------------------------------

    def __enter__(self) -> MessageHandler:
        until = getattr(self._message, "visible_until", None)
        # Just received with a long enough visibility: the first tick extends it in time.
        if not (isinstance(until, float) and until - time.monotonic() >= self.alarm_timeout + 1):
            self._extend_timeout(self.sqs_timeout, raise_errors=True)
        self._entered = True
        return self

    def __exit__(self, exc_type: Any, exc_val: BaseException | None, exc_tb: Any) -> bool:
        self._entered = False
        if exc_type is None:
            book = self.__dict__.get("_book")
            if book is not None:  # the worker's consumer deletes it soon, batched (see ledger.py)
                book.succeeded(self._message, self._delete_failed)
                return False
            try:
                self._message.delete()
            except Exception as exc:  # noqa: BLE001 - the message comes back: at-least-once
                self._delete_failed(exc)
            return False
        if isinstance(exc_val, supervise.HandedBack):
            try:
                self._message.change_visibility(VisibilityTimeout=0)
            except Exception as exc:  # noqa: BLE001 - it comes back after its visibility timeout
                logger.debug("could not hand back message %s: %s", self._message_id(), exc)
            return False
        self.notify(exc_val, context=self._context())
        child_tb = getattr(exc_val, "child_traceback", "")
        logger.error("Failed for message %s: %s: %s%s", self._message_id(), type(exc_val).__name__, exc_val,
                     ("\n" + child_tb.rstrip()) if child_tb else "", exc_info=None if child_tb else exc_val)
        return isinstance(exc_val, Exception)

    # -- for subclasses -------------------------------------------------------------------------

    @abstractmethod
    def run(self) -> Any:
        """The work. Runs in a child process inside the `with` block; keep progress on `self`."""

    def running(self) -> bool:
        """False when the work is hung (then `run()` is interrupted); asked every `alarm_timeout`."""
        return True

    def notify(self, exception: BaseException, context: dict[str, Any] | None = None) -> None:  # noqa: B027
        """Report a failure to an outside service (errors are logged already)."""

    # -- internals ------------------------------------------------------------------------------

    def _run_time(self) -> float:
        return time.time() - self._start_time

    def _message_id(self) -> str:
        return str(getattr(self._message, "message_id", None) or "?")

    def _context(self) -> dict[str, Any]:
        return {"body": self._message.body, **(getattr(self._message, "attributes", None) or {})}

    def _delete_failed(self, exc: BaseException) -> None:
        self.notify(exc, context=self._context())
        logger.error("failed to delete message %s (%s: %s)", self._message_id(), type(exc).__name__, exc)

    def _extend_timeout(self, seconds: float, raise_errors: bool = False) -> None:
        value: float = seconds if isinstance(self._message, SQLMessage) else int(math.ceil(seconds))
        try:
            self._message.change_visibility(VisibilityTimeout=value)
            if not isinstance(self._message, SQLMessage):  # SQLMessage keeps its own
                try:
                    self._message.visible_until = time.monotonic() + value
                except AttributeError:
                    pass
        except Exception as exc:
            if raise_errors:
                raise
            # As sqstaskmaster: report and go on; at worst the task runs twice.
            self.notify(exc, context=self._context())
            logger.error("failed to extend the visibility of message %s (%s: %s)", self._message_id(),
                         type(exc).__name__, exc)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_message"] = _MessageSnapshot(self._message)
        state.pop("_book", None)  # the consumer's, not the child's
        state.pop("_pool", None)
        return state

    def __str__(self) -> str:
        return (f"MessageHandler: sqs {self.sqs_timeout}, alarm {self.alarm_timeout}, run {self._run_time():.1f}, "
                f"hard {self.hard_timeout}, message {self._message_id()}")
