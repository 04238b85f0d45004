"""Messages to our SQS queues."""

from __future__ import annotations

from pydantic import BaseModel

from stratus_core.adapters import aws


class SqsQueue:
    """Sends one versioned pydantic message per SQS message."""

    def __init__(self, queue_url: str) -> None:
        self._url = queue_url

    def send(self, message: BaseModel) -> None:
        aws.sqs().send_message(QueueUrl=self._url, MessageBody=message.model_dump_json())

    def depth(self) -> int:
        """Messages waiting plus those received and not yet deleted (SQS's approximate counts)."""
        attributes = aws.sqs().get_queue_attributes(
            QueueUrl=self._url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])
