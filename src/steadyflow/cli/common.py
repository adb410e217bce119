"""What every command shares: the engine from the URL, `--input` parsing, output formats."""

from __future__ import annotations

import csv
import io
import json
import logging
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
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply to parse
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


FORMATS = ("table", "json", "prettyjson", "csv", "tsv", "tabular", "human")
"""`table` is ours (a rich table, the default); the others are simpleflow's `--format` values."""

#: `ctx.meta` keys: the `--header` of a command that does not take it as a parameter, and
#: whether `--format prettyjson` asked for JSON with the header (simpleflow turns it into
#: `--format json --header`).
HEADER_META = "steadyflow.header"
PRETTY_META = "steadyflow.prettyjson"


class FormatError(click.ClickException):
    """A bad `--format`: one line (`Error: ...`) and exit status 2, as a usage error has."""

    exit_code = 2


def _check_format(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    """Accept any case; refuse an unknown format on one line (click's `Choice` prints usage)."""
    fmt = (value or "table").strip().lower()
    if fmt not in FORMATS:
        raise FormatError(f"--format: unknown format {value!r} (expected one of {', '.join(FORMATS)})")
    if fmt == "prettyjson":
        ctx.meta[PRETTY_META] = True
        return "json"
    return fmt


def _check_header(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    return True if ctx.meta.get(PRETTY_META) else value


def _store_header(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    ctx.meta[HEADER_META] = value
    return value


def emit(
    rows: list[dict[str, Any]],
    fmt: str,
    title: str | None = None,
    *,
    header: bool | None = None,
    columns: tuple[str, ...] | list[str] | None = None,
) -> None:
    """Print rows in one of `FORMATS`.

    `columns`: the column names (default: the keys of the first row), so that an empty result
    still prints its CSV header. `header=False` (simpleflow's default, `--no-header`) drops the
    table's heading and the CSV header row, and makes JSON a list of lists instead of a list of
    objects, as simpleflow's `--format json` without `--header` does. `header=None`: the
    command's `--header/--no-header` (every command with `--format` has it), else True.
    """
    header = True if fmt == "prettyjson" else _resolve_header(header)
    names = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    if fmt in ("json", "prettyjson"):
        data: Any = rows if header else [[row.get(c) for c in names] for row in rows]
        click.echo(json.dumps(data, indent=2, default=str))
        return
    if fmt in ("csv", "tsv"):
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n", delimiter="," if fmt == "csv" else "\t")
        if header:
            writer.writerow(names)
        writer.writerows([_cell(row.get(c)) for c in names] for row in rows)
        click.echo(out.getvalue(), nl=False)
        return
    if fmt == "tabular":
        click.echo(tabular([[_cell(row.get(c)) for c in names] for row in rows], names if header else None), nl=False)
        return
    if fmt == "human":
        click.echo(human(rows, names), nl=False)
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


def emit_record(row: dict[str, Any], fmt: str, *, header: bool | None = None) -> None:
    """Print one record (`workflow info`, `task info`): JSON as one object (a list of its values
    with --no-header), a table as `field`/`value` rows, the other formats as one row."""
    header = _resolve_header(header)
    if fmt == "json":
        click.echo(json.dumps(row if header else list(row.values()), indent=2, default=str))
    elif fmt == "table":
        emit([{"field": k, "value": v} for k, v in row.items()], fmt, header=header)
    else:
        emit([row], fmt, header=header)


def _resolve_header(header: bool | None) -> bool:
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.meta.get(PRETTY_META):
        return True
    if header is not None:
        return header
    return bool(ctx.meta.get(HEADER_META, True)) if ctx is not None else True


def tabular(values: list[list[str]], headers: list[str] | None) -> str:
    """simpleflow's `tabular` (tabulate's "plain"): left-aligned columns two spaces apart, no
    borders; the names as the first line when given."""
    lines = ([headers] if headers else []) + values
    if not lines:
        return ""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() + "\n" for line in lines)


def human(rows: list[dict[str, Any]], names: list[str]) -> str:
    """simpleflow's `human`: one `name  value` line per column (always with the names), for
    reading one record; several records are separated by a blank line."""
    blocks = [tabular([[str(c), _cell(row.get(c))] for c in names], None) for row in rows]
    return "\n".join(blocks)


def _cell(value: Any) -> str:
    """A value as one table or CSV cell: empty for None, JSON for lists and dicts."""
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)


_FORMAT_HELP = ("Output format: table, json, prettyjson (json with --header), csv, tsv, tabular (plain aligned "
                "columns), human (one name and value per line).")
_HEADER_HELP = ("Print column names: the table's heading, the CSV header row, JSON objects rather than lists "
                "(simpleflow's flag; its default is --no-header, ours --header).")

header_option = click.option(
    "--header/--no-header", default=True, show_default=True, callback=_check_header, help=_HEADER_HELP,
)


def format_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """`--format` (any of `FORMATS`), and `--header/--no-header` for a command that does not take
    `header_option` itself: `emit` then reads it from the context, so every view has both.

    Put it above `header_option` when a command takes both (decorators apply bottom-up).
    """
    declared = {getattr(p, "name", None) for p in getattr(f, "__click_params__", [])}
    if "header" not in declared:
        f = click.option("--header/--no-header", "_header", default=True, show_default=True, expose_value=False,
                         callback=_store_header, help=_HEADER_HELP)(f)
    return click.option("--format", "fmt", default="table", show_default=True, callback=_check_format,
                        metavar="[" + "|".join(FORMATS) + "]", help=_FORMAT_HELP)(f)


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


def serve_metrics(port: int | None, host: str) -> None:
    """Serve Prometheus metrics on `host:port` from a thread, when a port is given."""
    if port is None:
        return
    from .. import metrics

    if not metrics.available():
        raise ConfigError("--metrics-port needs prometheus-client: pip install 'steadyflow[ui]'")
    metrics.serve(port, host)
    logging.getLogger("steadyflow").info("metrics on http://%s:%s/metrics", host, port)
