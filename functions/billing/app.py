"""Monthly billing: on the schedule, write every tenant's invoice for the month just ended to S3.

Invoked with `{"month": "YYYY-MM"}` it (re)writes that month instead.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from stratus_core.billing import MONTH_PATTERN
from stratus_core.clock import month_key, utcnow
from stratus_core.services import Services

logger = Logger()
tracer = Tracer()
metrics = Metrics()
services = Services()


class BillingRun(BaseModel):
    model_config = ConfigDict(extra="ignore")  # EventBridge adds its own envelope fields

    month: str | None = Field(default=None, pattern=MONTH_PATTERN)


def previous_month() -> str:
    return month_key(utcnow().replace(day=1) - timedelta(days=1))


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    month = BillingRun.model_validate(event).month or previous_month()
    invoices = services.billing.publish(month, services.invoice_archive)
    metrics.add_metric(name="InvoicesWritten", unit=MetricUnit.Count, value=len(invoices.data))
    logger.info("invoices written", extra={"month": month, "tenants": len(invoices.data)})
    return {"month": month, "invoices": len(invoices.data), "amount_due": str(invoices.amount_due)}
