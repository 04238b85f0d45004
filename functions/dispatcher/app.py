"""SQS requests queue → packs → SageMaker async endpoint.

Partial batch failures: a malformed message fails alone (and reaches the dead-letter queue
after `maxReceiveCount`); when the endpoint is busy, the pack's messages return to the queue
with a backoff that grows with their receive count.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratus_core.adapters import aws
from stratus_core.jobs import RequestMessage
from stratus_core.services import Services

logger = Logger()
tracer = Tracer()
metrics = Metrics()
services = Services()
batch_processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

MAX_BACKOFF_SECONDS = 900


class Collector:
    """Parses each record (a bad one raises and becomes a batch item failure) and keeps it."""

    def __init__(self) -> None:
        self.messages: dict[str, RequestMessage] = {}
        self.records: dict[str, SQSRecord] = {}

    def __call__(self, record: SQSRecord) -> None:
        self.messages[record.message_id] = RequestMessage.model_validate_json(record.body)
        self.records[record.message_id] = record


def queue_url(arn: str) -> str:
    """The URL of the queue a record came from (interactive or batch lane)."""
    settings = services.settings
    name = arn.rsplit(":", 1)[-1]
    for url in (settings.requests_queue_url, settings.batch_requests_queue_url):
        if url.rstrip("/").rsplit("/", 1)[-1] == name:
            return url
    return aws.sqs().get_queue_url(QueueName=name)["QueueUrl"]


def back_off(records: list[SQSRecord]) -> None:
    """Hide each message for 5 s × 2^(receives-1), at most 15 min, before it is retried."""
    for record in records:
        receives = int(record.attributes.approximate_receive_count or "1")
        aws.sqs().change_message_visibility(
            QueueUrl=queue_url(record.event_source_arn),
            ReceiptHandle=record.receipt_handle,
            VisibilityTimeout=min(MAX_BACKOFF_SECONDS, 5 * 2 ** (receives - 1)),
        )


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    collector = Collector()
    with batch_processor(records=event["Records"], handler=collector, lambda_context=context):
        batch_processor.process()
    response = batch_processor.response()
    for failure in response["batchItemFailures"]:
        logger.error("malformed request message", extra={"message_id": failure["itemIdentifier"]})
    report = services.dispatcher.dispatch(collector.messages)
    if report.retry:
        back_off([collector.records[message_id] for message_id in report.retry])
        response["batchItemFailures"].extend({"itemIdentifier": message_id} for message_id in report.retry)
    metrics.add_metric(name="RequestsDispatched", unit=MetricUnit.Count, value=len(report.dispatched))
    metrics.add_metric(name="DispatchRetries", unit=MetricUnit.Count, value=len(report.retry))
    return response
