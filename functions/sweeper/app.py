"""Scheduled: dispatched jobs whose notification is late are resolved from SageMaker's output or
failure file if it exists (a lost notification); jobs past their deadline are resolved the same way
or expire and give back their reservation; orphaned reservations are released (`stratus_core.sweep`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratus_core.services import Services

logger = Logger()
tracer = Tracer()
metrics = Metrics()
services = Services()


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = services.sweeper.run()
    # Only what is not zero (a custom metric is billed for each hour it gets data; the alarm FILLs
    # missing data with 0): an idle deployment publishes nothing here.
    for name, value in (
        ("NotificationsRecovered", report.recovered),
        ("JobsSwept", report.resolved),
        ("OrphanedReservationsReleased", report.orphans_released),
        ("SweepErrors", report.errors),
    ):
        if value:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    logger.info("sweep done", extra=asdict(report))
    if report.errors:
        # every other job was swept; failing the invocation makes the functions' error alarm fire
        raise SweepIncomplete(f"{report.errors} job(s) could not be swept; their errors are logged above")
    return asdict(report)


class SweepIncomplete(Exception):
    """Some jobs could not be swept (the others were)."""
