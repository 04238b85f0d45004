"""The batch queue: start (validate and expand), cancel and finalize batches; and trusted producers'
submissions (a tenant and an S3 JSONL input or inline requests) that become the same batches."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import TypeAdapter

from stratus_core.batches.models import BatchMessage
from stratus_core.services import Services
from stratus_core.submissions import BatchSubmission

logger = Logger()
tracer = Tracer()
metrics = Metrics()
services = Services()
batch_processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
messages: TypeAdapter[BatchMessage | BatchSubmission] = TypeAdapter(BatchMessage | BatchSubmission)


def handle(record: SQSRecord) -> None:
    message = messages.validate_json(record.body)
    if isinstance(message, BatchSubmission):
        batch = services.submissions.submit(message)
        logger.info("batch submitted from the queue", extra={"tenant_id": message.tenant_id, "batch_id": batch.id})
        metrics.add_metric(name="BatchesSubmitted", unit=MetricUnit.Count, value=1)
        return
    services.batch_worker.handle(message)
    logger.info("batch step done", extra={"batch_id": message.batch_id, "action": message.action})


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    response = process_partial_response(event=event, record_handler=handle, processor=batch_processor, context=context)
    for failure in response.get("batchItemFailures", []):
        logger.error("batch message failed", extra={"message_id": failure["itemIdentifier"]})
    return response
