"""A workflow that schedules stefuna's `hello` activity, served by `steadyflow activity-server`.

    steadyflow activity-server --config examples.stefuna.hello_config &
    steadyflow decider start --task-list hello-decisions examples.stefuna.hello_workflow.HelloWorkflow &
    steadyflow workflow start examples.stefuna.hello_workflow.HelloWorkflow --input '["me"]'

The activity is known here only by its name (the last part of its ARN); its task list is that name
too, which is what the activity server polls. (`standalone` does not fit: it moves every activity
to its own private task list.)
"""

from steadyflow import Workflow, activity

hello = activity.named("hello", retry=2)


class HelloWorkflow(Workflow):
    name = "hello-stefuna"
    task_list = "hello-decisions"

    def run(self, who="World"):
        return self.submit(hello, {"who": who}).result
