"""What every command shares: the engine from the URL, `--input` parsing, output formats."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ..engines import Engine, open_engine
from ..errors import ConfigError
from ..history import format_timestamp


@dataclass
class Context:
    engine_url: str | None = None
    _engine: Engine | None = field(default=None, repr=False)

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = open_engine(self.engine_url)
        return self._engine


pass_ctx = click.make_pass_decorator(Context)


def parse_json(text: str, option: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{option} is not valid JSON: {exc}") from exc


def parse_input(text: str | None) -> tuple[list[Any], dict[str, Any]]:
    """simpleflow's `--input`: a JSON list is args, a dict may hold `args`/`kwargs`, else one arg."""
    if text is None or text == "":
        return [], {}
    data = parse_json(text, "--input")
    if isinstance(data, list):
        return data, {}
    if isinstance(data, dict) and (set(data) <= {"args", "kwargs", "__extra"}) and data:
        args, kwargs = data.get("args", []), data.get("kwargs", {})
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ConfigError('--input: "args" must be a list and "kwargs" an object')
        return args, kwargs
    return [data], {}


def ts(value: float | None) -> str:
    return format_timestamp(value) or ""


def emit(rows: list[dict[str, Any]], fmt: str, title: str | None = None) -> None:
    """Print rows as a rich table or as JSON."""
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(title=title, show_lines=False)
    columns = list(rows[0]) if rows else []
    for col in columns:
        table.add_column(col, overflow="fold")  # fold, never elide: ids must stay copyable
    for row in rows:
        table.add_row(*("" if row[c] is None else str(row[c]) for c in columns))
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    console.print(table)


format_option = click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True, help="Output format."
)


def stop_on_signals(on_repeat: Callable[[], None] | None = None) -> threading.Event:
    """An event set by SIGTERM or SIGINT, for long-running commands to stop cleanly.

    A second signal while stopping calls `on_repeat` (e.g. `lambda: pool.stop(grace=0)`: stop at
    once instead of waiting for running tasks).
    """
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set() and on_repeat is not None:
            on_repeat()
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop
