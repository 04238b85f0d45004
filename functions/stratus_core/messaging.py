"""Messages to the requests queue."""

from __future__ import annotations

from stratus_core import aws
from stratus_core.jobs import RequestMessage


class SqsRequestQueue:
    def __init__(self, queue_url: str) -> None:
        self._url = queue_url

    def send(self, message: RequestMessage) -> None:
        aws.sqs().send_message(QueueUrl=self._url, MessageBody=message.model_dump_json())
