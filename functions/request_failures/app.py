"""The request queues' dead-letter queues: a request that could not be dispatched fails, and its
reservation is released. A message that names no job is logged with its reason and counted.

The function drains both queues on a schedule (every 5 minutes) rather than through event source
mappings: a mapping polls its queue with five long-polling connections even when it is empty, about
$0.26 a month per queue of empty receives, and these queues are empty but for an endpoint that
refused work through every retry. A dead-lettered request then fails within 5 minutes instead of
seconds; its client, waiting or polling, hears the same failure. Each message is deleted once its
job has failed (or it was found to name none); one that raises stays, and the next run takes it
again. An SQS event (a mapping, if an operator adds one) is still handled as before."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from stratus_core.adapters import aws
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


RECEIVE_BATCH = 10
TIME_LEFT_MS = 3_000
"""Stop receiving when the invocation has less than this left (the function's timeout is 10 s)."""


def drain(queue_url: str, context: LambdaContext) -> tuple[int, int]:
    """Fail the request of every message in one dead-letter queue; (messages done, messages left)."""
    sqs = aws.sqs()
    done = left = 0
    while getattr(context, "get_remaining_time_in_millis", lambda: 60_000)() > TIME_LEFT_MS:
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=RECEIVE_BATCH,
            WaitTimeSeconds=0,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        if not messages:
            break
        handled: list[dict[str, str]] = []
        for message in messages:
            record = SQSRecord(
                {
                    "messageId": message["MessageId"],
                    "receiptHandle": message["ReceiptHandle"],
                    "body": message["Body"],
                    "attributes": message.get("Attributes", {}),
                }
            )
            try:
                fail_request(record)
            except Exception:  # this one stays for the next run; the others go on
                logger.exception("dead letter not handled this run", extra={"message_id": message["MessageId"]})
                left += 1
                continue
            handled.append({"Id": str(len(handled)), "ReceiptHandle": message["ReceiptHandle"]})
        if handled:
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=handled)  # type: ignore[arg-type]
            done += len(handled)
        if left:
            break  # what failed is invisible until its visibility timeout: the next run takes it
    return done, left


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse | dict[str, int]:
    if "Records" in event:
        return process_partial_response(
            event=event, record_handler=fail_request, processor=batch_processor, context=context
        )
    settings = services.settings
    done = left = 0
    for queue_url in (settings.requests_dead_letter_queue_url, settings.batch_requests_dead_letter_queue_url):
        handled, stayed = drain(queue_url, context)
        done, left = done + handled, left + stayed
    if done or left:
        logger.info("dead-letter queues drained", extra={"handled": done, "left": left})
    if left:
        raise DeadLettersLeft(f"{left} dead letter(s) could not be handled; their errors are logged above")
    return {"handled": done, "left": left}


class DeadLettersLeft(Exception):
    """Some dead letters could not be handled this run (the others were); they stay for the next."""
