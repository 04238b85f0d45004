"""The HTTPS API: OpenAI-shaped routes and errors, behind the key authorizer."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from api import admin_routes, batch_routes, inference_routes, tenant_routes
from stratus_core.errors import PayloadTooLarge, StratusError
from stratus_core.http.errors import HttpError, http_error, route_not_found, validation_error

logger = Logger()
tracer = Tracer()
metrics = Metrics()
MAX_BODY_BYTES = 1_048_576
MAX_FILE_BODY_BYTES = 10 * 1_048_576  # API Gateway's own cap; larger files use a presigned upload

app = APIGatewayHttpResolver(enable_validation=True)


def reject_large_bodies(resolver: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response[Any]:
    """413 before anything parses a body over 1 MiB (10 MiB for file uploads, API Gateway's own cap)."""
    event = resolver.current_event
    limit = MAX_FILE_BODY_BYTES if event.path == "/v1/files" else MAX_BODY_BYTES
    size = len(event.body or "") * 3 // 4 if event.is_base64_encoded else len(event.body or "")
    if size > limit:
        return _respond(http_error(PayloadTooLarge(limit)))
    return next_middleware(resolver)


app.use(middlewares=[reject_large_bodies])
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
    return app.resolve(event, context)
