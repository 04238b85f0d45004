"""Billing: every day at 02:00 UTC, close the month just ended for each tenant whose month is complete.

A tenant's invoice for a month is written to S3 once every reservation it was admitted in that
month is settled or released, and never rewritten (`stratus_core.billing`); a tenant still holding
one is left open for the next day's run. Invoked with `{"month": "YYYY-MM"}` it closes that month
instead (an ended month: the invoices already written stay as they are). A tenant still open
`CLOSE_BOUND` after the month's end fails the run, so that the function's error alarm says so.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from stratus_core.billing import CLOSE_BOUND, MONTH_PATTERN
from stratus_core.services import Services

logger = Logger()
tracer = Tracer()
metrics = Metrics()
services = Services()


class BillingRun(BaseModel):
    model_config = ConfigDict(extra="ignore")  # EventBridge adds its own envelope fields

    month: str | None = Field(default=None, pattern=MONTH_PATTERN)


class InvoicesOverdue(Exception):
    """Tenants still hold reservations of a month long past every deadline: their invoice waits."""


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    month = BillingRun.model_validate(event).month or services.billing.month_just_ended()
    closed = services.billing.close_month(month, services.invoice_archive)
    metrics.add_metric(name="InvoicesWritten", unit=MetricUnit.Count, value=len(closed.written))
    metrics.add_metric(name="InvoicesOpen", unit=MetricUnit.Count, value=len(closed.open))
    summary = {
        "month": month,
        "written": len(closed.written),
        "final": len(closed.final),
        "nothing_due": len(closed.nothing_due),
        "open": closed.open,
    }
    if closed.overdue:
        logger.error("invoices overdue: reservations held past every deadline", extra=summary)
        raise InvoicesOverdue(f"{month}: {len(closed.open)} tenants still open {CLOSE_BOUND} after the month")
    logger.info("month closed" if not closed.open else "month partly closed", extra=summary)
    return {
        "month": month,
        "invoices": len(closed.written),
        "amount_due": str(closed.amount_due),
        "final": len(closed.final),
        "nothing_due": len(closed.nothing_due),
        "open": closed.open,
    }
