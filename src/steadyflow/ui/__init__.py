"""The web dashboard: `steadyflow ui`, or `create_app(engine, token=...)` served by any ASGI server.

Pages list executions (filtered by status and workflow type, searched by literal id) and show one
execution: its status, input and result (offloaded payloads loaded on demand, with a size cap), its
event history and a timeline of its activities, timers and child workflows drawn as inline SVG.
Signal, cancel, terminate and restart are POST forms guarded by a token; `read_only=True` removes
them. `/api/executions` and `/api/executions/{id}` answer the same as JSON.

Design: server-rendered Jinja2 pages with autoescape, a stylesheet and a few lines of optional
JavaScript shipped in the package, so nothing is built or fetched from the network. A single-page
app (React, htmx from a CDN) was rejected for that reason, and because every view here is one
request to the engine contract anyway. Needs the `ui` extra: `pip install 'steadyflow[ui]'`.
"""

from __future__ import annotations

from .app import ACTIONS, TOKEN_HEADER, create_app

__all__ = ["ACTIONS", "TOKEN_HEADER", "create_app"]
