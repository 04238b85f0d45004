"""The endpoint as operators see it: its instances over time, the backlog and the held work, the
scheduler's decisions with their reasons, cold starts, and what scale to zero saved (admin scope)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from api.caller import caller, services
from stratus_core.endpoint_history import MAX_HOURS, EndpointReport
from stratus_core.keys import Scope

router = Router()


@router.get(
    "/admin/endpoint",
    summary="The endpoint over the last hours: instances, backlog, held work, decisions, cold starts",
    tags=["admin"],
)
def get_endpoint(
    hours: Annotated[int, Query(ge=1, le=MAX_HOURS, description="How far back the window reaches")] = 24,
) -> EndpointReport:
    """`runs` holds the scheduler runs recorded in the window (a run is recorded when it differs
    from the one before, and at least once an hour), after the one just before the window;
    `instance_hours` is what the endpoint billed over the window, `always_on_instance_hours` what an
    endpoint that never scaled, sized for the same peak, would have."""
    caller(router, Scope.ADMIN)
    return services(router).endpoint_history.report(hours)
