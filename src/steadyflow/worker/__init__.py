"""The activity worker: a supervisor that talks to the engine and child processes that run activities."""

from .pool import PoolError, WorkerPool

__all__ = ["PoolError", "WorkerPool"]
