"""HTTP API Lambda authorizer (payload 2.0, simple responses).

Allows with context `{tenant_id, key_id, scopes}` or denies. API Gateway caches the answer per
Authorization header for the template's `AuthorizerCacheTtlSeconds`, so a revoked key stops
working within that many seconds. The key itself is never logged.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import event_source
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerEventV2,
    APIGatewayAuthorizerResponseV2,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from stratus_core.errors import Forbidden, Unauthenticated
from stratus_core.http.auth import authorize
from stratus_core.services import Services

logger = Logger()
tracer = Tracer()
metrics = Metrics()
services = Services()


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
@event_source(data_class=APIGatewayAuthorizerEventV2)
def lambda_handler(event: APIGatewayAuthorizerEventV2, context: LambdaContext) -> dict[str, Any]:
    try:
        principal = authorize(event.headers.get("authorization"), services.keys)
    except (Unauthenticated, Forbidden) as denied:
        logger.info("denied", extra={"reason": str(denied), "route": event.route_key})
        metrics.add_metric(name="AuthorizerDenied", unit=MetricUnit.Count, value=1)
        return APIGatewayAuthorizerResponseV2(authorize=False).asdict()
    logger.append_keys(tenant_id=principal.tenant_id, key_id=principal.key_id)
    metrics.add_metric(name="AuthorizerAllowed", unit=MetricUnit.Count, value=1)
    logger.info("allowed")
    return APIGatewayAuthorizerResponseV2(authorize=True, context=principal.to_context()).asdict()
