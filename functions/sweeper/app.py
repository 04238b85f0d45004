"""Scheduled: dispatched jobs whose notification is late are resolved from SageMaker's output or
failure file if it exists (a lost notification); jobs past their deadline are resolved the same way
or expire and give back their reservation."""

from __future__ import annotations

from datetime import timedelta
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
ORPHAN_GRACE = timedelta(minutes=15)


def job_is_live(tenant_id: str, job_id: str) -> bool:
    job = wiring.job_store().get(tenant_id, job_id)
    return job is not None and not job.status.is_terminal


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    now = utcnow()
    recovered = wiring.results().recover_unanswered(now, BATCH)
    overdue = wiring.job_store().overdue(now, BATCH)
    resolved = sum(wiring.results().sweep(job) for job in overdue)
    orphans = wiring.admission().release_orphans(job_is_live, ORPHAN_GRACE, BATCH)
    metrics.add_metric(name="NotificationsRecovered", unit=MetricUnit.Count, value=recovered)
    metrics.add_metric(name="JobsSwept", unit=MetricUnit.Count, value=resolved)
    metrics.add_metric(name="OrphanedReservationsReleased", unit=MetricUnit.Count, value=orphans)
    logger.info(
        "sweep done",
        extra={"recovered": recovered, "overdue": len(overdue), "resolved": resolved, "orphans": orphans},
    )
    result = {"recovered": recovered, "overdue": len(overdue), "resolved": resolved}
    if orphans:
        result["orphans_released"] = orphans
    return result
