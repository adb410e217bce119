"""A task-queue consumer for the flood test: works through a queue and reports its own memory.

    python -m tests.chaos.flood_consumer URL COUNT

Receives COUNT messages with `TaskManager.messages()` (batches of 10), deletes each, and prints
one JSON line: the resident set size (kB, from /proc) after the first 1,000 and the largest seen
after that, sampled every 1,000 messages.
"""

from __future__ import annotations

import json
import sys

from steadyflow.tasks import TaskManager


def rss_kb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def main(url: str, count: int) -> None:
    seen, warm, peak = 0, 0, 0
    for _task, _kwargs, message in TaskManager(url).messages(wait_time=1, sqs_timeout=300, batch_size=10):
        message.delete()
        seen += 1
        if seen % 1000 == 0:
            if seen == 1000:
                warm = rss_kb()
            peak = max(peak, rss_kb())
        if seen >= count:
            break
    print(json.dumps({"handled": seen, "rss_after_1000_kb": warm, "rss_peak_kb": peak}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
