"""The OpenAPI document, generated from the routes; `docs/openapi.json` is its checked-in copy.

Powertools documents request-validation failures as 422 with its own schema; this API answers
them, like every other error, with 400 and OpenAI's error shape, so the document says that.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

from stratus_core.http.errors import ErrorResponse

OPENAPI_TITLE = "Stratus API"
OPENAPI_VERSION = "0.1.0"
_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
_COMMON_ERRORS = {
    "400": "Invalid request (OpenAI error shape; `param` names the field)",
    "401": "Missing, malformed, unknown, expired or revoked API key",
    "403": "The key lacks the route's scope, or the tenant is suspended",
    "404": "No such resource for this tenant, or unknown route",
    "413": "The body is over 1 MiB (10 MiB for file uploads)",
    "500": "Internal error",
    "503": "Sustained write contention; retry after Retry-After seconds",
}
_ADMITTED_ERRORS = {
    "403": "The key lacks the route's scope, the tenant is suspended, or one of the tenant's per-minute or in-flight "
    "limits is 0 (`limit_zero`; `x-stratus-limit` names it; `x-should-retry: false`, no Retry-After)",
    "429": "A limit refused the request: `rate_limit_exceeded` (`x-stratus-limit` names it; Retry-After says when;"
    " `tenant_write_ceiling`: the tenant's requests arrive faster than one DynamoDB item takes writes) "
    "or `insufficient_quota` (the monthly quota; `x-should-retry: false`); `x-ratelimit-*` headers on every answer",
}
_WRITE_ERRORS = {"409": "Conflicts with the current state (exists already, rotated already)"}
_POWERTOOLS_ONLY = ("HTTPValidationError", "ValidationError", "ResponseValidationError")


def openapi_document(app: APIGatewayHttpResolver) -> str:
    document: dict[str, Any] = json.loads(
        app.get_openapi_json_schema(
            title=OPENAPI_TITLE,
            version=OPENAPI_VERSION,
            summary="Metered, multi-tenant, OpenAI-compatible LLM inference",
            security_schemes={"apiKey": HTTPBearer(description="Authorization: Bearer sk-…")},
            security=[{"apiKey": []}],
        )
    )
    for route, path in document["paths"].items():
        for method, operation in path.items():
            responses = operation["responses"]
            responses.pop("422", None)
            errors = {**_COMMON_ERRORS, **(_WRITE_ERRORS if method in ("post", "patch", "delete") else {})}
            if route in ("/v1/chat/completions", "/v1/completions", "/v1/responses"):
                errors.update(_ADMITTED_ERRORS)
                errors["503"] = (
                    "Not done within the wait: retry, and the retry attaches to the same job (`x-stratus-job-id`; "
                    "Retry-After says when; `code` is `model_starting` while the endpoint scales from zero, else "
                    "`still_running`); or sustained write contention"
                )
            for status, description in errors.items():
                responses[status] = {
                    "description": description,
                    "content": {"application/json": {"schema": _ERROR_REF}},
                }
    schemas = document["components"]["schemas"]
    for name in _POWERTOOLS_ONLY:
        schemas.pop(name, None)
    error_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorResponse"] = error_schema
    return json.dumps(document, indent=2, sort_keys=True) + "\n"
