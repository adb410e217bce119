"""AWS Step Functions compatibility: stefuna's `Worker` and `Server`, run by steadyflow's worker pool.

```python
from steadyflow.stepfunctions import Worker      # was: from stefuna import Worker

class HelloWorker(Worker):
    def run_task(self, task_token, input_data):
        return {"message": "Hello World"}
```

`steadyflow activity-server --config hello_config` runs it as `stefuna --config=hello_config` did.
On steadyflow's engines the activity is addressed by its name (the last part of its ARN): a workflow
schedules it with `self.submit(activity.named("hello"), {"who": "me"})`, on the task list of the
same name. See `worker.py` for the output and failure rules, `server.py` for the server, and
`config.py` for the configuration keys.
"""

from .server import Server
from .worker import Worker

__all__ = ["Server", "Worker"]
