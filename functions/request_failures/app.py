"""The requests queue's dead-letter queue: a request that could not be dispatched fails, and its
reservation is released. A message that names no job is logged with its reason and counted."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from stratus_core.contract import JobError
from stratus_core.jobs import JobStatus, RequestMessage
from stratus_core.services import Services

logger = Logger()
tracer = Tracer()
metrics = Metrics()
services = Services()
batch_processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def fail_request(record: SQSRecord) -> None:
    receives = record.attributes.approximate_receive_count
    try:
        message = RequestMessage.model_validate_json(record.body)
    except ValidationError as invalid:
        logger.error(
            "dead letter is not a request message",
            extra={
                "message_id": record.message_id,
                "reason": invalid.errors(include_input=False)[:3],
                "body_bytes": len(record.body),
            },
        )
        metrics.add_metric(name="PoisonMessages", unit=MetricUnit.Count, value=1)
        return
    job = services.job_store.get(message.tenant_id, message.job_id)
    if job is None or job.status.is_terminal:
        logger.info("dead letter for a finished or unknown job", extra={"job_id": message.job_id})
        return
    reason = f"not dispatched: the endpoint stayed unavailable or throttled through every retry ({receives} receives)"
    failed = services.settlement.fail(job, JobStatus.FAILED, JobError(code="dispatch_failed", message=reason))
    logger.warning(
        "request failed from the dead-letter queue",
        extra={"job_id": job.job_id, "tenant_id": job.tenant_id, "reason": reason, "changed": failed},
    )
    metrics.add_metric(name="RequestsDeadLettered", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=fail_request, processor=batch_processor, context=context
    )
