"""Task queues on Amazon SQS, through boto3's resource API exactly as sqstaskmaster uses it.

The client is built without an endpoint argument, so `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_SQS`
redirect it (moto, LocalStack, ElasticMQ). One convenience: when neither is set and the queue URL
is not on amazonaws.com (`http://127.0.0.1:4566/000000000000/jobs`), the URL's own host is the
endpoint. The region comes from the usual boto3 configuration, else from an amazonaws.com host.

Dead letters: SQS moves a message to the queue named by the source queue's redrive policy after
`maxReceiveCount` receives (`configure_dead_letters()` sets one up). Messages the consumer refuses
(not a task, unknown task, over a task's own `max_receives`) are sent there by the consumer, with
the message attributes `dead_letter_reason` and `source_queue`, then deleted from the source.
Without a redrive policy the dead-letter queue is `<queue name>-dead-letter`, created on demand.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import urllib.parse
from typing import Any

from .backend import (
    DEAD_LETTER_SUFFIX,
    REASON_ATTRIBUTE,
    SOURCE_ATTRIBUTE,
    Backend,
    DeadLetter,
    string_attribute,
)
from .errors import MissingDependency, TaskQueueError

logger = logging.getLogger("steadyflow.tasks")

MAX_DELAY = 900
_HOST_REGION = re.compile(r"^sqs[.-]([a-z0-9-]+)\.amazonaws\.com")
_LIST_VISIBILITY = 30


def boto3_module() -> Any:
    try:
        import boto3
    except ImportError as exc:
        raise MissingDependency(f"SQS task queues need boto3: pip install boto3 ({exc})") from exc
    return boto3


def resource(url: str) -> Any:
    """`boto3.resource("sqs")`, with an endpoint and region derived from the URL only when unset."""
    boto3 = boto3_module()
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    kwargs: dict[str, Any] = {}
    if not host.endswith("amazonaws.com") and not (
        os.environ.get("AWS_ENDPOINT_URL_SQS") or os.environ.get("AWS_ENDPOINT_URL")
    ):
        kwargs["endpoint_url"] = f"{parts.scheme}://{parts.netloc}"
    if not boto3.session.Session().region_name:
        match = _HOST_REGION.match(host)
        kwargs["region_name"] = match.group(1) if match else "us-east-1"
    return boto3.resource("sqs", **kwargs)


def _seconds(value: float) -> int:
    return int(math.ceil(value))


class SQSBackend(Backend):
    max_delay = MAX_DELAY

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqs = resource(url)
        self.queue = self.sqs.Queue(url)
        self._dead: Any = None

    # -- messages -------------------------------------------------------------------------------

    def send(self, body: str, message_attributes: dict[str, Any], *, delay: float = 0, priority: int = 0) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"MessageBody": body, "MessageAttributes": message_attributes}
        if delay:
            kwargs["DelaySeconds"] = _seconds(delay)
        return self.queue.send_message(**kwargs)

    def send_many(self, bodies: list[str], message_attributes: dict[str, Any], *, delay: float = 0,
                  priority: int = 0) -> list[str]:
        ids: list[str] = []
        for start in range(0, len(bodies), 10):
            entries = [{"Id": str(i), "MessageBody": b, "MessageAttributes": message_attributes}
                       for i, b in enumerate(bodies[start:start + 10])]
            if delay:
                for entry in entries:
                    entry["DelaySeconds"] = _seconds(delay)
            response = self.queue.send_messages(Entries=entries)
            if response.get("Failed"):
                failed = response["Failed"][0]
                raise TaskQueueError(f"SQS refused {len(response['Failed'])} message(s): {failed.get('Code')}: "
                                     f"{failed.get('Message')} (the {start + int(failed['Id']) + 1}th and later were not all sent)")
            by_id = {int(r["Id"]): r["MessageId"] for r in response.get("Successful", [])}
            ids.extend(by_id[i] for i in range(len(entries)))
        return ids

    def delete_many(self, messages: list[Any]) -> list[tuple[Any, BaseException]]:
        """`DeleteMessageBatch`, 10 per request."""
        failures: list[tuple[Any, BaseException]] = []
        for start in range(0, len(messages), 10):
            chunk = messages[start:start + 10]
            if len(chunk) == 1:
                try:
                    chunk[0].delete()
                except Exception as exc:  # noqa: BLE001 - reported to the caller
                    failures.append((chunk[0], exc))
                continue
            response = self.sqs.meta.client.delete_message_batch(
                QueueUrl=self.url, Entries=[{"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(chunk)])
            for failed in response.get("Failed", []):
                failures.append((chunk[int(failed["Id"])], TaskQueueError(
                    f"SQS did not delete message {chunk[int(failed['Id'])].message_id}: "
                    f"{failed.get('Code')}: {failed.get('Message')}")))
        return failures

    def _batches(self, action: str, handles: list[tuple[str, str]], **extra: Any) -> int:
        client, done = self.sqs.meta.client, 0
        for start in range(0, len(handles), 10):
            entries = [{"Id": str(i), "ReceiptHandle": receipt, **extra} for i, (_, receipt) in enumerate(handles[start:start + 10])]
            response = getattr(client, action)(QueueUrl=self.url, Entries=entries)
            done += len(response.get("Successful", []))
            for failed in response.get("Failed", []):
                logger.info("%s: message %s: %s: %s", action, handles[start + int(failed["Id"])][0], failed.get("Code"),
                            failed.get("Message"))
        return done

    def delete_handles(self, handles: list[tuple[str, str]]) -> int:
        return self._batches("delete_message_batch", handles)

    def release_handles(self, handles: list[tuple[str, str]]) -> int:
        return self._batches("change_message_visibility_batch", handles, VisibilityTimeout=0)

    def receive(self, *, max_messages, wait_time, visibility_timeout, stop=None) -> list[Any]:
        return self.queue.receive_messages(
            AttributeNames=["All"], MessageAttributeNames=["All"], MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=_seconds(wait_time), VisibilityTimeout=_seconds(visibility_timeout),
        )

    # -- dead letters ---------------------------------------------------------------------------

    def dead_queue(self, create: bool = True) -> Any:
        """The dead-letter queue: the redrive policy's target, else `<name>-dead-letter`."""
        if self._dead is not None:
            return self._dead
        attributes = self.sqs.meta.client.get_queue_attributes(QueueUrl=self.url, AttributeNames=["RedrivePolicy", "QueueArn"])
        policy = attributes.get("Attributes", {}).get("RedrivePolicy")
        client = self.sqs.meta.client
        if policy:
            arn = json.loads(policy)["deadLetterTargetArn"]
            account, name = arn.split(":")[4], arn.split(":")[5]
            dead_url = client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
        else:
            name = self.url.rstrip("/").rsplit("/", 1)[-1] + DEAD_LETTER_SUFFIX
            try:
                dead_url = client.get_queue_url(QueueName=name)["QueueUrl"]
            except client.exceptions.QueueDoesNotExist:
                if not create:
                    return None
                logger.warning("creating dead-letter queue %s for %s", name, self.url)
                dead_url = client.create_queue(QueueName=name)["QueueUrl"]
        self._dead = self.sqs.Queue(dead_url)
        return self._dead

    def dead_letter(self, message: Any, reason: str) -> None:
        attributes = dict(getattr(message, "message_attributes", None) or {})
        attributes[REASON_ATTRIBUTE] = string_attribute(reason[:4000])
        attributes[SOURCE_ATTRIBUTE] = string_attribute(self.url)
        self.dead_queue().send_message(MessageBody=message.body, MessageAttributes=attributes)
        message.delete()

    def _drain(self, limit: int) -> list[Any]:
        """Receive up to `limit` dead letters (hidden for a while), oldest batches first."""
        dead = self.dead_queue(create=False)
        if dead is None:
            return []
        seen: dict[str, Any] = {}
        while len(seen) < limit:
            batch = dead.receive_messages(
                AttributeNames=["All"], MessageAttributeNames=["All"], MaxNumberOfMessages=min(10, limit - len(seen)),
                WaitTimeSeconds=0, VisibilityTimeout=_LIST_VISIBILITY,
            )
            fresh = [m for m in batch if m.message_id not in seen]
            if not fresh:
                break
            seen.update((m.message_id, m) for m in fresh)
        return list(seen.values())

    @staticmethod
    def _release(messages: list[Any]) -> None:
        for message in messages:
            try:
                message.change_visibility(VisibilityTimeout=0)
            except Exception as exc:  # noqa: BLE001 - it reappears after _LIST_VISIBILITY anyway
                logger.debug("could not release dead letter %s: %s", message.message_id, exc)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        messages = self._drain(limit)
        self._release(messages)
        rows = []
        for m in messages:
            attrs = m.message_attributes or {}
            rows.append(DeadLetter(
                message_id=m.message_id, body=m.body,
                reason=attrs.get(REASON_ATTRIBUTE, {}).get("StringValue") or "redrive policy (maxReceiveCount)",
                receive_count=int(m.attributes.get("ApproximateReceiveCount", 0)),
                source_queue=attrs.get(SOURCE_ATTRIBUTE, {}).get("StringValue"),
                dead_lettered_at=int(m.attributes.get("SentTimestamp", 0)) / 1000 or None, attributes=attrs,
            ))
        return rows

    def retry_dead_letters(self, message_ids: list[str] | None = None) -> int:
        wanted = None if message_ids is None else set(message_ids)
        moved = 0
        while True:
            messages = self._drain(1000)
            others = []
            for m in messages:
                if wanted is not None and m.message_id not in wanted:
                    others.append(m)
                    continue
                attrs = {k: v for k, v in (m.message_attributes or {}).items() if k not in (REASON_ATTRIBUTE, SOURCE_ATTRIBUTE)}
                self.queue.send_message(MessageBody=m.body, MessageAttributes=attrs)
                m.delete()
                moved += 1
            self._release(others)
            if wanted is not None or not messages:
                return moved

    def purge_dead_letters(self) -> int:
        dead = self.dead_queue(create=False)
        if dead is None:
            return 0
        dead.load()
        count = int(dead.attributes.get("ApproximateNumberOfMessages", 0)) + int(
            dead.attributes.get("ApproximateNumberOfMessagesNotVisible", 0))
        dead.purge()
        return count

    def attributes(self) -> dict[str, Any]:
        self.queue.load()
        return self.queue.attributes

    def purge(self) -> None:
        self.queue.purge()


def configure_dead_letters(url: str, max_receives: int) -> str:
    """Give an SQS queue a redrive policy to `<name>-dead-letter` (created if needed); returns its URL."""
    if max_receives < 1:
        raise TaskQueueError("max_receives must be at least 1")
    sqs = resource(url)
    client = sqs.meta.client
    name = url.rstrip("/").rsplit("/", 1)[-1] + DEAD_LETTER_SUFFIX
    dead_url = client.create_queue(QueueName=name)["QueueUrl"]
    arn = client.get_queue_attributes(QueueUrl=dead_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receives)})
    client.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": policy})
    return dead_url
