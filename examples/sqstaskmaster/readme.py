"""The usage block of sqstaskmaster's README, with only the import lines changed.

    python -m examples.sqstaskmaster.readme publish URL
    python -m examples.sqstaskmaster.readme consume URL

URL is an SQS queue URL, `sqlite:///jobs.db?queue=jobs` or `postgresql://...?queue=jobs`; `local`
uses LocalQueue (publish and consume in one process). What the handlers do is appended to the file
named by `EXAMPLE_RESULTS` (default `sqstaskmaster-results.txt`), since `run()` works in a child
process. The README's blocks are below as they are, except that its `...` placeholders are filled
in, the blocks are wrapped in functions, and `consume()` may stop after `limit` messages.
"""

import os
import sys

# was: from sqstaskmaster.task_manager import TaskManager
from steadyflow.tasks.task_manager import TaskManager

# was: from sqstaskmaster.message_handler import MessageHandler
from steadyflow.tasks.message_handler import MessageHandler

# was: from sqstaskmaster.local import LocalQueue
from steadyflow.tasks.local import LocalQueue


def write_result(line):
    with open(os.environ.get("EXAMPLE_RESULTS", "sqstaskmaster-results.txt"), "a") as out:
        out.write(line + "\n")


# Publish Tasks
def publish(sqs_url, queue_constructor=None):
    kwargs = {"some": "other"}
    tm = TaskManager(sqs_url, queue_constructor=queue_constructor)
    tm.submit('MyTask', some='kwarg', someother='kwarg')
    tm.submit('MyOtherTask', **kwargs)
    tm.submit('MyUnexpectedTask')


# Create a Handler
class MyHandler(MessageHandler):
    def __init__(self, message, sqs_timeout, alarm_timeout, hard_timeout=4 * 60 * 60, **kwargs):
        super().__init__(message, sqs_timeout, alarm_timeout, hard_timeout)
        self.kwargs = kwargs
        # prefer parsing arguments (for instance dates) in the consume task and passing explicit arguments

    def running(self):
        # If you can inspect the task to see if it is hung, do so here
        return True

    def run(self):
        # Do some work here!
        write_result("MyTask " + " ".join(f"{k}={v}" for k, v in sorted(self.kwargs.items())))

    def notify(self, exception, context=None):
        # Implement only for error notification service. Errors are already logged.
        pass


class MyOtherHandler(MyHandler):
    def run(self):
        write_result("MyOtherTask " + " ".join(f"{k}={v}" for k, v in sorted(self.kwargs.items())))


# Consume Tasks
def consume(sqs_url, queue_constructor=None, limit=None):
    handled = 0
    for task, kwargs, message in TaskManager(sqs_url, queue_constructor=queue_constructor).task_generator(sqs_timeout=30):
        if task == 'MyTask':
            # prefer parsing kwargs here and handle KeyError and ValueError appropriately
            with MyHandler(message, sqs_timeout=30, alarm_timeout=25, hard_timeout=300, **kwargs) as handler:
                handler.run()
        elif task == 'MyOtherTask':
            with MyOtherHandler(message, sqs_timeout=30, alarm_timeout=25, hard_timeout=300, **kwargs) as handler:
                handler.run()
        else:
            # Do something about unexpected task request
            write_result("unexpected " + task)
        handled += 1
        if limit is not None and handled >= limit:
            return


def main(argv):
    if len(argv) != 2 or argv[0] not in ("publish", "consume"):
        print("usage: python -m examples.sqstaskmaster.readme publish|consume URL|local", file=sys.stderr)
        return 2
    action, url = argv
    constructor = LocalQueue if url == "local" else None
    if url == "local":
        publish(url, constructor)
        consume(url, constructor, limit=3)
    elif action == "publish":
        publish(url)
    else:
        consume(url)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
