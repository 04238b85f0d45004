"""The HTTPS API: OpenAI-shaped routes and errors, behind the key authorizer."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from api import admin_routes, batch_routes, inference_routes, tenant_routes
from stratus_core.errors import PayloadTooLarge, StratusError
from stratus_core.http.auth import principal_from_authorizer, require_scope
from stratus_core.http.errors import HttpError, http_error, route_not_found, validation_error
from stratus_core.keys import Scope

logger = Logger()
tracer = Tracer()
metrics = Metrics()
MAX_BODY_BYTES = 1_048_576
MAX_FILE_BODY_BYTES = 10 * 1_048_576  # API Gateway's own cap; larger files use a presigned upload

app = APIGatewayHttpResolver(enable_validation=True)


app.include_router(tenant_routes.router)
app.include_router(admin_routes.router)
app.include_router(inference_routes.router)
app.include_router(batch_routes.router)


def _respond(result: HttpError) -> Response[Any]:
    return Response(
        status_code=result.status,
        content_type=content_types.APPLICATION_JSON,
        body=result.body.model_dump_json(),
        headers=result.headers or None,
    )


@app.exception_handler(StratusError)
def handle_domain_error(error: StratusError) -> Response[Any]:
    return _respond(http_error(error))


@app.exception_handler(RequestValidationError)
def handle_validation_error(error: RequestValidationError) -> Response[Any]:
    return _respond(validation_error(error.errors()))


@app.not_found
def handle_not_found(_: Exception) -> Response[Any]:
    event = app.current_event
    return _respond(route_not_found(event.http_method, event.path))


@app.exception_handler(Exception)
def handle_unexpected(error: Exception) -> Response[Any]:
    logger.exception("unhandled error")
    return _respond(http_error(StratusError()))


@app.get("/openapi.json", include_in_schema=False)
def get_openapi() -> Response[Any]:
    from api.openapi import openapi_document  # the OpenAPI models cost ~80 ms to import: only when asked

    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=openapi_document(app))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return refuse_early(event) or app.resolve(event, context)


def refuse_early(event: dict[str, Any]) -> dict[str, Any] | None:
    """What must be refused before anything parses the body (Powertools validates the body before
    any middleware or route runs): a body over the size cap (413), and admin routes called without
    the admin scope (401/403), so that such callers learn nothing about the body they sent."""
    path = str(event.get("rawPath", ""))
    body = event.get("body") or ""
    size = len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode("utf-8"))
    limit = MAX_FILE_BODY_BYTES if path == "/v1/files" else MAX_BODY_BYTES
    try:
        if size > limit:
            raise PayloadTooLarge(limit)
        if path.startswith("/admin/"):
            authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
            require_scope(principal_from_authorizer(authorizer.get("lambda")), Scope.ADMIN)
    except StratusError as refused:
        result = http_error(refused)
        return {
            "statusCode": result.status,
            "headers": {"Content-Type": content_types.APPLICATION_JSON, **result.headers},
            "body": result.body.model_dump_json(),
            "isBase64Encoded": False,
        }
    return None
