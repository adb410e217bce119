"""State data errors, under the steadyflow hierarchy so the CLI prints them as one line.

py2sfn code catches `NoItemFound` by name, so the name is kept; everything else a state store
raises on purpose is a `StateDataError`.
"""

from __future__ import annotations

from ..errors import PayloadTooLarge, SteadyflowError


class StateDataError(SteadyflowError):
    """State data could not be stored or read (bad argument, missing table, unreachable store)."""


class NoItemFound(StateDataError):
    """No item at that table, partition key and sort key (py2sfn's name and message format)."""


class StateDataTooLarge(StateDataError, PayloadTooLarge):
    """An item is too large for DynamoDB and there is no S3 bucket to offload it to."""


__all__ = ["NoItemFound", "StateDataError", "StateDataTooLarge"]
