"""SageMaker success/error notifications (SNS → SQS, raw delivery) → finished jobs.

Each notification is handled exactly once in effect: duplicates and late arrivals find the
jobs already terminal and the reservations already settled, and change nothing.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratus_core.results import AsyncNotification
from stratus_core.services import Services

logger = Logger()
tracer = Tracer()
metrics = Metrics()
services = Services()
batch_processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def handle_notification(record: SQSRecord) -> None:
    notification = AsyncNotification.model_validate_json(record.body)
    settlement = services.settlement
    billed_before = settlement.billed_tokens
    changed = services.results.handle(notification)
    logger.info(
        "notification handled",
        extra={"inference_id": notification.inferenceId, "status": notification.invocationStatus, "changed": changed},
    )
    metrics.add_metric(name="JobsFinished", unit=MetricUnit.Count, value=changed)
    metrics.add_metric(name="TokensBilled", unit=MetricUnit.Count, value=settlement.billed_tokens - billed_before)


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=handle_notification, processor=batch_processor, context=context
    )
