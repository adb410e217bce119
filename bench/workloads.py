"""Workflows the benchmarks run; importable by spawned worker processes."""

from steadyflow import Workflow, activity, futures


@activity.with_attributes(task_list="bench")
def noop(i):
    return i


class FanOutBench(Workflow):
    name = "bench-fanout"

    def run(self, n):
        return len(futures.wait(*self.map(noop, range(n))))


class SequentialBench(Workflow):
    name = "bench-sequential"

    def run(self, n):
        for i in range(n):
            self.submit(noop, i).result
        return n


class OneStep(Workflow):
    name = "bench-one-step"

    def run(self, i):
        return self.submit(noop, i).result
