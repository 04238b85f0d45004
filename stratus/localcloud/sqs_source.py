"""An SQS event source with Lambda's semantics, for running SQS-triggered handlers locally.

Receives up to `batch_size` messages, hands them to the handler as Lambda's SQS event, deletes
the ones the handler did not report in `batchItemFailures` (all of them if it raised, none
deleted). Failed messages stay in the queue and reappear after their visibility timeout; after
the queue's `maxReceiveCount` SQS itself moves them to the dead-letter queue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import boto3

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]


class SqsEventSource:
    def __init__(
        self,
        queue_url: str,
        handler: Handler,
        *,
        batch_size: int = 10,
        batching_window: float = 0,
        context: Any = None,
    ) -> None:
        self.queue_url = queue_url
        self._handler = handler
        self._batch_size = batch_size
        self._window = batching_window
        self._context = context
        self._sqs = boto3.client("sqs")
        attributes = self._sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
        self._arn = attributes["QueueArn"]

    def receive(self, wait_seconds: int = 0) -> list[dict[str, Any]]:
        """Up to `batch_size` messages; once one has arrived, keep gathering for up to the batching
        window (Lambda's `MaximumBatchingWindowInSeconds`) until the batch is full."""
        messages: list[dict[str, Any]] = []
        deadline: float | None = None
        while len(messages) < self._batch_size:
            batch = self._sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, self._batch_size - len(messages)),
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=wait_seconds if not messages else 0,
            ).get("Messages", [])
            if batch:
                messages.extend(dict(message) for message in batch)
                if deadline is None:
                    deadline = time.monotonic() + self._window
                continue
            if deadline is None or time.monotonic() >= deadline:
                break
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        return messages

    def event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        region = self._sqs.meta.region_name
        return {
            "Records": [
                {
                    "messageId": message["MessageId"],
                    "receiptHandle": message["ReceiptHandle"],
                    "body": message["Body"],
                    "attributes": message.get("Attributes", {}),
                    "messageAttributes": message.get("MessageAttributes", {}),
                    "md5OfBody": message["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self._arn,
                    "awsRegion": region,
                }
                for message in messages
            ]
        }

    def poll_once(self, wait_seconds: int = 0, retry_failures_now: bool = False) -> tuple[int, int]:
        """One receive → invoke → delete round; returns (messages handled, messages failed).

        `retry_failures_now` makes failed messages visible again at once (tests use it to walk
        a message to its dead-letter queue without waiting out visibility timeouts).
        """
        messages = self.receive(wait_seconds)
        if not messages:
            return 0, 0
        by_id = {message["MessageId"]: message for message in messages}
        try:
            response = self._handler(self.event(messages), self._context) or {}
            failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        except Exception:
            logger.exception("handler failed; the whole batch returns to the queue")
            failed = set(by_id)
        done = [message for message_id, message in by_id.items() if message_id not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
        if retry_failures_now:
            for message_id in failed:
                self._sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=by_id[message_id]["ReceiptHandle"], VisibilityTimeout=0
                )
        return len(messages), len(failed)

    def drain(self, retry_failures_now: bool = False, max_rounds: int = 100) -> int:
        """Poll until the queue gives nothing; returns how many deliveries were made."""
        delivered = 0
        for _ in range(max_rounds):
            handled, _failed = self.poll_once(retry_failures_now=retry_failures_now)
            if not handled:
                break
            delivered += handled
        return delivered
