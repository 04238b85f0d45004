"""Scheduled: jobs past their deadline are resolved from SageMaker's output if it exists (a lost
notification), or expire and give back their reservation."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratus_core import wiring
from stratus_core.clock import utcnow

logger = Logger()
tracer = Tracer()
metrics = Metrics()

BATCH = 100


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    overdue = wiring.job_store().overdue(utcnow(), BATCH)
    resolved = sum(wiring.results().sweep(job) for job in overdue)
    metrics.add_metric(name="JobsSwept", unit=MetricUnit.Count, value=resolved)
    logger.info("sweep done", extra={"overdue": len(overdue), "resolved": resolved})
    return {"overdue": len(overdue), "resolved": resolved}
