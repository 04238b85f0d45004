"""Messages to our SQS queues."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from stratus_core.adapters import aws


class SqsQueue:
    """Sends one versioned pydantic message per SQS message."""

    def __init__(self, queue_url: str) -> None:
        self._url = queue_url

    def send(self, message: BaseModel) -> None:
        aws.sqs().send_message(QueueUrl=self._url, MessageBody=message.model_dump_json())

    def send_batch(self, messages: Sequence[BaseModel]) -> list[bool]:
        """`SendMessageBatch`, ten messages to a request (billed as one request per 64 KB, where ten
        `SendMessage` calls are ten): whether each was sent. SQS answers a batch with the entries
        it failed; those are reported, not raised, so the caller keeps them for a later try."""
        sent: list[bool] = []
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            entries = [{"Id": str(i), "MessageBody": m.model_dump_json()} for i, m in enumerate(chunk)]
            response = aws.sqs().send_message_batch(QueueUrl=self._url, Entries=entries)  # type: ignore[arg-type]
            failed = {entry["Id"] for entry in response.get("Failed", [])}
            sent += [str(i) not in failed for i in range(len(chunk))]
        return sent

    def depth(self) -> int:
        """Messages waiting plus those received and not yet deleted (SQS's approximate counts)."""
        attributes = aws.sqs().get_queue_attributes(
            QueueUrl=self._url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])
