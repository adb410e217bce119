"""What every command shares: the engine from the URL, `--input` parsing, output formats."""

from __future__ import annotations

import csv
import io
import json
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ..client import Client
from ..engines import Engine
from ..errors import ConfigError
from ..history import format_timestamp


@dataclass
class Context:
    engine_url: str | None = None
    _client: Client | None = field(default=None, repr=False)

    def client(self) -> Client:
        """The Python client (`steadyflow.Client`): the `workflow` commands are a layer over it.

        It opens the engine on first use, so a command that fails on its arguments first leaves
        no database behind.
        """
        if self._client is None:
            self._client = Client(self.engine_url)
        return self._client

    def engine(self) -> Engine:
        """The engine of `--engine` / `STEADYFLOW_URL` (the client's, opened on first use)."""
        return self.client().engine


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


FORMATS = ("table", "json", "csv")


def emit(
    rows: list[dict[str, Any]],
    fmt: str,
    title: str | None = None,
    *,
    header: bool = True,
    columns: tuple[str, ...] | list[str] | None = None,
) -> None:
    """Print rows as a rich table, as JSON or as CSV.

    `columns`: the column names (default: the keys of the first row), so that an empty result
    still prints its CSV header. `header=False` (simpleflow's default, `--no-header`) drops the
    table's heading and the CSV header row, and makes JSON a list of lists instead of a list of
    objects, as simpleflow's `--format json` without `--header` does.
    """
    names = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    if fmt == "json":
        data: Any = rows if header else [[row.get(c) for c in names] for row in rows]
        click.echo(json.dumps(data, indent=2, default=str))
        return
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        if header:
            writer.writerow(names)
        writer.writerows([_cell(row.get(c)) for c in names] for row in rows)
        click.echo(out.getvalue(), nl=False)
        return
    table = Table(title=title, show_lines=False, show_header=header)
    for col in names:
        table.add_column(col, overflow="fold")  # fold, never elide: ids must stay copyable
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in names))
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    console.print(table)


def _cell(value: Any) -> str:
    """A value as one table or CSV cell: empty for None, JSON for lists and dicts."""
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)


format_option = click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
    help="Output format: a table, JSON, or CSV (one header row, then one line per row).",
)

header_option = click.option(
    "--header/--no-header", default=True, show_default=True,
    help="Print column names: the table's heading, the CSV header row, JSON objects rather than lists "
         "(simpleflow's flag; its default is --no-header, ours --header).",
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
