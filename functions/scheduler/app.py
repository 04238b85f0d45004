"""Scheduled every minute: how many instances the endpoint should have, and which held batch and
flex requests go to it now (`stratus_core.scheduler`, policy in `stratus_core.scheduling`).

Each decision is logged with its reason and emitted as metrics (`DesiredInstances`,
`InServiceInstances`, `HeldRequests`, `ReleasedRequests`, `SchedulerRuns`); a run whose endpoint
state could not be read changes nothing and counts in `SchedulerBlind`, which an alarm watches.
A run in which some held jobs could not be let go (the others were, and the state was saved) counts
them in `SchedulerErrors` and then fails, so that the functions' error alarm fires; their messages
went, and they stay held until the dispatcher takes them or the next run sends them again.
A run whose record could not be written to the run history (`GET /admin/endpoint`) counts in
`SchedulerHistoryErrors` and does not fail: the history is for people, the scaling is not.
"""

from __future__ import annotations

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
    run = services.scheduler.run()
    metrics.add_metric(name="SchedulerRuns", unit=MetricUnit.Count, value=1)
    if run.observation is None or run.decision is None:
        metrics.add_metric(name="SchedulerBlind", unit=MetricUnit.Count, value=1)
        return {"changed": False, "reason": run.reason}
    # Only what is not zero: CloudWatch bills a custom metric for each hour it gets data, and an idle
    # deployment would pay $0.30 a month for each zero published every minute. The dashboard reads a
    # missing point as zero; SchedulerRuns, the alarm's heartbeat, is published every run.
    for name, value in (
        ("DesiredInstances", run.decision.desired),
        ("InServiceInstances", run.observation.in_service),
        ("HeldRequests", run.observation.waiting),
        ("ReleasedRequests", run.released),
        ("SchedulerErrors", run.errors),
        ("SchedulerHistoryErrors", run.history_errors),
    ):
        if value:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    decided = {
        "desired": run.decision.desired,
        "was_desired": run.observation.desired,
        "in_service": run.observation.in_service,
        "held": run.observation.waiting,
        "released": run.released,
        "capacity_set": run.capacity_set,
        "reason": run.reason,
        "errors": run.errors,
        "recorded": run.recorded,
    }
    logger.info("scheduled", extra=decided)
    if run.errors:
        # every other held job was let go and the state saved; failing the invocation makes the
        # functions' error alarm fire
        raise SchedulerIncomplete(f"{run.errors} held job(s) could not be let go; their errors are logged above")
    return decided


class SchedulerIncomplete(Exception):
    """Some held jobs could not be let go (the others were)."""
