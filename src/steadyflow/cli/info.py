"""`steadyflow info [versions|settings|environment]`: what a bug report needs (simpleflow's `info`).

Secrets never leave: a variable or setting whose name holds KEY, SECRET, PASSWORD or TOKEN is
shown as `<redacted>`, and the password inside any URL (`postgresql://app:pw@db/prod`) as `***`.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
from pprint import pformat
from typing import Any

import click

from .. import settings
from ..errors import ConfigError
from .common import emit, format_option

SECTIONS = ("versions", "settings", "environment")
REDACTED = "<redacted>"
#: Names whose value is a secret (AWS_SECRET_ACCESS_KEY, STEADYFLOW_ENCRYPTION_KEY, GITHUB_TOKEN...).
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL", re.IGNORECASE)
#: `scheme://user:password@`: the password part, wherever a URL appears in a value.
URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*:)(?P<password>[^@/\s]*)(?P<at>@)")
#: Environment variables shown: ours, simpleflow's, AWS's, and the settings' own names.
ENV_PREFIXES = ("STEADYFLOW", "SIMPLEFLOW", "AWS", "SWF_", "LOG_LEVEL", "SQS", "SFN")
PACKAGES = ("steadyflow", "click", "rich", "psycopg", "boto3", "msgpack", "cryptography", "prometheus-client",
            "opentelemetry-api")


def redact(name: str, value: Any) -> Any:
    """`value` safe to show: `<redacted>` when `name` says it is a secret, else with the password
    of any URL in it replaced by `***`."""
    if SECRET_NAME.search(name):
        return REDACTED
    if isinstance(value, str):
        return URL_PASSWORD.sub(lambda m: f"{m['head']}***{m['at']}", value)
    return value


def versions() -> dict[str, str]:
    out = {}
    for package in PACKAGES:
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    out["python_version"] = platform.python_version()
    out["python_build"] = platform.python_compiler()
    out["platform"] = platform.platform()
    return out


def settings_values() -> dict[str, Any]:
    values = {name: redact(name, value) for name, value in settings.as_dict().items()}
    values[settings.MODULE_ENV] = settings.module_name()
    return values


def environment() -> dict[str, str]:
    names = set(settings.BY_NAME)
    return {
        key: redact(key, value)
        for key, value in sorted(os.environ.items())
        if key.startswith(ENV_PREFIXES) or key in names
    }


def _sections(values: tuple[str, ...]) -> list[str]:
    wanted = [part.strip().lower() for value in values for part in value.split(",") if part.strip()]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        raise ConfigError(f"unknown info section {unknown[0]!r} (expected {', '.join(SECTIONS)})")
    return [s for s in SECTIONS if s in wanted] if wanted else list(SECTIONS)


@click.command("info")
@click.argument("sections", nargs=-1)
@format_option
def info_cmd(sections: tuple[str, ...], fmt: str) -> None:
    """Versions, settings and environment variables, secrets redacted. SECTIONS: any of versions,
    settings, environment (comma- or space-separated; default: all three)."""
    chosen = _sections(sections)
    readers = {"versions": versions, "settings": settings_values, "environment": environment}
    found = {name: readers[name]() for name in chosen}
    if fmt != "table":
        emit([{"section": s, "name": k, "value": v} for s, values in found.items() for k, v in values.items()],
             fmt, columns=("section", "name", "value"))
        return
    for name, values in found.items():  # simpleflow's layout: `# Title`, then NAME=value lines
        click.echo(f"# {name.capitalize()}")
        for key, value in values.items():
            click.echo(f"{key}={pformat(value) if name == 'settings' else value}")
        click.echo("")


__all__ = ["info_cmd", "redact"]
