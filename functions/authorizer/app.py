"""HTTP API Lambda authorizer (payload 2.0, simple responses).

A valid key gets the context `{tenant_id, key_id, scopes}`. An invalid one (malformed, unknown,
expired, revoked, or a suspended tenant) gets `{denied, reason}`, and the request goes on to the
API function, which answers it at one choke point before any route runs (`api/app.py`), with
OpenAI's 401 `invalid_api_key` (or 403 for a suspended tenant): an HTTP API cannot reshape its
authorizer's own denials (a fixed `403 {"message": "Forbidden"}`), and an OpenAI client must see
`AuthenticationError`. API Gateway caches either answer per Authorization header for the
template's `AuthorizerCacheTtlSeconds`, so a revoked key stops working within that many seconds.
The key itself is never logged.
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
from stratus_core.http.auth import authorize, denial_context
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
    # The caller's identity goes on this invocation's lines only. Powertools' thread-safe keys live in
    # a ContextVar, where `append_keys` would write to the one logger every thread shares: on AWS an
    # environment runs one invocation at a time, but the local cloud runs concurrent requests in
    # threads, and a line of one could name another's tenant. Cleared on the way out, so a later
    # function in the same thread (the API, after a cached authorizer answer) never inherits them.
    try:
        principal = authorize(event.headers.get("authorization"), services.keys)
    except (Unauthenticated, Forbidden) as denied:
        logger.info("denied", extra={"reason": str(denied), "route": event.route_key})
        metrics.add_metric(name="AuthorizerDenied", unit=MetricUnit.Count, value=1)
        code = denied.code if isinstance(denied, Forbidden) else "invalid_api_key"
        return APIGatewayAuthorizerResponseV2(authorize=True, context=denial_context(code, str(denied))).asdict()
    logger.thread_safe_append_keys(tenant_id=principal.tenant_id, key_id=principal.key_id)
    try:
        metrics.add_metric(name="AuthorizerAllowed", unit=MetricUnit.Count, value=1)
        logger.info("allowed")
        return APIGatewayAuthorizerResponseV2(authorize=True, context=principal.to_context()).asdict()
    finally:
        logger.thread_safe_remove_keys(["tenant_id", "key_id"])
