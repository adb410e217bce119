"""The activity worker: a supervisor that talks to the engine and child processes that run activities.

`WorkerPool` is the pool (`pool.py`; child processes are managed in `children.py` and run
`child.py`, or `aio.py` when they run `async def` activities many at once), `HealthServer` its HTTP
healthcheck (`health.py`), `TaskHandler` the hook that runs the tasks of one activity name without
a function lookup (`runner.py`; stefuna's `Worker` classes plug in through it).
"""

from .health import HealthServer
from .pool import PoolConfigError, PoolError, WorkerPool
from .runner import Outcome, TaskHandler

__all__ = ["HealthServer", "Outcome", "PoolConfigError", "PoolError", "TaskHandler", "WorkerPool"]
