"""Activities that run a program, or a Python function under another interpreter (simpleflow's
`execute.program` and `execute.python`).

```python
@activity.with_attributes(task_list="quickstart", version="example")
@execute.program(path="ls")
def ls_l(*args, **kwargs):
    pass                                  # ls_l("-l", "/tmp") runs `ls -l /tmp`, returns its stdout

@activity.with_attributes(task_list="quickstart", version="example")
@execute.python(interpreter="/opt/py312/bin/python", timeout=600)
def train(model, rows):                   # runs in that interpreter, arguments and result as JSON
    ...
```

Both orders of the two decorators work; `activity.with_attributes` on top is the common one.

`program` builds `[path or func.__name__, *argument_format(*args, **kwargs)]` (simpleflow's default
formatting: `--key="value"`, `-k="value"`, then the positional arguments) and returns stdout as text.

`python` runs `<interpreter> -m steadyflow.execute <module.qualname> --result-fd=N --error-fd=M
--context=JSON '{"args": [...], "kwargs": {...}}'` (arguments of 64 KiB or more go through an
inherited file instead). The other interpreter needs steadyflow and the function's module
importable (it runs in the current directory). The child writes the JSON result to the result fd,
or `{"error", "message", "traceback"}` to the error fd and exits 1.

Either way a non-zero exit raises `ExecutionError`, whose message ends with the tail of the
program's stderr (or, for `python`, names the remote exception), so the task fails with that as
its cause; a `timeout` kills the process (SIGTERM, then SIGKILL) and raises `ExecutionTimeoutError`.
While it waits, a running activity also watches for cancellation: the process is killed and
`ActivityCancelled` raised. The process shares the worker's process group unless `kill_children`,
so a worker's hard timeout kills it too; with `kill_children=True` it gets its own group, which is
killed as a whole when it ends (what it left running dies with it).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from typing import IO, Any

from .activity import Activity, ActivityCancelled, TaskContext, _current_task, _registry
from .errors import SteadyflowError
from .payload import json as sfjson

log = logging.getLogger("steadyflow.execute")

MAX_ARGUMENTS_JSON_LENGTH = 65536
STDERR_TAIL = 4000
"""Characters of a failed program's stderr kept in the error (the end, where the error usually is)."""
KILL_GRACE = 5.0
POLL = 0.1


class ExecutionError(SteadyflowError):
    """A program or a function run under another interpreter failed (non-zero exit)."""

    def __init__(self, message: str, error: str | None = None, remote_traceback: str | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.remote_traceback = remote_traceback


class ExecutionTimeoutError(ExecutionError, TimeoutError):
    """A program or a function run under another interpreter exceeded its `timeout`."""


def format_arguments(*args: Any, **kwargs: Any) -> list[str]:
    """simpleflow's command line: `-k="v"` / `--key="v"` for keyword arguments, then the positional
    ones as `str()`. The double quotes are literal (no shell is involved)."""

    def option(key: str) -> str:
        return f"-{key}" if len(key) == 1 else f"--{key}"

    return [f'{option(k)}="{v}"' for k, v in kwargs.items()] + [str(a) for a in args]


def _tail(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace").strip()
    return text if len(text) <= STDERR_TAIL else "..." + text[-STDERR_TAIL:]


def _decorate(make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Callable[[Any], Any]:
    """Apply `make` to a function, or to the function inside an `Activity` (keeping its options and
    its registration), so that the decorators stack in either order."""

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        wrapper = make(func)
        wrapper._steadyflow_execute = True  # type: ignore[attr-defined] - lets the child unwrap it
        return wrapper

    def decorator(func: Any) -> Any:
        if isinstance(func, Activity):
            act = Activity(wrap(func.func), func.options)
            _registry[act.options.name] = act
            return act
        return wrap(func)

    return decorator


def _run(
    command: Sequence[str],
    timeout: float | None,
    stdout: IO[bytes] | None,
    stderr: IO[bytes],
    pass_fds: Sequence[int] = (),
    env: dict[str, str] | None = None,
    own_group: bool = False,
) -> int:
    """Run `command`, waiting for it while watching `timeout` and the task's cancellation."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        process = subprocess.Popen(  # noqa: S603 - the command is the activity author's
            list(command), stdout=stdout, stderr=stderr, pass_fds=tuple(pass_fds), env=env, start_new_session=own_group,
        )
    except OSError as exc:
        raise ExecutionError(f"cannot run {command[0]!r}: {exc.strerror or exc}") from exc
    ctx = _current_task.get()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            try:
                return process.wait(POLL)
            except subprocess.TimeoutExpired:
                pass
            if deadline is not None and time.monotonic() >= deadline:
                _stop(process, own_group)
                raise ExecutionTimeoutError(f"{command[0]} timed out after {timeout:g}s (process {process.pid} killed)")
            if ctx is not None and ctx.cancel_requested:
                _stop(process, own_group)
                raise ActivityCancelled(f"cancellation requested while {command[0]} ran (process {process.pid} killed)")
    except BaseException:
        _stop(process, own_group)  # an alarm or anything else: do not leave the process behind
        raise
    finally:
        if own_group:
            _signal(process.pid, signal.SIGKILL, group=True)  # whatever it left running


def _signal(pid: int, signum: int, group: bool) -> None:
    try:
        os.killpg(pid, signum) if group else os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _stop(process: subprocess.Popen[bytes], group: bool) -> None:
    if process.poll() is not None:
        return
    _signal(process.pid, signal.SIGTERM, group)
    try:
        process.wait(KILL_GRACE)
    except subprocess.TimeoutExpired:
        _signal(process.pid, signal.SIGKILL, group)
        process.wait()


def program(
    path: str | None = None,
    argument_format: Callable[..., Sequence[str]] = format_arguments,
    timeout: float | None = None,
) -> Callable[[Any], Any]:
    """Run a program instead of the function: the function's arguments build its command line,
    its stdout (text) is the result. See the module docstring."""

    def make(func: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(func)

        @functools.wraps(func)
        def execute(*args: Any, **kwargs: Any) -> str:
            signature.bind(*args, **kwargs)  # TypeError for a call the function would refuse
            command = [path or func.__name__, *argument_format(*args, **kwargs)]
            with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
                code = _run(command, timeout, out, err)
                out.seek(0)
                err.seek(0)
                if code != 0:
                    raise ExecutionError(f"{command[0]} exited with code {code}: {_tail(err.read())}")
                return out.read().decode("utf-8", errors="replace")

        return execute

    return _decorate(make)


def python(
    interpreter: str = "python",
    logger_name: str | None = None,
    timeout: float | None = None,
    kill_children: bool = False,
    env: dict[str, str] | None = None,
) -> Callable[[Any], Any]:
    """Run the function in `interpreter` (another version, a virtualenv, pypy), arguments and result
    as JSON. See the module docstring."""

    def make(func: Callable[..., Any]) -> Callable[..., Any]:
        target = f"{func.__module__}.{func.__qualname__}"
        if func.__module__ == "__main__" or "<locals>" in func.__qualname__:
            raise ValueError(f"execute.python needs a module-level function another process can import, not {target}")

        @functools.wraps(func)
        def execute(*args: Any, **kwargs: Any) -> Any:
            arguments = sfjson.dumps({"args": list(args), "kwargs": kwargs})
            ctx = _current_task.get()
            context = {} if ctx is None else {k: v for k, v in ctx.task.items() if k not in ("input", "token")}
            tmp = (env or {}).get("TMPDIR")
            with tempfile.TemporaryFile(dir=tmp) as result, tempfile.TemporaryFile(dir=tmp) as error, \
                    tempfile.TemporaryFile(dir=tmp) as args_file, tempfile.TemporaryFile(dir=tmp) as err:
                command = [interpreter, "-m", "steadyflow.execute", target, f"--result-fd={result.fileno()}",
                           f"--error-fd={error.fileno()}", f"--context={sfjson.dumps(context)}"]
                if logger_name:
                    command.append(f"--logger-name={logger_name}")
                fds = [result.fileno(), error.fileno()]
                if len(arguments) < MAX_ARGUMENTS_JSON_LENGTH:
                    command.append(arguments)
                else:
                    args_file.write(arguments.encode())
                    args_file.flush()
                    args_file.seek(0)
                    command += [f"--arguments-json-fd={args_file.fileno()}", "-"]
                    fds.append(args_file.fileno())
                code = _run(command, timeout, None, err, fds, env, own_group=kill_children)
                if code != 0:
                    error.seek(0)
                    err.seek(0)
                    raise _remote_error(target, code, error.read(), err.read())
                result.seek(0)
                text = result.read().decode("utf-8", errors="replace")
            return sfjson.loads(text) if text.strip() else None

        return execute

    return _decorate(make)


def _remote_error(target: str, code: int, error: bytes, stderr: bytes) -> ExecutionError:
    try:
        info = json.loads(error.decode("utf-8", errors="replace"))
    except ValueError:
        info = None
    if isinstance(info, dict) and info.get("error"):
        tb = "".join(info.get("traceback") or [])
        exc = ExecutionError(f"{info['error']}: {info.get('message', '')}", info["error"], tb)
        if tb:
            exc.add_note(f"Traceback in the other interpreter ({target}):\n{tb}")
        return exc
    return ExecutionError(f"{target} exited with code {code}: {_tail(stderr)}")


# -- the other interpreter's side ----------------------------------------------------------------


def _resolve(name: str) -> Callable[..., Any]:
    """Import `module.qualname`, and unwrap it to the plain function (not the decorated one that
    would start another interpreter)."""
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:i])
        try:
            obj: Any = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
                continue  # not a module: the name goes on with attributes
            raise
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        while True:
            if isinstance(obj, Activity):
                obj = obj.func
            elif getattr(obj, "_steadyflow_execute", False):
                obj = obj.__wrapped__
            else:
                return obj  # type: ignore[no-any-return]
    raise ImportError(f"cannot import {name!r}")


def main(argv: list[str] | None = None) -> int:
    """`python -m steadyflow.execute module.func '{"args": [...], "kwargs": {...}}'` (simpleflow's)."""
    parser = argparse.ArgumentParser(prog="python -m steadyflow.execute")
    parser.add_argument("funcname", help="module.function to call")
    parser.add_argument("funcargs", nargs="?", help='arguments as JSON: {"args": [...], "kwargs": {...}}')
    parser.add_argument("--context", help="the activity's context as JSON")
    parser.add_argument("--logger-name", help="logger to report errors on")
    parser.add_argument("--result-fd", type=int, default=1, metavar="N")
    parser.add_argument("--error-fd", type=int, default=2, metavar="N")
    parser.add_argument("--arguments-json-fd", type=int, metavar="N")
    ns = parser.parse_intermixed_args(argv)
    logger = logging.getLogger(ns.logger_name or "steadyflow.execute")
    if ns.arguments_json_fd is not None:
        with os.fdopen(ns.arguments_json_fd) as f:
            content = f.read()
    elif ns.funcargs is None:
        parser.error("the following arguments are required: funcargs")
    else:
        content = ns.funcargs
    try:
        arguments = sfjson.loads(content) or {}
        context = json.loads(ns.context) if ns.context else None
        if context:
            _current_task.set(TaskContext(context))  # steadyflow.context() works; heartbeat does nothing
        func = _resolve(ns.funcname)
        result = func(*arguments.get("args", ()), **arguments.get("kwargs", {}))
        text = sfjson.dumps(result)
    except Exception as exc:
        logger.error("%s: %s", type(exc).__name__, exc)
        details = sfjson.dumps({"error": type(exc).__name__, "message": str(exc),
                                "traceback": traceback.format_exception(type(exc), exc, exc.__traceback__)})
        sys.stderr.flush()
        os.write(ns.error_fd, details.encode())
        return 1
    if ns.result_fd == 1:
        sys.stdout.flush()
        os.write(1, b"\n")
    os.write(ns.result_fd, text.encode())
    return 0


__all__ = ["ExecutionError", "ExecutionTimeoutError", "format_arguments", "main", "program", "python"]


if __name__ == "__main__":
    sys.exit(main())
