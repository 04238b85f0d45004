"""The HTTPS API: OpenAI-shaped routes and errors, behind the key authorizer."""

from __future__ import annotations

import base64
import json
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from api import admin_routes, batch_routes, endpoint_routes, inference_routes, model_and_usage_routes
from api.resolver import PerThreadResolver
from stratus_core.adapters.aws import error_code, retried_by_botocore
from stratus_core.errors import InvalidRequest, PayloadTooLarge, StratusError, Unavailable
from stratus_core.http.auth import principal_from_authorizer, require_scope
from stratus_core.http.errors import HttpError, error, http_error, route_not_found, validation_error
from stratus_core.keys import Scope
from stratus_core.services import Services

logger = Logger()
tracer = Tracer()
metrics = Metrics()
services = Services()
MAX_BODY_BYTES = 1_048_576
MAX_FILE_BODY_BYTES = 10 * 1_048_576  # API Gateway's own cap; larger files use a presigned upload
OPENAPI_PATH = "/openapi.json"

app = PerThreadResolver(enable_validation=True)


app.include_router(model_and_usage_routes.router)
app.include_router(admin_routes.router)
app.include_router(endpoint_routes.router)
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


@app.exception_handler(RequestUnsupportedContentType)
def handle_unsupported_content_type(_: RequestUnsupportedContentType) -> Response[Any]:
    return _respond(
        error(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            "unsupported Content-Type: send application/json (multipart/form-data for file uploads)",
            "invalid_request_error",
            "unsupported_media_type",
            "content-type",
        )
    )


@app.not_found
def handle_not_found(_: Exception) -> Response[Any]:
    event = app.current_event
    return _respond(route_not_found(event.http_method, event.path))


@app.exception_handler(ClientError)
def handle_aws_error(error: ClientError) -> Response[Any]:
    """An AWS call still throttled or failing after botocore's retries (DynamoDB's
    ProvisionedThroughputExceeded, a 500): a retryable 503, which the OpenAI SDKs retry by themselves
    (a retry with the same Idempotency-Key or body attaches to any job the first attempt admitted)."""
    if retried_by_botocore(error):
        logger.warning("AWS still throttled or failing after its retries", extra={"code": error_code(error)})
        return _respond(http_error(Unavailable("the service is busy; retry the request", retry_after=1)))
    logger.exception("unhandled AWS error")
    return _respond(http_error(StratusError()))


@app.exception_handler(Exception)
def handle_unexpected(error: Exception) -> Response[Any]:
    logger.exception("unhandled error")
    return _respond(http_error(StratusError()))


@app.get(OPENAPI_PATH, include_in_schema=False)
def get_openapi() -> Response[Any]:
    from api.openapi import openapi_document  # the OpenAPI models cost ~80 ms to import: only when asked

    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=openapi_document(app))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    refused = refuse_early(event)
    if refused is not None:
        return refused
    app.append_context(services=services)
    return app.resolve(event, context)


# The scope each route family needs, checked before the body is parsed (the routes check it again).
ROUTE_SCOPES = (
    ("/admin/", Scope.ADMIN),
    ("/v1/chat/completions", Scope.INFERENCE),
    ("/v1/completions", Scope.INFERENCE),
    ("/v1/responses", Scope.INFERENCE),
    ("/v1/embeddings", Scope.INFERENCE),
    ("/v1/jobs", Scope.INFERENCE),
    ("/v1/files", Scope.BATCH),
    ("/v1/batches", Scope.BATCH),
    ("/v1/usage", Scope.USAGE),
    ("/v1/limits", Scope.USAGE),
    ("/v1/keys", Scope.USAGE),
)
MAX_JSON_DEPTH_CHECK = 512  # bodies with more brackets than this are checked for nesting before parsing


def refuse_early(event: dict[str, Any]) -> dict[str, Any] | None:
    """What must be refused before anything parses the body (Powertools validates the body before
    any middleware or route runs): a key the authorizer refused (401 `invalid_api_key`, 403 for a
    suspended tenant: no route ever runs for it), a body over the size cap (413), a route called
    without its scope (403), so that such callers learn nothing about the body they sent, a body
    that is not UTF-8 and JSON nested too deep for the parser (400s, not a decoder's 500)."""
    path = str(event.get("rawPath", ""))
    body = event.get("body") or ""
    size = len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode("utf-8"))
    limit = MAX_FILE_BODY_BYTES if path == "/v1/files" else MAX_BODY_BYTES
    try:
        authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
        # every route but the OpenAPI document is behind the authorizer
        principal = None if path == OPENAPI_PATH else principal_from_authorizer(authorizer.get("lambda"))
        if size > limit:
            raise PayloadTooLarge(limit)
        scope = next((scope for prefix, scope in ROUTE_SCOPES if path.startswith(prefix)), None)
        if scope is not None and principal is not None:
            require_scope(principal, scope)
        headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
        content_type = headers.get("content-type", "").lower()
        if content_type.startswith("multipart/form-data") and "boundary=" not in content_type:
            raise InvalidRequest("multipart/form-data needs a boundary parameter", param="content-type")
        text = body
        if event.get("isBase64Encoded") and path != "/v1/files":  # file uploads are multipart, binary is fine
            try:
                text = base64.b64decode(body).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                raise InvalidRequest("the request body is not UTF-8 text") from None
        if text is body and event.get("isBase64Encoded"):
            text = ""
        if text.count("[") + text.count("{") > MAX_JSON_DEPTH_CHECK:
            try:
                json.loads(text)
            except RecursionError:
                raise InvalidRequest("the JSON body is nested too deeply") from None
            except ValueError:
                pass  # not JSON: the route's own validation says so
    except StratusError as refused:
        result = http_error(refused)
        return {
            "statusCode": result.status,
            "headers": {"Content-Type": content_types.APPLICATION_JSON, **result.headers},
            "body": result.body.model_dump_json(),
            "isBase64Encoded": False,
        }
    return None
