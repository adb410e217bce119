"""The message body, byte for byte as sqstaskmaster 0.0.11 writes and reads it.

`{"task": NAME, "kwargs": {...}}` through `json.dumps` with Python's default settings: keys in
insertion order (`task`, then `kwargs` in call order), separators `", "` and `": "`,
`ensure_ascii=True`, and any value JSON cannot encode replaced by its `str()` (a `datetime`
becomes `"2024-01-02 03:04:05.678901"`). That conversion is lossy and one-way, as it is in
sqstaskmaster; producers that need exact types should pass JSON-native values.

Reading is stricter than sqstaskmaster about what it accepts (see `BadMessage`) and more lenient
in one place: a body without `kwargs` is read as `{}` (sqstaskmaster raises `KeyError`).
"""

from __future__ import annotations

import json
from typing import Any

from .errors import BadMessage


def encode(task: str, kwargs: dict[str, Any]) -> str:
    """The body sqstaskmaster's `TaskManager.submit(task, **kwargs)` sends."""
    return json.dumps({"task": task, "kwargs": kwargs}, default=lambda o: o.__str__())


def decode(body: Any) -> tuple[str, dict[str, Any]]:
    """`(task, kwargs)` from a body; `BadMessage` with a one-line reason when it cannot be read."""
    if not isinstance(body, str):
        raise BadMessage(f"message body is {type(body).__name__}, not text")
    try:
        content = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply to parse
        raise BadMessage(f"message body is not valid JSON: {exc}") from exc
    if not isinstance(content, dict):
        raise BadMessage(f"message body is a JSON {type(content).__name__}, not an object")
    task = content.get("task")
    if "task" not in content:
        raise BadMessage('message body has no "task" name')
    if not isinstance(task, str) or not task:
        raise BadMessage(f'message "task" must be a non-empty string, not {task!r}')
    kwargs = content.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise BadMessage(f'message "kwargs" must be an object, not a JSON {type(kwargs).__name__}')
    return task, kwargs
