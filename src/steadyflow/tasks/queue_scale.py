"""Queue-driven scaling: sqstaskmaster's `queue_scale.Provisioner`, on every kind of task queue.

`from sqstaskmaster.queue_scale import Provisioner` becomes
`from steadyflow.tasks.queue_scale import Provisioner`; rules, constants and methods keep their
names and meanings:

    RULES = [{Provisioner.QUEUE_NAME: "https://sqs.../jobs",      # or sqlite:///..., postgresql://...
              Provisioner.SERVICE_NAME: "jobs-worker",
              Provisioner.CLUSTER_NAME: "batch",
              Provisioner.ACTIVE_SIZE: 4}]
    provisioner = Provisioner(RULES)
    while True:
        provisioner.run()
        time.sleep(10)

Each `run()` reads each rule's queue depth (visible + in flight + delayed) and sets the ECS
service's desired count to `active_size` when there is any work, to 0 when there is none: all or
nothing, as sqstaskmaster does (a count that follows the depth would have to choose which busy
consumers to stop). `service_state(rule)` may be overridden to leave a service alone (during a
deployment, say). A failing rule is logged and passed to `notify`; the other rules still run.

Beyond sqstaskmaster: database queues too (their depth read from the database), each depth also
published as `steadyflow_task_queue_depth{queue,state}` (depth.py) for Kubernetes autoscalers,
`set_desired_count()` as the one place that talks to ECS (override it for another orchestrator),
and `run()` returns what it did. Bad rules raise `RuleError`s that are also the `TypeError` /
`KeyError` sqstaskmaster raised, so code that caught those still does.
"""

from __future__ import annotations

import enum
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, SteadyflowError
from .depth import ATTRIBUTES, QueueDepth, publish, queue_label
from .errors import MissingDependency

logger = logging.getLogger(__name__)


class ServiceState(enum.Enum):
    STARTING = enum.auto()
    ACTIVE = enum.auto()
    STOPPING = enum.auto()
    FAILING = enum.auto()


class RuleError(ConfigError):
    """A scaling rule is not usable; the message says which rule and why."""


class RuleTypeError(RuleError, TypeError):
    pass


class RuleKeyError(RuleError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class RuleValueError(RuleError, ValueError):
    pass


@dataclass(frozen=True)
class ScaleResult:
    """What `run()` did for one rule: the depth it read, the count it set (None: left alone), any error."""

    rule: dict[str, Any]
    depth: QueueDepth | None = None
    desired_count: int | None = None
    state: ServiceState | None = None
    error: BaseException | None = None


class Provisioner:
    """Runs declarative rules that switch ECS services on when their queue has work, off when not."""

    QUEUE_NAME = "queue_name"
    SERVICE_NAME = "service_name"
    CLUSTER_NAME = "cluster_name"
    ACTIVE_SIZE = "active_size"

    QUEUE_DEPTH_ATTRIBUTES = {
        "pending_jobs": ATTRIBUTES["visible"],
        "running_jobs": ATTRIBUTES["in_flight"],
        "scheduled_jobs": ATTRIBUTES["delayed"],
    }

    def __init__(self, rules: Iterable[dict[str, Any]], notify: Callable[..., Any] | None = None) -> None:
        self._rules = check_rules(rules)
        self._notify = notify
        self._managers: dict[str, Any] = {}
        self._sqs: Any = None
        self.ecs = _ecs_client()

    @property
    def sqs(self) -> Any:
        """A boto3 SQS resource, as sqstaskmaster's `Provisioner.sqs` (built when first asked for)."""
        if self._sqs is None:
            import boto3

            self._sqs = boto3.resource("sqs")
        return self._sqs

    @sqs.setter
    def sqs(self, value: Any) -> None:
        self._sqs = value

    def run(self) -> list[ScaleResult]:
        """For each rule, check the queue depth and adjust the service count."""
        logger.info("Checking queue for work and scaling service resources")
        results = []
        for rule in self._rules:
            logger.debug("running rule: %s", _shown(rule))
            try:
                attributes = self.queue_attributes(rule)
                depth = QueueDepth.from_attributes(queue_label(rule[self.QUEUE_NAME]), attributes)
                publish(depth)
                state = self.service_state(rule)
                desired = None
                if state == ServiceState.ACTIVE:
                    desired = rule[self.ACTIVE_SIZE] if depth.total > 0 else 0
                    self.set_desired_count(rule, desired)
                    logger.info("Setting: %s %s to %s count", rule[self.CLUSTER_NAME], rule[self.SERVICE_NAME], desired)
                else:
                    logger.info("Service: %s %s is in state: %s; Desired count will not be adjusted",
                                rule[self.CLUSTER_NAME], rule[self.SERVICE_NAME], state)
                self.log_queue_depth(attributes, rule)
                results.append(ScaleResult(rule, depth, desired, state))
            except Exception as exc:
                if not _expected(exc):
                    raise
                logger.exception("Failed to update resources for rule %s", _shown(rule))
                self.notify(exc, context=_shown(rule))
                results.append(ScaleResult(rule, error=exc))
        return results

    def queue_attributes(self, rule: dict[str, Any]) -> dict[str, Any]:
        """The queue's attributes in SQS's spelling, on SQS or a database queue."""
        url = rule[self.QUEUE_NAME]
        manager = self._managers.get(url)
        if manager is None:
            from .task_manager import TaskManager

            manager = self._managers[url] = TaskManager(url)
        return manager.attributes()

    def set_desired_count(self, rule: dict[str, Any], count: int) -> None:
        """Set the service's desired count (ECS `UpdateService`); override for another orchestrator."""
        self.ecs.update_service(cluster=rule[self.CLUSTER_NAME], service=rule[self.SERVICE_NAME], desiredCount=count)

    def get_description(self, rule: dict[str, Any]) -> dict[str, Any]:
        """The service's ECS description (with its deployments); `{}` for an unknown service."""
        result = self.ecs.describe_services(cluster=rule[self.CLUSTER_NAME], services=[rule[self.SERVICE_NAME]],
                                            include=["TAGS"])
        if result["failures"]:
            logger.error("ECS Describe Services Failed: %s", result["failures"])
            return {}
        return result["services"][0]

    def get_tags(self, arn: str) -> list[dict[str, str]]:
        """The tags of an ECS resource (`describe_services` does not return them)."""
        return self.ecs.list_tags_for_resource(resourceArn=arn)["tags"]

    def service_state(self, _rule: dict[str, Any]) -> ServiceState:
        """Override to leave a service alone while it is not ACTIVE (checking a tag, say).

        Reading a state and then setting the count is not atomic: it narrows races, it does not
        remove them.
        """
        logger.debug("Provisioner using default 'always active' service_state implementation")
        return ServiceState.ACTIVE

    def log_queue_depth(self, queue_attributes: dict[str, Any], rule: dict[str, Any]) -> None:
        for name, attr in self.QUEUE_DEPTH_ATTRIBUTES.items():
            logger.info("queue_health_monitor: name - %s; %s - %s", name, queue_attributes[attr],
                        _shown(rule)[self.QUEUE_NAME])

    def notify(self, exception: BaseException, context: dict[str, Any] | None = None) -> None:
        if self._notify:
            self._notify(exception, context=context or {})

    def close(self) -> None:
        for manager in self._managers.values():
            manager.close()
        self._managers.clear()


def check_rules(rules: Any) -> list[dict[str, Any]]:
    """The rules as a list, or a `RuleError` naming the first problem."""
    if isinstance(rules, (str, bytes, dict)) or not hasattr(rules, "__iter__"):
        raise RuleTypeError(f"Rules must be an iterable of dictionaries, not {type(rules).__name__}: {rules!r}")
    checked = list(rules)
    names = (Provisioner.QUEUE_NAME, Provisioner.SERVICE_NAME, Provisioner.CLUSTER_NAME)
    for number, rule in enumerate(checked, 1):
        if not isinstance(rule, dict):
            raise RuleTypeError(f"rule {number}: each rule must be a dictionary, not {type(rule).__name__}: {rule!r}")
        for key in (*names, Provisioner.ACTIVE_SIZE):
            if key not in rule:
                raise RuleKeyError(f"rule {number}: rules must specify the {key}")
        for key in names:
            if not isinstance(rule[key], str) or not rule[key].strip():
                raise RuleValueError(f"rule {number}: {key} must be a non-empty string, not {rule[key]!r}")
        size = rule[Provisioner.ACTIVE_SIZE]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise RuleValueError(f"rule {number}: {Provisioner.ACTIVE_SIZE} must be a whole number of at least 0, "
                                 f"not {size!r}")
        unknown = sorted(set(rule) - {*names, Provisioner.ACTIVE_SIZE})
        if unknown:
            raise RuleKeyError(f"rule {number}: unknown key(s) {', '.join(unknown)} (expected {', '.join(names)}, "
                               f"{Provisioner.ACTIVE_SIZE})")
    return checked


def load_rules(text: str) -> list[dict[str, Any]]:
    """Rules from a JSON file's path or from JSON text (a list of rule objects, or one object)."""
    source = text
    if not text.lstrip().startswith(("[", "{")):
        if not os.path.isfile(text):
            raise RuleError(f"rules {text!r}: not JSON and not a file")
        with open(text, encoding="utf-8") as handle:
            source = handle.read()
    try:
        rules = json.loads(source)
    except ValueError as exc:
        raise RuleError(f"rules {text if source is not text else 'given'} are not valid JSON: {exc}") from None
    return check_rules([rules] if isinstance(rules, dict) else rules)


def _ecs_client() -> Any:
    try:
        import boto3
        import botocore.exceptions
    except ImportError as exc:
        raise MissingDependency(f"scaling ECS services needs boto3: pip install boto3 ({exc})") from exc
    try:
        return boto3.client("ecs")
    except botocore.exceptions.NoRegionError:
        raise ConfigError("ECS needs an AWS region: set AWS_DEFAULT_REGION (or AWS_REGION)") from None


def _expected(exc: BaseException) -> bool:
    """Errors of one rule that must not stop the others: AWS's, the queue's (sqstaskmaster: ClientError)."""
    if isinstance(exc, SteadyflowError):
        return True
    module = type(exc).__module__ or ""
    return module.startswith(("botocore", "boto3", "psycopg", "sqlite3", "urllib3"))


def _shown(rule: dict[str, Any]) -> dict[str, Any]:
    """The rule as it may be logged: a database URL's password redacted."""
    from .urls import redact

    url = rule.get(Provisioner.QUEUE_NAME)
    return {**rule, Provisioner.QUEUE_NAME: redact(url)} if isinstance(url, str) else rule
